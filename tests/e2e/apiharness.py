"""Harness for tests/e2e/test_api.py: a real myce-coordinator in private
network namespaces, a client that checks every answer against
api/openapi.yaml, and fake node daemons.

Topology (two namespaces of our own, nothing in the host namespace):

    netns mapi-<pid>c                       netns mapi-<pid>n
      lo 127.0.0.1  <- coordinator listens    lo: local route 10.78.0.0/16
      v0 10.77.0.1/24  ---- veth ----------   v1 10.77.0.11/24 (node1)
      route 10.78.0.0/16 via 10.77.0.11          10.77.0.12/24 (node2)
      nft table ip mycedrive-svc                 10.77.0.13/24 (node3: refuses)
                                              fake node daemons :7701 on .11 and .12,
                                              "applications" listening on every
                                              10.78.x.y:APP_PORT

The coordinator reaches nodeN at 10.77.0.(10+N):7701 (lib/cluster.c), so the
fake nodes answer there.  They do what a node daemon and its pod's agent do
as far as the coordinator can see: create a pod (and register its agent at
once, as myce-agent does), delete it, send a checkpoint (held until the test
says how it ends), restore, report transfer progress.

The test process reaches the coordinator through sockets created in a thread
that has setns()'ed into the coordinator's namespace; the fake nodes listen
on sockets created the same way in the node namespace.  Nothing but `ip`
commands on our own namespaces touches the machine's network.
"""

import ctypes
import http.client
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jsonschema
import yaml

REPO = Path(__file__).resolve().parents[2]
SPEC_PATH = REPO / "api" / "openapi.yaml"
NS_PREFIX = "mapi-"
COORD_PORT = 7700
NODE_PORT = 7701
APP_PORT = 6379
FAKE_NODES = {"node1": "10.77.0.11", "node2": "10.77.0.12"}
REFUSING_NODE = ("node3", "10.77.0.13")  # registered, but nothing listens there
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "ERROR: ThreadSanitizer", "SUMMARY: UndefinedBehaviorSanitizer")

_libc = ctypes.CDLL(None, use_errno=True)
_CLONE_NEWNET = 0x40000000


def max_body():
    """MYCE_HTTP_MAX_BODY from lib/http.h, so the test follows the code."""
    text = (REPO / "lib" / "http.h").read_text()
    m = re.search(r"#define\s+MYCE_HTTP_MAX_BODY\s+\(?\s*([0-9]+)\s*(?:\*\s*([0-9]+))?\s*\)?", text)
    assert m, "MYCE_HTTP_MAX_BODY not found in lib/http.h"
    return int(m[1]) * (int(m[2]) if m[2] else 1)


def sh(*args, check=True):
    p = subprocess.run(args, capture_output=True, text=True, timeout=30)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {p.stderr.strip()}")
    return p


# --- network namespaces ------------------------------------------------------

