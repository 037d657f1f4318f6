#!/usr/bin/env bash
# The coordinator's resident memory with N registered containers (default
# 1000): a real myce-coordinator in a private network namespace of its own
# (its nft table lives there), N `register` calls as agents make them, then
# VmRSS and VmHWM from /proc and the resident pages by mapping (smaps).
# Fails when VmRSS ends above MYCE_RSS_LIMIT_KB (default 10240: the issue's
# 10 MB).  --tls: the same over HTTPS with an openssl-made certificate.
#   Usage: bench/coordinator-memory.sh [N] [--tls]
set -euo pipefail
N=1000
tls=
for a in "$@"; do
    case $a in
    --tls) tls=1 ;;
    *[!0-9]* | '') echo "usage: $0 [N] [--tls]" >&2; exit 2 ;;
    *) N=$a ;;
    esac
done
B=${MYCE_BUILD_DIR:-build}
LIMIT=${MYCE_RSS_LIMIT_KB:-10240}
tmp=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$tmp/token"
tok=$(cat "$tmp/token")
port=17700
tlsargs=()
curlca=()
scheme=http
if [ -n "$tls" ]; then
    (cd "$tmp" &&
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem \
            -days 1 -subj /CN=bench-ca &&
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout srv.key -out srv.csr \
            -subj /CN=127.0.0.1 &&
        printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >ext &&
        openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem -days 1 \
            -extfile ext) >/dev/null 2>&1
    tlsargs=(--tls-cert "$tmp/srv.pem" --tls-key "$tmp/srv.key")
    curlca=(--cacert "$tmp/ca.pem")
    scheme=https
fi
unshare --net sh -c 'ip link set lo up && exec "$@"' sh "$B/myce-coordinator" --listen 127.0.0.1:$port --token-file "$tmp/token" --db "$tmp/c.db" \
    "${tlsargs[@]}" >"$tmp/log" 2>&1 &
pid=$!
url=$scheme://127.0.0.1:$port
# The coordinator listens inside its own namespace: talk to it from there.
in_ns() { nsenter --net=/proc/$pid/ns/net "$@"; }
for _ in $(seq 250); do in_ns curl -sf "${curlca[@]}" "$url/healthz" >/dev/null 2>&1 && break; sleep 0.02; done
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
        [ -n "$tls" ] && printf 'cacert = "%s"\n' "$tmp/ca.pem"  # "next" resets every option
        [ "$i" -lt "$N" ] && printf 'next\n'
    done
} >"$tmp/curl.cfg"
in_ns curl -sS "${curlca[@]}" -K "$tmp/curl.cfg" || { echo "curl failed; coordinator log:"; cat "$tmp/log"; exit 1; } >&2
count=$(in_ns curl -s "${curlca[@]}" -H "Authorization: Bearer $tok" "$url/v1/containers" |
    python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
in_ns curl -s "${curlca[@]}" -H "Authorization: Bearer $tok" "$url/metrics" >/dev/null
after=$(rss)
hwm=$(awk '/^VmHWM/{print $2}' /proc/$pid/status)
pss=$(awk '/^Pss:/{print $2}' /proc/$pid/smaps_rollup)
anon=$(awk '/^Anonymous:/{print $2}' /proc/$pid/smaps_rollup)
file=$(awk '/^Rss:/{r=$2} /^Anonymous:/{a=$2} END{print r-a}' /proc/$pid/smaps_rollup)
echo "configuration: $scheme ($([ -n "$tls" ] && echo "TLS, --tls-cert/--tls-key" || echo "plain HTTP, no TLS configured"))"
echo "registered containers: $count"
echo "coordinator VmRSS: before $before kB, after $after kB (peak $hwm kB); limit $LIMIT kB"
echo "  of which shared-library/file pages $file kB, anonymous $anon kB; PSS $pss kB"
echo "  resident by mapping (smaps), largest first:"
awk '/^[0-9a-f]+-[0-9a-f]+ /{n=split($0,f," "); m=(n>=6)?f[6]:"[anon]"; sub(".*/","",m)}
     /^Rss:/{r[m]+=$2}
     END{for (k in r) if (r[k] > 0) printf "%7d kB  %s\n", r[k], k}' /proc/$pid/smaps | sort -rn | head -14
[ "$count" -eq "$N" ] || { echo "FAIL: $count containers registered, expected $N" >&2; exit 1; }
[ "$after" -le "$LIMIT" ] || { echo "FAIL: VmRSS $after kB above $LIMIT kB" >&2; exit 1; }
echo "ok: under $LIMIT kB"
