"""Replay a request trace through one byte-bounded cache (``edgesim replay``).

Theory of operation
-------------------
:func:`replay` runs every request of a :class:`~edgesim.traces.Trace` through one cache
of ``cache_size`` bytes and counts object and byte hits. Each policy exists twice:

- **native** (the default): one C call, ``esr_replay`` (``native/src/esr_replay.c``, in
  the package's cffi module), over the trace's key and size columns passed as buffers
  (``array('Q')``/``array('q')`` or numpy arrays of 8-byte integers; other sequences
  are converted once). The cache is an open-addressing hash table of the stored keys
  and a doubly-linked list of 32-bit node indexes; the call allocates and frees it,
  and holds the columns only for its duration. 8 to 22 times the Python loop's rate
  on a loaded machine (docs/replay.md, "Performance").
- **python**, the reference: the loops :data:`POLICIES`, each one tight loop with an
  ``OrderedDict`` (a C hash table threaded by a doubly-linked list) as its queue:
  ``move_to_end`` and ``popitem(last=False)`` are O(1). The loops count misses, not
  hits, so a hit costs one lookup and one move; hits are ``requests - misses``.
  ``engine="python"`` (``edgesim replay --engine python``) runs them; the native loops
  are tested against them (tests/native/test_replay_native.py).

Both give identical counts. The native engine falls back to the Python loop, and says
so in :attr:`ReplayResult.engine`, when the extension module is missing or older than
``esr_replay`` (a tree not rebuilt), and in two more cases: columns that do not fit 8-byte
integers (keys that fit neither uint64 nor int64 as a whole, such as -1 beside
2**64 - 1, or a size of 2**63 bytes or more; any 8-byte key type will do, since only
key equality matters), and a cache of 2**64 bytes or more whose objects did not all fit
in 2**64 - 1 bytes (the C loop counts stored bytes in 64 bits: it runs such a cache as
2**64 - 1 bytes and the Python loop reruns it if that ever evicted). Byte sums over the
requests are exact in both (128-bit sums in C). Memory the C loop cannot allocate is a
``MemoryError``.

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
- Sizes are never negative (:class:`~edgesim.traces.Trace` readers reject them);
  :func:`replay` raises ``ValueError`` for a column that has one.

Policies:

- ``lru``: a hit moves the object to the most-recently-used end; a miss evicts from the
  least-recently-used end and inserts at the MRU end.
- ``fifo``: a hit changes nothing; a miss evicts the oldest insertion.

Timing here uses ``time.perf_counter`` around the loop only (reading the trace, and
converting columns that are not buffers, is not counted); results never depend on it.
"""

from __future__ import annotations

import bisect
import itertools
import random
import statistics
import sys
import time
from array import array
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from edgesim.traces import Trace

__all__ = ["ENGINES", "POLICIES", "ReplayResult", "bench", "replay"]

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
        engine: the loop that ran, ``"native"`` or ``"python"``.
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
    engine: str = "python"

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
ENGINES = ("native", "python")

_U64 = (1 << 64) - 1
# memoryview formats of 8-byte integers in native byte order (array and numpy alike)
_PREFIXES = ("", "@", "=") + (("<",) if sys.byteorder == "little" else (">",))
_SIGNED = frozenset(p + c for p in _PREFIXES for c in "lq")
_UNSIGNED = frozenset(p + c for p in _PREFIXES for c in "LQ")


def _column(col: Sequence[int], formats: frozenset[str], code: str) -> Any:
    """``col`` as a contiguous buffer of 8-byte integers in one of ``formats``, or as a
    new ``array(code)`` of it; ``None`` when its values do not fit ``code``."""
    try:
        view = memoryview(col)  # type: ignore[arg-type]
    except TypeError:
        pass
    else:
        with view:
            if view.ndim == 1 and view.itemsize == 8 and view.c_contiguous and view.format in formats:
                return col
    try:
        return array(code, col)
    except (OverflowError, TypeError):
        return None


