#!/usr/bin/env bash
# Fuzzes the coordinator's REST handler (tests/fuzz/fuzz_api.c) with
# libFuzzer under ASan + UBSan for a bounded time.
#
#   tests/fuzz/run.sh [SECONDS]        default 60
#
# Builds with clang through meson in its own build directory
# ($MYCE_FUZZ_BUILD_DIR, default build-fuzz; the whole project configured
# with CC=clang, -Db_sanitize=address,undefined and coverage instrumentation,
# but only the fuzz_api target is built).  Starts from the seed corpus in
# tests/fuzz/corpus (read only; new inputs go to a temporary directory) and
# the dictionary tests/fuzz/api.dict.
#
# The harness replaces every call to the outside world (see its header); as a
# second fence it runs inside a new, empty network namespace when `unshare`
# can make one.  Known bugs in src/ are tolerated (the harness's known_bug()
# and tests/fuzz/ubsan.supp) so the fuzzer looks for new ones;
# MYCE_STRICT=1 turns them into failures.
#
# Exit status: 0 no crash, leak, timeout or sanitizer report; 1 one of those
# (the input is saved in $B/fuzz-artifacts/ and replayable with
# `$B/fuzz_api FILE`, or `build/api_replay FILE` with gcc); 77 clang or
# libFuzzer is not available (a skip, as in automake).
set -euo pipefail
secs=${1:-60}
here=$(cd "$(dirname "$0")/../.." && pwd)
cd "$here"
B=${MYCE_FUZZ_BUILD_DIR:-build-fuzz}

command -v clang >/dev/null || { echo "fuzz: clang is not installed (apt-get install clang)"; exit 77; }
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }\n' >"$probe/p.c"
clang -fsanitize=fuzzer,address,undefined -o "$probe/p" "$probe/p.c" 2>"$probe/err" ||
	{ echo "fuzz: clang cannot build a libFuzzer binary: $(head -c 300 "$probe/err")"; exit 77; }
command -v meson >/dev/null && command -v ninja >/dev/null || { echo "fuzz: meson/ninja missing"; exit 77; }

. scripts/env.sh
if [ ! -f "$B/build.ninja" ]; then
	echo "fuzz: configuring $B (clang, ASan+UBSan, libFuzzer coverage)"
	CC=clang meson setup "$B" -Dbuildtype=debugoptimized -Db_sanitize=address,undefined -Db_lundef=false \
		-Dwerror=false -Dc_args=-fsanitize=fuzzer-no-link >"$probe/setup.log" 2>&1 ||
		{ cat "$probe/setup.log"; exit 1; }
fi
ninja -C "$B" fuzz_api >"$probe/build.log" 2>&1 || { tail -40 "$probe/build.log"; exit 1; }

art="$B/fuzz-artifacts"
mkdir -p "$art"
work="$probe/corpus"
mkdir -p "$work"
fence=()
if unshare --net true 2>/dev/null; then
	fence=(unshare --net --)
elif unshare --user --map-root-user --net true 2>/dev/null; then
	fence=(unshare --user --map-root-user --net --)
else
	echo "fuzz: cannot make a network namespace; relying on the harness's wrapping alone"
fi

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:allocator_may_return_null=0:detect_stack_use_after_return=1:${ASAN_OPTIONS:-}"
supp=""
[ "${MYCE_STRICT:-0}" = 1 ] || supp=":suppressions=$here/tests/fuzz/ubsan.supp"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1$supp:${UBSAN_OPTIONS:-}"
echo "fuzz: $secs s, seeds $(ls tests/fuzz/corpus | wc -l), artifacts in $art"
set +e
# libFuzzer stops after max_total_time once the input in hand is done (each
# bounded by -timeout); `timeout` bounds the whole run even if the harness
# itself hangs.
timeout --kill-after=10 $((secs + 120)) "${fence[@]}" "$B/fuzz_api" -max_total_time="$secs" -timeout=60 -rss_limit_mb=4096 -max_len=4096 \
	-dict=tests/fuzz/api.dict -artifact_prefix="$art/" -error_exitcode=1 -timeout_exitcode=1 \
	-print_final_stats=1 "$work" tests/fuzz/corpus 2>"$probe/fuzz.log"
rc=$?
set -e
grep -E "^(#[0-9]+[[:space:]]+(DONE|INITED)|stat::number_of_executed_units|stat::peak_rss_mb|fuzz_api:|SUMMARY|==[0-9]+==ERROR)" \
	"$probe/fuzz.log" || true
if [ $rc -ne 0 ]; then
	echo "fuzz: FAILED (exit $rc); last lines of the fuzzer's log:"
	tail -60 "$probe/fuzz.log"
	exit 1
fi
echo "fuzz: no crash in $secs s"
