"""What the Kubernetes-mode tests share: where the test control plane's
binaries and state are, kubectl as its admin, polling, and the leftover check."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "k8s-controlplane.sh"


def script_env():
    out = subprocess.run(["bash", str(SCRIPT), "env"], capture_output=True, text=True, check=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


ENV = script_env()
STATE = Path(ENV["MYCE_K8S_STATE_DIR"])
BIN = Path(ENV["MYCE_K8S_BIN_DIR"])
KUBECTL = BIN / "kubectl"


def wait_until(cond, timeout, what):
    """Poll cond() until it returns something true; return that."""
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def leftovers():
    """Processes run from the control plane's binaries, and its state."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            exe = os.readlink(f"/proc/{pid}/exe").replace(" (deleted)", "")
        except OSError:
            continue
        if os.path.dirname(exe) == str(BIN) and os.path.basename(exe) != "kubectl":
            found.append(f"process {pid} {exe}")
    if STATE.exists():
        found.append(f"dir {STATE}")
    return found


def run_script(cmd):
    p = subprocess.run(["bash", str(SCRIPT), cmd], capture_output=True, text=True, timeout=7200)
    sys.stderr.write(p.stdout + p.stderr)
    return p


class Kubectl:
    """kubectl against the test control plane, as its admin."""

    def __init__(self, kubeconfig):
        self.kubeconfig = kubeconfig

    def run(self, *args, check=True, input=None, timeout=60):
        p = subprocess.run([str(KUBECTL), "--kubeconfig", str(self.kubeconfig), *args],
                           capture_output=True, text=True, input=input, timeout=timeout)
        if check and p.returncode != 0:
            pytest.fail(f"kubectl {' '.join(args)} failed ({p.returncode}): {p.stderr}{p.stdout}")
        return p

    def json(self, *args, check=True):
        p = self.run(*args, "-o", "json", check=check)
        return json.loads(p.stdout) if p.returncode == 0 else None
