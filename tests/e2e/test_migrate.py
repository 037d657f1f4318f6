"""Live migration end to end: real CRIU, real redis-server and mosquitto,
real clients through the service address, real namespaces."""

import json
import os
import signal
import subprocess
import time

import pytest

from conftest import RUN_DIR, ctl, ctl_json, wait_until


# ~8 MB of values that compress poorly, so that a transfer on a slow link takes seconds.
INCOMPRESSIBLE = ("for i=1,4000 do redis.call('set','r'..i, string.rep(string.char(i%251), 10)"
                  "..redis.sha1hex(tostring(i)):rep(50)) end")


def assert_dbsize(svc, base, r):
    """Every acknowledged write is there; a write sent but never answered
    (the client stopped, or the reply was lost) may or may not be."""
    n = int(redis(svc, "dbsize"))
    assert base + r["acked"] <= n <= base + r["requests"], (n, base, r["acked"], r["requests"])


def redis(svc, *args):
    return subprocess.run(["redis-cli", "-h", svc, "-p", "6379", *args], capture_output=True, text=True,
                          timeout=30).stdout.strip()


def metrics():
    """The coordinator's /metrics over the cluster's TLS: {(name, labels): value}."""
    import ssl, urllib.request
    token = (RUN_DIR / "token").read_text().strip()
    req = urllib.request.Request("https://10.77.0.1:7700/metrics", headers={"Authorization": f"Bearer {token}"})
    ctx = ssl.create_default_context(cafile=str(RUN_DIR / "ca.pem"))
    with urllib.request.urlopen(req, timeout=10, context=ctx) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_redis_round_trip_keeps_connection_and_writes(make_cluster, loadgen):
    c = make_cluster(nodes=3)
    app = c.run_redis()
    svc = app["svc_ip"]
    redis(svc, "debug", "populate", "20000", "pre", "64")
    m0 = metrics()
    lg = loadgen("redis", f"{svc}:6379")
    migrations = []
    for to in ("node2", "node3", "node1"):
        migrations.append(c.migrate("redis", to))
        assert c.app("redis")["node"] == to
    time.sleep(0.3)  # let the client write after the last restore
    r = lg.stop()
    assert r["resets"] == 0 and r["reconnects"] == 0, r
    assert r["acked"] > 500, r
    assert r["missing"] == 0 and r["wrong"] == 0 and r["verified"], r
    assert_dbsize(svc, 20000, r)
    for m in migrations:
        t = m["timings"]
        assert 0 < t["freeze_window_ms"] < 5000, t
        assert m["bytes_raw"] > 1_000_000
    # The coordinator's histograms moved by the three migrations, and the bytes counters with them.
    m1 = metrics()
    for phase in ("prepare", "dump", "transfer", "restore", "freeze_window", "total"):
        key = f'mycedrive_migration_phase_duration_seconds_count{{phase="{phase}"}}'
        assert m1[key] - m0.get(key, 0) == 3, (phase, m0.get(key), m1[key])
    window = sum(m["timings"]["freeze_window_ms"] for m in migrations) / 1000
    key = 'mycedrive_migration_phase_duration_seconds_sum{phase="freeze_window"}'
    assert abs(m1[key] - m0.get(key, 0) - window) < 1e-3
    raw = "mycedrive_migration_bytes_raw_total"
    assert m1[raw] - m0[raw] == sum(m["bytes_raw"] for m in migrations)
    assert m1['mycedrive_migrations_total{outcome="completed"}'] == 3
    # The pod carries every address its predecessors had.
    pods = ctl_json("get", "pods")
    assert len(pods) == 1 and len(json.loads(pods[0]["carried"])) == 3


def test_mosquitto_keeps_publisher_and_subscriber(make_cluster, loadgen, tmp_path):
    conf = tmp_path / "mosquitto.conf"
    conf.write_text("listener 1883 0.0.0.0\nallow_anonymous true\npersistence false\nuser root\n")
    c = make_cluster(nodes=2)
    a = ctl_json("run", "mqtt", "--node", "node1", "--port", "1883", "--", "mosquitto", "-c", str(conf))
    lg = loadgen("mqtt", f"{a['svc_ip']}:1883")
    c.migrate("mqtt", "node2")
    time.sleep(0.3)
    r = lg.stop()
    assert r["missing"] == 0 and r["duplicates"] == 0 and r["out_of_order"] == 0, r
    assert r["pub_reconnects"] == 0 and r["sub_reconnects"] == 0, r
    assert r["received"] >= r["acknowledged"] > 200, r


