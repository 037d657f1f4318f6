"""The test control plane is real: its controllers and scheduler act on what
kubectl creates, and scripts/k8s-controlplane.sh manages it safely."""

import ipaddress
import json
import subprocess
import uuid

import pytest

from k8senv import ENV, REPO, SCRIPT, STATE, wait_until

SERVICE_RANGE = ipaddress.ip_network("10.96.0.0/24")


def app_manifest(name, node_label):
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": name},
         "spec": {"replicas": 1,
                  "selector": {"matchLabels": {"app": name}},
                  "template": {"metadata": {"labels": {"app": name}},
                               "spec": {"nodeSelector": {"mycedrive.test/node": node_label},
                                        "containers": [{"name": "app", "image": "example.invalid/app:1",
                                                        "ports": [{"containerPort": 6379}]}]}}}},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": name},
         "spec": {"selector": {"app": name}, "ports": [{"port": 6379, "targetPort": 6379}]}},
    ]})


def owned_by(obj, kind, name):
    return any(r["kind"] == kind and r["name"] == name and r.get("controller")
               for r in obj["metadata"].get("ownerReferences", []))


def condition(obj, ctype):
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == ctype), None)


def test_server_is_the_pinned_release(kubectl):
    v = json.loads(kubectl.run("version", "-o", "json").stdout)
    assert v["serverVersion"]["gitVersion"] == ENV["MYCE_K8S_VERSION"]
    assert v["clientVersion"]["gitVersion"] == ENV["MYCE_K8S_VERSION"]


def test_controllers_and_scheduler_place_a_deployment(kubectl, namespace):
    """Deployment -> ReplicaSet -> Pod by the real controllers; the scheduler
    leaves the pod Pending while no node fits, then binds it to the Node that
    is registered (as mycedrive's node daemon will register its own)."""
    ns = ["-n", namespace]
    label = uuid.uuid4().hex[:8]
    node = f"test-node-{label}"
    kubectl.run("apply", *ns, "-f", "-", input=app_manifest("web", label))
    try:
        rs = wait_until(lambda: next((r for r in kubectl.json("get", "replicasets", *ns)["items"]
                                      if owned_by(r, "Deployment", "web")), None),
                        60, "the deployment controller to create a ReplicaSet")
        rs_name = rs["metadata"]["name"]
        pod = wait_until(lambda: next((p for p in kubectl.json("get", "pods", *ns)["items"]
                                       if owned_by(p, "ReplicaSet", rs_name)), None),
                         60, "the replicaset controller to create a Pod")
        pod_name = pod["metadata"]["name"]

        def unschedulable():
            p = kubectl.json("get", "pod", pod_name, *ns)
            c = condition(p, "PodScheduled")
            return p if c and c["status"] == "False" and c["reason"] == "Unschedulable" else None
        p = wait_until(unschedulable, 60, "the scheduler to find no node for the pod")
        assert p["status"]["phase"] == "Pending"
        assert not p["spec"].get("nodeName")

        svc = kubectl.json("get", "service", "web", *ns)
        assert ipaddress.ip_address(svc["spec"]["clusterIP"]) in SERVICE_RANGE
        wait_until(lambda: kubectl.json("get", "endpointslices", *ns, "-l",
                                        "kubernetes.io/service-name=web")["items"],
                   60, "the endpointslice controller to create the Service's EndpointSlice")

        # A Node that fits: labelled for the pod, Ready, with room for pods.
        kubectl.run("create", "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": node, "labels": {"mycedrive.test/node": label,
                                                  "kubernetes.io/hostname": node}}}))
        kubectl.run("patch", "node", node, "--subresource=status", "--type=merge", "-p", json.dumps({
            "status": {"capacity": {"cpu": "2", "memory": "4Gi", "pods": "10"},
                       "allocatable": {"cpu": "2", "memory": "4Gi", "pods": "10"},
                       "conditions": [{"type": "Ready", "status": "True", "reason": "TestNode",
                                       "message": "registered by the test"}]}}))
        bound = wait_until(lambda: kubectl.json("get", "pod", pod_name, *ns)["spec"].get("nodeName"),
                           60, "the scheduler to bind the pod to the new node")
        assert bound == node
        events = kubectl.json("get", "events", *ns, "--field-selector",
                              f"involvedObject.name={pod_name},reason=Scheduled")["items"]
        assert events and node in events[0]["message"]
    finally:
        kubectl.run("delete", "node", node, "--ignore-not-found", "--wait=false", check=False)


