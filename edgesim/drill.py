"""The crash drill: a topology's faults run for real against separate processes.

Theory of operation
-------------------
:func:`run_drill` lays out the topology's sites, starts ``python -m origin`` on a fixed
loopback port, starts every edge node of every region as its own process under
:mod:`edgesim._supervisor` (fixed ports, restarts with backoff), and runs the load
generator (:mod:`edgesim._drillload`) in a third kind of process, whose clients fail over
to the other nodes of their region when one stops answering, and to the nearest region
by ``[network.region_latency]`` when their region has none left (as ``edgesim run``'s
clients do; no latency is added, it is all loopback). Meanwhile this process
runs the topology's ``[faults]`` on the wall clock, scaled so that the topology's
``traffic.duration`` lasts the drill's ``duration``:

* ``[[faults.crashes]]``: ``SIGKILL`` of that node's process at ``at``; the supervisor
  restarts it, no sooner than ``down_for`` later (the node's repair time) and after its
  backoff;
* ``[[faults.origin_outages]]`` with ``mode = "stop"``: the origin gets SIGTERM at
  ``at`` and is started again on the same port after ``duration``; edges serve stale
  content meanwhile where ``stale-if-error`` allows it;
* ``mode = "stall"``: the origin is frozen with ``SIGSTOP`` and thawed with ``SIGCONT``;
* ``[[faults.latency_spikes]]`` have no process-level equivalent and are listed as
  skipped.

The report (:func:`run_drill`'s return value) joins three sources: the supervisor's
restart records and edge counters (collected every ``flush_interval``: a killed edge
loses at most what it counted since its last collection, and the report says how long
that was), the load generator's client-side outcomes (all of them: they live in its own
process), and the controller's fault log. Derived: the cold-cache origin spike of each
restarted node (its ``MISS`` answers per second after the restart against before the
crash) and the stale serving during each origin outage.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from edgesim._signals import held
from edgesim._supervisor import EdgeSpec, Supervisor, child_env, free_ports, open_supervisor
from edgesim.errors import EdgesimError
from edgesim.topology import Topology

__all__ = ["DrillError", "DrillOptions", "child_env", "failover_groups", "run_drill", "start_origin"]

# Seconds of traffic before the first fault can matter: the processes are up, and the
# load generator's interpreter has started.
LEAD_IN = 1.5
# Window (seconds) before a crash and after a restart over which miss rates are compared.
SPIKE_WINDOW = 3.0
# Paths per site handed to the load generator (the most popular ones).
MAX_PATHS = 5000
ORIGIN_START_TIMEOUT = 30.0


class DrillError(EdgesimError, RuntimeError):
    """The drill could not run (a process did not start, the load generator failed)."""


@dataclass(frozen=True, slots=True)
class DrillOptions:
    """How to run a drill.

    Attributes:
        duration: wall seconds the topology's traffic is compressed (or stretched) into;
            None: the topology's own ``traffic.duration`` (in real time).
        rate: total requests/s; None: the topology's ``peak_rps``; 0: as fast as possible.
        connections: concurrent clients of the load generator.
        flush_interval: seconds between collections of the edges' counters.
        honor_down_for: keep a crashed node down for its ``down_for`` (scaled).
        edge_module: module run as each edge process (``edgesim``, or the stress wrapper).
        seed: the request mix's seed (default: the topology's).
    """

    duration: float | None = None
    rate: float | None = None
    connections: int = 16
    flush_interval: float = 1.0
    honor_down_for: bool = True
    edge_module: str = "edgesim"
    seed: int | None = None


class OriginProcess:
    """``python -m origin`` on a fixed port that can be stopped, started and frozen."""

    def __init__(self, sites_dir: Path, port: int, log_path: Path) -> None:
        self.sites_dir = sites_dir
        self.port = port
        self.log_path = log_path
        self.process: trio.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Start it and wait until it accepts connections (raises :class:`DrillError`)."""
        cmd = [sys.executable, "-P", "-m", "origin", "--sites", str(self.sites_dir), "--port", str(self.port)]
        log = self.log_path.open("ab")
        try:
            self.process = await trio.lowlevel.open_process(
                cmd, stdout=subprocess.DEVNULL, stderr=log, env=child_env()
            )
        finally:
            log.close()
        with trio.move_on_after(ORIGIN_START_TIMEOUT):
            while self.process.returncode is None:
                try:
                    stream = await trio.open_tcp_stream("127.0.0.1", self.port)
                except OSError:
                    await trio.sleep(0.02)
                    continue
                await stream.aclose()
                return
        tail = self.log_path.read_text(errors="replace")[-400:] if self.log_path.exists() else ""
        await self.stop()
        raise DrillError(f"origin did not start on port {self.port}: {tail.strip() or 'no output'}")

    async def stop(self) -> None:
        """SIGTERM (it drains), SIGKILL after 5 s; a frozen origin is thawed first."""
        p = self.process
        if p is None:
            return
        with trio.CancelScope(shield=True):
            if p.returncode is None:
                p.send_signal(signal.SIGCONT)
                p.terminate()
                with trio.move_on_after(5.0):
                    await p.wait()
                if p.returncode is None:
                    p.kill()
                    await p.wait()

    def freeze(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGCONT)


