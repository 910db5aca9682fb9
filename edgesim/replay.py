"""Replay a request trace through one byte-bounded cache (``edgesim replay``).

Theory of operation
-------------------
:func:`replay` runs every request of a :class:`~edgesim.traces.Trace` through one cache
of ``cache_size`` bytes and counts object and byte hits. Each policy is one tight loop
over the trace's key and size columns with an ``OrderedDict`` (a C hash table threaded
by a doubly-linked list) as its queue: ``move_to_end`` and ``popitem(last=False)`` are
O(1). The loops count misses, not hits, so a hit costs one lookup and one move; hits are
``requests - misses``.

Semantics (shared by all policies, and the same as libCacheSim's ``cache_get_base``):

- Capacity is in bytes: the sizes of the stored objects never sum to more than
  ``cache_size``. There is no per-object overhead.
- A request is a hit when its key is stored. On a miss the object is inserted after
  evicting until it fits. An object larger than the whole cache (``size > cache_size``)
  is a miss, is never stored, and evicts nothing. A zero-byte object always fits.
- A request whose size differs from the stored copy's is still a hit, and the stored
  size is left unchanged. libCacheSim does the same (its ``cache_find_base`` matches by
  id only, and ``traceConv`` can even rewrite size changes away); following it keeps
  results comparable with libCacheSim on the same oracleGeneral trace.
- Byte counts use the size in each request: ``bytes`` is the sum over all requests,
  ``hit_bytes`` the sum over hits.

Policies:

- ``lru``: a hit moves the object to the most-recently-used end; a miss evicts from the
  least-recently-used end and inserts at the MRU end.
- ``fifo``: a hit changes nothing; a miss evicts the oldest insertion.

Timing here uses ``time.perf_counter`` around the loop only (reading the trace is not
counted); results never depend on it.
"""

from __future__ import annotations

import bisect
import itertools
import random
import statistics
import time
from array import array
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from edgesim.traces import Trace

__all__ = ["POLICIES", "ReplayResult", "bench", "replay"]

# (keys, sizes, capacity) -> (misses, miss_bytes)
_Loop = Callable[[Sequence[int], Sequence[int], int], tuple[int, int]]


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayResult:
    """Counts of one replay.

    Attributes:
        requests, hits: request counts.
        bytes, hit_bytes: sums of the requested sizes over all requests and over hits.
        hit_ratio, byte_hit_ratio: ``hits/requests`` and ``hit_bytes/bytes`` (0.0 when
            the denominator is 0).
        policy, cache_size: what was replayed.
        seconds: wall time of the replay loop (not of reading the trace).
    """

    requests: int
    hits: int
    bytes: int
    hit_bytes: int
    hit_ratio: float
    byte_hit_ratio: float
    policy: str
    cache_size: int
    seconds: float

    @property
    def rate(self) -> float:
        """Requests replayed per second."""
        return self.requests / self.seconds if self.seconds > 0 else float("inf")

    def as_dict(self) -> dict[str, Any]:
        """The fields plus ``requests_per_second``, for JSON."""
        d = asdict(self)
        d["requests_per_second"] = round(self.rate) if self.seconds > 0 else None
        return d


def _lru(keys: Sequence[int], sizes: Sequence[int], cap: int) -> tuple[int, int]:
    cache: OrderedDict[int, int] = OrderedDict()
    move = cache.move_to_end
    pop = cache.popitem
    used = misses = miss_bytes = 0
    for k, s in zip(keys, sizes, strict=True):
        if k in cache:
            move(k)
        else:
            misses += 1
            miss_bytes += s
            if s <= cap:
                used += s
                while used > cap:
                    used -= pop(False)[1]
                cache[k] = s
    return misses, miss_bytes


def _fifo(keys: Sequence[int], sizes: Sequence[int], cap: int) -> tuple[int, int]:
    cache: OrderedDict[int, int] = OrderedDict()
    pop = cache.popitem
    used = misses = miss_bytes = 0
    for k, s in zip(keys, sizes, strict=True):
        if k not in cache:
            misses += 1
            miss_bytes += s
            if s <= cap:
                used += s
                while used > cap:
                    used -= pop(False)[1]
                cache[k] = s
    return misses, miss_bytes


POLICIES: dict[str, _Loop] = {"lru": _lru, "fifo": _fifo}


def replay(trace: Trace, cache_size: int, policy: str = "lru") -> ReplayResult:
    """Replay ``trace`` through one cache of ``cache_size`` bytes.

    Args:
        trace: the requests (only keys and sizes are used).
        cache_size: capacity in bytes (>= 0).
        policy: a name in :data:`POLICIES` (``"lru"`` or ``"fifo"``).

    Returns:
        The counts, ratios and the loop's wall time.

    Raises:
        ValueError: a negative cache size or an unknown policy.
    """
    if cache_size < 0:
        raise ValueError(f"cache size must be >= 0 bytes, not {cache_size}")
    loop = POLICIES.get(policy)
    if loop is None:
        raise ValueError(f"unknown policy {policy!r} (expected one of {', '.join(POLICIES)})")
    keys, sizes = trace.keys, trace.sizes
    start = time.perf_counter()
    misses, miss_bytes = loop(keys, sizes, cache_size)
    seconds = time.perf_counter() - start
    requests = len(keys)
    total = sum(sizes)
    hits, hit_bytes = requests - misses, total - miss_bytes
    return ReplayResult(
        requests=requests,
        hits=hits,
        bytes=total,
        hit_bytes=hit_bytes,
        hit_ratio=hits / requests if requests else 0.0,
        byte_hit_ratio=hit_bytes / total if total else 0.0,
        policy=policy,
        cache_size=cache_size,
        seconds=seconds,
    )