def _native_counts(
    policy: str, keys: Any, sizes: Any, n: int, cache_size: int
) -> tuple[int, int, int, int] | None:
    """``(misses, miss_bytes, bytes, evictions)`` of the C loop over buffer columns
    (from :func:`_column`), or ``None`` when only the Python loop can give them."""
    from edgesim import _redirects_cffi as native

    ffi, lib = native.ffi, native.lib
    code = lib.ESR_REPLAY_LRU if policy == "lru" else lib.ESR_REPLAY_FIFO
    out = ffi.new("esr_replay_counts *")
    # from_buffer pins the columns (an array cannot be resized while exported) for the
    # call only: the with blocks release them before returning.
    with ffi.from_buffer("uint64_t[]", keys) as k, ffi.from_buffer("int64_t[]", sizes) as s:
        rc = lib.esr_replay(code, k, s, n, min(cache_size, _U64), out)
    if rc == lib.ESR_ENOMEM:
        raise MemoryError(f"out of memory replaying {n:,} requests")
    if rc == lib.ESR_ERANGE:
        raise MemoryError(f"replaying {n:,} requests: more than 2**31 objects in the cache at once")
    if rc == lib.ESR_EINVAL:
        raise ValueError(_negative_size_message(sizes))
    if rc != lib.ESR_OK:
        raise RuntimeError(f"esr_replay failed with code {rc}")
    if cache_size > _U64 and out.evictions:
        return None  # the stored bytes outgrew 64 bits: only Python counts them
    miss_bytes = out.miss_bytes[1] << 64 | out.miss_bytes[0]
    total = out.bytes[1] << 64 | out.bytes[0]
    return out.misses, miss_bytes, total, out.evictions


def _have_native() -> bool:
    """Whether the extension module loads and has ``esr_replay`` (it is then loaded
    before a clock starts)."""
    try:
        from edgesim import _redirects_cffi as native
    except ImportError:
        return False
    return hasattr(native.lib, "esr_replay")


def _negative_size_message(sizes: Sequence[int]) -> str:
    i = next((i for i, s in enumerate(sizes) if s < 0), -1)
    return f"request {i}: size {sizes[i]} is negative" if i >= 0 else "bad replay arguments"


def replay(trace: Trace, cache_size: int, policy: str = "lru", *, engine: str = "native") -> ReplayResult:
    """Replay ``trace`` through one cache of ``cache_size`` bytes.

    Args:
        trace: the requests (only keys and sizes are used).
        cache_size: capacity in bytes (>= 0).
        policy: a name in :data:`POLICIES` (``"lru"`` or ``"fifo"``).
        engine: ``"native"`` (the C loop, falling back to Python where the module
            docstring says) or ``"python"`` (the reference loop). Counts are identical.

    Returns:
        The counts, ratios, the loop's wall time and the engine that ran.

    Raises:
        ValueError: a negative cache size or size, or an unknown policy or engine.
        MemoryError: the native cache could not be allocated.
    """
    if cache_size < 0:
        raise ValueError(f"cache size must be >= 0 bytes, not {cache_size}")
    loop = POLICIES.get(policy)
    if loop is None:
        raise ValueError(f"unknown policy {policy!r} (expected one of {', '.join(POLICIES)})")
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r} (expected one of {', '.join(ENGINES)})")
    keys, sizes = trace.keys, trace.sizes
    requests = len(keys)
    counts = None
    if engine == "native":
        kcol = _column(keys, _UNSIGNED | _SIGNED, "Q")
        if kcol is None:
            kcol = _column(keys, _UNSIGNED | _SIGNED, "q")  # negative ids: any 8-byte ids do
        scol = _column(sizes, _SIGNED, "q")
        if kcol is not None and scol is not None and _have_native():
            start = time.perf_counter()
            counts = _native_counts(policy, kcol, scol, requests, cache_size)
            seconds = time.perf_counter() - start
    if counts is not None:
        misses, miss_bytes, total, _ = counts
        engine = "native"
    else:
        if requests and min(sizes) < 0:
            raise ValueError(_negative_size_message(sizes))
        start = time.perf_counter()
        misses, miss_bytes = loop(keys, sizes, cache_size)
        seconds = time.perf_counter() - start
        total = sum(sizes)
        engine = "python"
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
        engine=engine,
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


