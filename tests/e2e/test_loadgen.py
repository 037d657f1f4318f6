"""End-to-end checks of myce-loadgen against the real servers.

Each test starts a real server (redis-server, memcached, mosquitto) on a free
loopback port, runs myce-loadgen against it, freezes the server with SIGSTOP
for a measured time, and checks that the report shows that freeze as the
longest gap, with no write lost.  Run as root (memcached and mosquitto are
told to stay root).  The build directory comes from MYCE_BUILD_DIR
(default: build, relative to the repository root).
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("MYCE_BUILD_DIR", "build"))
if not BUILD.is_absolute():
    BUILD = REPO / BUILD
LOADGEN = BUILD / "myce-loadgen"

GAP_TOLERANCE_MS = 50


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(cond, timeout, what, proc=None):
    """Polls cond() every 10 ms; fails after timeout or if proc exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"{what}: process {proc.args[0]} exited with {proc.returncode}")
        time.sleep(0.01)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def accepts(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def stop_process(proc):
    """Ends a child by its PID, whatever state it is in (even stopped)."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.kill(proc.pid, signal.SIGCONT)
        proc.terminate()
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
    except ProcessLookupError:
        pass


def start_server(argv, port, log):
    binary = shutil.which(argv[0])
    if binary is None:
        pytest.skip(f"{argv[0]} is not installed")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_until(lambda: accepts(port), 10, f"{argv[0]} to listen on {port}", proc)
    except BaseException:
        stop_process(proc)
        raise
    return proc


@pytest.fixture
def loadgen_binary():
    if not LOADGEN.exists():
        pytest.fail(f"{LOADGEN} not built (set MYCE_BUILD_DIR or run the build)")
    return LOADGEN


@pytest.fixture
def redis(tmp_path):
    port = free_port()
    with open(tmp_path / "redis.log", "wb") as log:
        proc = start_server(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(tmp_path)],
            port, log)
    try:
        yield proc, port
    finally:
        stop_process(proc)


@pytest.fixture
def memcached(tmp_path):
    port = free_port()
    with open(tmp_path / "memcached.log", "wb") as log:
        proc = start_server(
            ["memcached", "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-u", "root"], port, log)
    try:
        yield proc, port
    finally:
        stop_process(proc)


@pytest.fixture
def mosquitto(tmp_path):
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\n"
                    "allow_anonymous true\n"
                    "persistence false\n"
                    "user root\n")
    with open(tmp_path / "mosquitto.log", "wb") as log:
        proc = start_server(["mosquitto", "-c", str(conf)], port, log)
    try:
        yield proc, port
    finally:
        stop_process(proc)


def run_with_freeze(loadgen, mode, server, port, tmp_path, freeze_s, after_s=1.0):
    """Runs the load generator, freezes the server for freeze_s, returns
    (report, measured freeze in ms)."""
    ready = tmp_path / "ready"
    trace = tmp_path / "trace.csv"
    stderr_path = tmp_path / "loadgen.stderr"
    argv = [str(loadgen), mode, "--addr", f"127.0.0.1:{port}", "--interval-ms", "1",
            "--ready-file", str(ready), "--trace", str(trace), "--keys-prefix",
            f"e2e-{os.getpid()}", "-o", "json"]
    with open(stderr_path, "wb") as err:
        lg = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL)
    try:
        wait_until(ready.exists, 15, "the load generator's first reply", lg)
        # Some steady state before the freeze.
        time.sleep(0.3)
        t0 = time.monotonic()
        os.kill(server.pid, signal.SIGSTOP)
        try:
            time.sleep(max(0.0, t0 + freeze_s - time.monotonic()))
        finally:
            os.kill(server.pid, signal.SIGCONT)
        frozen_ms = (time.monotonic() - t0) * 1000
        time.sleep(after_s)
        assert lg.poll() is None, f"load generator died: {stderr_path.read_text()}"
        lg.send_signal(signal.SIGINT)
        out, _ = lg.communicate(timeout=30)
    finally:
        stop_process(lg)
    assert lg.returncode == 0, f"exit {lg.returncode}: {stderr_path.read_text()}"
    report = json.loads(out)
    print(f"{mode}: froze {frozen_ms:.1f} ms; report {json.dumps(report)}")
    # The trace has a line per request.
    lines = trace.read_text().splitlines()
    assert lines[0] == "seq,send_us,reply_us,outcome"
    assert len(lines) - 1 == report["requests"]
    return report, frozen_ms


def assert_gap(report, freeze_ms, frozen_ms):
    gap = report["max_gap_ms"]
    assert abs(gap - freeze_ms) <= GAP_TOLERANCE_MS, (
        f"max_gap_ms {gap} not {freeze_ms} +- {GAP_TOLERANCE_MS} (froze {frozen_ms:.1f} ms)")
    # The gap is the freeze, not something else: it began about 300 ms in.
    assert report["max_gap_at_ms"] > 0


def test_redis_freeze(loadgen_binary, redis, tmp_path):
    server, port = redis
    report, frozen_ms = run_with_freeze(loadgen_binary, "redis", server, port, tmp_path, 0.5)
    assert_gap(report, 500, frozen_ms)
    assert report["verified"] is True, report.get("verify_error")
    assert report["missing"] == 0
    assert report["wrong"] == 0
    assert report["resets"] == 0
    assert report["acked"] > 500
    assert report["probes_failed"] == 0


def test_memcached_freeze(loadgen_binary, memcached, tmp_path):
    server, port = memcached
    report, frozen_ms = run_with_freeze(loadgen_binary, "memcached", server, port, tmp_path, 0.3)
    assert_gap(report, 300, frozen_ms)
    assert report["verified"] is True, report.get("verify_error")
    assert report["missing"] == 0
    assert report["wrong"] == 0
    assert report["resets"] == 0
    assert report["acked"] > 500


def test_mqtt_freeze(loadgen_binary, mosquitto, tmp_path):
    server, port = mosquitto
    report, frozen_ms = run_with_freeze(loadgen_binary, "mqtt", server, port, tmp_path, 0.3)
    assert_gap(report, 300, frozen_ms)
    assert report["missing"] == 0
    assert report["duplicates"] == 0
    assert report["wrong"] == 0
    assert report["acknowledged"] > 500
    assert report["out_of_order"] == 0
    assert report["pub_reconnects"] == 0 and report["sub_reconnects"] == 0


def test_unreachable_exits_1(loadgen_binary):
    port = free_port()  # nothing listens there
    proc = subprocess.run([str(loadgen_binary), "redis", "--addr", f"127.0.0.1:{port}",
                           "--duration", "0.5", "-o", "json"],
                          capture_output=True, timeout=30)
    assert proc.returncode == 1
    assert proc.stdout == b""
    assert b"never reachable" in proc.stderr


@pytest.mark.parametrize("argv", [
    [],
    ["redis"],
    ["nosuchmode", "--addr", "127.0.0.1:1"],
    ["redis", "--addr", "127.0.0.1"],
    ["redis", "--addr", "127.0.0.1:1", "--interval-ms", "0"],
    ["redis", "--addr", "127.0.0.1:1", "-o", "xml"],
])
def test_usage_errors_exit_2(loadgen_binary, argv):
    proc = subprocess.run([str(loadgen_binary)] + argv, capture_output=True, timeout=30)
    assert proc.returncode == 2
    assert proc.stderr.startswith(b"myce-loadgen: ")
