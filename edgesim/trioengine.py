"""The Trio engine: a topology through the real Trio shells, on Trio's mock clock.

Theory of operation
-------------------
:func:`simulate_trio` runs the same topology, traffic model and report as
:func:`edgesim.engine.simulate`, but every request goes through the real services:
the client side of :class:`~edgesim._client.OriginPool` sends HTTP/1.1 bytes over a
Trio memory stream to the edge's :class:`~edgesim._server.HttpServer`, whose
:class:`~edgesim.serve.EdgeService` drives the edge core and fetches through another
pool from the real :class:`origin.server.OriginServer` (its concurrency limit, queue
bound and modelled service time). Everything runs under ``trio.testing.MockClock``
with autojump, so time is virtual: the modelled link latencies and edge service times
(:mod:`edgesim._modelled`) are ``trio.sleep`` calls that cost no wall time.

Arrivals come from :class:`edgesim._traffic.ArrivalStream`, which draws them exactly
as the capacity engine does, so for the same seed both engines see the same requests;
balancers, link latencies and service times come from the engine's state too. What
differs is only what the shells add: HTTP framing, real bodies, real concurrency.

With a ``[shield]``, the shield nodes are edge services too (their own cores, workers
and service time, no client link) whose origin is the origin server; each edge fetches
a miss from the shield node the engine's consistent hash of site + URL picks
(:class:`~edgesim._modelled.ShieldUplink`), with the edge's uplink latency each way,
and the shield from the origin with ``latency_to_origin``. A replayed trace
(``[traffic] trace``) gives the arrivals, and the origin lays out one object per trace
key with the trace's size, as the capacity engine does. A node crash
(``[[faults.crashes]]``) ends a life of the node (:class:`_CrashableEdge`): the
requests in it get no answer (its fetches already sent still reach the origin, are
answered and counted there, as in the capacity engine: only their way back is lost),
requests sent to it while it is down are retried on
another node of the region after the client timeout, the balancer drops it after the
health check delay, and it restarts after ``down_for`` with a cold cache.

A ``[shadow]`` table gives each edge node of its regions the
:class:`~edgesim.shadow.Shadow` the capacity engine built for it (kept across crash
restarts; shields never shadow): rule candidates run inside the node core, and
``EdgeService`` marks who answered. A candidate origin (``candidate = "origin"``) is an
in-process ``OriginCore`` built as the engine's (``new_candidate_origin``, with bodies)
that gets the same deploys; the node's uplink is wrapped (:class:`_ShadowedUplink`) so each
origin answer that comes back is compared with the candidate's, synchronously at that
virtual instant, as the capacity engine compares them at fetch-back. The report gets
the same ``"shadow"`` section.

Origin outages, latency spikes, flash crowds and deploys are modelled too.
It is slow (every request is several Trio tasks and real HTTP parsing): for small
topologies and for checking the fast engine (docs/live.md).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from edgesim.engine import node_rows, origin_core, run_meta, run_report
from edgesim.metrics import O_FAILED, Recorder, RunResult
from edgesim.topology import Topology

__all__ = ["simulate_trio"]

# Client read timeout (virtual seconds): long enough for the origin's worst queue.
_READ_TIMEOUT = 600.0
# Progress callbacks every this many arrivals.
_PROGRESS_EVERY = 256


class _Run:
    """The state of one Trio-engine run (built and driven inside ``trio.run``)."""

    def __init__(self, topology: Topology, seed: int, stop_at: float | None) -> None:
        from edgesim._traffic import ArrivalStream

        self.topo = topology
        self.seed = seed
        self.stream = ArrivalStream(topology, seed, stop_at)
        self.eng = self.stream.engine
        self.rec = Recorder()
        self.events: list[dict[str, Any]] = []
        self.origin_busy = 0.0
        self.cores: dict[int, Any] = {}  # node index -> its core
        self.shadows: dict[str, Any] = {}  # edge node name -> its Shadow ([shadow])
        self.cand_origin: Any = None  # the [shadow] candidate origin (an OriginCore)
        self.reached = 0.0
        self.arrivals = 0

    def busy(self, t: float, s: float) -> float:
        return float(self.eng._busy(t, s))

    def add_origin_busy(self, t: float, s: float) -> None:
        self.origin_busy += self.busy(t, s)

    def attach_shadows(self) -> None:
        """The engine's shadows (one per edge node of the ``[shadow]`` regions, built by
        the capacity engine's ``_attach_shadows``), and for ``candidate = "origin"`` a
        candidate origin built as the engine's, with bodies."""
        self.shadows = self.eng.shadows
        if self.eng.cand_origin is not None:
            self.cand_origin = self.eng.new_candidate_origin(bodies=True)

    def edge_core(self, n: Any) -> Any:
        """A new core for edge node ``n`` (a start or a restart), with its shadow."""
        from edgesim._modelled import build_edge_core

        core = build_edge_core(self.topo, n)
        core.shadow = self.shadows.get(n.name)
        return core

    async def main(self, progress: Callable[[float, float, int], None] | None) -> None:
        import trio

        from edgesim._client import OriginError, OriginPool
        from edgesim._modelled import (
            ModelledEdge,
            ModelledUplink,
            ShieldUplink,
            _Clock,
            build_shield_core,
            no_link,
            outcome_code,
        )
        from edgesim._server import HttpServer
        from edgesim._traffic import model_events
        from edgesim.http import Request
        from edgesim.serve import EdgeService
        from edgesim.testing import _memory_opener, site_config_text
        from origin.server import OriginServer

        eng, rec, topo = self.eng, self.rec, self.topo
        clock = _Clock(trio.current_time())
        epoch0 = float(eng.epoch0)

        def now() -> float:
            return epoch0 + clock()

        outages = [(float(a), float(b)) for a, b in eng.outages]
        self.events.extend(model_events(topo, eng.end))

        o = topo.origin
        # the real origin's core: the sites a real origin process gets (site_config_text,
        # with the modelled service time), a replayed trace's sizes as the engine's
        sizes = eng.trace.site_sizes if eng.trace is not None else ()
        text = partial(site_config_text, origin=topo.origin)
        core = origin_core(topo, epoch0, bodies=True, site_sizes=sizes, config_text=text)
        origin = OriginServer(
            core, concurrency=max(1, o.workers), max_queue=o.max_queue, rng=random.Random(self.seed)
        )
        async with trio.open_nursery() as servers:
            legs = _Legs()
            await servers.start(legs.run)

            def to_origin(n: Any) -> ModelledUplink:
                pool = OriginPool(
                    "http://origin.invalid:80",
                    read_timeout=_READ_TIMEOUT,
                    open_stream=_memory_opener(servers, origin.http),
                )
                return ModelledUplink(
                    pool,
                    n.index,
                    n.uplink,
                    rec,
                    eng.site_index,
                    clock,
                    outages,
                    self.add_origin_busy,
                    legs=legs.nursery,
                )

            # Shield nodes: edge services whose origin is the origin, with their own
            # workers and service time; no client link (the edge's uplink is theirs).
            shield_servers: dict[int, HttpServer] = {}
            for n in eng.shield_nodes:
                self.cores[n.index] = node_core = build_shield_core(topo, n)
                service = EdgeService(node_core, to_origin(n), clock=now)
                await servers.start(service.run)
                edge = ModelledEdge(service.handle, n, no_link, clock, self.busy)
                shield_servers[n.index] = HttpServer(edge.handle, server_name=n.name)

            def make_uplink(n: Any) -> Any:
                shadow = self.shadows.get(n.name)
                uplink = plain_uplink(n)
                if shadow is None or self.cand_origin is None:
                    return uplink
                return _ShadowedUplink(uplink, shadow, self.cand_origin, now)

            def plain_uplink(n: Any) -> Any:
                if eng.shield_ring is None:
                    return to_origin(n)
                pools = {
                    i: OriginPool(
                        f"http://shield-{i}.invalid:80",
                        read_timeout=_READ_TIMEOUT,
                        open_stream=_memory_opener(servers, http),
                    )
                    for i, http in shield_servers.items()
                }
                return ShieldUplink(pools, eng.shield_ring, n.index, n.uplink, rec, eng.site_index, clock)

            crashes: dict[int, list[Any]] = {}  # engine node index -> its crashes
            for c, crashing in eng.crash_schedule():
                crashes.setdefault(crashing.index, []).append(c)
            gates: dict[int, _CrashableEdge] = {}
            members: dict[int, tuple[Any, OriginPool]] = {}
            for n in eng.nodes:
                if n.shield:
                    continue
                self.cores[n.index] = node_core = self.edge_core(n)
                link = eng.client_links[n.region]
                if n.index in crashes:
                    gate = gates[n.index] = _CrashableEdge(
                        n, link, clock, now, self.busy, make_uplink, topo.faults.client_timeout
                    )
                    await servers.start(gate.live, node_core)
                    handler = gate.handle
                else:
                    service = EdgeService(node_core, make_uplink(n), clock=now)
                    await servers.start(service.run)
                    handler = ModelledEdge(service.handle, n, link, clock, self.busy).handle
                http = HttpServer(handler, server_name=n.name)
                client = OriginPool(
                    f"http://{n.name}.edge.invalid:80",
                    read_timeout=_READ_TIMEOUT,
                    open_stream=_memory_opener(servers, http),
                )
                members[n.index] = (n, client)

            async def client_request(arrival: Any, n: Any, extra: float) -> None:
                # ``extra``: the region-to-region latency of a client failed over to
                # another region (the node's own client link is drawn in its handler)
                t0, si, ri = arrival.t, arrival.site, arrival.region
                retries = 0
                tried: list[Any] = []  # the nodes it timed out on (as the fast engine's)

                def failed(n: Any, retries: int) -> None:  # no answer; last sent to ``n``
                    home = ri if n.region != ri else -1
                    rec.add(t0, clock() - t0, 0.0, n.index, si, O_FAILED, 0, retries, home)

                while True:
                    if extra:
                        await trio.sleep(extra)
                    try:
                        resp = await members[n.index][1].request(
                            Request("GET", arrival.target, arrival.headers)
                        )
                    except OriginError:
                        n.conns -= 1
                        failed(n, retries)
                        return
                    n.conns -= 1
                    if resp.header(NO_ANSWER_HEADER) is not None:
                        # the node was down: the client gave up on it, and tries another
                        # of its region, else of the nearest region that has one
                        retries += 1
                        extra = 0.0
                        tried.append(n)
                        other = eng._choose(ri, arrival.target, tried)
                        if other is None:
                            found = eng.failover(ri, arrival.target, tried)
                            if found is not None:
                                other, extra = found
                        if other is None:
                            failed(n, retries)
                            return
                        n = other
                        n.conns += 1
                        continue
                    if resp.header(CRASHED_HEADER) is not None:
                        failed(n, retries)
                        return
                    if extra:
                        await trio.sleep(extra)
                    code, queued = outcome_code(resp)
                    # a failover: answered by a node of another region
                    home = ri if n.region != ri else -1
                    rec.add(t0, clock() - t0, queued, n.index, si, code, resp.size, retries, home)
                    return

            deploys = sorted(topo.traffic.deploys, key=lambda d: d.at)
            # Crashes run to their restarts, also past the last request (as the fast
            # engine's do): the faults nursery waits for them, in virtual time.
            async with trio.open_nursery() as faults, trio.open_nursery() as clients:
                for index, node_crashes in crashes.items():
                    for c in node_crashes:
                        faults.start_soon(self._crash, c, gates[index], servers)
                stream = self.stream
                report_at = _PROGRESS_EVERY
                while True:
                    t_next = stream.peek()
                    if deploys and deploys[0].at <= t_next and deploys[0].at < eng.end:
                        dep = deploys.pop(0)
                        await trio.sleep_until(clock.t0 + dep.at)
                        self._deploy(dep, core, now(), servers)
                        continue
                    arr = stream.next()
                    if arr is None:
                        break
                    await trio.sleep_until(clock.t0 + arr.t)
                    self.reached = arr.t
                    self.arrivals += 1
                    n = stream.choose(arr)
                    extra = 0.0
                    if n is None:
                        found = eng.failover(arr.region, arr.target, None)
                        if found is not None:
                            n, extra = found
                    if n is None:
                        first = eng.region_nodes[arr.region][0].index
                        rec.add(arr.t, 0.0, 0.0, first, arr.site, O_FAILED, 0, 0)
                    else:
                        n.conns += 1
                        clients.start_soon(client_request, arr, n, extra)
                    if self.arrivals >= report_at and progress is not None:
                        report_at += _PROGRESS_EVERY
                        progress(arr.t, eng.end, self.arrivals)
            # the fetches still on their way to the origin (of crashed nodes) get there
            await legs.drain()
            for _, pool in members.values():
                await pool.aclose()
            servers.cancel_scope.cancel()
        if progress is not None:
            progress(eng.end, eng.end, self.arrivals)

    async def _crash(self, crash: Any, gate: _CrashableEdge, nursery: Any) -> None:
        """Carry out one ``[[faults.crashes]]`` as the capacity engine does: the node's
        life ends (the requests in it get no answer), the region's balancer drops it
        after the health check delay, and it restarts with a cold cache after
        ``down_for``."""
        import trio

        eng, n, t0 = self.eng, gate.node, gate.t0
        await trio.sleep_until(t0 + crash.at)
        n.crashes += 1
        failed, epoch = gate.crash()
        self.cores[n.index] = self.edge_core(n)  # the cache is gone (the shadow stays)
        self.events.append(
            {
                "at": crash.at,
                "kind": "node_crash",
                "node": n.name,
                "failed_in_flight": failed,
                "restart": crash.at + crash.down_for,
            }
        )
        steps = sorted([(self.topo.faults.health_check_delay, 0), (crash.down_for, 1)])
        for after, what in steps:
            await trio.sleep_until(t0 + crash.at + after)
            if gate.epoch != epoch:  # crashed again meanwhile: that crash decides
                return
            if what == 0:
                if gate.life is None:
                    eng.node_down(n)
            else:
                await nursery.start(gate.live, self.cores[n.index])
                eng.node_up(n)
                self.events.append({"at": crash.at + crash.down_for, "kind": "node_restart", "node": n.name})

    def _deploy(self, dep: Any, core: Any, now: float, nursery: Any) -> None:
        import trio

        host = dep.site.lower()
        opts = self.stream.publish_deploy(dep.site, dep.new_fraction, now)
        d = core.publish(core.prepare_deploy(host, options=opts), now)
        cand = self.cand_origin
        if cand is not None:  # the candidate origin gets the same deploy
            cand.publish(cand.prepare_deploy(host, options=opts), now)
        purges = []
        for n in self.eng.nodes:  # in the engine's order: one draw per node, as it draws
            delay = dep.propagation * self.eng.u_misc()
            purges.append(dep.at + delay)

            async def purge(index: int = n.index, delay: float = delay) -> None:
                await trio.sleep(delay)
                # the core of then (a crash replaces it)
                self.cores[index].purge_deploy(host, d.created)

            nursery.start_soon(purge)
        self.events.append(
            {
                "at": dep.at,
                "kind": "deploy",
                "site": host,
                "deploy_id": d.id,
                "new_fraction": dep.new_fraction,
                "purged_by": max(purges) if purges else dep.at,
            }
        )


