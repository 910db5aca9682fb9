"""Live mode: a window of a topology's traffic as real HTTP over loopback.

Theory of operation
-------------------
:func:`run_live` runs a topology (usually a :func:`~edgesim._traffic.window_topology`
cut of a real one, at a rate this machine can carry) with real parts and wall time:

* the origin is its own OS process, ``python -P -m origin``, serving the topology's
  sites with the topology's origin model (``--concurrency`` workers, ``--max-queue``,
  and the service time as each site's ``[load]``);
* the edge nodes are real HTTP servers on 127.0.0.1, started by an :class:`EdgeFleet`
  (:class:`InProcessEdges`: Trio servers in this process). The modelled link latencies,
  worker slots and service times are injected in the shells (:mod:`edgesim._modelled`),
  which also record each node's origin fetches; with a ``[shield]``, the shield nodes
  are such servers too, between the edges and the origin;
* a load generator, its own process (``python -P -m edgesim._liveload``), sends the
  arrivals of the traffic model (:class:`~edgesim._traffic.ArrivalStream`, the same
  requests the capacity engine draws for the seed) at their times, chooses nodes as
  the regions' balancers do, and appends one line per finished request to a file,
  flushed as it goes: nothing already answered is lost if a node or the run dies.

The parent reads that file and builds the report with :func:`edgesim.metrics.build_report`,
so it has the virtual report's shape; ``meta.virtual_comparison`` holds the capacity
engine's figures for the same topology and seed (docs/live.md).

Time base: both processes use ``time.time() - start`` with ``start`` sent by the
parent once the load generator is ready.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from edgesim._signals import held
from edgesim.engine import node_rows, run_meta, run_report
from edgesim.errors import EdgesimError
from edgesim.metrics import Recorder, RunResult
from edgesim.topology import Topology

if TYPE_CHECKING:
    import trio

__all__ = [
    "DEFAULT_LIVE_PEAK_RPS",
    "DEFAULT_WINDOW",
    "MAX_LIVE_PEAK_RPS",
    "EdgeFleet",
    "FleetResults",
    "InProcessEdges",
    "LiveError",
    "auto_rate_scale",
    "run_live",
]

# Default peak requests/s of a live run (--rate-scale auto): three Python processes
# (origin, edges, load generator) on a shared 2-core machine keep up with this with
# room to spare, so measured latency is the model's, not the machine's backlog.
DEFAULT_LIVE_PEAK_RPS = 40.0
# Default window length (seconds): long enough for caches to fill past the first
# requests, short enough for a quick check.
DEFAULT_WINDOW = 60.0
# Highest scaled peak (requests/s) a live run accepts: one load-generator process sends
# every request, and the parent draws and holds the whole schedule in memory first, so a
# huge --rate-scale would exhaust memory before the run started rather than measure
# anything (--mode virtual runs any rate).
MAX_LIVE_PEAK_RPS = 1000.0
# Seconds requests still in flight get after the last arrival before they count as
# failed: covers the origin's worst queue at live rates.
DRAIN_SECONDS = 30.0
# Read timeout of every live HTTP client (seconds).
READ_TIMEOUT = 30.0


class LiveError(EdgesimError, RuntimeError):
    """A live run could not start or run (one line for the CLI)."""


def auto_rate_scale(topology: Topology) -> float:
    """The rate scale that brings the topology's peak to :data:`DEFAULT_LIVE_PEAK_RPS`
    (1.0 when it is already below)."""
    peak = topology.traffic.peak_rps
    return min(1.0, DEFAULT_LIVE_PEAK_RPS / peak) if peak > 0 else 1.0


# --------------------------------------------------------------------------
# Edge fleets
# --------------------------------------------------------------------------


@dataclass
class FleetResults:
    """What the edge nodes measured: fetch and origin rows (``rec``), one dict per node
    for :func:`~edgesim.metrics.build_report`, and the origin's steady busy seconds."""

    rec: Recorder
    nodes: list[dict[str, Any]] = field(default_factory=list)
    origin_busy: float = 0.0


