"""The capacity engine: a discrete-event loop over the sans-IO cores, in virtual time.

Theory of operation
-------------------
:func:`simulate` runs a whole topology in one process. The edge nodes are real
:class:`~edgesim.node.EdgeNode` objects (real rules, cache, collapsing, purges) and the
origin is a real :class:`~origin.core.OriginCore` answering metadata-only responses;
only I/O and time are modelled. The loop takes events in ``(time, seq)`` order
(:class:`_Event`, from a calendar queue, :class:`_Calendar`): ``seq`` is a global
counter, so ties are broken in scheduling order and a run is a pure function of
(topology, seed).

Model of one request::

    client arrival (region R, site, URL, country, language)
      -> client latency -> edge node (R's balancer): FIFO queue, ``workers`` slots,
         one service time per request (the node's CPU), then ``EdgeNode.handle``
      -> Reply: transfer time (size / egress) + client latency -> done
      -> Fetch: edge -> (shield ->) origin latency, origin queue + service time,
         ``OriginCore.handle``, back, ``EdgeNode.complete`` -> next step
      -> Join: wait for the fetch it joined, then ``EdgeNode.joined``

Arrivals are one superposed non-homogeneous Poisson process over all regions. Rates are
piecewise constant over segments of at most :data:`RATE_STEP` seconds (and cut at flash
crowd edges); within a segment, gaps are exponential, and at a segment edge the
memoryless property lets the draw restart at the new rate. Each arrival picks a region
by its current rate, then a site by share x flash-crowd multiplier, then an object by
Zipf popularity (a precomputed CDF sampled in numpy batches), or a static redirect
source with the site's ``redirect_share``.

Time given to the cores is ``epoch + virtual time``, with the epoch at
2026-01-01T00:00:00Z plus ``traffic.start_hour_utc``: the cache compares Date and
Expires with it. Randomness comes only from numpy generators spawned from the seed
(batches of draws) and the seeded catalogs; consistent hashing uses ``zlib.crc32``.

Invariants:

* Every client request ends exactly once: a reply, or a failure (``FAILED``).
* A node's ``epoch`` changes when it crashes; events of an older epoch are dropped
  (the requests they belonged to were failed at the crash).
"""

from __future__ import annotations

import gc
import hashlib
import itertools
import json
import math
import os
import time
import zlib
from array import array
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from functools import lru_cache, partial
from heapq import heappop, heappush
from itertools import accumulate
from typing import TYPE_CHECKING, Any, Final, cast

import numpy as np

from edgesim import __version__
from edgesim._cachestore import Eviction
from edgesim._costs import OutcomeTimes
from edgesim._signals import held
from edgesim._tracetraffic import load_trace_traffic
from edgesim.cache import HttpCache, MetadataStore
from edgesim.http import Request, Response
from edgesim.metrics import (
    FETCH_KINDS,
    O_COLLAPSED,
    O_ERROR,
    O_FAILED,
    O_HIT,
    O_MISS,
    O_REVALIDATED,
    OUTCOME_CODES,
    Recorder,
    RunResult,
    build_report,
    column,
    scale_report,
)
from edgesim.node import EdgeConfig, EdgeNode, Fetch, Join, Reply, Step
from edgesim.topology import Catalog, Deploy, Distribution, Latency, NodeCrash, Site, Topology

if TYPE_CHECKING:
    from origin.core import OriginCore

__all__ = ["EPOCH", "RATE_STEP", "model_events", "node_rows", "run_meta", "run_report", "simulate"]

# 2026-01-01T00:00:00Z: virtual time 0 (plus traffic.start_hour_utc) in Unix seconds.
EPOCH: Final = 1767225600.0
# Longest segment of constant arrival rate (seconds). The diurnal curve is hourly and
# interpolated; one second steps follow it closely and cost one rate update per second.
RATE_STEP: Final = 1.0
# At most this many steps of the rate grid: a run longer than this many RATE_STEPs
# (about 24 days) takes longer steps (rate_step), so that the grid stays small.
MAX_RATE_STEPS: Final = 1 << 21
# A segment expecting more arrivals than this is drawn as equal parts of the same rate
# (_Arrivals), so that one block of draws stays small whatever the peak rate.
_SEGMENT_ARRIVALS: Final = 1 << 18
# The most arrivals a run may expect to draw (each is drawn even when a sampled run
# leaves it out), and the memory a recorded request is budgeted (its rows plus the
# report's sorted copies; measured at about 200 bytes): beyond either, a run is refused
# before it starts (_Engine.check_load) instead of running for ever or out of memory.
MAX_ARRIVALS: Final = 1e10
_BYTES_PER_REQUEST: Final = 256.0
# A synthetic catalog object's memory in a run: about 150 bytes measured (its URL, size,
# class and origin entry); refused past the machine's memory at this
_BYTES_PER_OBJECT: Final = 160.0
# Largest guide to a site's popularity CDF (_SiteModel): 2 ** this entries.
_GUIDE_MAX_BITS: Final = 16
# Draws per numpy batch: large enough to amortise the call, small enough to stay in cache.
_BATCH: Final = 4096
# Virtual nodes per node on a consistent-hash ring (spreads keys evenly over few nodes).
_VNODES: Final = 160
# Entries kept by each memo of the loop (ring owners per site or region: _send_up,
# _choose; a sampled store's charges by key), then it starts over.
_OWNER_MEMO: Final = 1 << 16
# Callbacks to ``progress`` happen every this many arrivals.
_PROGRESS_EVERY: Final = 1 << 16

# Event kinds.
_NODE_ARRIVE: Final = 0  # a client request reaches its node
_SERVICE_DONE: Final = 1  # a node finished the CPU work of a request
_UP_ARRIVE: Final = 2  # an upstream request reaches the origin or a shield node
_ORIGIN_DONE: Final = 3  # the origin finished serving an upstream request
_FETCH_BACK: Final = 4  # an upstream answer (or error) reaches the node that asked
_RETRY: Final = 5  # a client timed out on a dead node and tries another
_CONTROL: Final = 6  # crashes, restarts, deploys, purges: payload is a callable

_OUTCOME: Final = OUTCOME_CODES


# ---- random streams ------------------------------------------------------------------


class _Uniform:
    """Uniform [0, 1) draws from a numpy generator, handed out one by one from batches."""

    __slots__ = ("_buf", "_gen")

    def __init__(self, gen: np.random.Generator) -> None:
        self._gen = gen
        self._buf: list[float] = []

    def __call__(self) -> float:
        buf = self._buf
        if not buf:
            buf.extend(self._gen.random(_BATCH).tolist())
        return buf.pop()


class _Sampler:
    """Draws of a topology :class:`Distribution` (seconds or bytes), batched."""

    __slots__ = ("_dist", "_gen", "buf", "fixed")

    def __init__(self, dist: Distribution, gen: np.random.Generator) -> None:
        self._dist = dist
        self._gen = gen
        self.buf: list[float] = []  # the loop pops from it directly while it lasts
        self.fixed: float | None = _clamp(dist.value, dist.cap) if dist.kind == "fixed" else None

    def __call__(self) -> float:
        buf = self.buf
        if not buf:
            buf.extend(_draw(self._dist, self._gen, _BATCH).tolist())
        return buf.pop()


def _clamp(x: float, cap: float) -> float:
    return min(x, cap) if cap > 0 else x


_LONGEST: Final = 1e9  # seconds (~32 years): longer than any run


def _draw(d: Distribution, g: np.random.Generator, n: int) -> Any:
    k = d.kind
    if k == "fixed":
        x = np.full(n, d.value)
    elif k == "lognormal":
        x = g.lognormal(math.log(d.median) if d.median > 0 else -30.0, d.sigma, n)
    elif k == "exponential":
        x = g.exponential(d.mean, n) if d.mean > 0 else np.zeros(n)
    elif k == "pareto":
        x = (g.pareto(d.alpha, n) + 1.0) * d.minimum
    elif k == "uniform":
        x = g.uniform(d.minimum, d.maximum, n)
    else:
        raise ValueError(f"unknown distribution {k!r}")
    # A draw beyond _LONGEST (heavy tails, huge parameters; inf) would only overflow
    # clocks and dates: no run is that long, so it is held there.
    x = np.clip(x, 0.0, min(d.cap, _LONGEST) if d.cap > 0 else _LONGEST)
    return x


class _Link:
    """One-way latency of a link: base + uniform jitter (drawn in batches), plus the
    extra latency of active spikes."""

    __slots__ = ("_buf", "_gen", "base", "edges", "extras", "fast", "jitter", "spikes", "stepped")

    def __init__(
        self, lat: Latency, gen: np.random.Generator, spikes: list[tuple[float, float, float]]
    ) -> None:
        self.base = lat.base
        self.jitter = lat.jitter
        self._gen = gen
        self._buf: list[float] = []
        self.spikes = spikes
        # the spikes as steps: between edges[i] and edges[i + 1], the extras of the
        # spikes running then, in the topology's order (added one by one, as they were
        # when every spike was tested at every call)
        steps = _steps(spikes)
        self.stepped = steps is not None  # else each spike is tested at each call
        self.edges, self.extras = steps if steps is not None else ([], [])
        # Drawn latencies the loop may pop directly: the buffer itself when no spike
        # can apply, else a list that stays empty (so the loop calls the link).
        self.fast: list[float] = [] if spikes else self._buf

    def __call__(self, t: float) -> float:
        buf = self._buf
        if not buf:
            if self.jitter:
                drawn = self.base + self.jitter * (2.0 * self._gen.random(_BATCH) - 1.0)
                buf.extend(np.maximum(drawn, 0.0).tolist())
            else:
                buf.extend([self.base] * _BATCH)
        x = buf.pop()
        if self.spikes:
            if self.stepped:
                i = bisect_right(self.edges, t) - 1
                if 0 <= i < len(self.extras):
                    for extra in self.extras[i]:
                        x += extra
            else:
                for a, b, extra in self.spikes:
                    if a <= t < b:
                        x += extra
        return x


# The most extras _steps stores over all its stretches: past it (thousands of spikes
# overlapping one another), a link tests its spikes one by one again.
_MAX_STEP_EXTRAS: Final = 1_000_000


def _steps(
    spans: Sequence[tuple[float, float, float]], budget: int = _MAX_STEP_EXTRAS
) -> tuple[list[float], list[tuple[float, ...]]] | None:
    """Intervals ``(a, b, extra)`` as steps: the sorted edges, and between edges ``i``
    and ``i + 1`` the extras of the intervals holding that stretch, in ``spans``'
    order (:func:`_stretches`). None when the stretches would hold more than ``budget``
    extras in all (overlaps make that grow with the square of the spans)."""
    swept = _stretches([(a, b) for a, b, _ in spans], budget)
    if swept is None:
        return None
    edges, held = swept
    return edges, [tuple(spans[k][2] for k in ks) for ks in held]


def _stretches(
    spans: Sequence[tuple[float, float]], budget: int | None = None
) -> tuple[list[float], list[tuple[int, ...]]] | None:
    """Intervals ``[a, b)`` swept over their edges: the sorted edges, and between edges
    ``i`` and ``i + 1`` the indices of the intervals holding that stretch, ascending.
    None when the stretches would hold more than ``budget`` indices in all."""
    edges = sorted({x for a, b in spans if a < b for x in (a, b)})
    starts: dict[float, list[int]] = {}
    ends: dict[float, list[int]] = {}
    for k, (a, b) in enumerate(spans):
        if a < b:
            starts.setdefault(a, []).append(k)
            ends.setdefault(b, []).append(k)
    running: set[int] = set()
    held: list[tuple[int, ...]] = []
    stored = 0
    for x in edges[:-1]:
        running.difference_update(ends.get(x, ()))
        running.update(starts.get(x, ()))
        stored += len(running)
        if budget is not None and stored > budget:
            return None
        held.append(tuple(sorted(running)))
    return edges, held


def _down_at(edges: list[float], down: list[bool], t: float) -> bool:
    """Whether :func:`_down_steps`' ``edges`` and ``down`` hold instant ``t``."""
    i = bisect_right(edges, t) - 1
    return 0 <= i < len(down) and down[i]


def _down_steps(spans: Sequence[tuple[float, float]]) -> tuple[list[float], list[bool]]:
    """Intervals ``(a, b)`` as steps: the sorted edges, and whether an interval holds
    the stretch between edges ``i`` and ``i + 1`` (linear whatever the overlaps)."""
    edges = sorted({x for a, b in spans if a < b for x in (a, b)})
    delta: dict[float, int] = {}
    for a, b in spans:
        if a < b:
            delta[a] = delta.get(a, 0) + 1
            delta[b] = delta.get(b, 0) - 1
    down: list[bool] = []
    running = 0
    for x in edges[:-1]:
        running += delta.get(x, 0)
        down.append(running > 0)
    return edges, down


# ---- state ---------------------------------------------------------------------------


def _released() -> EdgeNode:
    raise RuntimeError("the engine was released: its run is over")


class _Node:
    """An edge (or shield) node: the core plus its modelled CPU."""

    __slots__ = (
        "active",
        "busy",
        "busy_steady",
        "conns",
        "core",
        "costs",
        "crashes",
        "egress",
        "epoch",
        "index",
        "make_core",
        "max_queue",
        "name",
        "queue",
        "region",
        "service",
        "shield",
        "track",
        "up",
        "uplink",
        "workers",
    )

    def __init__(
        self,
        index: int,
        name: str,
        region: int,
        workers: int,
        service: _Sampler,
        egress: float,
        make_core: Callable[[], EdgeNode],
        uplink: _Link,
        shield: bool,
    ) -> None:
        self.index = index
        self.name = name
        self.region = region
        self.workers = workers
        self.service = service
        self.egress = egress
        self.make_core = make_core
        self.core = make_core()
        self.uplink = uplink
        self.shield = shield
        self.busy = 0
        self.queue: deque[_Job] = deque()
        self.max_queue = 0
        self.busy_steady = 0.0
        self.conns = 0
        self.up = True
        self.epoch = 0
        self.crashes = 0
        # Requests on the node, kept only for nodes that crash (to fail them).
        self.track = False
        self.active: dict[int, _Job] = {}
        self.costs: OutcomeTimes | None = None  # calibrated service times (edgesim._costs)


class _Event:
    """A heap entry: ``kind``'s event for ``payload`` at ``t``, ordered by ``(t, seq)``.

    An object rather than a ``(t, seq, kind, payload)`` tuple: compiled, its comparison
    reads two floats, where a tuple comparison makes two generic float comparisons (the
    heap's comparisons took a tenth of a run). As plain Python, ``__lt__`` is a Python
    call: a run takes about 9% more instructions than with tuples, though no slower in
    seconds that the benchmark could tell (docs/benchmarks.md)."""

    __slots__ = ("kind", "payload", "seq", "t")

    def __init__(self, t: float, seq: int, kind: int, payload: Any) -> None:
        self.t = t
        self.seq = seq
        self.kind = kind
        self.payload = payload

    def __lt__(self, other: _Event) -> bool:
        return self.t < other.t or (self.t == other.t and self.seq < other.seq)


