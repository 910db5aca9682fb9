"""The origin's thin Trio shell: HTTP on loopback, modelled load, signals.

Everything an answer says comes from :class:`origin.core.OriginCore`; this module only
adds what needs a clock or an event loop:

* wall-clock ``now`` (``time.time()``: Last-Modified and Date are calendar times);
* the concurrency limits of a loaded origin: an origin-wide ``trio.Semaphore`` and one
  per site with ``[load] concurrency``; a request that finds no free slot waits in
  the queue (counted in ``core.stats`` and reported by ``/.edgesim/health``), or gets
  503 when ``max_queue`` requests already wait;
* the modelled service time: ``await trio.sleep(core.service_time(...))`` while holding
  the slots;
* deploys built in a worker thread (reading a folder and compiling rules can take a
  while), published on the event loop, one at a time;
* SIGTERM / SIGINT: stop accepting, let in-flight requests finish, exit (a second signal
  cancels what is left).

Reserved endpoints (``/.edgesim/...``) bypass the queue and the service time, so health
checks answer even when the origin is saturated.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import random
import signal
import sys
import time
from collections.abc import Callable, Sequence

import trio

from edgesim._server import HttpServer, Limits
from edgesim.http import Request, Response
from origin.core import RESERVED_PREFIX, OriginCore, SiteConfigError

__all__ = ["OriginServer", "main", "run", "serve_origin"]

log = logging.getLogger("edgesim.origin")

# Response header giving the seconds a request waited for a concurrency slot (only on
# requests that waited): the edge's metrics split origin latency with it.
QUEUE_WAIT_HEADER = "x-edgesim-queue-wait"
SERVER_NAME = "edgesim-origin"
# Seconds in-flight requests get to finish after SIGTERM before they are cancelled.
DRAIN_TIMEOUT = 30.0
# Seconds between checks that the --parent-pid process is still the parent.
PARENT_POLL = 0.5


class OriginServer:
    """An :class:`OriginCore` behind an :class:`edgesim._server.HttpServer`.

    Args:
        core: the sites to serve.
        concurrency: origin-wide limit of requests in service at once (0: none).
        max_queue: most requests waiting for a slot; more get 503 (0: no bound).
        rng: the generator of modelled service times (seeded for repeatable runs).
        limits: HTTP limits of the server shell.
    """

    def __init__(
        self,
        core: OriginCore,
        *,
        concurrency: int = 0,
        max_queue: int = 0,
        rng: random.Random | None = None,
        limits: Limits | None = None,
    ) -> None:
        if concurrency < 0 or max_queue < 0:
            raise ValueError("concurrency and max_queue must be >= 0")
        self.core = core
        self.max_queue = max_queue
        self.rng = rng if rng is not None else random.Random()
        self.http = HttpServer(self.handle, limits=limits or Limits(), server_name=SERVER_NAME)
        self._global = trio.Semaphore(concurrency) if concurrency else None
        self._per_site: dict[tuple[str, int], trio.Semaphore] = {}
        self._deploy_lock = trio.Lock()

    # ---- request handling -----------------------------------------------------------

    async def handle(self, req: Request) -> Response:
        """The HTTP handler: reserved endpoints directly, content through the queue."""
        core = self.core
        if req.path.startswith(RESERVED_PREFIX):
            if req.method == "POST" and req.path == RESERVED_PREFIX + "deploy":
                return await self._deploy(req)
            return core.handle(req, time.time())
        stats = core.stats
        sems: list[trio.Semaphore] = []
        site = core.site_for(req.host)
        if site is not None:
            limit = core.concurrency(req.host)
            if limit:
                key = (site.name, limit)
                sem = self._per_site.get(key)
                if sem is None:
                    sem = self._per_site[key] = trio.Semaphore(limit)
                sems.append(sem)
        if self._global is not None:
            sems.append(self._global)
        waited = 0.0
        held: list[trio.Semaphore] = []
        try:
            for sem in sems:
                try:
                    sem.acquire_nowait()
                except trio.WouldBlock:
                    if self.max_queue and stats.queued >= self.max_queue:
                        stats.rejected += 1
                        return _overloaded()
                    stats.queued += 1
                    stats.total_queued += 1
                    stats.max_queued = max(stats.max_queued, stats.queued)
                    t0 = trio.current_time()
                    try:
                        await sem.acquire()
                    finally:
                        stats.queued -= 1
                        dt = trio.current_time() - t0
                        waited += dt
                        stats.queue_wait += dt
                held.append(sem)
            stats.in_flight += 1
            try:
                st = core.service_time(req.host, req, self.rng)
                if st > 0:
                    await trio.sleep(st)
                resp = core.handle(req, time.time())
            finally:
                stats.in_flight -= 1
        finally:
            for sem in reversed(held):
                sem.release()
        if waited > 0:
            resp.headers.append((QUEUE_WAIT_HEADER, f"{waited:.6f}"))
        return resp

    async def _deploy(self, req: Request) -> Response:
        """POST /.edgesim/deploy: build in a thread, publish here, one at a time."""
        core = self.core
        async with self._deploy_lock:
            site = core.deploy_target(req.host)
            try:
                opts = core.parse_deploy_body(req.body)
            except ValueError:
                site = None
            if site is None:  # unknown host or bad body: the core words the answer
                return core.handle(req, time.time())
            build = functools.partial(core.prepare_deploy, site, options=opts)
            try:
                prepared = await trio.to_thread.run_sync(build)
            except SiteConfigError as e:
                log.warning("deploy of %s failed: %s", site, e)
                return core.deploy_failed(site, str(e), time.time())
            now = time.time()
            deploy = core.publish(prepared, now)
            log.info("published %s deploy %s (was %s)", site, deploy.id, deploy.previous)
            return core.deploy_response(site, deploy, now)

    # ---- serving ----------------------------------------------------------------------

    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        signals: bool = False,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve until :meth:`begin_shutdown` (or SIGTERM/SIGINT with ``signals``) and
        every in-flight request has finished.

        Args:
            host, port: where to listen (port 0: any free port).
            signals: shut down gracefully on SIGTERM/SIGINT (main thread only).
            task_status: started with the bound port.
        """
        async with trio.open_nursery() as nursery:
            if signals:
                nursery.start_soon(self._watch_signals, nursery.cancel_scope)

            async def serve_then_stop(task_status: trio.TaskStatus[int]) -> None:
                await self.http.serve_tcp(host, port, task_status=task_status)
                nursery.cancel_scope.cancel()  # the signal watcher

            bound: int = await nursery.start(serve_then_stop)
            task_status.started(bound)

    def begin_shutdown(self) -> None:
        """Stop accepting; requests in flight finish (see ``HttpServer.begin_shutdown``)."""
        self.http.begin_shutdown(drain_timeout=DRAIN_TIMEOUT)

    async def _watch_signals(self, scope: trio.CancelScope) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            count = 0
            async for signum in signals:
                count += 1
                if count == 1:
                    log.info("%s: draining in-flight requests", signal.Signals(signum).name)
                    self.begin_shutdown()
                else:
                    log.warning("second signal: cancelling in-flight requests")
                    scope.cancel()
                    return


