"""The coordinator's Kubernetes mode against the real control plane: a
Deployment's Redis pod migrates node1 -> node2 through the real Deployment,
ReplicaSet, scheduler and EndpointSlice controllers (docs/k8s-migration.md),
while a client writes over one connection through the Service address; then
the same with the coordinator SIGKILLed and restarted mid-migration, and with
the destination's node daemon SIGKILLed during the transfer."""

import json
import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from embedded import CTL, ctl, make_embedded, redis_try, resp  # noqa: F401 (fixture)
from k8senv import KUBECTL, wait_until

REDIS = ["redis-server", "--port", "6379", "--bind", "0.0.0.0", "--save", "", "--appendonly", "no",
         "--protected-mode", "no"]
# ~4 MB of values that compress poorly: on a 2 Mbit/s link the transfer takes seconds.
INCOMPRESSIBLE = ("for i=1,2000 do redis.call('set','r'..i, string.rep(string.char(i%251), 10)"
                  "..redis.sha1hex(tostring(i)):rep(50)) end return 1")


def manifest(name, prestop_log):
    # S's preStop calls the coordinator's `remove` and keeps its answer.
    hook = ("curl -s -H \"Authorization: Bearer $(cat /run/mycedrive/token)\" -H 'Content-Type: application/json' "
            "-d '{\"pod\":\"$(POD_NAMESPACE)/$(POD_NAME)\",\"container\":\"redis\"}' "
            f"http://10.77.0.1:7700/v1/remove >> {prestop_log}; echo >> {prestop_log}")
    env = [{"name": n, "valueFrom": {"fieldRef": {"fieldPath": f"metadata.{f}"}}}
           for n, f in (("POD_NAME", "name"), ("POD_NAMESPACE", "namespace"))]
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
         "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                  "template": {"metadata": {"labels": {"app": name}},
                               "spec": {"terminationGracePeriodSeconds": 10,
                                        "containers": [{
                                            "name": "redis", "image": "redis:7",
                                            "command": REDIS[:1], "args": REDIS[1:],
                                            "ports": [{"name": "resp", "containerPort": 6379}],
                                            "env": env,
                                            "readinessProbe": {"tcpSocket": {"port": "resp"}, "periodSeconds": 1},
                                            "lifecycle": {"preStop": {"exec": {
                                                "command": ["sh", "-c", hook]}}}}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
         "spec": {"selector": {"app": name}, "ports": [{"port": 6379, "targetPort": 6379}]}},
    ]})


def ready(p):
    return any(c["type"] == "Ready" and c["status"] == "True" for c in p.get("status", {}).get("conditions", []))


class PodWatch:
    """kubectl get pods -w for the whole test: every pod UID ever seen."""

    def __init__(self, kubeconfig, ns):
        self.uids, self.lines = set(), []
        self.p = subprocess.Popen([str(KUBECTL), "--kubeconfig", str(kubeconfig), "-n", ns, "get", "pods", "-w",
                                   "-o", "jsonpath={.metadata.uid} {.metadata.name} {.spec.nodeName}{\"\\n\"}"],
                                  stdout=subprocess.PIPE, text=True)
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        for line in self.p.stdout:
            if line.strip():
                self.lines.append(line.strip())
                self.uids.add(line.split()[0])

    def stop(self):
        self.p.terminate()
        self.p.wait(timeout=10)
        self.t.join(timeout=10)


class Writer:
    """One connection through the Service address, one SET at a time; every
    acknowledged write is remembered."""

    def __init__(self, addr):
        self.s = socket.create_connection((addr, 6379), timeout=60)
        self.acked, self.error, self.stopping = [], None, False
        self.max_gap = 0.0
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        i = 0
        last = time.monotonic()
        try:
            while not self.stopping:
                assert resp(self.s, "SET", f"w:{i}", str(i)) == "+OK"
                now = time.monotonic()
                self.max_gap = max(self.max_gap, now - last)
                last = now
                self.acked.append(i)
                i += 1
                time.sleep(0.002)
        except Exception as e:  # noqa: BLE001 (recorded, asserted by the test)
            self.error = repr(e)

    def stop(self):
        self.stopping = True
        self.t.join(timeout=90)
        self.s.close()


def migrations():
    return json.loads(ctl("-o", "json", "get", "migrations").stdout)


