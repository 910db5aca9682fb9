"""Miss-ratio curves: LRU hit ratio as a function of cache size, in one pass.

Theory of operation
-------------------
A byte-capacity LRU cache (the semantics of :mod:`edgesim.replay`: capacity in bytes,
an object larger than the cache is never stored and evicts nothing) always holds the
longest prefix of the recency stack whose sizes fit, counting only objects that are
small enough to be stored at all. (Proof sketch: a hit reorders inside that prefix; a
miss puts the object on top and evicts from the bottom of the cached prefix only as
far as needed, which is again the longest fitting prefix.) So a request for key ``k``
hits a cache of ``C`` bytes exactly when its *byte stack distance* fits:

    size(k) + sum of sizes of the distinct storable objects requested since the
    previous request for k  <=  C

One pass computes that distance for every request with Fenwick trees (binary indexed
trees) over request positions: each object's size sits at the position of its latest
request, so the distinct objects since ``k``'s previous request at ``p`` weigh
``total - prefix(p)``, in O(log n). Objects too large for some of the requested
capacities are kept in separate trees by size class (one per capacity interval that
actually has objects), so that each capacity counts exactly the objects it could store.
Usually every object fits the smallest capacity and there is one tree.

Large inputs use SHARDS (Waldspurger et al., FAST '15) fixed-rate spatial sampling:
only requests whose key hashes below ``rate`` are processed (the hash is salted by a
seed, so which keys are in does not follow the order in which keys first appear), and
the sampled objects above ``k`` in the stack stand for ``1 / rate`` times their bytes
(``k``'s own size is exact). SHARDS-adj corrects both the request count and the byte
count for the sample's deviation from its expectation. Hit ratios are then estimates
whose error is dominated by the most requested keys being in the sample or not: on a
Zipf(0.9) trace of 200,000 objects the mean absolute error is about 0.005 at rate 0.5
and 0.02 at rate 0.1, with single points off by several hundredths (docs/mrc.md has the
measured figures). :func:`auto_rate` picks a rate that keeps that noise small. A
sample below that rate is stratified (:func:`auto_sample`): the most requested keys are
processed in full (weight 1) and only the others are sampled (weight ``1 / rate``), which
removes the worst outliers but costs the head's requests.

Assumption: an object's size is the size of its latest request. ``edgesim replay``
keeps the size stored at insertion while a copy stays cached (and counts a hit whatever
the new request's size), so traces in which keys change size can differ by a lot (a key
at 1 byte then 9 times at 1,000 bytes in a 10-byte cache: replay 0.9, the curve 0.0);
fixed-size keys agree exactly (an exact pass sums in integers: float sums rounded above
2**53 bytes).

Curves of synthetic topologies (:func:`topology_trace`) model the request stream of
one region (or one site in it); docs/mrc.md explains how they relate to the
multi-tier, TTL-bound caches of a full run.
"""

from __future__ import annotations

import bisect
import itertools
import math
from array import array
from collections.abc import Collection, Iterable, MutableSequence, Sequence
from dataclasses import dataclass
from typing import Any, Final

from edgesim.topology import Topology
from edgesim.traces import Trace

__all__ = [
    "Curve",
    "auto_rate",
    "auto_sample",
    "default_sizes",
    "lru_curve",
    "topology_trace",
]

# Above this many requests a curve is computed on a SHARDS sample by default: the
# exact pass runs at a few hundred thousand requests per second in pure Python.
SAMPLE_ABOVE = 1_000_000
# The SHARDS hash threshold's resolution (the paper uses a modulus of 2**24).
_MODULUS = 1 << 24
_MASK64 = (1 << 64) - 1
# auto_rate keeps the relative standard deviation of the sampled request count,
# sqrt((1 - rate) / rate * sum of p_k ** 2) (p_k: key k's share of the requests), at
# most this: the most requested keys being in or out of the sample is what makes a
# SHARDS estimate err on skewed traces.
HEAD_NOISE: Final = 0.05
# auto_rate estimates sum of p_k ** 2 on at most this many requests (a stride).
_HEAD_SAMPLE = 2_000_000
# auto_sample's head (keys processed in full) has at most this many keys: finding them
# is a numpy isin over the trace (cheap), but every request of theirs is processed, and
# the heads the noise bound asks for are far smaller (tens to hundreds of keys: docs/mrc.md).
MAX_HEAD: Final = 10_000