class Netns:
    """A named network namespace of ours and one thread living in it, used to
    create sockets there (a socket stays in the namespace it was made in)."""

    def __init__(self, name):
        self.name = name
        sh("ip", "netns", "add", name)
        sh("ip", "-n", name, "link", "set", "lo", "up")
        self.pool = ThreadPoolExecutor(max_workers=1, initializer=self._enter,
                                       thread_name_prefix=f"netns-{name}")

    def _enter(self):
        fd = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
        try:
            if _libc.setns(fd, _CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns {self.name}: {os.strerror(err)}")
        finally:
            os.close(fd)

    def call(self, fn, *args, **kw):
        return self.pool.submit(fn, *args, **kw).result()

    def ip(self, *args):
        return sh("ip", "-n", self.name, *args)

    def delete(self):
        self.pool.shutdown(wait=False)
        sh("ip", "netns", "del", self.name, check=False)


def remove_stale_namespaces():
    """Namespaces left by an earlier run of this harness that was killed (its
    pid is gone), with the processes it started in them (a coordinator).
    Only names of the form mapi-<pid>c / mapi-<pid>n."""
    out = sh("ip", "netns", "list", check=False).stdout
    for line in out.splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.fullmatch(NS_PREFIX + r"(\d+)[cn]", name)
        if m and not Path(f"/proc/{m[1]}").exists():
            for pid in sh("ip", "netns", "pids", name, check=False).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            sh("ip", "netns", "del", name, check=False)


# --- the OpenAPI document ----------------------------------------------------

def _oas_to_jsonschema(x):
    """OpenAPI 3.0 schema objects -> JSON Schema (draft 7): `nullable`."""
    if isinstance(x, list):
        return [_oas_to_jsonschema(v) for v in x]
    if not isinstance(x, dict):
        return x
    out = {k: _oas_to_jsonschema(v) for k, v in x.items() if k not in ("nullable", "example")}
    if x.get("nullable"):
        if "type" in out:
            out["type"] = [out["type"], "null"]
        if "enum" in out and None not in out["enum"]:
            out["enum"] = out["enum"] + [None]
    return out


class Spec:
    def __init__(self, path=SPEC_PATH):
        self.doc = yaml.safe_load(Path(path).read_text())
        self.schemas = _oas_to_jsonschema(self.doc["components"]["schemas"])
        self.routes = []  # (regex, template)
        for tmpl in self.doc["paths"]:
            rx = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(tmpl)) + "$"
            self.routes.append((re.compile(rx), tmpl))

    def resolve(self, obj):
        while isinstance(obj, dict) and "$ref" in obj:
            node = self.doc
            for k in obj["$ref"][2:].split("/"):
                node = node[k]
            obj = node
        return obj

    def operations(self):
        for tmpl, item in self.doc["paths"].items():
            for method, op in item.items():
                if method in ("get", "post", "put", "delete", "patch", "head", "options"):
                    yield tmpl, method.upper(), op

    def operation(self, method, path):
        """(template, operation) for a concrete path, (template, None) for a
        documented path with an undocumented method, (None, None) otherwise."""
        for rx, tmpl in self.routes:
            if rx.match(path):
                return tmpl, self.doc["paths"][tmpl].get(method.lower())
        return None, None

    def validator(self, schema):
        root = {"components": {"schemas": self.schemas}, "allOf": [_oas_to_jsonschema(schema)]}
        return jsonschema.Draft7Validator(root)

    def request_schema(self, tmpl, method):
        op = self.doc["paths"][tmpl][method.lower()]
        rb = self.resolve(op.get("requestBody"))
        if not rb:
            return None
        return rb["content"]["application/json"]["schema"]

    def check_request(self, tmpl, method, body):
        """Errors of body against the documented request schema (a list)."""
        schema = self.request_schema(tmpl, method)
        if schema is None:
            return []
        return [e.message for e in self.validator(schema).iter_errors(body)]


# --- the client ----------------------------------------------------------------

class Resp:
    def __init__(self, status, ctype, data):
        self.status, self.ctype, self.data = status, ctype, data
        self.json = None
        if ctype.startswith("application/json"):
            self.json = json.loads(data)

    @property
    def error(self):
        return self.json.get("error") if isinstance(self.json, dict) else None

    def __repr__(self):
        return f"<{self.status} {self.ctype} {self.data[:300]!r}>"


