"""SIGTERM and SIGHUP stop a long command as Ctrl-C does.

``timeout``, CI runners, ``kill`` and a closed terminal send SIGTERM or SIGHUP, whose
default action ends the process at once: the origin, edge and load-generator processes
it started were left running, and its report unwritten. Under :func:`stoppable`, either
signal raises ``KeyboardInterrupt`` in a task of the run, so the run is cancelled, its
cleanup stops what it started, and the caller reports what it has, as after Ctrl-C.
Synchronous code (``edgesim sweep``'s process pool) does the same under
:func:`interrupted_by_stop_signals`.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Awaitable, Callable, Iterator
from types import FrameType
from typing import Any, TypeVar

from edgesim.errors import single_exception

T = TypeVar("T")

# (SIGHUP is POSIX only)
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


@contextlib.contextmanager
def held() -> Iterator[Callable[[], bool]]:
    """Hold Ctrl-C, SIGTERM and SIGHUP while the block runs, so that a report being built
    or written is finished rather than lost (an atomic write leaves nothing behind when
    stopped). Yields a function telling whether one came; what to do then is the
    caller's. The former handlers are back when the block ends. In the main thread only;
    elsewhere signals cannot be received, and this holds nothing."""
    came: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        came.append(signum)

    with _handled_by(hold, signal.SIGINT, *STOP_SIGNALS):
        yield lambda: bool(came)


@contextlib.contextmanager
def _handled_by(handler: Callable[[int, FrameType | None], None], *signums: int) -> Iterator[None]:
    """``signums`` go to ``handler`` within; the former handlers are back after. In the
    main thread only: elsewhere signals cannot be handled, and this changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {signum: signal.signal(signum, handler) for signum in signums}
    try:
        yield
    finally:
        for signum, old in before.items():
            # None: a handler not set from Python; the default is the nearest
            signal.signal(signum, signal.SIG_DFL if old is None else old)


async def stoppable(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """``await fn(*args)``, stopped by SIGTERM or SIGHUP as by Ctrl-C (in the main
    thread; elsewhere signals cannot be received and ``fn`` just runs). An exception of
    ``fn`` comes out as itself, not in an exception group."""
    import trio

    if threading.current_thread() is not threading.main_thread():
        return await fn(*args)
    out: list[T] = []
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(_interrupt_on_signal)  # listening before fn starts
            out.append(await fn(*args))
            nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        single = single_exception(group)
        if isinstance(single, BaseExceptionGroup):
            raise
        raise single from None
    return out[0]


async def _interrupt_on_signal(*, task_status: Any) -> None:
    import trio

    with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
        task_status.started()
        async for _ in signals:
            raise KeyboardInterrupt  # as Ctrl-C: the run stops and cleans up


@contextlib.contextmanager
def interrupted_by_stop_signals() -> Iterator[None]:
    """Within: SIGTERM and SIGHUP raise ``KeyboardInterrupt`` in the main thread, as
    Ctrl-C does, so ``finally`` blocks stop what the code started; the handlers there
    before are restored on the way out. In another thread (signals cannot be handled
    there) this does nothing."""
    with _handled_by(_raise_interrupt, *STOP_SIGNALS):
        yield


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # as Ctrl-C