class EdgeFleet(Protocol):
    """Starts a topology's edge nodes for a live run: "start N edge nodes, give me their
    URLs". :class:`InProcessEdges` runs them in this process; a fleet of edge processes
    implements the same four methods (its nodes inject the same model and send back
    their fetch rows and per-node figures).
    """

    async def start(self, nursery: trio.Nursery, origin_url: str) -> list[str]:
        """Start one node per edge node of the topology, in the engine's node order,
        fetching from ``origin_url`` (or, with a ``[shield]``, from shield nodes it
        starts too, which fetch from ``origin_url``) and serving until ``nursery`` is
        cancelled; return the edge nodes' base URLs (``http://127.0.0.1:PORT``)."""
        ...

    def set_start(self, start_at: float) -> None:
        """The run's time 0 (Unix seconds), set before the first request: nodes record
        times as ``time.time() - start_at``, as the load generator does."""
        ...

    async def purge(self, node: int, site: str, created: float) -> None:
        """The purge of a deploy of ``site`` published at ``created`` reached node
        ``node`` (the engine's index; shield nodes come after the edge nodes): the node's
        core drops the site's content unless it is on that deploy or a later one."""
        ...

    def results(self) -> FleetResults:
        """What the nodes recorded (call after they stopped)."""
        ...


class InProcessEdges:
    """Edge nodes as Trio HTTP servers on 127.0.0.1 in this process, with the model of
    :mod:`edgesim._modelled` injected (link latency, worker slots, service time).

    Args:
        topology: the topology.
        engine: the capacity engine's state (``ArrivalStream.engine``): node models,
            links and the steady-state window.
    """

    def __init__(self, topology: Topology, engine: Any) -> None:
        self.topology = topology
        self.engine = engine
        self.rec = Recorder()
        self.cores: dict[int, Any] = {}  # engine node index -> core (edges and shields)
        self.origin_busy = 0.0
        self.clock = _RunClock()

    def set_start(self, start_at: float) -> None:
        self.clock.start_at = start_at

    async def purge(self, node: int, site: str, created: float) -> None:
        import trio

        await trio.lowlevel.checkpoint()
        self.cores[node].purge_deploy(site, created)

    def _busy(self, t: float, s: float) -> float:
        return float(self.engine._busy(t, s))

    def _add_origin_busy(self, t: float, s: float) -> None:
        self.origin_busy += self._busy(t, s)

    async def start(self, nursery: trio.Nursery, origin_url: str) -> list[str]:
        from edgesim._client import OriginPool
        from edgesim._modelled import (
            ModelledEdge,
            ModelledUplink,
            ShieldUplink,
            build_edge_core,
            build_shield_core,
            no_link,
        )
        from edgesim._server import HttpServer
        from edgesim.serve import EdgeService

        eng, clock = self.engine, self.clock
        outages = [(float(a), float(b)) for a, b in eng.outages]

        def to_origin(n: Any) -> ModelledUplink:
            pool = OriginPool(origin_url, read_timeout=READ_TIMEOUT)
            return ModelledUplink(
                pool, n.index, n.uplink, self.rec, eng.site_index, clock, outages, self._add_origin_busy
            )

        async def serve(n: Any, core: Any, up: Any, link: Any) -> str:
            self.cores[n.index] = core
            service = EdgeService(core, up)  # the core's clock: wall time, as the origin's
            await nursery.start(service.run)
            edge = ModelledEdge(service.handle, n, link, clock, self._busy)
            http = HttpServer(edge.handle, server_name=n.name)
            port = await nursery.start(http.serve_tcp, "127.0.0.1", 0)
            return f"http://127.0.0.1:{port}"

        # Shield nodes first (the edges fetch from them): servers on loopback too, whose
        # origin is the origin process; no client link (the edge's uplink is theirs).
        shields = {
            n.index: await serve(n, build_shield_core(self.topology, n), to_origin(n), no_link)
            for n in eng.shield_nodes
        }
        urls = []
        for n in eng.nodes:
            if n.shield:
                continue
            up: Any = to_origin(n)
            if eng.shield_ring is not None:
                pools = {i: OriginPool(url, read_timeout=READ_TIMEOUT) for i, url in shields.items()}
                up = ShieldUplink(pools, eng.shield_ring, n.index, n.uplink, self.rec, eng.site_index, clock)
            urls.append(await serve(n, build_edge_core(self.topology, n), up, eng.client_links[n.region]))
        return urls

    def results(self) -> FleetResults:
        # the engine's rows (its nodes' "crashes" stay 0: live mode refuses crashes)
        nodes = node_rows(
            self.topology, self.engine.nodes, lambda n: self.cores.get(n.index, n.core).cache.statistics()
        )
        return FleetResults(self.rec, nodes, self.origin_busy)


# --------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------


