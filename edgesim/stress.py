"""``edgesim stress``: live traffic at full speed plus everything that once crashed us.

Theory of operation
-------------------
:func:`run_stress` runs the crash drill's setup (:func:`edgesim.drill.run_drill`) with
the topology's faults left out and no rate limit: a real origin process, every edge node
as its own supervised process, the load generator in a third. On top of that:

* every edge process runs under :mod:`edgesim._stresschild`, which adds a thread
  calling ``gc.collect()`` in a loop and turns an uncaught thread exception into a
  process death;
* rule-set reloads during traffic, in the edges: each site with rules is redeployed at
  the origin every :data:`DEPLOY_EVERY` seconds; the edges see the new deploy on their
  next origin response, fetch its manifest, compile the new rules and swap them in,
  releasing the old set while other requests may still hold it;
* matching from worker threads, in a separate process (so that a crash there is seen
  and counted rather than taking the controller with it): threads call
  ``RuleSet.match``/``match_many`` on shared sets while another thread recompiles,
  swaps and closes or drops them, and another forces collections.

A *crash* is any supervised edge dying (no edge is killed on purpose here), any child
process dying by a signal, or a fatal error in a thread. The result's ``crashes`` must
be 0; the CLI exits non-zero otherwise.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from edgesim._supervisor import Supervisor, child_env
from edgesim.drill import DrillOptions, OriginProcess, run_drill
from edgesim.topology import Faults, Topology

__all__ = ["DEFAULT_RULES", "run_stress", "summary_line"]

# Seconds between redeploys of each site with rules (each makes every edge compile a
# new rule set during traffic). Short enough for dozens of reloads in a 20 s CI run.
DEPLOY_EVERY = 0.5
# Rules for the matcher threads when no site of the topology has any: the synthetic
# shop's (bundled with the topologies).
DEFAULT_RULES = ("sites/shop/_redirects", "sites/shop/netlify.toml")


def _rule_files(topo: Topology) -> list[Path]:
    files = [p for s in topo.sites for p in s.rules_files]
    if files:
        return files
    from edgesim._topoload import resolve_topology_arg

    base = Path(resolve_topology_arg("demo")).parent
    return [base / f for f in DEFAULT_RULES if (base / f).exists()]


async def _redeploys(origin: OriginProcess, hosts: list[str], end_at: float, out: dict[str, Any]) -> None:
    """Redeploy every host in ``hosts`` every :data:`DEPLOY_EVERY` seconds until
    ``end_at``, counting in ``out`` (``deploys``, ``deploys_failed``) as it goes."""
    from edgesim._client import OriginError, OriginPool
    from edgesim.http import Request

    out.update(deploys=0, deploys_failed=0)
    pool = OriginPool(origin.url, read_timeout=5.0)
    try:
        seed = 1000
        while hosts and time.time() + DEPLOY_EVERY < end_at:
            await trio.sleep(DEPLOY_EVERY)
            for h in hosts:
                seed += 1
                body = json.dumps({"seed": seed, "new_fraction": 0.05}).encode()
                headers = [("host", h), ("content-type", "application/json")]
                try:
                    resp = await pool.request(Request("POST", "/.edgesim/deploy", headers, body))
                except OriginError:
                    out["deploys_failed"] += 1
                    continue
                out["deploys" if resp.status == 200 else "deploys_failed"] += 1
    finally:
        await pool.aclose()


async def _matcher(files: list[Path], seconds: float, threads: int, work: Path) -> dict[str, Any]:
    out, log_path = work / "matcher.json", work / "matcher.log"
    cmd = [
        sys.executable, "-P", "-m", "edgesim._stresschild", "match",
        str(out), f"{seconds:.3f}", str(threads), *map(str, files),
    ]  # fmt: skip
    with log_path.open("wb") as log:
        proc = await trio.run_process(cmd, check=False, stdout=log, stderr=log, env=child_env())
    rc = proc.returncode
    result: dict[str, Any] = {"returncode": rc}
    if rc == 0 and out.exists():
        result.update(json.loads(out.read_text(encoding="utf-8")))
    else:
        result["log_tail"] = log_path.read_text(errors="replace")[-2000:]
        if rc < 0:
            try:
                result["signal"] = signal.Signals(-rc).name
            except ValueError:
                result["signal"] = f"signal {-rc}"
    return result


async def run_stress(
    topology: Topology,
    duration: float,
    *,
    threads: int = 4,
    connections: int = 32,
    workdir: str | os.PathLike[str] | None = None,
    progress: Callable[[str], None] | None = None,
    baseline: bool = False,
    on_interrupt: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Stress ``topology``'s edges, origin and matcher for ``duration`` seconds.

    Args:
        topology: the topology (its faults are ignored: nothing is killed on purpose).
        duration: seconds of load.
        threads: matcher worker threads.
        connections: concurrent clients of the load generator (no rate limit).
        workdir: where logs and sites go (default: a temporary folder). Each child's
            stderr is kept there: ``logs/NODE.log``, ``origin.log``, ``load.log``,
            ``matcher.log``; ``faulthandler`` writes a crashing child's stacks there.
        progress: called with a line now and then.
        baseline: first run the same load for ``duration`` without the extras (plain
            edge processes, no reloads, no matcher process), for a same-run baseline
            of the throughput.
        on_interrupt: called with the result of what was recorded (``partial`` true)
            when the stress run (not the baseline) is stopped once its load started
            (see :func:`edgesim.drill.run_drill`); the matcher process is stopped
            with it, and its figures are left out.

    Returns:
        ``crashes`` (must be 0), ``crash_details``, ``errors``, ``throughput_rps``,
        ``matcher`` (the threads' counts), ``deploys``, the restarts, client outcomes
        and edge counters, and with ``baseline`` the plain run's ``baseline`` figures
        and ``throughput_vs_baseline``.
    """
    quiet = dataclasses.replace(topology, faults=Faults())
    files = _rule_files(topology)
    hosts = [s.name.lower() for s in topology.sites if s.rules_files]
    with tempfile.TemporaryDirectory(prefix="edgesim-stress-") as tmp:
        work = Path(workdir) if workdir is not None else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)

        out: dict[str, Any] = {}  # the extras' figures (deploys counted as they go)

        async def extra(
            sup: Supervisor, origin: OriginProcess, start_at: float, end_at: float
        ) -> dict[str, Any]:

            async def matcher() -> None:
                await trio.sleep(max(0.0, start_at - time.time()))
                out["matcher"] = await _matcher(files, max(1.0, end_at - time.time()), threads, work)

            async def deployer() -> None:
                await _redeploys(origin, hosts, end_at, out)

            async with trio.open_nursery() as nursery:
                if files:
                    nursery.start_soon(matcher)
                nursery.start_soon(deployer)
            return out

        plain: dict[str, Any] | None = None
        if baseline:
            if progress:
                progress(f"baseline: {duration:g} s of plain load")
            base_opts = DrillOptions(
                duration=duration, rate=0.0, connections=connections, honor_down_for=False
            )
            plain = await run_drill(quiet, base_opts, workdir=work / "baseline")
            if progress:
                progress(f"stress: {duration:g} s")
        opts = DrillOptions(
            duration=duration,
            rate=0.0,
            connections=connections,
            edge_module="edgesim._stresschild",
            honor_down_for=False,
        )

        def stopped(drill: dict[str, Any]) -> None:
            if on_interrupt is not None:
                on_interrupt(_result(topology, duration, drill, out, plain))

        drill = await run_drill(
            quiet, opts, workdir=work, progress=progress, during=extra, on_interrupt=stopped
        )
    return _result(topology, duration, drill, drill.get("extra") or {}, plain)