class _Calendar:
    """The engine's event queue: :class:`_Event` objects, popped in ``(t, seq)`` order,
    exactly as a ``heapq`` of them would be (so runs are the same), but cheaper.

    A calendar queue: a ring of ``slots`` buckets of ``width`` seconds each, from the
    bucket of the last event popped on; an event further ahead waits in a heap
    (``far``) until the ring reaches it. Pushing appends to a bucket, and the next
    event is the least of the first non-empty bucket, found by a scan. With about two
    events per bucket (``width`` follows the run's event rate) that costs a few
    comparisons of native floats, where a heap of a few hundred events took about 17
    comparisons per pop, each a call through the type's rich comparison."""

    def __init__(self, width: float, slots: int = 4096) -> None:
        assert slots & (slots - 1) == 0 and width > 0
        self.inv = 1.0 / width
        self.mask = slots - 1
        self.slots = slots
        self.ring: list[list[_Event]] = [[] for _ in range(slots)]
        self.cur = 0  # the bucket number (t // width) the ring starts at
        self.limit = float(slots)  # the first bucket number past the ring
        self.near = 0  # events in the ring
        self.far: list[_Event] = []  # a heap of the events past the ring
        self.head: _Event | None = None  # the next event, once found
        self.head_b = 0  # its bucket number (-1: the heap's first)
        self.head_at = 0  # its index in that bucket

    def __len__(self) -> int:
        return self.near + len(self.far)

    def push(self, e: _Event) -> None:
        x = e.t * self.inv
        if x >= self.limit:  # also +inf
            heappush(self.far, e)
            if self.head_b < 0:  # the next event was the heap's: look again
                self.head = None
            return
        b = int(x)
        if b < self.cur:  # (never: no event is pushed before the one last popped)
            b = self.cur
        lst = self.ring[b & self.mask]
        lst.append(e)
        self.near += 1
        h = self.head
        if h is not None and (e.t < h.t or (e.t == h.t and e.seq < h.seq)):
            self.head = e
            self.head_b = b
            self.head_at = len(lst) - 1

    def first(self) -> _Event | None:
        """The next event (left in the queue), or None."""
        h = self.head
        if h is not None:
            return h
        if not self.near:
            far = self.far
            if not far:
                return None
            x = far[0].t * self.inv
            if x >= 1e15:  # +inf, or as good as: taken from the heap itself
                self.head = far[0]
                self.head_b = -1
                return self.head
            self.cur = int(x)
            self.limit = float(self.cur + self.slots)
            self._arrive()
        ring = self.ring
        mask = self.mask
        b = self.cur
        lst = ring[b & mask]
        while not lst:
            b += 1
            lst = ring[b & mask]
        if b != self.cur:
            # every event in the heap is past the ring as it was, so past bucket b
            self.cur = b
            self.limit = float(b + self.slots)
            self._arrive()
        best = lst[0]
        at = 0
        for i in range(1, len(lst)):
            e = lst[i]
            if e.t < best.t or (e.t == best.t and e.seq < best.seq):
                best = e
                at = i
        self.head = best
        self.head_b = b
        self.head_at = at
        return best

    def pop(self) -> _Event:
        """Remove and return the next event (the queue must not be empty)."""
        h = self.first()
        assert h is not None
        self.head = None
        if self.head_b < 0:
            return heappop(self.far)
        lst = self.ring[self.head_b & self.mask]
        last = lst.pop()
        if self.head_at < len(lst):
            lst[self.head_at] = last
        self.near -= 1
        return h

    def _arrive(self) -> None:
        """Move the heap's events that the ring now reaches into their buckets."""
        far = self.far
        limit = self.limit
        inv = self.inv
        ring = self.ring
        mask = self.mask
        while far and far[0].t * inv < limit:
            e = heappop(far)
            ring[int(e.t * inv) & mask].append(e)
            self.near += 1


class _Job:
    """One request at one node: a client request, or a shield's upstream request."""

    __slots__ = (
        "collapsed",
        "epoch",
        "extra",
        "id",
        "node",
        "parent",
        "queued",
        "region",
        "req",
        "retries",
        "site",
        "step",
        "stratum",
        "t0",
        "t_in",
        "t_sent",
        "tried",
    )

    def __init__(self, jid: int, t0: float, region: int, site: int, req: Request, parent: _Up | None) -> None:
        self.id = jid
        self.t0 = t0
        self.region = region
        self.site = site
        self.req = req
        self.parent = parent
        self.node: _Node | None = None
        self.epoch = 0
        self.t_in = 0.0
        self.t_sent = t0
        self.queued = 0.0
        self.retries = 0
        self.collapsed = False
        self.step: Any = None  # decided, waiting for the rest of a calibrated service time
        self.stratum = -1  # sampled runs: the stratum of the client's key
        # failed over to another region: the region-to-region latency, each way
        self.extra = 0.0
        self.tried: list[_Node] | None = None  # the nodes a retrying client timed out on


class _Up:
    """An upstream request of a node (a Fetch), on its way to the origin or a shield."""

    __slots__ = (
        "code",
        "epoch",
        "error",
        "fetch",
        "job",
        "log",
        "node",
        "response",
        "shield",
        "site",
        "stratum",
        "t_in",
        "to_shield",
        "wait",
    )

    def __init__(self, fetch: Fetch, node: _Node, job: _Job | None, log: int) -> None:
        self.fetch = fetch
        self.node = node
        self.job = job
        self.epoch = node.epoch
        self.log = log
        self.response: Response | None = None
        self.error: str | None = None
        self.t_in = 0.0
        self.wait = 0.0
        self.site = -1
        self.to_shield = False
        self.shield = -1  # the shield node that answered, and its outcome code
        self.code = -1
        self.stratum = _NO_STRATUM


def _zipf_table(n: int, zipf: float) -> tuple[np.ndarray, int, np.ndarray]:
    """The popularity CDF of ``n`` objects at Zipf exponent ``zipf`` and its guide
    (``_SiteModel.draw``), read-only; kept per process for up to ``_KEEP_ZIPF_MAX``
    objects (every run of a topology draws from the same tables)."""
    return _kept_zipf_table(n, zipf) if n <= _KEEP_ZIPF_MAX else _make_zipf_table(n, zipf)


# Sites up to this many objects keep their Zipf tables (``_zipf_table``): eight of them
# hold about 64 MB at most.
_KEEP_ZIPF_MAX: Final = 1_000_000


@lru_cache(maxsize=8)
def _kept_zipf_table(n: int, zipf: float) -> tuple[np.ndarray, int, np.ndarray]:
    return _make_zipf_table(n, zipf)


def _make_zipf_table(n: int, zipf: float) -> tuple[np.ndarray, int, np.ndarray]:
    """:func:`_zipf_table`, computed.

    A guide to the CDF for draws: entry j is the index a draw of j / m picks, so a draw
    u picks an index between entries floor(u * m) and floor(u * m) + 1 (exact for m a
    power of two). A binary search over the whole CDF touched about 16 entries per
    draw, the last few far apart (a cache miss each); between two guide entries there
    are a few (at most 6 for 50,000 objects at Zipf 0.9, more only in the rarely drawn
    tail of a steeper curve)."""
    w = 1.0 / np.power(np.arange(1, n + 1, dtype=np.float64), zipf)
    cdf = np.cumsum(w)
    cdf = cdf / cdf[-1]  # never decreasing; the last entry is 1.0 exactly
    m = 1 << min(_GUIDE_MAX_BITS, max(10, n.bit_length()))
    guide = np.searchsorted(cdf, np.arange(m + 1) / m, side="right").astype(np.int64)
    cdf.flags.writeable = False
    guide.flags.writeable = False
    return cdf, m, guide


class _SiteModel:
    """What clients request of one site: current URLs, Zipf sampler, redirect sources."""

    __slots__ = (
        "cdf",
        "gen",
        "guide",
        "guide_m",
        "host",
        "index",
        "kept_of",
        "objbuf",
        "redirect_share",
        "redirects",
        "size_of",
        "strata",
        "stratum_list",
        "stratum_of",
        "thin_of",
        "urls",
    )

    def __init__(self, index: int, host: str, urls: list[str], zipf: float, gen: np.random.Generator) -> None:
        self.index = index
        self.host = host
        self.urls = urls
        self.gen = gen
        self.cdf, self.guide_m, self.guide = _zipf_table(len(urls), zipf)
        self.objbuf: list[int] = []
        self.redirects: list[str] = []
        self.redirect_share = 0.0
        # With spatial sampling, by arrival object (catalog index i, then redirect
        # source k at len(urls) + k): whether its key is in the sample, its stratum (also
        # as a list) and its size in bytes; and the stratum of every request target.
        self.kept_of = np.zeros(0, dtype=bool)
        self.stratum_of = np.zeros(0, dtype=np.int64)
        self.stratum_list: list[int] = []
        self.strata: dict[str, int] | None = None
        self.size_of = np.zeros(0)
        self.thin_of: np.ndarray | None = None  # the share of each one's arrivals kept

    def stratum(self, target: str) -> int:
        """The stratum of a request for ``target`` (one of the URLs or redirect
        sources), else ``_NO_STRATUM``. Arrivals know theirs by object; this serves the
        few fetches that no arrival asked for, so the table by target is made on the
        first of them."""
        strata = self.strata
        if strata is None:
            strata = self.strata = dict(zip(self.urls + self.redirects, self.stratum_list, strict=True))
        return strata.get(target, _NO_STRATUM)

    def draw(self, n: int) -> np.ndarray:
        """``n`` catalog indexes by Zipf popularity (the site's own generator): for
        each uniform draw u, the number of CDF entries <= u (as
        ``np.searchsorted(cdf, u, side="right")``), found by bisecting between the two
        guide entries around u, for the draws not yet settled only."""
        u = self.gen.random(n)
        cdf = self.cdf
        j = (u * self.guide_m).astype(np.int64)
        lo = self.guide[j]
        hi = self.guide[j + 1]
        todo = np.flatnonzero(lo < hi)
        while len(todo):
            a, b = lo[todo], hi[todo]
            mid = (a + b) >> 1
            up = cdf[mid] <= u[todo]
            a = np.where(up, mid + 1, a)
            b = np.where(up, b, mid)
            lo[todo], hi[todo] = a, b
            todo = todo[a < b]
        out: np.ndarray = np.minimum(lo, len(cdf) - 1)
        return out

    def url(self) -> str:
        """One request target by popularity (outside the engine's arrival blocks)."""
        buf = self.objbuf
        if not buf:
            buf.extend(self.draw(_BATCH).tolist())
        return self.urls[buf.pop()]


class _SampledStore(MetadataStore):
    """A cache tier of a sampled run.

    SHARDS scales every cache by the rate R because the sample holds a share R of the
    keys. A key of a bucket sampled at ``p`` > R (docs/sampling.md) stands for
    ``1 / p`` keys, so it is charged ``R / p`` of its bytes: then the cache's
    expected occupancy by the sample is R times the full run's, and a small scaled
    cache is not crowded out by the few popular keys sampled whole. The object size
    limit (``max_object``, never scaled) still applies to the whole object."""

    __slots__ = ("_charge", "_limit", "_weights")

    def __init__(
        self,
        capacity_bytes: int,
        charge: dict[tuple[str, str], float],
        *,
        eviction: Eviction = "lru",
        max_object_bytes: int | None = None,
    ) -> None:
        super().__init__(capacity_bytes, eviction=eviction, max_object_bytes=max_object_bytes)
        self._charge = charge
        self._limit = max_object_bytes or 0
        # the charge of each key stored, by key (-1.0: none): a key is stored again and
        # again (revalidations), and finding its charge took two partitions and a
        # lookup by a new tuple
        self._weights: dict[str, float] = {}

    def _admit(self, key: str, value: Any, nbytes: int, tag: str) -> bool:
        if self._charge and not (self._limit and nbytes > self._limit):  # else refused whole
            weights = self._weights
            w = weights.get(key)
            if w is None:
                host, _, rest = key.partition("\x00")  # node keys: host, deploy, target
                c = self._charge.get((host, rest.partition("\x00")[2]))
                w = -1.0 if c is None else c
                if len(weights) >= _OWNER_MEMO:
                    weights.clear()
                weights[key] = w
            if w >= 0.0:
                nbytes = max(1, int(nbytes * w))
        return super()._admit(key, value, nbytes, tag)


# The expected number of arrivals in one block of draws (whole rate segments).
_BLOCK: Final = 8192
# Up to this many sites, an arrival's site is drawn entry by entry (_count_le: one pass
# per CDF entry over the block); beyond, by one binary search per (epoch, region) pair of
# the block (at 32 sites the two cost about the same for a block of 8,192 arrivals).
_FEW_SITES: Final = 32


class _Arrivals:
    """The client arrivals of a run, drawn with numpy a block at a time.

    Synthetic traffic is a Poisson process with piecewise-constant rates
    (:meth:`_Engine._segments`): each segment's count is a Poisson draw and its times are
    uniform within it. Then, per arrival, from one generator: the region (the segment's
    region CDF), the site (the segment's site CDF of that region), a redirect source or
    an object (the site's Zipf sampler, its own generator), the visitor (country and
    language pair of the region) and the ``random`` balancer's draw. A trace's blocks
    take times, sites, objects (and regions, when given) from it, and draw the rest.

    A block spans whole segments (about ``_BLOCK`` expected arrivals) and never reaches
    across a deploy, so that a driver which resolves a block only when its first instant
    comes (the engine does, after the events before it) sees the catalog and the sample
    of that time. The blocks depend on nothing but the topology and the seed: a sampled
    run filters the very arrivals of the full run, and the Trio engine and live mode
    (``edgesim._traffic``) replay the engine's arrivals.
    """

    def __init__(self, eng: _Engine) -> None:
        self.gen = eng.exp_gen
        self.sites = eng.sites
        self.nregions = len(eng.topo.regions)
        self.end = eng.end
        vis = eng.visitors
        self.nvisitors = np.array([len(v) for v in vis], dtype=np.int64)
        width = int(self.nvisitors.max()) if len(vis) else 1
        # visitor CDFs of all regions, padded with +inf (never counted as <= a draw)
        self.vcdf = np.full((max(1, len(vis)), width), np.inf)
        for ri, v in enumerate(vis):
            self.vcdf[ri, : len(v)] = v
        deploys = eng.deploy_times()
        self.trace = eng.trace
        if self.trace is None:
            self.ends, rates, rcdf, scdf, self.epoch_of = eng.arrival_segments()
            lam = rates * (self.ends - np.concatenate(([0.0], self.ends[:-1])))
            parts = np.ceil(lam / _SEGMENT_ARRIVALS).astype(np.int64)
            if bool((parts > 1).any()):
                # a segment expecting too many arrivals for one block: equal parts of
                # its rate (the same Poisson process), each part a segment of its own
                parts = np.maximum(parts, 1)
                seg = np.repeat(np.arange(len(parts)), parts)
                k = np.arange(len(seg)) - np.repeat(np.cumsum(parts) - parts, parts)
                begin = np.concatenate(([0.0], self.ends[:-1]))[seg]
                self.ends = begin + (self.ends[seg] - begin) * (k + 1) / parts[seg]
                self.ends[np.cumsum(parts) - 1] = eng.arrival_segments()[0]
                rates, rcdf, self.epoch_of = rates[seg], rcdf[seg], self.epoch_of[seg]
            # the CDFs a row per entry: regions x segments, and sites x (epoch, region)
            self.rcols = np.ascontiguousarray(rcdf.T)
            self.nsites = scdf.shape[2]
            self.scols = np.ascontiguousarray(scdf.reshape(-1, self.nsites).T)
            self.starts = np.concatenate(([0.0], self.ends[:-1]))
            self.lens = self.ends - self.starts
            self.lam = rates * self.lens
            self.cum = np.cumsum(self.lam)
            # a block stops before the segment that a deploy starts
            self.stops = sorted(int(i) for i in np.searchsorted(self.starts, deploys))
            self.pos = 0
        else:
            tr = self.trace
            self.times = np.asarray(tr.times, dtype=np.float64)
            self.n = int(np.searchsorted(self.times, eng.end, side="left"))
            self.stops = sorted(int(i) for i in np.searchsorted(self.times, deploys))
            self.share_cdf = np.asarray(
                _norm_cdf([max(0.0, r.client_share) for r in eng.topo.regions]), dtype=np.float64
            )
            self.pos = 0

    def start(self) -> float:
        """The time of the next block's first instant (``inf`` when there is none)."""
        if self.trace is None:
            return float(self.starts[self.pos]) if self.pos < len(self.ends) else math.inf
        return float(self.times[self.pos]) if self.pos < self.n else math.inf

    def block(self, visitors: bool = True) -> tuple[np.ndarray, ...]:
        """The next block: arrays of time, region, site, object, visitor and balancer draw.

        ``object`` is the catalog index, or ``-1 - k`` for the site's redirect source
        ``k``. Empty arrays when the blocks are over. With ``visitors`` False, the
        visitor column holds the uniform draws that :meth:`visitors` turns into
        visitors (a sampled run resolves only the arrivals it keeps)."""
        if self.trace is not None:
            return self._trace_block(visitors)
        s0 = self.pos
        nseg = len(self.ends)
        if s0 >= nseg:
            return _EMPTY_BLOCK
        base = self.cum[s0 - 1] if s0 else 0.0
        s1 = int(np.searchsorted(self.cum, base + _BLOCK, side="left")) + 1
        s1 = min(max(s1, s0 + 1), nseg, next((s for s in self.stops if s > s0), nseg))
        self.pos = s1
        gen = self.gen
        counts = gen.poisson(self.lam[s0:s1])
        seg = np.repeat(np.arange(s0, s1), counts)
        n = len(seg)
        t = self.starts[seg] + gen.random(n) * self.lens[seg]
        t.sort()  # segments are disjoint and in order: each time stays in its segment
        u = gen.random((5, n))
        # the region: entries of its segment's region CDF <= the draw (each CDF entry
        # repeated over its segment's arrivals, as ``seg`` repeats the segment)
        rcols = self.rcols
        ri = _count_le([np.repeat(rcols[c, s0:s1], counts) for c in range(self.nregions - 1)], u[0])
        pair = self.epoch_of[seg] * self.nregions + ri
        si = self._site_draws(pair, u[1])
        obj = self._objects(si, u[2])
        return t, ri, si, obj, self.visitors(ri, u[3]) if visitors else u[3], u[4]

    def _site_draws(self, pair: np.ndarray, u: np.ndarray) -> np.ndarray:
        """The site of each arrival (``pair``: its epoch * regions + region) for its
        uniform draw ``u``: how many entries of its epoch and region's site CDF are <=
        ``u``, entry by entry, or with many sites by one binary search per pair of the
        block."""
        nsites = self.nsites
        if nsites <= _FEW_SITES:
            return _count_le([self.scols[k][pair] for k in range(nsites - 1)], u)
        out = np.empty(len(u), dtype=np.int64)
        for k in np.unique(pair).tolist():
            sel = np.flatnonzero(pair == k)
            out[sel] = np.searchsorted(self.scols[:, k], u[sel], side="right")
        capped: np.ndarray = np.minimum(out, nsites - 1)
        return capped

    def _trace_block(self, visitors: bool) -> tuple[np.ndarray, ...]:
        a = self.pos
        if a >= self.n:
            return _EMPTY_BLOCK
        b = min(self.n, a + _BLOCK, next((s for s in self.stops if s > a), self.n))
        self.pos = b
        tr = self.trace
        assert tr is not None
        n = b - a
        u = self.gen.random((3, n))
        ri = np.asarray(tr.regions[a:b], dtype=np.int64)
        drawn = ri < 0
        if drawn.any():
            by_share = np.minimum(np.searchsorted(self.share_cdf, u[0], side="right"), self.nregions - 1)
            ri = np.where(drawn, by_share, ri)
        si = np.asarray(tr.sites[a:b], dtype=np.int64)
        obj = np.asarray(tr.objects[a:b], dtype=np.int64)
        return self.times[a:b], ri, si, obj, self.visitors(ri, u[1]) if visitors else u[1], u[2]

    def _objects(self, si: np.ndarray, u: np.ndarray) -> np.ndarray:
        obj = np.empty(len(si), dtype=np.int64)
        for m in self.sites:
            sel = np.flatnonzero(si == m.index)
            if not len(sel):
                continue
            o = m.draw(len(sel))
            share = m.redirect_share
            if share:
                us = u[sel]
                nred = len(m.redirects)
                k = np.minimum((us / share * nred).astype(np.int64), nred - 1)
                o = np.where(us < share, -1 - k, o)
            obj[sel] = o
        return obj

    def visitors(self, ri: np.ndarray, u: np.ndarray) -> np.ndarray:
        """The visitor (country and language pair) of each arrival of region ``ri``
        for its uniform draw ``u``."""
        # row by row: a sampled run resolves the few arrivals of a block it keeps, for
        # which one table beats a pass per entry of the widest country-language mix
        vi: np.ndarray = np.minimum((self.vcdf[ri] <= u[:, None]).sum(axis=1), self.nvisitors[ri] - 1)
        return vi