class _Legs:
    """The nursery where the edges' fetches travel to the origin and are answered
    (:class:`~edgesim._modelled.ModelledUplink`'s ``legs``), apart from the nodes' own
    tasks, so that a node's crash does not stop a fetch it has sent; :meth:`drain` waits
    for the last of them at the end of the run."""

    def __init__(self) -> None:
        import trio

        self.nursery: Any = None
        self._idle = trio.CancelScope()
        self._done = trio.Event()

    async def run(self, *, task_status: Any) -> None:
        import trio

        try:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                with self._idle:
                    task_status.started()
                    await trio.sleep_forever()
        finally:
            self._done.set()

    async def drain(self) -> None:
        """Wait until every fetch started is done (no new ones may start)."""
        self._idle.cancel()
        await self._done.wait()


class _ShadowedUplink:
    """An edge node's uplink (``edgesim.serve.Origin``) whose answers are compared with
    a ``[shadow]`` candidate origin's: when the node's origin (or shield) answers, the
    candidate ``OriginCore`` is asked the same request at that virtual instant, through
    the shadow's guard (:meth:`edgesim.shadow.Shadow.origin`, the capacity engine's
    hook), and the shadow decides which answer the node gets. Failed fetches are not
    compared (the capacity engine's aren't either)."""

    def __init__(self, uplink: Any, shadow: Any, candidate: Any, now: Callable[[], float]) -> None:
        self._uplink = uplink
        self._shadow = shadow
        self._candidate = candidate
        self._now = now

    async def request(self, req: Any, *, on_interim: Any = None) -> Any:
        if on_interim is None:
            resp = await self._uplink.request(req)
        else:
            resp = await self._uplink.request(req, on_interim=on_interim)
        t = self._now()
        return self._shadow.origin(req, resp, partial(self._candidate.handle, now=t), t)

    async def aclose(self) -> None:
        await self._uplink.aclose()


