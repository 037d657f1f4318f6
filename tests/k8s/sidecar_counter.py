"""The sidecar of tests/k8s/test_pod_multi.py: a second container that keeps
its own state in memory and talks to the pod's Redis over localhost.

Every few milliseconds it INCRs "sidecar:ticks" over one connection to
127.0.0.1:6379 and counts the replies.  Each reply must be exactly the value
it found at start plus its own count: if the two containers were frozen at
different moments (two dumps instead of one), Redis and the sidecar would
disagree by the increments in between, and the next reply would not match.
It answers one JSON line to any connection on TCP port 7000:
{"boot": token chosen at start, "count", "value", "mismatches", "errors", "reconnects"}.
Run by the embedded runtime with /dev/null as stdio: it reports, never prints."""

import json
import os
import socket
import sys
import threading
import time

STATUS_PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 7000
REDIS_PORT = int(os.environ.get("REDIS_PORT", "6379"))
state = {"boot": os.urandom(8).hex(), "count": 0, "value": None, "mismatches": 0, "errors": 0, "reconnects": 0}
lock = threading.Lock()


def connect():
    while True:
        try:
            return socket.create_connection(("127.0.0.1", REDIS_PORT), timeout=60)
        except OSError:
            time.sleep(0.1)


def reply(f):
    line = f.readline()
    if not line.startswith(b":"):
        raise OSError(f"unexpected reply {line!r}")
    return int(line[1:])


def ticker():
    s = connect()
    f = s.makefile("rb")
    base = None
    while True:
        try:
            s.sendall(b"*2\r\n$4\r\nINCR\r\n$13\r\nsidecar:ticks\r\n")
            v = reply(f)
        except OSError:
            with lock:
                state["errors"] += 1
                state["reconnects"] += 1
            s.close()
            s = connect()
            f = s.makefile("rb")
            base = None
            continue
        with lock:
            if base is None:
                base = v - 1 - state["count"]
            if v != base + state["count"] + 1:
                state["mismatches"] += 1
                base = v - 1 - state["count"]
            state["count"] += 1
            state["value"] = v
        time.sleep(0.003)


def main():
    threading.Thread(target=ticker, daemon=True).start()
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", STATUS_PORT))
    srv.listen(16)
    while True:
        c, _ = srv.accept()
        with lock:
            out = json.dumps(state) + "\n"
        try:
            c.sendall(out.encode())
        except OSError:
            pass
        c.close()


if __name__ == "__main__":
    main()
