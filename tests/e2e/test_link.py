"""myce-link, the userspace wire with one-way delay and rate between two TAP
devices (this kernel has no netem): the RTT is twice the delay, a rate paces a
TCP bulk transfer, an unshaped link is fast, a full queue drops its tail and
counts it, order is kept, and start, stop and bad input are clean.

Each test builds its own wire: network namespaces mlt-a and mlt-b, TAPs mlt-ta
and mlt-tb created in this namespace, the daemon attached to both, then each
TAP moved into its namespace as 10.199.0.1/24 and 10.199.0.2/24 -- the same
steps as docs/link.md gives for a cluster node.  Everything is named mlt-*
and removed afterwards, also on failure.  Run as root; the build directory
comes from MYCE_BUILD_DIR (default: build, relative to the repository root).
"""

import fcntl
import os
import re
import signal
import statistics
import struct
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("MYCE_BUILD_DIR", "build"))
if not BUILD.is_absolute():
    BUILD = REPO / BUILD
LINK = BUILD / "myce-link"

NS = ("mlt-a", "mlt-b")
TAPS = ("mlt-ta", "mlt-tb")
IPS = ("10.199.0.1", "10.199.0.2")
PORT = 5001
TUNSETIFF, IFF_TAP, IFF_NO_PI = 0x400454CA, 0x0002, 0x1000

# ICMP echo over a raw socket (root), so that the test needs no ping(8).
# argv: dst count interval_s; prints one RTT in ms per line ("-" if lost).
# The send time is taken before sendto: a daemon that preempts us right
# after the frame is queued must not make an RTT look shorter.
PING = r"""
import os, select, socket, struct, sys, time
dst, n, interval = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
def csum(b):
    s = sum(struct.unpack(f"!{len(b)//2}H", b)); s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
ident, sent, rtt, seq, nxt, end = os.getpid() & 0xffff, {}, {}, 0, time.monotonic(), None
while end is None or (time.monotonic() < end and len(rtt) < n):
    now = time.monotonic()
    if seq < n and now >= nxt:
        body = b"mlt-ping" * 7
        pkt = struct.pack("!BBHHH", 8, 0, csum(struct.pack("!BBHHH", 8, 0, 0, ident, seq) + body), ident, seq) + body
        t0 = time.monotonic(); s.sendto(pkt, (dst, 0)); sent[seq] = t0
        seq, nxt = seq + 1, nxt + interval
        if seq == n: end = time.monotonic() + 2
        continue
    if select.select([s], [], [], max(0.0, (nxt if seq < n else end) - now))[0]:
        d = s.recv(65536); t = time.monotonic(); h = (d[0] & 15) * 4
        ty, _, _, i, q = struct.unpack("!BBHHH", d[h:h + 8])
        if ty == 0 and i == ident and q in sent and q not in rtt: rtt[q] = (t - sent[q]) * 1000
for i in range(n): print(rtt.get(i, "-"))
"""

# TCP sink: prints "ready", accepts one connection, reads to EOF, answers one
# byte, prints the byte count.
SINK = r"""
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(1); print("ready", flush=True)
c, _ = s.accept(); n = 0
while True:
    b = c.recv(1 << 20)
    if not b: break
    n += len(b)
c.sendall(b"k"); c.close(); print(n, flush=True)
"""

# TCP source: sends argv[3] bytes, waits for the sink's answer, prints the
# seconds from connect to answer.
SOURCE = r"""
import socket, sys, time
host, port, left = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
buf = memoryview(b"\0" * (1 << 20))
t0 = time.monotonic(); s = socket.create_connection((host, port))
while left: left -= s.send(buf[:min(left, len(buf))])
s.shutdown(socket.SHUT_WR); assert s.recv(1) == b"k"
print(f"{time.monotonic() - t0:.4f}")
"""

