"""Shared fixtures for the end-to-end tests: a real embedded cluster (network
namespaces, node daemons, coordinator, CRIU) brought up per test and torn
down afterwards, also on failure, with a check that nothing is left behind."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("MYCE_BUILD_DIR", "build"))
if not BUILD.is_absolute():
    BUILD = REPO / BUILD
CTL = BUILD / "mycectl"
LOADGEN = BUILD / "myce-loadgen"
RUN_DIR = Path("/run/mycedrive")

REDIS_CMD = ["redis-server", "--port", "6379", "--bind", "0.0.0.0", "--save", "", "--appendonly", "no",
             "--protected-mode", "no", "--enable-debug-command", "yes"]


def wait_until(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.01)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def ctl(*args, check=True, timeout=300, env=None):
    p = subprocess.run([str(CTL), *args], capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, **(env or {})})
    if check and p.returncode != 0:
        pytest.fail(f"mycectl {' '.join(args)} failed ({p.returncode}): {p.stderr}{p.stdout}")
    return p


def ctl_json(*args, **kw):
    p = ctl("-o", "json", *args, **kw)
    return json.loads(p.stdout) if p.stdout.strip() else None


def leftovers():
    """What of ours still exists: namespaces, links, nft table, processes."""
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
            exe = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            continue
        exe = exe.replace(" (deleted)", "")
        if exe.startswith(str(BUILD) + "/") and os.path.basename(exe) in ("myce-node", "myce-agent", "myce-podinit", "myce-coordinator", "myce-link"):
            found.append(f"process {pid} {exe}")
    if RUN_DIR.exists():
        found.append(f"dir {RUN_DIR}")
    return found


class Cluster:
    def __init__(self, nodes, rate, env):
        self.nodes, self.rate, self.env = nodes, rate, env

    def up(self):
        ctl("cluster", "up", "--nodes", str(self.nodes), "--rate", str(self.rate), "--delay", "0", env=self.env)
        self.state = json.loads((RUN_DIR / "cluster.json").read_text())

    def down(self):
        ctl("cluster", "down", check=False)

    def run_redis(self, name="redis", node="node1"):
        return ctl_json("run", name, "--node", node, "--port", "6379", "--", *REDIS_CMD)

    def migrate(self, app, to, expect="completed"):
        p = ctl("migrate", app, "--to", to, "-o", "json", check=False)
        m = json.loads(p.stdout)
        if expect is not None:
            assert m["outcome"] == expect, f"migration outcome {m['outcome']}: {m.get('reason')}"
        return m

    def node_pid(self, node):
        idx = int(node[4:])
        return self.state["node_pids"][idx - 1]

    def app(self, name):
        return next(a for a in ctl_json("get", "apps") if a["name"] == name)


LOCK = "/run/lock/mycedrive-cluster.lock"


@pytest.fixture
def make_cluster():
    """One embedded cluster at a time on this machine: every user of the
    cluster (tests, demo, benchmark) holds this lock while it has one."""
    import fcntl
    lockf = open(LOCK, "w")
    fcntl.flock(lockf, fcntl.LOCK_EX)
    made = []

    def make(nodes=3, rate=0, env=None):
        c = Cluster(nodes, rate, env)
        made.append(c)
        c.up()
        return c

    yield make
    try:
        # Keep the last run's logs and CRIU logs for post-mortems.
        if RUN_DIR.exists():
            subprocess.run(["rm", "-rf", "/tmp/mycedrive-last-test"])
            subprocess.run(["cp", "-r", str(RUN_DIR), "/tmp/mycedrive-last-test"], stderr=subprocess.DEVNULL)
        for c in made:
            c.down()
        left = leftovers()
        assert not left, f"cluster down left things behind: {left}"
    finally:
        lockf.close()


class Loadgen:
    """myce-loadgen in the background; stop() returns its JSON report."""

    count = 0

    def __init__(self, mode, addr, tmp_path, extra=()):
        Loadgen.count += 1
        tag = f"{mode}-{Loadgen.count}"
        self.ready = tmp_path / f"ready-{tag}"
        self.out = open(tmp_path / f"loadgen-{tag}.json", "w+")
        self.err = open(tmp_path / f"loadgen-{tag}.err", "w+")
        self.proc = subprocess.Popen([str(LOADGEN), mode, "--addr", addr, "--ready-file", str(self.ready),
                                      "-o", "json", *extra], stdout=self.out, stderr=self.err)
        wait_until(lambda: self.ready.exists() or self.proc.poll() is not None, 20, "loadgen ready")
        assert self.proc.poll() is None, f"loadgen exited: {self.errors()}"

    def errors(self):
        self.err.seek(0)
        return self.err.read()

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=120)
        self.out.seek(0)
        text = self.out.read()
        assert text.strip(), f"loadgen printed no report: {self.errors()}"
        return json.loads(text)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def loadgen(tmp_path):
    started = []

    def start(mode, addr, extra=()):
        lg = Loadgen(mode, addr, tmp_path, extra)
        started.append(lg)
        return lg

    yield start
    for lg in started:
        lg.kill()
