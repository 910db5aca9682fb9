"""The edge node's Trio shell: real sockets (or memory streams) around the sans-IO core.

``EdgeService`` turns each HTTP request into steps of :class:`edgesim.node.EdgeNode` and
carries them out: origin fetches through a pooled HTTP/1.1 client, waiting on another
client's fetch (request collapsing), and background revalidations. It holds no policy.

Time: the node is given ``clock()`` (wall-clock seconds by default). Tests on Trio's
mock clock pass ``clock=trio.current_time`` so that freshness follows virtual time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import trio

from edgesim._client import InterimCallback, OriginConnectError, OriginError, OriginPool, OriginTimeout
from edgesim._server import HttpServer, Limits, interim_sender
from edgesim.cache import HttpCache
from edgesim.http import Request, Response
from edgesim.node import EdgeConfig, EdgeNode, Fetch, Join, Reply

log = logging.getLogger("edgesim.serve")

# Seconds requests being handled get to finish after SIGTERM/SIGINT (edgesim edge
# serve), as the origin's; an origin fetch's own read timeout is 30 s too.
DRAIN_TIMEOUT = 30.0


class Origin(Protocol):
    """Where the edge sends its origin requests (a pool, or an embedded origin core)."""

    async def request(self, req: Request, *, on_interim: InterimCallback | None = None) -> Response:
        """The origin's final response to ``req``; 1xx responses before it go to
        ``on_interim`` (status, headers) when given."""
        ...

    async def aclose(self) -> None: ...


class EmbeddedOrigin:
    """The origin core running inside the edge process (``--origin embedded:SITES_DIR``)."""

    def __init__(self, sites_dir: str | Path, clock: Callable[[], float] = time.time) -> None:
        from origin.core import OriginCore

        self.core = OriginCore.from_directory(Path(sites_dir), now=clock())
        self._clock = clock

    async def request(self, req: Request, *, on_interim: InterimCallback | None = None) -> Response:
        await trio.lowlevel.checkpoint()  # the origin core sends no interim responses
        return self.core.handle(req, self._clock())

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


class EdgeService:
    """Runs an :class:`EdgeNode` for an HTTP server.

    Args:
        node: the sans-IO edge node.
        origin: where misses go.
        clock: seconds for the node's ``now``.

    Resource handling:
        :meth:`run` owns a nursery for background revalidations; it must be running
        (``await nursery.start(service.run)``) before requests are handled. The origin
        is closed when :meth:`run` ends.
    """

    def __init__(self, node: EdgeNode, origin: Origin, *, clock: Callable[[], float] = time.time) -> None:
        self.node = node
        self.origin = origin
        self.clock = clock
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            with trio.CancelScope(shield=True):
                await self.origin.aclose()

    async def handle(self, req: Request) -> Response:
        """Answer one client request (the HTTP server's handler)."""
        node, clock = self.node, self.clock
        shadow = node.shadow
        if shadow is not None:
            shadow.begin()
        step = node.handle(req, clock())
        while True:
            if isinstance(step, Reply):
                if step.background is not None and self._nursery is not None:
                    self._nursery.start_soon(self._background, step.background)
                return step.response if shadow is None else shadow.finish(step.response)
            if isinstance(step, Fetch):
                done = step.token = trio.Event()
                # 1xx responses (103 Early Hints) from the origin go to this client
                # only: it caused the fetch. Collapsed joiners wait on ``done`` and get
                # just the final response; a manifest fetch's hints are about the
                # manifest, not this request. Nothing stores them (the pool doesn't
                # return them), so they are never served from cache.
                relay = interim_sender() if step.kind != "manifest" else None
                try:
                    resp, err = await self._fetch(step.request, relay)
                    step = node.complete(step, resp, err, clock())
                finally:
                    done.set()
            elif isinstance(step, Join):
                event = step.fetch.token
                if event is not None:
                    await event.wait()
                step = node.joined(step, clock())
            else:  # pragma: no cover - the node returns only these three
                raise TypeError(f"unexpected step {step!r}")

    async def _background(self, fetch: Fetch) -> None:
        done = fetch.token = trio.Event()
        try:
            resp, err = await self._fetch(fetch.request)
            self.node.complete(fetch, resp, err, self.clock())
        except Exception:  # a failed background revalidation never hurts anyone
            log.exception("background revalidation failed")
        finally:
            done.set()

    async def _fetch(
        self, req: Request, on_interim: InterimCallback | None = None
    ) -> tuple[Response | None, str | None]:
        try:
            if on_interim is None:
                return await self.origin.request(req), None
            return await self.origin.request(req, on_interim=on_interim), None
        except OriginConnectError as exc:
            log.warning("origin connect failed: %s", exc)
            return None, "connect"
        except OriginTimeout as exc:
            log.warning("origin timed out: %s", exc)
            return None, "timeout"
        except OriginError as exc:
            log.warning("origin error: %s", exc)
            return None, "protocol"


def make_origin(spec: str, *, connect_timeout: float = 5.0, read_timeout: float = 30.0) -> Origin:
    """``http://host:port`` (a pool) or ``embedded:SITES_DIR`` (the origin core in-process)."""
    if spec.startswith("embedded:"):
        return EmbeddedOrigin(spec.split(":", 1)[1])
    return OriginPool(spec, connect_timeout=connect_timeout, read_timeout=read_timeout)


async def serve_edge(
    node: EdgeNode,
    origin: Origin,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    limits: Limits | None = None,
    clock: Callable[[], float] = time.time,
    signals: bool = False,
    task_status: Any = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve an edge node on ``host:port`` until cancelled (or, with ``signals``, shut
    down by SIGTERM/SIGINT, which close idle connections at once and drain in-flight
    requests first, for up to :data:`DRAIN_TIMEOUT` seconds; a second signal cancels
    what is left; main thread only).

    ``task_status.started(port)`` reports the bound port. ``signals`` is for a process
    that serves one node (``edgesim edge serve``), as the origin's ``serve(signals=)``:
    several nodes in one process each took the signals, and as they stopped in any
    order the last handler restored could be a finished run's, so that a later Ctrl-C
    raised ``RunFinishedError`` instead of ``KeyboardInterrupt``.
    """
    service = EdgeService(node, origin, clock=clock)
    server = HttpServer(service.handle, limits=limits or Limits(), server_name=node.config.name)
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        if signals:
            nursery.start_soon(_shutdown_on_signal, server, nursery.cancel_scope)
        async with trio.open_nursery() as serving:  # ends when serve_tcp has drained
            bound = await serving.start(server.serve_tcp, host, port)
            task_status.started(bound)
        nursery.cancel_scope.cancel()


async def _shutdown_on_signal(server: HttpServer, scope: trio.CancelScope) -> None:
    """The first SIGTERM/SIGINT drains the server, a second cancels ``scope`` (as the
    origin does): a second Ctrl-C must not have to wait for a slow origin."""
    import signal

    try:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            count = 0
            async for signum in signals:
                count += 1
                if count == 1:
                    log.info("%s: draining in-flight requests", signal.Signals(signum).name)
                    server.begin_shutdown(drain_timeout=DRAIN_TIMEOUT)
                else:
                    log.warning("second signal: cancelling in-flight requests")
                    scope.cancel()
                    return
    except RuntimeError:  # not in the main thread: no signal handling
        await trio.sleep_forever()


def build_node(
    *,
    name: str = "edge",
    memory_bytes: int = 256 * 2**20,
    disk: tuple[str, int] | None = None,
    rules: Mapping[str, str | Sequence[str]] | None = None,
    manifests: bool = True,
) -> EdgeNode:
    """An edge node with a memory tier and an optional diskcache tier.

    ``rules``: a site's rule file, or its files (a ``_redirects`` first, then a
    ``netlify.toml``), by host."""
    from edgesim.cache import DiskStore, MemoryStore
    from edgesim.shadow import compile_rule_files

    memory = MemoryStore(memory_bytes)
    disk_store = DiskStore(disk[0], disk[1]) if disk else None
    compiled = {h: compile_rule_files([f] if isinstance(f, str) else f) for h, f in (rules or {}).items()}
    cfg = EdgeConfig(name=name, manifests=manifests, rules=compiled)
    return EdgeNode(HttpCache(memory, disk_store), cfg)


Handler = Callable[[Request], Awaitable[Response]]