def _count_le(columns: list[np.ndarray], u: np.ndarray) -> np.ndarray:
    """For each draw ``u[i]``, how many of ``columns[c][i]`` are <= it: the index an
    inverse-CDF draw picks, given a CDF's entries but its last (which is 1.0 or more,
    never <= a draw in [0, 1); a CDF's entries never decrease, so the count is also
    capped at the last index). One comparison per entry over all draws: an order of
    magnitude faster than comparing a (draws x entries) table row by row."""
    out = np.zeros(len(u), dtype=np.int64)
    for col in columns:
        out += col <= u
    return out


_EMPTY_BLOCK: tuple[np.ndarray, ...] = (
    np.empty(0),
    *(np.empty(0, dtype=np.int64) for _ in range(4)),
    np.empty(0),
)


def _key_samples(host: str, urls: list[str], salt: bytes = b"") -> np.ndarray:
    """A stable hash of each cache key (site + URL) of ``urls`` mapped to [0, 1), for
    spatial sampling; ``salt`` (at most 16 bytes: :func:`_sample_salt`) picks another,
    independent sample.

    FNV-1a over the bytes of each URL, all URLs in one native call
    (native/src/esr_digest.c), started from a blake2b digest of the site and the salt,
    and finished with the splitmix64 mixer; 53 bits of it make the fraction. Not
    ``zlib.crc32``: the balancers' rings hash URLs with crc32, and a linear hash would
    correlate the sample with the nodes that own its keys."""
    from edgesim import _redirects_cffi as native

    n = len(urls)
    if not n:
        return np.zeros(0)
    joined = "".join(urls)
    if joined.isascii():  # nearly always: one encoding for all, lengths as they are
        data = joined.encode("ascii")
        lengths = np.fromiter(map(len, urls), dtype=np.uint32, count=n)
    else:
        encoded = [u.encode() for u in urls]
        data = b"".join(encoded)
        lengths = np.fromiter(map(len, encoded), dtype=np.uint32, count=n)
    start = hashlib.blake2b(host.encode(), digest_size=8, person=b"edgesim-shards", salt=salt).digest()
    h = np.empty(n, dtype=np.uint64)
    ffi = native.ffi
    rc = native.lib.esr_key_hashes(
        int.from_bytes(start, "big"),
        data,
        ffi.from_buffer("uint32_t[]", lengths),
        n,
        ffi.from_buffer("uint64_t[]", h),
    )
    if rc != 0:
        raise ValueError(f"cannot hash {n} keys (native error {rc})")
    out: np.ndarray = (h >> np.uint64(11)).astype(np.float64) / 9007199254740992.0
    return out


def _sample_salt(seed: int) -> bytes:
    """The key hash's salt of a run with ``seed``: each seed samples other keys, so that
    runs over several seeds average over samples as well as over traffic."""
    return hashlib.blake2b(b"%d" % seed, digest_size=16).digest()


# Sampled runs: keys of every popularity bucket in the sample (simulate's sample_keys;
# docs/sampling.md: 0.5 measured as accurate as needed at the least cost).
DEFAULT_SAMPLE_KEYS: Final = 0.5
MAX_SAMPLE_KEYS: Final = 1_000_000.0
# Sampled runs thin a key kept whole when a node still sees about this many of its
# arrivals within the key's freshness lifetime (docs/sampling.md, "Thinned keys").
THIN_ARRIVALS: Final = 20.0
# A policy whose responses stay fresh this long (s) samples each popularity bucket of
# its own keys (docs/sampling.md, "The sample").
_LONG_LIVED: Final = 600.0
_PASS_FETCH: Final = FETCH_KINDS.index("pass")
MAX_SAMPLE_THIN: Final = 1_000_000.0
# Strata of sampled runs that are not a key's: per-node requests (manifests; weight 1),
# and a key outside every stratum (weight 1 / rate).
_PER_NODE: Final = -2
_NO_STRATUM: Final = -1


def _policy_classes(dep: Any, urls: list[str]) -> tuple[list[str], np.ndarray]:
    """The content class of each of ``urls`` (files of the origin deploy ``dep``) for
    stratified sampling: the Cache-Control value the origin serves it with. Keys of one
    policy share their freshness lifetime and revalidation, which set their hit ratios
    far more than their file type does (hashed images, scripts and styles all hit
    alike); a finer class only leaves more strata empty in a sample.

    Returns the classes, numbered in the order of their first URL, and each URL's
    number. A synthetic catalog's URLs take their kind's class, but for path overrides,
    which are tried URL by URL only on the kinds whose URLs a pattern's literal start
    allows (a kind's URLs all start alike: ``/page-``, ``/assets/obj-``, ...)."""
    number: dict[str, int] = {}  # a class's number, as it is met
    files = dep.files
    if files is not None:  # a folder site
        out = []
        for u in urls:
            f = files.get(u)
            out.append(number.setdefault(f.cache_control if f is not None else "", len(number)))
        return list(number), np.array(out, dtype=np.int64)
    from origin._config import KINDS

    policy = dep.config.cache
    names = list(KINDS)
    codes = np.frombuffer(dep.catalog.kind_codes(), dtype=np.uint8)
    present, first = np.unique(codes, return_index=True)
    by_kind = np.zeros(len(names), dtype=np.int64)
    for k, i in zip(present.tolist(), first.tolist(), strict=True):  # one shape per kind
        by_kind[k] = number.setdefault(policy.by_type(urls[i], KINDS[names[k]][0]), len(number))
    cls: np.ndarray = by_kind[codes]
    starts = [_glob_start(glob) for glob, _ in policy.paths]
    override = policy.path_override
    for k in present.tolist():
        head = KINDS[names[k]][1].split("{i}")[0]
        if any(s.startswith(head) or head.startswith(s) for s in starts):
            for i in np.flatnonzero(codes == k).tolist():
                v = override(urls[i])
                if v is not None:
                    cls[i] = number.setdefault(v, len(number))
    # numbered by first URL, as a pass over the URLs would have met them
    used, first_url = np.unique(cls, return_index=True)
    order = used[np.argsort(first_url)]
    renumber = np.zeros(len(number), dtype=np.int64)
    renumber[order] = np.arange(len(order))
    classes = list(number)
    return [classes[c] for c in order.tolist()], renumber[cls]


def _glob_start(glob: str) -> str:
    """The literal start of a ``fnmatch`` pattern (before its first ``*``, ``?`` or
    ``[``): a path that does not start with it never matches."""
    cut = [i for i in (glob.find(c) for c in "*?[") if i >= 0]
    return glob[: min(cut)] if cut else glob


def _policy_lifetime(cache_control: str) -> float | None:
    """How long an edge keeps a response served with ``cache_control`` fresh (the
    cache core's freshness lifetime: s-maxage, then max-age; 0 for no-cache or none
    given), or None when a shared cache does not store it at all (no-store, private)."""
    from edgesim.cache import CachePolicy, freshness_lifetime, is_storable, parse_cache_control

    headers = [("cache-control", cache_control)] if cache_control else []
    if not is_storable(Request("GET", "/"), Response(200, headers)):
        return None
    d = parse_cache_control(cache_control)
    if d.no_cache:
        return 0.0
    return freshness_lifetime(200, headers, d, False, 0.0, CachePolicy())


def _site_config_text(site: Site) -> str:
    """The ``[cache]`` table of a site's ``_edgesim.toml`` from the topology's classes."""
    if not site.cache:
        return ""
    lines = ["[cache]"]
    paths = []
    for k, v in site.cache:
        if k.startswith("/"):
            paths.append((k, v))
        else:
            lines.append(f"{k} = {json.dumps(v)}")
    if paths:
        lines.append("[cache.paths]")
        lines.extend(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in paths)
    return "\n".join(lines) + "\n"


def _origin_size(d: Distribution) -> Any:
    """A size distribution for the origin's catalog, clamped exactly as the origin's own
    ``_edgesim.toml`` parser clamps sizes, so that the catalog an edge rebuilds from the
    manifest is identical to the origin's."""
    from origin._config import MAX_SIZE

    od = _origin_dist(d)
    if not od.limit or od.limit > MAX_SIZE:
        od = replace(od, limit=float(MAX_SIZE))
    return od


def origin_catalog_spec(cat: Catalog, fixed_sizes: tuple[int, ...] = ()) -> Any:
    """The origin's ``CatalogSpec`` of a topology site's catalog (sizes clamped as the
    origin clamps them), so that every driver lays out the same objects; with
    ``fixed_sizes`` (a replayed trace's), one object per size."""
    from origin.core import CatalogSpec

    return CatalogSpec(
        len(fixed_sizes) or cat.objects,
        cat.seed,
        _origin_size(cat.size),
        tuple((k, _origin_size(d)) for k, d in cat.sizes),
        cat.types,
        fixed_sizes,
    )


def site_rule_texts(site: Site) -> dict[str, str]:
    """A synthetic site's rule files by origin file name (``_redirects``,
    ``netlify.toml``), as every origin of a topology compiles them."""
    return {
        "netlify.toml" if p.name.endswith(".toml") else "_redirects": p.read_text(encoding="utf-8")
        for p in site.rules_files
    }


def origin_core(
    topology: Topology,
    now: float,
    *,
    bodies: bool = False,
    site_sizes: Sequence[tuple[int, ...]] = (),
    cache: Mapping[str, tuple[tuple[str, str], ...]] | None = None,
    config_text: Callable[[Site], str | None] | None = None,
) -> OriginCore:
    """An ``OriginCore`` serving the topology's sites, laid out as every driver lays
    them out: a site folder as it is; a synthetic site from its catalog (sizes clamped
    as the origin clamps them, :func:`origin_catalog_spec`) and its rule files.

    Args:
        now: the time of the sites' first deploys.
        bodies: real bodies (origins that answer over HTTP), else sizes only.
        site_sizes: per site, a replayed trace's object sizes (one object per size).
        cache: by site name, Cache-Control classes in place of the site's own (a
            ``[shadow]`` candidate origin's).
        config_text: a synthetic site's ``_edgesim.toml`` text (default: its ``[cache]``
            table alone, the capacity engine's); the shells' origins pass the file a
            real origin process reads (:func:`edgesim.testing.site_config_text`), whose
            ``[catalog]`` is then kept (parsed as that process parses it; without
            ``site_sizes``), so that the two serve the same deploys. The text and the
            catalog as parsed are part of each deploy's content hash: origins built
            from different texts give different deploy ids. A ``[load]`` table in the
            text models the origin's service time.
    """
    from origin.core import OriginCore, parse_config

    core = OriginCore(bodies=bodies)
    for i, s in enumerate(topology.sites):
        host = s.name.lower()
        if s.directory is not None:
            core.add_folder(s.directory, now=now, name=host)
            continue
        site = replace(s, cache=cache[s.name]) if cache and s.name in cache else s
        cat = site.catalog
        assert cat is not None
        text = config_text(site) if config_text is not None else _site_config_text(site) or None
        cfg = parse_config(text, f"{host}/_edgesim.toml")
        if cfg.catalog is None or site_sizes:
            cfg = replace(cfg, catalog=origin_catalog_spec(cat, site_sizes[i] if site_sizes else ()))
        core.add_synthetic(host, cfg, now=now, rules=site_rule_texts(site) or None)
    return core


def _origin_dist(d: Distribution) -> Any:
    from origin._config import Distribution as ODist

    k = d.kind
    if k == "fixed":
        return ODist("fixed", d.value, 0.0, d.cap)
    if k == "lognormal":
        return ODist("lognormal", d.median, d.sigma, d.cap)
    if k == "exponential":
        return ODist("exponential", d.mean, 0.0, d.cap)
    if k == "pareto":
        return ODist("pareto", d.alpha, d.minimum, d.cap)
    return ODist("uniform", d.minimum, d.maximum, d.cap)


def _static_redirects(rules: Any, host: str) -> list[str]:
    """Request targets of the static redirect rules of ``rules`` (no placeholders, no
    query conditions); rules without conditions first, when there are any."""
    plain: list[str] = []
    conditional: list[str] = []
    for r in rules.rules:
        if not 300 <= r.status < 400 or r.has_query:
            continue
        src = r.from_
        if "://" in src:
            rest = src.split("://", 1)[1]
            h, _, p = rest.partition("/")
            if h.lower() != host:
                continue
            src = "/" + p
        if not src.startswith("/") or ":" in src or "*" in src:
            continue
        (conditional if r.has_conditions else plain).append(src)
    return plain or conditional


