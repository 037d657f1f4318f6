"""Kubernetes mode of the embedded cluster against the real control plane:
the node daemons are the kubelets (Node, Lease, pods, status, preStop,
deletion), myce-proxy is kube-proxy, and the real Deployment, ReplicaSet,
scheduler and EndpointSlice controllers do the rest."""

import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from embedded import embedded, ctl, redis_try  # noqa: F401 (fixture)
from k8senv import wait_until

REDIS = ["redis-server", "--port", "6379", "--bind", "0.0.0.0", "--save", "", "--appendonly", "no",
         "--protected-mode", "no"]


def manifest(name, prestop_log):
    # The preStop hook leaves a side effect on the node's filesystem that
    # shows where it ran: $(POD_NAME) expanded by the kubelet, and the name of
    # PID 1 as the pod's own /proc shows it (the agent, in the pod's PID
    # namespace), and that the application still served when it ran.
    hook = (f"echo \"prestop $(POD_NAME) pid1=$(cat /proc/1/comm) host=$(hostname) "
            f"agent=$(test -S $MYCE_AGENT_SOCK && echo ok) redis=$(redis-cli -p 6379 ping)\" >> {prestop_log}")
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
         "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                  "template": {"metadata": {"labels": {"app": name}},
                               "spec": {"terminationGracePeriodSeconds": 10,
                                        "containers": [{
                                            "name": "redis", "image": "redis:7",
                                            "command": REDIS[:1], "args": REDIS[1:],
                                            "ports": [{"name": "resp", "containerPort": 6379}],
                                            "env": [{"name": "POD_NAME", "valueFrom": {
                                                "fieldRef": {"fieldPath": "metadata.name"}}}],
                                            "readinessProbe": {"tcpSocket": {"port": "resp"},
                                                               "periodSeconds": 1},
                                            "lifecycle": {"preStop": {"exec": {
                                                "command": ["sh", "-c", hook]}}}}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
         "spec": {"selector": {"app": name}, "ports": [{"port": 6379, "targetPort": 6379}]}},
    ]})


def condition(obj, ctype):
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == ctype), None)


def ready_pods(kubectl, ns, app):
    pods = kubectl.json("-n", ns, "get", "pods", "-l", f"app={app}")["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")
            and (condition(p, "Ready") or {}).get("status") == "True"]


def slice_ips(kubectl, ns, svc):
    slices = kubectl.json("-n", ns, "get", "endpointslices", "-l", f"kubernetes.io/service-name={svc}")["items"]
    return sorted(a for s in slices for e in (s.get("endpoints") or [])
                  if e.get("conditions", {}).get("ready") for a in e["addresses"])


def nft_maps(cluster_ip, pod_ip):
    out = subprocess.run(["nft", "list", "table", "ip", "mycedrive-k8s-svc"], capture_output=True, text=True).stdout
    return f"{cluster_ip} . tcp . 6379" in out and f"dnat to {pod_ip}:6379" in out


def test_nodes_registered_and_leased(embedded, kubectl):
    for i in (1, 2):
        node = kubectl.json("get", "node", f"node{i}")
        assert node["spec"]["podCIDR"] == f"10.78.{i}.0/24"
        assert {"type": "InternalIP", "address": f"10.77.0.{10 + i}"} in node["status"]["addresses"]
        assert condition(node, "Ready")["status"] == "True"
        assert int(node["status"]["allocatable"]["pods"]) > 0
        lease = kubectl.json("-n", "kube-node-lease", "get", "lease", f"node{i}")
        assert lease["spec"]["holderIdentity"] == f"node{i}"
        assert lease["metadata"]["ownerReferences"][0]["uid"] == node["metadata"]["uid"]
    # The lease is renewed (every 10 s), so the node-lifecycle controller
    # never sees it expire.
    first = kubectl.json("-n", "kube-node-lease", "get", "lease", "node1")["spec"]["renewTime"]
    wait_until(lambda: kubectl.json("-n", "kube-node-lease", "get", "lease", "node1")["spec"]["renewTime"] != first,
               25, "the lease to be renewed")


