"""The edge supervisor and the crash drill, with real processes on loopback."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest
import trio

from edgesim._client import OriginPool
from edgesim._supervisor import EdgeSpec, Supervisor, free_ports, open_supervisor
from edgesim._topoload import parse_topology
from edgesim.drill import DrillOptions, OriginProcess, run_drill
from edgesim.http import Request


def _site(root: Path) -> Path:
    site = root / "sites" / "a.test"
    site.mkdir(parents=True)
    (site / "index.html").write_text("<p>hello</p>\n")
    (site / "_edgesim.toml").write_text('[cache]\ndefault = "public, max-age=60"\n')
    return root / "sites"


async def _get(url: str, n: int) -> None:
    pool = OriginPool(url)
    try:
        for _ in range(n):
            resp = await pool.request(Request("GET", "/index.html", [("host", "a.test")]))
            assert resp.status == 200
    finally:
        await pool.aclose()


async def test_supervisor_restarts_with_backoff_and_keeps_collected_counters(tmp_path: Path) -> None:
    sites = _site(tmp_path)
    (port,) = free_ports(1)
    spec = EdgeSpec("e0", f"embedded:{sites}", port, extra_args=("--no-manifests",))
    async with open_supervisor(
        [spec], log_dir=tmp_path / "logs", backoff_initial=0.2, flush_interval=0.2
    ) as sup:
        await _get(sup.urls[0], 5)
        await sup.flush()
        before = sup.node_totals(0)
        assert before["requests"] >= 5
        first_pid = sup.pid(0)
        assert sup.kill(0, signal.SIGKILL)
        with trio.fail_after(30):
            await sup.wait_restarts(1)
        assert sup.pid(0) not in (None, first_pid)
        await _get(sup.urls[0], 3)  # same URL after the restart
        await sup.flush()  # else these 3 could be lost with the process: see `unflushed`
        # it dies again at once: the backoff doubles
        assert sup.kill(0, signal.SIGTERM)
        with trio.fail_after(30):
            await sup.wait_restarts(2)
        await sup.flush()
        after = sup.node_totals(0)
    r1, r2 = sup.restarts
    assert (r1.signal, r1.returncode, r1.killed_by_drill) == ("SIGKILL", -9, True)
    assert (r2.signal, r2.returncode, r2.killed_by_drill) == (None, 0, True)  # SIGTERM: drained
    assert r1.backoff == pytest.approx(0.2) and r2.backoff == pytest.approx(0.4)
    assert r1.downtime is not None and r1.downtime >= r1.backoff
    # counters collected before a death are kept: the sum over incarnations only grows,
    # and the second run's own requests were added to it
    assert after["requests"] >= before["requests"] + 3
    assert r1.unflushed <= 0.2 + 0.5  # one flush interval plus a scrape's latency


async def test_kill_hold_and_dead_node_kill_is_refused(tmp_path: Path) -> None:
    sites = _site(tmp_path)
    (port,) = free_ports(1)
    spec = EdgeSpec("e0", f"embedded:{sites}", port, extra_args=("--no-manifests",))
    async with open_supervisor([spec], log_dir=tmp_path / "logs", backoff_initial=0.1) as sup:
        assert sup.kill(0, signal.SIGKILL, hold=1.0)
        await trio.sleep(0.3)  # the supervisor has seen the death by now (real time)
        assert not sup.is_up(0)
        assert not sup.kill(0)  # nothing to kill while it is down
        with trio.fail_after(30):
            await sup.wait_restarts(1)
    (r,) = sup.restarts
    assert r.backoff == pytest.approx(1.0)
    assert r.downtime is not None and r.downtime >= 1.0


DRILL_TOPOLOGY = """
name = "drill-test"
seed = 3

[[regions]]
name = "eu"
edge = { nodes = 2, memory_cache = "32MB" }

[[sites]]
name = "shop.test"

[sites.catalog]
objects = 60
zipf = 1.1
seed = 9
types = { html = 1.0 }

[sites.cache]
html = "public, max-age=1, stale-if-error=60"

[traffic]
duration = "12s"
peak_rps = 60
warmup = "1s"

[faults]
health_check_delay = "1s"
client_timeout = "1s"

[[faults.crashes]]
region = "eu"
node = 0
at = "3s"
down_for = "1s"

[[faults.origin_outages]]
at = "7s"
duration = "2.5s"
"""


@pytest.mark.slow
async def test_drill_kill_restart_failover_and_stale_if_error(tmp_path: Path) -> None:
    topo = parse_topology(DRILL_TOPOLOGY, path=str(tmp_path / "drill.toml"))
    snapshots: dict[str, Any] = {}

    async def before_the_kill(sup: Supervisor, origin: OriginProcess, start_at: float, end_at: float) -> None:
        await trio.sleep(max(0.0, start_at + 2.5 - time.time()))  # the kill is at 3 s
        await sup.flush()
        snapshots["before"] = sup.node_totals(0)

    opts = DrillOptions(rate=60, connections=6, flush_interval=0.5)
    report = await run_drill(topo, opts, workdir=tmp_path / "work", during=before_the_kill)

    # the supervisor restarted the killed node, after its hold
    (r,) = report["restarts"]
    assert r["name"] == "eu-0" and r["signal"] == "SIGKILL" and r["killed_by_drill"]
    assert r["up_at"] is not None and r["downtime"] >= 1.0
    assert r["unflushed"] <= 0.5 + 0.5
    kinds = [f["kind"] for f in report["faults"]]
    assert kinds == ["edge_killed", "origin_stopped", "origin_started"]

    # client side: every request has one outcome, and the buckets add up to the totals
    c = report["clients"]
    t = c["totals"]
    assert t["requests"] == t["ok"] + t["http_5xx"] + t["failed"]
    for key in ("ok", "failed", "retried", "http_5xx", "attempts_failed"):
        assert sum(b[key] for b in c["buckets"]) == t[key]
    # failover: attempts on the dead node failed, were retried on the other, and succeeded
    assert t["attempts_failed"] >= 1 and t["retried"] >= 1
    assert t["failed"] == 0
    # the restarted node served again after it came back
    back = r["up_at"] + 1.0
    served_after = sum(sum(b["nodes"].get("eu-0", {}).values()) for b in c["buckets"] if b["t"] >= back)
    assert served_after > 0

    # edge counters collected before the kill were not lost with the process
    totals = report["edges"]["nodes"]["eu-0"]
    assert totals["requests"] >= snapshots["before"]["requests"] > 0
    assert "last flush interval" in report["edges"]["lost_window_note"]

    # cold cache after the restart, and stale content served while the origin was down
    (spike,) = report["cold_cache_spikes"]
    assert spike["node"] == "eu-0" and spike["misses_per_s_after"] > 0
    (outage,) = report["origin_outages"]
    assert outage["mode"] == "stop" and outage["stale"] > 0