def _file_positions(dep: Any, urls: list[str], targets: list[str]) -> list[int]:
    """The position in ``urls`` (the files of the origin deploy ``dep``) of each of
    ``targets`` that is one of them, else -1."""
    if not targets:
        return []
    if dep.files is None:  # a catalog finds its own paths
        out = []
        for t in targets:
            e = dep.catalog.lookup(t)
            i = e.index if e is not None else -1
            out.append(i if 0 <= i < len(urls) and urls[i] == t else -1)
        return out
    pos = {u: i for i, u in enumerate(urls)}
    return [pos.get(t, -1) for t in targets]


def _ring(nodes: list[_Node]) -> tuple[list[int], list[_Node]]:
    points = sorted((zlib.crc32(f"{n.name}#{v}".encode()), n.index, n) for n in nodes for v in range(_VNODES))
    return [p[0] for p in points], [p[2] for p in points]


def ring_owner(ring: tuple[list[int], list[Any]], host: str, target: str) -> Any:
    """The node of a consistent-hash ring (:func:`_ring`) that owns a request: the owner
    of the first point after the crc32 of ``host + target``, wrapping. Which shield node
    an edge's miss goes to, in the capacity engine and in the shells
    (:class:`edgesim._modelled.ShieldUplink`) alike."""
    points, owners = ring
    return owners[bisect_right(points, zlib.crc32((host + target).encode())) % len(points)]


def _outcome_code(step: Reply, collapsed: bool) -> int:
    """The report's outcome code of a node's reply (``collapsed``: the request waited
    for another's fill)."""
    code = _OUTCOME[step.outcome]
    if step.response.status >= 500:
        return O_ERROR
    if collapsed and code == O_HIT:
        return O_COLLAPSED
    return code


def failover_order(topo: Topology) -> list[list[tuple[float, list[int]]]]:
    """Per region (in index order), where its clients fail over when it has no live
    node: groups of other regions at the same ``[network.region_latency]``, nearest
    first, as ``(seconds, [region index, ...])``. A region with no listed latency to
    another is never a failover target for it."""
    index = {r.name: i for i, r in enumerate(topo.regions)}
    near: list[dict[float, list[int]]] = [{} for _ in topo.regions]
    for a, b, s in topo.region_latency:
        if a not in index or b not in index:  # a region left out (plan --region-failure)
            continue
        ia, ib = index[a], index[b]
        near[ia].setdefault(s, []).append(ib)
        near[ib].setdefault(s, []).append(ia)
    return [[(s, sorted(g[s])) for s in sorted(g)] for g in near]


def _mix_cdf(mix: tuple[tuple[str, float], ...]) -> tuple[list[str], list[float]]:
    if not mix:
        return [""], [1.0]
    total = sum(w for _, w in mix) or 1.0
    cdf = list(accumulate(w / total for _, w in mix))
    cdf[-1] = 1.0
    return [k for k, _ in mix], cdf


def rate_step(duration: float) -> float:
    """The rate grid's step for a run of ``duration`` seconds: :data:`RATE_STEP`, or in
    a run of more than :data:`MAX_RATE_STEPS` of them, the whole seconds that keep the
    grid within that many steps."""
    return max(RATE_STEP, float(math.ceil(duration / (MAX_RATE_STEPS * RATE_STEP))) * RATE_STEP)


def _diurnal_at(curve: tuple[float, ...], hours: np.ndarray) -> np.ndarray:
    """The daily factor at every local hour of ``hours`` (linear between the curve's
    hourly points, wrapping)."""
    if not curve:
        return np.ones_like(hours)
    c = np.asarray(curve, dtype=np.float64)
    n = len(c)
    h = (hours % 24.0) * n / 24.0
    i = np.floor(h).astype(np.int64)
    f = h - i
    out: np.ndarray = c[i % n] * (1.0 - f) + c[(i + 1) % n] * f
    return out


def _cdf_rows(weights: np.ndarray) -> np.ndarray:
    """:func:`_norm_cdf` along the last axis (all ones where the weights sum to 0)."""
    total = weights.sum(axis=-1, keepdims=True)
    safe = np.where(total > 0, total, 1.0)
    cdf: np.ndarray = np.cumsum(weights / safe, axis=-1)
    cdf[..., -1] = 1.0
    return np.where(total > 0, cdf, 1.0)


# ---- the engine ------------------------------------------------------------------------