def test_destination_daemon_killed_during_transfer_rolls_back(make_cluster, loadgen):
    c = make_cluster(nodes=2, rate=2)
    app = c.run_redis()
    svc = app["svc_ip"]
    # ~8 MB of values that compress poorly, so the transfer takes seconds.
    redis(svc, "eval", INCOMPRESSIBLE, "0")
    lg = loadgen("redis", f"{svc}:6379")
    p = subprocess.Popen([str(c_ctl()), "migrate", "redis", "--to", "node2", "-o", "json"], stdout=subprocess.PIPE,
                         text=True)
    wait_until(lambda: any(m["phase"] == "transfer" for m in ctl_json("get", "migrations")), 60, "transfer phase")
    os.kill(c.node_pid("node2"), signal.SIGKILL)
    out, _ = p.communicate(timeout=300)
    m = json.loads(out)
    assert m["outcome"] == "rolled-back", m
    assert c.app("redis")["node"] == "node1"
    time.sleep(0.3)
    r = lg.stop()
    assert r["missing"] == 0 and r["wrong"] == 0 and r["verified"], r
    assert r["resets"] == 0, r
    assert redis(svc, "get", "r7") != ""
    # `cluster up` restarts the dead daemon, which removes the target pod its
    # previous run left behind: nothing remains on the destination.
    out = ctl("cluster", "up").stdout
    assert "restarted the node daemon of node2" in out
    src_pod = ctl_json("get", "pods")[0]["id"]
    wait_until(lambda: [n for n in os.listdir("/run/netns") if n.startswith("myce-pod")] == [f"myce-pod{src_pod}"],
               15, "the orphaned target pod to be removed")
    c.migrate("redis", "node2")


def c_ctl():
    from conftest import CTL
    return CTL


@pytest.mark.parametrize("fault", ["corrupt-stream", "fail-restore"])
def test_injected_fault_rolls_back(make_cluster, loadgen, fault):
    c = make_cluster(nodes=2, env={"MYCE_FAULT": fault})
    app = c.run_redis()
    svc = app["svc_ip"]
    redis(svc, "debug", "populate", "20000", "pre", "64")
    lg = loadgen("redis", f"{svc}:6379")
    m = c.migrate("redis", "node2", expect="rolled-back")
    assert m["reason"], m
    assert c.app("redis")["node"] == "node1"
    pods = ctl_json("get", "pods")
    assert [p["node"] for p in pods] == ["node1"]
    # Nothing left on the destination node.
    assert not [n for n in os.listdir("/run/netns") if n.startswith("myce-pod") and n != f"myce-pod{pods[0]['id']}"]
    time.sleep(0.3)
    r = lg.stop()
    assert r["missing"] == 0 and r["wrong"] == 0 and r["verified"], r
    assert r["resets"] == 0, r
    assert_dbsize(svc, 20000, r)
    # And it can still migrate once the fault is gone (the fault fires once).
    c.migrate("redis", "node2")


def test_carried_address_released_when_its_last_connection_ends(make_cluster, loadgen):
    c = make_cluster(nodes=2)
    app = c.run_redis()
    lg = loadgen("redis", f"{app['svc_ip']}:6379")
    c.migrate("redis", "node2")
    pod = ctl_json("get", "pods")[0]
    old = app["addr"]
    assert json.loads(pod["carried"]) == [old]
    time.sleep(3)  # longer than the collector's grace period: the connection still uses the address
    assert json.loads(ctl_json("get", "pods")[0]["carried"]) == [old]
    r = lg.stop()
    assert r["resets"] == 0 and r["missing"] == 0, r
    # The client's connection is gone: the address is released everywhere.
    wait_until(lambda: json.loads(ctl_json("get", "pods")[0]["carried"]) == [], 15, "carried address released")
    routes = subprocess.run(["ip", "route", "show", f"{old}/32"], capture_output=True, text=True).stdout
    assert routes.strip() == ""
    addrs = subprocess.run(["ip", "-n", f"myce-pod{pod['id']}", "-o", "addr", "show", "dev", "eth0"],
                           capture_output=True, text=True).stdout
    assert old not in addrs
    # A new pod on node1 may now get the old address back.
    c.migrate("redis", "node1")
    assert c.app("redis")["addr"] == old


def redis_servers_in_pods():
    """redis-server processes that run inside a pod's network namespace."""
    pods = {os.stat(f"/run/netns/{n}").st_ino for n in os.listdir("/run/netns") if n.startswith("myce-pod")}
    n = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if open(f"/proc/{pid}/comm").read().strip() == "redis-server" and \
                    os.stat(f"/proc/{pid}/ns/net").st_ino in pods:
                n += 1
        except OSError:
            pass
    return n


@pytest.mark.parametrize("point", ["crash-in-prepare", "crash-in-transfer", "crash-before-commit",
                                   "crash-in-commit", "sigkill-in-transfer"])