def test_manifests_pass_server_side_dry_run(kubectl):
    """Every manifest in k8s/manifests/ is accepted by the API server's
    validation and admission (server-side dry-run: nothing is created)."""
    yaml = pytest.importorskip("yaml")
    mdir = REPO / "k8s" / "manifests"
    files = sorted(p for p in mdir.rglob("*") if p.suffix in (".yaml", ".yml", ".json")) if mdir.is_dir() else []
    if not files:
        pytest.skip("no manifests in k8s/manifests/ yet")
    # Objects in a namespace that the manifests themselves create cannot be
    # dry-run before it exists: create those namespaces for real first.
    for f in files:
        for doc in yaml.safe_load_all(f.read_text()):
            if doc and doc.get("kind") == "Namespace":
                name = doc["metadata"]["name"]
                if kubectl.run("get", "namespace", name, check=False).returncode != 0:
                    kubectl.run("create", "namespace", name)
    p = kubectl.run("apply", "--dry-run=server", "-R", "-f", str(mdir))
    assert "(server dry run)" in p.stdout


def test_status_reports_every_component_ready(controlplane):
    p = subprocess.run(["bash", str(SCRIPT), "status"], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    for c in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        assert f"{c}: running" in p.stdout and "NOT ready" not in p.stdout


def test_up_again_changes_nothing(controlplane):
    """`up` on a ready control plane keeps it: same processes, same CA."""
    pids = {f.name: f.read_text() for f in (STATE / "pids").iterdir()}
    ca = (STATE / "pki" / "ca.crt").read_bytes()
    p = subprocess.run(["bash", str(SCRIPT), "up"], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "already up" in p.stdout
    assert {f.name: f.read_text() for f in (STATE / "pids").iterdir()} == pids
    assert (STATE / "pki" / "ca.crt").read_bytes() == ca


def test_up_refuses_without_the_session_lock(controlplane, tmp_path):
    """A caller that does not hold the lock gets a clear error, and nothing is
    started or written."""
    state = tmp_path / "state"
    p = subprocess.run(["bash", str(SCRIPT), "up"], capture_output=True, text=True, timeout=60,
                       env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                            "MYCE_K8S_LOCK": str(tmp_path / "unheld.lock"),
                            "MYCE_K8S_STATE_DIR": str(state)})
    assert p.returncode != 0
    assert "hold an exclusive flock" in p.stderr
    assert not state.exists()


def test_down_refuses_without_the_session_lock(controlplane, tmp_path):
    """Another session's control plane is not stopped by a caller without the
    lock: the error says so and the state stays."""
    state = tmp_path / "state"
    (state / "pids").mkdir(parents=True)
    p = subprocess.run(["bash", str(SCRIPT), "down"], capture_output=True, text=True, timeout=60,
                       env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                            "MYCE_K8S_LOCK": str(tmp_path / "unheld.lock"),
                            "MYCE_K8S_STATE_DIR": str(state)})
    assert p.returncode != 0
    assert "hold an exclusive flock" in p.stderr
    assert (state / "pids").is_dir()


def test_a_node_identity_is_held_to_its_own_node(controlplane, kubectl):
    """A client certificate from `kubeconfig system:node:N system:nodes` is
    that node's kubelet to the Node authorizer and the NodeRestriction
    admission plugin: it may register its own Node and no other."""
    name = f"own-{uuid.uuid4().hex[:8]}"
    p = subprocess.run(["bash", str(SCRIPT), "kubeconfig", f"system:node:{name}", "system:nodes"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    node_kubectl = type(kubectl)(p.stdout.strip())
    try:
        own = node_kubectl.run("create", "-f", "-", input=json.dumps(
            {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}))
        assert "created" in own.stdout
        other = node_kubectl.run("create", "-f", "-", check=False, input=json.dumps(
            {"apiVersion": "v1", "kind": "Node", "metadata": {"name": f"{name}-other"}}))
        assert other.returncode != 0 and "Forbidden" in other.stderr, other.stderr
        secrets = node_kubectl.run("get", "secrets", "-A", check=False)
        assert secrets.returncode != 0 and "Forbidden" in secrets.stderr, secrets.stderr
    finally:
        kubectl.run("delete", "node", name, f"{name}-other", "--ignore-not-found", "--wait=false", check=False)


def test_kubeconfig_refuses_a_bad_user_name(controlplane):
    users = STATE / "users"
    before = sorted(users.iterdir()) if users.exists() else []
    p = subprocess.run(["bash", str(SCRIPT), "kubeconfig", "bad/name"], capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "USER must be" in p.stderr
    assert (sorted(users.iterdir()) if users.exists() else []) == before