# UDP sink: prints "ready", then the sequence numbers received, one per
# line, until 1.5 s pass without a datagram.
UDP_SINK = r"""
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)  # SO_RCVBUFFORCE: the sink must not be the one dropping
s.bind((sys.argv[1], int(sys.argv[2]))); s.settimeout(1.5); print("ready", flush=True)
got = []
try:
    while True: got.append(struct.unpack("!I", s.recv(65536)[:4])[0])
except socket.timeout:
    pass
print("\n".join(map(str, got)), flush=True)
"""

# UDP source: argv[3] datagrams of argv[4] bytes, numbered, as fast as it can.
UDP_SOURCE = r"""
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(int(sys.argv[3])):
    s.sendto(struct.pack("!I", i) + b"u" * (int(sys.argv[4]) - 4), (sys.argv[1], int(sys.argv[2])))
"""

COUNTERS = re.compile(
    r"(?P<src>\S+)->(?P<dst>\S+) frames=(?P<frames>\d+) bytes=(?P<bytes>\d+) drops=(?P<drops>\d+) "
    r"write_errors=(?P<write_errors>\d+) queued=(?P<queued>\d+) late_p50_us=(?P<late_p50_us>\d+) "
    r"late_p99_us=(?P<late_p99_us>\d+) late_p999_us=(?P<late_p999_us>\d+) late_max_us=(?P<late_max_us>\d+)")


def sh(*argv, check=True):
    p = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if check and p.returncode != 0:
        pytest.fail(f"{' '.join(argv)} failed ({p.returncode}): {p.stderr}")
    return p


def exists(dev):
    return Path("/sys/class/net", dev).exists()


def remove_ours():
    """Removes every mlt-* namespace and TAP these tests create (a moved TAP
    goes with its namespace)."""
    for ns in NS:
        if Path("/run/netns", ns).exists():
            sh("ip", "netns", "del", ns, check=False)
    for tap in TAPS + ("mlt-tx",):
        if exists(tap):
            sh("ip", "link", "del", tap, check=False)


