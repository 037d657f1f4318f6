"""The embedded cluster in Kubernetes mode for the tests: `mycectl cluster up
--kubeconfig` under the embedded cluster's lock, `cluster down` afterwards
(also on failure), with a check that nothing of it is left behind, and a
small RESP client for Redis through the service address."""

import fcntl
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from k8senv import REPO, Kubectl

BUILD = Path(os.environ.get("MYCE_BUILD_DIR", "build"))
if not BUILD.is_absolute():
    BUILD = REPO / BUILD
CTL = BUILD / "mycectl"
RUN_DIR = Path("/run/mycedrive")
CLUSTER_LOCK = "/run/lock/mycedrive-cluster.lock"
OUR_PROGRAMS = ("myce-node", "myce-agent", "myce-podinit", "myce-coordinator", "myce-coordinator-k8s", "myce-link", "myce-proxy")


def ctl(*args, check=True, timeout=300, env=None):
    """mycectl; env: extra environment (e.g. MYCE_FAULT for the daemons it starts)."""
    p = subprocess.run([str(CTL), *args], capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, **env} if env else None)
    if check and p.returncode != 0:
        pytest.fail(f"mycectl {' '.join(args)} failed ({p.returncode}): {p.stderr}{p.stdout}")
    return p


def leftovers():
    """Namespaces, links, nft tables, processes and state of the embedded cluster."""
    found = []
    ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    found += [f"netns {l.split()[0]}" for l in ns.splitlines() if l.startswith("myce-")]
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    found += [f"link {l.split(':')[1].strip()}" for l in links.splitlines()
              if l.split(":")[1].strip().split("@")[0].startswith(("myce", "mycp"))]
    nft = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    found += [f"nft {l}" for l in nft.splitlines() if "mycedrive" in l or "myce-" in l]
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            exe = os.readlink(f"/proc/{pid}/exe").replace(" (deleted)", "")
        except OSError:
            continue
        if exe.startswith(str(BUILD) + "/") and os.path.basename(exe) in OUR_PROGRAMS:
            found.append(f"process {pid} {exe}")
    if RUN_DIR.exists():
        found.append(f"dir {RUN_DIR}")
    return found


class Embedded:
    def __init__(self, kubeconfig, nodes, rate=0, env=None):
        self.kubeconfig, self.nodes, self.rate, self.env = kubeconfig, nodes, rate, env

    def up(self):
        p = ctl("cluster", "up", "--nodes", str(self.nodes), "--rate", str(self.rate), "--delay", "0",
                "--kubeconfig", str(self.kubeconfig), env=self.env)
        sys.stderr.write(p.stdout)
        self.state = json.loads((RUN_DIR / "cluster.json").read_text())

    def node_pid(self, node):
        return self.state["node_pids"][int(node[4:]) - 1]

    def repair(self):
        p = ctl("cluster", "up", "--nodes", str(self.nodes), "--kubeconfig", str(self.kubeconfig))
        self.state = json.loads((RUN_DIR / "cluster.json").read_text())
        return p

    def down(self):
        if RUN_DIR.exists():
            subprocess.run(["rm", "-rf", "/tmp/mycedrive-last-k8s-test"])
            subprocess.run(["cp", "-r", str(RUN_DIR), "/tmp/mycedrive-last-k8s-test"], stderr=subprocess.DEVNULL)
        return ctl("cluster", "down", check=False)


@pytest.fixture
def embedded(controlplane):
    """An embedded cluster of 2 nodes in Kubernetes mode against the test
    control plane."""
    yield from _embedded(Embedded(controlplane, 2))


@pytest.fixture
def make_embedded(controlplane):
    """A factory: make_embedded(rate=MBIT, env={...}) brings the cluster up
    (2 nodes) with shaped links and extra daemon environment; one per test."""
    gens = []

    def make(rate=0, env=None):
        g = _embedded(Embedded(controlplane, 2, rate=rate, env=env))
        gens.append(g)
        return next(g)

    yield make
    for g in gens:
        next(g, None)


def _embedded(c):
    lockf = open(CLUSTER_LOCK, "w")
    fcntl.flock(lockf, fcntl.LOCK_EX)
    try:
        c.up()
        yield c
    finally:
        try:
            down = c.down()
            assert down.returncode == 0, f"cluster down failed: {down.stderr}"
            left = leftovers()
            assert not left, f"cluster down left things behind: {left}"
            # The Node objects it registered are gone too (their Leases with them).
            kubectl = Kubectl(c.kubeconfig)
            nodes = [n["metadata"]["name"] for n in kubectl.json("get", "nodes")["items"]]
            assert not [n for n in nodes if n.startswith("node")], f"Node objects left: {nodes}"
        finally:
            lockf.close()


def resp(sock, *args):
    """One Redis command over an open connection (RESP); returns the reply."""
    out = f"*{len(args)}\r\n" + "".join(f"${len(str(a).encode())}\r\n{a}\r\n" for a in args)
    sock.sendall(out.encode())
    f = sock.makefile("rb")
    line = f.readline().decode().rstrip("\r\n")
    if line[0] in "+-:":
        return line
    if line[0] == "$":
        n = int(line[1:])
        return None if n < 0 else f.read(n + 2)[:-2].decode()
    raise AssertionError(f"unexpected reply {line!r}")


def redis_try(addr, port, *args, timeout=2):
    """The command's reply, or None when the server cannot be reached."""
    try:
        with socket.create_connection((addr, port), timeout=timeout) as s:
            s.settimeout(timeout)
            return resp(s, *args)
    except OSError:
        return None