# Marks of the two ways a client gets no answer from a crashing node (a modelling
# device, as the queue header is: the client driver records them).
NO_ANSWER_HEADER = "x-edgesim-no-answer"  # down when the request came: the client timed out
CRASHED_HEADER = "x-edgesim-crashed"  # crashed with the request in it


class _Life:
    """One life of a crashing node, from a start to its crash: the cancel scope of its
    edge service and the requests being served."""

    __slots__ = ("edge", "requests", "scope")

    def __init__(self, scope: Any, edge: Any) -> None:
        self.scope = scope
        self.edge = edge
        self.requests: set[Any] = set()


class _CrashableEdge:
    """The HTTP handler of an edge node that crashes (``[[faults.crashes]]``).

    While the node is up, a request that reaches it (after the client link) is served
    by its current life: a core, an :class:`~edgesim.serve.EdgeService`, the modelled
    CPU (:class:`~edgesim._modelled.ModelledEdge`) and an uplink. :meth:`crash` cancels
    all of that life at once: requests queued or in service with their upstream fetches
    and joins, background revalidations, the uplink's connections. Their clients get no
    answer; a request that reaches the node while it is down gets none either, and its
    client gives up ``client_timeout`` seconds after sending it. The client driver sees
    these as responses marked :data:`CRASHED_HEADER` and :data:`NO_ANSWER_HEADER`.
    :meth:`live` starts a life (the first, and each restart with a cold core).
    """

    def __init__(
        self,
        node: Any,
        link: Callable[[float], float],
        clock: Any,
        now: Callable[[], float],
        busy: Callable[[float, float], float],
        make_uplink: Callable[[Any], Any],
        client_timeout: float,
    ) -> None:
        self.node = node
        self.t0: float = clock.t0
        self.life: _Life | None = None
        self.epoch = 0
        self._link = link
        self._clock = clock
        self._now = now
        self._busy = busy
        self._make_uplink = make_uplink
        self._timeout = client_timeout

    async def live(self, core: Any, *, task_status: Any) -> None:
        """Run one life of the node on ``core`` until :meth:`crash` (or the run) ends it."""
        import trio

        from edgesim._modelled import ModelledEdge
        from edgesim.serve import EdgeService

        with trio.CancelScope() as scope:
            service = EdgeService(core, self._make_uplink(self.node), clock=self._now)
            async with trio.open_nursery() as nursery:
                await nursery.start(service.run)
                edge = ModelledEdge(service.handle, self.node, self._link, self._clock, self._busy)
                self.life = _Life(scope, edge)
                task_status.started()

    def crash(self) -> tuple[int, int]:
        """End the current life; returns the requests it was serving and the new epoch."""
        self.epoch += 1
        life, self.life = self.life, None
        if life is None:
            return 0, self.epoch
        for cs in life.requests:
            cs.cancel()
        life.scope.cancel()
        return len(life.requests), self.epoch

    async def handle(self, req: Any) -> Any:
        import trio

        from edgesim.http import Response

        clock = self._clock
        t_sent = clock()
        await trio.sleep(self._link(t_sent))
        life = self.life
        if life is None:
            await trio.sleep_until(self.t0 + t_sent + self._timeout)
            return Response(504, [(NO_ANSWER_HEADER, "1")], b"")
        served = None
        with trio.CancelScope() as cs:
            life.requests.add(cs)
            try:
                served = await life.edge.serve(req)
            finally:
                life.requests.discard(cs)
        if served is None:
            await trio.sleep(self._link(clock()))
            return Response(502, [(CRASHED_HEADER, "1")], b"")
        return await life.edge.reply(*served)


