#!/usr/bin/env bash
# The benchmark in one command: myce-bench (built beforehand; this builds
# nothing), then the plots with gnuplot.
#
#   bench/run.sh                      the full matrix, results in bench/results/<date>
#   bench/run.sh --short              the CI mode (about 1 minute)
#   bench/run.sh --apps redis --rates 0 --reps 1 --out /tmp/r
#   bench/run.sh --report DIR         summary.md and plots again from DIR/runs.csv
#
# Options are myce-bench's (bench/run.sh --help).  MYCE_BUILD_DIR is the
# build directory (default: build).  Needs root; myce-bench takes the
# machine's cluster lock itself.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
B=${MYCE_BUILD_DIR:-build}
case $B in /*) ;; *) B=$here/$B ;; esac
bench=$B/myce-bench
if [ ! -x "$bench" ]; then
    echo "run.sh: $bench is not built (make build, or set MYCE_BUILD_DIR)" >&2
    exit 1
fi

# Where the results go: --out DIR / --report DIR as given, else a fresh directory.
out=
report=no
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    case ${args[i]} in
    -h | --help) exec "$bench" --help ;;
    --out) out=${args[i + 1]:-} ;;
    --out=*) out=${args[i]#--out=} ;;
    --report) out=${args[i + 1]:-}; report=yes ;;
    --report=*) out=${args[i]#--report=}; report=yes ;;
    esac
done
if [ -z "$out" ]; then
    out=$here/bench/results/$(date +%Y%m%d-%H%M%S)
    set -- "$@" --out "$out"
fi

# In the background, so that a signal to this script reaches myce-bench,
# which then tears its cluster down before it exits.
"$bench" "$@" &
pid=$!
trap 'kill -INT $pid 2>/dev/null' INT TERM HUP
while :; do
    wait $pid
    rc=$?
    kill -0 $pid 2>/dev/null || break
done
trap - INT TERM HUP
[ -d "$out" ] || exit $rc
if [ $report = no ] && [ -f "$out/machine.txt" ]; then
    rev=$(git -C "$here" describe --always --dirty 2>/dev/null || echo unknown)
    echo "source:      $rev ($here)" >>"$out/machine.txt"
fi
if [ -f "$out/plot/figure5.gp" ]; then
    if ! command -v gnuplot >/dev/null; then
        echo "run.sh: gnuplot not installed: no plots (apt-get install gnuplot-nox)" >&2
        [ $rc = 0 ] && rc=1
    elif (cd "$out" && gnuplot plot/figure5.gp); then
        echo "run.sh: plots $out/migration_time.png $out/downtime.png" >&2
    else
        echo "run.sh: gnuplot failed on $out/plot/figure5.gp" >&2
        [ $rc = 0 ] && rc=1
    fi
fi
exit $rc
