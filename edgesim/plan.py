"""Capacity planning: the cheapest topology that meets a latency objective at peak.

Theory of operation
-------------------
``plan`` never simulates a whole day. It builds one *peak window* from the topology
(:func:`peak_window`): the traffic is held flat at the diurnal curve's maximum, so every
region runs at its own daily peak rate for the whole window (flash crowds, deploys and
faults are left out: the plan is for the steady peak). The window is the topology's
warm-up (cold caches filling, excluded from the figures) plus ``window`` seconds that
are measured. Each region's edge load is then exact; the origin's load is an upper
bound of the day's coincident peak, since regions peak at different UTC hours
(:func:`coincident_origin_peak` gives the estimate from the diurnal curve).

One simulation judges every region at once (each reads its own latency percentiles),
so the search runs the regions' bisections side by side: each *round* is one
candidate per unresolved region, simulated on K seeds. Per region:

1. Cheap models prune first. A node count whose utilisation (arrival rate x mean
   service time / workers, a sampled mean that respects the distribution's cap) would
   reach 1 is unstable: its queue grows through the window, so it is never simulated.
   An M/M/c (Erlang-C) model of one node with 1/n of the region's load then picks the
   first candidate: the smallest count whose modelled 99th-percentile wait is under a
   quarter of the objective.
2. Bracket: a failing count doubles until one passes (up to ``max_nodes``); a passing
   count is bisected down towards the highest count known to fail (simulated, or
   pruned as unstable). Two failing probes in a row without improvement at low
   utilisation mean that misses, not queueing, set the latency: the stability floor is
   tried once (fewer nodes keep warmer caches), then the search gives up (exit 3).
3. Verify: the final configuration is simulated again on the same seeds as a whole
   (regions were judged beside other regions' candidates), and with ``--n-plus-1`` or
   ``--region-failure`` in every failure scenario. A region that fails there gets one
   more node and the check repeats.

No monotonicity is assumed beyond one bracket: with random balancing more nodes mean
colder caches and more origin requests, and p99 can be set by misses rather than by
queueing. So the answer is a verified pass/fail boundary: the plan passes on every
seed, one node fewer failed on at least one seed, and counts under the stability
bound cannot pass. Counts between the stability bound and the boundary that the
bisection skipped are not claimed to fail.

Cache sizes (``cache_sizes``): when the origin has a request ceiling, the region's
miss-ratio curve (:mod:`edgesim.mrc`) predicts each size's origin load, offset by what
the first simulation measured (TTL expiry, uncacheable paths and cold starts are not
in the curve). The smallest sizes predicted to meet the ceiling are tried first and
simulation has the last word; a region whose verified origin load is over the ceiling
moves up one size and is searched again.

Hardware profiles (``profiles``): the search above runs once per profile with every
region on it; each region takes the profile whose passing count costs least per hour
(its nodes, egress and part of the origin requests, priced by
:func:`edgesim.pricing.hourly_cost`), and a mix of profiles is searched once more from
the counts found and verified.

A plan costs about ``K x (rounds + verification scenarios)`` simulations of the
window, times the profiles weighed plus one verification of their mix;
:class:`Plan` records the exact count.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from edgesim.pricing import hourly_cost
from edgesim.topology import Distribution, EdgeGroup, Faults, HardwareProfile, Region, Topology

__all__ = [
    "Objective",
    "Plan",
    "PlanError",
    "PlanOptions",
    "coincident_origin_peak",
    "failover_shares",
    "parse_objective",
    "peak_window",
    "plan",
]

# A candidate also fails when more than this share of a region's requests get a 5xx or
# no answer: a latency percentile says nothing about requests that never finished.
ERROR_BUDGET = 0.001
# Erlang-C start: the first candidate's modelled 99th-percentile queueing wait may use a
# quarter of the objective (the rest is network, service and misses).
_WAIT_SHARE = 0.25
# More verification rounds than this means the regions keep disturbing each other.
_MAX_VERIFY = 6
_METRICS = ("p50", "p95", "p99", "max", "mean")
_BARE_NUMBER = re.compile(r"\s*(?:\d+(?:\.\d*)?|\.\d+)\s*", re.ASCII)  # a duration without its unit
_TERM = re.compile(r"^\s*(p50|p95|p99|max|mean)\s*(<=|<(?!=))\s*(.+?)\s*$", re.IGNORECASE)


class PlanError(ValueError):
    """Bad planning input (objective, bounds, options): one line, said to the user."""


@dataclass(frozen=True, slots=True)
class Objective:
    """A latency objective: every term must hold in every region.

    Attributes:
        terms: (metric, limit in seconds); metric is p50, p95, p99, max or mean of the
            region's client latency.
        text: as the user wrote it.
    """

    terms: tuple[tuple[str, float], ...]
    text: str

    def check(self, latency: dict[str, Any]) -> tuple[bool, str, float]:
        """(holds, the tightest term's metric, its slack as a share of its limit)."""
        worst = ("", math.inf)
        ok = True
        for metric, limit in self.terms:
            v = latency.get(metric)
            if v is None:
                return False, metric, -1.0
            slack = (limit - float(v)) / limit
            if float(v) > limit:
                ok = False
            if slack < worst[1]:
                worst = (metric, slack)
        return ok, worst[0], worst[1]


def parse_objective(text: str) -> Objective:
    """Parse ``'p99<=80ms'`` (terms joined by ``,`` or ``and``; metrics p50, p95, p99,
    max, mean; ``<`` is read as ``<=``). A limit needs its unit: ``p99<=80`` is refused
    (read as seconds it would pass almost anything).

    Raises:
        PlanError: naming the term that could not be read and what was expected.
    """
    from edgesim._units import parse_duration

    parts = re.split(r",|\band\b", text)
    if not text.strip():
        raise PlanError(f"objective {text!r}: expected terms such as 'p99<=80ms' or 'p50<=20ms,p99<=80ms'")
    if not all(p.strip() for p in parts):
        raise PlanError(f"objective {text!r}: an empty term (expected METRIC<=DURATION between commas)")
    terms = []
    for part in parts:
        m = _TERM.match(part)
        if m is None:
            raise PlanError(
                f"objective {text!r}: cannot read {part.strip()!r}; expected METRIC<=DURATION with "
                f"METRIC one of {', '.join(_METRICS)} (e.g. 'p99<=80ms')"
            )
        if _BARE_NUMBER.fullmatch(m.group(3)):
            raise PlanError(
                f"objective {text!r}: the limit {m.group(3)!r} of {m.group(1)} has no unit; "
                f"expected a duration with a unit such as 80ms or 0.08s"
            )
        try:
            limit = parse_duration(m.group(3))
        except ValueError as exc:
            raise PlanError(f"objective {text!r}: {exc}") from None
        if not limit > 0:
            raise PlanError(f"objective {text!r}: the limit of {m.group(1)} must be above 0")
        terms.append((m.group(1).lower(), limit))
    return Objective(tuple(terms), text.strip())


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanOptions:
    """What to plan for (see ``edgesim plan --help`` and docs/plan.md).

    Attributes:
        objective: the latency objective.
        origin_max_rps: the origin's request ceiling (None: none).
        n_plus_1: the plan must hold with one node down in each region.
        region_failure: ... and with any one region down, its clients failed over.
        cache_sizes: memory-tier sizes per node to choose from (empty: keep the
            topology's).
        seeds: K, the seeds each candidate must pass on (``seed0``, ``seed0 + 1``, ...).
        seed0: the first seed.
        window: measured seconds of the peak window (after the warm-up).
        warmup: warm-up seconds (None: the topology's).
        min_nodes, max_nodes: search bounds per region.
        profiles: hardware profiles to weigh in every region (None: all the
            topology's ``[profiles]`` when it defines two or more, else none; empty:
            none, each region keeps its edge group).
    """

    objective: Objective
    origin_max_rps: float | None = None
    n_plus_1: bool = False
    region_failure: bool = False
    cache_sizes: tuple[int, ...] = ()
    seeds: int = 3
    seed0: int = 1
    window: float = 300.0
    warmup: float | None = None
    min_nodes: int = 1
    max_nodes: int = 64
    profiles: tuple[str, ...] | None = None


@dataclass(slots=True)
class RegionPlan:
    """The plan's figures for one region (worst case over seeds and scenarios for
    latency and utilisation, means for ratios and rates)."""

    name: str
    nodes: int
    memory_cache: int
    disk_cache: int
    peak_rps: float
    utilisation: float
    latency: dict[str, float]  # empty: the region served no request (no client share)
    hit_ratio: float
    origin_rps: float
    headroom: float | None  # None: the region served no request
    binding: str
    stability_floor: int
    cost_per_hour: float
    egress_gb_per_hour: float
    region_cost_per_hour: float = 0.0
    profile: str = ""
    # the profiles weighed: {"profile", "nodes", "cost_per_hour", "found", "reason"}
    alternatives: list[dict[str, Any]] = field(default_factory=list)


@dataclass(slots=True)
class Plan:
    """A finished search: found or not, the regions, costs and what the search cost."""

    topology: str
    objective: str
    found: bool
    reason: str
    regions: list[RegionPlan]
    origin_rps: float
    origin_rps_coincident: float
    origin_max_rps: float | None
    costs: dict[str, float]
    simulations: int
    rounds: int
    seconds: float
    seeds: list[int]
    window: dict[str, float]
    scenarios: list[str]
    log: list[dict[str, Any]] = field(default_factory=list)
    profiles: list[str] = field(default_factory=list)  # the hardware profiles weighed

    def as_dict(self) -> dict[str, Any]:
        def r6(x: float) -> float:
            return round(x, 6)

        return {
            "topology": self.topology,
            "objective": self.objective,
            "found": self.found,
            "reason": self.reason,
            "regions": {
                r.name: {
                    "nodes": r.nodes,
                    "memory_cache": r.memory_cache,
                    "disk_cache": r.disk_cache,
                    "peak_rps": r6(r.peak_rps),
                    "peak_utilisation": r6(r.utilisation),
                    "latency_at_peak": {k: r6(v) for k, v in r.latency.items()},
                    "hit_ratio": r6(r.hit_ratio),
                    "origin_rps": r6(r.origin_rps),
                    "headroom": None if r.headroom is None else r6(r.headroom),
                    "binding": r.binding,
                    "stability_floor": r.stability_floor,
                    "cost_per_hour": r6(r.cost_per_hour),
                    "egress_gb_per_hour": r6(r.egress_gb_per_hour),
                    "region_cost_per_hour": r6(r.region_cost_per_hour),
                    "profile": r.profile,
                    "alternatives": [
                        {k: r6(v) if isinstance(v, float) else v for k, v in a.items()}
                        for a in r.alternatives
                    ],
                }
                for r in self.regions
            },
            "origin": {
                "peak_rps_window": r6(self.origin_rps),
                "peak_rps_coincident": r6(self.origin_rps_coincident),
                "max_rps": self.origin_max_rps,
            },
            "costs_per_hour": {k: r6(v) for k, v in self.costs.items()},
            "search": {
                "simulations": self.simulations,
                "rounds": self.rounds,
                "seconds": round(self.seconds, 2),
                "seeds": self.seeds,
                "window": self.window,
                "scenarios": self.scenarios,
                "profiles": self.profiles,
                "log": self.log,
            },
        }


# ---- the peak window and scenarios -------------------------------------------------


def peak_window(topo: Topology, window: float, warmup: float | None = None) -> Topology:
    """``topo`` as a stationary peak window: every region at its daily peak rate for
    ``warmup + window`` seconds (warm-up excluded from the figures); flash crowds,
    deploys and faults removed."""
    tr = topo.traffic
    top = max(tr.diurnal) if tr.diurnal else 1.0
    w = tr.warmup if warmup is None else warmup
    traffic = replace(
        tr,
        duration=w + window,
        warmup=w,
        diurnal=(top,) * 24,
        flash_crowds=(),
        deploys=(),
        trace=None,
    )
    faults = Faults(
        health_check_delay=topo.faults.health_check_delay, client_timeout=topo.faults.client_timeout
    )
    return replace(topo, traffic=traffic, faults=faults, interval=max(window, 1.0))


def _latency_map(topo: Topology) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    for a, b, s in topo.region_latency:
        out[(a, b)] = s
        out[(b, a)] = s
    return out


def failover_shares(topo: Topology, down: str) -> dict[str, float]:
    """Where region ``down``'s clients go: the nearest surviving region(s) by the
    latency matrix (ties share equally). Returns region -> added client share.

    Raises:
        PlanError: no latency is given from ``down`` to any other region.
    """
    lat = _latency_map(topo)
    options = [
        (lat[(down, r.name)], r.name) for r in topo.regions if r.name != down and (down, r.name) in lat
    ]
    if not options:
        raise PlanError(
            f"{topo.name}: region failure needs [network.region_latency] from {down} to another region"
        )
    best = min(s for s, _ in options)
    nearest = [name for s, name in options if s == best]
    share = topo.region(down).client_share
    return {name: share / len(nearest) for name in nearest}


def _without(topo: Topology, down: str) -> Topology:
    """Region ``down`` removed, its client share added to its failover targets."""
    add = failover_shares(topo, down)
    regions = tuple(
        replace(r, client_share=r.client_share + add.get(r.name, 0.0)) for r in topo.regions if r.name != down
    )
    return replace(topo, regions=regions)


def coincident_origin_peak(topo: Topology, origin_rps: float, by_region: dict[str, float]) -> float:
    """The origin's peak over a day when each region's share of the origin load follows
    its own diurnal curve.

    ``origin_rps`` is the origin's load with every region at its peak (the window's);
    ``by_region`` weighs the regions (their edges' upstream requests, which with a
    shield are not the origin's own). The estimate is ``origin_rps`` times the maximum
    over UTC time (1-minute steps) of the weighted mean of diurnal(local hour) / max.
    """
    tr = topo.traffic
    curve = tr.diurnal or (1.0,)
    top = max(curve) or 1.0
    n = len(curve)
    total = sum(by_region.get(r.name, 0.0) for r in topo.regions)
    if total <= 0:
        return 0.0

    def d(hour: float) -> float:
        h = (hour % 24.0) * n / 24.0
        i = int(h)
        f = h - i
        return curve[i % n] * (1 - f) + curve[(i + 1) % n] * f

    best = 0.0
    for minute in range(24 * 60):
        t = minute / 60.0
        w = sum(by_region.get(r.name, 0.0) * d(t + r.utc_offset) / top for r in topo.regions)
        best = max(best, w / total)
    return origin_rps * best


# ---- cheap models ---------------------------------------------------------------------


def mean_service(d: Distribution) -> float:
    """The mean of a service-time distribution with its cap applied (sampled with a
    fixed seed, so that capped heavy tails are not overestimated)."""
    import numpy as np

    g = np.random.Generator(np.random.PCG64(12345))
    n = 200_000
    k = d.kind
    if k == "fixed":
        x = np.full(n, d.value)
    elif k == "lognormal":
        x = d.median * np.exp(d.sigma * g.standard_normal(n))
    elif k == "exponential":
        x = g.exponential(d.mean, n)
    elif k == "pareto":
        x = d.minimum * (1.0 + g.pareto(d.alpha, n))
    else:
        x = g.uniform(d.minimum, d.maximum, n)
    if d.cap > 0:
        x = np.minimum(x, d.cap)
    return float(np.mean(x))


def erlang_c(c: int, a: float) -> float:
    """P(wait > 0) in an M/M/c queue with offered load ``a`` (Erlangs); 1.0 if a >= c."""
    if a >= c:
        return 1.0
    # Erlang B by its stable recurrence, then C from B
    b = 1.0
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    rho = a / c
    return b / (1 - rho + rho * b)


def _stability_floor(rate: float, es: float, workers: int) -> int:
    """The smallest node count whose utilisation stays under 1 (counts below it are
    unstable and pruned). A 5% margin under the sampled mean keeps the bound safe."""
    load = rate * es * 0.95 / max(1, workers)
    return max(1, math.floor(load) + 1)


def _erlang_start(rate: float, es: float, workers: int, limit: float, lo: int, hi: int) -> int:
    """The smallest n in [lo, hi] whose per-node M/M/c 99th-percentile wait is under
    ``_WAIT_SHARE`` of the objective's limit."""
    if es <= 0:
        return lo
    mu = 1.0 / es
    for n in range(lo, hi + 1):
        lam = rate / n
        a = lam * es
        if a >= workers:
            continue
        c = erlang_c(workers, a)
        # P(W > t) = C exp(-(c mu - lam) t): its 1% point (0 when C itself is under 1%)
        t99 = math.log(c / 0.01) / (workers * mu - lam) if c > 0.01 else 0.0
        if t99 <= _WAIT_SHARE * limit:
            return n
    return hi


# ---- evaluation -------------------------------------------------------------------------


@dataclass(slots=True)
class _Verdict:
    ok: dict[str, bool]  # region -> passed on every seed run
    origin_rps: list[float]  # per seed
    reports: list[dict[str, Any]]


class _Runner:
    """Runs configurations on the seeds and counts simulations."""

    def __init__(self, base: Topology, opts: PlanOptions, progress: Callable[[str], None] | None) -> None:
        from edgesim.engine import simulate

        self.simulate = simulate
        self.base = base
        self.opts = opts
        self.count = 0
        self.reused = 0
        # (configuration, seed) -> report: the verification often re-judges a
        # configuration the search already ran on the same seeds
        self.memo: dict[tuple[Any, int], dict[str, Any]] = {}
        self.progress = progress
        self.seeds = [opts.seed0 + i for i in range(opts.seeds)]

    def topology(
        self, nodes: dict[str, int], cache: dict[str, int], shares: dict[str, float] | None = None
    ) -> Topology:
        regions: list[Region] = []
        for r in self.base.regions:
            edge = replace(r.edge, nodes=nodes[r.name], memory_cache=cache.get(r.name, r.edge.memory_cache))
            share = r.client_share + (shares or {}).get(r.name, 0.0)
            regions.append(replace(r, edge=edge, client_share=share))
        return replace(self.base, regions=tuple(regions))

    def run(self, topo: Topology, judge: Sequence[str], *, stop_when_all_fail: bool = True) -> _Verdict:
        """Simulate ``topo`` on the seeds; a region passes if it meets the objective
        on all of them. Stops early once every judged region has failed.

        A judged region with no client share in ``topo`` (none of its own, none failed
        over to it) has nothing to serve and passes: no node count changes that.
        """
        ok = {name: True for name in judge}
        idle = {r.name for r in topo.regions if r.client_share <= 0}
        judge = [name for name in judge if name not in idle]
        origin: list[float] = []
        reports: list[dict[str, Any]] = []
        key = tuple((r.name, r.client_share, r.edge.nodes, r.edge.memory_cache) for r in topo.regions)
        for seed in self.seeds:
            rep = self.memo.get((key, seed))
            if rep is None:
                try:
                    rep = self.simulate(topo, seed=seed).to_dict(deterministic=True)
                except ValueError as exc:  # the engine refused the window (one line)
                    raise PlanError(f"{topo.path or topo.name}: the peak window: {exc}") from None
                self.memo[(key, seed)] = rep
                self.count += 1
                if self.progress is not None:
                    self.progress(f"simulation {self.count}: seed {seed}, nodes {_nodes_text(topo)}")
            else:
                self.reused += 1
            reports.append(rep)
            span = max(float(rep["meta"]["duration"]) - float(rep["meta"]["warmup"]), 1e-9)
            origin.append(float(rep["origin"]["requests"]) / span)
            for name in judge:
                if not _region_passes(rep["regions"].get(name), self.opts.objective):
                    ok[name] = False
            if stop_when_all_fail and judge and not any(ok[name] for name in judge):
                break
        return _Verdict(ok, origin, reports)


def _nodes_text(topo: Topology) -> str:
    from edgesim._units import format_size

    return " ".join(f"{r.name}={r.edge.nodes}x{format_size(r.edge.memory_cache)}" for r in topo.regions)


def _empty_window(reports: list[dict[str, Any]], name: str) -> str | None:
    """Why region ``name`` fails whatever its node count, or None: a seed whose measured
    window holds none of its requests."""
    for rep in reports:
        stats = rep["regions"].get(name)
        if not stats or not stats.get("requests"):
            return (
                f"none of its requests fell in the measured window with seed {rep['meta'].get('seed')}, "
                "so no objective can be checked: lengthen --window, or raise the traffic"
            )
    return None


def _errors_note(reports: list[dict[str, Any]], name: str) -> str:
    """``; N of its M requests failed ...`` for the first seed where region ``name``
    spent more than the error budget, else nothing."""
    for rep in reports:
        stats = rep["regions"].get(name) or {}
        if _over_budget(stats):
            return (
                f"; {_bad(stats):,} of its {int(stats['requests']):,} requests failed or got errors "
                f"with seed {rep['meta'].get('seed')}, more than the error budget of {ERROR_BUDGET:.1%}"
            )
    return ""


def _bad(stats: dict[str, Any]) -> int:
    """A region's requests that failed or got an error answer."""
    return int(stats.get("errors", 0)) + int(stats.get("failed", 0))


def _over_budget(stats: dict[str, Any]) -> bool:
    """Whether a region with requests spent more than the error budget."""
    requests = int(stats.get("requests", 0))
    return requests > 0 and _bad(stats) > ERROR_BUDGET * requests


def _region_passes(stats: dict[str, Any] | None, objective: Objective) -> bool:
    if not stats or not stats.get("requests") or _over_budget(stats):
        return False
    return objective.check(stats["latency"])[0]


# ---- hardware profiles ---------------------------------------------------------------


def profile_edge(region: Region, profile: HardwareProfile) -> EdgeGroup:
    """``region``'s edge group on ``profile``: the region's own group when it was built
    from that profile (its own overrides, such as a regional ``cost_per_hour``, kept),
    else the profile's values with the region's node count, balancer and egress price."""
    if region.edge.profile == profile.name:
        return region.edge
    e = region.edge
    return EdgeGroup(
        nodes=e.nodes,
        workers=profile.workers,
        memory_cache=profile.memory_cache,
        disk_cache=profile.disk_cache,
        eviction=profile.eviction,
        max_object=profile.max_object,
        egress=profile.egress,
        service_time=profile.service_time,
        balancer=e.balancer,
        cost_per_hour=profile.cost_per_hour,
        profile=profile.name,
        cost_per_gb_egress=e.cost_per_gb_egress,
        costs=profile.costs,
    )


def _profiles_to_weigh(topo: Topology, opts: PlanOptions) -> list[HardwareProfile]:
    known = {p.name: p for p in topo.profiles}
    if opts.profiles is None:
        return list(topo.profiles) if len(topo.profiles) >= 2 else []
    out: list[HardwareProfile] = []
    for name in opts.profiles:
        if name not in known:
            have = ", ".join(known) or "none"
            raise PlanError(f"--profiles: {topo.name} defines no profile {name!r} ([profiles] has: {have})")
        if known[name] not in out:
            out.append(known[name])
    return out


def plan(
    topo: Topology,
    opts: PlanOptions,
    *,
    progress: Callable[[str], None] | None = None,
) -> Plan:
    """Search the smallest node count per region (and cache sizes, and hardware
    profile) meeting ``opts`` at the least cost.

    With hardware profiles to weigh (``opts.profiles``), every region is searched on
    each profile (one search per profile, the regions side by side as usual), each
    region takes the profile whose passing configuration costs least per hour at peak
    (its nodes, egress and its part of the origin requests), and the assembled
    configuration is searched again from those counts and verified.

    Args:
        topo: the validated topology (its node counts are ignored; the rest is kept).
        opts: objective, failure modes, search bounds, profiles.
        progress: called with a short line after each simulation.

    Returns:
        The :class:`Plan`; ``found`` is False when no configuration inside the bounds
        meets the objective, and ``reason`` names the constraint that binds.

    Error handling:
        Raises :class:`PlanError` for impossible bounds or options (before simulating).
    """
    t0 = time.perf_counter()
    _check(topo, opts)
    profiles = _profiles_to_weigh(topo, opts)
    if not profiles:
        return _search(topo, opts, progress)
    names = [r.name for r in topo.regions]
    by_name = {p.name: p for p in profiles}
    alts: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    whole: dict[str, Plan] = {}  # profile -> its plan when every region passed on it
    simulations = rounds = 0
    log: list[dict[str, Any]] = []

    def no(region: str, profile: str, reason: str) -> None:
        why = reason[len(region) + 2 :] if reason.startswith(region + ": ") else reason
        alts[region].append(
            {"profile": profile, "nodes": 0, "cost_per_hour": 0.0, "found": False, "reason": why}
        )

    for p in profiles:
        excluded: list[str] = []
        while True:
            regions = tuple(
                replace(r, edge=profile_edge(r, p)) for r in topo.regions if r.name not in excluded
            )
            if opts.region_failure and len(regions) < 2:
                for r in regions:
                    no(r.name, p.name, "not searched alone (--region-failure needs two regions)")
                break
            if progress is not None:
                without = f" (without {', '.join(excluded)})" if excluded else ""
                progress(f"profile {p.name}{without}")
            sub = _search(replace(topo, regions=regions), opts, progress)
            simulations += sub.simulations
            rounds += sub.rounds
            log.extend({"profile": p.name, **e} for e in sub.log)
            if sub.found:
                for rp in sub.regions:
                    alts[rp.name].append(
                        {
                            "profile": p.name,
                            "nodes": rp.nodes,
                            "cost_per_hour": rp.region_cost_per_hour,
                            "found": True,
                            "reason": "",
                        }
                    )
                if not excluded:
                    whole[p.name] = sub
                break
            left = [r.name for r in regions]
            blamed = next((n for n in left if sub.reason.startswith(n + ": ")), None)
            if blamed is None:  # the origin ceiling, or verdicts that do not settle
                for n in left:
                    no(n, p.name, sub.reason)
                break
            no(blamed, p.name, sub.reason)
            excluded.append(blamed)
            if len(excluded) == len(names):
                break

    def finish(result: Plan) -> Plan:
        result.simulations = simulations
        result.rounds = rounds
        result.seconds = time.perf_counter() - t0
        result.log = log
        result.profiles = [p.name for p in profiles]
        for rp in result.regions:
            rp.alternatives = alts[rp.name]
        return result

    chosen: dict[str, dict[str, Any]] = {}
    for n in names:
        ok = [a for a in alts[n] if a["found"]]
        if not ok:
            why = "; ".join(f"{a['profile']}: {a['reason']}" for a in alts[n])
            # no configuration: the per-profile searches' plans are not this plan's
            return finish(_no_plan(topo, opts, f"{n}: no profile meets the objective ({why})"))
        chosen[n] = min(ok, key=lambda a: (a["cost_per_hour"], a["nodes"]))
    picks = {chosen[n]["profile"] for n in names}
    if len(picks) == 1 and next(iter(picks)) in whole:
        return finish(whole[next(iter(picks))])
    # mixed profiles: search the assembled configuration from the counts found (one
    # round when they hold beside each other), then verify it
    spare = 1 if opts.n_plus_1 else 0
    mixed = replace(
        topo,
        regions=tuple(
            replace(r, edge=profile_edge(r, by_name[chosen[r.name]["profile"]])) for r in topo.regions
        ),
    )
    if progress is not None:
        progress("profiles " + ", ".join(f"{n}={chosen[n]['profile']}" for n in names))
    sub = _search(mixed, opts, progress, hint={n: int(chosen[n]["nodes"]) - spare for n in names})
    simulations += sub.simulations
    rounds += sub.rounds
    log.extend({"profile": "chosen", **e} for e in sub.log)
    return finish(sub)


# ---- the search ---------------------------------------------------------------------------


def _check(topo: Topology, opts: PlanOptions) -> None:
    """Raise :class:`PlanError` for impossible bounds or options (before simulating)."""
    if not 1 <= opts.seeds <= 1000:
        raise PlanError(f"--seeds must be from 1 to 1000, not {opts.seeds}")
    if opts.seed0 < 0:
        raise PlanError(f"--seed must be 0 or more, not {opts.seed0}")
    if opts.min_nodes < 1 or opts.max_nodes < opts.min_nodes:
        raise PlanError(
            f"impossible search bounds: nodes from {opts.min_nodes} to {opts.max_nodes} "
            "(need 1 <= min <= max)"
        )
    if opts.n_plus_1 and opts.max_nodes < 2:
        raise PlanError(
            f"impossible search bounds: --n-plus-1 needs --max-nodes of at least 2, not {opts.max_nodes}"
        )
    if opts.window <= 0:
        raise PlanError(f"the window must be longer than 0 s, not {opts.window:g}")
    if opts.origin_max_rps is not None and not opts.origin_max_rps > 0:
        raise PlanError(f"--origin-max-rps must be above 0, not {opts.origin_max_rps:g}")
    if any(c <= 0 for c in opts.cache_sizes):
        raise PlanError("cache sizes must be above 0 bytes")
    if topo.traffic.trace is not None:
        raise PlanError(
            f"{topo.name}: plan holds synthetic traffic at its diurnal peak; this topology replays a "
            f"trace ({topo.traffic.trace}), which has no peak to hold"
        )
    if opts.region_failure and len(topo.regions) < 2:
        raise PlanError(f"{topo.name}: --region-failure needs at least two regions")


def _search(
    topo: Topology,
    opts: PlanOptions,
    progress: Callable[[str], None] | None,
    hint: dict[str, int] | None = None,
) -> Plan:
    """Search the smallest node count per region (and cache sizes) meeting ``opts``,
    each region with the edge group it has in ``topo``.

    ``hint`` (region -> a count already found to pass, with one fewer found to fail, in
    the searched scenario) starts the bracket there, so that a configuration assembled
    from earlier searches costs one round plus its verification.

    Args:
        topo: the validated topology (its node counts are ignored; the rest is kept).
        opts: objective, failure modes, search bounds.
        progress: called with a short line after each simulation.

    Returns:
        The :class:`Plan`; ``found`` is False when no configuration inside the bounds
        meets the objective, and ``reason`` names the constraint that binds.

    Error handling:
        Raises :class:`PlanError` for a region failure with no region to fail over to
        (before simulating); :func:`plan` has checked the bounds and options.
    """
    t0 = time.perf_counter()
    inflow: dict[str, float] = {}
    if opts.region_failure:
        for r in topo.regions:
            for name, add in failover_shares(topo, r.name).items():
                inflow[name] = max(inflow.get(name, 0.0), add)

    base = peak_window(topo, opts.window, opts.warmup)
    runner = _Runner(base, opts, progress)
    names = [r.name for r in base.regions]
    tr = base.traffic
    top = tr.diurnal[0] if tr.diurnal else 1.0
    spare = 1 if opts.n_plus_1 else 0
    limit = min(lim for _, lim in opts.objective.terms)
    log: list[dict[str, Any]] = []

    # cheap models: rate per region in the search scenario, stability floor, start
    rate: dict[str, float] = {}
    floor: dict[str, int] = {}  # the search's lowest count: the stability floor or --min-nodes
    stable: dict[str, int] = {}  # the stability floor alone (what the load rules out)
    start: dict[str, int] = {}
    lo: dict[str, int] = {}  # highest count known to fail (0: none)
    hi: dict[str, int | None] = {}  # lowest count known to pass
    lo_max = opts.max_nodes - spare
    for r in base.regions:
        lam = tr.peak_rps * top * (r.client_share + inflow.get(r.name, 0.0))
        rate[r.name] = lam
        # with a calibrated cost model service_time is the part every request costs
        # before its outcome (the cheapest outcome); the bound stays a lower bound
        es = mean_service(r.edge.service_time)
        stable[r.name] = _stability_floor(lam, es, r.edge.workers)
        f = max(opts.min_nodes - spare, stable[r.name])
        floor[r.name] = f
        if f > lo_max:
            return _infeasible(
                topo,
                opts,
                runner,
                t0,
                f"{r.name}: {lam:.1f} requests/s at {es * 1000:.2f} ms each need at least "
                f"{f + spare} nodes of {r.edge.workers} workers to stay under full utilisation, "
                f"above --max-nodes {opts.max_nodes}",
                log,
            )
        start[r.name] = max(f, _erlang_start(lam, es, r.edge.workers, limit, f, lo_max))
        lo[r.name] = f - 1
        hi[r.name] = None
    for name, known in (hint or {}).items():
        if name in start:
            first = min(lo_max, max(floor[name], known))
            start[name] = first
            lo[name] = max(lo[name], first - 1)

    # cache sizes: the topology's, or the smallest choice; grown below if the origin binds
    sizes = sorted(set(opts.cache_sizes))
    cache_idx = {name: 0 for name in names} if sizes else {}

    def cache_of() -> dict[str, int]:
        return {name: sizes[i] for name, i in cache_idx.items()}

    shares = inflow if opts.region_failure else None
    probe = dict(start)
    rounds = 0
    # the worst objective slack of each region's last failing probe while expanding
    fail_slack: dict[str, float] = {}
    # regions whose stability floor was probed after more nodes stopped helping
    floor_probed: dict[str, str] = {}  # region -> why it was given up on above the floor
    # verification failures of a region at low utilisation: one more node is tried once;
    # a second such failure means the objective sits within seed noise of the latency
    # floor, which node count cannot move
    low_util_bumps: dict[str, int] = {}
    while True:
        # bracket and bisect, all regions side by side
        while True:
            open_regions = [n for n in names if hi[n] is None or hi[n] - lo[n] > 1]  # type: ignore[operator]
            if not open_regions:
                break
            cand = {}
            for n in names:
                h = hi[n]
                if n not in open_regions:
                    cand[n] = h if h is not None else probe[n]
                elif h is None:
                    cand[n] = probe[n]
                else:
                    cand[n] = (lo[n] + h) // 2
            rounds += 1
            v = runner.run(runner.topology(cand, cache_of(), shares), open_regions)
            log.append(
                {
                    "round": rounds,
                    "nodes": dict(cand),
                    "memory_cache": cache_of(),
                    "passed": dict(v.ok),
                    "simulations": runner.count,
                }
            )
            for n in open_regions:
                c = cand[n]
                if v.ok[n]:
                    hi[n] = c
                else:
                    lo[n] = c
                    empty = _empty_window(v.reports, n)
                    if empty is not None:  # more nodes would not change it
                        return _infeasible(topo, opts, runner, t0, f"{n}: {empty}", log)
                    if hi[n] is None:
                        slack = min(opts.objective.check(r["regions"][n]["latency"])[2] for r in v.reports)
                        util = _worst_util(v.reports, n)
                        # more nodes did not help (no queueing to remove): misses to the
                        # origin or the network set the latency, so stop expanding
                        flat = n in fail_slack and slack <= fail_slack[n] + 0.01 and util < 0.3
                        fail_slack[n] = slack
                        p99 = _worst(v.reports, n, "p99")
                        if n in floor_probed:
                            return _infeasible(
                                topo,
                                opts,
                                runner,
                                t0,
                                f"{floor_probed[n]}; the stability floor of {c + spare} nodes fails too "
                                f"(p99 {p99 * 1000:.1f} ms)",
                                log,
                            )
                        if c >= lo_max or flat:
                            bound = (
                                f"--max-nodes {opts.max_nodes}"
                                if c >= lo_max
                                else "more nodes did not lower it"
                            )
                            why = (
                                "the latency floor binds (misses to the origin and network latency), "
                                "not node count"
                                if util < 0.5
                                else "queueing binds"
                            )
                            reason = (
                                f"{n}: the objective {opts.objective.text} is not met with {c + spare} nodes "
                                f"({bound}): p99 {p99 * 1000:.1f} ms at utilisation {util:.0%}; {why}"
                                f"{_errors_note(v.reports, n)}"
                            )
                            if flat and c < lo_max and start[n] > floor[n]:
                                # fewer nodes than the first probe keep warmer caches: try
                                # the stability floor once before giving up
                                floor_probed[n] = reason
                                lo[n] = floor[n] - 1
                                probe[n] = floor[n]
                                continue
                            return _infeasible(topo, opts, runner, t0, reason, log)
                        probe[n] = min(lo_max, max(c + 1, c * 2))

        # verify the whole configuration in every scenario
        final = {n: int(hi[n]) + spare for n in names}  # type: ignore[arg-type]
        scenarios = _scenarios(base, opts)
        bumped = False
        verdicts: list[tuple[str, _Verdict]] = []
        for label, make in scenarios:
            topo_s, judge = make(runner.topology(final, cache_of()))
            v = runner.run(topo_s, judge, stop_when_all_fail=False)
            verdicts.append((label, v))
            log.append(
                {
                    "verify": label,
                    # as simulated: one fewer with a node down, no region that is down
                    "nodes": {r.name: r.edge.nodes for r in topo_s.regions},
                    "memory_cache": cache_of(),
                    "passed": dict(v.ok),
                    "origin_rps": max(v.origin_rps),
                    "simulations": runner.count,
                }
            )
            for n, good in v.ok.items():
                if not good:
                    util = _worst_util(v.reports, n)
                    if util < 0.3:
                        low_util_bumps[n] = low_util_bumps.get(n, 0) + 1
                        if low_util_bumps[n] > 1:
                            p99 = _worst(v.reports, n, "p99")
                            return _infeasible(
                                topo,
                                opts,
                                runner,
                                t0,
                                f"{n}: the objective {opts.objective.text} fails again in scenario {label} "
                                f"after adding a node (p99 {p99 * 1000:.1f} ms at utilisation {util:.0%}): "
                                "it sits within seed-to-seed noise of the latency floor (misses to the "
                                "origin and network latency), which node count does not move",
                                log,
                            )
                    if final[n] >= opts.max_nodes:
                        return _infeasible(
                            topo,
                            opts,
                            runner,
                            t0,
                            f"{n}: the objective fails in scenario {label} "
                            f"even at --max-nodes {opts.max_nodes}",
                            log,
                        )
                    lo[n] = int(hi[n])  # type: ignore[arg-type]
                    hi[n] = int(hi[n]) + 1  # type: ignore[arg-type]
                    bumped = True
            if bumped:
                break
        if bumped:
            if sum(1 for e in log if "verify" in e) > _MAX_VERIFY * len(scenarios):
                return _infeasible(topo, opts, runner, t0, "the regions' verdicts do not settle", log)
            continue
        # the origin ceiling, judged on the worst scenario
        if opts.origin_max_rps is not None:
            worst_origin = max(max(v.origin_rps) for _, v in verdicts)
            if worst_origin > opts.origin_max_rps:
                region_origin = _region_origin([r for _, v in verdicts for r in v.reports], names)
                grow = _grow_cache(
                    base, sizes, cache_idx, region_origin, final, opts.origin_max_rps, worst_origin
                )
                if grow is None:
                    advice = "" if sizes else " (give --cache-sizes to let the plan grow caches)"
                    return _infeasible(
                        topo,
                        opts,
                        runner,
                        t0,
                        f"the origin ceiling binds: {worst_origin:.1f} requests/s at peak > --origin-max-rps "
                        f"{opts.origin_max_rps:g} with the largest cache sizes tried{advice}",
                        log,
                    )
                # a larger cache may let a smaller count pass: search that region again
                lo[grow] = floor[grow] - 1
                probe[grow] = int(hi[grow])  # type: ignore[arg-type]
                hi[grow] = None
                continue
        return _found(topo, base, opts, runner, t0, final, cache_of(), verdicts, stable, rounds, log)


def _scenarios(
    base: Topology, opts: PlanOptions
) -> list[tuple[str, Callable[[Topology], tuple[Topology, list[str]]]]]:
    names = [r.name for r in base.regions]
    out: list[tuple[str, Callable[[Topology], tuple[Topology, list[str]]]]] = [
        ("all nodes up", lambda t: (t, list(names)))
    ]
    if opts.n_plus_1:

        def one_down(t: Topology) -> tuple[Topology, list[str]]:
            regions = tuple(replace(r, edge=replace(r.edge, nodes=r.edge.nodes - 1)) for r in t.regions)
            return replace(t, regions=regions), list(names)

        out.append(("one node down in each region", one_down))
    if opts.region_failure:
        for down in names:

            def fail(t: Topology, down: str = down) -> tuple[Topology, list[str]]:
                return _without(t, down), [n for n in names if n != down]

            out.append((f"{down} down", fail))
    return out


def _worst(reports: list[dict[str, Any]], region: str, metric: str) -> float:
    vals = [
        float(r["regions"][region]["latency"].get(metric) or 0.0) for r in reports if region in r["regions"]
    ]
    return max(vals) if vals else 0.0


def _worst_util(reports: list[dict[str, Any]], region: str) -> float:
    vals = [
        float(s.get("utilisation") or 0.0)
        for r in reports
        for s in r["nodes"].values()
        if s.get("region") == region and s.get("tier") == "edge"
    ]
    return max(vals) if vals else 0.0


def _region_origin(reports: list[dict[str, Any]], names: list[str]) -> dict[str, float]:
    """Mean origin requests/s sent by each region's edges."""
    out: dict[str, float] = {}
    for n in names:
        vals = []
        for r in reports:
            g = r["regions"].get(n)
            if g is None:
                continue
            span = max(float(r["meta"]["duration"]) - float(r["meta"]["warmup"]), 1e-9)
            vals.append(float(g.get("origin_requests", 0)) / span)
        out[n] = sum(vals) / len(vals) if vals else 0.0
    return out


def _grow_cache(
    base: Topology,
    sizes: list[int],
    idx: dict[str, int],
    origin: dict[str, float],
    nodes: dict[str, int],
    ceiling: float,
    measured: float,
) -> str | None:
    """Grow one region's cache by the step the miss-ratio curve says saves the most
    origin requests (measured origin load less the curve's predicted reduction); the
    region's name, or None when every region that could save any has the largest size
    (a region with no clients and no origin requests is never grown)."""
    from edgesim.mrc import lru_curve, topology_trace

    best: tuple[float, str] | None = None
    for r in base.regions:
        i = idx.get(r.name)
        if i is None or i + 1 >= len(sizes):
            continue
        try:
            trace = topology_trace(base, region=r.name, requests=200_000, seed=1)
        except ValueError:
            saving = origin.get(r.name, 0.0)  # no catalog: grow the busiest region
        else:
            n = nodes[r.name]
            # consistent hashing splits keys (a node caches 1/n of them); random and
            # least-connections send every key everywhere (each node sees the whole mix)
            k = n if r.edge.balancer == "consistent-hash" else 1
            cur = sizes[i] + r.edge.disk_cache
            nxt = sizes[i + 1] + r.edge.disk_cache
            c = lru_curve(trace.keys, trace.sizes, [cur * k, nxt * k])
            gain = c.hit_ratio[1] - c.hit_ratio[0]
            rate = base.traffic.peak_rps * (base.traffic.diurnal[0] if base.traffic.diurnal else 1.0)
            saving = gain * rate * r.client_share
            saving = max(saving, 1e-9 * origin.get(r.name, 0.0))
        if saving <= 0.0:
            continue  # no clients and no origin requests: a larger cache saves nothing
        if best is None or saving > best[0]:
            best = (saving, r.name)
    if best is None:
        return None
    idx[best[1]] += 1
    return best[1]


def _infeasible(
    topo: Topology, opts: PlanOptions, runner: _Runner, t0: float, reason: str, log: list[dict[str, Any]]
) -> Plan:
    result = _no_plan(topo, opts, reason, runner.base)
    result.simulations = runner.count
    result.rounds = sum(1 for e in log if "round" in e)
    result.seconds = time.perf_counter() - t0
    result.log = log
    return result


def _no_plan(topo: Topology, opts: PlanOptions, reason: str, base: Topology | None = None) -> Plan:
    """A plan that was not found: the reason, and no configuration (no regions, costs or
    origin figures); the caller fills in what the search cost."""
    if base is None:
        base = peak_window(topo, opts.window, opts.warmup)
    return Plan(
        topology=topo.name,
        objective=opts.objective.text,
        found=False,
        reason=reason,
        regions=[],
        origin_rps=0.0,
        origin_rps_coincident=0.0,
        origin_max_rps=opts.origin_max_rps,
        costs={},
        simulations=0,
        rounds=0,
        seconds=0.0,
        seeds=[opts.seed0 + i for i in range(opts.seeds)],
        window=_window_info(base),
        scenarios=[label for label, _ in _scenarios(base, opts)],
    )


def _window_info(base: Topology) -> dict[str, float]:
    tr = base.traffic
    return {
        "warmup": tr.warmup,
        "measured": tr.duration - tr.warmup,
        "peak_rps": tr.peak_rps * (tr.diurnal[0] if tr.diurnal else 1.0),
    }


def _found(
    topo: Topology,
    base: Topology,
    opts: PlanOptions,
    runner: _Runner,
    t0: float,
    final: dict[str, int],
    cache: dict[str, int],
    verdicts: list[tuple[str, _Verdict]],
    stable: dict[str, int],
    rounds: int,
    log: list[dict[str, Any]],
) -> Plan:
    normal = verdicts[0][1].reports
    every = [r for _, v in verdicts for r in v.reports]
    names = [r.name for r in base.regions]
    origin_by_region = _region_origin(normal, names)
    tr = base.traffic
    peak = tr.peak_rps * (tr.diurnal[0] if tr.diurnal else 1.0)
    regions: list[RegionPlan] = []
    # one hour at peak, priced as sweep prices a run (mean over the seeds)
    priced = runner.topology(final, cache)
    hourly = [hourly_cost(rep, priced) for rep in normal]

    def mean(xs: list[float]) -> float:
        return sum(xs) / len(xs)

    for r in base.regions:
        n = r.name
        # a region with no clients in any scenario served nothing: no latency to report
        served = [rep for rep in every if (rep["regions"].get(n) or {}).get("requests")]
        lat = {m: _worst(served, n, m) for m in _METRICS} if served else {}
        metric, slack = opts.objective.check(lat)[1:] if lat else ("", None)
        hits = [float(rep["regions"][n]["object_hit_ratio"] or 0.0) for rep in normal]
        regions.append(
            RegionPlan(
                name=n,
                nodes=final[n],
                memory_cache=cache.get(n, r.edge.memory_cache),
                disk_cache=r.edge.disk_cache,
                peak_rps=peak * r.client_share,
                utilisation=_worst_util(every, n),
                latency=lat,
                hit_ratio=sum(hits) / len(hits),
                origin_rps=origin_by_region[n],
                headroom=slack,
                binding=metric,
                stability_floor=stable[n] + (1 if opts.n_plus_1 else 0),
                cost_per_hour=hourly[0].nodes[n],
                egress_gb_per_hour=mean([h.egress_gb[n] for h in hourly]),
                region_cost_per_hour=mean([h.region(n) for h in hourly]),
                profile=r.edge.profile,
            )
        )
    # both figures the worst seed's: with a flat diurnal curve the coincident peak is the
    # all-up window's (a mean over seeds made it the lower)
    o_up = max(verdicts[0][1].origin_rps)
    o_worst = max(max(v.origin_rps) for _, v in verdicts)
    costs = {
        "nodes": mean([sum(h.nodes.values()) for h in hourly]),
        "shield": hourly[0].shield,
        "origin_requests": mean([h.origin_requests for h in hourly]),
        "egress": mean([sum(h.egress.values()) for h in hourly]),
        "total": mean([h.total for h in hourly]),
    }
    return Plan(
        topology=topo.name,
        objective=opts.objective.text,
        found=True,
        reason="",
        regions=regions,
        origin_rps=o_worst,
        origin_rps_coincident=coincident_origin_peak(topo, o_up, origin_by_region),
        origin_max_rps=opts.origin_max_rps,
        costs=costs,
        simulations=runner.count,
        rounds=rounds,
        seconds=time.perf_counter() - t0,
        seeds=runner.seeds,
        window=_window_info(base),
        scenarios=[label for label, _ in verdicts],
        log=log,
    )
