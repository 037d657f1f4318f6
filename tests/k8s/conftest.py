"""Fixtures for the Kubernetes-mode tests: a real control plane (etcd,
kube-apiserver, kube-controller-manager, kube-scheduler) on loopback, started
once per test session by scripts/k8s-controlplane.sh and stopped at the end,
also on failure, with a check that nothing of it is left running.

The session holds /run/lock/mycedrive-k8s.lock throughout: one control plane
per machine, and the script refuses `up` without it."""

import fcntl
import sys
import uuid

import pytest

# ENV, REPO, SCRIPT, STATE, BIN, KUBECTL, wait_until are re-exported for the
# tests that import them from here (tests/k8s/test_k8s_client.py).
from k8senv import (BIN, ENV, KUBECTL, REPO, SCRIPT, STATE, Kubectl,  # noqa: F401
                    leftovers, run_script, wait_until)

LOCK = "/run/lock/mycedrive-k8s.lock"


@pytest.fixture(scope="session")
def controlplane():
    """The admin kubeconfig of a running, ready control plane."""
    lockf = open(LOCK, "w")
    try:
        fcntl.flock(lockf, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        sys.stderr.write(f"waiting for {LOCK} (another user of the test control plane)\n")
        fcntl.flock(lockf, fcntl.LOCK_EX)
    try:
        up = run_script("up")
        try:
            assert up.returncode == 0, f"k8s-controlplane.sh up failed ({up.returncode})"
            yield STATE / "admin.kubeconfig"
        finally:
            down = run_script("down")
            assert down.returncode == 0, f"k8s-controlplane.sh down failed ({down.returncode})"
            left = leftovers()
            assert not left, f"control plane down left things behind: {left}"
    finally:
        lockf.close()


@pytest.fixture(scope="session")
def kubectl(controlplane):
    return Kubectl(controlplane)


@pytest.fixture
def namespace(kubectl):
    """A namespace of this test's own, deleted afterwards (without waiting for
    its finalization, which needs no node)."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    kubectl.run("create", "namespace", name)
    yield name
    kubectl.run("delete", "namespace", name, "--wait=false", check=False)
