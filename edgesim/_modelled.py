"""The capacity model injected into the real Trio shells (Trio engine and live mode).

The capacity engine models link latency, per-node CPU (``workers`` slots and a service
time per request) and the origin's queue; the shells have none of that on their own.
These wrappers add it around the real parts, so that the shells run the same model:

* :class:`ModelledEdge` wraps an :class:`~edgesim.serve.EdgeService` handler: the
  client->edge latency, a FIFO wait for one of the node's ``workers`` slots, the
  service time, the real handler, then the edge->client latency plus transfer time
  (size / egress). It tells the client what the wait was and whether the request
  collapsed onto another's fill, in response headers (:data:`QUEUE_HEADER`,
  :data:`COLLAPSED_HEADER`), since the client records the request.
* :class:`ModelledUplink` is the edge's :class:`~edgesim.serve.Origin`: it records each
  upstream fetch and what the origin answered (the report's fetch and origin rows),
  sleeps the edge<->origin latency each way, and refuses requests during a modelled
  origin outage. A shield node's origin is one too.
* :class:`ShieldUplink` is an edge's :class:`~edgesim.serve.Origin` when the topology
  has a shield tier: each fetch goes to the shield node that the engine's consistent
  hash of site + URL picks (a shield is an :class:`~edgesim.serve.EdgeService` behind a
  :class:`ModelledEdge` with no client link), with the edge<->shield latency each way.

Time is ``trio.current_time() - t0`` seconds: virtual under the Trio engine's mock
clock, wall-clock in live mode. Link latencies, service times and the balancers come
from the capacity engine's own state (:class:`edgesim._traffic.ArrivalStream`).
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Final

import trio

from edgesim._client import InterimCallback, OriginConnectError, OriginError
from edgesim.cache import HttpCache, MemoryStore
from edgesim.engine import ring_owner
from edgesim.errors import single_exception
from edgesim.http import Request, Response
from edgesim.metrics import O_COLLAPSED, O_ERROR, O_HIT, OUTCOME_CODES, Recorder
from edgesim.node import EdgeConfig, EdgeNode, Join, Step
from edgesim.topology import Topology

__all__ = [
    "COLLAPSED_HEADER",
    "QUEUE_HEADER",
    "CollapseAwareNode",
    "ModelledEdge",
    "ModelledUplink",
    "ShieldUplink",
    "build_edge_core",
    "build_shield_core",
    "outcome_code",
]

# Seconds the request waited for a worker slot (edge) plus for the origin's queue.
QUEUE_HEADER: Final = "x-edgesim-queued"
# Present when the request joined another request's origin fetch.
COLLAPSED_HEADER: Final = "x-edgesim-collapsed"
# The origin's header giving its queue wait (origin/server.py QUEUE_WAIT_HEADER).
ORIGIN_WAIT_HEADER: Final = "x-edgesim-queue-wait"
_RESERVED: Final = "/.edgesim/"


class _RequestNotes:
    """What happened to one client request inside the edge (per handler task)."""

    __slots__ = ("collapsed", "origin_wait")

    def __init__(self) -> None:
        self.collapsed = False
        self.origin_wait = 0.0


_NOTES: contextvars.ContextVar[_RequestNotes | None] = contextvars.ContextVar("edgesim_notes", default=None)


class CollapseAwareNode(EdgeNode):
    """An :class:`EdgeNode` that notes when a client request joins another's content
    fetch (the engine's "collapsed" outcome); behaviour is unchanged."""

    def joined(self, join: Join, now: float) -> Step:
        notes = _NOTES.get()
        if notes is not None and join.fetch.kind != "manifest":
            notes.collapsed = True
        return super().joined(join, now)


def build_edge_core(topology: Topology, node: Any) -> CollapseAwareNode:
    """The edge core of the engine's node ``node``: the engine's memory and disk tiers
    (size, eviction, admission), holding real bodies (``MemoryStore`` for both)."""
    g = topology.regions[node.region].edge
    store = partial(MemoryStore, eviction=g.eviction, max_object_bytes=g.max_object or None)
    disk = store(g.disk_cache) if g.disk_cache > 0 else None
    return CollapseAwareNode(HttpCache(store(g.memory_cache), disk), EdgeConfig(name=node.name))


def build_shield_core(topology: Topology, node: Any) -> CollapseAwareNode:
    """The core of the engine's shield node ``node``: the ``[shield]`` memory and disk
    tiers (default eviction, no object size limit, as the engine's), holding real bodies."""
    sh = topology.shield
    assert sh is not None
    disk = MemoryStore(sh.disk_cache) if sh.disk_cache > 0 else None
    return CollapseAwareNode(
        HttpCache(MemoryStore(sh.memory_cache), disk), EdgeConfig(name=node.name, shield=True)
    )


def outcome_code(resp: Response, queued: float | None = None) -> tuple[int, float]:
    """The report's outcome code of a client response (from ``X-Cache``, the status and
    :data:`COLLAPSED_HEADER`) and its queueing seconds (:data:`QUEUE_HEADER`)."""
    code = OUTCOME_CODES.get(resp.header("x-cache") or "", O_ERROR)
    if resp.status >= 500:
        code = O_ERROR
    elif code == O_HIT and resp.header(COLLAPSED_HEADER) is not None:
        code = O_COLLAPSED
    q = resp.header(QUEUE_HEADER)
    return code, float(q) if q else 0.0


def _fetch_kind(req: Request) -> str:
    """The report's kind of an upstream fetch: manifest, revalidate or fill."""
    if req.path.startswith(_RESERVED):
        return "manifest"
    if req.header("if-none-match") is not None or req.header("if-modified-since") is not None:
        return "revalidate"
    return "fill"


class _Clock:
    """Seconds since the run started, on Trio's clock."""

    __slots__ = ("t0",)

    def __init__(self, t0: float) -> None:
        self.t0 = t0

    def __call__(self) -> float:
        return trio.current_time() - self.t0


def no_link(t: float) -> float:
    """The client link of a shield node (for :class:`ModelledEdge`): none, the edge's
    uplink carries the latency."""
    return 0.0


class ModelledEdge:
    """The modelled CPU and client link of one edge node around its real handler.

    Args:
        handler: the node's :meth:`EdgeService.handle`.
        node: the engine's model of the node (``workers``, ``service`` sampler,
            ``egress``; ``busy_steady`` and ``max_queue`` are updated here).
        client_link: the region's client link: ``link(t)`` draws a one-way latency.
        clock: run seconds.
        busy: ``busy(t, s)``: the part of [t, t + s) inside the steady-state window.
    """

    def __init__(
        self,
        handler: Callable[[Request], Awaitable[Response]],
        node: Any,
        client_link: Callable[[float], float],
        clock: Callable[[], float],
        busy: Callable[[float, float], float],
    ) -> None:
        self._handler = handler
        self._node = node
        self._link = client_link
        self._clock = clock
        self._busy = busy
        self._slots = trio.Semaphore(max(1, node.workers))  # FIFO, as the engine's queue
        self._waiting = 0

    async def handle(self, req: Request) -> Response:
        await trio.sleep(self._link(self._clock()))
        return await self.reply(*await self.serve(req))

    async def serve(self, req: Request) -> tuple[Response, float, bool]:
        """The node's part of a request that has reached it: the worker slot, the
        service time, the real handler. Returns the handler's response, the seconds the
        request queued (for a worker and upstream) and whether it joined another's fill."""
        clock, node = self._clock, self._node
        notes = _RequestNotes()
        token = _NOTES.set(notes)
        try:
            t_in = clock()
            waits = self._slots.value == 0
            if waits:
                self._waiting += 1
                node.max_queue = max(node.max_queue, self._waiting)
            async with self._slots:
                if waits:
                    self._waiting -= 1
                t = clock()
                s = node.service()
                node.busy_steady += self._busy(t, s)
                await trio.sleep(s)
            queued = t - t_in
            resp = await self._handler(req)
        finally:
            _NOTES.reset(token)
        return resp, queued + notes.origin_wait, notes.collapsed

    async def reply(self, resp: Response, queued: float, collapsed: bool) -> Response:
        """The way back to the client: link latency plus transfer time; the response
        carries the model's headers."""
        node = self._node
        back = self._link(self._clock())
        if node.egress:
            back += resp.size / node.egress
        await trio.sleep(back)
        extra = [(QUEUE_HEADER, f"{queued:.6f}")]
        if collapsed:
            extra.append((COLLAPSED_HEADER, "1"))
        # A new Response: the handler's may share its header list with a cache entry.
        return Response(resp.status, [*resp.headers, *extra], resp.body, resp.size)


class ModelledUplink:
    """An edge node's origin (:class:`edgesim.serve.Origin`) with the modelled link.

    Args:
        origin: the real client (an :class:`~edgesim._client.OriginPool`).
        node_index: the node's index in the report.
        uplink: the region's edge->origin link: ``link(t)`` draws a one-way latency.
        rec: where fetch and origin rows go.
        site_index: host -> site index.
        clock: run seconds.
        outages: (start, end) run seconds of modelled origin outages.
        origin_busy: adds steady-state origin busy seconds ``(t, s)``.
        legs: where each fetch's way to the origin and the origin's answer run (the
            Trio engine's), apart from the node: a fetch that has left a node that then
            crashes still reaches the origin, is answered and is counted there, as in
            the capacity engine (only its way back is lost). None: in the caller's task.
    """

    def __init__(
        self,
        origin: Any,
        node_index: int,
        uplink: Callable[[float], float],
        rec: Recorder,
        site_index: dict[str, int],
        clock: Callable[[], float],
        outages: list[tuple[float, float]],
        origin_busy: Callable[[float, float], None],
        legs: trio.Nursery | None = None,
    ) -> None:
        self._origin = origin
        self._node = node_index
        self._uplink = uplink
        self._rec = rec
        self._sites = site_index
        self._clock = clock
        self._outages = outages
        self._origin_busy = origin_busy
        self._legs = legs
        self._in_flight = 0  # legs running (the pool closes after the last)
        self._closing = False

    async def request(self, req: Request, *, on_interim: InterimCallback | None = None) -> Response:
        clock, rec = self._clock, self._rec
        t = clock()
        si = self._sites.get((req.header("host") or "").lower().split(":")[0], -1)
        row = rec.fetch(t, self._node, si, _fetch_kind(req))
        up = self._uplink(t)
        if self._legs is None:
            leg = await self._leg(req, si, up, on_interim)
        else:
            leg = await self._detached(req, si, up, on_interim)
        resp, wait, back = leg
        await trio.sleep(back)
        if isinstance(resp, BaseException):
            rec.fetch_failed(row)
            raise resp
        rec.fetched(row, resp.size)
        notes = _NOTES.get()
        if notes is not None:
            notes.origin_wait += wait
        return resp

    async def _detached(
        self, req: Request, si: int, up: float, on_interim: InterimCallback | None
    ) -> tuple[Response | OriginError, float, float]:
        """:meth:`_leg` in the ``legs`` nursery; the caller waits for its outcome, and
        if the caller is cancelled (its node crashed), the leg goes on without it."""
        assert self._legs is not None
        done = trio.Event()
        out: list[tuple[Response | OriginError, float, float]] = []
        waiting = [True]

        async def interim(status: int, headers: list[tuple[str, str]]) -> object:
            # 1xx go to the client while it waits (not once its node crashed)
            return await on_interim(status, headers) if on_interim is not None and waiting[0] else None

        async def leg() -> None:
            try:
                out.append(await self._leg(req, si, up, interim if on_interim is not None else None))
            finally:
                done.set()
                self._in_flight -= 1
                if self._closing and not self._in_flight:
                    await self._origin.aclose()

        self._in_flight += 1
        self._legs.start_soon(leg)
        try:
            await done.wait()
        finally:
            waiting[0] = False
        return out[0]

    async def _leg(
        self, req: Request, si: int, up: float, on_interim: InterimCallback | None
    ) -> tuple[Response | OriginError, float, float]:
        """The fetch's way up (``up`` seconds) and the origin's answer, recorded as the
        origin's row: the answer (or the error), the origin's queue wait and the latency
        of the way back."""
        clock, rec = self._clock, self._rec
        await trio.sleep(up)
        t_at = clock()
        if any(a <= t_at < b for a, b in self._outages):
            rec.origin(t_at, si, -1, 0, 0.0)
            return OriginConnectError("origin outage (modelled)"), 0.0, self._uplink(t_at)
        try:
            if on_interim is None:
                resp: Response = await self._origin.request(req)
            else:
                resp = await self._origin.request(req, on_interim=on_interim)
        except OriginError as exc:
            return exc, 0.0, 0.0
        t_out = clock()
        wait_h = resp.header(ORIGIN_WAIT_HEADER)
        wait = float(wait_h) if wait_h else 0.0
        rejected = resp.status == 503 and resp.header("retry-after") is not None and wait_h is None
        rec.origin(t_out, si, resp.status, resp.size, -1.0 if rejected else wait)
        if not rejected:
            self._origin_busy(t_at + wait, max(0.0, t_out - t_at - wait))
        return resp, wait, self._uplink(t_out)

    async def aclose(self) -> None:
        """Close the pool, once the legs still on their way are done."""
        self._closing = True
        if not self._in_flight:
            await self._origin.aclose()


class ShieldUplink:
    """An edge node's origin (:class:`edgesim.serve.Origin`) when there is a shield tier.

    Each fetch goes to one shield node, chosen by the capacity engine's own function
    (:func:`edgesim.engine.ring_owner` of site + request target on the shield ring),
    after the edge->shield latency;
    the answer comes back after the same link's latency. It records the edge's fetch
    rows, with the shield's answer (the shield's own origin fetches are its
    :class:`ModelledUplink`'s). The
    shield's answer says how long the request queued there (its worker queue plus its
    origin's queue): that counts as this request's upstream wait, and the shield's
    model headers are taken off before the edge caches the response.

    Args:
        shields: the real clients (:class:`~edgesim._client.OriginPool`) of the shield
            nodes, by the engine's node index.
        ring: the engine's shield ring: sorted hash points and the owning nodes.
        node_index: the edge node's index in the report.
        uplink: the edge's region link: ``link(t)`` draws a one-way latency.
        rec: where fetch rows go.
        site_index: host -> site index.
        clock: run seconds.
    """

    def __init__(
        self,
        shields: dict[int, Any],
        ring: tuple[list[int], list[Any]],
        node_index: int,
        uplink: Callable[[float], float],
        rec: Recorder,
        site_index: dict[str, int],
        clock: Callable[[], float],
    ) -> None:
        self._shields = shields
        self._ring = ring
        self._node = node_index
        self._uplink = uplink
        self._rec = rec
        self._sites = site_index
        self._clock = clock

    def shield_for(self, req: Request) -> int:
        """The engine index of the shield node that serves ``req``."""
        return int(ring_owner(self._ring, req.host, req.target).index)

    async def request(self, req: Request, *, on_interim: InterimCallback | None = None) -> Response:
        clock, rec = self._clock, self._rec
        t = clock()
        row = rec.fetch(t, self._node, self._sites.get(req.host, -1), _fetch_kind(req))
        shield = self.shield_for(req)
        pool = self._shields[shield]
        await trio.sleep(self._uplink(t))
        try:
            if on_interim is None:
                resp: Response = await pool.request(req)
            else:
                resp = await pool.request(req, on_interim=on_interim)
        except OriginError:
            rec.fetch_failed(row)
            raise
        queued = resp.header(QUEUE_HEADER)
        code, _ = outcome_code(resp)
        headers = [(k, v) for k, v in resp.headers if k != QUEUE_HEADER and k != COLLAPSED_HEADER]
        await trio.sleep(self._uplink(clock()))
        rec.fetched(row, resp.size)
        rec.shield_answer(row, shield, code, clock() - t)
        notes = _NOTES.get()
        if notes is not None and queued:
            notes.origin_wait += float(queued)
        return Response(resp.status, headers, resp.body, resp.size)

    async def aclose(self) -> None:
        for pool in self._shields.values():
            await pool.aclose()


def run_until_interrupted(fn: Callable[..., Awaitable[None]], *args: Any, **kwargs: Any) -> bool:
    """``trio.run(fn, *args, **kwargs)``; True when Ctrl-C stopped it (KeyboardInterrupt,
    also inside exception groups), or SIGTERM or SIGHUP (:mod:`edgesim._signals`), so the
    caller can report what it has as partial.

    Any other failure is raised unwrapped when it is a group's only exception.
    """
    # Origin errors are modelled events here (outages, a refused 503): the shell's
    # per-request warnings would drown the terminal; the report counts them instead.
    serve_log = logging.getLogger("edgesim.serve")
    level = serve_log.level
    serve_log.setLevel(logging.ERROR)
    from edgesim._signals import stoppable

    try:
        trio.run(stoppable, fn, *args, **kwargs)
    except KeyboardInterrupt:
        return True
    except BaseExceptionGroup as group:
        if group.subgroup(KeyboardInterrupt) is not None:
            return True
        raise single_exception(group) from None
    finally:
        serve_log.setLevel(level)
    return False
