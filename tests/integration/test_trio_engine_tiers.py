"""The Trio engine on a shield tier, a replayed trace, node crashes and a region's
failover, against the fast engine.

Same bar as demo's (tests/integration/test_run_modes.py): object hit ratio within
0.01 and origin requests/s within 5% of the fast engine for the same seed.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from helpers import trace_topology, write_zipf_trace

from edgesim._topoload import load_topology, parse_topology, resolve_topology_arg
from edgesim._traffic import window_topology
from edgesim.engine import simulate
from edgesim.live import auto_rate_scale, run_live
from edgesim.topology import Latency, NodeCrash, Shield, Topology
from edgesim.trioengine import simulate_trio


def _shielded() -> Topology:
    # 10 s of demo's evening at 0.6 of its rate (about 1,100 requests, cold caches),
    # behind two shield nodes with 4 workers each in us-east.
    topo = window_topology(load_topology(resolve_topology_arg("demo")), 600, 10, 0.6)
    shield = Shield(
        "us-east", nodes=2, workers=4, memory_cache=64 * 2**20, latency_to_origin=Latency(0.015, 0.002)
    )
    return replace(topo, shield=shield)


def test_trio_engine_runs_a_shield_tier_as_the_fast_engine_does() -> None:
    topo = _shielded()
    fast = simulate(topo, seed=3).report
    trio = simulate_trio(topo, seed=3).report
    assert trio["totals"]["requests"] == fast["totals"]["requests"] > 800
    assert trio["totals"]["failed"] == trio["totals"]["errors"] == 0
    assert abs(trio["totals"]["object_hit_ratio"] - fast["totals"]["object_hit_ratio"]) <= 0.01
    fo, to = fast["origin"]["requests_per_second"], trio["origin"]["requests_per_second"]
    assert abs(to - fo) <= 0.05 * fo
    shields = [name for name, n in trio["nodes"].items() if n["tier"] == "shield"]
    assert shields == ["shield-us-east-0", "shield-us-east-1"]
    for name in shields:
        # each fetch goes to the shield node the engine's ring picks: same split
        f, t = fast["nodes"][name]["origin_requests"], trio["nodes"][name]["origin_requests"]
        assert t > 100 and abs(t - f) <= 0.05 * f
        assert trio["nodes"][name]["utilisation"] > 0  # the shield's modelled service time
        # its own row: the edges' fetches it answered, and how
        fs, ts = fast["nodes"][name], trio["nodes"][name]
        assert ts["requests"] > 300 and abs(ts["requests"] - fs["requests"]) <= 0.05 * fs["requests"]
        assert ts["hits"] > 20 and abs(ts["object_hit_ratio"] - fs["object_hit_ratio"]) <= 0.02
        assert abs(ts["latency"]["p50"] - fs["latency"]["p50"]) <= 0.05 * fs["latency"]["p50"]
    # every edge fetch went to a shield node, which answered it
    assert sum(trio["nodes"][name]["requests"] for name in shields) == trio["totals"]["origin_requests"]
    # the shield answers some of the edges' fetches itself: fewer reach the origin
    assert trio["origin"]["requests"] < 0.95 * trio["totals"]["origin_requests"]
    # the edge->shield and shield->origin latencies reach the shells
    ft, tt = fast["totals"]["latency"]["p50"], trio["totals"]["latency"]["p50"]
    assert abs(tt - ft) <= 0.1 * ft


def test_trio_engine_replays_a_trace(tmp_path: Path) -> None:
    rows = write_zipf_trace(tmp_path / "t.csv", 1200, objects=300, gap=0.02, seed=7)
    topo = parse_topology(trace_topology({"eu": 2, "us": 1}, cache="1MB"), path=tmp_path / "t.toml")
    fast = simulate(topo, seed=1).report
    trio = simulate_trio(topo, seed=1).report
    # every record is one request, in its region, with its size
    assert trio["meta"]["simulated_requests"] == trio["totals"]["requests"] == len(rows)
    assert {r: trio["regions"][r]["requests"] for r in ("eu", "us")} == {
        r: sum(1 for row in rows if row[3] == r) for r in ("eu", "us")
    }
    assert trio["totals"]["bytes_served"] == sum(r[2] for r in rows)
    assert trio["totals"]["failed"] == trio["totals"]["errors"] == 0
    assert 0.2 < trio["totals"]["object_hit_ratio"] < 0.9  # the 1 MB caches evict
    assert abs(trio["totals"]["object_hit_ratio"] - fast["totals"]["object_hit_ratio"]) <= 0.01
    fo, to = fast["origin"]["requests_per_second"], trio["origin"]["requests_per_second"]
    assert abs(to - fo) <= 0.05 * fo


def test_trio_engine_crashes_and_restarts_nodes_as_the_fast_engine_does() -> None:
    # 15 s of demo at 0.6 of its rate (about 1,600 requests): eu-west-0 is down from
    # 6 s to 12 s, eu-west-1 from 9 s to 11 s (clients time out after 2 s, the
    # balancer drops a node after 5 s).
    base = window_topology(load_topology(resolve_topology_arg("demo")), 600, 15, 0.6)
    crashes = (NodeCrash("eu-west", 0, 6.0, 6.0), NodeCrash("eu-west", 1, 9.0, 2.0))
    topo = replace(base, faults=replace(base.faults, crashes=crashes))
    fast = simulate(topo, seed=3).report
    trio = simulate_trio(topo, seed=3).report
    assert trio["totals"]["requests"] == fast["totals"]["requests"] > 1200
    assert [(e["at"], e["kind"], e.get("node")) for e in trio["events"]] == [
        (6.0, "node_crash", "eu-west-0"),
        (9.0, "node_crash", "eu-west-1"),
        (11.0, "node_restart", "eu-west-1"),
        (12.0, "node_restart", "eu-west-0"),
    ]
    # requests in a node when it crashes get no answer; those sent to it while it is
    # down time out and are retried on another node
    ft, tt = fast["totals"], trio["totals"]
    assert tt["failed"] > 0 and abs(tt["failed"] - ft["failed"]) <= 3
    assert tt["retries"] > 100 and abs(tt["retries"] - ft["retries"]) <= 0.05 * ft["retries"]
    assert tt["errors"] == 0
    # a retried request waited out the client timeout (2 s; twice for some)
    for pct in ("p95", "p99"):
        f_lat, t_lat = ft["latency"][pct], tt["latency"][pct]
        assert t_lat > 2.0 and abs(t_lat - f_lat) <= 0.05 * f_lat
    for name in ("eu-west-0", "eu-west-1"):
        f, t = fast["nodes"][name], trio["nodes"][name]
        assert t["crashes"] == 1
        # restarted cold: the cache holds only what was stored after the restart
        assert t["cache"]["stores"] < 0.5 * t["origin_requests"]
        assert abs(t["cache"]["stores"] - f["cache"]["stores"]) <= 0.1 * f["cache"]["stores"]
    assert trio["nodes"]["eu-west-2"]["crashes"] == 0
    assert abs(tt["object_hit_ratio"] - ft["object_hit_ratio"]) <= 0.01
    fo, to = fast["origin"]["requests_per_second"], trio["origin"]["requests_per_second"]
    assert abs(to - fo) <= 0.05 * fo


def test_trio_engine_fails_a_region_over_as_the_fast_engine_does() -> None:
    # 15 s of demo at 0.6 of its rate: all three eu-west nodes are down from 5 s to 11 s;
    # after the health check (5 s) its clients fail over to us-east, 40 ms away
    base = window_topology(load_topology(resolve_topology_arg("demo")), 600, 15, 0.6)
    crashes = tuple(NodeCrash("eu-west", k, 5.0, 6.0) for k in range(3))
    topo = replace(base, faults=replace(base.faults, crashes=crashes))
    fast = simulate(topo, seed=3).report
    trio = simulate_trio(topo, seed=3).report
    ft, tt = fast["totals"], trio["totals"]
    assert tt["requests"] == ft["requests"] > 1200
    moved = fast["regions"]["eu-west"]["clients_failed_over"]
    assert moved > 100
    for report in (fast, trio):
        eu, us = report["regions"]["eu-west"], report["regions"]["us-east"]
        assert eu["failovers"] == us["clients_failed_over"] == 0
        assert us["failovers"] == eu["clients_failed_over"] == report["totals"]["failovers"]
    assert abs(trio["regions"]["eu-west"]["clients_failed_over"] - moved) <= 0.05 * moved
    # us-east answers them with the 40 ms each way on top of its own client latency
    for report in (fast, trio):
        us = report["regions"]["us-east"]["latency"]
        assert us["max"] > 2.0  # some timed out on a dead eu-west node first
    assert abs(tt["retries"] - ft["retries"]) <= 0.05 * ft["retries"]
    assert abs(tt["object_hit_ratio"] - ft["object_hit_ratio"]) <= 0.01
    for pct in ("p50", "p95"):
        f_lat, t_lat = fast["regions"]["us-east"]["latency"][pct], trio["regions"]["us-east"]["latency"][pct]
        assert abs(t_lat - f_lat) <= 0.05 * f_lat


def test_a_request_failed_over_to_a_dead_node_is_failed_not_a_failover() -> None:
    # eu-west is down from 2 s (dropped at 7 s) and its clients fail over to us-east,
    # whose nodes crash at 9 s too (dropped at 14 s): until then failed-over requests
    # get no answer there, and count as failed, not as failovers, in both engines
    base = window_topology(load_topology(resolve_topology_arg("demo")), 600, 15, 0.6)
    crashes = tuple(NodeCrash("eu-west", k, 2.0, 13.0) for k in range(3)) + tuple(
        NodeCrash("us-east", k, 9.0, 6.0) for k in range(3)
    )
    topo = replace(base, faults=replace(base.faults, crashes=crashes))
    fast_r = simulate(topo, seed=3).report
    trio_r = simulate_trio(topo, seed=3).report
    fast, trio = fast_r["totals"], trio_r["totals"]
    assert fast["failed"] > 200 and abs(trio["failed"] - fast["failed"]) <= 0.03 * fast["failed"]
    assert fast["failovers"] > 200
    assert abs(trio["failovers"] - fast["failovers"]) <= 0.03 * fast["failovers"]
    # the region rows count each failed request once, where its clients are: eu-west's
    # clients that failed over and got no answer are eu-west's, though us-east failed them
    for report in (fast_r, trio_r):
        lost = {name: g["clients_failed"] for name, g in report["regions"].items()}
        assert sum(lost.values()) == report["totals"]["failed"]
        eu, us = report["regions"]["eu-west"], report["regions"]["us-east"]
        assert lost["eu-west"] > 100 and eu["failed"] < lost["eu-west"]
        assert us["failed"] > us["clients_failed"]
    f_eu, t_eu = (
        fast_r["regions"]["eu-west"]["clients_failed"],
        trio_r["regions"]["eu-west"]["clients_failed"],
    )
    assert abs(t_eu - f_eu) <= 0.05 * f_eu


@pytest.mark.slow
def test_live_mode_runs_a_shield_tier(tmp_path: Path) -> None:
    # 10 s at live mode's default rate (about 350 requests): the shield nodes are
    # loopback servers too, between the edge servers and the origin process.
    demo = load_topology(resolve_topology_arg("demo"))
    topo = replace(_shielded(), traffic=window_topology(demo, 600, 10, auto_rate_scale(demo)).traffic)
    report = run_live(topo, seed=1, workdir=tmp_path).report
    cmp = report["meta"]["virtual_comparison"]
    assert cmp["requests"]["live"] == cmp["requests"]["virtual"] > 250
    assert report["totals"]["failed"] == report["totals"]["errors"] == 0
    assert abs(cmp["object_hit_ratio"]["difference"]) <= 0.02
    assert abs(cmp["origin_requests_per_second"]["relative_difference"]) <= 0.10
    shields = {name: n for name, n in report["nodes"].items() if n["tier"] == "shield"}
    assert sorted(shields) == ["shield-us-east-0", "shield-us-east-1"]
    assert all(n["origin_requests"] > 20 for n in shields.values())
    # the shield rows count the edges' fetches each answered, and how
    assert sum(n["requests"] for n in shields.values()) == report["totals"]["origin_requests"]
    assert all(
        n["requests"]
        == n["hits"]
        + n["collapsed"]
        + n["misses"]
        + n["revalidated"]
        + n["passes"]
        + n["errors"]
        + n["stale"]
        for n in shields.values()
    )
    # every origin request came through a shield, which answered some fetches itself
    assert report["origin"]["requests"] == sum(n["origin_requests"] for n in shields.values())
    assert report["origin"]["requests"] < report["totals"]["origin_requests"]


@pytest.mark.parametrize("crash", [NodeCrash("eu-west", 9, 1.0, 1.0), NodeCrash("nowhere", 0, 1.0, 1.0)])
def test_both_engines_refuse_a_crash_of_an_unknown_node(crash: NodeCrash) -> None:
    base = window_topology(load_topology(resolve_topology_arg("demo")), 600, 3, 0.1)
    topo = replace(base, faults=replace(base.faults, crashes=(crash,)))
    message = f"crash of unknown node {crash.region}\\[{crash.node}\\]"
    with pytest.raises(ValueError, match=message):
        simulate(topo, seed=1)
    with pytest.raises(ValueError, match=message):
        simulate_trio(topo, seed=1)