def test_deployment_service_prestop_replacement(embedded, kubectl, namespace, tmp_path):
    ns, app = namespace, "redis"
    prestop_log = tmp_path / "prestop.log"
    timings = {}
    t_apply = time.monotonic()
    kubectl.run("-n", ns, "apply", "-f", "-", input=manifest(app, prestop_log))

    # The scheduler binds the pod to one of our nodes, our kubelet runs it,
    # it turns Ready once Redis accepts on its port.
    pod = wait_until(lambda: (ready_pods(kubectl, ns, app) or [None])[0], 90, "a Ready redis pod")
    timings["apply -> pod Ready"] = time.monotonic() - t_apply
    node = pod["spec"]["nodeName"]
    assert node in ("node1", "node2")
    pod_ip = pod["status"]["podIP"]
    assert ipaddress.ip_address(pod_ip) in ipaddress.ip_network(f"10.78.{node[4:]}.0/24")
    assert pod["status"]["hostIP"] == f"10.77.0.{10 + int(node[4:])}"
    assert pod["status"]["phase"] == "Running"
    for c in ("PodScheduled", "Initialized", "ContainersReady", "Ready"):
        assert condition(pod, c)["status"] == "True", c
    cs = pod["status"]["containerStatuses"][0]
    assert cs["ready"] and "running" in cs["state"] and cs["restartCount"] == 0

    # The EndpointSlice controller fills the slice; the proxy maps the service.
    svc = kubectl.json("-n", ns, "get", "service", app)
    cluster_ip = svc["spec"]["clusterIP"]
    assert ipaddress.ip_address(cluster_ip) in ipaddress.ip_network("10.96.0.0/24")
    wait_until(lambda: slice_ips(kubectl, ns, app) == [pod_ip], 30, "the EndpointSlice to hold the pod")
    wait_until(lambda: nft_maps(cluster_ip, pod_ip), 30, "the proxy to map the service")
    timings["apply -> service mapped"] = time.monotonic() - t_apply

    # A client on the host (the client site) through the service address.
    assert redis_try(cluster_ip, 6379, "SET", "k8s", "works") == "+OK"
    assert redis_try(cluster_ip, 6379, "GET", "k8s") == "works"

    # A pod on the same node reaches the service too: masqueraded, its
    # neighbour's reply comes back through the translation instead of
    # around it.
    client = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client"},
              "spec": {"nodeName": node, "restartPolicy": "Never",
                       "containers": [{"name": "cli", "image": "redis:7",
                                       "command": ["redis-cli", "-h", cluster_ip, "-p", "6379",
                                                   "set", "from-pod", "yes"]}]}}
    kubectl.run("-n", ns, "apply", "-f", "-", input=json.dumps(client))
    done = wait_until(lambda: (lambda p: p if p["status"].get("phase") in ("Succeeded", "Failed") else None)(
        kubectl.json("-n", ns, "get", "pod", "client")), 30, "the client pod to finish")
    assert done["status"]["phase"] == "Succeeded", done["status"]
    assert redis_try(cluster_ip, 6379, "GET", "from-pod") == "yes"
    kubectl.run("-n", ns, "delete", "pod", "client")

    # Deleting the pod runs its preStop hook inside the pod, stops it and
    # finalizes it; the ReplicaSet's replacement comes up and the service
    # follows it.
    name = pod["metadata"]["name"]
    t0 = time.monotonic()
    kubectl.run("-n", ns, "delete", "pod", name, "--wait=false")
    wait_until(lambda: prestop_log.exists() and prestop_log.read_text().strip(), 15, "the preStop hook's side effect")
    timings["delete -> preStop ran"] = time.monotonic() - t0
    assert prestop_log.read_text().strip() == f"prestop {name} pid1=myce-agent host={name} agent=ok redis=PONG"
    wait_until(lambda: kubectl.run("-n", ns, "get", "pod", name, check=False).returncode != 0, 30,
               "the deleted pod to be finalized")
    timings["delete -> pod finalized"] = time.monotonic() - t0
    # Redis stops on SIGTERM at once: far inside the 10 s grace period.
    assert time.monotonic() - t0 < 9
    new = wait_until(lambda: [p for p in ready_pods(kubectl, ns, app) if p["metadata"]["name"] != name], 90,
                     "the replacement pod to be Ready")[0]
    new_ip = new["status"]["podIP"]
    wait_until(lambda: slice_ips(kubectl, ns, app) == [new_ip], 30, "the EndpointSlice to hold the new pod")
    wait_until(lambda: nft_maps(cluster_ip, new_ip), 30, "the proxy to map the new pod")
    timings["delete -> replacement mapped"] = time.monotonic() - t0
    wait_until(lambda: redis_try(cluster_ip, 6379, "SET", "after", "replacement") == "+OK", 10,
               "the service to reach the replacement")
    assert redis_try(cluster_ip, 6379, "GET", "after") == "replacement"
    # The old pod's state went with it (redeploy semantics, no migration here).
    assert redis_try(cluster_ip, 6379, "GET", "k8s") is None
    assert prestop_log.read_text().count("prestop") == 1
    reasons = {e["reason"] for e in kubectl.json("-n", ns, "get", "events",
                                                  "--field-selector", f"involvedObject.name={name}")["items"]
               if e.get("source", {}).get("component") == "kubelet"}
    assert {"Started", "Killing"} <= reasons, reasons

    # Without endpoints the service refuses at once (no time-out).
    kubectl.run("-n", ns, "delete", "deployment", app, "--wait=false")
    wait_until(lambda: not kubectl.json("-n", ns, "get", "pods")["items"], 60, "the pods to be deleted")
    wait_until(lambda: not os.listdir("/run/mycedrive/pods"), 10, "local pods to be removed")
    wait_until(lambda: _refused(cluster_ip, 6379), 30, "the service without endpoints to refuse connections")
    kubectl.run("-n", ns, "delete", "service", app)
    wait_until(lambda: cluster_ip not in subprocess.run(["nft", "list", "table", "ip", "mycedrive-k8s-svc"],
                                                        capture_output=True, text=True).stdout,
               30, "the proxy to drop the deleted service")
    sys.stderr.write("".join(f"  {k:30s} {v * 1000:7.0f} ms\n" for k, v in timings.items()))