def start_migration(pod, ns, mode="auto"):
    return subprocess.Popen([str(CTL), "-o", "json", "migrate", f"pod/{pod}", "-n", ns, "--to", "node2",
                             "--mode", mode], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def setup_app(kubectl, ns, tmp_path):
    """The Deployment on node1 (node2 cordoned while it is scheduled), its
    Service, and what must not change."""
    prestop_log = tmp_path / "prestop.log"
    kubectl.run("cordon", "node2")
    try:
        kubectl.run("-n", ns, "apply", "-f", "-", input=manifest("redis", prestop_log))
        s = wait_until(lambda: [p for p in kubectl.json("-n", ns, "get", "pods", "-l", "app=redis")["items"]
                                if ready(p)], 90, "a Ready redis pod")[0]
    finally:
        kubectl.run("uncordon", "node2")
    assert s["spec"]["nodeName"] == "node1"
    cluster_ip = kubectl.json("-n", ns, "get", "service", "redis")["spec"]["clusterIP"]
    wait_until(lambda: redis_try(cluster_ip, 6379, "PING") == "+PONG", 30, "the service to answer")
    before = {"deploy": kubectl.json("-n", ns, "get", "deployment", "redis"),
              "rs": kubectl.json("-n", ns, "get", "replicasets")["items"]}
    assert len(before["rs"]) == 1
    return s, cluster_ip, before, prestop_log


def assert_same_template(kubectl, ns, before, node):
    deploy = kubectl.json("-n", ns, "get", "deployment", "redis")
    rs = kubectl.json("-n", ns, "get", "replicasets")["items"]
    assert [r["metadata"]["name"] for r in rs] == [r["metadata"]["name"] for r in before["rs"]]
    assert rs[0]["metadata"]["labels"]["pod-template-hash"] == before["rs"][0]["metadata"]["labels"]["pod-template-hash"]
    assert deploy["metadata"]["generation"] == before["deploy"]["metadata"]["generation"]
    assert deploy["spec"]["template"] == before["deploy"]["spec"]["template"]
    wait_until(lambda: kubectl.json("-n", ns, "get", "deployment", "redis")["status"].get("readyReplicas") == 1 and
               kubectl.json("-n", ns, "get", "replicasets")["items"][0]["status"].get("readyReplicas") == 1 and
               kubectl.json("-n", ns, "get", "replicasets")["items"][0]["status"].get("replicas") == 1,
               60, "one ready replica in the Deployment and its ReplicaSet")
    pods = kubectl.json("-n", ns, "get", "pods")["items"]
    assert len(pods) == 1 and pods[0]["spec"]["nodeName"] == node and ready(pods[0])
    assert pods[0]["status"]["containerStatuses"][0]["restartCount"] == 0
    return pods[0]


def events(kubectl, ns, pod):
    return [e["reason"] for e in kubectl.json("-n", ns, "get", "events")["items"]
            if e["involvedObject"]["name"] == pod and e["reason"].startswith("Migration")]


def check_writes(w, cluster_ip):
    assert w.error is None, w.error
    assert len(w.acked) > 100, len(w.acked)
    s = socket.create_connection((cluster_ip, 6379), timeout=10)
    try:
        missing = [i for i in w.acked if resp(s, "GET", f"w:{i}") != str(i)]
    finally:
        s.close()
    assert not missing, f"{len(missing)} acknowledged writes missing, e.g. {missing[:5]}"


@pytest.mark.parametrize("kill", [None, "coordinator"])
def test_deployment_pod_migrates_node1_to_node2(make_embedded, kubectl, namespace, tmp_path, kill):
    ns = namespace
    embedded = make_embedded(rate=2 if kill else 0)
    watch = PodWatch(kubectl.kubeconfig, ns)
    try:
        s, cluster_ip, before, prestop_log = setup_app(kubectl, ns, tmp_path)
        if kill:
            assert redis_try(cluster_ip, 6379, "EVAL", INCOMPRESSIBLE, "0", timeout=30) is not None
        w = Writer(cluster_ip)
        wait_until(lambda: len(w.acked) > 50, 20, "the writer to be under way")
        mig = start_migration(s["metadata"]["name"], ns, mode="live" if kill else "auto")
        if kill == "coordinator":
            coord = embedded.state["coordinator_pid"]
            wait_until(lambda: any(m["phase"] == "transfer" for m in migrations()), 60, "the transfer phase")
            os.kill(coord, signal.SIGKILL)
            wait_until(lambda: not os.path.exists(f"/proc/{coord}") or
                       "zombie" in open(f"/proc/{coord}/status").read(), 30, "the coordinator to die")
            assert "restarted the coordinator" in embedded.repair().stdout
        out, err = mig.communicate(timeout=300)
        m = json.loads(out)
        assert m["outcome"] == "completed", (m, err)
        assert m["kubernetes"]["pod"] == s["metadata"]["name"]
        t_name = m["kubernetes"]["target_pod"]

        # The ReplicaSet adopts T and deletes the not-Ready S; S's preStop is told it is done.
        wait_until(lambda: kubectl.run("-n", ns, "get", "pod", s["metadata"]["name"], check=False).returncode != 0,
                   60, "the ReplicaSet to delete the source pod")
        t = assert_same_template(kubectl, ns, before, "node2")
        assert t["metadata"]["name"] == t_name
        assert t["metadata"]["labels"]["pod-template-hash"] == s["metadata"]["labels"]["pod-template-hash"]
        assert "mycedrive.io/migration" not in t["metadata"]["labels"]
        assert t["metadata"]["ownerReferences"][0]["name"] == before["rs"][0]["metadata"]["name"]
        assert t["metadata"]["annotations"]["mycedrive.io/migrated-from"] == f"node1/{s['metadata']['name']}"
        # S's address belongs to T now: nothing inside S reaches the network,
        # so its kubelet asks `remove` on its behalf and skips the hook.
        assert "remove: already migrated, exit; preStop hook skipped" in open("/run/mycedrive/logs/node1.log").read()
        assert not prestop_log.exists()
        wait_until(lambda: "MigrationCompleted" in events(kubectl, ns, t_name), 10, "the Event on T")
        assert {"MigrationStarted", "MigrationCompleted"} <= set(events(kubectl, ns, s["metadata"]["name"]))

        # The client kept its one connection; every acknowledged write is there.
        n = len(w.acked)
        wait_until(lambda: len(w.acked) > n + 50, 20, "writes after the migration")
        w.stop()
        check_writes(w, cluster_ip)
        print(f"longest gap between two replies: {w.max_gap * 1000:.0f} ms, timings {m['timings']}")
        # No pod but S and T was ever created.
        time.sleep(0.5)
        assert watch.uids == {s["metadata"]["uid"], t["metadata"]["uid"]}, watch.lines
    finally:
        watch.stop()
        kubectl.run("-n", ns, "delete", "deployment,service", "redis", "--wait=false", check=False)
        wait_until(lambda: not kubectl.json("-n", ns, "get", "pods")["items"], 60, "the pods to be deleted")


def test_destination_daemon_killed_during_transfer_rolls_back(make_embedded, kubectl, namespace, tmp_path):
    ns = namespace
    embedded = make_embedded(rate=2)
    watch = PodWatch(kubectl.kubeconfig, ns)
    try:
        s, cluster_ip, before, prestop_log = setup_app(kubectl, ns, tmp_path)
        assert redis_try(cluster_ip, 6379, "EVAL", INCOMPRESSIBLE, "0", timeout=30) is not None
        w = Writer(cluster_ip)
        wait_until(lambda: len(w.acked) > 50, 20, "the writer to be under way")
        mig = start_migration(s["metadata"]["name"], ns, mode="live")
        wait_until(lambda: any(m["phase"] == "transfer" for m in migrations()), 60, "the transfer phase")
        os.kill(embedded.node_pid("node2"), signal.SIGKILL)
        out, err = mig.communicate(timeout=300)
        m = json.loads(out)
        assert m["outcome"] == "rolled-back", (m, err)
        t_name = m["kubernetes"]["target_pod"]

        # The application serves on node1 again, S is Ready, T is gone.
        wait_until(lambda: kubectl.run("-n", ns, "get", "pod", t_name, check=False).returncode != 0, 30,
                   "the target pod to be deleted")
        got = wait_until(lambda: (lambda p: p if ready(p) else None)(
            kubectl.json("-n", ns, "get", "pod", s["metadata"]["name"])), 30, "the source to be Ready again")
        assert got["metadata"]["uid"] == s["metadata"]["uid"]
        assert_same_template(kubectl, ns, before, "node1")
        assert "MigrationRolledBack" in events(kubectl, ns, s["metadata"]["name"])
        n = len(w.acked)
        wait_until(lambda: len(w.acked) > n + 50, 20, "writes after the rollback")
        w.stop()
        check_writes(w, cluster_ip)
        assert redis_try(cluster_ip, 6379, "GET", "r7") is not None
        assert not prestop_log.exists()

        # The restarted daemon removes what its previous run left of T.
        assert "restarted the node daemon of node2" in embedded.repair().stdout
        wait_until(lambda: not [d for d in os.listdir("/run/mycedrive/pods") if d.startswith("2")], 30,
                   "the orphaned target pod to be removed on node2")
        assert watch.uids <= {s["metadata"]["uid"], m["kubernetes"]["dst_uid"]}, watch.lines
        assert len(watch.uids) == 2, watch.lines
    finally:
        watch.stop()
        kubectl.run("-n", ns, "delete", "deployment,service", "redis", "--wait=false", check=False)
        wait_until(lambda: not kubectl.json("-n", ns, "get", "pods")["items"], 60, "the pods to be deleted")