# ---- benchmark (edgesim bench replay) -------------------------------------------------


def zipf_trace(
    n_requests: int, n_objects: int, alpha: float = 0.9, *, seed: int = 1, mean_size: int = 32_768
) -> Trace:
    """A synthetic trace: keys drawn from Zipf(alpha) over ``n_objects``, each object with
    a fixed size drawn once from an exponential distribution of mean ``mean_size``."""
    rng = random.Random(seed)
    cum = list(itertools.accumulate(1.0 / (i + 1) ** alpha for i in range(n_objects)))
    total = cum[-1]
    obj_sizes = [max(1, int(rng.expovariate(1.0 / mean_size))) for _ in range(n_objects)]
    bis, rand = bisect.bisect, rng.random
    keys = array("Q", [bis(cum, rand() * total) for _ in range(n_requests)])
    sizes = array("q", [obj_sizes[k] for k in keys])
    times = array("d", range(n_requests))
    return Trace(times, keys, sizes)


def _bare_dict(keys: Sequence[int], sizes: Sequence[int], cap: int) -> tuple[int, int]:
    """Baseline: the cheapest loop over the same columns (a dict membership test and an
    insert on first sight, no capacity, no eviction)."""
    seen: dict[int, int] = {}
    misses = miss_bytes = 0
    for k, s in zip(keys, sizes, strict=True):
        if k not in seen:
            misses += 1
            miss_bytes += s
            seen[k] = s
    return misses, miss_bytes


def bench(
    n_requests: int = 2_000_000,
    n_objects: int = 200_000,
    alpha: float = 0.9,
    cache_fraction: float = 0.1,
    repeats: int = 5,
    seed: int = 1,
) -> dict[str, Any]:
    """Replay rate of each policy on a Zipf trace, with a bare dict loop as the baseline
    measured in the same process (machines here are shared and noisy).

    The cache holds ``cache_fraction`` of the trace's working set (bytes of distinct
    objects). Each loop runs ``repeats`` times; rates are requests/s, median and best.

    Returns:
        A JSON-ready dict.
    """
    trace = zipf_trace(n_requests, n_objects, alpha, seed=seed)
    footprint = sum(dict(zip(trace.keys, trace.sizes, strict=True)).values())
    cache_size = int(footprint * cache_fraction)
    loops: dict[str, _Loop] = {"bare_dict": _bare_dict, **POLICIES}
    rates: dict[str, list[float]] = {name: [] for name in loops}
    hit_ratios: dict[str, float] = {}
    for _ in range(repeats):
        for name, loop in loops.items():
            start = time.perf_counter()
            misses, _ = loop(trace.keys, trace.sizes, cache_size)
            rates[name].append(n_requests / (time.perf_counter() - start))
            hit_ratios[name] = 1 - misses / n_requests
    summary = {
        name: {
            "median_per_s": round(statistics.median(r)),
            "best_per_s": round(max(r)),
            "hit_ratio": round(hit_ratios[name], 4),
        }
        for name, r in rates.items()
    }
    base = statistics.median(rates["bare_dict"])
    best_base = max(rates["bare_dict"])
    return {
        "trace": {
            "requests": n_requests,
            "objects": n_objects,
            "zipf_alpha": alpha,
            "working_set_bytes": footprint,
        },
        "cache_size": cache_size,
        "repeats": repeats,
        "rates": summary,
        "ratio_vs_bare_dict": {name: round(statistics.median(rates[name]) / base, 3) for name in POLICIES},
        # Best runs are the least disturbed on a shared machine (as timeit reports).
        "ratio_best_vs_bare_dict": {name: round(max(rates[name]) / best_base, 3) for name in POLICIES},
    }


def read_bench(trace: Trace, repeats: int = 3) -> dict[str, Any]:
    """Reading speed of ``trace`` written as CSV and as oracleGeneral, plain and
    compressed with each compression :func:`~edgesim.traces.read_trace` reads, in a
    temporary folder; the baseline of each format is its plain file, read in the same
    process (the machines are shared and noisy).

    Returns:
        A JSON-ready dict: per format and compression the file's size, the requests read
        per second (median and best of ``repeats``), and the median's ratio to the plain
        file's.
    """
    import bz2
    import gzip
    import lzma
    import tempfile
    from pathlib import Path

    import zstandard

    from edgesim.traces import read_trace, write_trace

    packers: dict[str, Callable[[bytes], bytes]] = {
        "plain": lambda b: b,
        "gzip": gzip.compress,
        "bzip2": bz2.compress,
        "xz": lzma.compress,
        "zstd": zstandard.ZstdCompressor().compress,
    }
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="edgesim-read-") as tmp:
        for fmt, name in (("csv", "t.csv"), ("oracle-general", "t.oracleGeneral")):
            plain = Path(tmp) / name
            write_trace(plain, trace, fmt)
            raw = plain.read_bytes()
            files = {kind: plain for kind in ("plain",)}
            for kind, pack in packers.items():
                if kind != "plain":
                    files[kind] = Path(tmp) / f"{name}.{kind}"
                    files[kind].write_bytes(pack(raw))
            rates: dict[str, list[float]] = {kind: [] for kind in files}
            for _ in range(repeats):
                for kind, path in files.items():
                    start = time.perf_counter()
                    n = len(read_trace(path))
                    rates[kind].append(n / (time.perf_counter() - start))
            base = statistics.median(rates["plain"])
            out[fmt] = {
                kind: {
                    "file_bytes": files[kind].stat().st_size,
                    "median_per_s": round(statistics.median(r)),
                    "best_per_s": round(max(r)),
                    "ratio_vs_plain": round(statistics.median(r) / base, 3),
                }
                for kind, r in rates.items()
            }
    return out