class _RunClock:
    """Seconds since the run's start (wall clock; the load generator uses the same)."""

    def __init__(self) -> None:
        self.start_at = time.time()
        self.started = False  # set when the load generator is told time 0

    def __call__(self) -> float:
        return time.time() - self.start_at


def _check(topology: Topology) -> None:
    """Refuse what live mode does not run (the virtual engines run all of it)."""
    for present, what in (
        (topology.faults.crashes, "node crashes are"),
        (topology.shadow is not None, "[shadow] is"),
        (topology.traffic.trace is not None, "trace replay is"),
    ):
        if present:
            raise LiveError(f"{what} not run by live mode: use --mode virtual (either engine)")
    peak = topology.traffic.peak_rps
    if peak > MAX_LIVE_PEAK_RPS:
        raise LiveError(
            f"a peak of {peak:.4g} requests/s is more than live mode sends (at most "
            f"{MAX_LIVE_PEAK_RPS:g}): use a smaller --rate-scale, or --mode virtual"
        )


@dataclass
class _Plan:
    """What a live run will do: the arrivals (see :func:`_schedule`), the deploys, each
    node's region (engine order) and the window's end (run seconds)."""

    arrivals: list[list[Any]]
    deploys: list[_Deploy]
    node_regions: list[int]
    end: float


@dataclass
class _Deploy:
    """A deploy of the window: when, the origin's options (the same new catalog as the
    model's), and when the purge reaches each node (run seconds)."""

    at: float
    site: str
    new_fraction: float
    options: dict[str, Any]
    purges: list[float]


def _schedule(stream: Any) -> tuple[list[list[Any]], list[_Deploy]]:
    """Every arrival as ``[t, region, site, target, headers, node]`` (node -1: the load
    generator balances by least connections), and the deploys. A deploy is published on
    the model's origin when the arrivals reach its time, so later arrivals request its
    new URLs, as in the other engines."""
    eng = stream.engine
    out: list[list[Any]] = []
    deploys = sorted((d for d in stream.topology.traffic.deploys if d.at < eng.end), key=lambda d: d.at)
    done: list[_Deploy] = []
    while True:
        if deploys and deploys[0].at <= stream.peek():
            d = deploys.pop(0)
            opts = stream.publish_deploy(d.site, d.new_fraction, eng.epoch0 + d.at)
            purges = [d.at + d.propagation * eng.u_misc() for _ in eng.nodes]
            done.append(_Deploy(d.at, d.site.lower(), d.new_fraction, opts, purges))
            continue
        a = stream.next()
        if a is None:
            break
        if eng.balancers[a.region] == "least-connections":
            node = -1
        else:
            n = stream.choose(a)
            node = n.index if n is not None else -1
        out.append([round(a.t, 6), a.region, a.site, a.target, a.headers, node])
    return out, done


async def _carry_out_deploys(
    deploys: list[_Deploy],
    origin_url: str,
    fleet: EdgeFleet,
    clock: _RunClock,
    events: list[dict[str, Any]],
) -> None:
    """POST each deploy to the origin at its time, then purge the site on each node
    when the purge reaches it."""
    import trio

    from edgesim._client import OriginError, OriginPool
    from edgesim.http import Request

    pool = OriginPool(origin_url, read_timeout=READ_TIMEOUT)
    try:
        async with trio.open_nursery() as nursery:
            for d in deploys:
                await trio.sleep(max(0.0, d.at - clock()))
                body = json.dumps(d.options).encode()
                req = Request(
                    "POST",
                    "/.edgesim/deploy",
                    [("host", d.site), ("content-type", "application/json")],
                    body,
                )
                deploy_id = None
                created = math.inf  # unknown: the purges drop the site whatever it holds
                try:
                    resp = await pool.request(req)
                    if resp.status == 200 and resp.body:
                        answer = json.loads(resp.body)
                        deploy_id = answer.get("deploy_id")
                        if isinstance(answer.get("created"), int | float):
                            created = float(answer["created"])
                except (OriginError, ValueError):
                    pass  # the event says so (no deploy id); requests carry on
                for node, at in enumerate(d.purges):
                    nursery.start_soon(_purge_at, fleet, node, d.site, created, at, clock)
                events.append(
                    {
                        "at": d.at,
                        "kind": "deploy",
                        "site": d.site,
                        "deploy_id": deploy_id,
                        "new_fraction": d.new_fraction,
                        "purged_by": max(d.purges, default=d.at),
                    }
                )
    finally:
        await pool.aclose()


