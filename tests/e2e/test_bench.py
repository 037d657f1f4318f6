"""The benchmark's CI mode end to end: bench/run.sh --short brings up real
clusters, migrates a real Redis with every technique, and writes the CSV,
the summary and the plots.  The benchmark takes the machine's cluster lock
itself, per cluster: this test must not hold it."""

import csv
import os
import subprocess

from conftest import BUILD, REPO

TECHNIQUES = ("redeploy", "stop-and-copy", "live")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_bench_short(tmp_path):
    out = tmp_path / "results"
    # Allow for waiting on the lock while other tests hold a cluster.
    p = subprocess.run(["bash", str(REPO / "bench" / "run.sh"), "--short", "--out", str(out)],
                       env={**os.environ, "MYCE_BUILD_DIR": str(BUILD)}, capture_output=True, text=True,
                       timeout=900)
    assert p.returncode == 0, f"run.sh failed ({p.returncode}):\n{p.stderr[-6000:]}"

    with open(out / "runs.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    # --short: redis, rates 0 and 10, one repetition, every technique.
    assert sorted((r["app"], float(r["rate_mbit"]), r["technique"]) for r in rows) == sorted(
        ("redis", rate, t) for rate in (0.0, 10.0) for t in TECHNIQUES), rows
    for r in rows:
        assert r["outcome"], r
        assert r["delay_emulation"], r
        assert r["data_mb"] == "2" and r["rep"] == "1", r

    for r in (r for r in rows if r["technique"] == "live"):
        where = f"live at {r['rate_mbit']} Mbit/s"
        assert r["outcome"] == "completed", f"{where}: {r['outcome']}: {r['reason']}"
        assert int(r["lost_writes"]) == 0, r
        assert int(r["resets"]) == 0, r
        assert float(r["migration_ms"]) > 0 and float(r["downtime_ms"]) > 0, r
        assert float(r["freeze_window_ms"]) > 0 and int(r["bytes_raw"]) > 1_000_000, r
        assert int(r["acked"]) > 50, r  # one write in flight at a time, over a 20 ms round trip

    summary = (out / "summary.md").read_text()
    assert "## redis" in summary and "live / stop-and-copy" in summary, summary
    for name in ("migration_time.png", "downtime.png"):
        data = (out / name).read_bytes()
        assert len(data) > 1000 and data.startswith(PNG_MAGIC), name
    assert "criu:" in (out / "machine.txt").read_text()
