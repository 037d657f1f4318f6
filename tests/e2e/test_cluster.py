"""The embedded cluster: up/down are idempotent and clean; bad input is
refused with a clear message and changes nothing."""

import json
import subprocess

from conftest import RUN_DIR, ctl, ctl_json, leftovers


def test_up_down_idempotent_and_clean(make_cluster):
    c = make_cluster(nodes=2, rate=10)
    nodes = ctl_json("get", "nodes")
    assert [n["name"] for n in nodes] == ["node1", "node2"]
    # A second `up` finds the running cluster and leaves it alone.
    again = ctl("cluster", "up", "--nodes", "2")
    assert "already up" in again.stdout
    # Links are shaped with tbf on both sides.
    q = subprocess.run(["tc", "qdisc", "show", "dev", "myce-n1"], capture_output=True, text=True).stdout
    assert "tbf" in q and "10Mbit" in q
    c.down()
    assert leftovers() == []
    c.down()  # idempotent
    assert leftovers() == []


def test_service_reaches_pod_from_host(make_cluster):
    c = make_cluster(nodes=1)
    app = c.run_redis()
    out = subprocess.run(["redis-cli", "-h", app["svc_ip"], "-p", "6379", "ping"], capture_output=True,
                         text=True, timeout=10).stdout
    assert out.strip() == "PONG"
    pods = ctl_json("get", "pods")
    assert len(pods) == 1 and pods[0]["node"] == "node1" and pods[0]["state"] == "running"


def test_bad_input_is_refused_and_changes_nothing(make_cluster):
    c = make_cluster(nodes=2)
    c.run_redis()
    before = (ctl_json("get", "apps"), ctl_json("get", "pods"), ctl_json("get", "services"))
    cases = [
        (("run", "x", "--node", "node9", "--port", "1", "--", "true"), "unknown node"),
        (("run", "redis", "--node", "node1", "--port", "1", "--", "true"), "already exists"),
        (("run", "Bad_Name", "--node", "node1", "--port", "1", "--", "true"), "DNS label"),
        (("run", "y", "--node", "node1", "--port", "70000", "--", "true"), "1..65535"),
        (("migrate", "nope", "--to", "node2"), "unknown application"),
        (("migrate", "redis", "--to", "node1"), "already runs on that node"),
        (("migrate", "redis", "--to", "node7"), "unknown destination node"),
        (("get", "things"), "unknown kind"),
    ]
    for args, msg in cases:
        p = ctl(*args, check=False)
        assert p.returncode != 0, args
        assert msg in p.stderr, (args, p.stderr)
    after = (ctl_json("get", "apps"), ctl_json("get", "pods"), ctl_json("get", "services"))
    assert before == after


def test_requests_without_token_are_refused(make_cluster):
    """cluster up serves the API over TLS with a CA of its own: a client that
    trusts it still needs the token; plain HTTP and an untrusting client get
    nothing."""
    make_cluster(nodes=1)
    import ssl, urllib.request, urllib.error
    ca = ssl.create_default_context(cafile="/run/mycedrive/ca.pem")
    for token in (None, "wrong"):
        req = urllib.request.Request("https://10.77.0.1:7700/v1/apps")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            urllib.request.urlopen(req, timeout=5, context=ca)
            raise AssertionError("request without a valid token was accepted")
        except urllib.error.HTTPError as e:
            assert e.code == 401
            assert "token" in json.loads(e.read())["error"]
    token = open("/run/mycedrive/token").read().strip()
    req = urllib.request.Request("https://10.77.0.1:7700/v1/apps", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=5, context=ca) as r:
        assert r.status == 200 and isinstance(json.loads(r.read()), list)
    # Without trusting the cluster's CA (the system's CAs only), or in clear text: refused.
    for url, ctx in (("https://10.77.0.1:7700/v1/apps", ssl.create_default_context()),
                     ("http://10.77.0.1:7700/v1/apps", None)):
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
        try:
            urllib.request.urlopen(req, timeout=5, context=ctx)
            raise AssertionError(f"{url} answered without a verified TLS connection")
        except (urllib.error.URLError, ConnectionError, OSError) as e:
            assert not isinstance(e, urllib.error.HTTPError), e
