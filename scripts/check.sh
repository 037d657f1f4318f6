#!/usr/bin/env bash
# Runs every test: the cmocka unit tests (meson), the end-to-end tests
# (pytest, real CRIU, real namespaces, real servers) and the ASan+UBSan run
# of the unit and API tests (scripts/check-sanitize.sh, bounded by
# MYCE_SANITIZE_TIMEOUT seconds, default 1800; MYCE_SKIP_SANITIZE=1 leaves
# it out and says so), then prints one line "N passed, N failed, N skipped"
# counting all three.  Exit status 0 only when nothing failed.
set -uo pipefail
B=${MYCE_BUILD_DIR:-build}
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
. scripts/env.sh
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

meson test -C "$B" --suite unit --print-errorlogs
unit_rc=$?
[ "$(id -u)" = 0 ] || { echo "check: end-to-end tests need root" >&2; exit 1; }
MYCE_BUILD_DIR=$B python3 -m pytest -p no:cacheprovider -v --junitxml="$out/e2e.xml" tests/e2e ${PYTEST_ARGS:-}
e2e_rc=$?

ASAN_B=${MYCE_ASAN_BUILD_DIR:-build-asan}
san_rc=0
if [ "${MYCE_SKIP_SANITIZE:-0}" = 1 ]; then
	echo "check: the sanitizer run is skipped (MYCE_SKIP_SANITIZE=1)"
	san_reports=()
else
	rm -f "$ASAN_B/meson-logs/testlog.junit.xml" # no stale report may count
	MYCE_ASAN_BUILD_DIR=$ASAN_B timeout --kill-after=30 "${MYCE_SANITIZE_TIMEOUT:-1800}" \
		bash scripts/check-sanitize.sh --junitxml="$out/asan-api.xml"
	san_rc=$?
	[ $san_rc = 124 ] && echo "check: the sanitizer run timed out after ${MYCE_SANITIZE_TIMEOUT:-1800} s"
	san_reports=("$ASAN_B/meson-logs/testlog.junit.xml" "$out/asan-api.xml")
fi

SAN_RC=$san_rc python3 - "$B/meson-logs/testlog.junit.xml" "$out/e2e.xml" "${san_reports[@]}" <<'PY'
import os, sys, xml.etree.ElementTree as ET
passed = failed = skipped = 0
san_failed_before = None
for i, path in enumerate(sys.argv[1:]):
    if i == 2:
        san_failed_before = failed
    try:
        root = ET.parse(path).getroot()
    except Exception:
        failed += 1  # a suite that produced no report counts as a failure
        continue
    for case in root.iter("testcase"):
        kinds = {child.tag for child in case}
        if kinds & {"failure", "error"}:
            failed += 1
        elif "skipped" in kinds:
            skipped += 1
        else:
            passed += 1
# A sanitizer run that failed (build error, timeout, a report outside a
# test case) without a failing test case still counts as one failure.
if os.environ.get("SAN_RC", "0") != "0" and san_failed_before is not None and failed == san_failed_before:
    failed += 1
print(f"{passed} passed, {failed} failed, {skipped} skipped")
PY
[ $unit_rc = 0 ] && [ $e2e_rc = 0 ] && [ $san_rc = 0 ]
