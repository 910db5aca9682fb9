"""``edgesim._signals``: SIGTERM and SIGHUP stop a run as Ctrl-C does, so its cleanup
runs (``stoppable`` for Trio, ``interrupted_by_stop_signals`` for plain code); results
and errors pass through as themselves."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import trio
import trio.lowlevel

from edgesim._signals import interrupted_by_stop_signals, stoppable


def test_the_result_and_errors_come_out_as_themselves() -> None:
    async def answer(x: int) -> int:
        await trio.lowlevel.checkpoint()
        return x * 2

    async def broken() -> None:
        await trio.lowlevel.checkpoint()
        raise ValueError("its own")

    assert trio.run(stoppable, answer, 21) == 42
    with pytest.raises(ValueError, match="its own"):
        trio.run(stoppable, broken)


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
def test_a_stop_signal_interrupts_the_run_and_its_cleanup_runs(signame: str) -> None:
    signum = getattr(signal, signame)
    before = signal.getsignal(signum)
    cleaned: list[bool] = []

    async def long_run() -> None:
        try:
            os.kill(os.getpid(), signum)  # at once: the signal is received from the start
            await trio.sleep(30)  # cancelled at once by the signal's KeyboardInterrupt
        finally:
            cleaned.append(True)

    with pytest.raises(KeyboardInterrupt):
        trio.run(stoppable, long_run)
    assert cleaned == [True]
    assert signal.getsignal(signum) == before  # the run's handler is gone with it


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
def test_a_stop_signal_interrupts_plain_code_and_the_old_handler_comes_back(signame: str) -> None:
    signum = getattr(signal, signame)
    before = signal.getsignal(signum)
    cleaned: list[bool] = []

    def long_run() -> None:
        with interrupted_by_stop_signals():
            try:
                os.kill(os.getpid(), signum)
                time.sleep(30)  # interrupted at once
            finally:
                cleaned.append(True)

    with pytest.raises(KeyboardInterrupt):
        long_run()
    assert cleaned == [True]
    assert signal.getsignal(signum) == before
    # nothing changes when nothing is interrupted either
    with interrupted_by_stop_signals():
        assert signal.getsignal(signum) != before
    assert signal.getsignal(signum) == before


def test_outside_the_main_thread_plain_code_just_runs() -> None:
    before = signal.getsignal(signal.SIGTERM)
    seen: list[object] = []

    def body() -> None:
        with interrupted_by_stop_signals():
            seen.append(signal.getsignal(signal.SIGTERM))

    t = threading.Thread(target=body)
    t.start()
    t.join(timeout=10)
    assert seen == [before]