class _Engine:
    def __init__(
        self,
        topo: Topology,
        seed: int,
        stop_at: float | None,
        sample_rate: float = 1.0,
        sample_keys: float = 0.0,
        sample_seed: int | None = None,
        sample_thin: float = 0.0,
    ) -> None:
        check_catalogs(topo.sites)
        self.topo = topo
        self.seed = seed
        self.rate = sample_rate
        self.sampled = sample_rate < 1.0
        self.skipped = 0
        # stratified sampling (docs/sampling.md): about ``bucket_keys`` keys of every
        # popularity bucket in the sample, strata (site, cache policy, popularity bucket),
        # steady-state arrivals per stratum, and the stratum of every recorded row
        self.bucket_keys = max(0.0, sample_keys) if self.sampled else 0.0
        self.sample_seed = seed if sample_seed is None else sample_seed
        self.salt = _sample_salt(self.sample_seed)
        self.policy_heads: dict[int, int] = {}  # site -> its cache policies (each one's top key is kept)
        # (host, target) -> the share of its bytes a key sampled above the rate is
        # charged in the caches (_SampledStore); shared by every cache of the run
        self.charge: dict[tuple[str, str], float] = {}
        self.strata_ids: dict[tuple[int, str, int], int] = {}
        # thinned keys (a key kept whole but hot enough that a share of its arrivals
        # tells its misses: docs/sampling.md): stratum id -> the share of its arrivals
        # simulated; the draws come from a generator of their own, so that the arrival
        # streams stay the full run's
        self.thin_arrivals = max(0.0, sample_thin) if self.sampled and self.bucket_keys > 0 else 0.0
        self.thinned: dict[int, tuple[float, int]] = {}  # ... -> (that share, its bucket)
        self.thin_gen = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.sample_seed, 17])))
        self._node_arrivals: list[float] = []
        self._fill_time = math.inf
        self._arrival_segments: tuple[np.ndarray, ...] | None = None
        self.expected_arrivals = 0.0  # of the synthetic traffic (check_load)
        # a sampled run's current block of arrivals, per site: the steady arrivals'
        # times, strata, sizes and whether each is simulated (see ``interrupted``)
        self._last_block: list[tuple[np.ndarray, ...]] = []
        self.arrivals_by_stratum: list[int] = []
        self.bytes_by_stratum: list[float] = []  # the sizes of those arrivals' objects
        self.kept_bytes_by_stratum: list[float] = []  # the same over the kept arrivals
        self.r_strat = array("i")
        self.f_strat = array("i")
        self.o_strat = array("i")
        tr = topo.traffic
        self.end = tr.duration if stop_at is None else max(0.0, min(tr.duration, stop_at))
        self.epoch0 = EPOCH + tr.start_hour_utc * 3600.0
        # About two events per bucket at the peak: a request makes about three events.
        # (Not capped at a second: a run of a request an hour at peak would scan an
        # hour's buckets per arrival. The order of events does not depend on the width.)
        rate = 3.0 * max(tr.peak_rps, 1e-6) * sample_rate
        self.heap = _Calendar(max(1e-6, 2.0 / rate))
        self.seq = 0  # events pushed so far: each event's ``seq``
        self.rec = Recorder()
        self.events: list[dict[str, Any]] = []
        ss = np.random.SeedSequence(seed)
        gens = [np.random.Generator(np.random.PCG64(s)) for s in ss.spawn(16)]
        self.exp_gen = gens[1]  # the arrival blocks' draws (_Arrivals)
        self.u_choice = _Uniform(gens[2])
        self._link_seeds = np.random.SeedSequence([seed, 3])
        self.u_misc = _Uniform(gens[4])
        self.u_balance = _Uniform(gens[5])
        node_ss = gens[6]
        site_ss = np.random.SeedSequence([seed, 7]).spawn(max(1, len(topo.sites)))

        # a trace replaces the synthetic arrivals (edgesim._tracetraffic)
        self.trace = load_trace_traffic(topo) if tr.trace is not None else None

        # origin
        sizes = self.trace.site_sizes if self.trace is not None else ()
        self.origin = origin_core(topo, self.epoch0, site_sizes=sizes)
        self.sites: list[_SiteModel] = []
        self.site_index: dict[str, int] = {}
        for i, s in enumerate(topo.sites):
            host = s.name.lower()
            dep = self.origin.sites[host].deploy
            if s.directory is not None:
                assert dep.files is not None
                urls = [p for p in dep.files if p.endswith(".html") or "." in p.rsplit("/", 1)[-1]]
                zipf = 0.8
            else:
                assert s.catalog is not None
                urls = self._catalog_urls(host)
                zipf = s.catalog.zipf
            m = _SiteModel(i, host, urls, zipf, np.random.Generator(np.random.PCG64(site_ss[i])))
            if s.redirect_share > 0 and dep.rules is not None:
                m.redirects = _static_redirects(dep.rules, host)
                m.redirect_share = s.redirect_share if m.redirects else 0.0
            self.sites.append(m)
            self.site_index[host] = i
        self.site_shares = [max(0.0, s.share) for s in topo.sites]
        if self.trace is None:
            self.check_load()
        if self.sampled:
            if self.thin_arrivals:
                self._node_arrivals = self._thin_horizon()
            for m in self.sites:
                self._sample_site(m)
            if self.trace is None:
                self.check_memory(self._kept_share())

        # nodes
        self.nodes: list[_Node] = []
        # the rule sets the nodes compile from manifests, shared (EdgeConfig.shared_rules)
        self.shared_rules: dict[str, Any] = {}
        self.region_nodes: list[list[_Node]] = []
        self.alive: list[list[_Node]] = []
        # per region, the consistent-hash owner of each URL (_choose), for these nodes
        self.hash_owners: list[dict[str, _Node]] = []
        self.rings: list[tuple[list[int], list[_Node]]] = []
        self.client_links: list[_Link] = []
        spikes = {sp.link: [] for sp in topo.faults.spikes}  # type: dict[str, list[tuple[float, float, float]]]
        for sp in topo.faults.spikes:
            spikes[sp.link].append((sp.at, sp.at + sp.duration, sp.extra))
        for ri, r in enumerate(topo.regions):
            g = r.edge
            # with a shield the uplink is the edge <-> shield link: its spikes are
            # "REGION->shield" ones (and "REGION->origin" ones, the path through it)
            up_spikes = spikes.get(f"{r.name}->origin", []) + spikes.get(f"{r.name}->shield", [])
            uplink = _Link(r.origin_latency, self._gen(), up_spikes)
            self.client_links.append(
                _Link(r.client_latency, self._gen(), spikes.get(f"{r.name}->client", []))
            )
            group = []
            for k in range(g.nodes):
                name = f"{r.name}-{k}"

                def make(name: str = name, g: Any = g) -> EdgeNode:
                    store = self._store(g.memory_cache, g.eviction, g.max_object)
                    disk = self._store(g.disk_cache, g.eviction, g.max_object) if g.disk_cache > 0 else None
                    config = EdgeConfig(name=name, shared_rules=self.shared_rules)
                    return EdgeNode(HttpCache(store, disk), config)

                n = _Node(
                    len(self.nodes),
                    name,
                    ri,
                    g.workers,
                    _Sampler(g.service_time, np.random.Generator(np.random.PCG64(node_ss.integers(2**63)))),
                    g.egress,
                    make,
                    uplink,
                    False,
                )
                if g.costs is not None:
                    n.costs = OutcomeTimes(g.costs, topo.sites)
                self.nodes.append(n)
                group.append(n)
            self.region_nodes.append(group)
            self.alive.append(list(group))
            self.hash_owners.append({})
            # (160 points a node: built only for the regions that balance by them)
            self.rings.append(_ring(group) if g.balancer == "consistent-hash" else ([], []))
        self.shield_nodes: list[_Node] = []
        self.shield_ring: tuple[list[int], list[_Node]] | None = None
        self.shield_owners: dict[str, dict[str, _Node]] = {}  # ring_owner's answers
        sh = topo.shield
        if sh is not None:
            sregion = next((i for i, r in enumerate(topo.regions) if r.name == sh.region), 0)
            slink = _Link(sh.latency_to_origin, self._gen(), [])
            for k in range(sh.nodes):
                name = f"shield-{sh.region}-{k}"

                def make_shield(name: str = name, sh: Any = sh) -> EdgeNode:
                    disk = self._store(sh.disk_cache) if sh.disk_cache > 0 else None
                    config = EdgeConfig(name=name, shared_rules=self.shared_rules, shield=True)
                    return EdgeNode(HttpCache(self._store(sh.memory_cache), disk), config)

                n = _Node(
                    len(self.nodes),
                    name,
                    sregion,
                    sh.workers,
                    _Sampler(sh.service_time, np.random.Generator(np.random.PCG64(node_ss.integers(2**63)))),
                    0.0,
                    make_shield,
                    slink,
                    True,
                )
                self.nodes.append(n)
                self.shield_nodes.append(n)
            self.shield_ring = _ring(self.shield_nodes)
        self.cand_origin: Any = None  # a [shadow] candidate origin (OriginCore)
        self.shadows = self._attach_shadows(topo)
        self.balancers = [r.edge.balancer for r in topo.regions]
        self.failover_to = failover_order(topo)
        self.rr = 0

        # origin model
        o = topo.origin
        self.o_workers = max(1, o.workers)
        self.o_max_queue = o.max_queue
        self.o_busy = 0
        self.o_queue: deque[_Up] = deque()
        self.o_service = _Sampler(o.service_time, gens[7])
        self.o_busy_steady = 0.0
        self.outages = sorted((x.at, x.at + x.duration) for x in topo.faults.outages)
        # the same as steps: a stretch is down when an outage holds it
        self.outage_edges, self.outage_steps = _down_steps(self.outages)

        # visitors: one CDF over (country, language) pairs per region, and the header
        # lists of each (site, region, pair), shared by requests (the cores only read them)
        self.visitors: list[list[float]] = []
        self.headers: list[list[list[list[tuple[str, str]]]]] = [[] for _ in self.sites]
        for r in topo.regions:
            cs, ccdf = _mix_cdf(r.countries)
            ls, lcdf = _mix_cdf(r.languages)
            cw = [b - a for a, b in zip([0.0, *ccdf[:-1]], ccdf, strict=True)]
            lw = [b - a for a, b in zip([0.0, *lcdf[:-1]], lcdf, strict=True)]
            pairs = [
                (c, lang, wc * wl)
                for c, wc in zip(cs, cw, strict=True)
                for lang, wl in zip(ls, lw, strict=True)
            ]
            self.visitors.append(_norm_cdf([w for _, _, w in pairs]))
            for si, m in enumerate(self.sites):
                rows = []
                for c, lang, _ in pairs:
                    h = [("host", m.host)]
                    if c:
                        h.append(("x-country", c))
                    if lang:
                        h.append(("accept-language", lang))
                    rows.append(h)
                self.headers[si].append(rows)
        self.jobs = 0
        self.arrivals = 0

    def _attach_shadows(self, topo: Topology) -> dict[str, Any]:
        """One shadow per edge node of the ``[shadow]`` regions, kept across restarts
        (docs/shadow.md); nothing at all without a ``[shadow]`` table."""
        spec = topo.shadow
        if spec is None:
            return {}
        from edgesim.shadow import Shadow, config_from_spec

        config = config_from_spec(spec)
        if spec.candidate == "origin":
            self.cand_origin = self.new_candidate_origin()
        out: dict[str, Any] = {}
        for n in self.nodes:
            if n.shield or (spec.regions and topo.regions[n.region].name not in spec.regions):
                continue
            shadow = out[n.name] = Shadow(config, timer=time.perf_counter)
            n.core.shadow = shadow
            n.make_core = partial(_with_shadow, n.make_core, shadow)
        return out

    def new_candidate_origin(self, *, bodies: bool = False) -> Any:
        """A ``[shadow]`` candidate origin of this run (``candidate = "origin"``): the
        topology's sites with the ``[shadow.origin]`` classes, at the run's epoch, with a
        replayed trace's object sizes. ``bodies``: real bodies (the Trio engine, which
        serves the candidate's answers over HTTP, builds its own so); the engine's own
        (:attr:`cand_origin`) has sizes only."""
        from edgesim.shadow import candidate_origin

        spec = self.topo.shadow
        assert spec is not None
        sizes = self.trace.site_sizes if self.trace is not None else ()
        return candidate_origin(self.topo, dict(spec.origin), self.epoch0, bodies=bodies, site_sizes=sizes)

    def _store(self, capacity: int, eviction: str = "lru", max_object: int = 0) -> MetadataStore:
        """A cache tier of a node. In a sampled run its capacity is scaled by the rate
        (SHARDS: the sample of keys gets the same share of the cache), and keys of
        buckets sampled above the rate weigh less (:class:`_SampledStore`)."""
        ev: Eviction = "fifo" if eviction == "fifo" else "lru"  # validated: one of the two
        limit = max_object or None
        if not self.sampled:
            return MetadataStore(capacity, eviction=ev, max_object_bytes=limit)
        cap = max(1, int(capacity * self.rate))
        return _SampledStore(cap, self.charge, eviction=ev, max_object_bytes=limit)

    def _stratum(self, site: int, cls: str, bucket: int) -> int:
        key = (site, cls, bucket)
        sid = self.strata_ids.get(key)
        if sid is None:
            sid = self.strata_ids[key] = len(self.strata_ids)
            self.arrivals_by_stratum.append(0)
            self.bytes_by_stratum.append(0.0)
            self.kept_bytes_by_stratum.append(0.0)
        return sid

    def _sample_site(self, m: _SiteModel) -> None:
        """Keys (site + URL) of ``m``'s current URLs and redirect sources in the sample,
        and the stratum of each: (site, cache policy, popularity bucket), the bucket
        being the bit length of the catalog index + 1 (Zipf rank 1, 2-3, 4-7, ...) and 0
        for redirect sources. A key of bucket ``b`` (``2 ** (b - 1)`` objects) is in the
        sample when its hash falls below ``max(rate, bucket_keys / 2 ** (b - 1))``: about
        ``bucket_keys`` keys of every bucket, so the most popular buckets are simulated
        whole, and buckets of more than ``bucket_keys / rate`` objects at the rate. With
        ``bucket_keys`` > 0 the most popular key of each cache policy is kept too."""
        urls = m.urls
        n = len(urls)
        dep = self.origin.sites[m.host].deploy
        m.size_of = np.concatenate((self._sizes(m), np.zeros(len(m.redirects))))
        buckets = np.frexp(np.arange(1, n + 1, dtype=np.float64))[1].astype(np.int64)  # bit lengths
        names, cls = _policy_classes(dep, urls)
        _, first, inverse, count = np.unique(
            cls * 256 + buckets, return_index=True, return_inverse=True, return_counts=True
        )
        inverse = inverse.reshape(-1)
        sid_of = np.array(
            [self._stratum(m.index, names[cls[i]], int(buckets[i])) for i in first.tolist()], dtype=np.int64
        )
        sids = sid_of[inverse]
        lifetimes = [_policy_lifetime(c) for c in names]
        stored = np.array([life is not None for life in lifetimes], dtype=bool)
        # About K keys of every bucket: of all its keys, or for a long-lived policy of
        # its own keys in the bucket (its keys are cheap to simulate, being thinned,
        # and hit more the more popular they are: a minor long-lived policy's empty
        # buckets were pooled with far less popular keys, the estimate's main bias)
        long_lived = np.array([life is not None and life >= _LONG_LIVED for life in lifetimes], dtype=bool)
        keys_in = np.where(long_lived[cls], count[inverse], np.ldexp(1.0, buckets - 1))
        rates = np.maximum(self.rate, np.minimum(1.0, self.bucket_keys / keys_in))
        if self.bucket_keys > 0 and n:
            # and each policy's most popular key: without it, a policy whose top keys
            # fall in buckets otherwise sampled at K / n often has none of them in the
            # sample, and its empty top strata take the hit ratio of less popular keys
            heads = np.unique(cls, return_index=True)[1]
            rates[heads[stored]] = 1.0
            self.policy_heads[m.index] = int(stored.sum())
            # a policy that no shared cache stores never hits, whatever the key: its
            # keys are sampled at the rate, none favoured
            rates[~stored[cls]] = self.rate
        # a redirect source that is also a file of the deploy is one key either way:
        # its arrivals as a redirect source take the file's rate, thinning and stratum
        also = _file_positions(dep, urls, m.redirects)
        if m.redirects:
            rates = np.concatenate((rates, [rates[i] if i >= 0 else self.rate for i in also]))
        m.kept_of = kept = _key_samples(m.host, urls + m.redirects, self.salt) < rates
        thin = self._thinning(m, kept[:n], cls, lifetimes)
        for i in np.flatnonzero(thin < 1.0).tolist():
            sid = self._stratum(m.index, names[cls[i]], -1 - i)  # a stratum of its own
            self.thinned[sid] = (float(thin[i]), int(buckets[i]))
            sids[i] = sid
        if m.redirects:
            # a redirect source that is a file is in the file's stratum, others in one
            rsid = self._stratum(m.index, "redirect", 0)
            extra = [int(sids[i]) if i >= 0 else rsid for i in also]
            sids = np.concatenate((sids, np.array(extra, dtype=np.int64)))
            thin = np.concatenate((thin, [thin[i] if i >= 0 else 1.0 for i in also]))
        m.strata = None  # by target, made when first asked (_SiteModel.stratum)
        m.stratum_list = sids.tolist()
        m.thin_of = thin if bool((thin < 1.0).any()) else None
        charge = self.charge
        for key in [key for key in charge if key[0] == m.host]:
            del charge[key]
        for i in np.flatnonzero(m.kept_of[:n] & (rates[:n] > self.rate)).tolist():
            charge[m.host, urls[i]] = self.rate / float(rates[i])
        m.stratum_of = sids

    def _thinning(
        self, m: _SiteModel, kept: np.ndarray, cls: np.ndarray, lifetimes: list[float | None]
    ) -> np.ndarray:
        """The share of its arrivals that a sampled run simulates of each of ``m``'s
        catalog keys: 1, or for a thinned key q <= 1/2.

        A kept key whose policy keeps it fresh long enough that even the edge node
        seeing the fewest of its arrivals gets about ``thin_arrivals`` / q of them
        within one freshness lifetime (and within the time the smallest cache takes
        to fill, so that it is not evicted between them, and between two purges or
        crashes, each of which costs it a miss) is simulated at a share q of
        its arrivals: its misses and revalidations come once per lifetime (and per
        purge or crash) whatever its request rate, so the thinned arrivals still see
        every one of them (docs/sampling.md, "Thinned keys")."""
        n = len(m.urls)
        thin = np.ones(n)
        per_node = self._node_arrivals[m.index] if self._node_arrivals else 0.0
        if not self.thin_arrivals or per_node <= 0.0 or self.end <= 0.0 or not n:
            return thin
        horizon = min(self.end, self._fill_time, self._reset_gap(m.host))
        life = np.array([min(x or 0.0, horizon) for x in lifetimes], dtype=np.float64)[cls]
        popularity = np.diff(m.cdf, prepend=0.0) * (1.0 - m.redirect_share)
        per_lifetime = popularity * per_node * life / self.end
        with np.errstate(divide="ignore"):
            q = np.where(per_lifetime > 0.0, self.thin_arrivals / per_lifetime, np.inf)
        pick = kept & (q <= 0.5)
        thin[pick] = q[pick]
        return thin

    def _sizes(self, m: _SiteModel) -> np.ndarray:
        """The object size of each of ``m``'s current URLs, in bytes."""
        dep = self.origin.sites[m.host].deploy
        if dep.files is not None:
            return np.array([dep.files[u].size for u in m.urls], dtype=np.float64)
        assert dep.catalog is not None
        return np.frombuffer(dep.catalog.sizes(), dtype=np.uint64).astype(np.float64)

    def _reset_gap(self, host: str) -> float:
        """The shortest time between two events that empty a cache of ``host``'s keys
        (its deploys' purges, any node's crash and restart; the run's start and end):
        each window costs a thinned key one more miss per node, which the thinned
        arrivals must still see."""
        events = {0.0, self.end}
        events.update(
            d.at for d in self.topo.traffic.deploys if d.site.lower() == host and 0.0 < d.at < self.end
        )
        for c in self.topo.faults.crashes:
            events.update(x for x in (c.at, c.at + c.down_for) if 0.0 < x < self.end)
        times = sorted(events)
        return min((b - a for a, b in itertools.pairwise(times)), default=self.end)

    def _thin_horizon(self) -> list[float]:
        """What thinning needs to know of the traffic (docs/sampling.md, "Thinned
        keys"): per site, the arrivals over the whole run expected at the edge node that
        sees the fewest of them (a region's arrivals spread over its nodes), and in
        ``self._fill_time`` how long the smallest cache of a node takes at least to
        fill with the bytes its arrivals ask for (an edge's capacity over its region's
        byte rate per node, a shield's over all regions'; unlimited for a cache that
        holds every object): a key asked for more often than that is not evicted
        between its requests. Zeros for a replayed trace, whose keys are never thinned."""
        nsites = len(self.sites)
        if self.trace is not None or not nsites or self.end <= 0.0:
            return [0.0] * nsites
        ends, rates, rcdf, scdf, epoch_of = self.arrival_segments()
        lens = np.diff(ends, prepend=0.0)
        region_p = np.diff(rcdf, axis=1, prepend=0.0)  # segments x regions
        site_p = np.diff(scdf, axis=2, prepend=0.0)  # epochs x regions x sites
        by_epoch = np.zeros((len(scdf), len(rcdf[0]) if len(rcdf) else 0))
        np.add.at(by_epoch, epoch_of, (rates * lens)[:, None] * region_p)  # arrivals, epochs x regions
        per_region = np.einsum("er,erk->rk", by_epoch, site_p)
        regions = self.topo.regions
        nodes = np.array([max(1, r.edge.nodes) for r in regions], dtype=np.float64)
        per_node = per_region / nodes[:, None]
        # bytes per arrival of each site (redirects ask for none), and of every object
        # (elementwise sums, not np.dot: a BLAS call leaves OpenBLAS's worker threads
        # spinning, about 0.1 CPU-seconds for nothing)
        sizes = [self._sizes(m) for m in self.sites]
        mean_bytes = np.array(
            [
                float((np.diff(m.cdf, prepend=0.0) * z).sum()) * (1.0 - m.redirect_share)
                for m, z in zip(self.sites, sizes, strict=True)
            ]
        )
        everything = sum(float(z.sum()) for z in sizes)

        def fill_time(capacity: float, byte_rate: float) -> float:
            # a cache that holds every object never evicts one
            return math.inf if capacity >= everything else capacity / max(1e-9, byte_rate)

        fill = [
            fill_time(
                r.edge.memory_cache + r.edge.disk_cache, float((per_node[ri] * mean_bytes).sum()) / self.end
            )
            for ri, r in enumerate(regions)
        ]
        sh = self.topo.shield
        if sh is not None:
            rate = float((per_region.sum(axis=0) * mean_bytes).sum()) / self.end
            fill.append(fill_time(sh.memory_cache + sh.disk_cache, rate))
        self._fill_time = min(fill) if fill else math.inf
        out = []
        for k in range(nsites):
            seen = per_node[per_region[:, k] > 0.0, k]
            out.append(float(seen.min()) if len(seen) else 0.0)
        return out

    def _gen(self) -> np.random.Generator:
        """A new independent generator (links, in creation order)."""
        return np.random.Generator(np.random.PCG64(self._link_seeds.spawn(1)[0]))

    def _catalog_urls(self, host: str) -> list[str]:
        cat = self.origin.sites[host].deploy.catalog
        assert cat is not None
        return cat.paths()

    # ---- scheduling ------------------------------------------------------------

    def push(self, t: float, kind: int, payload: Any) -> None:
        self.seq += 1
        self.heap.push(_Event(t, self.seq, kind, payload))

    def control(self, t: float, fn: Callable[[float], None]) -> None:
        self.push(t, _CONTROL, fn)

    # ---- arrivals ----------------------------------------------------------------

    def check_load(self) -> None:
        """Refuse a run that would not end, before its first draw: more arrivals
        expected than :data:`MAX_ARRIVALS` (a sampled run draws them all too). A full
        run is also checked against memory (:meth:`check_memory`); a sampled run is
        checked once its sample is known.

        Raises:
            ValueError: the run's expected load, what set it, and what to do.
        """
        ends, rates = self.arrival_segments()[:2]
        self.expected_arrivals = expected = float(np.dot(rates, np.diff(ends, prepend=0.0)))
        if not expected <= MAX_ARRIVALS:  # (NaN too: an overflowing product of rates)
            raise ValueError(
                f"traffic: {self._load_words(expected)}, more than the {MAX_ARRIVALS:.3g} a run can "
                "draw; lower traffic.peak_rps or the simulated time"
            )
        if not self.sampled:
            self.check_memory(1.0)

    def _load_words(self, expected: float) -> str:
        tr = self.topo.traffic
        crowds = ", flash crowds' multipliers included" if tr.flash_crowds else ""
        return (
            f"about {expected:.3g} requests expected (traffic.peak_rps {tr.peak_rps:g} over "
            f"{self.end:g} simulated seconds{crowds})"
        )

    def check_memory(self, kept: float) -> None:
        """Refuse a run whose recorded requests (``kept``: the expected share of the
        arrivals simulated) need more than this machine's memory, at about
        :data:`_BYTES_PER_REQUEST` each.

        Raises:
            ValueError: the requests, the memory they need and the machine's.
        """
        memory = physical_memory()
        if memory is None:
            return
        expected = self.expected_arrivals
        need = expected * kept * _BYTES_PER_REQUEST
        if need > memory:
            share = f", about {kept:.2g} of them simulated in this sample" if self.sampled else ""
            raise ValueError(
                f"traffic: {self._load_words(expected)}{share}; recording them needs about "
                f"{need / 2**30:,.1f} GiB and this machine has {memory / 2**30:,.1f} GiB of memory: "
                "lower traffic.peak_rps or the simulated time, or sample a smaller share"
            )

    def _kept_share(self) -> float:
        """The expected share of a sampled run's arrivals that are simulated: by site
        share, each site's kept keys weighed by their popularity (and thinning), and
        its kept redirect sources by its redirect share."""
        shares = np.asarray(self.site_shares, dtype=np.float64)
        total = float(shares.sum()) or 1.0
        kept_share = 0.0
        for m, share in zip(self.sites, shares.tolist(), strict=True):
            kept = m.kept_of
            if not share:
                continue
            n = len(m.urls)
            weight = np.diff(np.asarray(m.cdf, dtype=np.float64)[:n], prepend=0.0)  # popularity
            simulated = kept[:n] * (m.thin_of[:n] if m.thin_of is not None else 1.0)
            files = float(np.dot(weight, simulated) / (weight.sum() or 1.0)) if n else 0.0
            sources = float(np.mean(kept[n:])) if len(kept) > n else 0.0
            r = m.redirect_share
            kept_share += share / total * ((1.0 - r) * files + r * sources)
        return min(1.0, kept_share)

    def deploy_times(self) -> list[float]:
        """The instants of the deploys within the run, in order."""
        return sorted({d.at for d in self.topo.traffic.deploys if 0.0 < d.at < self.end})

    def arrival_segments(self) -> tuple[np.ndarray, ...]:
        """:meth:`_segments` cut at the deploys: the arrival blocks' rates (computed
        once; a sampled run's thinning reads them too)."""
        if self._arrival_segments is None:
            self._arrival_segments = self._segments(self.deploy_times())
        return self._arrival_segments

    def _segments(self, extra_cuts: Iterable[float] = ()) -> tuple[np.ndarray, ...]:
        """Piecewise-constant rates, one row per segment: segment ends, total rate and
        region CDF (segments x regions), all taken at each segment's start; then the
        site CDFs per flash-crowd epoch (epochs x regions x sites: an epoch is a set of
        flash crowds running, so the table does not grow with the run's length) and
        each segment's epoch. Segments end every ``RATE_STEP``, at flash crowds' edges
        and at ``extra_cuts``."""
        tr = self.topo.traffic
        regions = self.topo.regions
        # every step (k * step, exactly as float(k) * step; RATE_STEP but in long runs), flash-crowd
        # edges and the extra cuts: sorted, each once, those inside the run, then its end
        step = rate_step(self.topo.traffic.duration)  # (not stop_at: a prefix of the full run)
        grid = np.arange(1, math.ceil(self.end / step) + 1, dtype=np.float64) * step
        edges = [x for fc in tr.flash_crowds for x in (fc.start, fc.start + fc.duration)]
        cuts = np.unique(np.concatenate((grid, np.array([*edges, *extra_cuts], dtype=np.float64))))
        ends = np.append(cuts[(cuts > 0.0) & (cuts < self.end)], self.end)
        starts = np.concatenate(([0.0], ends[:-1]))
        names = [s.name for s in self.topo.sites]
        shares = np.array(self.site_shares, dtype=np.float64)
        total_share = float(shares.sum()) or 1.0
        crowds = tr.flash_crowds
        epochs: list[tuple[int, ...]] = [()]  # the crowds running in each epoch, in order
        if crowds:
            begin = np.array([fc.start for fc in crowds])
            finish = begin + np.array([fc.duration for fc in crowds])
            # the crowds running change only at crowd edges: one set per stretch between
            # edges that holds a segment start (its first one), not one per segment
            stretch = np.searchsorted(np.unique(np.concatenate((begin, finish))), starts, side="right")
            _, first, stretch_of = np.unique(stretch, return_index=True, return_inverse=True)
            epochs, of_stretch = _epochs(_running_sets(begin, finish, starts[first]))
            epoch_of = of_stretch[stretch_of.reshape(-1)]
        else:
            epoch_of = np.zeros(len(ends), dtype=np.int64)
        # site weights per epoch and region: shares times the flash crowds running (in
        # the crowds' order)
        mult = np.broadcast_to(shares, (len(epochs), len(regions), len(shares))).copy()
        for e, crowd_set in enumerate(epochs):
            for c in crowd_set:
                fc = crowds[c]
                for ri, r in enumerate(regions):
                    if fc.region and fc.region != r.name:
                        continue
                    for si, name in enumerate(names):
                        if name == fc.site:
                            mult[e, ri, si] *= fc.multiplier
        wsum = mult.sum(axis=2)[epoch_of]
        rates = np.empty((len(ends), len(regions)))
        for ri, r in enumerate(regions):
            hours = tr.start_hour_utc + r.utc_offset + starts / 3600.0
            rates[:, ri] = tr.peak_rps * r.client_share * _diurnal_at(tr.diurnal, hours)
        rates *= wsum / total_share
        return ends, rates.sum(axis=1), _cdf_rows(rates), _cdf_rows(mult), epoch_of.astype(np.int64)

    # ---- faults and deploys ------------------------------------------------------

    def crash_schedule(self) -> list[tuple[NodeCrash, _Node]]:
        """The ``[[faults.crashes]]`` that start before the run's end, in the topology's
        order, each with the node it names (the Trio engine crashes the same ones).

        Raises:
            ValueError: a crash names a region or node that does not exist.
        """
        names = [r.name for r in self.topo.regions]
        out = []
        for c in self.topo.faults.crashes:
            if c.at >= self.end:
                continue
            try:
                node = self.region_nodes[names.index(c.region)][c.node]
            except (ValueError, IndexError):
                raise ValueError(f"crash of unknown node {c.region}[{c.node}]") from None
            out.append((c, node))
        return out

    def _schedule_faults(self) -> None:
        topo = self.topo
        end = self.end
        for c, node in self.crash_schedule():
            node.track = True
            self.control(c.at, partial(self._crash, node, down_for=c.down_for))
        self.events.extend(model_events(topo, end))
        for dep in topo.traffic.deploys:
            if dep.at < end:
                self.control(dep.at, partial(self._deploy, dep))

    def _crash(self, node: _Node, t: float, *, down_for: float) -> None:
        node.crashes += 1
        node.up = False
        node.epoch += 1
        failed = list(node.active.values())
        node.active.clear()
        node.queue.clear()
        node.busy = 0
        node.conns -= len(failed)
        node.core = node.make_core()  # the cache is gone: the node restarts cold
        for job in failed:
            self._fail(job, t + self._client_link(job, node, t))
        delay = self.topo.faults.health_check_delay
        self.events.append(
            {
                "at": t,
                "kind": "node_crash",
                "node": node.name,
                "failed_in_flight": len(failed),
                "restart": t + down_for,
            }
        )
        self.control(t + delay, partial(self._detected, node, node.epoch))
        self.control(t + down_for, partial(self._restart, node, node.epoch))

    def _detected(self, node: _Node, epoch: int, t: float) -> None:
        if node.epoch == epoch and not node.up:
            self.node_down(node)

    def node_down(self, node: _Node) -> None:
        """The balancers stop choosing ``node`` (its health check failed)."""
        alive = self.alive[node.region]
        if node in alive:
            alive.remove(node)
            self.hash_owners[node.region].clear()

    def node_up(self, node: _Node) -> None:
        """The balancers choose ``node`` again (it restarted)."""
        alive = self.alive[node.region]
        if node not in alive:
            alive.append(node)
            alive.sort(key=lambda n: n.index)
            self.hash_owners[node.region].clear()

    def _restart(self, node: _Node, epoch: int, t: float) -> None:
        if node.epoch != epoch:
            return
        node.up = True
        self.node_up(node)
        self.events.append({"at": t, "kind": "node_restart", "node": node.name})

    def _deploy(self, dep: Deploy, t: float) -> None:
        host = dep.site.lower()
        si = self.site_index.get(host)
        if si is None:
            raise ValueError(f"deploy of unknown site {dep.site!r}")
        opts: dict[str, Any] = {}
        site = self.origin.sites[host]
        if site.deploy.catalog is not None:
            opts = {"seed": int(self.u_misc() * 2**31), "new_fraction": dep.new_fraction}
        prepared = self.origin.prepare_deploy(host, options=opts)
        d = self.origin.publish(prepared, self.epoch0 + t)
        if self.cand_origin is not None:  # the candidate origin gets the same deploy
            self.cand_origin.publish(self.cand_origin.prepare_deploy(host, options=opts), self.epoch0 + t)
        if d.catalog is not None:
            self.sites[si].urls = self._catalog_urls(host)
            if self.sampled:
                self._sample_site(self.sites[si])
        purges = []
        for n in self.nodes:
            at = t + dep.propagation * self.u_misc()
            purges.append(at)
            self.control(at, partial(self._purge, n, host, d.created))
        self.events.append(
            {
                "at": t,
                "kind": "deploy",
                "site": host,
                "deploy_id": d.id,
                "new_fraction": dep.new_fraction,
                "purged_by": max(purges) if purges else t,
            }
        )

    def _purge(self, node: _Node, host: str, created: float, t: float) -> None:
        node.core.purge_deploy(host, created)

    # ---- request flow ------------------------------------------------------------

    def _choose(self, ri: int, url: str, exclude: list[_Node] | None) -> _Node | None:
        """A live node of region ``ri`` for ``url`` by the region's balancer, but none of
        ``exclude`` (the nodes a retrying client has timed out on); None: none left."""
        alive = self.alive[ri]
        if exclude is not None:
            alive = [n for n in alive if n not in exclude]
        if not alive:
            return None
        kind = self.balancers[ri]
        if len(alive) == 1:
            return alive[0]
        if kind == "least-connections":
            # ties go round-robin (a fixed first choice would take all light traffic)
            self.rr += 1
            k = len(alive)
            best = alive[self.rr % k]
            for j in range(1, k):
                n = alive[(self.rr + j) % k]
                if n.conns < best.conns:
                    best = n
            return best
        if kind == "consistent-hash":
            # kept by URL while the region's live nodes stay the same (see _detected)
            kept = self.hash_owners[ri]
            if exclude is None:
                owner = kept.get(url)
                if owner is not None:
                    return owner
            points, owners = self.rings[ri]
            h = zlib.crc32(url.encode())
            i = bisect_right(points, h)
            npts = len(points)
            for k in range(npts):
                n = owners[(i + k) % npts]
                if n in alive:
                    if exclude is None:
                        if len(kept) >= _OWNER_MEMO:
                            kept.clear()
                        kept[url] = n
                    return n
            return None
        return alive[int(self.u_balance() * len(alive))]

    def failover(self, ri: int, url: str, exclude: list[_Node] | None) -> tuple[_Node, float] | None:
        """Cross-region failover, for a client of region ``ri`` whose region has no live
        node left (but those of ``exclude``, which it timed out on): a node of the nearest regions by
        ``[network.region_latency]`` that have one, chosen by that region's balancer,
        and the latency between the regions (None: no region is reachable). Regions at
        the same latency share the URLs by their hash."""
        for lat, group in self.failover_to[ri]:
            k = len(group)
            first = zlib.crc32(url.encode()) % k if k > 1 else 0
            for j in range(k):
                node = self._choose(group[(first + j) % k], url, exclude)
                if node is not None:
                    return node, lat
        return None

    def _failover(self, job: _Job, exclude: list[_Node] | None) -> _Node | None:
        """:meth:`failover` for ``job``, whose ``extra`` becomes the regions' latency."""
        found = self.failover(job.region, job.req.target, exclude)
        if found is None:
            return None
        job.extra = found[1]
        return found[0]

    def _client_link(self, job: _Job, node: _Node, t: float) -> float:
        """One crossing of the client's link to ``node``: the client latency of the
        node's region, plus the region-to-region latency when the client failed over."""
        return self.client_links[node.region](t) + job.extra

    def _fail(self, job: _Job, end: float) -> None:
        """A client request that got no answer at all: recorded at the node it was last
        sent to (its region's first node if none), with its region if that is another."""
        node = job.node if job.node is not None else self.region_nodes[job.region][0]
        home = job.region if node.region != job.region else -1
        self.rec.add(job.t0, end - job.t0, job.queued, node.index, job.site, O_FAILED, 0, job.retries, home)
        if self.sampled:
            self.r_strat.append(job.stratum)

    def _dead_node(self, job: _Job, t: float) -> None:
        """A request sent to a crashed node: the client times out, then retries."""
        self.push(job.t_sent + self.topo.faults.client_timeout, _RETRY, job)

    def _retry(self, job: _Job, t: float) -> None:
        old = job.node
        assert old is not None
        old.conns -= 1
        job.retries += 1
        job.extra = 0.0
        # the client remembers every node it timed out on (bouncing between two dead
        # nodes of its region until the health check dropped them took 30 s)
        tried = job.tried
        if tried is None:
            tried = job.tried = []
        tried.append(old)
        node = self._choose(job.region, job.req.target, tried)
        if node is None:
            node = self._failover(job, tried)
        if node is None:
            self._fail(job, t)
            return
        node.conns += 1
        job.node = node
        # a client that failed over times a dead node from when its request reached the
        # node's region (as the Trio engine's clients do)
        job.t_sent = t + job.extra
        self.push(t + self._client_link(job, node, t), _NODE_ARRIVE, job)

    def _step(self, job: _Job, node: _Node, step: Any, t: float) -> None:
        while True:
            cls = type(step)
            if cls is Reply:
                if step.background is not None:
                    self._send_up(node, step.background, None, t)
                self._reply(job, node, step, t)
                return
            if cls is Fetch:
                self._send_up(node, step, job, t)
                return
            assert cls is Join
            f = step.fetch
            if f.done or f.token is None:
                step = node.core.joined(step, self.epoch0 + t)
                continue
            if f.kind != "manifest":
                job.collapsed = True
            step.token = job
            f.token.append(step)
            return

    def _over(self, link: _Link, t: float, kind: int, payload: Any) -> None:
        """Push ``payload``'s event to happen when it has crossed ``link`` from ``t``
        (the delay drawn from the link's buffer when it can: ``link(t)`` otherwise)."""
        lb = link.fast
        self.push(t + (lb.pop() if lb else link(t)), kind, payload)

    def _reply(self, job: _Job, node: _Node, step: Reply, t: float) -> None:
        resp = step.response
        up = job.parent
        if up is not None:  # a shield's answer travels back to the edge that asked
            up.response = resp
            up.shield = node.index
            up.code = _outcome_code(step, job.collapsed)
            if up.job is not None:
                up.job.queued += job.queued
            self._over(up.node.uplink, t, _FETCH_BACK, up)
            return
        size = resp.size
        end = t + self._client_link(job, node, t)
        if node.egress > 0:
            end += size / node.egress
        node.conns -= 1
        if node.track:
            node.active.pop(job.id, None)
        code = _outcome_code(step, job.collapsed)
        home = job.region if node.region != job.region else -1
        self.rec.add(job.t0, end - job.t0, job.queued, node.index, job.site, code, size, job.retries, home)
        if self.sampled:
            self.r_strat.append(job.stratum)

    def _send_up(self, node: _Node, fetch: Fetch, job: _Job | None, t: float) -> None:
        fetch.token = []
        si = self.site_index.get(fetch.site, -1)
        up = _Up(fetch, node, job, self.rec.fetch(t, node.index, si, fetch.kind))
        up.site = si
        if self.sampled:
            if fetch.kind == "manifest":
                up.stratum = _PER_NODE
            elif job is not None:
                up.stratum = job.stratum
            elif si >= 0:
                up.stratum = self.sites[si].stratum(fetch.client.target)
            self.f_strat.append(up.stratum)
        if not node.shield and self.shield_ring is not None:
            # the ring never changes: owners are kept by site and target (misses of one
            # URL at many edges), at most _OWNER_MEMO per site, then started over
            owners = self.shield_owners.get(fetch.site)
            if owners is None:
                owners = self.shield_owners[fetch.site] = {}
            path = fetch.request.target
            target = owners.get(path)
            if target is None:
                target = ring_owner(self.shield_ring, fetch.site, path)
                if len(owners) >= _OWNER_MEMO:
                    owners.clear()
                owners[path] = target
            up.to_shield = True
            sj = _Job(-1, t, target.region, si, fetch.request, up)
            sj.node = target
            sj.stratum = up.stratum
            self._over(node.uplink, t, _NODE_ARRIVE, sj)
            return
        self._over(node.uplink, t, _UP_ARRIVE, up)

    def _origin_arrive(self, up: _Up, t: float) -> None:
        steps = self.outage_steps  # (empty without outages: no search on every arrival)
        if steps and _down_at(self.outage_edges, steps, t):  # an origin outage
            up.error = "connect"
            self.rec.origin(t, up.site, -1, 0, 0.0)
            if self.sampled:
                self.o_strat.append(up.stratum)
            self._over(up.node.uplink, t, _FETCH_BACK, up)
            return
        up.t_in = t
        if self.o_busy < self.o_workers:
            self.o_busy += 1
            s = self.o_service()
            self.o_busy_steady += self._busy(t, s)
            self.push(t + s, _ORIGIN_DONE, up)
        elif self.o_max_queue and len(self.o_queue) >= self.o_max_queue:
            up.response = Response(503, [("cache-control", "no-store"), ("content-length", "0")], None, 0)
            self.rec.origin(t, up.site, 503, 0, -1.0)
            if self.sampled:
                self.o_strat.append(up.stratum)
            self._over(up.node.uplink, t, _FETCH_BACK, up)
        else:
            self.o_queue.append(up)

    def _origin_done(self, up: _Up, t: float) -> None:
        q = self.o_queue
        if q:
            nxt = q.popleft()
            nxt.wait = t - nxt.t_in
            s = self.o_service()
            self.o_busy_steady += self._busy(t, s)
            self.push(t + s, _ORIGIN_DONE, nxt)
        else:
            self.o_busy -= 1
        wait = up.wait
        resp = self.origin.handle(up.fetch.request, self.epoch0 + t)
        up.response = resp
        self.rec.origin(t, up.site, resp.status, resp.size, wait)
        if self.sampled:
            self.o_strat.append(up.stratum)
        if up.job is not None:
            up.job.queued += wait
        self._over(up.node.uplink, t, _FETCH_BACK, up)

    def _fetch_back(self, up: _Up, t: float) -> None:
        node = up.node
        if up.epoch != node.epoch:
            return
        f = up.fetch
        resp = up.response
        rec = self.rec
        if resp is not None:
            rec.fetched(up.log, resp.size)
            if up.shield >= 0:
                rec.shield_answer(up.log, up.shield, up.code, t - rec.fetch_time(up.log))
        else:
            rec.fetch_failed(up.log)
        now = self.epoch0 + t
        if self.cand_origin is not None and resp is not None and node.core.shadow is not None:
            resp = node.core.shadow.origin(f.request, resp, partial(self.cand_origin.handle, now=now), now)
        step = node.core.complete(f, resp, up.error, now)
        job = up.job
        if job is not None:
            self._step(job, node, step, t)
        waiters = f.token
        f.token = None
        for join in waiters:
            wj = join.token
            if wj.epoch != node.epoch:
                continue
            self._step(wj, node, node.core.joined(join, now), t)

    # ---- the loop ------------------------------------------------------------------

    def release(self) -> None:
        """The run is over: drop the nodes' core factories. They close over the engine,
        the one reference cycle that held its whole heap (every cache entry, about a
        million objects for 60 s at 2,000 requests/s), which the cyclic collector then
        took most of a second to walk; without it, reference counting frees the engine
        when the last reference goes. A released engine cannot restart a node."""
        for n in self.nodes:
            n.make_core = _released

    def interrupted(self, reached: float) -> None:
        """The loop was stopped (Ctrl-C) somewhere after its last progress point
        ``reached`` (virtual time): the report covers the client requests recorded by
        then, and its span ends at the last of them to arrive (or at ``reached``, if
        later). Requests still in flight are left out of it, as of ``simulated_requests``.
        A sampled run also stops counting its strata's arrivals at the last client request
        recorded, as it had counted the whole of its current block of arrivals when it
        took it (the stratum weights would otherwise be too high)."""
        rec = self.rec
        rec.flush()
        t0 = np.frombuffer(rec.r_t0, dtype=np.float64)
        cut = float(t0.max()) if len(t0) else -math.inf
        self.end = max(reached, cut, 1e-9)
        self.arrivals = len(t0)
        if not self.sampled or not self._last_block:
            return
        n = len(self.arrivals_by_stratum)
        for t, sids, sizes, kept in self._last_block:
            late = t > cut
            if not late.any():
                continue
            s = sids[late]
            counts = np.bincount(s, minlength=n)
            nbytes = np.bincount(s, weights=sizes[late], minlength=n)
            kbytes = np.bincount(s, weights=sizes[late] * kept[late], minlength=n)
            for sid in np.flatnonzero(counts).tolist():
                self.arrivals_by_stratum[sid] -= int(counts[sid])
                self.bytes_by_stratum[sid] -= float(nbytes[sid])
                self.kept_bytes_by_stratum[sid] -= float(kbytes[sid])
        self._last_block = []

    def _busy(self, t: float, s: float) -> float:
        """The part of [t, t + s) inside the steady-state window [warmup, end)."""
        a = t if t > self.warmup else self.warmup
        b = t + s if t + s < self.end else self.end
        return b - a if b > a else 0.0

    def _take_block(self, src: _Arrivals) -> tuple[list[Any], ...]:
        """The next block of arrivals as lists for the loop; in a sampled run only the
        arrivals whose key is in the sample, after counting every steady-state arrival
        of each stratum (docs/sampling.md)."""
        t, ri, si, obj, vi, ub = src.block(visitors=not self.sampled)
        if self.sampled and len(t):
            keep = np.zeros(len(t), dtype=bool)
            steady = t >= self.warmup
            counts = np.zeros(len(self.arrivals_by_stratum), dtype=np.int64)
            nbytes = np.zeros(len(counts))
            kept_bytes = np.zeros(len(counts))
            last: list[tuple[np.ndarray, ...]] = []
            for m in self.sites:
                sel = np.flatnonzero(si == m.index)
                if not len(sel):
                    continue
                o = obj[sel]
                ext = np.where(o >= 0, o, len(m.urls) - 1 - o)  # redirect k: len(urls) + k
                kept = m.kept_of[ext]
                if m.thin_of is not None:  # a share of the thinned keys' arrivals
                    kept &= self.thin_gen.random(len(ext)) < m.thin_of[ext]
                keep[sel] = kept
                st = steady[sel]
                e = ext[st]
                sids = m.stratum_of[e]
                sizes = m.size_of[e]
                counts += np.bincount(sids, minlength=len(counts))
                nbytes += np.bincount(sids, weights=sizes, minlength=len(counts))
                kept_bytes += np.bincount(sids, weights=sizes * kept[st], minlength=len(counts))
                last.append((t[sel][st], sids, sizes, kept[st]))
            by_stratum = self.arrivals_by_stratum
            bytes_by = self.bytes_by_stratum
            kept_by = self.kept_bytes_by_stratum
            nz = np.flatnonzero(counts)
            for sid, c, b, k in zip(
                nz.tolist(), counts[nz].tolist(), nbytes[nz].tolist(), kept_bytes[nz].tolist(), strict=True
            ):
                by_stratum[sid] += c
                bytes_by[sid] += b
                kept_by[sid] += k
            self._last_block = last  # once counted (``interrupted`` takes it back)
            self.skipped += len(t) - int(keep.sum())
            t, ri, si, obj, ub = t[keep], ri[keep], si[keep], obj[keep], ub[keep]
            vi = src.visitors(ri, vi[keep])
        return t.tolist(), ri.tolist(), si.tolist(), obj.tolist(), vi.tolist(), ub.tolist()

    def run(self, progress: Callable[[float, float, int], None] | None) -> None:
        self.warmup = warmup = self.topo.traffic.warmup
        end = self.end
        self._schedule_faults()
        src = _Arrivals(self)
        heap = self.heap
        epoch0 = self.epoch0
        sites = self.sites
        headers = self.headers
        client_links = self.client_links
        alive = self.alive
        random_balanced = [b == "random" for b in self.balancers]
        rec = self.rec
        outcome_code = _OUTCOME
        sampled = self.sampled
        a_strat = self.r_strat.append
        # The arrivals come in blocks (_Arrivals). A block is taken when its first
        # instant comes, after every event before it (deploys change URLs and samples).
        b_t: list[float] = []
        b_region: list[int] = []
        b_site: list[int] = []
        b_obj: list[int] = []
        b_vis: list[int] = []
        b_bal: list[float] = []
        bi = bn = 0
        take = True
        t_arr = src.start()  # block times are all before ``end``
        jid = 0
        report_at = _PROGRESS_EVERY
        # Typed, so that compiled code reads their fields directly: a heap entry's
        # payload is Any, and every field read through Any is a generic attribute lookup.
        job: _Job
        node: _Node
        step: Step | None
        while True:
            first = heap.first()
            if first is not None and first.t <= t_arr:
                e = heap.pop()
                t = e.t
                kind = e.kind
                payload = e.payload
                if kind == _SERVICE_DONE:
                    job = payload
                    node = cast(_Node, job.node)  # set before its first event
                    if job.epoch != node.epoch:
                        continue
                    step = job.step
                    if step is not None:  # the outcome's share of a calibrated service time ended
                        job.step = None
                    elif node.costs is None:
                        step = node.core.handle(job.req, epoch0 + t)
                    else:  # calibrated (edgesim._costs): the worker stays busy for the outcome's rest
                        step, extra = node.costs.decide(node.core, job.req, job.site, epoch0 + t)
                        if extra > 0:
                            node.busy_steady += self._busy(t, extra)
                            job.step = step
                            self.push(t + extra, _SERVICE_DONE, job)
                            continue
                    q = node.queue
                    if q:
                        nxt = q.popleft()
                        nxt.queued += t - nxt.t_in
                        sb = node.service.buf
                        s = sb.pop() if sb else node.service()
                        node.busy_steady += s if warmup <= t and t + s <= end else self._busy(t, s)
                        self.push(t + s, _SERVICE_DONE, nxt)
                    else:
                        node.busy -= 1
                    if type(step) is Reply and step.background is None and job.parent is None:
                        resp = step.response
                        size = resp.size
                        link = client_links[node.region]
                        lb = link.fast
                        done = t + (lb.pop() if lb else link(t)) + job.extra
                        if node.egress:
                            done += size / node.egress
                        node.conns -= 1
                        if node.track:
                            node.active.pop(job.id, None)
                        code = outcome_code[step.outcome]
                        if resp.status >= 500:
                            code = O_ERROR
                        elif code == 0 and job.collapsed:
                            code = O_COLLAPSED
                        t0 = job.t0
                        home = job.region if node.region != job.region else -1
                        rec.add(
                            t0, done - t0, job.queued, node.index, job.site, code, size, job.retries, home
                        )
                        if sampled:
                            a_strat(job.stratum)
                    else:
                        self._step(job, node, step, t)
                elif kind == _NODE_ARRIVE:
                    job = payload
                    node = cast(_Node, job.node)
                    if not node.up:
                        self._dead_node(job, t)
                        continue
                    job.epoch = node.epoch
                    job.t_in = t
                    if node.track and job.parent is None:
                        node.active[job.id] = job
                    if node.busy < node.workers:
                        node.busy += 1
                        sb = node.service.buf
                        s = sb.pop() if sb else node.service()
                        node.busy_steady += s if warmup <= t and t + s <= end else self._busy(t, s)
                        self.push(t + s, _SERVICE_DONE, job)
                    else:
                        q = node.queue
                        q.append(job)
                        if len(q) > node.max_queue:
                            node.max_queue = len(q)
                elif kind == _FETCH_BACK:
                    self._fetch_back(payload, t)
                elif kind == _UP_ARRIVE:
                    self._origin_arrive(payload, t)
                elif kind == _ORIGIN_DONE:
                    self._origin_done(payload, t)
                elif kind == _RETRY:
                    self._retry(payload, t)
                else:
                    payload(t)
                continue
            if t_arr == math.inf:
                break
            if take:
                b_t, b_region, b_site, b_obj, b_vis, b_bal = self._take_block(src)
                bi, bn = 0, len(b_t)
                take = bn == 0
                t_arr = b_t[0] if bn else src.start()
                if sampled and progress is not None:  # few arrivals may be kept
                    progress(min(t_arr, end), end, jid)
                continue
            # a client request arrives
            t = t_arr
            ri = b_region[bi]
            sm = sites[b_site[bi]]
            oi = b_obj[bi]
            url = sm.urls[oi] if oi >= 0 else sm.redirects[-1 - oi]
            vi = b_vis[bi]
            u5 = b_bal[bi]
            bi += 1
            if bi < bn:
                t_arr = b_t[bi]
            else:
                take = True
                t_arr = src.start()
            si = sm.index
            jid += 1
            job = _Job(jid, t, ri, si, Request("GET", url, headers[si][ri][vi]), None)
            if sampled:
                job.stratum = sm.stratum_list[oi if oi >= 0 else len(sm.urls) - 1 - oi]
            group = alive[ri]
            dest: _Node | None
            if random_balanced[ri] and group:
                dest = group[int(u5 * len(group))] if len(group) > 1 else group[0]
            else:
                dest = self._choose(ri, url, None)
                if dest is None:
                    dest = self._failover(job, None)
                    job.t_sent = t + job.extra
            if dest is None:
                self._fail(job, t)
            else:
                dest.conns += 1
                job.node = dest
                link = client_links[dest.region]
                lb = link.fast
                self.push(t + (lb.pop() if lb else link(t)) + job.extra, _NODE_ARRIVE, job)
            if jid >= report_at:
                report_at += _PROGRESS_EVERY
                if progress is not None:
                    progress(t, end, jid)
        self.arrivals = jid
        self.rec.flush()
        if progress is not None:
            progress(end, end, jid)


