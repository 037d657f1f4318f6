"""A pod of several containers migrates as a whole (issue 5): a Deployment
whose pod runs Redis and a sidecar that keeps its own state in memory and
talks to Redis over localhost (tests/k8s/sidecar_counter.py) moves node1 ->
node2 through the real controllers while a client writes through the
Service.  Both containers' state survives, the client's and the sidecar's
connections survive, and one CRIU dump froze every process of both."""

import json
import os
import signal
import socket
from pathlib import Path

import pytest

from embedded import embedded, make_embedded, redis_try  # noqa: F401 (fixtures)
from k8senv import wait_until
from test_pod_migrate import (INCOMPRESSIBLE, PodWatch, Writer, check_writes, events, migrations, ready,
                              start_migration)

SIDECAR = Path(__file__).resolve().parent / "sidecar_counter.py"
REDIS = ["redis-server", "--port", "6379", "--bind", "0.0.0.0", "--save", "", "--appendonly", "no",
         "--protected-mode", "no"]


def manifest(name):
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
         "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                  "template": {"metadata": {"labels": {"app": name}},
                               "spec": {"terminationGracePeriodSeconds": 5, "containers": [
                                   {"name": "redis", "image": "redis:7", "command": REDIS[:1], "args": REDIS[1:],
                                    "readinessProbe": {"tcpSocket": {"port": 6379}, "periodSeconds": 1}},
                                   {"name": "counter", "image": "python:3-slim",
                                    "command": ["/usr/bin/python3", str(SIDECAR)], "args": ["$(STATUS_PORT)"],
                                    "env": [{"name": "STATUS_PORT", "value": "7000"},
                                            {"name": "REDIS_PORT", "value": "6379"}],
                                    "ports": [{"name": "status", "containerPort": 7000}],
                                    "readinessProbe": {"tcpSocket": {"port": "status"}, "periodSeconds": 1}}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
         "spec": {"selector": {"app": name}, "ports": [{"port": 6379, "targetPort": 6379}]}},
    ]})


def sidecar(addr):
    """The sidecar's own report, or None while it cannot be reached."""
    try:
        with socket.create_connection((addr, 7000), timeout=5) as s:
            return json.loads(s.makefile().readline())
    except (OSError, ValueError):
        return None


@pytest.mark.parametrize("mode", ["live", "precopy"])
def setup_duo(kubectl, ns):
    """The Deployment's pod of two containers, Ready on node1, its Service
    answering, its sidecar counting."""
    kubectl.run("cordon", "node2")
    try:
        kubectl.run("-n", ns, "apply", "-f", "-", input=manifest("duo"))
        s = wait_until(lambda: [p for p in kubectl.json("-n", ns, "get", "pods", "-l", "app=duo")["items"]
                                if ready(p)], 90, "a Ready pod of two containers")[0]
    finally:
        kubectl.run("uncordon", "node2")
    assert s["spec"]["nodeName"] == "node1"
    assert [c["name"] for c in s["status"]["containerStatuses"]] == ["redis", "counter"]
    assert all(c["ready"] and "running" in c["state"] for c in s["status"]["containerStatuses"])
    cluster_ip = kubectl.json("-n", ns, "get", "service", "duo")["spec"]["clusterIP"]
    wait_until(lambda: redis_try(cluster_ip, 6379, "PING") == "+PONG", 30, "the service to answer")
    before = wait_until(lambda: (lambda r: r if r and r["count"] > 100 else None)(sidecar(s["status"]["podIP"])),
                        30, "the sidecar to be counting")
    assert before["mismatches"] == 0 and before["errors"] == 0, before
    return s, cluster_ip, before


def counting_on(addr, before):
    """The sidecar at addr is the one of `before` (same boot token), it went
    on counting on its one localhost connection, and every INCR reply
    matched its own count."""
    after = wait_until(lambda: (lambda r: r if r and r["count"] > before["count"] + 100 else None)(sidecar(addr)),
                       30, f"the sidecar at {addr} to count on")
    assert after["boot"] == before["boot"], (before, after)
    assert after["mismatches"] == 0 and after["errors"] == 0 and after["reconnects"] == 0, after
    return after


