"""The C Kubernetes client (lib/k8s.h) against the real test control plane:
requests and patches, an informer, 410 Gone recovery, and every way of
authenticating (bearer token, client certificate from data and from files,
token file rotation, in-cluster service account) with CA verification.

The checks themselves are in tests/k8s/k8s_client_check.c; each test runs one
of its subcommands and asserts on its exit status and output."""

import base64
import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from conftest import ENV, REPO, STATE

BUILD = Path(os.environ.get("MYCE_BUILD_DIR", "build"))
if not BUILD.is_absolute():
    BUILD = REPO / BUILD
CHECK = BUILD / "k8s_client_check"
# etcd's client URL (scripts/k8s-controlplane.sh: HOST, ETCD_CLIENT_PORT).
ETCD = ENV.get("MYCE_K8S_ETCD_URL", "http://127.0.0.1:12379")


def run_check(kubeconfig, namespace, *args, env=None, expect_ok=True, timeout=120):
    if not CHECK.exists():
        pytest.fail(f"{CHECK} is not built (ninja -C {BUILD})")
    p = subprocess.run([str(CHECK), str(kubeconfig), namespace, *args], capture_output=True, text=True,
                       timeout=timeout, env=env)
    sys.stdout.write(p.stdout)
    sys.stderr.write(p.stderr)
    if expect_ok:
        assert p.returncode == 0, f"k8s_client_check {' '.join(args)} failed:\n{p.stdout}{p.stderr}"
    return p


def admin(controlplane):
    return yaml.safe_load(Path(controlplane).read_text())


def write_kubeconfig(path, server, cluster, user, namespace=None):
    ctx = {"cluster": "c", "user": "u"}
    if namespace:
        ctx["namespace"] = namespace
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "x",
        "clusters": [{"name": "c", "cluster": {"server": server, **cluster}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "x", "context": ctx}],
    }))
    path.chmod(0o600)
    return path


def test_crud(controlplane, namespace):
    out = run_check(controlplane, namespace, "crud").stdout
    assert "ok: create 201" in out
    assert '409 Conflict: configmaps "crud" already exists' in out
    assert "merge patch replaces them (1)" in out


def test_informer(controlplane, namespace):
    out = run_check(controlplane, namespace, "informer").stdout
    assert "ok: informer: list, ADDED, MODIFIED, DELETED" in out


def test_gone_is_recovered_by_relist(controlplane, namespace):
    """Changes made while no watch runs, etcd compacted (as the apiserver does
    every 5 minutes), then a watch from resourceVersion 1: the server answers
    410 and the informer's re-list delivers exactly those changes."""
    out = run_check(controlplane, namespace, "gone", ETCD).stdout
    assert "ok: 410 Gone recovered by a re-list" in out


def test_client_certificate_data_and_files(controlplane, namespace, tmp_path):
    """The scheduler's kubeconfig carries its certificate as -data; a copy
    that names files relative to its own directory authenticates the same."""
    sched = STATE / "kube-scheduler.kubeconfig"
    out = run_check(sched, namespace, "whoami").stdout
    assert "user: system:kube-scheduler" in out

    (tmp_path / "pki").mkdir()
    shutil.copy(STATE / "pki" / "kube-scheduler.crt", tmp_path / "pki" / "client.crt")
    shutil.copy(STATE / "pki" / "kube-scheduler.key", tmp_path / "pki" / "client.key")
    shutil.copy(STATE / "pki" / "ca.crt", tmp_path / "pki" / "ca.crt")
    server = admin(controlplane)["clusters"][0]["cluster"]["server"]
    kc = write_kubeconfig(tmp_path / "config", server, {"certificate-authority": "pki/ca.crt"},
                          {"client-certificate": "pki/client.crt", "client-key": "pki/client.key"},
                          namespace="edge")
    out = run_check(kc, namespace, "whoami").stdout
    assert "user: system:kube-scheduler" in out
    assert "namespace: edge" in out


def test_wrong_ca_is_refused(controlplane, namespace, tmp_path):
    """CA verification is on: a server certificate from another CA fails the
    request with a TLS error, and with insecure-skip-tls-verify it passes."""
    key, crt = tmp_path / "other.key", tmp_path / "other.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(crt), "-subj", "/CN=other-ca", "-days", "1"],
                   check=True, capture_output=True)
    cfg = admin(controlplane)
    server = cfg["clusters"][0]["cluster"]["server"]
    token = cfg["users"][0]["user"]["token"]
    other = base64.b64encode(crt.read_bytes()).decode()
    kc = write_kubeconfig(tmp_path / "wrong-ca", server, {"certificate-authority-data": other}, {"token": token})
    p = run_check(kc, namespace, "whoami", expect_ok=False)
    assert p.returncode == 1
    assert "certificate" in p.stderr.lower(), p.stderr
    kc = write_kubeconfig(tmp_path / "insecure", server, {"insecure-skip-tls-verify": True}, {"token": token})
    assert "user: mycedrive-admin" in run_check(kc, namespace, "whoami").stdout


def test_token_file_rotation(controlplane, namespace, tmp_path):
    """A tokenFile is re-read after a 401 and the request retried once."""
    cfg = admin(controlplane)
    cluster = cfg["clusters"][0]["cluster"]
    token = cfg["users"][0]["user"]["token"]
    tf = tmp_path / "token"
    tf.write_text("not-the-token\n")
    kc = write_kubeconfig(tmp_path / "config", cluster["server"],
                          {"certificate-authority-data": cluster["certificate-authority-data"]},
                          {"tokenFile": "token"})
    out = run_check(kc, namespace, "rotate", str(tf), token).stdout
    assert "then the rotated token from the file: user mycedrive-admin" in out


def test_in_cluster_service_account(controlplane, namespace, tmp_path):
    """myce_k8s_new without a kubeconfig in a pod's environment: the service
    account directory (MYCE_K8S_SA_DIR here) gives token, CA and namespace."""
    cfg = admin(controlplane)
    cluster = cfg["clusters"][0]["cluster"]
    url = urlparse(cluster["server"])
    sa = tmp_path / "serviceaccount"
    sa.mkdir()
    (sa / "token").write_text(cfg["users"][0]["user"]["token"])
    (sa / "ca.crt").write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
    (sa / "namespace").write_text(namespace)
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env.update(KUBERNETES_SERVICE_HOST=url.hostname, KUBERNETES_SERVICE_PORT=str(url.port),
               MYCE_K8S_SA_DIR=str(sa))
    out = run_check("-", namespace, "whoami", env=env).stdout
    assert "user: mycedrive-admin" in out
    assert f"namespace: {namespace}" in out
    assert f"server: https://{url.hostname}:{url.port}" in out