@dataclass(frozen=True, slots=True)
class Curve:
    """Hit ratios of one request stream at a list of LRU cache sizes.

    Attributes:
        sizes: cache sizes in bytes, ascending.
        hit_ratio, byte_hit_ratio: one value per size.
        requests: requests in the stream (all of them, even with sampling).
        sampled_requests: requests the pass looked at (= ``requests`` without sampling).
        objects: distinct keys looked at.
        footprint: bytes of the distinct objects looked at (scaled up when sampled).
        sample_rate: SHARDS rate (1.0: exact).
        exact_keys: keys processed exactly in a sampled pass (the head of a stratified
            sample); 0 without sampling.
    """

    sizes: tuple[int, ...]
    hit_ratio: tuple[float, ...]
    byte_hit_ratio: tuple[float, ...]
    requests: int
    sampled_requests: int
    objects: int
    footprint: int
    sample_rate: float
    exact_keys: int = 0

    def at(self, size: int) -> float:
        """The hit ratio at ``size`` bytes, interpolated linearly in log(size) between
        the computed sizes (linearly from a computed size of 0 bytes, and from 0 below
        the smallest), clamped at the ends."""
        s = self.sizes
        if not s:
            return 0.0
        if size <= s[0]:
            return self.hit_ratio[0] if size >= s[0] or s[0] <= 0 else self.hit_ratio[0] * max(size, 0) / s[0]
        if size >= s[-1]:
            return self.hit_ratio[-1]
        i = bisect.bisect_right(s, size)
        lo, hi = s[i - 1], s[i]
        # from a 0-byte cache linearly (log(0) is not), else linearly in log(size)
        f = size / hi if lo <= 0 else (math.log(size) - math.log(lo)) / (math.log(hi) - math.log(lo))
        return self.hit_ratio[i - 1] * (1 - f) + self.hit_ratio[i] * f

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "sampled_requests": self.sampled_requests,
            "sample_rate": self.sample_rate,
            "exact_keys": self.exact_keys,
            "objects": self.objects,
            "footprint_bytes": self.footprint,
            "points": [
                {"cache_size": s, "hit_ratio": h, "byte_hit_ratio": b}
                for s, h, b in zip(self.sizes, self.hit_ratio, self.byte_hit_ratio, strict=True)
            ],
        }