def simulate_trio(
    topology: Topology,
    *,
    seed: int | None = None,
    progress: Callable[[float, float, int], None] | None = None,
    stop_at: float | None = None,
) -> RunResult:
    """Run ``topology`` through the real Trio shells on Trio's mock clock.

    Args:
        topology: the validated topology.
        seed: the run's seed (default: the topology's); the arrivals are the ones the
            capacity engine draws for this seed.
        progress: called as ``progress(virtual_time, end_time, requests)`` now and
            then, and once at the end.
        stop_at: end client arrivals here (default: the traffic's duration).

    Returns:
        The :class:`~edgesim.metrics.RunResult`, shaped as the capacity engine's
        (``meta.engine`` is ``"trio"``). Ctrl-C returns what was recorded so far,
        marked ``meta.partial``.

    Error handling:
        ``ValueError`` for faults or deploys naming unknown nodes or sites, as
        :func:`edgesim.engine.simulate`.
    """
    import trio.testing

    from edgesim._modelled import run_until_interrupted

    s = topology.seed if seed is None else seed
    wall0 = time.perf_counter()
    run = _Run(topology, s, stop_at)
    run.attach_shadows()
    try:
        clock = trio.testing.MockClock(autojump_threshold=0)
        was_partial = run_until_interrupted(run.main, progress, clock=clock)
    finally:
        for sh in run.shadows.values():
            sh.close()  # the guards' worker threads; the counters stay readable
    wall = time.perf_counter() - wall0
    eng = run.eng
    end, simulated = eng.end, run.arrivals
    if was_partial:
        # As the fast engine's (``_Engine.interrupted``): the report covers the client
        # requests recorded by the interruption; those still in flight are left out of
        # ``simulated_requests`` too, or the time series would not add up to it.
        end, simulated = max(run.reached, 1e-9), run.rec.requests
    timing = {
        "wall_seconds": wall,
        "simulated_requests_per_second": run.arrivals / wall if wall > 0 else 0.0,
    }
    report = run_report(
        topology,
        run.rec,
        run_meta(topology, "trio", s, eng.epoch0, end, simulated, was_partial),
        nodes=node_rows(topology, eng.nodes, lambda n: run.cores.get(n.index, n.core).cache.statistics()),
        sites=[m.host for m in eng.sites],
        origin={"workers": max(1, topology.origin.workers), "busy": run.origin_busy},
        events=run.events,
        shadows=run.shadows,
        timing=timing,
    )
    return RunResult(report, timing)