async def start_origin(sites_dir: Path, port: int, log_path: Path) -> OriginProcess:
    """An origin process serving ``sites_dir`` on ``port``, accepting connections."""
    o = OriginProcess(sites_dir, port, log_path)
    await o.start()
    return o


def edge_specs(topo: Topology, origin_url: str, *, module: str = "edgesim") -> list[EdgeSpec]:
    """One :class:`EdgeSpec` per node of the topology (``REGION-K``), on fresh ports."""
    from edgesim._shadowlive import shadow_args  # a [shadow] table: the edges shadow too

    names = [(r, f"{r.name}-{k}") for r in topo.regions for k in range(r.edge.nodes)]
    ports = free_ports(len(names))
    return [
        EdgeSpec(
            name,
            origin_url,
            port,
            memory_cache=r.edge.memory_cache,
            module=module,
            extra_args=shadow_args(topo, r.name),
        )
        for (r, name), port in zip(names, ports, strict=True)
    ]


def failover_groups(topo: Topology) -> dict[str, list[tuple[float, list[str]]]]:
    """Per region name, where its clients fail over (the load generator's ``failover``):
    :func:`edgesim.engine.failover_order` with region names, ``[(seconds, [names])]``
    nearest first, each group in the topology's region order."""
    from edgesim.engine import failover_order

    names = [r.name for r in topo.regions]
    return {
        names[i]: [(sec, [names[j] for j in group]) for sec, group in order]
        for i, order in enumerate(failover_order(topo))
    }


async def site_paths(origin_url: str, host: str, limit: int = MAX_PATHS) -> list[str]:
    """The site's paths, most popular first, from the origin's manifest."""
    from edgesim._client import OriginPool
    from edgesim.http import Request
    from origin.core import Catalog

    pool = OriginPool(origin_url)
    try:
        resp = await pool.request(Request("GET", "/.edgesim/manifest", [("host", host)]))
    finally:
        await pool.aclose()
    if resp.status != 200:
        raise DrillError(f"origin has no manifest for {host}: {resp.status}")
    doc = json.loads(resp.body or b"{}")
    if doc.get("catalog"):
        cat = Catalog.from_manifest(doc["catalog"])
        return [cat.path(i) for i in range(min(limit, len(cat)))]
    files = doc.get("files") or {}
    paths = sorted(p for p in files if not p.rsplit("/", 1)[-1].startswith("_"))
    return paths[:limit] or ["/"]


# Seconds the load generator has, once told to stop, to write what it counted.
LOAD_STOP_TIMEOUT = 5.0