def _refused(addr, port):
    t = time.monotonic()
    try:
        socket.create_connection((addr, port), timeout=5).close()
        return False
    except ConnectionRefusedError:
        return time.monotonic() - t < 1
    except OSError:
        return False


def test_restart_policy_and_adoption(embedded, kubectl, namespace):
    """An application that exits is restarted (restartCount); a restarted node
    daemon adopts the pods it runs, by UID, without restarting them."""
    ns = namespace
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "flaky"},
           "spec": {"nodeName": "node1", "terminationGracePeriodSeconds": 2,
                    "containers": [{"name": "c", "image": "busybox",
                                    "command": ["sh", "-c", "test -e /tmp/$(POD_UID).once || "
                                                "{ touch /tmp/$(POD_UID).once; exit 3; }; exec sleep 1000"],
                                    "env": [{"name": "POD_UID",
                                             "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}}]}]}}
    kubectl.run("-n", ns, "apply", "-f", "-", input=json.dumps(pod))
    def restarted_and_ready():
        p = kubectl.json("-n", ns, "get", "pod", "flaky")
        cs = p.get("status", {}).get("containerStatuses") or [{}]
        ok = (condition(p, "Ready") or {}).get("status") == "True" and cs[0].get("restartCount", 0) >= 1
        return p if ok else None
    # (Its first run may look Ready for a moment: no probe, and it started.)
    got = wait_until(restarted_and_ready, 60, "the pod to be Ready after its restart")
    cs = got["status"]["containerStatuses"][0]
    assert cs["restartCount"] == 1
    assert cs["lastState"]["terminated"]["exitCode"] == 3
    uid, ip = got["metadata"]["uid"], got["status"]["podIP"]
    try:
        os.unlink(f"/tmp/{uid}.once")
    except FileNotFoundError:
        pass

    agents = {p for p in os.listdir("/proc") if p.isdigit() and _exe(p) == "myce-agent"}
    os.kill(embedded.node_pid("node1"), signal.SIGKILL)
    embedded.repair()
    # The pod keeps running: same agent, same address, no restart counted.
    wait_until(lambda: _node_log_has("node1", "adopted local pod"), 30, "the new daemon to adopt the pod")
    again = kubectl.json("-n", ns, "get", "pod", "flaky")
    assert again["status"]["podIP"] == ip
    assert again["status"]["containerStatuses"][0]["restartCount"] == 1
    assert agents <= {p for p in os.listdir("/proc") if p.isdigit() and _exe(p) == "myce-agent"}

    # A pod the API lost while the daemon was down is removed locally.
    os.kill(embedded.node_pid("node1"), signal.SIGKILL)
    kubectl.run("-n", ns, "delete", "pod", "flaky", "--grace-period=0", "--force")
    embedded.repair()
    wait_until(lambda: not os.listdir("/run/mycedrive/pods"), 30, "the orphaned local pod to be removed")


def test_grace_period_bounds_prestop_and_shutdown(embedded, kubectl, namespace):
    """A preStop hook that outlasts the grace period is killed at its end, and
    an application that ignores SIGTERM is killed then too: the pod is gone
    about one grace period after the delete, not later."""
    ns, grace = namespace, 3
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "stubborn"},
           "spec": {"nodeName": "node2", "terminationGracePeriodSeconds": grace,
                    "containers": [{"name": "c", "image": "busybox",
                                    "command": ["sh", "-c", "trap '' TERM; while :; do sleep 0.1; done"],
                                    "lifecycle": {"preStop": {"exec": {"command": ["sleep", "60"]}}}}]}}
    kubectl.run("-n", ns, "apply", "-f", "-", input=json.dumps(pod))
    wait_until(lambda: (condition(kubectl.json("-n", ns, "get", "pod", "stubborn"), "Ready") or {}).get("status")
               == "True", 60, "the pod to be Ready")
    t0 = time.monotonic()
    kubectl.run("-n", ns, "delete", "pod", "stubborn", "--wait=false")
    wait_until(lambda: kubectl.run("-n", ns, "get", "pod", "stubborn", check=False).returncode != 0, 30,
               "the pod to be finalized")
    took = time.monotonic() - t0
    assert grace - 0.5 < took < grace + 4, f"pod gone after {took:.1f} s with a {grace} s grace period"
    wait_until(lambda: not os.listdir("/run/mycedrive/pods"), 10, "the local pod to be removed")
    events = kubectl.json("-n", ns, "get", "events", "--field-selector", "involvedObject.name=stubborn")["items"]
    assert any(e["reason"] == "FailedPreStopHook" for e in events), [e["reason"] for e in events]


def test_pods_that_end(embedded, kubectl, namespace):
    """restartPolicy Never: an application that exits ends the pod, Succeeded
    with code 0, Failed otherwise, with the exit code reported."""
    ns = namespace
    for name, code in (("ok", 0), ("bad", 4)):
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
               "spec": {"nodeName": "node1", "restartPolicy": "Never",
                        "containers": [{"name": "c", "image": "busybox",
                                        "command": ["sh", "-c", f"sleep 0.5; exit {code}"]}]}}
        kubectl.run("-n", ns, "apply", "-f", "-", input=json.dumps(pod))
    for name, code, phase in (("ok", 0, "Succeeded"), ("bad", 4, "Failed")):
        got = wait_until(lambda: (lambda p: p if p["status"].get("phase") == phase else None)(
            kubectl.json("-n", ns, "get", "pod", name)), 30, f"pod {name} to be {phase}")
        cs = got["status"]["containerStatuses"][0]
        assert cs["state"]["terminated"]["exitCode"] == code
        assert cs["restartCount"] == 0 and not cs["ready"]
        assert condition(got, "Ready")["status"] == "False"
    kubectl.run("-n", ns, "delete", "pod", "ok", "bad")
    wait_until(lambda: not os.listdir("/run/mycedrive/pods"), 10, "the local pods to be removed")


def test_service_balances_over_ready_endpoints(embedded, kubectl, namespace):
    """Two replicas: the proxy spreads new connections over both endpoints."""
    ns, app = namespace, "web"
    kubectl.run("-n", ns, "apply", "-f", "-", input=manifest(app, "/dev/null"))
    kubectl.run("-n", ns, "scale", "deployment", app, "--replicas=2")
    pods = wait_until(lambda: (lambda r: r if len(r) == 2 else None)(ready_pods(kubectl, ns, app)), 90,
                      "two Ready replicas")
    ips = sorted(p["status"]["podIP"] for p in pods)
    wait_until(lambda: slice_ips(kubectl, ns, app) == ips, 30, "the EndpointSlice to hold both")
    cluster_ip = kubectl.json("-n", ns, "get", "service", app)["spec"]["clusterIP"]
    wait_until(lambda: all(nft_maps(cluster_ip, ip) for ip in ips), 30, "the proxy to map both endpoints")
    # Each Redis has its own run_id: count the distinct ones the service reaches.
    seen = set()
    for _ in range(40):
        info = redis_try(cluster_ip, 6379, "INFO", "server") or ""
        seen |= {l.split(":", 1)[1].strip() for l in info.splitlines() if l.startswith("run_id:")}
        if len(seen) == 2:
            break
    assert len(seen) == 2, f"the service reached {len(seen)} of 2 replicas"
    kubectl.run("-n", ns, "delete", "deployment,service", app, "--wait=false")
    wait_until(lambda: not kubectl.json("-n", ns, "get", "pods")["items"], 60, "the pods to be deleted")


def _exe(pid):
    try:
        return os.path.basename(os.readlink(f"/proc/{pid}/exe"))
    except OSError:
        return None


def _node_log_has(node, text):
    try:
        return text in open(f"/run/mycedrive/logs/{node}.log").read()
    except OSError:
        return False
