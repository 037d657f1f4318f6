"""A REAL node for the test control plane (scripts/k8s-realnode.sh): the
upstream kubelet with containerd, runc and the CNI bridge plugin runs a
Deployment's pod, which the real controllers and scheduler place on it, and
the kubelet reports it Ready.  The groundwork for the node daemon's
real-cluster mode (docs/k8s-realnode.md).

Skipped, with the reason, when the machine lacks the node's packages."""

import ipaddress
import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from k8senv import REPO, wait_until

SCRIPT = REPO / "scripts" / "k8s-realnode.sh"


def node_env():
    out = subprocess.run(["bash", str(SCRIPT), "env"], capture_output=True, text=True, check=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


NENV = node_env()
NODE = NENV["MYCE_K8S_NODE_NAME"]
STATE = Path(NENV["MYCE_K8S_NODE_STATE_DIR"])
KUBELET = NENV["MYCE_K8S_NODE_KUBELET"]
BRIDGE = "mycrn0"
POD_NET = ipaddress.ip_network("10.79.0.0/24")


def missing_prereqs():
    missing = [c for c in ("containerd", "ctr", "runc", "busybox", "nft") if not shutil.which(c)]
    missing += [p for p in ("/usr/lib/cni/bridge", "/usr/lib/cni/host-local", "/usr/lib/cni/loopback")
                if not os.access(p, os.X_OK)]
    return missing


def run_node(cmd):
    p = subprocess.run(["bash", str(SCRIPT), cmd], capture_output=True, text=True, timeout=3600)
    sys.stderr.write(p.stdout + p.stderr)
    return p


def node_leftovers():
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            exe = os.readlink(f"/proc/{pid}/exe").replace(" (deleted)", "")
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if exe == KUBELET or str(STATE) in cmdline:
            found.append(f"process {pid} {cmdline[:120]}")
    if STATE.exists():
        found.append(f"dir {STATE}")
    if Path(f"/sys/class/net/{BRIDGE}").exists():
        found.append(f"link {BRIDGE}")
    found += [f"cgroup {d}" for d in Path("/sys/fs/cgroup").glob("*/mycedrive-k8s-node")]
    found += [f"mount {line.split()[4]}" for line in open("/proc/self/mountinfo") if str(STATE) in line]
    ruleset = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True).stdout
    found += [f"nft chain {c}" for c in ("KUBE-FIREWALL", "KUBE-KUBELET-CANARY", "KUBE-IPTABLES-HINT")
              if c in ruleset]
    return found


@pytest.fixture(scope="module")
def realnode(controlplane):
    missing = missing_prereqs()
    if missing:
        pytest.skip(f"no real node here: missing {', '.join(missing)} "
                    "(apt-get install containerd runc containernetworking-plugins busybox-static)")
    up = run_node("up")
    try:
        assert up.returncode == 0, f"k8s-realnode.sh up failed ({up.returncode}); logs in /tmp/mycedrive-k8s-node-last-logs"
        yield NODE
    finally:
        down = run_node("down")
        assert down.returncode == 0, f"k8s-realnode.sh down failed ({down.returncode})"
        left = node_leftovers()
        assert not left, f"real node down left things behind: {left}"


def deployment(name):
    return json.dumps({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": {
                     "nodeSelector": {"mycedrive.io/realnode": "true"},
                     "tolerations": [{"key": "mycedrive.io/realnode", "operator": "Exists",
                                      "effect": "NoSchedule"}],
                     "automountServiceAccountToken": False,
                     "terminationGracePeriodSeconds": 1,
                     "containers": [{
                         "name": "web", "image": NENV["MYCE_K8S_NODE_IMAGE"], "imagePullPolicy": "Never",
                         "command": ["httpd", "-f", "-p", "8080", "-h", "/www"],
                         "ports": [{"containerPort": 8080}],
                         "readinessProbe": {"httpGet": {"path": "/index.html", "port": 8080},
                                            "periodSeconds": 1}}]}}}})


def ready(pod):
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", []))


def test_node_registers_ready_with_its_runtime(realnode, kubectl):
    node = kubectl.json("get", "node", realnode)
    info = node["status"]["nodeInfo"]
    assert info["kubeletVersion"] == "v1.35.4"
    assert info["containerRuntimeVersion"].startswith("containerd://")
    assert any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"])
    # Tainted, so that the other tests' pods stay off it.
    assert {"key": "mycedrive.io/realnode", "value": "true", "effect": "NoSchedule"} in node["spec"]["taints"]


def test_a_deployment_pod_runs_on_the_real_node_and_becomes_ready(realnode, kubectl, namespace):
    kubectl.run("-n", namespace, "apply", "-f", "-", input=deployment("web"))

    def ready_pod():
        pods = kubectl.json("-n", namespace, "get", "pods", "-l", "app=web")["items"]
        return next((p for p in pods if ready(p)), None)

    pod = wait_until(ready_pod, 90, "the Deployment's pod Ready on the real node")
    assert pod["spec"]["nodeName"] == realnode
    assert ipaddress.ip_address(pod["status"]["podIP"]) in POD_NET
    [cs] = pod["status"]["containerStatuses"]
    assert cs["ready"] and "running" in cs["state"] and cs["containerID"].startswith("containerd://")
    # The pod's network is real: the host reaches the server in it.
    with urllib.request.urlopen(f"http://{pod['status']['podIP']}:8080/index.html", timeout=5) as r:
        assert r.read() == b"mycedrive real node\n"
    dep = kubectl.json("-n", namespace, "get", "deployment", "web")
    assert dep["status"].get("readyReplicas") == 1

    # Deleted through the API, the kubelet stops and removes it.
    kubectl.run("-n", namespace, "delete", "deployment", "web", "--wait=false")
    wait_until(lambda: not kubectl.json("-n", namespace, "get", "pods", "-l", "app=web")["items"], 60,
               "the pod gone after its Deployment was deleted")


def test_up_and_down_refuse_without_the_session_lock(realnode, kubectl, tmp_path):
    """Another session (not holding the lock) changes nothing of this node."""
    before = (STATE / "pids" / "kubelet").read_text()
    env = dict(os.environ, MYCE_K8S_LOCK=str(tmp_path / "not-held.lock"))
    (tmp_path / "not-held.lock").touch()
    for cmd in ("up", "down"):
        p = subprocess.run(["bash", str(SCRIPT), cmd], capture_output=True, text=True, env=env, timeout=60)
        assert p.returncode != 0 and "flock" in p.stderr, p.stdout + p.stderr
    assert (STATE / "pids" / "kubelet").read_text() == before
    assert subprocess.run(["bash", str(SCRIPT), "status"], capture_output=True).returncode == 0
