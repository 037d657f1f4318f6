"""Live migration end to end: real CRIU, real redis-server and mosquitto,
real clients through the service address, real namespaces."""

import json
import os
import signal
import subprocess
import time

import pytest

from conftest import RUN_DIR, ctl, ctl_json, wait_until


def redis(svc, *args):
    return subprocess.run(["redis-cli", "-h", svc, "-p", "6379", *args], capture_output=True, text=True,
                          timeout=30).stdout.strip()


def test_redis_round_trip_keeps_connection_and_writes(make_cluster, loadgen):
    c = make_cluster(nodes=3)
    app = c.run_redis()
    svc = app["svc_ip"]
    redis(svc, "debug", "populate", "20000", "pre", "64")
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
    assert int(redis(svc, "dbsize")) == 20000 + r["acked"]
    for m in migrations:
        t = m["timings"]
        assert 0 < t["freeze_window_ms"] < 5000, t
        assert m["bytes_raw"] > 1_000_000
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
    redis(svc, "eval", "for i=1,4000 do redis.call('set','r'..i, string.rep(string.char(i%251), 10)"
          "..redis.sha1hex(tostring(i)):rep(50)) end", "0")
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
    assert int(redis(svc, "dbsize")) == 20000 + r["acked"]
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