def check_catalogs(sites: Iterable[Site]) -> None:
    """Refuse synthetic catalogs that together need more than this machine's memory, at
    :data:`_BYTES_PER_OBJECT` each (their URLs, sizes and policies are held by the
    engine and its origin), before any is built.

    Raises:
        ValueError: the objects, the memory they need and the machine's.
    """
    objects = sum(s.catalog.objects for s in sites if s.catalog is not None)
    memory = physical_memory()
    need = objects * _BYTES_PER_OBJECT
    if memory is not None and need > memory:
        raise ValueError(
            f"sites: {objects:,} catalog objects in all need about {need / 2**30:,.1f} GiB to simulate "
            f"and this machine has {memory / 2**30:,.1f} GiB of memory: lower sites' catalog.objects"
        )


def physical_memory() -> float | None:
    """This machine's physical memory in bytes, or None where it cannot be told."""
    try:
        memory = float(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):  # not on every platform
        return None
    return memory if memory > 0 else None


def _running_sets(begin: np.ndarray, finish: np.ndarray, at: np.ndarray) -> list[tuple[int, ...]]:
    """For each instant of ``at``, the crowds running then (``begin <= t < finish``), as
    ascending indices: looked up in the crowds' stretches (:func:`_stretches`), not in
    an instants x crowds table."""
    swept = _stretches(list(zip(begin.tolist(), finish.tolist(), strict=True)))
    assert swept is not None  # (no budget)
    edges, held = swept
    out: list[tuple[int, ...]] = []
    for t in at.tolist():
        i = bisect_right(edges, t) - 1
        out.append(held[i] if 0 <= i < len(held) else ())
    return out