@pytest.mark.parametrize("mode", ["live", "precopy"])
def test_two_container_pod_migrates_as_a_whole(make_embedded, kubectl, namespace, mode):
    ns = namespace
    make_embedded(rate=0)
    watch = PodWatch(kubectl.kubeconfig, ns)
    try:
        s, cluster_ip, before = setup_duo(kubectl, ns)

        w = Writer(cluster_ip)
        wait_until(lambda: len(w.acked) > 50, 20, "the writer to be under way")
        mig = start_migration(s["metadata"]["name"], ns, mode=mode)
        out, err = mig.communicate(timeout=300)
        assert out, f"mycectl migrate: {err}"
        m = json.loads(out)
        assert m["outcome"] == "completed", (m, err)
        t_name = m["kubernetes"]["target_pod"]

        # One dump froze the pod's whole tree: pod-init, Redis and the sidecar.
        comms = [p["comm"] for p in m["dumped_processes"]]
        assert comms[0] == "myce-podinit", comms
        assert "redis-server" in comms and "python3" in comms, comms
        assert len({p["pid"] for p in m["dumped_processes"]}) == len(comms)

        wait_until(lambda: kubectl.run("-n", ns, "get", "pod", s["metadata"]["name"], check=False).returncode != 0,
                   60, "the ReplicaSet to delete the source pod")
        t = wait_until(lambda: (lambda p: p if ready(p) else None)(kubectl.json("-n", ns, "get", "pod", t_name)),
                       30, "the target pod to be Ready")
        assert t["spec"]["nodeName"] == "node2"
        cs = t["status"]["containerStatuses"]
        assert [c["name"] for c in cs] == ["redis", "counter"]
        assert all(c["ready"] and c["restartCount"] == 0 for c in cs), cs
        assert "MigrationCompleted" in events(kubectl, ns, s["metadata"]["name"])

        # The sidecar is the same process (same boot token), it went on
        # counting on its one localhost connection, and Redis agrees with
        # every count it made: both containers were cut at the same moment.
        after = counting_on(t["status"]["podIP"], before)
        ticks = int(redis_try(cluster_ip, 6379, "GET", "sidecar:ticks"))
        assert ticks >= after["value"] >= before["value"] + 100

        # Redis's state and the client's connection survived.
        n = len(w.acked)
        wait_until(lambda: len(w.acked) > n + 50, 20, "writes after the migration")
        w.stop()
        check_writes(w, cluster_ip)
        if mode == "precopy":
            # The memory of every process of the tree crossed before the freeze.
            assert m["precopy"]["bytes_raw"] > 0, m
        print(f"{mode}: longest gap {w.max_gap * 1000:.0f} ms, timings {m['timings']}, dumped {comms}")
        assert watch.uids == {s["metadata"]["uid"], t["metadata"]["uid"]}, watch.lines
    finally:
        watch.stop()
        kubectl.run("-n", ns, "delete", "deployment,service", "duo", "--wait=false", check=False)
        wait_until(lambda: not kubectl.json("-n", ns, "get", "pods")["items"], 60, "the pods to be deleted")


def test_rollback_restores_both_containers_on_the_source(make_embedded, kubectl, namespace):
    """The destination's node daemon dies during the transfer: the one
    checkpoint is restored on node1, both containers together."""
    ns = namespace
    embedded = make_embedded(rate=2)
    try:
        s, cluster_ip, before = setup_duo(kubectl, ns)
        # ~4 MB that compress poorly: the transfer takes seconds on 2 Mbit/s.
        assert redis_try(cluster_ip, 6379, "EVAL", INCOMPRESSIBLE, "0", timeout=30) is not None
        w = Writer(cluster_ip)
        wait_until(lambda: len(w.acked) > 50, 20, "the writer to be under way")
        mig = start_migration(s["metadata"]["name"], ns, mode="live")
        wait_until(lambda: any(m["phase"] == "transfer" for m in migrations()), 60, "the transfer phase")
        os.kill(embedded.node_pid("node2"), signal.SIGKILL)
        out, err = mig.communicate(timeout=300)
        assert out, f"mycectl migrate: {err}"
        m = json.loads(out)
        assert m["outcome"] == "rolled-back", (m, err)
        comms = [p["comm"] for p in m.get("dumped_processes", [])]
        assert {"myce-podinit", "redis-server", "python3"} <= set(comms), m

        got = wait_until(lambda: (lambda p: p if ready(p) else None)(
            kubectl.json("-n", ns, "get", "pod", s["metadata"]["name"])), 30, "the source to be Ready again")
        assert got["metadata"]["uid"] == s["metadata"]["uid"]
        assert all(c["restartCount"] == 0 for c in got["status"]["containerStatuses"])
        counting_on(s["status"]["podIP"], before)
        n = len(w.acked)
        wait_until(lambda: len(w.acked) > n + 50, 20, "writes after the rollback")
        w.stop()
        check_writes(w, cluster_ip)
        assert "restarted the node daemon of node2" in embedded.repair().stdout
    finally:
        kubectl.run("-n", ns, "delete", "deployment,service", "duo", "--wait=false", check=False)
        wait_until(lambda: not kubectl.json("-n", ns, "get", "pods")["items"], 60, "the pods to be deleted")