async def _run_loadgen(
    cfg: dict[str, Any], work: Path, on_stop: Callable[[], None] = lambda: None
) -> dict[str, Any]:
    """Run the load generator to its end; its outcome document. Stopped (cancelled, or
    Ctrl-C), it calls ``on_stop`` first; the load generator is sent SIGTERM, writes what
    it counted (``partial``) and is waited for (killed after :data:`LOAD_STOP_TIMEOUT`);
    :func:`_load_result` then reads it."""
    cfg_path, out_path, log_path = work / "load.json", work / "load-result.json", work / "load.log"
    cfg_path.write_text(json.dumps(cfg), encoding="utf-8")
    out_path.unlink(missing_ok=True)  # (a kept --workdir's last run)
    cmd = [sys.executable, "-P", "-m", "edgesim._drillload", str(cfg_path), str(out_path)]
    with log_path.open("wb") as log:
        proc = await trio.lowlevel.open_process(cmd, stdout=log, stderr=log, env=child_env())
    try:
        await proc.wait()
    finally:
        with trio.CancelScope(shield=True):
            if proc.returncode is None or proc.returncode in (130, -signal.SIGINT):
                on_stop()  # before the wait: a Ctrl-C stops the edges too, not to be restarted
            if proc.returncode is None:
                proc.terminate()
                with trio.move_on_after(LOAD_STOP_TIMEOUT):
                    await proc.wait()
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
    if proc.returncode in (130, -signal.SIGINT):
        raise KeyboardInterrupt  # a Ctrl-C reached it first (one process group)
    if proc.returncode != 0:
        raise DrillError(
            f"load generator exited with status {proc.returncode}: "
            f"{log_path.read_text(errors='replace')[-400:].strip()}"
        )
    result: dict[str, Any] = json.loads(out_path.read_text(encoding="utf-8"))
    return result