async def _purge_at(
    fleet: EdgeFleet, node: int, site: str, created: float, at: float, clock: _RunClock
) -> None:
    import trio

    await trio.sleep(max(0.0, at - clock()))
    await fleet.purge(node, site, created)


def _tail(path: Path, limit: int = 600) -> str:
    try:
        return path.read_text(errors="replace").strip()[-limit:]
    except OSError:
        return ""


def _read_records(path: Path, rec: Recorder) -> int:
    """Add the load generator's request lines to ``rec``; returns how many. A line
    cut short by a kill is skipped."""
    n = 0
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return 0
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 7:
            continue
        t0, lat, queued = float(parts[0]), float(parts[1]), float(parts[2])
        node, site, code, size = (int(x) for x in parts[3:])
        rec.add(t0, lat, queued, node, site, code, size, 0)
        n += 1
    return n


async def _drive(
    topology: Topology,
    seed: int,
    fleet: EdgeFleet,
    plan: _Plan,
    work: Path,
    clock: _RunClock,
    progress: Callable[[float, float, int], None] | None,
    events: list[dict[str, Any]],
) -> None:
    import trio

    schedule, end = plan.arrivals, plan.end

    from edgesim.testing import (
        NetworkError,
        _origin_command,
        _start_origin_process,
        _stop_process,
        write_sites,
    )

    o = topology.origin
    sites = write_sites(topology, work / "sites", model_load=True)
    extra = ["--concurrency", str(max(1, o.workers)), "--max-queue", str(o.max_queue), "--seed", str(seed)]
    try:
        origin, origin_url = await _start_origin_process(sites, work / "origin.log", extra)
    except NetworkError as exc:
        raise LiveError(str(exc)) from None
    load: trio.Process | None = None
    try:
        async with trio.open_nursery() as nursery:
            urls = await fleet.start(nursery, origin_url)
            try:
                spec = {
                    "nodes": [{"url": u, "region": r} for u, r in zip(urls, plan.node_regions, strict=True)],
                    "drain": DRAIN_SECONDS,
                    "read_timeout": READ_TIMEOUT,
                    "arrivals": schedule,
                }
                (work / "schedule.json").write_text(json.dumps(spec), encoding="utf-8")
                _, env = _origin_command(work)  # the origin's environment: the same package paths
                cmd = [sys.executable, "-P", "-m", "edgesim._liveload", str(work / "schedule.json")]
                cmd.append(str(work / "records.txt"))
                with (work / "load.log").open("wb") as log:
                    load = await trio.lowlevel.open_process(
                        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env
                    )
                assert load.stdout is not None and load.stdin is not None
                line = b""
                with trio.move_on_after(60):
                    while not line.endswith(b"\n"):
                        chunk = await load.stdout.receive_some(64)
                        if not chunk:
                            break
                        line += chunk
                if line.strip() != b"ready":
                    raise LiveError(f"the load generator did not start: {_tail(work / 'load.log')}")
                clock.start_at = time.time() + 0.05
                clock.started = True
                fleet.set_start(clock.start_at)
                if plan.deploys:
                    nursery.start_soon(_carry_out_deploys, plan.deploys, origin_url, fleet, clock, events)
                await load.stdin.send_all(f"{clock.start_at!r}\n".encode())
                times = [a[0] for a in schedule]
                while load.returncode is None:
                    with trio.move_on_after(0.5):
                        await load.wait()
                    if progress is not None:
                        t = min(clock(), end)
                        progress(t, end, bisect_right(times, t))
                if load.returncode in (130, -signal.SIGINT):
                    raise KeyboardInterrupt  # Ctrl-C reached it first (one process group)
                if load.returncode != 0:
                    why = _tail(work / "load.log")
                    raise LiveError(f"the load generator failed (exit {load.returncode}): {why}")
            finally:
                # The load generator stops before the edges: requests still in flight
                # at Ctrl-C are not recorded as failures of the nodes.
                if load is not None:
                    with trio.CancelScope(shield=True):
                        await _stop_process(load)
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            if load is not None:
                await _stop_process(load)
            await _stop_process(origin)