def _epochs(running: list[tuple[int, ...]]) -> tuple[list[tuple[int, ...]], np.ndarray]:
    """The distinct sets of ``running`` and the number of each item's set: numbered as
    ``np.unique`` numbers the rows of the items x crowds table of booleans (an earlier
    crowd running sorts later; a set sorts before the sets it starts), without the
    table."""
    epochs = sorted(set(running), key=lambda crowd_set: tuple(-c for c in crowd_set))
    number = {crowd_set: e for e, crowd_set in enumerate(epochs)}
    return epochs, np.array([number[x] for x in running], dtype=np.int64)


def _stratum_weights(eng: _Engine) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per-row weights of a sampled run's recorded rows (stratified ratio estimator).

    A stratum's weight is its steady-state arrivals (every arrival is drawn, kept or
    not, so these are exact) over the steady-state client rows the sampled run recorded
    for it: each recorded row stands for that many requests. A stratum with arrivals
    but no recorded row is shared between the nearest recorded strata of its site and
    policy on either side in popularity (linearly in the bucket; all to the one at an
    end). Fetch and origin rows take the weight of the client request that caused them;
    manifests (one per node and site) weigh 1.

    Bytes served to clients have weights of their own (``request_bytes``), found the
    same way from the size of each arrival's object, known for every arrival: a
    stratum's weight is the object bytes of all its arrivals over those of its kept
    (simulated) arrivals, so its served bytes are estimated as the object bytes of all
    its arrivals times the served share the sample measured (errors and empty answers
    serve less than the object). Object sizes are heavy-tailed, so which sizes the
    sampled keys happen to have would otherwise set the byte hit ratio as much as their
    hits do.
    """
    n = len(eng.strata_ids)
    arrivals = np.asarray(eng.arrivals_by_stratum, dtype=np.float64)
    arrival_bytes = np.asarray(eng.bytes_by_stratum, dtype=np.float64)
    kept_bytes = np.asarray(eng.kept_bytes_by_stratum, dtype=np.float64)
    rec = eng.rec
    rec.flush()
    t0 = column(rec.r_t0)
    rs = column(eng.r_strat)
    steady = (t0 >= eng.topo.traffic.warmup) & (rs >= 0)
    recorded = np.bincount(rs[steady], minlength=n).astype(np.float64)[:n]
    w = np.full(n, 1.0 / eng.rate)
    wb = w.copy()
    groups: dict[tuple[int, str], list[tuple[int, int]]] = {}
    for (site, cls, bucket), sid in eng.strata_ids.items():
        b = eng.thinned[sid][1] if sid in eng.thinned else bucket  # a thinned key's own
        groups.setdefault((site, cls), []).append((b, sid))
    unrepresented = 0.0
    pooled = 0
    # A thinned key: its misses and revalidations (answered: an error is not a MISS)
    # come once per freshness lifetime (or purge, crash) whatever its request rate, so
    # each stands for itself with the upstream requests it caused, and its other rows
    # (hits above all) stand for the rest of its arrivals. Not during an origin outage,
    # when every request for an expired key goes upstream (and may be answered stale).
    # Empty strata pooled into it take its outcomes in proportion.
    outcome = column(rec.r_key) & 0xF
    in_outage = _outage_mask(eng.topo)
    per_lifetime = np.isin(outcome, (O_MISS, O_REVALIDATED)) & ~in_outage(t0)
    once = steady & per_lifetime
    once_rows = np.bincount(rs[once], minlength=n).astype(np.float64)[:n]
    thinned = np.zeros(n + 2, dtype=bool)
    w_once = np.ones(n)
    wb_once = np.ones(n)
    for members in groups.values():
        members.sort()
        sids = [sid for _, sid in members]
        full = [i for i, sid in enumerate(sids) if recorded[sid] > 0]
        if not full:
            unrepresented += float(np.sum(arrivals[sids]))
            continue
        pooled += sum(1 for i, sid in enumerate(sids) if recorded[sid] == 0 and arrivals[sid] > 0)
        stands = _spread(members, full, arrivals)
        stands_bytes = _spread(members, full, arrival_bytes)
        for i in full:
            sid = sids[i]
            if sid in eng.thinned:
                thinned[sid] = True
                own, rest = float(arrivals[sid]), float(recorded[sid] - once_rows[sid])
                hit, one = (
                    (max(0.0, own - once_rows[sid]) / rest, 1.0) if rest > 0 else ((own / recorded[sid],) * 2)
                )
                k = stands[i] / own
                kb = stands_bytes[i] / arrival_bytes[sid] if arrival_bytes[sid] > 0 else k
                w[sid], wb[sid], w_once[sid], wb_once[sid] = k * hit, kb * hit, k * one, kb * one
                continue
            w[sid] = stands[i] / float(recorded[sid])
            # no object bytes kept (redirect sources): the count's weight
            wb[sid] = stands_bytes[i] / float(kept_bytes[sid]) if kept_bytes[sid] > 0 else w[sid]

    def rows(col: array[int], weight: np.ndarray) -> Any:
        table = np.concatenate((weight, [1.0, 1.0 / eng.rate]))  # then _PER_NODE, _NO_STRATUM
        idx = column(col)
        return table[np.where(idx == _PER_NODE, n, np.where(idx < 0, n + 1, idx))]

    req, req_bytes = rows(eng.r_strat, w), rows(eng.r_strat, wb)
    fetches, origin = rows(eng.f_strat, w), rows(eng.o_strat, w)
    fetch_bytes, origin_bytes = rows(eng.f_strat, wb), rows(eng.o_strat, wb)
    if thinned.any():
        # a thinned key's rows that stand for themselves (warm-up rows too), and what
        # they caused upstream
        col = column(eng.r_strat)
        alone = thinned[np.where(col < 0, n, col)] & per_lifetime
        req[alone] = w_once[col[alone]]
        req_bytes[alone] = wb_once[col[alone]]
        # upstream: answered fills and revalidations (not passes, which go upstream
        # for every request, nor refused or failed ones, nor during an outage)
        f_t = column(rec.f_t)
        f_kind = column(rec.f_kind)
        f_err = column(rec.f_error)
        o_t = column(rec.o_t)
        o_status = column(rec.o_status)
        fetch_once = (f_kind != _PASS_FETCH) & (f_err == 0) & ~in_outage(f_t)
        origin_once = (o_status >= 0) & (o_status < 500) & ~in_outage(o_t)
        for arr, arr_bytes, upstream, answered in (
            (fetches, fetch_bytes, eng.f_strat, fetch_once),
            (origin, origin_bytes, eng.o_strat, origin_once),
        ):
            col = column(upstream)
            up = thinned[np.where(col < 0, n, col)] & answered
            arr[up] = w_once[col[up]]
            arr_bytes[up] = wb_once[col[up]]
    weights = {
        "requests": req,
        "request_bytes": req_bytes,
        "fetches": fetches,
        "fetch_bytes": fetch_bytes,
        "origin": origin,
        "origin_bytes": origin_bytes,
    }
    meta = {
        "kind": "stratified",
        "keys_per_bucket": eng.bucket_keys,
        "whole_objects_per_site": _whole_objects(eng.bucket_keys),
        "policy_heads": sum(eng.policy_heads.values()),
        "thin_arrivals": eng.thin_arrivals,
        "thinned_keys": len(eng.thinned),
        "sample_seed": eng.sample_seed,
        "strata": int(np.sum(arrivals > 0)),
        "pooled_strata": pooled,
        "unrepresented_requests": round(unrepresented),
    }
    return weights, meta


def _outage_mask(topology: Topology) -> Callable[[np.ndarray], np.ndarray]:
    """Whether each of a column of virtual times falls in an origin outage (or within
    a client timeout after one, while its failed requests are still answered)."""
    spans = [(o.at, o.at + o.duration + topology.faults.client_timeout) for o in topology.faults.outages]

    def mask(times: np.ndarray) -> np.ndarray:
        out = np.zeros(len(times), dtype=bool)
        for a, b in spans:
            out |= (times >= a) & (times < b)
        return out

    return mask


def _spread(members: list[tuple[int, int]], full: list[int], values: np.ndarray) -> dict[int, float]:
    """What each recorded stratum of one site and policy stands for: its own ``values``
    (arrivals, or their bytes), plus a share of the empty strata around it, linear in
    the popularity bucket between the two recorded neighbours, and all of an end gap to
    the one neighbour. ``members``: (bucket, stratum id) by bucket; ``full``: the
    positions in ``members`` of the strata with recorded rows."""
    sids = [sid for _, sid in members]
    stands = {i: float(values[sids[i]]) for i in full}
    for k, i in enumerate(full):
        prev = full[k - 1] if k else -1
        lo = members[prev][0] if prev >= 0 else 0
        hi = members[i][0]
        for j in range(prev + 1, i):
            share = (members[j][0] - lo) / (hi - lo) if prev >= 0 and hi > lo else 1.0
            stands[i] += share * float(values[sids[j]])
            if prev >= 0:
                stands[prev] += (1.0 - share) * float(values[sids[j]])
    for j in range(full[-1] + 1, len(sids)):
        stands[full[-1]] += float(values[sids[j]])
    return stands


def _whole_objects(bucket_keys: float) -> int:
    """How many of a site's most popular objects a sample always holds: the buckets
    (1, 2, 4, ... objects) no larger than ``bucket_keys``."""
    n = 0
    while (1 << n) <= bucket_keys:
        n += 1
    return (1 << n) - 1


def _with_shadow(make: Callable[[], EdgeNode], shadow: Any) -> EdgeNode:
    node = make()
    node.shadow = shadow
    return node


def model_events(topology: Topology, end: float) -> list[dict[str, Any]]:
    """The report's events of the modelled faults and flash crowds before ``end``
    (origin outages, latency spikes, flash crowds), in time order. Deploys and crashes
    are added by the drivers that carry them out; every engine words these the same."""
    out: list[dict[str, Any]] = []
    for o in topology.faults.outages:
        if o.at < end:
            out.append({"at": o.at, "kind": "origin_outage", "until": o.at + o.duration})
    for sp in topology.faults.spikes:
        if sp.at < end:
            out.append(
                {
                    "at": sp.at,
                    "kind": "latency_spike",
                    "link": sp.link,
                    "until": sp.at + sp.duration,
                    "extra": sp.extra,
                }
            )
    for fc in topology.traffic.flash_crowds:
        if fc.start < end:
            out.append(
                {
                    "at": fc.start,
                    "kind": "flash_crowd",
                    "site": fc.site,
                    "region": fc.region or "*",
                    "until": fc.start + fc.duration,
                    "multiplier": fc.multiplier,
                }
            )
    return sorted(out, key=lambda e: (e["at"], e["kind"]))


def _norm_cdf(weights: list[float]) -> list[float]:
    total = sum(weights)
    if total <= 0:
        return [1.0] * len(weights)
    cdf = list(accumulate(w / total for w in weights))
    cdf[-1] = 1.0
    return cdf


def simulate(
    topology: Topology,
    *,
    seed: int | None = None,
    progress: Callable[[float, float, int], None] | None = None,
    stop_at: float | None = None,
    sample_rate: float = 1.0,
    sample_keys: float = DEFAULT_SAMPLE_KEYS,
    sample_seed: int | None = None,
    sample_thin: float = THIN_ARRIVALS,
) -> RunResult:
    """Run ``topology`` in virtual time and return its report.

    Args:
        topology: the validated topology.
        seed: the run's seed (default: the topology's ``seed``). Same topology and seed
            give the same ``RunResult.to_dict(deterministic=True)``, byte for byte.
        progress: called as ``progress(virtual_time, end_time, requests)`` every
            65,536 arrivals and once at the end.
        stop_at: end client arrivals at this virtual time (default: the traffic's
            duration); requests in flight then run to completion.
        sample_rate: spatial sampling (SHARDS-style, docs/sampling.md): only requests
            whose cache key (site + URL) is in the sample are simulated, and every
            cache's capacity is scaled by ``sample_rate``. Counts in the report are
            estimated per stratum (site, content class, popularity bucket), hit ratios
            are ratios of those estimates, and latency, queueing and utilisation are
            null (not available); ``meta.sampled`` says so. 1.0 (the default)
            simulates every request.
        sample_keys: with ``sample_rate`` < 1, about this many keys of every
            popularity bucket of a site (Zipf rank 1, 2-3, 4-7, ...) are in the sample:
            a key of a bucket of ``n`` objects (of its own policy's, for a long-lived
            policy) is kept when its hash falls below ``max(sample_rate,
            sample_keys / n)``, and the most popular object of each cache policy of a
            site is kept as well. The few most popular objects
            carry a large share of a Zipf workload, and a plain key sample of them would
            decide the hit ratio by chance. 0: a plain sample at ``sample_rate``.
        sample_seed: which keys are sampled (the key hash's salt; default: the run's
            seed). Another value samples other keys under the same traffic.
        sample_thin: with ``sample_rate`` < 1 and ``sample_keys`` > 0, a key kept
            whole is thinned (a share q <= 1/2 of its arrivals simulated) when even the
            edge node that sees the fewest of its arrivals gets about
            ``sample_thin / q`` of them per freshness lifetime; its misses and
            revalidations then count once and its hits stand for the rest. 0: no key
            is thinned.

    Returns:
        The :class:`~edgesim.metrics.RunResult`.

    Error handling:
        Raises ``ValueError`` for a topology without regions or sites (possible
        through the API; the loader refuses such files) and for faults or deploys
        naming unknown nodes or sites.
    """
    for part in ("regions", "sites"):
        if not getattr(topology, part):
            raise ValueError(f"topology has no {part} (expected at least one [[{part}]] table)")
    if not 0.0 < sample_rate <= 1.0 or math.isnan(sample_rate):
        raise ValueError(f"sample_rate must be in (0, 1], not {sample_rate!r}")
    s = topology.seed if seed is None else seed
    wall0 = time.perf_counter()
    if not 0.0 <= sample_keys <= MAX_SAMPLE_KEYS:
        raise ValueError(f"sample_keys must be in [0, {MAX_SAMPLE_KEYS:g}], not {sample_keys!r}")
    if not 0.0 <= sample_thin <= MAX_SAMPLE_THIN:
        raise ValueError(f"sample_thin must be in [0, {MAX_SAMPLE_THIN:g}], not {sample_thin!r}")
    eng = _Engine(topology, s, stop_at, sample_rate, sample_keys, sample_seed, sample_thin)
    wall_setup = time.perf_counter() - wall0
    reached = [0.0]

    def track(t: float, end: float, n: int) -> None:
        reached[0] = t
        if progress is not None:
            progress(t, end, n)

    partial = False
    # The loop allocates millions of short-lived objects that form no reference cycles
    # (a run's peak memory is the same without the cyclic collector), and the
    # collector's passes over the growing heap of cache entries and records took about
    # a quarter of a run's time: it is off while the loop runs, and until the report is
    # built and the engine is freed (by reference counting: ``release``). Turned on
    # earlier, its first passes would walk every object the loop left alive.
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        try:
            eng.run(track)
        except KeyboardInterrupt:
            # Ctrl-C: report what was recorded, marked partial.
            partial = True
            eng.interrupted(reached[0])
        wall_run = time.perf_counter() - wall0 - wall_setup
        # A stop now would lose the whole run: the report is built first.
        with held() as stopped:
            result = _finish(eng, topology, s, partial, sample_rate, wall0, wall_setup, wall_run)
        result.stopped = stopped()
        eng.release()
        del eng
    finally:
        if gc_was_on:
            gc.enable()
    return result


def _finish(
    eng: _Engine,
    topology: Topology,
    seed: int,
    partial: bool,
    sample_rate: float,
    wall0: float,
    wall_setup: float,
    wall_run: float,
) -> RunResult:
    """The report and timings of :func:`simulate`'s finished (or interrupted) run."""
    weights, estimator = _stratum_weights(eng) if eng.sampled else (None, None)
    shadow_cost: dict[str, float] = {}
    report = run_report(
        topology,
        eng.rec,
        run_meta(topology, "virtual", seed, eng.epoch0, eng.end, eng.arrivals, partial),
        nodes=node_rows(topology, eng.nodes, lambda n: n.core.cache.statistics()),
        sites=[m.host for m in eng.sites],
        origin={"workers": eng.o_workers, "busy": eng.o_busy_steady},
        events=eng.events,
        weights=weights,
        shadows=eng.shadows,
        timing=shadow_cost,
    )
    for sh in eng.shadows.values():
        sh.close()  # the guards' worker threads; the counters stay readable
    if eng.sampled:
        report = scale_report(report, sample_rate, skipped=eng.skipped, weighted=estimator)
        if "shadow" in report:  # compared per simulated request; no weights are kept
            report["shadow"]["counts"] = "simulated requests only (sampled run; not scaled)"
    wall = time.perf_counter() - wall0
    timing = {
        "wall_seconds": wall,
        "setup_seconds": wall_setup,
        "loop_seconds": wall_run,
        "simulated_requests_per_second": eng.arrivals / wall_run if wall_run > 0 else 0.0,
        **shadow_cost,
    }
    return RunResult(report, timing)