def in_ns(ns, script, *args, **kw):
    return subprocess.Popen(["nsenter", f"--net=/run/netns/{ns}", "python3", "-c", script, *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def stop(proc, sig=signal.SIGTERM):
    """Ends a child by its PID; returns its exit status."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    return proc.returncode


class Wire:
    """mlt-a <-> myce-link <-> mlt-b."""

    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.log_path = tmp_path / "link.log"
        self.ready = tmp_path / "link.ready"
        self.daemon = None
        self.helpers = []

    def up(self, *opts):
        remove_ours()
        for ns in NS:
            sh("ip", "netns", "add", ns)
        for tap in TAPS:
            sh("ip", "tuntap", "add", "dev", tap, "mode", "tap")
        with open(self.log_path, "w") as log:
            self.daemon = subprocess.Popen([str(LINK), "--a", TAPS[0], "--b", TAPS[1], "--ready-file",
                                            str(self.ready), *map(str, opts)], stdout=log, stderr=log)
        deadline = time.monotonic() + 5
        while not self.ready.exists():
            if self.daemon.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"myce-link did not attach: {self.log()}")
            time.sleep(0.01)
        assert int(self.ready.read_text()) == self.daemon.pid
        # The TAPs leave for their namespaces only now: the daemon's fds stay valid.
        for ns, tap, ip in zip(NS, TAPS, IPS):
            sh("ip", "link", "set", tap, "netns", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", tap)
            sh("ip", "-n", ns, "link", "set", tap, "up")
        return self

    def log(self):
        return self.log_path.read_text()

    def stop(self):
        """SIGTERM; checks a clean exit and returns the counters per direction."""
        assert stop(self.daemon) == 0, self.log()
        assert not self.ready.exists(), "the ready file outlived the daemon"
        found = {(m["src"], m["dst"]): {k: int(v) for k, v in m.groupdict().items() if k not in ("src", "dst")}
                 for m in COUNTERS.finditer(self.log())}
        assert set(found) == {TAPS, TAPS[::-1]}, self.log()
        return found

    def helper(self, ns, script, *args):
        p = in_ns(ns, script, *args)
        self.helpers.append(p)
        return p

    def wait_ready(self, p):
        line = p.stdout.readline()
        assert line.strip() == "ready", f"helper did not start: {line}{p.stderr.read()}"

    def ping(self, count, interval):
        p = self.helper(NS[0], PING, IPS[1], count, interval)
        out, err = p.communicate(timeout=count * interval + 30)
        assert p.returncode == 0, err
        return [float(x) for x in out.split() if x != "-"]

    def tcp_bulk(self, nbytes):
        """Seconds to move nbytes from mlt-a to mlt-b over TCP."""
        sink = self.helper(NS[1], SINK, IPS[1], PORT)
        self.wait_ready(sink)
        src = self.helper(NS[0], SOURCE, IPS[1], PORT, nbytes)
        out, err = src.communicate(timeout=120)
        assert src.returncode == 0, err
        got, err = sink.communicate(timeout=10)
        assert int(got.split()[-1]) == nbytes, err
        return float(out)

    def cleanup(self):
        for p in self.helpers:
            stop(p, signal.SIGKILL)
        if self.daemon is not None:
            stop(self.daemon, signal.SIGKILL)
        remove_ours()


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.fixture
def wire(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, TAP devices)")
    if not LINK.exists():
        pytest.skip(f"{LINK} not built")
    w = Wire(tmp_path)
    yield w
    w.cleanup()
    assert not any(exists(t) for t in TAPS) and not any(Path("/run/netns", n).exists() for n in NS)


@pytest.mark.parametrize("delay_ms, lo, hi", [(10, 19.5, 22.0), (2.5, 4.9, 6.5)])
def test_rtt_is_twice_the_one_way_delay(wire, delay_ms, lo, hi):
    wire.up("--delay-ms", delay_ms)
    wire.ping(1, 0.05)  # ARP
    rtts = wire.ping(20, 0.05)
    assert len(rtts) == 20
    med = statistics.median(rtts)
    print(f"delay {delay_ms} ms: RTT min {min(rtts):.3f} median {med:.3f} max {max(rtts):.3f} ms")
    assert lo <= med <= hi, rtts
    # Each frame waits at least the delay from when it was read: never early.
    assert min(rtts) >= 2 * delay_ms, rtts
    c = wire.stop()
    for d in c.values():
        assert d["frames"] >= 21 and d["drops"] == 0
        assert d["late_p50_us"] < 500, c


def test_rate_paces_a_tcp_bulk_transfer(wire):
    wire.up("--delay-ms", 10, "--rate-mbit", 10)
    secs = wire.tcp_bulk(5_000_000)
    print(f"5 MB at 10 Mbit/s in {secs:.3f} s")
    assert 4.0 * 0.85 <= secs <= 4.0 * 1.15
    c = wire.stop()
    # Whole Ethernet frames are paced: payload plus headers went through.
    assert c[TAPS]["bytes"] > 5_000_000


def test_sustains_100_mbit_with_little_cpu(wire):
    wire.up("--delay-ms", 10, "--rate-mbit", 100)
    cpu0 = cpu_seconds(wire.daemon.pid)
    secs = wire.tcp_bulk(40_000_000)
    cpu = cpu_seconds(wire.daemon.pid) - cpu0
    c = wire.stop()
    wire_mbit = c[TAPS]["bytes"] * 8 / secs / 1e6
    print(f"40 MB at 100 Mbit/s: {secs:.3f} s, {wire_mbit:.1f} Mbit/s on the wire, daemon CPU {100 * cpu / secs:.0f}%; "
          f"lateness p50/p99 {c[TAPS]['late_p50_us']}/{c[TAPS]['late_p99_us']} us")
    # Loose bounds: this runs on shared 2-core machines next to other tests;
    # docs/link.md has the numbers measured on a quiet one.
    assert 75 <= wire_mbit <= 101
    assert cpu / secs < 0.8
    assert c[TAPS]["late_p99_us"] < 10000, c


def test_unshaped_link_is_fast(wire):
    wire.up()
    secs = wire.tcp_bulk(200_000_000)
    mbit = 200_000_000 * 8 / secs / 1e6
    print(f"200 MB unshaped in {secs:.3f} s = {mbit:.0f} Mbit/s")
    assert mbit > 400
    c = wire.stop()
    assert c[TAPS]["drops"] == 0 and c[TAPS[::-1]]["drops"] == 0


def test_full_queue_drops_its_tail_and_counts_it(wire):
    # 1 Mbit/s with a 20 ms queue holds 2500 bytes: two of these datagrams.
    wire.up("--rate-mbit", 1, "--queue-ms", 20, "--delay-ms", 1)
    wire.ping(1, 0.05)  # ARP, so that the flood is not held back by it
    sink = wire.helper(NS[1], UDP_SINK, IPS[1], PORT)
    wire.wait_ready(sink)
    src = wire.helper(NS[0], UDP_SOURCE, IPS[1], PORT, 300, 1000)
    assert src.wait(timeout=30) == 0
    got = [int(x) for x in sink.communicate(timeout=30)[0].split()]
    c = wire.stop()
    print(f"300 datagrams into a 2-frame queue: {len(got)} delivered, {c[TAPS]['drops']} dropped")
    assert 2 <= len(got) < 300
    assert got == sorted(got), "order must be kept"
    assert got[0] == 0, "the head of the queue goes through; the tail is dropped"
    assert c[TAPS]["drops"] >= 300 - len(got) - 5  # a few may be lost before the daemon (TAP queue)
    assert c[TAPS]["drops"] <= 300 - len(got)


def test_order_is_kept_without_loss(wire):
    wire.up("--delay-ms", 1.5)
    wire.ping(1, 0.05)
    sink = wire.helper(NS[1], UDP_SINK, IPS[1], PORT)
    wire.wait_ready(sink)
    src = wire.helper(NS[0], UDP_SOURCE, IPS[1], PORT, 2000, 200)
    assert src.wait(timeout=30) == 0
    got = [int(x) for x in sink.communicate(timeout=30)[0].split()]
    c = wire.stop()
    assert got == list(range(2000))
    # (write_errors may count a frame written before the far TAP was up.)
    assert c[TAPS]["drops"] == 0


def test_gone_device_stops_the_daemon(wire):
    wire.up("--delay-ms", 5)
    sh("ip", "netns", "del", NS[1])  # takes mlt-tb with it
    assert wire.daemon.wait(timeout=5) == 1
    assert "gone" in wire.log() or "mlt-tb" in wire.log(), wire.log()
    assert not wire.ready.exists()


def test_bad_input_is_refused_and_creates_nothing(wire):
    remove_ours()
    # A name that does not exist: TUNSETIFF would create it; we must not.
    p = subprocess.run([str(LINK), "--a", "mlt-tx", "--b", "mlt-ty"], capture_output=True, text=True, timeout=10)
    assert p.returncode == 1 and "no device mlt-tx" in p.stderr, p.stderr
    assert not exists("mlt-tx") and not exists("mlt-ty")
    for argv, msg in [((), "usage"), (("--a", "x", "--b", "x"), "two different"),
                      (("--a", "x", "--b", "y", "--delay-ms", "-1"), "--delay-ms"),
                      (("--a", "x", "--b", "y", "--rate-mbit", "abc"), "--rate-mbit"),
                      (("--a", "x", "--b", "y", "--queue-frames", "1.5"), "--queue-frames")]:
        p = subprocess.run([str(LINK), *argv], capture_output=True, text=True, timeout=10)
        assert p.returncode == 2 and msg in p.stderr, (argv, p.stderr)
    # A device another process holds (here: this one).
    sh("ip", "tuntap", "add", "dev", "mlt-tx", "mode", "tap")
    fd = os.open("/dev/net/tun", os.O_RDWR)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", b"mlt-tx", IFF_TAP | IFF_NO_PI))
        p = subprocess.run([str(LINK), "--a", "mlt-tx", "--b", "mlt-ty"], capture_output=True, text=True, timeout=10)
        assert p.returncode == 1 and "another process holds it" in p.stderr, p.stderr
    finally:
        os.close(fd)
