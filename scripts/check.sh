#!/usr/bin/env bash
# Runs every test: the cmocka unit tests (meson) and the end-to-end tests
# (pytest, real CRIU, real namespaces, real servers), then prints one line
# "N passed, N failed".  Exit status 0 only when nothing failed.
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

python3 - "$B/meson-logs/testlog.junit.xml" "$out/e2e.xml" <<'PY'
import sys, xml.etree.ElementTree as ET
passed = failed = skipped = 0
for path in sys.argv[1:]:
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
print(f"{passed} passed, {failed} failed, {skipped} skipped")
PY
[ $unit_rc = 0 ] && [ $e2e_rc = 0 ]
