"""The Execution Agent as a real cluster's container entrypoint
(k8s/example/redis.yaml, docs/k8s-install.md): `myce-agent -- CMD` configured
from the environment, registering by pod name, and `myce-agent prestop`.

Started by hand, as a container runtime would start it (not PID 1 of a
fresh namespace: no mount setup), in a network namespace of the test's own
with a real myce-coordinator listening on its loopback.  No cluster."""

import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("MYCE_BUILD_DIR", "build"))
if not BUILD.is_absolute():
    BUILD = REPO / BUILD
URL = "http://127.0.0.1:7700"


def wait_for(cond, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


class Site:
    """A namespace with a coordinator; close() ends what it started, by PID."""

    def __init__(self, tmp):
        self.ns = f"magt-{uuid.uuid4().hex[:8]}"
        self.tmp, self.procs = tmp, []
        self.token = tmp / "token"
        self.token.write_text(uuid.uuid4().hex + "\n")
        subprocess.run(["ip", "netns", "add", self.ns], check=True)
        subprocess.run(["ip", "-n", self.ns, "link", "set", "lo", "up"], check=True)
        self.coord = self.spawn([str(BUILD / "myce-coordinator"), "--listen", "127.0.0.1:7700", "--token-file",
                                 str(self.token), "--db", str(tmp / "coordinator.db")], tmp / "coordinator.log")
        wait_for(lambda: self.curl("GET", "/healthz")[0] == 200, 20, "the coordinator")

    def spawn(self, argv, log, env=None):
        p = subprocess.Popen(["nsenter", f"--net=/run/netns/{self.ns}", *argv], stdout=open(log, "w"),
                             stderr=subprocess.STDOUT, env=env)
        self.procs.append(p)
        return p

    def run(self, argv, env):
        return subprocess.run(["nsenter", f"--net=/run/netns/{self.ns}", *argv], capture_output=True, text=True,
                              env=env, timeout=60)

    def curl(self, method, path):
        p = self.run(["curl", "-s", "-o", "-", "-w", "\n%{http_code}", "-X", method, "-H",
                      f"Authorization: Bearer {self.token.read_text().strip()}", URL + path], env=None)
        body, _, code = p.stdout.rpartition("\n")
        return int(code or 0), json.loads(body) if body.strip() else None

    def containers(self):
        return self.curl("GET", "/v1/containers")[1]

    def close(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        subprocess.run(["ip", "netns", "del", self.ns], check=False)


@pytest.fixture
def site(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    s = Site(tmp_path)
    try:
        yield s
    finally:
        s.close()
    assert not os.path.exists(f"/run/netns/{s.ns}")


def pod_env(site, agent_dir, **over):
    env = {"PATH": os.environ["PATH"], "MYCE_COORDINATOR": URL, "MYCE_TOKEN_FILE": str(site.token),
           "MYCE_POD_NAME": "web-7d9f-abcde", "MYCE_POD_NAMESPACE": "shop", "MYCE_POD_UID": str(uuid.uuid4()),
           "MYCE_NODE_NAME": "edge-3", "MYCE_CONTAINER_NAME": "web", "MYCE_AGENT_DIR": str(agent_dir)}
    env.update(over)
    return {k: v for k, v in env.items() if v is not None}


def children(pid):
    try:
        return [int(c) for t in os.listdir(f"/proc/{pid}/task")
                for c in open(f"/proc/{pid}/task/{t}/children").read().split()]
    except OSError:
        return []


def test_entrypoint_registers_by_pod_name_and_prestop_removes(site, tmp_path):
    agent_dir = tmp_path / "mycedrive"
    agent_dir.mkdir()
    env = pod_env(site, agent_dir)
    agent = site.spawn([str(BUILD / "myce-agent"), "--", "sleep", "300"], tmp_path / "agent.log", env=env)
    row = wait_for(lambda: [c for c in site.containers() if c["pod"] == "shop/web-7d9f-abcde"], 10,
                   "the agent's registration")[0]
    assert row["container"] == "web" and row["node"] == "edge-3" and row["role"] == "start"
    assert row["pod_id"] is None
    assert (agent_dir / "agent.sock").exists()
    app = wait_for(lambda: children(agent.pid), 10, "the application")[0]
    assert open(f"/proc/{app}/cmdline").read().split("\0")[0] == "sleep"
    # No mount setup outside a fresh mount namespace: the agent shares ours.
    assert os.readlink(f"/proc/{agent.pid}/ns/mnt") == os.readlink("/proc/self/ns/mnt")

    # preStop: remove answers "may exit" (not migrating); the registration goes.
    p = site.run([str(BUILD / "myce-agent"), "prestop"], env)
    assert p.returncode == 0, p.stderr
    assert "remove shop/web-7d9f-abcde web" in p.stdout
    assert not [c for c in site.containers() if c["pod"] == "shop/web-7d9f-abcde"]
    # Again: nothing registered any more, still nothing to keep.
    p = site.run([str(BUILD / "myce-agent"), "prestop"], env)
    assert p.returncode == 0 and "not registered" in p.stdout, (p.stdout, p.stderr)

    # SIGTERM (what the kubelet sends the container) stops the application, then the agent.
    agent.send_signal(signal.SIGTERM)
    assert agent.wait(timeout=20) == 0
    assert not os.path.exists(f"/proc/{app}") or "zombie" in open(f"/proc/{app}/status").read().lower()
    assert "started sleep" in (tmp_path / "agent.log").read_text()


def test_bad_configuration_is_refused_and_changes_nothing(site, tmp_path):
    agent_dir = tmp_path / "mycedrive"
    agent_dir.mkdir()
    for over, word in (({"MYCE_POD_NAME": None}, "MYCE_POD_NAME"), ({"MYCE_COORDINATOR": "127.0.0.1:7700"},
                                                                    "MYCE_COORDINATOR"),
                       ({"MYCE_NODE_NAME": None}, "MYCE_NODE_NAME"), ({"MYCE_POD_NAME": "Bad_Name"}, "names")):
        env = pod_env(site, agent_dir, **over)
        for argv in (["--", "sleep", "300"], ["prestop"]):
            p = site.run([str(BUILD / "myce-agent"), *argv], env)
            assert p.returncode == 2, (argv, over, p.stdout, p.stderr)
            assert word in p.stderr, (argv, p.stderr)
    assert site.containers() == []
    assert not list(agent_dir.iterdir())
    # A coordinator that cannot be reached: the hook fails (the kubelet logs it).
    p = site.run([str(BUILD / "myce-agent"), "prestop"], pod_env(site, agent_dir,
                                                                 MYCE_COORDINATOR="http://127.0.0.1:1"))
    assert p.returncode == 1 and "remove shop/web-7d9f-abcde web" in p.stderr, p.stderr
