#!/usr/bin/env bash
# The demo: a busy Redis moves node1 -> node2 while a sensor writes to it
# every millisecond over one TCP connection.  Tears everything down at the end,
# also on failure or Ctrl-C.
set -euo pipefail
B=${MYCE_BUILD_DIR:-build}
RATE=${RATE:-10}
DELAY=${DELAY:-10}
ctl="$B/mycectl"
tmp=$(mktemp -d)
lg=
cleanup() {
    [ -n "$lg" ] && kill -INT "$lg" 2>/dev/null && wait "$lg" 2>/dev/null
    "$ctl" cluster down >/dev/null 2>&1 || true
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM
# One embedded cluster at a time on this machine (tests and benchmark too).
exec 9>/run/lock/mycedrive-cluster.lock
flock 9

echo "== cluster: 3 edge nodes, ${RATE} Mbit/s links with ${DELAY} ms one-way delay"
"$ctl" cluster down >/dev/null 2>&1 || true
"$ctl" cluster up --nodes 3 --rate "$RATE" --delay "$DELAY"
"$ctl" run redis --node node1 --port 6379 -- redis-server --port 6379 --save "" --appendonly no \
    --protected-mode no --enable-debug-command yes
svc=$("$ctl" -o json get services | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["svc_ip"])')
redis-cli -h "$svc" debug populate 50000 reading 64 >/dev/null
echo "== redis holds $(redis-cli -h "$svc" dbsize) keys; starting the sensor (one write every 1 ms)"
"$B/myce-loadgen" redis --addr "$svc:6379" --ready-file "$tmp/ready" -o json >"$tmp/lg.json" 2>"$tmp/lg.err" &
lg=$!
for _ in $(seq 500); do [ -e "$tmp/ready" ] && break; sleep 0.01; done
sleep 1
echo "== migrating redis node1 -> node2 while the sensor writes"
"$ctl" migrate redis --to node2 || true
"$ctl" -o json get migrations 1 >"$tmp/mig.json"
sleep 1
kill -INT "$lg"; wait "$lg" || true; lg=
"$ctl" get pods
python3 - "$tmp/lg.json" "$tmp/mig.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); m = json.load(open(sys.argv[2])); t = m["timings"]
print("== summary")
print(f"migration            {m['outcome']} ({m['from']} -> {m['to']})")
print(f"acknowledged writes  {r['acked']}")
print(f"missing after        {r['missing']} (wrong values: {r['wrong']})")
print(f"connection resets    {r['resets']} (reconnects: {r['reconnects']})")
print(f"longest reply gap    {r['max_gap_ms']:.1f} ms (client-perceived downtime)")
print(f"freeze window        {t.get('freeze_window_ms', -1):.1f} ms")
print(f"migration time       {t.get('total_ms', -1):.1f} ms")
print(f"checkpoint           {m.get('bytes_raw', 0)/1e6:.1f} MB raw, {m.get('bytes_wire', 0)/1e6:.1f} MB on the wire")
PY
