"""Benchmarks of the capacity engine: ``edgesim bench engine`` and ``edgesim bench sampling``.

Both print one JSON object (docs/benchmarks.md, docs/sampling.md) and are commands, never
tests: figures on a shared machine are noisy, so each comes with a baseline measured in
the same process.

* ``engine``: simulated requests per second of the whole pipeline (native matcher, cache,
  queueing, metrics) on a topology, over ``--repeats`` runs (median and best), beside a
  bare M/M/c queue in SimPy (:func:`engine_run`'s baseline) run in the same
  process for the same number of customers.
* ``sampling``: for each seed, a full run and a ``--sample-rate`` run of the same
  topology; the object and byte hit-ratio errors (absolute, and their mean over seeds)
  and the wall-time speed-up of the sampled run.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections import deque
from heapq import heappop, heappush
from typing import TYPE_CHECKING, Any

import click

from edgesim._clitypes import FiniteFloatRange
from edgesim._compiled import cores_description

if TYPE_CHECKING:
    from edgesim.topology import Topology

__all__ = ["engine_bench", "engine_command", "sampling_bench", "sampling_command"]


def _load(topology: str | None) -> Any:
    from edgesim._topoload import load_topology, resolve_topology_arg

    return load_topology(resolve_topology_arg(topology or "global-5-regions"))


def engine_bench(
    topo: Any, seconds: float, *, peak_rps: float | None, seed: int | None, repeats: int
) -> dict[str, Any]:
    """``repeats`` runs of :func:`engine_run` (each with its own SimPy
    baseline); the median and best of both rates, and their ratio."""
    runs = [engine_run(topo, seconds, seed=seed, peak_rps=peak_rps) for _ in range(repeats)]
    eng = [r["engine"]["requests_per_second"] for r in runs]
    base = [r["baseline"]["requests_per_second"] for r in runs]
    first = runs[0]
    med_e, med_b = statistics.median(eng), statistics.median(base)
    return {
        "topology": first["topology"],
        "virtual_seconds": seconds,
        "peak_rps": first["peak_rps"],
        "seed": seed,
        "requests": first["engine"]["requests"],
        "object_hit_ratio": first["object_hit_ratio"],
        "engine_requests_per_second": {"median": round(med_e), "best": max(eng), "runs": eng},
        "baseline": {
            "kind": first["baseline"]["kind"],
            "requests_per_second": {"median": round(med_b), "best": max(base), "runs": base},
        },
        "engine_vs_baseline": round(med_e / med_b, 3) if med_b else None,
        "cores": cores_description(),
        "target_requests_per_second": 100_000,
    }


def engine_run(
    topology: Topology, seconds: float, *, seed: int | None = None, peak_rps: float | None = None
) -> dict[str, Any]:
    """Simulated requests per second of the full pipeline, beside a bare M/M/c model.

    Runs ``topology`` for ``seconds`` of virtual time (no warm-up; ``peak_rps``
    overrides the traffic's peak), then the same
    number of requests through a bare M/M/c queue (SimPy when importable, else a plain
    heapq loop) in the same process, so the two figures are comparable.

    Returns:
        A JSON-ready dict: ``engine`` (requests, wall seconds, requests/s) and
        ``baseline`` (kind, requests, wall seconds, requests/s).
    """
    from dataclasses import replace as dc_replace

    from edgesim.engine import simulate

    tr = topology.traffic
    tr = dc_replace(tr, duration=seconds, warmup=0.0, peak_rps=peak_rps or tr.peak_rps)
    topo = dc_replace(topology, traffic=tr)
    res = simulate(topo, seed=seed)
    n = int(res.report["meta"]["simulated_requests"])
    out: dict[str, Any] = {
        "topology": topology.name,
        "virtual_seconds": seconds,
        "peak_rps": tr.peak_rps,
        "object_hit_ratio": res.report["totals"]["object_hit_ratio"],
        "engine": {
            "requests": n,
            "wall_seconds": round(res.timing["loop_seconds"], 3),
            "requests_per_second": round(res.timing["simulated_requests_per_second"]),
        },
    }
    out["baseline"] = mmc_baseline(max(n, 1000))
    return out


def mmc_baseline(n: int, c: int = 16, rho: float = 0.8) -> dict[str, Any]:
    """``n`` customers through an M/M/c queue: SimPy if importable, else heapq. (Here,
    not in the engine's module, which a wheel build compiles: the baseline is plain
    Python, as the issue measured it.)"""
    import random

    rng = random.Random(1)
    mu = 1.0
    lam = rho * c * mu
    try:
        import simpy  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        simpy_env = None
    else:
        simpy_env = simpy.Environment
    t0 = time.perf_counter()
    if simpy_env is not None:
        env = simpy_env()
        res = simpy.Resource(env, capacity=c)
        done = [0]

        def customer() -> Any:
            with res.request() as r:
                yield r
                yield env.timeout(rng.expovariate(mu))
            done[0] += 1

        def source() -> Any:
            for _ in range(n):
                yield env.timeout(rng.expovariate(lam))
                env.process(customer())

        env.process(source())
        env.run()
        kind = "simpy"
    else:
        heap: list[tuple[float, int, int]] = []
        t = 0.0
        seq = 0
        busy = 0
        waiting: deque[float] = deque()
        for _ in range(n):
            t += rng.expovariate(lam)
            seq += 1
            heappush(heap, (t, seq, 0))
        while heap:
            now, _, kind_ = heappop(heap)
            if kind_ == 0:
                if busy < c:
                    busy += 1
                    seq += 1
                    heappush(heap, (now + rng.expovariate(mu), seq, 1))
                else:
                    waiting.append(now)
            else:
                if waiting:
                    waiting.popleft()
                    seq += 1
                    heappush(heap, (now + rng.expovariate(mu), seq, 1))
                else:
                    busy -= 1
        kind = "heapq"
    wall = time.perf_counter() - t0
    return {
        "kind": f"bare M/M/{c} ({kind})",
        "requests": n,
        "wall_seconds": round(wall, 3),
        "requests_per_second": round(n / wall) if wall > 0 else 0,
    }


def _totals(report: dict[str, Any]) -> dict[str, Any]:
    t = report["totals"]
    keys = ("object_hit_ratio", "byte_hit_ratio", "requests", "origin_requests")
    return {k: t[k] for k in keys}


def sampling_bench(
    topo: Any,
    rate: float,
    seeds: list[int],
    keys: list[float],
    samples: int = 1,
    thins: list[float] | None = None,
) -> dict[str, Any]:
    """Full and sampled runs of ``topo`` per seed (``samples`` sampled runs per
    ``sample_keys`` value in ``keys`` and ``sample_thin`` value in ``thins``, each
    with other keys: sample seeds ``seed``, ``seed + 1000000``, ...): hit-ratio
    errors, and speed-ups in wall and CPU time."""
    from edgesim.engine import THIN_ARRIVALS, simulate

    # each setting once, in order; thinning needs K > 0 (a plain sample thins nothing)
    combos = list(dict.fromkeys((k, n if k > 0 else 0.0) for k in keys for n in (thins or [THIN_ARRIVALS])))
    per_keys: dict[tuple[float, float], list[dict[str, Any]]] = {c: [] for c in combos}
    fulls = []
    for s in seeds:
        gc.collect()  # the previous run's garbage is not this run's cost
        w0, c0 = time.perf_counter(), time.process_time()
        full = simulate(topo, seed=s)
        fw, fc = time.perf_counter() - w0, time.process_time() - c0
        ft = full.report["totals"]
        fulls.append(
            {"seed": s, **_totals(full.report), "wall_seconds": round(fw, 3), "cpu_seconds": round(fc, 3)}
        )
        for k, n in combos:
            for j in range(samples):
                per_keys[k, n].append(_sampled_run(topo, rate, k, n, s, s + SAMPLE_SEED_STEP * j, fw, fc, ft))
    sampled = []
    for (k, n), rows in per_keys.items():
        sampled.append(
            {
                "sample_keys": k,
                "sample_thin": n,
                "mean_abs_object_hit_ratio_error": round(
                    statistics.fmean(r["object_hit_ratio_error"] for r in rows), 6
                ),
                "mean_abs_byte_hit_ratio_error": round(
                    statistics.fmean(r["byte_hit_ratio_error"] for r in rows), 6
                ),
                "speedup_cpu_median": round(statistics.median(r["speedup_cpu"] for r in rows), 2),
                "speedup_wall_median": round(statistics.median(r["speedup_wall"] for r in rows), 2),
                "runs": rows,
            }
        )
    return {
        "topology": topo.name,
        "sample_rate": rate,
        "seeds": seeds,
        "targets": {"mean_abs_object_hit_ratio_error": 0.01, "speedup": 20},
        "cores": cores_description(),
        "full": fulls,
        "sampled": sampled,
    }


# Sample seeds of a seed's further sampled runs: seed + j * SAMPLE_SEED_STEP.
SAMPLE_SEED_STEP = 1_000_000


def _sampled_run(
    topo: Any,
    rate: float,
    keys: float,
    thin: float,
    seed: int,
    sample_seed: int,
    fw: float,
    fc: float,
    ft: dict[str, Any],
) -> dict[str, Any]:
    """One sampled run, compared with the full run's totals ``ft`` and times."""
    from edgesim.engine import simulate

    gc.collect()
    w0, c0 = time.perf_counter(), time.process_time()
    samp = simulate(
        topo, seed=seed, sample_rate=rate, sample_keys=keys, sample_seed=sample_seed, sample_thin=thin
    )
    sw, sc = time.perf_counter() - w0, time.process_time() - c0
    st = samp.report["totals"]
    return {
        "seed": seed,
        "sample_seed": sample_seed,
        **_totals(samp.report),
        "simulated_requests": samp.report["meta"]["simulated_requests"],
        "object_hit_ratio_error": round(abs(st["object_hit_ratio"] - ft["object_hit_ratio"]), 6),
        "byte_hit_ratio_error": round(abs(st["byte_hit_ratio"] - ft["byte_hit_ratio"]), 6),
        "origin_requests_vs_full": round(st["origin_requests"] / ft["origin_requests"], 4),
        "wall_seconds": round(sw, 3),
        "cpu_seconds": round(sc, 3),
        "speedup_wall": round(fw / sw, 2),
        "speedup_cpu": round(fc / sc, 2),
    }


def _seed_list(text: str) -> list[int]:
    """``"1-5"`` or ``"1,2,7"`` to a list of seeds."""
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        a, sep, b = part.partition("-")
        if not a.isdigit() or (sep and not b.isdigit()):
            raise click.BadParameter(f"expected seeds like 1-5 or 1,2,7, got {text!r}", param_hint="--seeds")
        lo, hi = int(a), int(b) if sep else int(a)
        if hi < lo or hi - lo >= 100:
            raise click.BadParameter(f"bad seed range {part!r}", param_hint="--seeds")
        out.extend(range(lo, hi + 1))
    return out


def _topology_or_fail(topology: str | None) -> Any:
    from edgesim.errors import EdgesimError

    try:
        return _load(topology)
    except EdgesimError as exc:
        raise click.ClickException(str(exc)) from None


@click.command("engine", short_help="Capacity engine: simulated requests/s vs a bare SimPy model.")
@click.argument("topology", required=False)
@click.option(
    "--seconds",
    type=FiniteFloatRange(1, 86400),
    default=120.0,
    show_default=True,
    help="Virtual seconds simulated per run (no warm-up).",
)
@click.option("--peak-rps", type=FiniteFloatRange(0.001, 1e9), help="Override the traffic's peak requests/s.")
@click.option("--seed", type=click.IntRange(0), help="Seed (default: the topology's).")
@click.option("--repeats", type=click.IntRange(1, 20), default=3, show_default=True)
def engine_command(
    topology: str | None, seconds: float, peak_rps: float | None, seed: int | None, repeats: int
) -> None:
    """Simulated requests/s of TOPOLOGY (default global-5-regions) through the full
    pipeline, median and best of --repeats runs, beside a bare M/M/c SimPy queue run in
    the same process for as many customers."""
    import json

    topo = _topology_or_fail(topology)
    try:
        result = engine_bench(topo, seconds, peak_rps=peak_rps, seed=seed, repeats=repeats)
    except ValueError as exc:  # the engine refused the topology (one line)
        raise click.ClickException(f"{topo.path or topo.name}: {exc}") from None
    click.echo(json.dumps(result, indent=2))


@click.command("sampling", short_help="Accuracy and speed-up of --sample-rate against full runs.")
@click.argument("topology", required=False)
@click.option(
    "--rate",
    type=FiniteFloatRange(0, 1, min_open=True),
    default=0.01,
    show_default=True,
    help="The sample rate to check.",
)
@click.option(
    "--keys",
    "keys",
    type=FiniteFloatRange(0.0, 1_000_000.0),
    multiple=True,
    help="Keys per popularity bucket (--sample-keys) to check; repeat for several (default: 0.5).",
)
@click.option(
    "--thin",
    "thins",
    type=FiniteFloatRange(0.0, 1_000_000.0),
    multiple=True,
    help="Arrivals per lifetime that thin a key (--sample-thin) to check; repeat for several (default: 20).",
)
@click.option("--seeds", default="1-5", show_default=True, help="Seeds: a range (1-5) or a list (1,2,7).")
@click.option(
    "--samples",
    type=click.IntRange(1, 20),
    default=1,
    show_default=True,
    help="Sampled runs per seed and K, each with other keys (--sample-seed seed, seed + 1000000, ...).",
)
def sampling_command(
    topology: str | None,
    rate: float,
    keys: tuple[float, ...],
    thins: tuple[float, ...],
    seeds: str,
    samples: int,
) -> None:
    """For each seed, a full run and --samples sampled runs at --rate of TOPOLOGY
    (default global-5-regions): object and byte hit-ratio errors, their mean over all
    sampled runs, and the sampled runs' speed-ups in CPU and wall time."""
    import json

    seed_list = _seed_list(seeds)
    topo = _topology_or_fail(topology)
    from edgesim.engine import DEFAULT_SAMPLE_KEYS

    try:
        result = sampling_bench(
            topo, rate, seed_list, list(keys) or [DEFAULT_SAMPLE_KEYS], samples, list(thins) or None
        )
    except ValueError as exc:  # the engine refused the topology (one line)
        raise click.ClickException(f"{topo.path or topo.name}: {exc}") from None
    click.echo(json.dumps(result, indent=2))
