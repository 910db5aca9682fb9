"""edgesim.plan without simulations: objectives, cheap models, scenarios, bounds."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest

from edgesim._topoload import load_topology
from edgesim.plan import (
    PlanError,
    PlanOptions,
    coincident_origin_peak,
    erlang_c,
    failover_shares,
    mean_service,
    parse_objective,
    peak_window,
    plan,
)
from edgesim.topology import Distribution

SMALL = Path(__file__).parent.parent / "data" / "plan" / "small.toml"
PROFILES = SMALL.with_name("profiles.toml")


def test_parse_objective() -> None:
    o = parse_objective("p99<=80ms")
    assert o.terms == (("p99", 0.08),)
    o = parse_objective(" P50 < 20ms and p99<=0.1s, mean<=30ms ")
    assert o.terms == (("p50", 0.02), ("p99", 0.1), ("mean", 0.03))
    ok, metric, slack = o.check({"p50": 0.01, "p99": 0.095, "mean": 0.02})
    assert ok and metric == "p99" and slack == pytest.approx(0.05)
    assert not o.check({"p50": 0.01, "p99": 0.2, "mean": 0.02})[0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "expected terms"),
        ("p98<=80ms", "cannot read 'p98<=80ms'"),
        ("p99>=80ms", "cannot read"),
        ("p99<=", "cannot read 'p99<='"),  # it was read as p99 < '=', a bad duration
        ("p99<=fast", "expected a duration"),
        ("p99<=0ms", "must be above 0"),
        # a limit without its unit was read as seconds (80 s passes almost anything)
        ("p99<=80", "the limit '80' of p99 has no unit; expected a duration with a unit such as 80ms"),
        ("p50<=20ms, p99 < 0.5 ", "the limit '0.5' of p99 has no unit"),
        ("p99<=.5", "has no unit"),
        ("p99<=80ms,latency<1s", "cannot read 'latency<1s'"),
        # a stray comma or "and" was dropped without a word
        ("p99<=80ms,", "an empty term"),
        ("p50<=20ms,,p99<=80ms", "an empty term"),
        ("p99<=80ms and", "an empty term"),
    ],
)
def test_bad_objectives_say_what_was_expected(text: str, message: str) -> None:
    with pytest.raises(PlanError, match=message):
        parse_objective(text)


def test_erlang_c_known_values() -> None:
    assert erlang_c(1, 0.5) == pytest.approx(0.5)  # M/M/1: P(wait) = rho
    # M/M/2 at a = 1: C = a^2/(2!(1-rho)) / (1 + a + a^2/(2!(1-rho))) = 1/3
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)
    assert erlang_c(4, 4.0) == 1.0


def test_mean_service_respects_the_cap() -> None:
    assert mean_service(Distribution("fixed", value=0.004)) == pytest.approx(0.004)
    ln = Distribution("lognormal", median=0.001, sigma=0.5)
    assert mean_service(ln) == pytest.approx(0.001 * math.exp(0.125), rel=0.01)
    capped = Distribution("lognormal", median=0.001, sigma=2.0, cap=0.002)
    assert mean_service(capped) < 0.002


def test_peak_window_is_flat_at_the_daily_peak() -> None:
    topo = load_topology(SMALL)
    w = peak_window(topo, 40.0, 10.0)
    assert w.traffic.duration == 50.0 and w.traffic.warmup == 10.0
    assert set(w.traffic.diurnal) == {max(topo.traffic.diurnal)}
    assert not w.traffic.flash_crowds and not w.faults.crashes


def test_failover_goes_to_the_nearest_region() -> None:
    topo = load_topology(Path(__file__).parent.parent.parent / "topologies" / "global-5-regions.toml")
    assert failover_shares(topo, "ap-southeast") == {"ap-south": pytest.approx(0.18)}
    assert failover_shares(topo, "eu-west") == {"us-east": pytest.approx(0.28)}
    # regions peaking at different hours: the coincident peak is below the sum of peaks
    loads = {r.name: 10.0 for r in topo.regions}
    assert 0.5 * 50.0 < coincident_origin_peak(topo, 50.0, loads) < 50.0
    flat = replace(topo, traffic=replace(topo.traffic, diurnal=(1.0,) * 24))
    assert coincident_origin_peak(flat, 50.0, loads) == pytest.approx(50.0)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"min_nodes": 5, "max_nodes": 2}, "impossible search bounds"),
        ({"min_nodes": 0}, "impossible search bounds"),
        ({"n_plus_1": True, "max_nodes": 1}, "--n-plus-1 needs --max-nodes"),
        ({"seeds": 0}, "--seeds"),
        ({"origin_max_rps": -1.0}, "--origin-max-rps"),
        # 600 requests/s at ~6 ms on 2 workers needs at least 2 nodes
        ({"max_nodes": 1}, "need at least 2 nodes"),
    ],
)
def test_impossible_bounds_fail_before_simulating(changes: dict[str, object], message: str) -> None:
    topo = load_topology(SMALL)
    opts = PlanOptions(objective=parse_objective("p99<=30ms"), **changes)  # type: ignore[arg-type]
    if message.startswith("need at least"):
        result = plan(topo, opts)  # a search bound the load rules out: no plan, no simulation
        assert not result.found and result.simulations == 0
        assert "north" in result.reason and message in result.reason
        return
    with pytest.raises(PlanError, match=message):
        plan(topo, opts)


def test_trace_driven_topologies_are_refused() -> None:
    topo = load_topology(SMALL)
    traced = replace(topo, traffic=replace(topo.traffic, trace=Path("requests.csv")))
    with pytest.raises(PlanError, match="replays a trace"):
        plan(traced, PlanOptions(objective=parse_objective("p99<=30ms")))


def test_region_failure_with_one_region_is_refused_when_profiles_are_weighed() -> None:
    # the profile loop skipped the only region and ended in an AssertionError
    topo = load_topology(PROFILES)
    north = replace(topo.region("north"), client_share=1.0)
    one = replace(topo, regions=(north,), region_latency=())
    assert len(one.profiles) == 2
    with pytest.raises(PlanError, match="--region-failure needs at least two regions"):
        plan(one, PlanOptions(objective=parse_objective("p99<=30ms"), region_failure=True))