def run_live(
    topology: Topology,
    *,
    seed: int | None = None,
    progress: Callable[[float, float, int], None] | None = None,
    workdir: str | os.PathLike[str] | None = None,
    fleet: EdgeFleet | None = None,
    compare: bool = True,
) -> RunResult:
    """Run ``topology`` live: origin process, edge servers on loopback, load generator
    process, wall time (the whole traffic duration: pass a window topology).

    Args:
        topology: the topology to run (see :func:`edgesim._traffic.window_topology`).
        seed: the run's seed (default: the topology's); the arrivals are the ones the
            capacity engine draws for it.
        progress: ``progress(seconds, end, requests_sent)`` about twice a second.
        workdir: where the origin's sites, the schedule, the records and the logs go
            (default: a temporary directory, removed afterwards).
        fleet: the edge nodes (default: :class:`InProcessEdges`).
        compare: also run the capacity engine on the same topology and seed, and put
            its headline figures in ``meta.virtual_comparison``.

    Returns:
        A :class:`~edgesim.metrics.RunResult` shaped as a virtual run's
        (``meta.engine`` is ``"live"``). Ctrl-C stops the run and returns what was
        recorded, marked ``meta.partial``.

    Resource handling:
        Both subprocesses are stopped (SIGTERM, then kill) and the servers closed when
        the run ends, also on error or Ctrl-C.

    Error handling:
        :class:`LiveError` when a part cannot start or the topology has something live
        mode does not model (crashes, [shadow], traces).
    """
    from edgesim._modelled import run_until_interrupted
    from edgesim._traffic import ArrivalStream, model_events

    _check(topology)
    s = topology.seed if seed is None else seed
    stream = ArrivalStream(topology, s)
    eng = stream.engine
    edges: EdgeFleet = fleet if fleet is not None else InProcessEdges(topology, eng)
    arrivals, deploys = _schedule(stream)
    plan = _Plan(arrivals, deploys, [n.region for n in eng.nodes if not n.shield], float(eng.end))
    events = model_events(topology, plan.end)
    end = float(eng.end)
    clock = _RunClock()
    wall0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgesim-live-") as tmp:
        work = Path(workdir) if workdir is not None else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        partial = run_until_interrupted(_drive, topology, s, edges, plan, work, clock, progress, events)
        # A stop now would lose the run: the report is built first (stopped() says so).
        with held() as stopped:
            results = edges.results()
            answered = _read_records(work / "records.txt", results.rec)
            # stopped during start-up: no run time went by
            reached = (min(end, max(clock(), 1e-9)) if clock.started else 1e-9) if partial else end
            wall = time.perf_counter() - wall0
            report = run_report(
                topology,
                results.rec,
                run_meta(topology, "live", s, eng.epoch0, reached, answered, partial),
                nodes=results.nodes,
                sites=[m.host for m in eng.sites],
                origin={"workers": max(1, topology.origin.workers), "busy": results.origin_busy},
                events=events,
            )
    halted = stopped()
    if compare and not partial and not halted:
        from edgesim.engine import simulate

        # Ctrl-C here stops the virtual run (it returns a partial report): the live
        # report stays whole, without a comparison against part of a run.
        virtual = simulate(topology, seed=s)
        halted = virtual.stopped or bool(virtual.report["meta"].get("partial"))
        if not virtual.report["meta"].get("partial"):
            report["meta"]["virtual_comparison"] = comparison(report, virtual.report)
    timing = {"wall_seconds": wall, "scheduled_requests": float(len(arrivals))}
    return RunResult(report, timing, stopped=halted and not partial)


def comparison(live: dict[str, Any], virtual: dict[str, Any]) -> dict[str, Any]:
    """Headline figures of a live and a virtual report side by side, with the live
    minus virtual difference of the hit ratio and the relative difference of origin
    requests/s."""
    lt, vt = live["totals"], virtual["totals"]
    lo, vo = live["origin"]["requests_per_second"], virtual["origin"]["requests_per_second"]
    hl, hv = lt["object_hit_ratio"], vt["object_hit_ratio"]
    return {
        "requests": {"live": lt["requests"], "virtual": vt["requests"]},
        "object_hit_ratio": {
            "live": hl,
            "virtual": hv,
            "difference": round(hl - hv, 6) if hl is not None and hv is not None else None,
        },
        "origin_requests_per_second": {
            "live": lo,
            "virtual": vo,
            "relative_difference": round((lo - vo) / vo, 6) if vo else None,
        },
        "latency_p50": {"live": lt["latency"]["p50"], "virtual": vt["latency"]["p50"]},
        "latency_p99": {"live": lt["latency"]["p99"], "virtual": vt["latency"]["p99"]},
    }
