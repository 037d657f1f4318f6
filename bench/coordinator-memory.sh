#!/usr/bin/env bash
# The coordinator's resident memory with N registered containers (default
# 1000): a real myce-coordinator in a private network namespace of its own
# (its nft table lives there), N `register` calls as agents make them, then
# VmRSS and VmHWM from /proc.  Usage: bench/coordinator-memory.sh [N]
set -euo pipefail
N=${1:-1000}
B=${MYCE_BUILD_DIR:-build}
tmp=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$tmp/token"
tok=$(cat "$tmp/token")
port=17700
unshare --net bash -c "ip link set lo up; exec '$B/myce-coordinator' --listen 127.0.0.1:$port --token-file '$tmp/token' --db '$tmp/c.db'" \
    >"$tmp/log" 2>&1 &
pid=$!
url=http://127.0.0.1:$port
# The coordinator listens inside its own namespace: talk to it from there.
in_ns() { nsenter --net=/proc/$pid/ns/net "$@"; }
for _ in $(seq 200); do in_ns curl -sf "$url/healthz" >/dev/null 2>&1 && break; sleep 0.02; done
rss() { awk '/^VmRSS/{print $2}' /proc/$pid/status; }
before=$(rss)
# One curl per request is slow; a keep-alive batch through one curl process.
{
    for i in $(seq "$N"); do
        printf 'url = "%s/v1/register"\n' "$url"
        printf 'header = "Authorization: Bearer %s"\nheader = "Content-Type: application/json"\n' "$tok"
        printf 'data = "{\\"pod\\":\\"app-%d-5d8f7\\",\\"container\\":\\"main\\",\\"node\\":\\"node%d\\",\\"labels\\":{\\"app\\":\\"sensor-%d\\",\\"tier\\":\\"edge\\"},\\"endpoint\\":\\"10.78.%d.%d:7701\\"}"\n' \
            "$i" $((i % 50 + 1)) "$i" $((i % 50 + 1)) $((i % 250 + 2))
        printf 'output = "/dev/null"\n'
        [ "$i" -lt "$N" ] && printf 'next\n'
    done
} >"$tmp/curl.cfg"
in_ns curl -s -K "$tmp/curl.cfg"
count=$(in_ns curl -s -H "Authorization: Bearer $tok" "$url/v1/containers" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
after=$(rss)
hwm=$(awk '/^VmHWM/{print $2}' /proc/$pid/status)
pss=$(awk '/^Pss:/{print $2}' /proc/$pid/smaps_rollup)
anon=$(awk '/^Anonymous:/{print $2}' /proc/$pid/smaps_rollup)
file=$(awk '/^Rss:/{r=$2} /^Anonymous:/{a=$2} END{print r-a}' /proc/$pid/smaps_rollup)
echo "registered containers: $count"
echo "coordinator VmRSS: before $before kB, after $after kB (peak $hwm kB)"
echo "  of which shared-library/file pages $file kB, anonymous $anon kB; PSS $pss kB"
[ -n "${MYCE_SMAPS:-}" ] && python3 /tmp/smapsum.py $pid
[ "$count" -eq "$N" ]