def test_coordinator_killed_mid_migration_recovers(make_cluster, loadgen, point):
    env = {"MYCE_FAULT": point} if point.startswith("crash") else None
    c = make_cluster(nodes=2, rate=2 if point == "sigkill-in-transfer" else 0, env=env)
    app = c.run_redis()
    svc = app["svc_ip"]
    redis(svc, "debug", "populate", "30000", "pre", "64")
    if point == "sigkill-in-transfer":  # poorly compressible: the transfer takes seconds
        redis(svc, "eval", INCOMPRESSIBLE, "0")
    lg = loadgen("redis", f"{svc}:6379")
    from conftest import CTL
    mig = subprocess.Popen([str(CTL), "-o", "json", "migrate", "redis", "--to", "node2"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    coord = c.state["coordinator_pid"]
    if point == "sigkill-in-transfer":
        wait_until(lambda: any(m["phase"] == "transfer" for m in ctl_json("get", "migrations")), 60, "transfer")
        os.kill(coord, signal.SIGKILL)
    wait_until(lambda: not os.path.exists(f"/proc/{coord}/exe") or
               "zombie" in open(f"/proc/{coord}/status").read(), 60, "the coordinator to die")
    assert "restarted the coordinator" in ctl("cluster", "up").stdout
    out, err = mig.communicate(timeout=300)
    m = json.loads(out)
    expected = {"crash-in-prepare": "failed"}.get(point, "completed")
    assert m["outcome"] == expected, m
    assert c.app("redis")["node"] == ("node1" if expected == "failed" else "node2")
    assert len(ctl_json("get", "pods")) == 1
    assert redis_servers_in_pods() == 1
    time.sleep(0.3)
    r = lg.stop()
    assert r["missing"] == 0 and r["wrong"] == 0 and r["verified"], r
    assert r["resets"] == 0, r
    extra = 4000 if point == "sigkill-in-transfer" else 0
    assert_dbsize(svc, 30000 + extra, r)


def test_twenty_concurrent_migrations(make_cluster, loadgen):
    c = make_cluster(nodes=2)
    apps = [c.run_redis(name=f"r{i}") for i in range(20)]
    gens = [loadgen("redis", f"{a['svc_ip']}:6379", extra=("--interval-ms", "5", "--probe-ms", "0",
                                                             "--keys-prefix", a["name"]))
            for a in apps]
    from conftest import CTL
    procs = [subprocess.Popen([str(CTL), "-o", "json", "migrate", a["name"], "--to", "node2"],
                              stdout=subprocess.PIPE, text=True) for a in apps]
    outs = [json.loads(p.communicate(timeout=300)[0]) for p in procs]
    assert [m["outcome"] for m in outs] == ["completed"] * 20, [(m["app"], m["reason"]) for m in outs]
    time.sleep(0.3)
    for lg in gens:
        r = lg.stop()
        assert r["missing"] == 0 and r["wrong"] == 0 and r["resets"] == 0 and r["acked"] > 50, r
    assert {a["node"] for a in ctl_json("get", "apps")} == {"node2"}


@pytest.mark.parametrize("mode", ["precopy", "auto"])
def test_precopy_moves_memory_before_the_freeze(make_cluster, loadgen, mode):
    c = make_cluster(nodes=2, rate=10)
    app = c.run_redis()
    svc = app["svc_ip"]
    redis(svc, "eval", INCOMPRESSIBLE, "0")
    lg = loadgen("redis", f"{svc}:6379", extra=("--keys-prefix", "sensor"))
    p = subprocess.run([str(c_ctl()), "-o", "json", "migrate", "redis", "--to", "node2", "--mode", mode],
                       capture_output=True, text=True, timeout=300)
    m = json.loads(p.stdout)
    assert m["outcome"] == "completed", m
    if mode == "auto":
        assert m["mode_picked"] == "precopy", m  # 8 MB at 10 Mbit/s: seconds if moved in the freeze
        assert "Mbit/s" in m["mode_reason"]
    pre = m["precopy"]
    assert pre["rounds"] >= 1 and pre["blocks"] > 1000, pre
    # Most of the memory crossed the link before the freeze.
    assert pre["freeze_bytes_wire"] < pre["bytes_wire"] / 2, pre
    time.sleep(0.3)
    r = lg.stop()
    assert r["missing"] == 0 and r["wrong"] == 0 and r["resets"] == 0, r
    # The dataset besides the sensor's keys is bit for bit the same.
    assert int(redis(svc, "dbsize")) >= 4000 + r["acked"]


def test_precopy_quiesced_digest_identical(make_cluster):
    c = make_cluster(nodes=2, rate=20)
    app = c.run_redis()
    svc = app["svc_ip"]
    redis(svc, "eval", INCOMPRESSIBLE, "0")
    redis(svc, "debug", "populate", "50000", "p", "100")
    before = redis(svc, "debug", "digest")
    for to in ("node2", "node1"):
        p = ctl("-o", "json", "migrate", "redis", "--to", to, "--mode", "precopy")
        m = json.loads(p.stdout)
        assert m["outcome"] == "completed" and m["precopy"]["blocks"] > 0, m
        assert redis(svc, "debug", "digest") == before