class Api:
    """HTTP client for the coordinator in its namespace.  Every answer is
    checked against the OpenAPI document as it arrives; what was seen is kept
    for the coverage check at the end."""

    def __init__(self, ns, port, token, spec):
        self.ns, self.port, self.token, self.spec = ns, port, token, spec
        self.seen = set()  # (template, METHOD, status)
        self.lock = threading.Lock()
        self.problems = []  # answers that broke the document, in the fake nodes' threads

    def _connect(self):
        return self.ns.call(socket.create_connection, ("127.0.0.1", self.port), 10)

    def request(self, method, path, body=None, raw=None, token=True, headers=None, timeout=60):
        hdrs = {}
        if token is True:
            hdrs["Authorization"] = f"Bearer {self.token}"
        elif isinstance(token, str):
            hdrs["Authorization"] = token
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        if data is not None:
            hdrs["Content-Type"] = "application/json"
        hdrs.update(headers or {})
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        conn.sock = self._connect()
        conn.sock.settimeout(timeout)
        try:
            conn.request(method, path, body=data, headers=hdrs)
            r = conn.getresponse()
            resp = Resp(r.status, r.getheader("Content-Type", ""), r.read())
        finally:
            conn.close()
        problem = self._check(method, path, resp)
        if problem:
            if threading.current_thread() is not threading.main_thread():
                with self.lock:  # a fake node's call: its failure would only show as a 500 there
                    self.problems.append(problem)
            raise AssertionError(problem)
        return resp

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body, **kw)

    def _check(self, method, path, resp):
        """None if resp is what the document promises, else why not."""
        where = f"{method} {path} -> {resp!r}"
        tmpl, op = self.spec.operation(method, path.split("?")[0])
        if op is None:
            if resp.status != 404 or resp.error is None or not resp.error.startswith("no route for"):
                return f"undocumented route did not give a 404 'no route' error: {where}"
            return self._validate({"$ref": "#/components/schemas/Error"}, resp, where)
        with self.lock:
            self.seen.add((tmpl, method, str(resp.status)))
        doc = op["responses"].get(str(resp.status)) or op["responses"].get("default")
        if doc is None:
            return f"status {resp.status} is not documented for {method} {tmpl}: {where}"
        doc = self.spec.resolve(doc)
        content = doc.get("content", {})
        base = resp.ctype.split(";")[0].strip()
        if base not in content:
            return f"content type {resp.ctype!r} not documented ({list(content)}): {where}"
        if base == "application/json":
            return self._validate(content[base]["schema"], resp, where)
        if not resp.data.decode("utf-8", "replace").strip():
            return f"empty text answer: {where}"
        return None

    def _validate(self, schema, resp, where):
        if resp.json is None:
            return f"answer is not JSON: {where}"
        errs = [e.message for e in self.spec.validator(schema).iter_errors(resp.json)]
        if errs:
            return f"answer does not match the document ({'; '.join(errs[:3])}): {where}"
        return None


# --- fake node daemons ---------------------------------------------------------

class PendingSend:
    """A POST /v1/pods/{id}/send held until the test decides its result."""

    def __init__(self, node, pod, body):
        self.node, self.pod, self.body = node, pod, body
        self._done = threading.Event()
        self._result = None

    def finish(self, result):
        self._result = result
        self._done.set()

    def wait(self, timeout):
        if not self._done.wait(timeout):
            return {"ok": False, "dumped": False, "failed_phase": "dump", "error": "fake node: test never finished the send"}
        return self._result