# ---- reports (shared by the engines and live mode) ------------------------------------


def run_meta(
    topology: Topology,
    engine: str,
    seed: int,
    epoch0: float,
    duration: float,
    simulated: int,
    partial: bool,
) -> dict[str, Any]:
    """The ``meta`` of a run's report (docs/reports.md), whichever driver ran it."""
    from datetime import UTC, datetime

    return {
        "topology": topology.name,
        "seed": seed,
        "edgesim_version": __version__,
        "engine": engine,
        "duration": duration,
        "warmup": topology.traffic.warmup,
        "interval": topology.interval,
        "start_utc": datetime.fromtimestamp(epoch0, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "simulated_requests": simulated,
        "partial": partial,
    }


def node_rows(topology: Topology, nodes: list[Any], cache: Callable[[Any], Any]) -> list[dict[str, Any]]:
    """The node rows of a report for the engine's nodes (``_Node``), ``cache(node)``
    giving each one's cache statistics."""
    return [
        {
            "name": n.name,
            "region": topology.regions[n.region].name if not n.shield else "shield",
            "tier": "shield" if n.shield else "edge",
            "workers": n.workers,
            "busy": n.busy_steady,
            "max_queue": n.max_queue,
            "crashes": n.crashes,
            "cache": cache(n),
        }
        for n in nodes
    ]


def run_report(
    topology: Topology,
    rec: Recorder,
    meta: dict[str, Any],
    *,
    nodes: list[dict[str, Any]],
    sites: list[str],
    origin: dict[str, Any],
    events: list[dict[str, Any]],
    weights: dict[str, Any] | None = None,
    shadows: Mapping[str, Any] | None = None,
    timing: dict[str, float] | None = None,
) -> dict[str, Any]:
    """:func:`~edgesim.metrics.build_report` as every driver calls it (regions in
    topology order, events by time), plus the ``[shadow]`` section when ``shadows``
    ran; their wall-clock cost, which is not deterministic, goes into ``timing``."""
    report = build_report(
        rec,
        meta=meta,
        nodes=nodes,
        regions=[r.name for r in topology.regions],
        sites=sites,
        origin=origin,
        events=sorted(events, key=lambda e: (e["at"], e["kind"])),
        weights=weights,
    )
    if shadows:
        from edgesim.shadow import summarize

        report["shadow"] = summarize(shadows, timing=False)
        if timing is not None:
            cost = summarize(shadows, timing=True)["totals"]
            timing["shadow_candidate_seconds"] = cost["candidate_seconds"]
            timing["shadow_primary_seconds"] = cost["primary_seconds"]
    return report