def test_a_container_that_ends_ends_the_pod(embedded, kubectl, namespace):
    """The containers of a pod run and stop together: when one ends, pod-init
    stops the others and the pod ends with that container's exit code (here
    restartPolicy Never: the pod is Failed), each container reporting its
    own end."""
    ns = namespace
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pair"},
           "spec": {"nodeName": "node1", "restartPolicy": "Never", "terminationGracePeriodSeconds": 2,
                    "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "987654"]},
                                   {"name": "side", "image": "busybox",
                                    "command": ["sh", "-c", "sleep 2; exit 3"]}]}}
    apply_pod(kubectl, ns, pod)
    try:
        got = wait_until(lambda: (lambda p: p if p.get("status", {}).get("phase") == "Failed" else None)(
            kubectl.json("-n", ns, "get", "pod", "pair")), 60, "the pod to end Failed")
        cs = {c["name"]: c for c in got["status"]["containerStatuses"]}
        assert cs["side"]["state"]["terminated"]["exitCode"] == 3, cs
        assert cs["main"]["state"]["terminated"]["exitCode"] == 143, cs
        assert cs["main"]["containerID"] != cs["side"]["containerID"]
        log = open("/run/mycedrive/logs/node1.log").read()
        assert "container side exited (3), and the pod with it" in log
        # pod-init stopped the other container.
        left = [p for p in os.listdir("/proc") if p.isdigit() and _cmdline(p) == ["sleep", "987654"]]
        assert not left, left
    finally:
        kubectl.run("-n", ns, "delete", "pod", "pair", "--wait=false", check=False)
        wait_until(lambda: kubectl.run("-n", ns, "get", "pod", "pair", check=False).returncode != 0, 30,
                   "the pod to be deleted")


def test_a_container_that_ends_restarts_the_pod(embedded, kubectl, namespace):
    """restartPolicy Always: the pod's containers restart together; each
    reports the restart, the one that ended its own exit code."""
    ns = namespace
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "again"},
           "spec": {"nodeName": "node2", "terminationGracePeriodSeconds": 2,
                    "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "987655"]},
                                   {"name": "side", "image": "busybox",
                                    "command": ["sh", "-c", "test -e /tmp/$(POD_UID).once || "
                                                "{ touch /tmp/$(POD_UID).once; sleep 1; exit 3; }; exec sleep 1000"],
                                    "env": [{"name": "POD_UID",
                                             "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}}]}]}}
    apply_pod(kubectl, ns, pod)
    uid = None
    try:
        def restarted_and_ready():
            p = kubectl.json("-n", ns, "get", "pod", "again")
            cs = p.get("status", {}).get("containerStatuses") or [{}]
            return p if ready(p) and all(c.get("restartCount", 0) >= 1 for c in cs) else None
        got = wait_until(restarted_and_ready, 60, "the pod to be Ready after its restart")
        uid = got["metadata"]["uid"]
        cs = {c["name"]: c for c in got["status"]["containerStatuses"]}
        assert cs["main"]["restartCount"] == cs["side"]["restartCount"] == 1, cs
        assert cs["side"]["lastState"]["terminated"]["exitCode"] == 3, cs
        assert cs["main"]["lastState"]["terminated"]["exitCode"] == 143, cs
        assert all("running" in c["state"] and c["ready"] for c in cs.values()), cs
    finally:
        if uid:
            try:
                os.unlink(f"/tmp/{uid}.once")
            except FileNotFoundError:
                pass
        kubectl.run("-n", ns, "delete", "pod", "again", "--wait=false", check=False)
        wait_until(lambda: kubectl.run("-n", ns, "get", "pod", "again", check=False).returncode != 0, 30,
                   "the pod to be deleted")


def apply_pod(kubectl, ns, pod):
    """A bare pod, once the namespace's default ServiceAccount exists (the
    ServiceAccount admission refuses pods in a namespace that has none yet)."""
    wait_until(lambda: kubectl.run("-n", ns, "get", "serviceaccount", "default", check=False).returncode == 0, 30,
               "the namespace's default ServiceAccount")
    kubectl.run("-n", ns, "apply", "-f", "-", input=json.dumps(pod))


def _cmdline(pid):
    try:
        return open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return None
