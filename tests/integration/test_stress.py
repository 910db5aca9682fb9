"""``edgesim stress`` end to end: a real origin, edge processes, the load generator and
the matcher process, for 20 s."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SHOP_RULES = Path(__file__).resolve().parents[2] / "topologies" / "sites" / "shop"

TOPOLOGY = """
name = "stress-test"

[[regions]]
name = "eu"
edge = {{ nodes = 2, memory_cache = "32MB" }}

[[sites]]
name = "shop.test"
rules = ["{rules}/_redirects", "{rules}/netlify.toml"]

[sites.catalog]
objects = 500
seed = 4

[traffic]
duration = "1h"
peak_rps = 100
"""


@pytest.mark.slow
def test_stress_runs_20s_without_crashes(tmp_path: Path) -> None:
    topo = tmp_path / "stress.toml"
    topo.write_text(TOPOLOGY.format(rules=SHOP_RULES.as_posix()))
    out = tmp_path / "result.json"
    cmd = [
        sys.executable, "-P", "-m", "edgesim", "stress", str(topo),
        "--duration", "20s", "--threads", "2", "--connections", "8",
        "--workdir", str(tmp_path / "work"), "--json", str(out),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert "crashes: 0" in last and "errors: " in last and "throughput: " in last
    r = json.loads(out.read_text())
    assert r["crashes"] == 0 and r["crash_details"] == []
    assert r["requests"] > 0 and r["throughput_rps"] > 0
    t = r["clients"]["totals"]
    assert (r["retried"], r["failed_over"]) == (t["retried"], t["failed_over"])
    assert f"retried: {r['retried']}, failed over: {r['failed_over']}," in last
    m = r["matcher"]
    assert m["returncode"] == 0 and m["fatal_thread_errors"] == []
    assert m["matches"] > 0 and m["match_many_calls"] > 0 and m["reloads"] > 0 and m["gc_collections"] > 0
    # rule sets were swapped inside the edges during traffic: each redeploy made both
    # nodes fetch the new manifest and compile its rules
    assert r["deploys"] > 0
    assert r["edges"]["totals"]["deploys_seen"] > 0


def test_stress_rejects_bad_arguments_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[[regions]]\nname = 3\n")
    for args, expect in (
        (["--duration", "-5s"], "--duration"),
        ([str(bad)], "bad.toml:2"),
        ([str(tmp_path / "missing.toml")], "missing.toml"),
    ):
        cmd = [sys.executable, "-P", "-m", "edgesim", "stress", *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert proc.returncode != 0
        assert expect in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_stress_counts_a_crashing_edge_and_exits_1(tmp_path: Path) -> None:
    topo = tmp_path / "stress.toml"
    # one node: it must have been up once before its first crash (a loaded machine can
    # take seconds to start an interpreter), which N seconds after its start allows
    topo.write_text(TOPOLOGY.format(rules=SHOP_RULES.as_posix()).replace("nodes = 2", "nodes = 1"))
    env = dict(os.environ, EDGESIM_STRESS_SELFTEST_CRASH="3")
    work = tmp_path / "work"
    cmd = [
        sys.executable, "-P", "-m", "edgesim", "stress", str(topo),
        "--duration", "5s", "--threads", "1", "--connections", "4", "--workdir", str(work),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "crashes: " in proc.stdout, proc.stderr  # a summary, not an error line
    last = proc.stdout.strip().splitlines()[-1]
    n = int(last.split("crashes: ")[1].split(",")[0])
    assert n >= 1
    assert "crash: edge eu-0 died (SIGSEGV)" in proc.stderr
    # faulthandler left the dying process's Python stacks in its log
    log = (work / "logs" / "eu-0.log").read_text()
    assert "Fatal Python error: Segmentation fault" in log
