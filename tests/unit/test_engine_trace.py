"""The capacity engine driven by a request trace (``[traffic] trace``) instead of
synthetic arrivals: every record becomes one request through the real cores."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from helpers import trace_topology, write_zipf_trace

from edgesim._topoload import parse_topology
from edgesim.engine import simulate
from edgesim.replay import replay
from edgesim.traces import read_trace


def two_regions(cache: str) -> str:
    """Regions eu and us (one node each), sites a.example and b.example, two hours."""
    return trace_topology(
        {"eu": 1, "us": 1},
        cache=cache,
        duration="2h",
        client_shares={"eu": 0.6, "us": 0.4},
        site_shares={"a.example": 0.7, "b.example": 0.3},
    )


def write_trace(path: Path, n: int, *, placed: bool) -> list[tuple[float, str, int, str, str]]:
    return write_zipf_trace(path, n, objects=600, gap=0.5, seed=1, placed=placed)


def run(tmp_path: Path, cache: str) -> dict[str, Any]:
    topo = parse_topology(two_regions(cache), path=tmp_path / "t.toml")
    return simulate(topo, seed=1).to_dict(deterministic=True)


def test_every_record_is_one_request_in_its_region_and_site(tmp_path: Path) -> None:
    rows = write_trace(tmp_path / "t.csv", 3000, placed=True)
    rep = run(tmp_path, "1GB")
    assert rep["meta"]["simulated_requests"] == len(rows)
    by_region = Counter(r[3] for r in rows)
    by_site = Counter(r[4] for r in rows)
    assert {r: rep["regions"][r]["requests"] for r in ("eu", "us")} == by_region
    assert {s: rep["sites"][s]["requests"] for s in ("a.example", "b.example")} == by_site
    assert rep["totals"]["bytes_served"] == sum(r[2] for r in rows)
    # a cache that holds everything: only the first request of a key per node misses
    first = {(r[3], r[4], r[1]) for r in rows}
    assert rep["totals"]["misses"] == len(first)
    assert rep["totals"]["hits"] + rep["totals"]["collapsed"] == len(rows) - len(first)


def test_one_lru_node_matches_textbook_lru_within_overheads(tmp_path: Path) -> None:
    """One region, one node: the engine's hit ratio on the trace is the LRU replay's,
    up to the per-entry header and bookkeeping bytes the edge cache counts."""
    write_trace(tmp_path / "t.csv", 6000, placed=False)
    topo = parse_topology(
        trace_topology({"eu": 1}, cache="3MB", sites=("a.example",)), path=tmp_path / "t.toml"
    )
    rep = simulate(topo, seed=3).to_dict(deterministic=True)
    lru = replay(read_trace(tmp_path / "t.csv"), 3_000_000, policy="lru")
    assert rep["totals"]["requests"] == lru.requests == 6000
    assert abs(rep["totals"]["object_hit_ratio"] - lru.hit_ratio) < 0.01
    assert rep["totals"]["object_hit_ratio"] < 0.9  # the cache is really too small


def test_trace_runs_are_deterministic(tmp_path: Path) -> None:
    write_trace(tmp_path / "t.csv", 1500, placed=False)
    assert run(tmp_path, "2MB") == run(tmp_path, "2MB")


def test_an_origin_candidate_serves_the_traces_sizes(tmp_path: Path) -> None:
    # a [shadow] origin candidate whose override only touches HTML, on sites that serve
    # images only: it answers as the engine's own origin does, object sizes included
    # (built without the trace's sizes, it disagreed on 526 of the compared requests)
    write_trace(tmp_path / "t.csv", 1500, placed=True)
    shadow = '\n[shadow]\ncandidate = "origin"\n[shadow.origin]\n"a.example" = { html = "no-store" }\n'
    path = tmp_path / "topo.toml"
    path.write_text(two_regions("64MB") + shadow)
    report = simulate(parse_topology(path.read_text(), path=str(path))).to_dict(deterministic=True)
    tot = report["shadow"]["totals"]
    assert tot["seen"] > 300  # the fetches that reached the origin
    assert tot["mismatches"] == 0 and tot["agreed"] == tot["compared"] > 0
