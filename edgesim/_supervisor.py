"""A supervisor for edge nodes running as separate OS processes.

Theory of operation
-------------------
:func:`open_supervisor` starts one ``python -P -m edgesim edge serve`` process per
:class:`EdgeSpec`, each on a fixed loopback port chosen up front, so that a restarted
node comes back on the same URL and clients that fail over to its neighbours can come
back to it. One Trio task per node waits for its process to exit. When a process dies
while the supervisor is open, the task records a :class:`Restart`, waits out a backoff
(doubling from ``backoff_initial`` up to ``backoff_max`` while the node keeps dying
soon after starting; reset once it has stayed up for ``stable_after`` seconds), starts
the process again and waits until its port accepts connections.

Metrics: a scraper task asks every live node for ``GET /.edgesim/edge/stats`` every
``flush_interval`` seconds and keeps the last answer of each *incarnation* (one run of
one process). When a process dies, its last snapshot is folded into the node's totals;
what it counted after that snapshot is lost, which bounds the loss per crash to one
flush interval (plus one scrape's latency). Each :class:`Restart` says how long that
window was (``unflushed``). Counters of a node are therefore ``sum over dead
incarnations of their last snapshot + the current incarnation's latest snapshot``
(:meth:`Supervisor.node_totals`). Note that a scrape is itself a request to the node and
is counted in its ``requests``.

Drills call :meth:`Supervisor.kill` (``SIGKILL`` by default); ``hold`` keeps the node
down at least that long, as a host that takes time to come back would.

Times in records are seconds since the supervisor opened (``trio.current_time()``
based, so the loop's clock).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from edgesim.errors import EdgesimError

log = logging.getLogger("edgesim.supervisor")

__all__ = [
    "EdgeSpec",
    "Restart",
    "Supervisor",
    "SupervisorError",
    "child_env",
    "free_ports",
    "open_supervisor",
]

# Seconds a (re)started edge process gets to accept connections: an interpreter start
# plus imports take well under a second here, but a loaded 2-core CI machine running
# several of them at once can take many times that.
START_TIMEOUT = 30.0
# Seconds a node gets to drain after SIGTERM at shutdown before it is killed.
STOP_TIMEOUT = 5.0
# Backoff bounds (seconds): like systemd's RestartSec and Kubernetes' CrashLoopBackOff
# (10 s doubling to 5 min), scaled down because a drill lasts a minute, not a day.
BACKOFF_INITIAL = 0.1
BACKOFF_MAX = 5.0
# A node up this long is considered healthy again: its next death starts a fresh backoff.
STABLE_AFTER = 10.0
# How often edge counters are collected; also the most a killed edge can lose.
FLUSH_INTERVAL = 1.0
STATS_PATH = "/.edgesim/edge/stats"


class SupervisorError(EdgesimError, RuntimeError):
    """A node could not be started at all (bad arguments, port taken, no interpreter)."""


@dataclass(frozen=True, slots=True)
class EdgeSpec:
    """One edge node to supervise.

    Attributes:
        name: node name (``Via``, stats, records).
        origin: the origin URL the node fetches from.
        port: fixed loopback port (see :func:`free_ports`).
        memory_cache: memory tier size in bytes.
        extra_args: more ``edgesim edge serve`` options (``--no-manifests``, ``--rules``).
        module: the module run with ``python -P -m``; tests and ``edgesim stress`` use a
            wrapper that adds instrumentation and then runs the same CLI.
    """

    name: str
    origin: str
    port: int
    memory_cache: int = 64 * 2**20
    extra_args: tuple[str, ...] = ()
    module: str = "edgesim"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-P",
            "-m",
            self.module,
            "edge",
            "serve",
            "--origin",
            self.origin,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--name",
            self.name,
            "--memory-cache",
            str(self.memory_cache),
            *self.extra_args,
        ]


@dataclass(frozen=True, slots=True)
class Restart:
    """One death and restart of a node.

    Attributes:
        node: index of the node in the supervisor's specs.
        name: its name.
        died_at: when the supervisor saw the process exit (seconds since open).
        returncode: the exit status, or ``-N`` for death by signal N (subprocess style).
        signal: the signal's name (``SIGKILL``) when it died by a signal, else None.
        killed_by_drill: the supervisor had sent it a signal (:meth:`Supervisor.kill`);
            after SIGTERM an edge drains and exits 0.
        backoff: seconds waited before starting it again (the hold included).
        up_at: when the new process accepted connections again (None: it never did
            before the supervisor closed).
        downtime: ``up_at - died_at``.
        unflushed: seconds of this incarnation's counters that were never collected
            (time from its last successful stats scrape to its death).
    """

    node: int
    name: str
    died_at: float
    returncode: int
    signal: str | None
    killed_by_drill: bool
    backoff: float
    up_at: float | None
    downtime: float | None
    unflushed: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "name": self.name,
            "died_at": round(self.died_at, 3),
            "returncode": self.returncode,
            "signal": self.signal,
            "killed_by_drill": self.killed_by_drill,
            "backoff": round(self.backoff, 3),
            "up_at": None if self.up_at is None else round(self.up_at, 3),
            "downtime": None if self.downtime is None else round(self.downtime, 3),
            "unflushed": round(self.unflushed, 3),
        }


@dataclass(eq=False)
class _Node:
    spec: EdgeSpec
    index: int
    process: trio.Process | None = None
    up: bool = False
    started_at: float = 0.0
    incarnation: int = 0
    # counters: folded totals of dead incarnations, and the live one's last snapshot
    folded: dict[str, int] = field(default_factory=dict)
    current: dict[str, int] = field(default_factory=dict)
    last_flush: float | None = None
    drill_signal: int | None = None
    hold: float = 0.0
    ever_up: bool = False
    # exited with an error of its command's ("Error: ...") before it ever listened:
    # restarting it cannot help
    refused: bool = False


class Supervisor:
    """Running edge processes (see :func:`open_supervisor`); use from the Trio thread.

    Attributes:
        specs: the nodes, in order.
        restarts: every death and restart so far, in order (a live list).
        flush_interval: seconds between stats collections.
    """

    def __init__(
        self,
        specs: Sequence[EdgeSpec],
        *,
        log_dir: Path,
        backoff_initial: float,
        backoff_max: float,
        stable_after: float,
        flush_interval: float,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.specs = tuple(specs)
        self._env = dict(env) if env is not None else child_env()
        self.restarts: list[Restart] = []
        self.flush_interval = flush_interval
        self._log_dir = log_dir
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._stable_after = stable_after
        self._nodes = [_Node(s, i) for i, s in enumerate(self.specs)]
        self._t0 = trio.current_time()
        self._closing = False
        self._changed = trio.Event()

    # ---- queries ----------------------------------------------------------------

    @property
    def urls(self) -> list[str]:
        """Each node's base URL (``http://127.0.0.1:PORT``), fixed for the whole run."""
        return [s.url for s in self.specs]

    def now(self) -> float:
        """Seconds since the supervisor opened (the time base of all records)."""
        return trio.current_time() - self._t0

    def is_up(self, i: int) -> bool:
        """Whether node ``i``'s current process is accepting connections."""
        return self._nodes[i].up

    def pid(self, i: int) -> int | None:
        """Process id of node ``i``'s current process (None while it is down)."""
        p = self._nodes[i].process
        return p.pid if p is not None and p.returncode is None else None

    def node_totals(self, i: int) -> dict[str, int]:
        """Node ``i``'s counters over all its incarnations, as collected so far."""
        n = self._nodes[i]
        return _add(n.folded, n.current)

    def totals(self) -> dict[str, int]:
        """Counters summed over every node and incarnation."""
        out: dict[str, int] = {}
        for i in range(len(self._nodes)):
            out = _add(out, self.node_totals(i))
        return out

    # ---- actions ------------------------------------------------------------------

    def kill(self, i: int, sig: int = signal.SIGKILL, *, hold: float = 0.0) -> bool:
        """Send ``sig`` to node ``i``'s process (a drill). The supervisor will see it die
        and restart it, after its backoff and at least ``hold`` seconds.

        Returns:
            False when the node has no live process (it is already down).
        """
        n = self._nodes[i]
        p = n.process
        if p is None or p.returncode is not None:
            return False
        n.drill_signal = int(sig)
        n.hold = max(0.0, hold)
        p.send_signal(sig)
        return True

    def stop_restarts(self) -> None:
        """The run is ending: from now on a node that dies is neither recorded as a
        restart nor started again (a drill stopped by Ctrl-C, which reaches the edges
        too). The processes still running are stopped when the supervisor closes."""
        self._closing = True

    async def wait_all_up(self) -> None:
        """Wait until every node accepts connections, or one has refused its arguments
        (bound it with ``trio.fail_after``)."""
        while not all(n.up for n in self._nodes) and not any(n.refused for n in self._nodes):
            await self._wait_changed()

    def down(self) -> list[str]:
        """Names of the nodes not accepting connections now."""
        return [n.spec.name for n in self._nodes if not n.up]

    async def wait_restarts(self, count: int) -> None:
        """Wait until ``count`` restarts are recorded and those nodes are up again
        (bound it with ``trio.move_on_after``)."""
        while not (len(self.restarts) >= count and all(r.up_at is not None for r in self.restarts[:count])):
            await self._wait_changed()

    async def flush(self) -> None:
        """Collect every live node's counters now (as the periodic scraper does)."""
        async with trio.open_nursery() as nursery:
            for n in self._nodes:
                if n.up:
                    nursery.start_soon(self._scrape, n)

    # ---- internals -------------------------------------------------------------------

    async def _wait_changed(self) -> None:
        await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _start(self, n: _Node) -> None:
        """Start node ``n`` and wait until its port accepts connections."""
        if self._closing:
            return
        n.incarnation += 1
        logf = (self._log_dir / f"{n.spec.name}.log").open("ab")
        try:
            proc = await trio.lowlevel.open_process(
                n.spec.command(), stdout=subprocess.DEVNULL, stderr=logf, env=self._env
            )
        finally:
            logf.close()
        n.process = proc
        n.started_at = self.now()
        n.current = {}
        n.last_flush = None
        try:
            with trio.move_on_after(START_TIMEOUT):
                while proc.returncode is None:
                    if await _accepts(n.spec.port):
                        n.up = n.ever_up = True
                        n.last_flush = self.now()  # a fresh process has counted nothing yet
                        self._notify()
                        return
                    await trio.sleep(0.02)
        except BaseException:  # cancelled while starting (the supervisor is closing)
            with trio.CancelScope(shield=True):
                proc.kill()
                await proc.wait()
            raise
        # exited early or never listened: the run loop's wait() sees it (or we kill it)
        if proc.returncode is None:
            log.warning("%s: not listening after %g s; killing it", n.spec.name, START_TIMEOUT)
            proc.kill()

    async def _run_node(self, n: _Node, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        backoff = self._backoff_initial
        await self._start(n)
        task_status.started()
        while True:
            assert n.process is not None
            await n.process.wait()
            if self._closing:
                return
            died = self.now()
            rc = int(n.process.returncode or 0)
            if rc > 0 and not n.ever_up and _tail(self._log_dir / f"{n.spec.name}.log").startswith("Error:"):
                # the command said what is wrong (bad arguments, a port taken): a restart
                # would say it again
                n.refused = True
                log.warning("%s cannot start (exit status %d); not restarted", n.spec.name, rc)
                self._notify()
                return
            was_up = n.up
            n.up = False
            sig_name = _signal_name(rc)
            by_drill = n.drill_signal is not None  # it may exit 0 on SIGTERM (it drains)
            unflushed = died - (n.last_flush if n.last_flush is not None else n.started_at)
            n.folded = _add(n.folded, n.current)
            n.current = {}
            if was_up and died - n.started_at >= self._stable_after:
                backoff = self._backoff_initial
            wait = max(backoff, n.hold)
            n.drill_signal, n.hold = None, 0.0
            record_at = len(self.restarts)
            self.restarts.append(
                Restart(n.index, n.spec.name, died, rc, sig_name, by_drill, wait, None, None, unflushed)
            )
            log.warning("%s exited (%s); restarting in %.2f s", n.spec.name, sig_name or rc, wait)
            self._notify()
            await trio.sleep(wait)
            backoff = min(self._backoff_max, backoff * 2)
            await self._start(n)
            if self._closing:
                return
            if n.up:
                up = self.now()
                r = self.restarts[record_at]
                self.restarts[record_at] = Restart(
                    r.node, r.name, r.died_at, r.returncode, r.signal, r.killed_by_drill,
                    r.backoff, up, up - r.died_at, r.unflushed,
                )  # fmt: skip
                self._notify()

    async def _scraper(self) -> None:
        while True:
            await trio.sleep(self.flush_interval)
            await self.flush()

    async def _scrape(self, n: _Node) -> None:
        incarnation = n.incarnation
        with trio.move_on_after(max(0.5, self.flush_interval)):
            snap = await _get_stats(n.spec.port)
            if snap is not None and incarnation == n.incarnation and n.up:
                n.current = snap
                n.last_flush = self.now()

    async def _stop_all(self) -> None:
        self._closing = True
        procs = [n.process for n in self._nodes if n.process is not None and n.process.returncode is None]
        for p in procs:
            p.terminate()
        with trio.move_on_after(STOP_TIMEOUT):
            for p in procs:
                await p.wait()
        for p in procs:
            if p.returncode is None:
                p.kill()
                await p.wait()


@contextlib.asynccontextmanager
async def open_supervisor(
    specs: Sequence[EdgeSpec],
    *,
    log_dir: str | os.PathLike[str],
    backoff_initial: float = BACKOFF_INITIAL,
    backoff_max: float = BACKOFF_MAX,
    stable_after: float = STABLE_AFTER,
    flush_interval: float = FLUSH_INTERVAL,
    env: Mapping[str, str] | None = None,
) -> AsyncIterator[Supervisor]:
    """Run edge nodes as separate processes, restarting any that die.

    Args:
        specs: the nodes (ports fixed: use :func:`free_ports`).
        log_dir: where each node's stderr goes (``NAME.log``, appended across restarts).
        backoff_initial, backoff_max: the restart delay doubles from the first to the
            second while a node keeps dying within ``stable_after`` seconds of starting.
        stable_after: seconds of uptime after which a death starts a fresh backoff.
        flush_interval: seconds between collections of every node's counters.
        env: the nodes' environment (default: :func:`child_env`).

    Yields:
        The :class:`Supervisor`, once every node accepts connections.

    Resource handling:
        Every process belongs to the supervisor: on exit (also on error or
        cancellation) each gets SIGTERM, then SIGKILL after ``STOP_TIMEOUT`` seconds,
        and is waited for. A final stats collection runs first, so the totals include
        everything the nodes counted up to then.

    Error handling:
        :class:`SupervisorError` when the nodes do not all come up within
        ``START_TIMEOUT`` seconds (each node's log is in ``log_dir``).
    """
    if not math.isfinite(backoff_initial) or backoff_initial <= 0 or backoff_max < backoff_initial:
        raise ValueError("need 0 < backoff_initial <= backoff_max")
    if flush_interval <= 0:
        raise ValueError("flush_interval must be > 0")
    ports = [s.port for s in specs]
    if len(set(ports)) != len(ports):
        raise ValueError("every edge needs its own port")
    logs = Path(log_dir)
    await trio.Path(logs).mkdir(parents=True, exist_ok=True)
    sup = Supervisor(
        specs,
        log_dir=logs,
        backoff_initial=backoff_initial,
        backoff_max=backoff_max,
        stable_after=stable_after,
        flush_interval=flush_interval,
        env=env,
    )
    async with trio.open_nursery() as nursery:
        try:
            for n in sup._nodes:
                await nursery.start(sup._run_node, n)
            with trio.move_on_after(START_TIMEOUT):
                await sup.wait_all_up()
            refused = [n.spec.name for n in sup._nodes if n.refused]
            if refused:  # at once: waiting out the start timeout cannot help
                tails = "; ".join(f"{name}: {_tail(logs / f'{name}.log')}" for name in refused)
                raise SupervisorError(f"edge nodes cannot start ({tails})")
            if sup.down():
                tails = "; ".join(f"{name}: {_tail(logs / f'{name}.log')}" for name in sup.down())
                raise SupervisorError(f"edge nodes not up after {START_TIMEOUT:g} s ({tails})")
            nursery.start_soon(sup._scraper)
            yield sup
            with trio.move_on_after(max(1.0, flush_interval)):
                await sup.flush()
        finally:
            # Stop the node tasks first (one may be in a backoff sleep, about to start a
            # process), then stop every process still running.
            sup._closing = True
            nursery.cancel_scope.cancel()
            with trio.CancelScope(shield=True):
                await sup._stop_all()


def child_env() -> dict[str, str]:
    """The environment for edgesim's child processes: this one's, plus the folder that
    holds the ``edgesim`` and ``origin`` packages in use on ``PYTHONPATH`` (needed in a
    source checkout, where ``python -P`` does not look in the current folder; harmless
    when installed), as the live test network does."""
    import edgesim

    env = dict(os.environ)
    root = str(Path(edgesim.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


def free_ports(n: int) -> list[int]:
    """``n`` distinct loopback ports free right now (held open together while chosen,
    so they differ). A port can be taken by someone else before it is bound; the
    supervisor's start then fails with the node's log quoted."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def _signal_name(returncode: int) -> str | None:
    if returncode >= 0:
        return None
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def _add(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0) + v
    return out


def _tail(path: Path, limit: int = 400) -> str:
    """What a node's log says last, for a one-line error: its last line (an ``Error:``
    line, or a traceback's exception), whole lines only, at most ``limit`` characters."""
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return "no log"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return "empty log"
    last = lines[-1]
    return last if len(last) <= limit else "..." + last[-limit:]


async def _accepts(port: int) -> bool:
    try:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
    except OSError:
        return False
    await stream.aclose()
    return True


async def _get_stats(port: int) -> dict[str, int] | None:
    """The node's numeric counters from its stats endpoint (None if it cannot answer)."""
    try:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
    except OSError:
        return None
    buf = b""
    try:
        async with stream:
            await stream.send_all(
                f"GET {STATS_PATH} HTTP/1.1\r\nHost: edgesim\r\nConnection: close\r\n\r\n".encode()
            )
            while True:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break
                buf += chunk
    except (trio.BrokenResourceError, OSError):
        return None
    head, _, body = buf.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        return None
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    out = {k: v for k, v in doc.items() if isinstance(v, int) and not isinstance(v, bool)}
    shadow = doc.get("shadow")  # a shadowing edge's comparison counters (docs/shadow.md)
    if isinstance(shadow, dict):
        out.update(
            {f"shadow_{k}": v for k, v in shadow.items() if isinstance(v, int) and not isinstance(v, bool)}
        )
    return out
