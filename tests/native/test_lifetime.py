"""Ownership and sharing of the native handle: the crash this project exists to avoid.

A finalizer that frees the matcher while a C call still uses it must be impossible:
these tests compile, drop references, force garbage collection from another thread,
reload and close sets while many threads match, and check every answer.
Loops are bounded in count and time.
"""

from __future__ import annotations

import gc
import threading
import time
import weakref
from collections.abc import Callable

import pytest
from rulegen import mixed_rules, mixed_urls

from edgesim.redirects import ReferenceRuleSet, RuleSet

N_RULES = 2000
RULES = mixed_rules(N_RULES)
URLS = mixed_urls(N_RULES, 600)
# A long-running test must still end: every loop checks this deadline too.
BUDGET_S = 6.0


@pytest.fixture(scope="module")
def expected() -> list[tuple[int, str] | None]:
    ref = ReferenceRuleSet.parse(RULES)
    return [None if m is None else (m.rule, m.to) for m in ref.match_many(URLS)]


def _key(m: object) -> tuple[int, str] | None:
    return None if m is None else (m.rule, m.to)  # type: ignore[attr-defined]


def _run_matchers_beside(
    background: Callable[[], None], matcher: Callable[[int], None], stop: threading.Event
) -> None:
    """Run ``background`` and six ``matcher(i)`` threads; when the matchers are done,
    set ``stop`` and wait for ``background`` to end."""
    bg = threading.Thread(target=background)
    matchers = [threading.Thread(target=matcher, args=(i,)) for i in range(6)]
    for t in [bg, *matchers]:
        t.start()
    for t in matchers:
        t.join()
    stop.set()
    bg.join()


def test_double_close_and_use_after_close() -> None:
    rs = RuleSet.parse("/a /b\n")
    rs.close()
    rs.close()
    assert rs.closed
    with pytest.raises(ValueError, match="RuleSet is closed"):
        rs.match("/a")
    with pytest.raises(ValueError, match="RuleSet is closed"):
        _ = rs.rules


def test_handle_is_freed_when_the_owner_goes() -> None:
    rs = RuleSet.parse(RULES)
    ref = weakref.ref(rs._h)
    rs.close()
    assert ref() is None  # freed at once: nothing was in flight
    rs2 = RuleSet.parse(RULES)
    ref2 = weakref.ref(rs2._h)
    del rs2
    gc.collect()
    assert ref2() is None


def test_drop_then_collect_between_compile_and_match(expected: list[object]) -> None:
    for _ in range(20):
        rs = RuleSet.parse(RULES)
        match = rs.match  # a bound method keeps the owner, not the handle, alive
        del rs
        gc.collect()
        assert [_key(match(u)) for u in URLS[:50]] == expected[:50]


def test_many_threads_share_one_set_under_forced_gc(expected: list[object]) -> None:
    shared = RuleSet.parse(RULES)
    deadline = time.monotonic() + BUDGET_S
    stop = threading.Event()
    failures: list[str] = []
    done = [0]

    def collector() -> None:
        while not stop.is_set() and time.monotonic() < deadline:
            gc.collect()

    def matcher(seed: int) -> None:
        try:
            for rnd in range(40):
                if time.monotonic() > deadline:
                    return
                if (rnd + seed) % 2:
                    got = [_key(m) for m in shared.match_many(URLS)]
                else:
                    got = [_key(shared.match(u)) for u in URLS]
                if got != expected:
                    failures.append(f"thread {seed} round {rnd}: wrong results")
                    return
                done[0] += 1
        except Exception as exc:  # pragma: no cover - reported below
            failures.append(f"thread {seed}: {exc!r}")

    _run_matchers_beside(collector, matcher, stop)
    assert not failures
    assert done[0] >= 6


def test_reload_and_close_while_threads_match(expected: list[object]) -> None:
    """Swap in freshly compiled sets and close the old ones under running matches."""
    holder = {"rs": RuleSet.parse(RULES)}
    deadline = time.monotonic() + BUDGET_S
    stop = threading.Event()
    failures: list[str] = []
    closed_seen = [0]
    ok_rounds = [0]

    def reloader() -> None:
        n = 0
        while not stop.is_set() and time.monotonic() < deadline and n < 200:
            old = holder["rs"]
            holder["rs"] = RuleSet.parse(RULES)
            old.close()  # others may still be inside a C call on it
            del old
            gc.collect()
            n += 1

    def matcher(seed: int) -> None:
        for _ in range(300):
            if stop.is_set() or time.monotonic() > deadline:
                return
            rs = holder["rs"]
            try:
                got = [_key(m) for m in rs.match_many(URLS)]
            except ValueError as exc:
                if "closed" not in str(exc):
                    failures.append(repr(exc))
                closed_seen[0] += 1
                continue
            if got != expected:
                failures.append(f"thread {seed}: wrong results after reload")
                return
            ok_rounds[0] += 1

    _run_matchers_beside(reloader, matcher, stop)
    assert not failures
    assert ok_rounds[0] > 0


def test_close_while_others_hold_the_set() -> None:
    """close() under in-flight calls: they finish correctly, later calls are refused."""
    rs = RuleSet.parse(RULES)
    big = URLS * 40
    want = [_key(m) for m in rs.match_many(big)]
    started = threading.Barrier(5)
    results: list[object] = []

    def worker() -> None:
        started.wait()
        try:
            results.append([_key(m) for m in rs.match_many(big)])
        except ValueError as exc:
            results.append(str(exc))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    started.wait()
    rs.close()
    for t in threads:
        t.join()
    for r in results:
        assert r == want or r == "RuleSet is closed"
    with pytest.raises(ValueError, match="closed"):
        rs.match("/a")
