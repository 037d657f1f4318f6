"""The coordinator over TLS (myce-coordinator --tls-cert/--tls-key), with a
CA and server certificate made here by openssl, independently of the
cluster's own (lib/tlsgen.c): a client that trusts the CA gets answers and
still needs the token; plain HTTP, a client that does not trust the CA, and
a certificate for another address are refused.  The coordinator runs under
another name in a network namespace of its own (no cluster, no lock)."""

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import BUILD

PORT = 7790


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_pki(d: Path, ip="127.0.0.1", name="srv"):
    if not (d / "ca.pem").exists():
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=test CA", cwd=d)
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", f"{name}.key",
            "-out", f"{name}.csr", "-subj", f"/CN={ip}", cwd=d)
    (d / f"{name}.ext").write_text(f"subjectAltName=IP:{ip}\nbasicConstraints=CA:FALSE\n"
                                   "keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=d)


class Coordinator:
    def __init__(self, tmp: Path, cert, key):
        exe = tmp / "tls-coordinator"  # not "myce-coordinator": see apiharness.py
        shutil.copy2(BUILD / "myce-coordinator", exe)
        self.token = os.urandom(16).hex()
        (tmp / "token").write_text(self.token + "\n")
        self.log = tmp / "coordinator.log"
        args = [str(exe), "--listen", f"127.0.0.1:{PORT}", "--token-file", str(tmp / "token"),
                "--db", str(tmp / "c.db")]
        if cert:
            args += ["--tls-cert", str(cert), "--tls-key", str(key)]
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
                                          *args], stdout=log, stderr=subprocess.STDOUT)

    def curl(self, url, *args):
        p = subprocess.run(["nsenter", f"--net=/proc/{self.proc.pid}/ns/net", "curl", "-sS", "--max-time", "5",
                            "-o", "-", "-w", "\n%{http_code}", *args, url], capture_output=True, text=True,
                           timeout=30)
        body, _, code = p.stdout.rpartition("\n")
        return p.returncode, int(code or 0), body, p.stderr

    def wait_up(self, ca):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            if self.curl(f"https://127.0.0.1:{PORT}/healthz", "--cacert", str(ca))[1] == 200:
                return
            time.sleep(0.02)
        pytest.fail(f"coordinator not up: {self.log.read_text()}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def pki(tmp_path):
    if not shutil.which("openssl") or not shutil.which("curl"):
        pytest.skip("openssl and curl are needed")
    make_pki(tmp_path)
    return tmp_path


@pytest.fixture
def coordinator(pki):
    c = Coordinator(pki, pki / "srv.pem", pki / "srv.key")
    try:
        c.wait_up(pki / "ca.pem")
        yield c
    finally:
        c.stop()


def test_tls_with_ca_and_token(coordinator, pki):
    ca = ["--cacert", str(pki / "ca.pem")]
    base = f"https://127.0.0.1:{PORT}"
    auth = ["-H", f"Authorization: Bearer {coordinator.token}"]
    rc, code, body, err = coordinator.curl(f"{base}/v1/register", *ca, *auth, "-H", "Content-Type: application/json",
                                           "--data", json.dumps({"pod": "p1", "container": "main", "node": "node1"}))
    assert (rc, code) == (0, 200), err
    assert json.loads(body)["role"] == "start"
    rc, code, body, err = coordinator.curl(f"{base}/v1/containers", *ca, *auth)
    assert (rc, code) == (0, 200), err
    assert [c["pod"] for c in json.loads(body)] == ["p1"]
    # The token is still required over TLS, and a wrong one changes nothing.
    for hdr in ([], ["-H", "Authorization: Bearer wrong"]):
        rc, code, body, err = coordinator.curl(f"{base}/v1/register", *ca, *hdr, "--data",
                                               json.dumps({"pod": "p2", "container": "main", "node": "node1"}))
        assert code == 401 and "token" in json.loads(body)["error"]
    rc, code, body, err = coordinator.curl(f"{base}/v1/containers", *ca, *auth)
    assert len(json.loads(body)) == 1


def test_tls_refuses_plain_http_and_untrusted_clients(coordinator, pki):
    auth = ["-H", f"Authorization: Bearer {coordinator.token}"]
    # Plain HTTP on the TLS port: no HTTP answer at all.
    rc, code, body, err = coordinator.curl(f"http://127.0.0.1:{PORT}/v1/containers", *auth)
    assert rc != 0 and code == 0, (rc, code, body)
    # A client that trusts only the system's CAs: certificate verification fails (curl 60).
    rc, code, body, err = coordinator.curl(f"https://127.0.0.1:{PORT}/v1/containers", *auth)
    assert rc == 60 and code == 0, (rc, err)
    # Trusting another CA does not help.
    other = pki / "other"
    other.mkdir()
    make_pki(other)
    rc, code, body, err = coordinator.curl(f"https://127.0.0.1:{PORT}/v1/containers", *auth,
                                           "--cacert", str(other / "ca.pem"))
    assert rc == 60 and code == 0, (rc, err)
    assert coordinator.proc.poll() is None  # none of this hurt the server


def test_tls_certificate_for_another_address_is_refused(pki):
    make_pki(pki, ip="10.1.2.3", name="elsewhere")
    c = Coordinator(pki, pki / "elsewhere.pem", pki / "elsewhere.key")
    try:
        deadline = time.monotonic() + 20
        while "coordinator up" not in c.log.read_text():
            assert c.proc.poll() is None and time.monotonic() < deadline, c.log.read_text()
            time.sleep(0.02)
        rc, code, body, err = c.curl(f"https://127.0.0.1:{PORT}/healthz", "--cacert", str(pki / "ca.pem"))
        assert rc == 60 and code == 0, (rc, err)  # the name does not match
    finally:
        c.stop()


@pytest.mark.parametrize("case", ["cert-without-key", "mismatched-key", "missing-cert"])
def test_tls_bad_configuration_is_refused(pki, case):
    make_pki(pki, name="second")
    cert, key = {"cert-without-key": (pki / "srv.pem", None), "mismatched-key": (pki / "srv.pem", pki / "second.key"),
                 "missing-cert": (pki / "nope.pem", pki / "srv.key")}[case]
    c = Coordinator(pki, cert, key if key else None)
    if key is None:  # only --tls-cert given
        c.stop()
        args = [str(BUILD / "myce-coordinator"), "--listen", f"127.0.0.1:{PORT}", "--token-file",
                str(pki / "token"), "--db", str(pki / "c.db"), "--tls-cert", str(cert)]
        p = subprocess.run(["unshare", "--net", *args], capture_output=True, text=True, timeout=30)
        assert p.returncode == 2 and "--tls-key" in p.stderr
        return
    try:
        assert c.proc.wait(timeout=20) == 1
    finally:
        c.stop()
    log = c.log.read_text()
    assert ("TLS certificate" in log) and ("nope.pem" in log if case == "missing-cert" else True), log
    assert "coordinator up" not in log
    assert not (pki / "c.db").exists()  # refused before anything was touched
