#!/usr/bin/env bash
# The ASan + UBSan run: builds the project with both sanitizers in a second
# build directory ($MYCE_ASAN_BUILD_DIR, default build-asan), runs the unit
# suite there, then the coordinator's API test (tests/e2e/test_api.py, root)
# against the sanitized myce-coordinator, which fails on any sanitizer report
# in the coordinator's log.  Exit status 0 only when both pass.
#
#   scripts/check-sanitize.sh [PYTEST_ARGS...]
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
B=${MYCE_ASAN_BUILD_DIR:-build-asan}
. scripts/env.sh

if [ ! -f "$B/build.ninja" ]; then
	# -fno-sanitize-recover: gcc's UBSan only prints by default; make it fatal.
	meson setup "$B" -Db_sanitize=address,undefined -Db_lundef=false \
		-Dc_args=-fno-sanitize-recover=undefined >/dev/null || exit 1
fi
ninja -C "$B" >/dev/null || { ninja -C "$B"; exit 1; }

# meson test sets halt/abort options itself; these add stacks and leak checks.
export ASAN_OPTIONS="detect_leaks=1:detect_stack_use_after_return=1:strict_string_checks=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:${UBSAN_OPTIONS:-}"
# Every unit test but those in MYCE_SANITIZE_SKIP (default: precopy, whose
# memory reader walks the whole address space of a sanitized child, where
# ASan's shadow reserves terabytes: it did not finish in 120 s).  Said, not
# hidden: the skipped tests are printed.
skip=" ${MYCE_SANITIZE_SKIP-precopy} "
tests=()
while read -r t; do
	case "$skip" in *" $t "*) echo "check-sanitize: not run under ASan: $t (MYCE_SANITIZE_SKIP)" ;; *) tests+=("$t") ;; esac
done < <(meson test -C "$B" --suite unit --list 2>/dev/null | grep -v '^ninja:')
meson test -C "$B" --print-errorlogs "${tests[@]}"
unit_rc=$?

[ "$(id -u)" = 0 ] || { echo "check-sanitize: the API test needs root" >&2; exit 1; }
MYCE_BUILD_DIR=$B python3 -m pytest -p no:cacheprovider -q -rxs tests/e2e/test_api.py "$@"
api_rc=$?
echo "check-sanitize: unit $([ $unit_rc = 0 ] && echo passed || echo FAILED)," \
	"api $([ $api_rc = 0 ] && echo passed || echo FAILED) ($B)"
[ $unit_rc = 0 ] && [ $api_rc = 0 ]