class _NodeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _serve(self):
        fake, node = self.server.fake, self.server.node_name
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        if self.headers.get("Authorization") != f"Bearer {fake.token}":
            fake.note(f"{node}: request without the right token: {self.command} {self.path}")
            status, obj = 401, {"error": "missing or wrong bearer token"}
        else:
            try:
                status, obj = fake.handle(node, self.command, self.path, body)
            except Exception as e:  # a broken fake must show in the test, not hang it
                fake.note(f"{node}: {self.command} {self.path}: {e!r}")
                status, obj = 500, {"error": f"fake node: {e!r}"}
        data = (json.dumps(obj) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = _serve


class FakeNodes:
    def __init__(self, ns, api, token):
        self.ns, self.api, self.token = ns, api, token
        self.lock = threading.Lock()
        self.calls = []      # (node, method, path, body)
        self.notes = []      # things that went wrong inside the fake
        self.sends = queue.Queue()
        self.fail_pod_create = set()  # nodes whose POST /v1/pods answers 500
        self.servers = []
        for name, ip in FAKE_NODES.items():
            srv = ns.call(ThreadingHTTPServer, (ip, NODE_PORT), _NodeHandler)
            srv.daemon_threads = True
            srv.fake, srv.node_name = self, name
            threading.Thread(target=srv.serve_forever, name=f"fake-{name}", daemon=True).start()
            self.servers.append(srv)
        # The "applications": every pod address accepts connections on APP_PORT.
        self.app_sock = ns.call(socket.create_server, ("0.0.0.0", APP_PORT), backlog=128, reuse_port=False)
        threading.Thread(target=self._accept_loop, name="fake-apps", daemon=True).start()

    def _accept_loop(self):
        while True:
            try:
                c, _ = self.app_sock.accept()
            except OSError:
                return
            c.close()

    def note(self, msg):
        with self.lock:
            self.notes.append(msg)

    def calls_to(self, method, pattern):
        with self.lock:
            return [c for c in self.calls if c[1] == method and re.fullmatch(pattern, c[2])]

    def handle(self, node, method, path, body):
        with self.lock:
            self.calls.append((node, method, path, body))
        if method == "POST" and path == "/v1/pods":
            if node in self.fail_pod_create:
                return 500, {"error": "fake node: cannot create pods"}
            pod = int(body["id"])
            # What myce-agent does first thing in the new pod.
            r = self.api.post("/v1/register", {"pod_id": pod, "node": node, "container": body["app"],
                                               "agent_pid": 4242})
            if r.status != 200:
                return 500, {"error": f"agent register: {r.error}"}
            return 201, {"id": pod, "app": body["app"], "addr": body["addr"], "agent_pid": 4242, "running": True}
        if method == "DELETE" and re.fullmatch(r"/v1/pods/\d+", path):
            return 200, {"deleted": True}
        m = re.fullmatch(r"/v1/pods/(\d+)/send", path)
        if method == "POST" and m:
            s = PendingSend(node, int(m[1]), body)
            self.sends.put(s)
            return 200, s.wait(120)
        if method == "POST" and re.fullmatch(r"/v1/pods/\d+/restore", path):
            return 200, {"ok": True}
        if method == "GET" and re.fullmatch(r"/v1/transfers/\d+", path):
            return 200, {"raw_done": 1024, "raw_total": 4096, "wire_done": 512}
        return 404, {"error": f"no route for {method} {path}"}

    def next_send(self, timeout=20):
        return self.sends.get(timeout=timeout)

    def close(self):
        while True:
            try:
                self.sends.get_nowait().finish({"ok": False, "dumped": False, "failed_phase": "dump",
                                                "error": "fake node: test over"})
            except queue.Empty:
                break
        for srv in self.servers:
            srv.shutdown()
            srv.server_close()
        self.app_sock.close()


def ok_send_result():
    now = int(time.time() * 1e6)
    return {"ok": True, "dumped": True, "dump_ms": 4.5, "transfer_ms": 7.25, "restore_ms": 3.0,
            "bytes_raw": 1 << 20, "bytes_wire": 1 << 18, "files": 12, "zstd_level": 1, "handoff_ms": 1.5,
            "handoff_status": 200, "freeze_start_wall_us": now - 20000, "restore_end_wall_us": now}


# --- the environment -----------------------------------------------------------

class Env:
    """Namespaces, coordinator and fake nodes; close() undoes all of it."""

    def __init__(self, build, tmp):
        self.tmp = Path(tmp)
        self.proc = None
        self.fake = None
        self.api = None
        self.ns = []
        self.log_path = self.tmp / "coordinator.log"
        remove_stale_namespaces()
        try:
            self._up(build)
        except BaseException:
            self.close()
            raise

    def _up(self, build):
        pid = os.getpid()
        self.cns = Netns(f"{NS_PREFIX}{pid}c")
        self.ns.append(self.cns)
        self.nns = Netns(f"{NS_PREFIX}{pid}n")
        self.ns.append(self.nns)
        self.cns.ip("link", "add", "v0", "type", "veth", "peer", "name", "v1", "netns", self.nns.name)
        self.cns.ip("addr", "add", "10.77.0.1/24", "dev", "v0")
        self.cns.ip("link", "set", "v0", "up")
        for ip in [*FAKE_NODES.values(), REFUSING_NODE[1]]:
            self.nns.ip("addr", "add", f"{ip}/24", "dev", "v1")
        self.nns.ip("link", "set", "v1", "up")
        self.cns.ip("route", "add", "10.78.0.0/16", "via", FAKE_NODES["node1"])
        self.nns.ip("route", "add", "local", "10.78.0.0/16", "dev", "lo")

        self.token = os.urandom(16).hex()
        (self.tmp / "token").write_text(self.token + "\n")
        self._start_coordinator(build)
        self.fake = FakeNodes(self.nns, self.api, self.token)

    def _start_coordinator(self, build):
        self.build = build
        env = dict(os.environ)
        env.pop("MYCE_FAULT", None)
        # Sanitized builds: report, keep going, print stacks; the test reads the log.
        env["ASAN_OPTIONS"] = "detect_leaks=1:halt_on_error=0:print_summary=1:detect_stack_use_after_return=1"
        env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=0:print_summary=1"
        if os.environ.get("MYCE_STRICT") != "1":  # known leaks, see the file
            env["LSAN_OPTIONS"] = f"suppressions={REPO / 'tests' / 'e2e' / 'lsan.supp'}:print_suppressions=0"
        built = Path(build) / "myce-coordinator"
        if not built.exists():
            raise FileNotFoundError(f"{built} not built")
        # Run a copy under another name: the cluster tests' leftovers() check
        # (conftest.py) looks for processes named myce-coordinator, and this
        # one, in its own namespace, is none of their business.
        exe = self.tmp / "api-coordinator"
        shutil.copy2(built, exe)
        self.log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.cns.name, str(exe), "--listen", f"127.0.0.1:{COORD_PORT}",
             "--db", str(self.tmp / "coordinator.db"), "--token-file", str(self.tmp / "token")],
            stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self.spec = getattr(self, "spec", None) or Spec()
        if self.api is None:  # a restart keeps what the tests saw so far
            self.api = Api(self.cns, COORD_PORT, self.token, self.spec)
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"coordinator exited ({self.proc.returncode}): {self.log_text()}")
            try:
                if self.api.get("/healthz").status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"coordinator not up after 20 s: {self.log_text()}")
            time.sleep(0.02)

    def restart(self):
        """Stops the coordinator (SIGTERM) and starts it again on the same
        database; the fake nodes keep serving."""
        self.stop()
        self._start_coordinator(self.build)

    def coord_nft(self, script):
        """nft in the coordinator's private namespace (never the host's)."""
        assert re.fullmatch(NS_PREFIX + r"\d+c", self.cns.name)
        p = subprocess.run(["ip", "netns", "exec", self.cns.name, "nft", "-f", "-"], input=script, text=True,
                           capture_output=True, timeout=30)
        if p.returncode != 0:
            raise RuntimeError(f"nft in {self.cns.name}: {p.stderr.strip()}")

    def restore_coord_nft(self, services):
        """The service table as net_services_init() (src/coordinator/net.c) makes it, with
        the endpoints of `services` (GET /v1/services)."""
        t = "ip mycedrive-svc"
        lines = [f"add table {t}", f"delete table {t}", f"add table {t}",
                 f"add map {t} endpoints {{ type ipv4_addr . inet_service : ipv4_addr . inet_service; }}",
                 f"add chain {t} output {{ type nat hook output priority -100; }}",
                 f"add chain {t} prerouting {{ type nat hook prerouting priority -100; }}",
                 f"add rule {t} output dnat ip to ip daddr . tcp dport map @endpoints",
                 f"add rule {t} prerouting dnat ip to ip daddr . tcp dport map @endpoints"]
        lines += [f"add element {t} endpoints {{ {s['svc_ip']} . {s['port']} : {s['endpoint']} . {s['port']} }}"
                  for s in services]
        self.coord_nft("\n".join(lines) + "\n")

    def log_text(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def sanitizer_reports(self):
        text = self.log_text()
        return [l for l in text.splitlines() if any(m in l for m in SANITIZER_MARKERS)]

    def stop(self, timeout=20):
        """SIGTERM, wait; the exit status (None if it had to be killed)."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None

    def close(self):
        try:
            if self.fake:
                self.fake.close()
        finally:
            try:
                if self.proc is not None and self.proc.poll() is None:
                    self.proc.kill()
                    self.proc.wait()
            finally:
                for ns in reversed(self.ns):
                    ns.delete()
                self.ns = []