def _overloaded() -> Response:
    body = b"origin overloaded: queue full\n"
    headers = [
        ("content-type", "text/plain; charset=utf-8"),
        ("cache-control", "no-store"),
        ("retry-after", "1"),
    ]
    return Response(503, headers, body)


async def serve_origin(
    sites_dir: str | os.PathLike[str],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    concurrency: int = 0,
    max_queue: int = 0,
    seed: int | None = None,
    signals: bool = False,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Load every site folder of ``sites_dir`` and serve them until shut down.

    Args:
        sites_dir: one sub-folder per site (docs/origin.md).
        host, port: where to listen (port 0: any free port).
        concurrency: origin-wide concurrency limit (0: none).
        max_queue: queue bound (0: none); beyond it 503.
        seed: seed of the service-time generator (None: random).
        signals: drain and return on SIGTERM/SIGINT (main thread only).
        task_status: ``port = await nursery.start(serve_origin, ...)``.

    Error handling:
        An invalid site raises :class:`origin.core.SiteConfigError` before listening.
    """
    load = functools.partial(OriginCore.from_directory, sites_dir, now=time.time())
    core = await trio.to_thread.run_sync(load)
    server = OriginServer(core, concurrency=concurrency, max_queue=max_queue, rng=random.Random(seed))
    log.info("loaded %d sites from %s", len(core.sites), sites_dir)
    await server.serve(host, port, signals=signals, task_status=task_status)


def run(
    sites_dir: str | os.PathLike[str],
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    concurrency: int = 0,
    max_queue: int = 0,
    seed: int | None = None,
    announce: Callable[[str], None] | None = None,
    parent: int | None = None,
) -> None:
    """Run the origin in this process until SIGTERM/SIGINT (blocking), or, with
    ``parent``, until process ``parent`` is no longer this one's parent (it died, even by
    SIGKILL, which left no one to stop the origin): then it drains as on SIGTERM.

    ``announce`` gets one line, ``origin listening on http://H:P``, once the port is
    bound (the CLI prints it, flushed, so parents can read the port of ``--port 0``).

    Raises:
        SiteConfigError: a site is invalid (nothing was served).
        OSError: the address could not be bound.
    """

    core = OriginCore.from_directory(sites_dir, now=time.time())
    log.info("loaded %d sites from %s", len(core.sites), sites_dir)
    server = OriginServer(core, concurrency=concurrency, max_queue=max_queue, rng=random.Random(seed))

    async def _main() -> None:
        async with trio.open_nursery() as nursery:

            async def serve_then_stop(task_status: trio.TaskStatus[int]) -> None:
                await server.serve(host, port, signals=True, task_status=task_status)
                nursery.cancel_scope.cancel()  # the parent watcher

            bound = await nursery.start(serve_then_stop)
            if announce is not None:
                announce(f"origin listening on http://{host}:{bound}")
            if parent is not None:
                nursery.start_soon(_end_with_parent, parent, server)

    try:
        trio.run(_main)
    except BaseExceptionGroup as group:
        raise _single(group) from None


async def _end_with_parent(parent: int, server: OriginServer) -> None:
    # (no event tells of a parent's death: polled)
    while os.getppid() == parent:  # noqa: ASYNC110
        await trio.sleep(PARENT_POLL)
    log.info("process %d is gone: draining in-flight requests", parent)
    server.begin_shutdown()


def _single(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one exception inside nested single-member groups (else the group)."""
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m origin``: parse arguments, serve, return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m origin", description="edgesim origin server")
    parser.add_argument("--sites", required=True, help="directory with one folder per site")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (default 0: any free port)")
    parser.add_argument(
        "--concurrency", type=int, default=0, help="requests in service at once (0: no limit)"
    )
    parser.add_argument("--max-queue", type=int, default=0, help="requests waiting for a slot (0: no bound)")
    parser.add_argument("--seed", type=int, default=None, help="seed of modelled service times")
    parser.add_argument(
        "--parent-pid",
        type=int,
        default=None,
        help="stop (as on SIGTERM) once process PID is no longer this one's parent",
    )
    parser.add_argument("--log-level", default="WARNING", help="logging level (default WARNING)")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error("--port must be in 0..65535")
    if args.concurrency < 0 or args.max_queue < 0:
        parser.error("--concurrency and --max-queue must be >= 0")
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")

    def announce(line: str) -> None:
        print(line, flush=True)

    try:
        run(
            args.sites,
            args.host,
            args.port,
            concurrency=args.concurrency,
            max_queue=args.max_queue,
            seed=args.seed,
            announce=announce,
            parent=args.parent_pid,
        )
    except SiteConfigError as e:
        print(f"edgesim origin: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"edgesim origin: error: cannot listen on {args.host}:{args.port}: {e}", file=sys.stderr)
        return 1
    return 0