def _result(
    topology: Topology,
    duration: float,
    drill: dict[str, Any],
    extra_out: dict[str, Any],
    plain: dict[str, Any] | None,
) -> dict[str, Any]:
    """The stress result of the stress run's drill report (partial when it is)."""
    matcher = extra_out.get("matcher", {})
    details = []
    for r in drill["restarts"]:
        details.append(f"edge {r['name']} died ({r['signal'] or 'exit ' + str(r['returncode'])})")
    if matcher and matcher.get("returncode") != 0:
        details.append(
            f"matcher process died ({matcher.get('signal') or 'exit ' + str(matcher.get('returncode'))})"
        )
    details.extend(f"fatal thread error: {e}" for e in matcher.get("fatal_thread_errors", []))
    if drill.get("origin_exit") is not None:
        details.append(f"origin died (status {drill['origin_exit']})")
    t = drill["clients"]["totals"]
    extras: dict[str, Any] = {}
    if plain is not None:
        pc = plain["clients"]
        extras["baseline"] = {
            "throughput_rps": pc["throughput_rps"],
            "p50_ms": pc["p50_ms"],
            "p99_ms": pc["p99_ms"],
            "restarts": len(plain["restarts"]),
        }
        if plain["restarts"]:
            details.extend(f"baseline: edge {r['name']} died" for r in plain["restarts"])
        extras["throughput_vs_baseline"] = round(
            drill["clients"]["throughput_rps"] / max(1e-9, pc["throughput_rps"]), 3
        )
    return {
        "topology": topology.name,
        "duration": duration,
        "partial": drill["partial"],
        "reached": drill["reached"],
        "crashes": len(details),
        "crash_details": details,
        "errors": t["failed"] + t["http_5xx"],
        "failed": t["failed"],
        "http_5xx": t["http_5xx"],
        "attempts_failed": t["attempts_failed"],
        "retried": t["retried"],
        "failed_over": t["failed_over"],
        "requests": t["requests"],
        "throughput_rps": drill["clients"]["throughput_rps"],
        "p50_ms": drill["clients"]["p50_ms"],
        "p99_ms": drill["clients"]["p99_ms"],
        "matcher": {k: v for k, v in matcher.items() if k != "log_tail"},
        "matcher_log_tail": matcher.get("log_tail"),
        "deploys": extra_out.get("deploys", 0),
        "deploys_failed": extra_out.get("deploys_failed", 0),
        "edges": drill["edges"],
        "restarts": drill["restarts"],
        "clients": drill["clients"],
        **extras,
    }


def summary_line(result: dict[str, Any]) -> str:
    """``stress NAME: crashes: N, errors: E, throughput: R req/s, ...``."""
    m = result["matcher"]
    ran = (
        f"stopped at {result['reached']:.1f} s of {result['duration']:g} s"
        if result.get("partial")
        else f"{result['duration']:g} s"
    )
    return (
        f"stress {result['topology']}: {ran}, crashes: {result['crashes']}, "
        f"errors: {result['errors']} (failed {result['failed']}, 5xx {result['http_5xx']}), "
        f"retried: {result['retried']}, failed over: {result['failed_over']}, "
        f"throughput: {result['throughput_rps']:,.0f} req/s (p99 {result['p99_ms']} ms), "
        f"matches: {m.get('matches_per_s', 0):,}/s on {m.get('threads', 0)} threads, "
        f"reloads: {m.get('reloads', 0)} + {result['deploys']} deploys, gc: {m.get('gc_collections', 0)}"
        + (
            f", vs plain load: {result['throughput_vs_baseline']}x"
            if "throughput_vs_baseline" in result
            else ""
        )
    )
