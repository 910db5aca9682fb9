"""`edgesim plan` soundness, by simulation, on a small topology whose node counts matter.

The plan must meet the objective on fresh seeds, and one node fewer in any region must
fail on at least one of the plan's seeds (with --n-plus-1: the one-node-down case of
one node fewer fails).
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgesim._topoload import load_topology
from edgesim.cli import cli
from edgesim.engine import simulate
from edgesim.plan import Objective, PlanOptions, parse_objective, peak_window, plan, profile_edge
from edgesim.topology import Topology

SMALL = Path(__file__).parent.parent / "data" / "plan" / "small.toml"
PROFILES = Path(__file__).parent.parent / "data" / "plan" / "profiles.toml"
SLO = "p99<=44ms"
WINDOW = 40.0
FRESH = (101, 102)


def _with_nodes(topo: Topology, nodes: dict[str, int]) -> Topology:
    return replace(
        topo, regions=tuple(replace(r, edge=replace(r.edge, nodes=nodes[r.name])) for r in topo.regions)
    )


def _passes(topo: Topology, seed: int, objective: Objective) -> dict[str, bool]:
    rep = simulate(topo, seed=seed).to_dict(deterministic=True)
    out = {}
    for name, g in rep["regions"].items():
        out[name] = objective.check(g["latency"])[0] and g["errors"] + g["failed"] == 0
    return out


def test_plan_meets_the_objective_on_fresh_seeds_and_one_node_fewer_fails() -> None:
    topo = load_topology(SMALL)
    objective = parse_objective(SLO)
    result = plan(topo, PlanOptions(objective=objective, window=WINDOW, seeds=3))
    assert result.found, result.reason
    nodes = {r.name: r.nodes for r in result.regions}
    # the search costs fewer simulations than trying every count on every seed
    assert result.simulations < 3 * 2 * 6
    window = peak_window(topo, WINDOW)
    for seed in FRESH:
        assert all(_passes(_with_nodes(window, nodes), seed, objective).values()), seed
    checked = 0
    for name in nodes:
        fewer = dict(nodes, **{name: nodes[name] - 1})
        if fewer[name] == 0:
            continue  # no node: nothing is served
        verdicts = [_passes(_with_nodes(window, fewer), s, objective)[name] for s in result.seeds]
        assert not all(verdicts), (name, fewer)
        checked += 1
    assert checked  # the topology is sized so that node counts matter


def test_n_plus_1_plan_survives_a_node_down_and_is_tight(tmp_path: Path) -> None:
    out = tmp_path / "plan.json"
    r = CliRunner().invoke(
        cli,
        ["plan", str(SMALL), "--slo", SLO, "--window", "40s", "--n-plus-1", "--json", str(out), "--quiet"],
        catch_exceptions=False,
    )
    assert r.exit_code == 0, r.output
    data = json.loads(out.read_text())
    assert data["found"] and "one node down in each region" in data["search"]["scenarios"]
    nodes = {name: g["nodes"] for name, g in data["regions"].items()}
    assert all(n >= 2 for n in nodes.values())
    # the table shows the same plan, and the search cost
    assert f"{data['search']['simulations']} simulations" in r.stdout
    for name in nodes:
        assert name in r.stdout
    topo = load_topology(SMALL)
    objective = parse_objective(SLO)
    window = peak_window(topo, WINDOW)
    down = {name: n - 1 for name, n in nodes.items()}
    for seed in FRESH:
        assert all(_passes(_with_nodes(window, down), seed, objective).values()), seed
    seeds = data["search"]["seeds"]
    checked = 0
    for name in nodes:
        fewer_down = dict(down, **{name: down[name] - 1})
        if fewer_down[name] == 0:
            continue
        verdicts = [_passes(_with_nodes(window, fewer_down), s, objective)[name] for s in seeds]
        assert not all(verdicts), (name, fewer_down)
        checked += 1
    assert checked


def test_unreachable_objective_exits_3_and_names_what_binds(tmp_path: Path) -> None:
    out = tmp_path / "plan.json"
    r = CliRunner().invoke(
        cli,
        ["plan", str(SMALL), "--slo", "p99<=20ms", "--window", "20s", "--json", str(out), "--quiet"],
        catch_exceptions=False,
    )
    assert r.exit_code == 3
    data = json.loads(out.read_text())
    assert not data["found"]
    assert "latency floor binds" in data["reason"] and data["reason"] in r.stderr


def test_a_window_with_no_request_of_a_region_says_so_not_latency(tmp_path: Path) -> None:
    # the region's latency figures were empty (read as 0 ms or as the other seed's), and
    # the reason blamed the latency floor
    sparse = tmp_path / "sparse.toml"
    sparse.write_text(SMALL.read_text().replace("peak_rps = 300", "peak_rps = 0.05"))
    r = CliRunner().invoke(
        cli, ["plan", str(sparse), "--slo", "p99<=500ms", "--window", "1s", "--quiet"], catch_exceptions=False
    )
    assert r.exit_code == 3, r.output
    assert "none of its requests fell in the measured window with seed" in r.stderr
    assert "latency floor" not in r.stderr


def test_json_dash_is_standard_output_with_the_table_on_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["plan", str(SMALL), "--slo", "p99<=20ms", "--window", "20s", "--quiet"]
    r = CliRunner().invoke(cli, [*args, "--json", "-"], catch_exceptions=False)
    assert r.exit_code == 3
    assert not (tmp_path / "-").exists()
    data = json.loads(r.stdout)  # the plan alone
    assert not data["found"] and "latency floor binds" in data["reason"]
    assert f"no plan for {data['topology']}" in r.stderr and "search:" in r.stderr


def test_origin_ceiling_binds_without_cache_choices() -> None:
    # every miss counts: a ceiling below the cold-start misses cannot be met
    topo = load_topology(SMALL)
    opts = PlanOptions(objective=parse_objective("p99<=100ms"), window=20.0, seeds=1, origin_max_rps=0.01)
    result = plan(replace(topo, traffic=replace(topo.traffic, warmup=0.0)), opts)
    assert not result.found
    assert "origin ceiling binds" in result.reason and "--cache-sizes" in result.reason


def test_bad_input_is_one_line() -> None:
    for args, message in (
        (["--slo", "p99 under 80ms"], "cannot read"),
        (["--slo", "p99<=80ms", "--min-nodes", "4", "--max-nodes", "2"], "impossible search bounds"),
        (["--slo", "p99<=80ms", "--cache-sizes", "1GB,lots"], "--cache-sizes"),
        (["--slo", "p99<=80ms", "--window", "soon"], "--window"),
        (["--slo", "p99<=80ms", "--profiles", "all"], "defines no [profiles"),
        (["--slo", "p99<=80ms", "--profiles", "fast"], "defines no profile 'fast'"),
        # read as 80 seconds, it passed with one node per region
        (["--slo", "p99<=80"], "the limit '80' of p99 has no unit; expected a duration with a unit"),
        (["--slo", "p50<=20ms,p99<=0.08"], "the limit '0.08' of p99 has no unit"),
    ):
        r = CliRunner().invoke(cli, ["plan", str(SMALL), *args], catch_exceptions=False)
        assert r.exit_code == 1, args
        lines = [x for x in r.stderr.splitlines() if x.strip()]
        assert len(lines) == 1 and message in lines[0], (args, r.stderr)


def test_origin_ceiling_grows_caches_until_it_holds() -> None:
    # 40 KB of memory per node holds a handful of the 40 objects: the origin ceiling
    # forces larger caches, chosen from --cache-sizes and verified by simulation
    topo = load_topology(SMALL)
    tiny = replace(
        topo,
        regions=tuple(replace(r, edge=replace(r.edge, memory_cache=40_000)) for r in topo.regions),
    )
    ceiling = 5.0
    opts = PlanOptions(
        objective=parse_objective("p99<=80ms"),
        window=15.0,
        warmup=10.0,
        seeds=1,
        origin_max_rps=ceiling,
        cache_sizes=(40_000, 150_000, 2_000_000),
    )
    result = plan(tiny, opts)
    assert result.found, result.reason
    assert result.origin_rps <= ceiling
    assert any(r.memory_cache > 40_000 for r in result.regions)
    # the smallest size was tried and broke the ceiling
    first = next(e for e in result.log if "verify" in e)
    assert first["memory_cache"] == {"north": 40_000, "south": 40_000} and first["origin_rps"] > ceiling


def test_origin_ceiling_never_grows_a_region_without_clients() -> None:
    # south has no clients of its own and sends no origin requests: a larger cache
    # there saves nothing, so once north has the largest size the ceiling binds at once
    topo = load_topology(SMALL)
    regions = tuple(
        replace(r, client_share=1.0 if r.name == "north" else 0.0, edge=replace(r.edge, memory_cache=40_000))
        for r in topo.regions
    )
    opts = PlanOptions(
        objective=parse_objective("p99<=80ms"),
        window=15.0,
        warmup=0.0,
        seeds=1,
        origin_max_rps=0.01,
        cache_sizes=(40_000, 150_000),
    )
    result = plan(replace(topo, regions=regions), opts)
    assert not result.found and "origin ceiling binds" in result.reason, result.reason
    tried = [e["memory_cache"] for e in result.log if "verify" in e]
    assert {"north": 150_000, "south": 40_000} in tried
    assert all(m["south"] == 40_000 for m in tried), tried


def test_region_failure_plan_carries_the_failed_regions_clients() -> None:
    topo = load_topology(SMALL)
    objective = parse_objective(SLO)
    result = plan(topo, PlanOptions(objective=objective, window=20.0, seeds=1, region_failure=True))
    assert result.found, result.reason
    assert result.scenarios == ["all nodes up", "north down", "south down"]
    nodes = {r.name: r.nodes for r in result.regions}
    # south alone, with north's clients (north's only neighbour is south), on a fresh seed
    window = peak_window(topo, 20.0)
    south = replace(window.region("south"), client_share=1.0)
    south = replace(south, edge=replace(south.edge, nodes=nodes["south"]))
    alone = replace(window, regions=(south,))
    assert _passes(alone, 103, objective)["south"]
    # it needs more nodes than its own clients alone would
    plain = plan(topo, PlanOptions(objective=objective, window=20.0, seeds=1))
    assert nodes["south"] > next(r.nodes for r in plain.regions if r.name == "south")


def test_profiles_plan_takes_the_cheapest_passing_profile_per_region() -> None:
    # "small" nodes cost less each but need more of them; "large" nodes cost less per
    # worker. The plan weighs both in each region and takes the cheaper passing one.
    topo = load_topology(PROFILES)
    objective = parse_objective(SLO)
    result = plan(topo, PlanOptions(objective=objective, window=20.0, warmup=10.0, seeds=2))
    assert result.found, result.reason
    assert result.profiles == ["small", "large"]
    prices = {p.name: p.cost_per_hour for p in topo.profiles}
    window = peak_window(topo, 20.0, 10.0)
    by_name = {p.name: p for p in topo.profiles}
    chosen = {r.name: (r.profile, r.nodes) for r in result.regions}
    for r in result.regions:
        weighed = {a["profile"]: a for a in r.alternatives}
        assert set(weighed) == {"small", "large"} and all(a["found"] for a in weighed.values())
        # the choice is the cheapest alternative the search found, and is what it costs
        assert r.region_cost_per_hour <= min(a["cost_per_hour"] for a in weighed.values()) + 0.01
        assert r.cost_per_hour == r.nodes * prices[r.profile]
    # the premise: the cheaper node needs more of them somewhere
    assert any(
        a["profile"] == "small" and a["nodes"] > b["nodes"]
        for r in result.regions
        for a in r.alternatives
        for b in r.alternatives
        if b["profile"] == "large"
    )
    assert len({p for p, _ in chosen.values()}) == 2, chosen  # the regions differ

    def on(profile: str, nodes: dict[str, int]) -> Topology:
        regions = tuple(
            replace(x, edge=replace(profile_edge(x, by_name[profile]), nodes=nodes[x.name]))
            for x in window.regions
        )
        return replace(window, regions=regions)

    # every cheaper option (any profile, any count costing less per node-hour than the
    # choice) fails on at least one of the plan's seeds: the choice is the cheapest pass
    for profile, price in prices.items():
        cheaper = {
            name: math.ceil(round(chosen[name][1] * prices[chosen[name][0]] / price, 9)) - 1
            for name in chosen
        }
        for n in range(1, max(cheaper.values()) + 1):
            judged = [name for name in chosen if n <= cheaper[name]]
            topo_n = on(profile, {name: n for name in chosen})
            verdicts = [_passes(topo_n, s, objective) for s in result.seeds]
            for name in judged:
                assert not all(v[name] for v in verdicts), (name, profile, n)
    # the mixed plan holds on fresh seeds
    mixed = replace(
        window,
        regions=tuple(
            replace(x, edge=replace(profile_edge(x, by_name[chosen[x.name][0]]), nodes=chosen[x.name][1]))
            for x in window.regions
        ),
    )
    for seed in FRESH:
        assert all(_passes(mixed, seed, objective).values()), seed


def test_profiles_option_restricts_the_choice_and_shows_it(tmp_path: Path) -> None:
    out = tmp_path / "plan.json"
    r = CliRunner().invoke(
        cli,
        [
            *("plan", str(PROFILES), "--slo", SLO, "--window", "20s", "--warmup", "10s", "--seeds", "1"),
            *("--profiles", "large", "--json", str(out), "--quiet"),
        ],
        catch_exceptions=False,
    )
    assert r.exit_code == 0, r.output
    data = json.loads(out.read_text())
    assert data["search"]["profiles"] == ["large"]
    for g in data["regions"].values():
        assert g["profile"] == "large" and [a["profile"] for a in g["alternatives"]] == ["large"]
    assert "profiles weighed" in r.stdout and "large" in r.stdout


def test_a_profile_that_cannot_serve_a_region_is_searched_without_it() -> None:
    # at most 2 nodes: "small" cannot carry north (it needs 3), so north takes "large",
    # while south still gets its answer on "small"; with "small" alone there is no plan
    topo = load_topology(PROFILES)
    objective = parse_objective(SLO)
    opts = PlanOptions(objective=objective, window=20.0, warmup=10.0, seeds=2, max_nodes=2)
    result = plan(topo, opts)
    assert result.found, result.reason
    by = {r.name: r for r in result.regions}
    assert by["north"].profile == "large"
    small_north = next(a for a in by["north"].alternatives if a["profile"] == "small")
    assert not small_north["found"] and "--max-nodes 2" in small_north["reason"]
    assert any(a["profile"] == "small" and a["found"] for a in by["south"].alternatives)
    alone = plan(topo, replace(opts, profiles=("small",)))
    assert not alone.found and alone.reason.startswith("north: no profile meets the objective (small: ")


def test_a_plan_not_found_with_profiles_holds_no_configuration(tmp_path: Path) -> None:
    # south's clients are 100 ms away: no profile meets 44 ms there, while north passes
    # on "large". The no-plan JSON held north's node count and a cost from that search.
    slow = tmp_path / "slow.toml"
    south = 'name = "south"\nutc_offset = 0\nclient_share = 0.4\nclient_latency = { base = "'
    assert south + '5ms"' in PROFILES.read_text()
    slow.write_text(PROFILES.read_text().replace(south + '5ms"', south + '100ms"'))
    out = tmp_path / "plan.json"
    r = CliRunner().invoke(
        cli,
        [
            *("plan", str(slow), "--slo", SLO, "--window", "20s", "--warmup", "10s", "--seeds", "1"),
            *("--json", str(out), "--quiet"),
        ],
        catch_exceptions=False,
    )
    assert r.exit_code == 3, r.output
    data = json.loads(out.read_text())
    assert not data["found"]
    assert data["regions"] == {} and data["costs_per_hour"] == {}
    assert data["origin"]["peak_rps_window"] == 0 and data["origin"]["peak_rps_coincident"] == 0
    # each profile's reason is kept, and the search's cost and log
    assert data["reason"].startswith("south: no profile meets the objective (small: ")
    assert "; large: " in data["reason"]
    assert data["search"]["profiles"] == ["small", "large"] and data["search"]["simulations"] > 0
    assert any(e.get("profile") == "large" and "north" in e["passed"] for e in data["search"]["log"])
    # the terminal shows the reason, no table
    assert r.stdout.startswith("no plan for plan-profiles: south: no profile meets")
    assert "north" not in r.stdout.split("search:")[0].replace(data["reason"].replace("\n", " "), "")
    assert "p99 at peak" not in r.stdout and "cost per hour" not in r.stdout


def _zero_south(tmp_path: Path) -> Path:
    """small.toml with every client in north: south has client_share 0."""
    text = SMALL.read_text()
    assert text.count("client_share = 0.6") == 1 and text.count("client_share = 0.4") == 1
    zero = tmp_path / "zero.toml"
    zero.write_text(text.replace("client_share = 0.6", "client_share = 1.0").replace("0.4", "0.0", 1))
    assert load_topology(zero).region("south").client_share == 0.0
    return zero


def test_a_region_without_clients_gets_the_fewest_nodes(tmp_path: Path) -> None:
    # it could never be planned: its empty window failed every candidate ("lengthen
    # --window, or raise the traffic", which cannot help)
    zero = _zero_south(tmp_path)
    out = tmp_path / "plan.json"
    args = ["plan", str(zero), "--slo", "p99<=60ms", "--window", "20s", "--warmup", "10s", "--seeds", "1"]
    r = CliRunner().invoke(cli, [*args, "--json", str(out), "--quiet"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    data = json.loads(out.read_text())
    south = data["regions"]["south"]
    assert south["nodes"] == 1 and south["peak_rps"] == 0
    assert south["latency_at_peak"] == {} and south["headroom"] is None
    assert data["regions"]["north"]["nodes"] >= 2  # north carries every client
    row = next(line for line in r.stdout.splitlines() if "south" in line)
    assert row.count(" - ") >= 1 and " ms" not in row
    # the fewest the search allows: --min-nodes; with --n-plus-1, one node down leaves one
    topo = load_topology(zero)
    opts = PlanOptions(objective=parse_objective("p99<=60ms"), window=20.0, warmup=10.0, seeds=1)
    at_least_3 = plan(topo, replace(opts, min_nodes=3))
    assert at_least_3.found, at_least_3.reason
    assert {x.name: x.nodes for x in at_least_3.regions}["south"] == 3
    spare = plan(topo, replace(opts, n_plus_1=True))
    assert spare.found, spare.reason
    assert {x.name: x.nodes for x in spare.regions}["south"] == 2


def test_stability_floor_is_the_loads_and_the_log_shows_the_node_down() -> None:
    # north's 180 requests/s at ~12.5 ms on 2 workers need 2 nodes, south's 120 need 1
    # (with --n-plus-1 one more); the JSON said --min-nodes for both
    topo = load_topology(SMALL)
    opts = PlanOptions(
        objective=parse_objective("p99<=60ms"), window=20.0, warmup=10.0, seeds=1, n_plus_1=True, min_nodes=4
    )
    result = plan(topo, opts)
    assert result.found, result.reason
    by = {x.name: x for x in result.regions}
    assert by["north"].stability_floor == 3 and by["south"].stability_floor == 2
    assert all(x.nodes >= 4 for x in result.regions)
    # the one-node-down verification is logged as simulated (it showed the full counts)
    down = next(e for e in result.log if e.get("verify") == "one node down in each region")
    assert down["nodes"] == {name: x.nodes - 1 for name, x in by.items()}
    assert next(e for e in result.log if e.get("verify") == "all nodes up")["nodes"] == {
        name: x.nodes for name, x in by.items()
    }


def test_a_region_without_clients_is_planned_on_the_clients_failed_over_to_it(tmp_path: Path) -> None:
    topo = load_topology(_zero_south(tmp_path))
    objective = parse_objective("p99<=60ms")
    opts = PlanOptions(objective=objective, window=20.0, warmup=10.0, seeds=1, region_failure=True)
    result = plan(topo, opts)
    assert result.found, result.reason
    assert result.scenarios == ["all nodes up", "north down", "south down"]
    nodes = {x.name: x.nodes for x in result.regions}
    south = next(x for x in result.regions if x.name == "south")
    # with north down, south carries all of north's 300 requests/s
    assert nodes["south"] >= 2 and south.latency and south.headroom is not None
    verified = next(e for e in result.log if e.get("verify") == "north down")
    assert verified["nodes"] == {"south": nodes["south"]} and verified["passed"] == {"south": True}
    # one node fewer fails with north's clients, on the plan's seed
    window = peak_window(topo, 20.0, 10.0)
    alone = replace(window.region("south"), client_share=1.0)
    fewer = replace(window, regions=(replace(alone, edge=replace(alone.edge, nodes=nodes["south"] - 1)),))
    assert not _passes(fewer, result.seeds[0], objective)["south"]


def test_a_region_with_clients_but_no_request_in_the_window_still_says_so(tmp_path: Path) -> None:
    # the idle-region rule is for a share of 0, not for a window too short for the traffic
    text = SMALL.read_text().replace("peak_rps = 300", "peak_rps = 0.05")
    sparse = tmp_path / "sparse.toml"
    sparse.write_text(text)
    result = plan(
        load_topology(sparse), PlanOptions(objective=parse_objective("p99<=500ms"), window=1.0, seeds=1)
    )
    assert not result.found and "none of its requests fell in the measured window" in result.reason
    assert result.regions == [] and result.costs == {}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-nodes", "10001"], "Invalid value for '--max-nodes'"),
        (["--seeds", "x"], "Invalid value for '--seeds'"),
        (["--origin-max-rps", "abc"], "Invalid value for '--origin-max-rps'"),
        (["--json", "/nonexistent/x.json"], "Invalid value for '--json'"),
    ],
)
def test_options_click_refuses_are_its_usage_error(args: list[str], message: str) -> None:
    # as in every edgesim command (docs/plan.md's exit-status table): status 2, click's
    # "Usage:" and "Try" lines around one "Error:" line, nothing simulated
    r = CliRunner().invoke(cli, ["plan", str(SMALL), "--slo", SLO, *args], catch_exceptions=False)
    assert r.exit_code == 2, r.output
    lines = [x for x in r.stderr.splitlines() if x.strip() and not x.startswith(("Usage:", "Try "))]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], r.stderr
    assert not r.stdout


def test_with_a_flat_day_the_coincident_peak_is_the_windows() -> None:
    # The window's origin peak was the worst seed's and the coincident estimate scaled the
    # seeds' mean: with no diurnal variation the "estimate" came out below the window's.
    from edgesim._topoload import parse_topology

    # small.toml (flat already) with more objects than its caches hold: misses every second
    text = SMALL.read_text().replace('memory_cache = "64MB"', 'memory_cache = "1MB"')
    topo = parse_topology(text.replace("objects = 40", "objects = 3000"), path=SMALL)
    assert topo.traffic.diurnal in ((), (1.0,)) or len(set(topo.traffic.diurnal)) == 1
    result = plan(topo, PlanOptions(objective=parse_objective("p99<=80ms"), window=WINDOW, seeds=3))
    assert result.found, result.reason
    assert result.origin_rps > 0
    assert result.origin_rps_coincident == pytest.approx(result.origin_rps, rel=1e-9)