def _native_loop(policy: str) -> _Loop:
    """The C loop of ``policy`` with the Python loops' signature (for :func:`bench`)."""

    def loop(keys: Sequence[int], sizes: Sequence[int], cap: int) -> tuple[int, int]:
        counts = _native_counts(policy, keys, sizes, len(keys), cap)
        assert counts is not None  # bench's caches are far below 2**64 bytes
        return counts[0], counts[1]

    return loop


def bench(
    n_requests: int = 2_000_000,
    n_objects: int = 200_000,
    alpha: float = 0.9,
    cache_fraction: float = 0.1,
    repeats: int = 5,
    seed: int = 1,
) -> dict[str, Any]:
    """Replay rate of each policy, native and Python, on a Zipf trace, with a bare dict
    loop as the baseline measured in the same process (machines here are shared and
    noisy).

    The cache holds ``cache_fraction`` of the trace's working set (bytes of distinct
    objects). Each loop runs ``repeats`` times, in turn; rates are requests/s, median
    and best.

    Returns:
        A JSON-ready dict: ``rates`` per loop (``bare_dict``, ``python_lru``,
        ``python_fifo``, ``native_lru``, ``native_fifo``), each loop's ratio to the bare
        dict (medians, and bests), and each native loop's ratio to its Python loop.

    Raises:
        RuntimeError: the native loops are not built, or a native loop's counts differ
            from its Python loop's.
    """
    if not _have_native():
        raise RuntimeError(
            "the native replay loops are not built (rebuild the extension: "
            "pip install ., or python setup.py build_ext --inplace)"
        )
    trace = zipf_trace(n_requests, n_objects, alpha, seed=seed)
    footprint = sum(dict(zip(trace.keys, trace.sizes, strict=True)).values())
    cache_size = int(footprint * cache_fraction)
    loops: dict[str, _Loop] = {"bare_dict": _bare_dict}
    loops.update({f"python_{name}": loop for name, loop in POLICIES.items()})
    loops.update({f"native_{name}": _native_loop(name) for name in POLICIES})
    rates: dict[str, list[float]] = {name: [] for name in loops}
    counts: dict[str, tuple[int, int]] = {}
    for _ in range(repeats):
        for name, loop in loops.items():
            start = time.perf_counter()
            counts[name] = loop(trace.keys, trace.sizes, cache_size)
            rates[name].append(n_requests / (time.perf_counter() - start))
    for name in POLICIES:
        if counts[f"native_{name}"] != counts[f"python_{name}"]:
            raise RuntimeError(
                f"native {name} counted (misses, miss bytes) {counts[f'native_{name}']}, "
                f"the Python loop {counts[f'python_{name}']}"
            )
    summary = {
        name: {
            "median_per_s": round(statistics.median(r)),
            "best_per_s": round(max(r)),
            "hit_ratio": round(1 - counts[name][0] / n_requests, 4),
        }
        for name, r in rates.items()
    }
    med = {name: statistics.median(r) for name, r in rates.items()}
    best = {name: max(r) for name, r in rates.items()}
    rows = [name for name in loops if name != "bare_dict"]
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
        "ratio_vs_bare_dict": {name: round(med[name] / med["bare_dict"], 3) for name in rows},
        # Best runs are the least disturbed on a shared machine (as timeit reports).
        "ratio_best_vs_bare_dict": {name: round(best[name] / best["bare_dict"], 3) for name in rows},
        "native_vs_python": {
            name: round(med[f"native_{name}"] / med[f"python_{name}"], 2) for name in POLICIES
        },
        "native_best_vs_python_best": {
            name: round(best[f"native_{name}"] / best[f"python_{name}"], 2) for name in POLICIES
        },
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