def _mix64(x: int) -> int:
    """splitmix64's finaliser: a cheap, well-spread hash of a 64-bit key."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def _mix64_np(x: Any) -> Any:
    """:func:`_mix64` of every element of a numpy uint64 array (wrapping arithmetic)."""
    import numpy as np

    u = np.uint64
    with np.errstate(over="ignore"):
        x = x + u(0x9E3779B97F4A7C15)
        x = (x ^ (x >> u(30))) * u(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> u(27))) * u(0x94D049BB133111EB)
    return x ^ (x >> u(31))


def _sample_hash(key: int, seed: int) -> int:
    """The SHARDS hash of ``key`` in [0, _MODULUS): salted by ``seed``, so that which
    keys are sampled does not depend on how keys were numbered (CSV keys are numbered
    in order of first appearance, and the first keys are often the hottest)."""
    return _mix64(key ^ _mix64(seed & _MASK64)) % _MODULUS


def auto_rate(keys: Sequence[int]) -> float:
    """The SHARDS rate :func:`trace_curve` uses by default: 1 (exact) up to
    :data:`SAMPLE_ABOVE` requests; above, the larger of ``SAMPLE_ABOVE / len(keys)``
    and the rate at which the sampled request count's relative standard deviation,
    ``sqrt((1 - rate) / rate * sum p_k**2)``, is :data:`HEAD_NOISE` (``sum p_k**2``,
    the chance that two requests are for the same key, estimated on a stride of at most
    2,000,000 requests). A trace whose requests are spread over many keys is sampled at
    ``SAMPLE_ABOVE / len``; one with a heavy head gets a higher rate (0.55 for Zipf 0.9
    over 200,000 objects)."""
    import numpy as np

    n = len(keys)
    if n <= SAMPLE_ABOVE:
        return 1.0
    sub = np.asarray(keys, dtype=np.uint64)[:: max(1, n // _HEAD_SAMPLE)]
    counts = np.unique(sub, return_counts=True)[1].astype(np.float64)
    m = float(len(sub))
    concentration = float((counts * (counts - 1.0)).sum()) / (m * (m - 1.0))
    head = concentration / (concentration + HEAD_NOISE**2)
    return min(1.0, max(SAMPLE_ABOVE / n, head))


def auto_sample(
    keys: Sequence[int], rate: float | None = None, *, max_head: int = MAX_HEAD
) -> tuple[float, tuple[int, ...]]:
    """A stratified SHARDS sample for :func:`lru_curve`: ``(rate, exact_keys)``.

    ``rate`` defaults to :func:`auto_rate`. The head (``exact_keys``, processed in full)
    is the smallest set of most requested keys that leaves the sample's noise at most
    :data:`HEAD_NOISE`: the weighted request count's relative standard deviation,
    ``sqrt((1 - rate) / rate * sum of p_k**2 over the keys outside the head)``
    (``p_k``: key k's share of the requests), with at most ``max_head`` keys (the bound
    may then be missed). Key counts come from a stride of at most 2,000,000 requests;
    keys are taken by decreasing count (ties: smaller key first), so the choice is
    deterministic, and keys the stride misses are in the tail. :func:`auto_rate`
    already meets the bound without a head, so the default sample has none; a lower
    ``rate`` gets one (docs/mrc.md, "SHARDS accuracy", has what it buys and costs).
    """
    import numpy as np

    if rate is None:
        rate = auto_rate(keys)
    n = len(keys)
    if rate >= 1.0 or n == 0 or max_head <= 0:
        return rate, ()
    sub = np.asarray(keys, dtype=np.uint64)[:: max(1, n // _HEAD_SAMPLE)]
    uniq, counts = np.unique(sub, return_counts=True)
    m = float(len(sub))
    order = np.lexsort((uniq, -counts))[:max_head]  # count down, then key up
    c = counts.astype(np.float64)
    pairs = c * (c - 1.0)
    # the tail's sum of p_k**2 with the first h keys out, h = 0..len(order)
    norm = m * (m - 1.0) if m > 1 else 1.0
    tail = np.maximum((pairs.sum() - np.concatenate(([0.0], np.cumsum(pairs[order])))) / norm, 0.0)
    ok = np.flatnonzero((1.0 - rate) / rate * tail <= HEAD_NOISE**2)
    h = int(ok[0]) if len(ok) else len(order)
    return rate, tuple(int(k) for k in np.sort(uniq[order[:h]]))


def lru_curve(
    keys: Sequence[int],
    sizes: Sequence[int],
    capacities: Sequence[int],
    *,
    sample_rate: float = 1.0,
    seed: int = 1,
    exact_keys: Collection[int] = (),
) -> Curve:
    """Hit ratios of LRU caches of each capacity on one request stream, in one pass.

    Args:
        keys, sizes: the requests (object ids and sizes in bytes), in order.
        capacities: cache sizes in bytes (>= 0; sorted and deduplicated here).
        sample_rate: SHARDS rate in (0, 1]; 1.0 computes exact ratios.
        seed: salts the SHARDS key hash (which keys are sampled); the same seed gives
            the same sample.
        exact_keys: with ``sample_rate`` < 1, keys processed exactly whatever their
            hash (every request of theirs, weight 1): the sample is stratified, the
            most requested keys (the head, :func:`auto_sample`) in full and the others
            at ``sample_rate`` (weight ``1 / rate``). Ignored without sampling.

    Returns:
        The :class:`Curve`.

    Raises:
        ValueError: no capacities, a negative one, a rate outside (0, 1], or one that
            samples none of the requests (or none of those outside ``exact_keys``).
    """
    if not 0.0 < sample_rate <= 1.0:
        raise ValueError(f"sample rate must be in (0, 1], not {sample_rate!r}")
    caps = sorted(set(int(c) for c in capacities))
    if not caps:
        raise ValueError("no cache sizes given")
    if caps[0] < 0:
        raise ValueError(f"cache sizes must be >= 0 bytes, not {caps[0]}")
    ncap = len(caps)
    rate = sample_rate
    threshold = int(rate * _MODULUS)
    all_bytes = 0
    n_head = n_exact_keys = 0
    # Every processed request carries its key's weight: 1 (int) for an exact key (all
    # of them without sampling), 1 / rate for a key sampled by hash. The trees and
    # totals hold weighted bytes, so a distance is k's own size (exact: scaling it
    # biases small caches) plus the weighted bytes of the objects above k (SHARDS).
    weights: Iterable[float] = itertools.repeat(1)
    if rate < 1.0:
        import numpy as np

        karr = np.asarray(keys, dtype=np.uint64)
        sarr = np.asarray(sizes, dtype=np.int64)
        if len(karr) != len(sarr):
            raise ValueError(f"{len(karr)} keys but {len(sarr)} sizes")
        hashed = _mix64_np(karr ^ np.uint64(_mix64(seed & _MASK64))) & np.uint64(_MODULUS - 1)
        by_hash = hashed < np.uint64(threshold)
        head = np.zeros(len(karr), dtype=bool)
        if len(exact_keys):
            hk = np.unique(np.fromiter(exact_keys, dtype=np.uint64, count=len(exact_keys)))
            n_exact_keys = len(hk)
            head = np.isin(karr, hk)
        pick = np.flatnonzero(by_hash | head)
        skeys: Sequence[int] = karr[pick].tolist()
        ssizes: Sequence[int] = sarr[pick].tolist()
        # (numpy's int64 sum wraps around: exact Python ints where it could)
        all_bytes = int(sarr.sum()) if int(sarr.max(initial=0)) * len(sarr) < 2**63 else sum(sarr.tolist())
        if not skeys and len(karr):
            raise ValueError(f"sample rate {rate:g} kept none of the {len(keys):,} requests (raise it)")
        if threshold == 0 and not head.all():
            raise ValueError(
                f"sample rate {rate:g} kept none of the {int((~head).sum()):,} requests outside "
                "the exact keys (raise it)"
            )
        # the rate the hash threshold actually applies
        rate_eff = threshold / _MODULUS
        inv = 1.0 / rate_eff if threshold else 0.0  # (no key has it when 0)
        hp = head[pick]
        n_head = int(hp.sum())
        w_arr = np.full(len(pick), inv, dtype=object)
        w_arr[hp] = 1
        weights = w_arr.tolist()
    else:
        skeys, ssizes = keys, sizes
        rate_eff = 1.0
        inv = 1.0
    n = len(skeys)
    # Without sampling every weight is the int 1, so the trees and sums hold exact
    # integers: in "q" arrays while the bytes of all requests fit in 63 bits, else in
    # lists of Python ints. (Float sums round above 2**53 bytes, about 9 PB, and then
    # disagreed with replay on whether an object fits.) A sample's weights are floats.
    exact = rate >= 1.0
    tree_code = "d" if not exact else "q" if sum(ssizes) < 2**63 else ""
    trees: dict[int, MutableSequence[float]] = {}
    totals: dict[int, float] = {}
    hits_from: list[float] = [0] * (ncap + 1)  # difference arrays over capacity indices
    bytes_from: list[float] = [0] * (ncap + 1)
    hits_at: list[float] = [0] * ncap  # the general case (several classes): direct counts
    bytes_at: list[float] = [0] * ncap
    last: dict[int, int] = {}  # key -> 1-based position of its latest request
    cls_of: dict[int, int] = {}
    wbytes_of: dict[int, float] = {}  # key -> its weighted bytes in the trees
    total_bytes: float = 0  # weighted
    for i, k, s, wt in zip(range(n), skeys, ssizes, weights, strict=False):  # weights: maybe endless
        ws = s * wt
        total_bytes += ws
        q = bisect.bisect_left(caps, s)
        pos = i + 1
        p = last.get(k)
        if p is not None:
            oq = cls_of[k]
            if q < ncap:  # else: too large for every capacity, a miss at all
                # distance per populated class <= m, cumulative in class order
                classes = sorted(trees) if len(trees) > 1 else list(trees)
                # bytes of the other objects above k, cumulative in class order
                others: float = 0
                acc: list[tuple[int, float]] = []
                for c in classes:
                    t = trees[c]
                    j = p
                    pre: float = 0
                    while j > 0:
                        pre += t[j]
                        j -= j & -j
                    others += totals[c] - pre  # k's own old entry is at p: not counted
                    acc.append((c, s + others))
                if len(acc) == 1 and acc[0][0] <= q:
                    # one class, storable from q on: hits from the first fitting capacity
                    m0 = max(q, bisect.bisect_left(caps, acc[0][1]))
                    hits_from[m0] += wt
                    bytes_from[m0] += ws
                else:
                    for m in range(q, ncap):
                        dm: float = s
                        for c, cum in acc:
                            if c <= m:
                                dm = cum
                        if dm <= caps[m]:
                            hits_at[m] += wt
                            bytes_at[m] += ws
            # remove k from its old position
            t = trees[oq]
            w = -wbytes_of[k]
            j = p
            while j <= n:
                t[j] += w
                j += j & -j
            totals[oq] += w
        t2 = trees.get(q)
        if t2 is None:
            t2 = trees[q] = array(tree_code, bytes(8 * (n + 1))) if tree_code else [0] * (n + 1)
            totals[q] = 0
        j = pos
        while j <= n:
            t2[j] += ws
            j += j & -j
        totals[q] += ws
        last[k] = pos
        cls_of[k] = q
        wbytes_of[k] = ws
    hr: list[float] = []
    bhr: list[float] = []
    # (ints without sampling: the ratios are then int / int, as replay's)
    run_h: float = 0
    run_b: float = 0
    denom: float = n
    denom_b: float = total_bytes
    if rate < 1.0 and n:
        # SHARDS-adj (the paper's section 4.3) on the weighted counts: hot keys make the
        # sampled request count differ from its expectation (the weighted count, from
        # the true count); the difference goes to the smallest distances, and ratios are
        # taken over the true count. The same for bytes. Exact keys are counted in full,
        # so only the sampled tail deviates.
        weighted = n_head + (n - n_head) * inv
        hits_from[0] += len(keys) - weighted
        denom = float(len(keys))
        bytes_from[0] += all_bytes - total_bytes
        denom_b = float(all_bytes)
    for m in range(ncap):
        run_h += hits_from[m]
        run_b += bytes_from[m]
        h = run_h + hits_at[m]
        b = run_b + bytes_at[m]
        hr.append(min(1.0, max(0.0, h / denom)) if denom > 0 else 0.0)
        bhr.append(min(1.0, max(0.0, b / denom_b)) if denom_b > 0 else 0.0)
    footprint = sum(wbytes_of.values())  # weighted
    return Curve(
        sizes=tuple(caps),
        hit_ratio=tuple(hr),
        byte_hit_ratio=tuple(bhr),
        requests=len(keys),
        sampled_requests=n,
        objects=len(last),
        footprint=int(footprint),
        sample_rate=rate,
        exact_keys=n_exact_keys,
    )


def default_sizes(footprint: int, *, smallest: int = 2**20, points: int = 16) -> list[int]:
    """Cache sizes for a curve: powers of two from ``smallest`` up to the first one at
    or above ``footprint`` (at most ``points`` sizes, the largest ones kept)."""
    sizes = [smallest]
    while sizes[-1] < footprint:
        sizes.append(sizes[-1] * 2)
    return sizes[-points:]


def trace_curve(
    trace: Trace,
    capacities: Sequence[int] | None = None,
    *,
    sample_rate: float | None = None,
    seed: int = 1,
    head: bool = True,
) -> Curve:
    """:func:`lru_curve` of a whole trace (default sizes from its footprint; SHARDS at
    :func:`auto_rate` unless ``sample_rate`` is given, stratified by :func:`auto_sample`
    unless ``head`` is false; ``seed`` salts the sample)."""
    rate, head_keys = auto_sample(trace.keys, sample_rate, max_head=MAX_HEAD if head else 0)
    if capacities is None:
        foot = sum(dict(zip(trace.keys, trace.sizes, strict=True)).values())
        capacities = default_sizes(max(foot, 1))
    return lru_curve(trace.keys, trace.sizes, capacities, sample_rate=rate, seed=seed, exact_keys=head_keys)


def select(trace: Trace, region: str | None, site: str | None) -> Trace:
    """The requests of ``trace`` placed in ``region`` and/or ``site``.

    Raises:
        ValueError: the trace has no placement columns, or no such region or site.
    """
    if region is None and site is None:
        return trace
    if trace.regions is None or trace.sites is None:
        raise ValueError("the trace has no region and site columns (CSV time,key,size,region,site)")
    keep = [True] * len(trace)
    for name, names, col, what in (
        (region, trace.region_names, trace.regions, "region"),
        (site, trace.site_names, trace.sites, "site"),
    ):
        if name is None:
            continue
        if name not in names:
            known = ", ".join(names) or "none"
            raise ValueError(f"no {what} {name!r} in the trace (it has: {known})")
        idx = names.index(name)
        keep = [a and b == idx for a, b in zip(keep, col, strict=True)]
    pick = [i for i, ok in enumerate(keep) if ok]
    return Trace(
        array("d", (trace.times[i] for i in pick)),
        array("Q", (trace.keys[i] for i in pick)),
        array("q", (trace.sizes[i] for i in pick)),
    )


# ---- synthetic streams of a topology ---------------------------------------------------

# The most requests topology_trace draws (they are held in memory: about 70 bytes each
# while drawn and measured, 80 counted)
MAX_DRAWN: Final = 100_000_000
_BYTES_PER_DRAWN: Final = 80


def topology_trace(
    topo: Topology,
    *,
    region: str | None = None,
    site: str | None = None,
    requests: int | None = None,
    seed: int = 1,
) -> Trace:
    """A synthetic request stream of ``topo``'s cacheable catalog requests.

    Sites are mixed by their ``share``; within a site, object ``i`` of the catalog
    (the origin's layout, so sizes match a run) has Zipf weight ``1 / (i + 1) ** zipf``,
    as in the capacity engine. Redirect requests (answered at the edge) and sites
    backed by a directory (no catalog) are left out. Every region sees the same
    popularity, so ``region`` only sets the default length: the region's requests over
    the traffic's duration at its peak rate. Keys are ``site << 40 | object``.

    Raises:
        ValueError: an unknown region or site, or no synthetic site to draw from.
    """
    import numpy as np

    from edgesim.engine import check_catalogs, origin_catalog_spec, physical_memory
    from origin.core import OriginCore, parse_config

    if region is not None and region not in {r.name for r in topo.regions}:
        known = ", ".join(r.name for r in topo.regions)
        raise ValueError(f"no region {region!r} in {topo.name} (it has: {known})")
    names = [s.name for s in topo.sites]
    if site is not None and site not in names:
        raise ValueError(f"no site {site!r} in {topo.name} (it has: {', '.join(names)})")
    chosen = [
        (i, s) for i, s in enumerate(topo.sites) if s.catalog is not None and (site is None or s.name == site)
    ]
    if not chosen:
        raise ValueError(f"{topo.name}: no synthetic site (with a catalog) to draw requests from")
    check_catalogs(s for _, s in chosen)
    tr = topo.traffic
    peak = tr.peak_rps * (max(tr.diurnal) if tr.diurnal else 1.0)
    if requests is None:
        share = topo.region(region).client_share if region is not None else 1.0
        site_share = sum(s.share for _, s in chosen) / (sum(s.share for s in topo.sites) or 1.0)
        expected = max(1000.0, peak * share * site_share * tr.duration)
        if expected > MAX_DRAWN:
            raise ValueError(
                f"{topo.name}: its traffic makes about {expected:.3g} requests, more than the "
                f"{MAX_DRAWN:,} drawn at most: pass --requests (at most {MAX_DRAWN:,})"
            )
        requests = int(expected)
    if not 1 <= requests <= MAX_DRAWN:
        raise ValueError(f"requests must be in [1, {MAX_DRAWN:,}], not {requests!r}")
    memory = physical_memory()
    if memory is not None and requests * _BYTES_PER_DRAWN > memory:
        raise ValueError(
            f"{requests:,} requests need about {requests * _BYTES_PER_DRAWN / 2**30:,.1f} GiB to draw "
            f"and measure, and this machine has {memory / 2**30:,.1f} GiB of memory: pass fewer --requests"
        )
    gen = np.random.Generator(np.random.PCG64(seed))
    core = OriginCore(bodies=False)
    cols: list[tuple[int, Any, Any]] = []
    weights = []
    for i, s in chosen:
        cat = s.catalog
        assert cat is not None
        spec = origin_catalog_spec(cat)
        from dataclasses import replace

        cfg = replace(parse_config(None, f"{s.name}/_edgesim.toml"), catalog=spec)
        dep = core.add_synthetic(s.name.lower(), cfg, now=0.0)
        catalog = dep.catalog
        assert catalog is not None
        sizes = np.array([catalog.size(j) for j in range(len(catalog))], dtype=np.int64)
        w = 1.0 / np.power(np.arange(1, len(sizes) + 1, dtype=np.float64), cat.zipf)
        cdf = np.cumsum(w)
        cols.append((i, cdf / cdf[-1], sizes))
        weights.append(max(0.0, s.share * (1.0 - s.redirect_share)))
    wsum = sum(weights) or 1.0
    site_pick = gen.choice(len(cols), size=requests, p=[w / wsum for w in weights])
    keys = np.zeros(requests, dtype=np.uint64)
    out_sizes = np.zeros(requests, dtype=np.int64)
    for j, (si, cdf, sizes) in enumerate(cols):
        rows = np.nonzero(site_pick == j)[0]
        idx = np.minimum(np.searchsorted(cdf, gen.random(len(rows)), side="right"), len(sizes) - 1)
        keys[rows] = (np.uint64(si) << np.uint64(40)) | idx.astype(np.uint64)
        out_sizes[rows] = sizes[idx]
    # the columns as arrays of the same machine types, copied as bytes (no Python
    # number per request on the way)
    times = np.arange(requests, dtype=np.float64) / max(peak, 1e-9)
    return Trace(_as_array("d", times), _as_array("Q", keys), _as_array("q", out_sizes))


def _as_array(code: str, col: Any) -> array[Any]:
    """An array of typecode ``code`` holding numpy column ``col`` (of the same machine
    type: float64 "d", uint64 "Q", int64 "q")."""
    out = array(code)
    out.frombytes(col.tobytes())
    return out