def _load_result(work: Path, cfg: dict[str, Any]) -> dict[str, Any]:
    """What a stopped load generator wrote, or an empty partial outcome when it wrote
    nothing (killed, or stopped before it ran)."""
    from edgesim._drillload import nothing_sent

    try:
        result: dict[str, Any] = json.loads((work / "load-result.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return nothing_sent(float(cfg["interval"]), float(cfg["start_at"]), int(cfg["connections"]))
    result["partial"] = True
    return result


async def _sleep_until(wall: float) -> None:
    await trio.sleep(max(0.0, wall - time.time()))


async def _faults(
    topo: Topology,
    sup: Supervisor,
    origin: OriginProcess,
    start_at: float,
    scale: float,
    opts: DrillOptions,
    log: list[dict[str, Any]],
    progress: Callable[[str], None] | None,
) -> None:
    index = {spec.name: i for i, spec in enumerate(sup.specs)}

    def note(kind: str, **kw: Any) -> None:
        entry = {"t": round(time.time() - start_at, 3), "kind": kind, **kw}
        log.append(entry)
        if progress:
            progress(f"t={entry['t']:.1f}s {kind} {' '.join(f'{k}={v}' for k, v in kw.items())}")

    async def crash(region: str, node: int, at: float, down_for: float) -> None:
        name = f"{region}-{node}"
        await _sleep_until(start_at + at)
        hold = down_for if opts.honor_down_for else 0.0
        ok = sup.kill(index[name], signal.SIGKILL, hold=hold)
        note("edge_killed" if ok else "edge_kill_skipped", node=name, hold=round(hold, 3))

    async def outage(at: float, duration: float, mode: str) -> None:
        await _sleep_until(start_at + at)
        if mode == "stall":
            origin.freeze()
            note("origin_stalled", until=round(at + duration, 3))
            await _sleep_until(start_at + at + duration)
            origin.thaw()
            note("origin_resumed")
            return
        await origin.stop()
        note("origin_stopped", until=round(at + duration, 3))
        await _sleep_until(start_at + at + duration)
        t = time.time()
        await origin.start()
        note("origin_started", startup=round(time.time() - t, 3))

    async with trio.open_nursery() as nursery:
        for c in topo.faults.crashes:
            nursery.start_soon(crash, c.region, c.node, c.at * scale, c.down_for * scale)
        for o in topo.faults.outages:
            nursery.start_soon(outage, o.at * scale, o.duration * scale, o.mode)
    for s in topo.faults.spikes:
        log.append({"t": round(s.at * scale, 3), "kind": "latency_spike_skipped", "link": s.link})


def _bucket_sum(
    buckets: list[dict[str, Any]], lo: float, hi: float, key: Callable[[dict[str, Any]], int]
) -> int:
    return sum(key(b) for b in buckets if lo <= b["t"] < hi)


def _analyse(
    report: dict[str, Any], sup_offset: float, outages: list[tuple[float, float, str]], interval: float
) -> None:
    """Add the cold-cache spikes and the stale serving during outages to ``report``."""
    buckets = report["clients"]["buckets"]
    spikes = []
    for r in report["restarts"]:
        if r["up_at"] is None:
            continue
        died, up = r["died_at"] + sup_offset, r["up_at"] + sup_offset
        w = max(SPIKE_WINDOW, interval)

        def misses(lo: float, hi: float, name: str = r["name"]) -> int:
            return _bucket_sum(buckets, lo, hi, lambda b: int(b["nodes"].get(name, {}).get("MISS", 0)))

        def answers(lo: float, hi: float, name: str = r["name"]) -> int:
            return _bucket_sum(buckets, lo, hi, lambda b: sum(b["nodes"].get(name, {}).values()))

        # whole buckets only: the one holding the crash and the one holding the return
        # are mixed, so the windows start one bucket away from each event
        b_lo, b_hi = (died // interval) * interval - w, (died // interval) * interval
        a_lo = (up // interval + 1) * interval
        a_hi = a_lo + w
        before_m, after_m = misses(b_lo, b_hi), misses(a_lo, a_hi)
        before_n, after_n = answers(b_lo, b_hi), answers(a_lo, a_hi)
        spikes.append(
            {
                "node": r["name"],
                "restart_at": round(up, 3),
                "window": w,
                "misses_per_s_before": round(before_m / w, 2),
                "misses_per_s_after": round(after_m / w, 2),
                "miss_ratio_before": round(before_m / before_n, 3) if before_n else None,
                "miss_ratio_after": round(after_m / after_n, 3) if after_n else None,
            }
        )
    report["cold_cache_spikes"] = spikes
    served = []
    for at, until, mode in outages:
        lo, hi = (at // interval) * interval, until

        def total(name: str, lo: float = lo, hi: float = hi) -> int:
            return _bucket_sum(
                buckets, lo, hi, lambda b: sum(int(v.get(name, 0)) for v in b["nodes"].values())
            )

        served.append(
            {
                "at": round(at, 3),
                "until": round(until, 3),
                "mode": mode,
                "stale": total("STALE"),
                "hits": total("HIT"),
                "errors": total("ERROR"),
                "http_5xx": _bucket_sum(buckets, lo, hi, lambda b: int(b["http_5xx"])),
                "failed": _bucket_sum(buckets, lo, hi, lambda b: int(b["failed"])),
            }
        )
    report["origin_outages"] = served


async def run_drill(
    topology: Topology,
    options: DrillOptions | None = None,
    *,
    workdir: str | os.PathLike[str] | None = None,
    progress: Callable[[str], None] | None = None,
    during: Callable[[Supervisor, OriginProcess, float, float], Awaitable[Any]] | None = None,
    on_interrupt: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run ``topology``'s faults against real processes and report what happened.

    Args:
        topology: the topology (its regions, sites, traffic and ``[faults]``).
        options: see :class:`DrillOptions`.
        workdir: where the sites, logs and the load generator's files go (default: a
            temporary folder, removed afterwards).
        progress: called with one line per fault as it runs.
        during: ``async fn(supervisor, origin, start_at, end_at)`` run beside the
            faults (wall-clock times; ``edgesim stress`` uses it); it must return by
            ``end_at``, and what it returns is the report's ``extra``.
        on_interrupt: called with the report of what was recorded (``partial`` true,
            ``reached`` the seconds of load run) when the drill is stopped once its
            load generator has started: Ctrl-C, SIGTERM or SIGHUP under
            :func:`edgesim._signals.stoppable`, or a cancellation. The load generator
            is stopped first and writes what it counted; the edges' counters are
            collected once more; the stop then goes on (the processes are stopped and
            ``KeyboardInterrupt`` or the cancellation comes out). Stopped earlier,
            while the processes start, there is nothing to report and it is not called.

    Returns:
        The report: ``restarts`` (every death and restart), ``clients`` (the load
        generator's outcome: totals, failed, retried and failed-over requests, the
        failed-over ones by client region and answering region, per-bucket counts by
        node and ``X-Cache``), ``faults`` (what ran when), ``edges`` (the nodes'
        counters over all incarnations and the flush interval), ``cold_cache_spikes``
        and ``origin_outages``, ``partial`` (false) and ``reached`` (the duration).
        Times are seconds from the start of the load.

    Resource handling:
        Every process it starts is stopped before it returns, also on error.

    Error handling:
        :class:`DrillError` when a process cannot start or the load generator fails;
        ``SupervisorError`` when the edges do not come up.
    """
    from edgesim._drillload import make_config
    from edgesim.testing import write_sites

    opts = options or DrillOptions()
    duration = opts.duration if opts.duration is not None else topology.traffic.duration
    if duration <= 0:
        raise ValueError("duration must be > 0")
    if topology.traffic.trace is not None:  # its load generator draws synthetic traffic
        raise DrillError("trace replay is not run by the drill: use edgesim run (either engine)")
    scale = duration / topology.traffic.duration
    rate = topology.traffic.peak_rps if opts.rate is None else opts.rate
    with tempfile.TemporaryDirectory(prefix="edgesim-drill-") as tmp:
        work = Path(workdir) if workdir is not None else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        sites = write_sites(topology, work / "sites")
        (origin_port,) = free_ports(1)
        origin = await start_origin(sites, origin_port, work / "origin.log")
        try:
            specs = edge_specs(topology, origin.url, module=opts.edge_module)
            async with open_supervisor(
                specs, log_dir=work / "logs", flush_interval=opts.flush_interval
            ) as sup:
                hosts = []
                for s in topology.sites:
                    share = s.share
                    hosts.append((s.name.lower(), share, await site_paths(origin.url, s.name.lower())))
                regions = []
                for r in topology.regions:
                    nodes = [(sp.name, sp.url) for sp in specs if sp.name.rsplit("-", 1)[0] == r.name]
                    regions.append((r.name, r.client_share, nodes))
                faults = topology.faults
                outages = [(o.at * scale, (o.at + o.duration) * scale, o.mode) for o in faults.outages]
                start_at = time.time() + LEAD_IN
                sup_offset = (time.time() - sup.now()) - start_at  # supervisor time -> drill time
                cfg = make_config(
                    regions=regions,
                    hosts=hosts,
                    duration=duration,
                    rate=rate,
                    connections=opts.connections,
                    client_timeout=topology.faults.client_timeout,
                    health_check_delay=topology.faults.health_check_delay,
                    seed=topology.seed if opts.seed is None else opts.seed,
                    interval=1.0,
                    start_at=start_at,
                    failover=failover_groups(topology),
                )
                fault_log: list[dict[str, Any]] = []
                extra: list[Any] = []

                def report_of(clients: dict[str, Any], partial: bool) -> dict[str, Any]:
                    edges = {
                        "flush_interval": opts.flush_interval,
                        "totals": sup.totals(),
                        "nodes": {sp.name: sup.node_totals(i) for i, sp in enumerate(specs)},
                        "lost_window_note": (
                            f"a killed edge loses at most the counters of its last flush interval "
                            f"({opts.flush_interval:g} s); each restart's 'unflushed' gives the actual window"
                        ),
                    }
                    report: dict[str, Any] = {
                        "topology": topology.name,
                        "duration": duration,
                        "time_scale": scale,
                        "rate": rate,
                        "partial": partial,
                        # seconds of load run: the duration, or where a stop cut it short
                        "reached": min(duration, float(clients["elapsed"])) if partial else duration,
                        "restarts": [r.as_dict() for r in sup.restarts],
                        "clients": clients,
                        "faults": fault_log,
                        "edges": edges,
                        "origin_exit": None,
                        "extra": extra[0] if extra else None,
                    }
                    # (a stopped drill's outages are those that began before the stop)
                    begun = [o for o in outages if o[0] < report["reached"]]
                    _analyse(report, sup_offset, begun, clients["interval"])
                    return report

                try:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(
                            _faults, topology, sup, origin, start_at, scale, opts, fault_log, progress
                        )
                        if during is not None:

                            async def run_during(fn: Any = during) -> None:
                                extra.append(await fn(sup, origin, start_at, start_at + duration))

                            nursery.start_soon(run_during)
                        clients = await _run_loadgen(cfg, work, sup.stop_restarts)
                    # a restart still under way gets its chance to finish before the report
                    pending = [r for r in sup.restarts if r.up_at is None]
                    if pending:
                        with trio.move_on_after(5.0):
                            await sup.wait_restarts(len(sup.restarts))
                    await sup.flush()
                except BaseException as exc:
                    if on_interrupt is None or not _is_stop(exc):
                        raise
                    # Stopped (Ctrl-C, SIGTERM, SIGHUP, a cancelled caller): the load
                    # generator has written what it counted; the edges' counters are
                    # collected once more, and the report is built from what was recorded.
                    with held(), trio.CancelScope(shield=True):
                        sup.stop_restarts()
                        with trio.move_on_after(max(1.0, opts.flush_interval)):
                            await sup.flush()
                        on_interrupt(report_of(_load_result(work, cfg), partial=True))
                    raise
                report = report_of(clients, partial=False)
            # an origin that died on its own (not stopped by a fault) is a finding
            p = origin.process
            report["origin_exit"] = p.returncode if p is not None and p.returncode is not None else None
        finally:
            await origin.stop()
    return report


def _is_stop(exc: BaseException) -> bool:
    """Whether ``exc`` stops the drill from outside: Ctrl-C (or SIGTERM and SIGHUP under
    :func:`edgesim._signals.stoppable`) or a cancellation, also inside Trio's groups."""
    if isinstance(exc, BaseExceptionGroup):
        _, rest = exc.split((KeyboardInterrupt, trio.Cancelled))
        return rest is None
    return isinstance(exc, KeyboardInterrupt | trio.Cancelled)


def _failover_detail(clients: dict[str, Any]) -> str:
    """`` (eu->us 12, ...)``: the failed-over answers by client and answering region."""
    per = clients.get("failed_over_regions") or {}
    parts = [f"{a}->{b} {n:,}" for a in sorted(per) for b, n in sorted(per[a].items())]
    return f" ({', '.join(parts)})" if parts else ""


def summary_lines(report: dict[str, Any]) -> list[str]:
    """The drill's report as a few human-readable lines."""
    c = report["clients"]
    t = c["totals"]
    ran = (
        f"stopped at {report['reached']:.1f} s of {report['duration']:g} s"
        if report.get("partial")
        else f"{report['duration']:g} s"
    )
    lines = [
        f"drill {report['topology']}: {ran} (time scale {report['time_scale']:.4g}), "
        f"{t['requests']:,} requests, {c['throughput_rps']:,.0f} answers/s",
        f"clients: ok {t['ok']:,}, http 5xx {t['http_5xx']:,}, retried {t['retried']:,}, "
        f"failed over {t['failed_over']:,}{_failover_detail(c)}, "
        f"failed {t['failed']:,}; failed attempts {t['attempts_failed']:,} "
        + (
            f"({', '.join(f'{k} {v}' for k, v in sorted(c['attempt_errors'].items()))})"
            if c["attempt_errors"]
            else ""
        ),
    ]
    for f in report["faults"]:
        extra = " ".join(f"{k}={v}" for k, v in f.items() if k not in ("t", "kind"))
        lines.append(f"fault t={f['t']:.1f}s {f['kind']} {extra}".rstrip())
    for r in report["restarts"]:
        down = f"down {r['downtime']:.2f} s" if r["downtime"] is not None else "not back"
        lines.append(
            f"restart {r['name']}: died {r['signal'] or 'exit ' + str(r['returncode'])}"
            f"{' (drill)' if r['killed_by_drill'] else ''}, backoff {r['backoff']:.2f} s, {down}, "
            f"counters of the last {r['unflushed']:.2f} s lost"
        )
    for s in report["cold_cache_spikes"]:
        lines.append(
            f"cold cache {s['node']}: misses/s {s['misses_per_s_before']} before the crash, "
            f"{s['misses_per_s_after']} after the restart (miss ratio {s['miss_ratio_before']} -> "
            f"{s['miss_ratio_after']})"
        )
    for o in report["origin_outages"]:
        lines.append(
            f"origin {o['mode']} {o['at']:.1f}-{o['until']:.1f}s: stale served {o['stale']}, "
            f"hits {o['hits']}, edge errors {o['errors']}, 5xx {o['http_5xx']}, failed {o['failed']}"
        )
    et = report["edges"]["totals"]
    if "shadow_compared" in et:  # edges with a [shadow] table (docs/shadow.md)
        lines.append(
            f"shadow: compared {et['shadow_compared']:,}, mismatches {et.get('shadow_mismatches', 0):,}, "
            f"errors {et.get('shadow_errors', 0):,}, timeouts {et.get('shadow_timeouts', 0):,}, "
            f"answered by the candidate {et.get('shadow_answered_candidate', 0):,}, "
            f"fallbacks {et.get('shadow_fallbacks', 0):,}"
        )
    lines.append(report["edges"]["lost_window_note"])
    return lines
