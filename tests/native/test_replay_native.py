"""The native replay loops (native/src/esr_replay.c) against the Python reference loops.

These run against the sanitizer build too (native/tests/sanitize.sh).
"""

from __future__ import annotations

from array import array

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgesim import _redirects_cffi as native
from edgesim.replay import POLICIES, ReplayResult, replay
from edgesim.traces import Trace

HUGE = 2**63 - 1  # the largest size a trace column holds

# Sizes mix zero, small values (so that objects repeat with other sizes and caches
# hold several of them) and values near 2**63 (byte sums far beyond 64 bits).
size_st = st.one_of(
    st.just(0),
    st.integers(0, 50),
    st.integers(HUGE - 10, HUGE),
    st.integers(0, HUGE),
)
requests_st = st.lists(st.tuples(st.integers(0, 15), size_st), max_size=120)
capacity_st = st.one_of(
    st.just(0),
    st.integers(0, 200),
    st.integers(HUGE - 10, HUGE + 10),
    st.integers(2**64 - 3, 2**64 + 1),  # around the largest 64-bit capacity
    st.integers(2**64, 2**70),  # beyond it: stored bytes may need more than 64 bits
    st.integers(0, 2**65),
)


def trace_of(requests: list[tuple[int, int]], key_base: int = 0) -> Trace:
    return Trace(
        array("d", range(len(requests))),
        array("Q", [key_base + k for k, _ in requests]),
        array("q", [s for _, s in requests]),
    )


def counts(r: ReplayResult) -> tuple[int, int, int, int]:
    return (r.requests, r.hits, r.bytes, r.hit_bytes)


@pytest.mark.parametrize("policy", sorted(POLICIES))
@settings(max_examples=400, deadline=None)
@given(
    requests=requests_st,
    capacity=capacity_st,
    key_base=st.sampled_from([0, 2**32, 2**64 - 16]),
)
def test_native_agrees_with_python(
    policy: str, requests: list[tuple[int, int]], capacity: int, key_base: int
) -> None:
    trace = trace_of(requests, key_base)
    want = replay(trace, capacity, policy, engine="python")
    got = replay(trace, capacity, policy, engine="native")
    assert counts(got) == counts(want)
    assert (got.hit_ratio, got.byte_hit_ratio) == (want.hit_ratio, want.byte_hit_ratio)
    assert want.engine == "python"
    # the C loop runs every cache below 2**64 bytes, and larger ones whose objects fit
    # in 2**64 - 1 bytes; the others fall back to the Python loop
    native_runs = capacity < 2**64 or _stored_bytes_fit(requests)
    assert got.engine == ("native" if native_runs else "python")


def _stored_bytes_fit(requests: list[tuple[int, int]]) -> bool:
    """Whether a cache of 2**64 - 1 bytes never evicts (it then stores each object at
    its first request's size)."""
    distinct: dict[int, int] = {}
    for k, s in requests:
        distinct.setdefault(k, s)
    return sum(distinct.values()) <= 2**64 - 1


def test_byte_sums_beyond_64_bits() -> None:
    requests = [(i % 2, HUGE) for i in range(40)]
    for policy in POLICIES:
        got = replay(trace_of(requests), 2 * HUGE, policy)
        assert got.engine == "native"
        assert got.bytes == 40 * HUGE
        assert got.hits == 38 and got.hit_bytes == 38 * HUGE  # both fit at once
        assert counts(got) == counts(replay(trace_of(requests), 2 * HUGE, policy, engine="python"))


def test_cache_beyond_64_bits_falls_back_only_when_it_must() -> None:
    # Three objects of 2**63 - 1 bytes: 2**64 - 1 bytes hold two; 2**66 hold all three.
    requests = [(0, HUGE), (1, HUGE), (2, HUGE), (0, HUGE)]
    fits = replay(trace_of(requests), 2**64 - 1)
    assert (fits.engine, fits.hits) == ("native", 0)  # 0 was evicted for 2
    big = replay(trace_of(requests), 2**66)
    assert (big.engine, big.hits) == ("python", 1)
    small = replay(trace_of([(0, 5), (1, 5), (0, 5)]), 2**66)
    assert (small.engine, small.hits) == ("native", 1)


def test_numpy_and_list_columns() -> None:
    rng = np.random.default_rng(7)
    keys = rng.zipf(1.3, 20_000).astype(np.uint64)
    sizes = (keys * 37 % 1000).astype(np.int64)

    def ref(k: np.ndarray, s: np.ndarray) -> Trace:
        return Trace(array("d", range(len(k))), array("Q", k.tolist()), array("q", s.tolist()))

    for policy in POLICIES:
        want = replay(ref(keys, sizes), 50_000, policy, engine="python")
        for k, s in [
            (keys, sizes),  # buffers, passed as they are
            (keys.astype(np.int64), sizes),  # signed keys: the same equalities
            (keys.tolist(), sizes.tolist()),  # lists: converted once
            (keys, sizes.astype(np.uint64)),  # unsigned sizes: converted
        ]:
            got = replay(Trace(array("d", range(len(keys))), k, s), 50_000, policy)
            assert got.engine == "native"
            assert counts(got) == counts(want)
        # a strided view is not one contiguous buffer: converted
        want = replay(ref(keys[::3], sizes[::3]), 50_000, policy, engine="python")
        got = replay(Trace(array("d", range(len(keys[::3]))), keys[::3], sizes[::3]), 50_000, policy)  # type: ignore[arg-type]
        assert got.engine == "native"
        assert counts(got) == counts(want)


def test_columns_beyond_64_bits_use_the_python_loop() -> None:
    # a list may hold keys that no 8-byte column holds (both -1 and 2**64 - 1)
    trace = Trace(array("d", [0, 1, 2, 3]), [-1, 2**64 - 1, -1, 7], [1, 1, 1, 1])  # type: ignore[arg-type]
    r = replay(trace, 10)
    assert (r.engine, r.hits) == ("python", 1)
    negative_keys = Trace(array("d", [0, 1, 2]), [-5, -6, -5], [1, 1, 1])  # type: ignore[arg-type]
    r = replay(negative_keys, 10)
    assert (r.engine, r.hits) == ("native", 1)


def test_c_call_contract() -> None:
    ffi, lib = native.ffi, native.lib
    out = ffi.new("esr_replay_counts *")
    keys = array("Q", [1, 2, 1])
    sizes = array("q", [3, 4, -1])
    with ffi.from_buffer("uint64_t[]", keys) as k, ffi.from_buffer("int64_t[]", sizes) as s:
        assert lib.esr_replay(lib.ESR_REPLAY_LRU, k, s, 3, 10, out) == lib.ESR_EINVAL
        assert lib.esr_replay(99, k, s, 2, 10, out) == lib.ESR_EINVAL
        assert lib.esr_replay(lib.ESR_REPLAY_FIFO, k, s, 2, 10, out) == lib.ESR_OK
    assert (out.requests, out.misses, out.stored, out.used) == (2, 2, 2, 7)
    assert lib.esr_replay(lib.ESR_REPLAY_LRU, ffi.NULL, ffi.NULL, 0, 10, out) == lib.ESR_OK
    assert out.requests == 0
    # the columns were released: the array may grow again
    keys.append(5)
