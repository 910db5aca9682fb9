"""Metrics: one sink for what a run measured, and the report built from it.

Theory of operation
-------------------
A driver appends one row per finished client request, one per upstream fetch of a node
and one per request that reached the origin to a :class:`Recorder`. Rows are columns of
``array`` values (about 60 bytes per client request in all), so recording costs a few
appends in the hot loop; every aggregate (per region, node, site, time interval) is
computed once at the end with numpy, by :func:`build_report`.

Definitions (docs/reports.md):

* **object hit ratio**: of the requests that reached the cache step (all but redirects
  answered at the edge and requests that got no answer), the share answered without an
  origin request: HIT, allowed STALE, and requests collapsed onto another's fill.
  Revalidations are counted apart, and count as origin requests.
* **byte hit ratio**: bytes served from cache (HIT, STALE, collapsed, REVALIDATED: the
  body came from the cache) over all bytes served.
* **errors**: replies with status >= 500 (origin unreachable, 503s); **failed**:
  requests that got no answer at all (their node crashed, or no node was left).
* **latency**: arrival at the client's side to the last byte back; **queueing**: the
  part of it spent waiting for a worker (edge, shield and origin queues).
* Steady-state figures exclude requests that arrived before the warm-up ended; the
  time series covers the whole run.

Reports are deterministic: keys in a fixed order, floats rounded to fixed digits, and
wall-clock figures kept apart under ``timing``.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from typing import Any, Final, TypeAlias

import numpy as np

from edgesim._jsontext import dumps_indented

__all__ = [
    "OUTCOME_CODES",
    "O_COLLAPSED",
    "O_ERROR",
    "O_FAILED",
    "O_HIT",
    "O_MISS",
    "O_PASS",
    "O_REDIRECT",
    "O_REVALIDATED",
    "O_STALE",
    "Recorder",
    "RunResult",
    "build_report",
    "scale_report",
]

O_HIT: Final = 0
O_COLLAPSED: Final = 1
O_STALE: Final = 2
O_MISS: Final = 3
O_REVALIDATED: Final = 4
O_REDIRECT: Final = 5
O_PASS: Final = 6
O_ERROR: Final = 7
O_FAILED: Final = 8
_NAMES: Final = (
    "hits",
    "collapsed",
    "stale",
    "misses",
    "revalidated",
    "redirects",
    "passes",
    "errors",
    "failed",
)
# The node's X-Cache outcomes (edgesim.node) to codes.
OUTCOME_CODES: Final = {
    "HIT": O_HIT,
    "STALE": O_STALE,
    "MISS": O_MISS,
    "REVALIDATED": O_REVALIDATED,
    "REDIRECT": O_REDIRECT,
    "PASS": O_PASS,
    "ERROR": O_ERROR,
}
# Fetch kinds of edgesim.node.Fetch.
FETCH_KINDS: Final = ("fill", "revalidate", "background", "pass", "manifest")
_FETCH_CODE: Final = {k: i for i, k in enumerate(FETCH_KINDS)}

# Digits kept in reports: seconds to the microsecond, ratios to 1e-6.
DIGITS: Final = 6
_PCTS: Final = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))


def column(a: array[Any]) -> Any:
    """A recorder column as a numpy array of its own type (``d``, ``q``, ``i`` or ``b``),
    a view of the array; an empty one for an empty column."""
    return np.frombuffer(a, dtype=a.typecode) if len(a) else np.zeros(0, dtype=a.typecode)


_CHUNK: Final = 1 << 16  # pending rows of a Recorder's table moved into its arrays at once
# a Recorder table: its columns, each an array and its pending rows
_Table: TypeAlias = "tuple[tuple[array[Any], list[Any]], ...]"


class Recorder:
    """Columns of recorded rows (append-only; read by :func:`build_report`).

    Rows go first to Python lists (``p_*``), and move into the ``array`` columns in
    chunks of ``chunk`` rows and at :meth:`flush`, which every reader of the arrays
    calls first: a call to ``array.append`` per value took about 6% of a fast-engine
    run, where ``array.fromlist`` converts a chunk in one call. Rows are numbered over
    both (:attr:`requests`, :meth:`fetch`).
    """

    __slots__ = (
        "_fetches",
        "_origin",
        "_requests",
        "_shield",
        "chunk",
        "f_bytes",
        "f_error",
        "f_kind",
        "f_node",
        "f_site",
        "f_t",
        "o_bytes",
        "o_site",
        "o_status",
        "o_t",
        "o_wait",
        "p_f_bytes",
        "p_f_error",
        "p_f_kind",
        "p_f_node",
        "p_f_site",
        "p_f_t",
        "p_o_bytes",
        "p_o_site",
        "p_o_status",
        "p_o_t",
        "p_o_wait",
        "p_r_key",
        "p_r_lat",
        "p_r_queue",
        "p_r_size",
        "p_r_t0",
        "p_s_key",
        "p_s_lat",
        "r_failover",
        "r_key",
        "r_lat",
        "r_queue",
        "r_retries",
        "r_size",
        "r_t0",
        "s_key",
        "s_lat",
    )

    def __init__(self, chunk: int = _CHUNK) -> None:
        self.chunk = chunk  # pending rows of a table moved at once
        self.r_t0 = array("d")
        self.r_lat = array("d")
        self.r_queue = array("d")
        # node << 24 | site << 4 | outcome: one column instead of three
        self.r_key = array("q")
        self.r_size = array("q")
        self.r_retries: dict[int, int] = {}  # row -> retries, for the few that retried
        # row -> the client's region, for the few answered by another region's node
        self.r_failover: dict[int, int] = {}
        self.f_t = array("d")
        self.f_node = array("i")
        self.f_site = array("i")
        self.f_kind = array("b")
        self.f_bytes = array("q")
        self.f_error = array("b")
        # Fetches a shield node answered (the shield tier's own rows in the report), in
        # the order answered: fetch row << 24 | shield node << 4 | its outcome code, and
        # the seconds until the answer was back at the node that fetched
        self.s_key = array("q")
        self.s_lat = array("d")
        self.o_t = array("d")
        self.o_site = array("i")
        self.o_status = array("i")
        self.o_bytes = array("q")
        self.o_wait = array("d")
        # the rows not yet in the arrays, column by column
        self.p_r_t0: list[float] = []
        self.p_r_lat: list[float] = []
        self.p_r_queue: list[float] = []
        self.p_r_key: list[int] = []
        self.p_r_size: list[int] = []
        self.p_f_t: list[float] = []
        self.p_f_node: list[int] = []
        self.p_f_site: list[int] = []
        self.p_f_kind: list[int] = []
        self.p_f_bytes: list[int] = []
        self.p_f_error: list[int] = []
        self.p_s_key: list[int] = []
        self.p_s_lat: list[float] = []
        self.p_o_t: list[float] = []
        self.p_o_site: list[int] = []
        self.p_o_status: list[int] = []
        self.p_o_bytes: list[int] = []
        self.p_o_wait: list[float] = []
        # the tables, moved a whole table at a time
        self._requests: _Table = (
            (self.r_t0, self.p_r_t0),
            (self.r_lat, self.p_r_lat),
            (self.r_queue, self.p_r_queue),
            (self.r_key, self.p_r_key),
            (self.r_size, self.p_r_size),
        )
        self._fetches: _Table = (
            (self.f_t, self.p_f_t),
            (self.f_node, self.p_f_node),
            (self.f_site, self.p_f_site),
            (self.f_kind, self.p_f_kind),
            (self.f_bytes, self.p_f_bytes),
            (self.f_error, self.p_f_error),
        )
        self._shield: _Table = ((self.s_key, self.p_s_key), (self.s_lat, self.p_s_lat))
        self._origin: _Table = (
            (self.o_t, self.p_o_t),
            (self.o_site, self.p_o_site),
            (self.o_status, self.p_o_status),
            (self.o_bytes, self.p_o_bytes),
            (self.o_wait, self.p_o_wait),
        )

    def add(
        self,
        t0: float,
        latency: float,
        queued: float,
        node: int,
        site: int,
        outcome: int,
        size: int,
        retries: int,
        home: int = -1,
    ) -> None:
        """One finished client request (``home``: the client's region when it failed
        over to a node of another region, else -1)."""
        p = self.p_r_t0
        p.append(t0)
        self.p_r_lat.append(latency)
        self.p_r_queue.append(queued)
        self.p_r_key.append((node << 24) | (site << 4) | outcome)
        self.p_r_size.append(size)
        if retries:
            self.r_retries[len(self.r_t0) + len(p) - 1] = retries
        if home >= 0:
            self.r_failover[len(self.r_t0) + len(p) - 1] = home
        if len(p) >= self.chunk:
            _move(self._requests)

    def fetch(self, t: float, node: int, site: int, kind: str) -> int:
        """One upstream fetch sent by a node; returns its row (bytes and errors are
        filled in when the answer comes back: :meth:`fetched`, :meth:`fetch_failed`)."""
        p = self.p_f_t
        if len(p) >= self.chunk:
            _move(self._fetches)
        p.append(t)
        self.p_f_node.append(node)
        self.p_f_site.append(site)
        self.p_f_kind.append(_FETCH_CODE.get(kind, 0))
        self.p_f_bytes.append(0)
        self.p_f_error.append(0)
        return len(self.f_t) + len(p) - 1

    def fetched(self, row: int, nbytes: int) -> None:
        """Fetch ``row`` was answered with ``nbytes``."""
        i = row - len(self.f_t)
        if i >= 0:
            self.p_f_bytes[i] = nbytes
        else:
            self.f_bytes[row] = nbytes

    def fetch_failed(self, row: int) -> None:
        """Fetch ``row`` got no answer."""
        i = row - len(self.f_t)
        if i >= 0:
            self.p_f_error[i] = 1
        else:
            self.f_error[row] = 1

    def fetch_time(self, row: int) -> float:
        """When fetch ``row`` was sent."""
        i = row - len(self.f_t)
        return self.p_f_t[i] if i >= 0 else self.f_t[row]

    def shield_answer(self, row: int, shield: int, outcome: int, latency: float) -> None:
        """Fetch ``row`` was answered by shield node ``shield`` with ``outcome`` (its
        outcome code for the request), back at the fetching node ``latency`` seconds
        after it was sent."""
        p = self.p_s_key
        p.append((row << 24) | (shield << 4) | outcome)
        self.p_s_lat.append(latency)
        if len(p) >= self.chunk:
            _move(self._shield)

    def origin(self, t: float, site: int, status: int, size: int, wait: float) -> None:
        """One request that reached the origin (``status`` -1: refused, outage)."""
        p = self.p_o_t
        p.append(t)
        self.p_o_site.append(site)
        self.p_o_status.append(status)
        self.p_o_bytes.append(size)
        self.p_o_wait.append(wait)
        if len(p) >= self.chunk:
            _move(self._origin)

    def flush(self) -> None:
        """Move every pending row into the arrays (before reading them)."""
        for table in (self._requests, self._fetches, self._shield, self._origin):
            _move(table)

    @property
    def requests(self) -> int:
        return len(self.r_t0) + len(self.p_r_t0)


def _move(table: _Table) -> None:
    """Append each pending list of ``table`` to its array, and empty it. (Through numpy
    instead, ``np.array(pending).tobytes()`` cost 1.3% more instructions a request.)"""
    for a, pending in table:
        if pending:
            a.fromlist(pending)
            pending.clear()


class RunResult:
    """The outcome of a run: the report, plus wall-clock timing kept apart.

    Attributes:
        report: the deterministic report (see :meth:`to_dict`).
        timing: wall-clock figures (seconds, simulated requests per second).
        stopped: Ctrl-C, SIGTERM or SIGHUP came while the finished run's report was
            being built: the report is whole, and the caller was asked to stop.
    """

    __slots__ = ("report", "stopped", "timing")

    def __init__(self, report: dict[str, Any], timing: dict[str, float], stopped: bool = False) -> None:
        self.report = report
        self.timing = timing
        self.stopped = stopped

    def to_dict(self, deterministic: bool = False) -> dict[str, Any]:
        """The report dict: ``meta``, ``totals``, ``regions``, ``nodes``, ``sites``,
        ``origin``, ``timeseries``, ``events``, and (unless ``deterministic``) ``timing``."""
        out = dict(self.report)
        if not deterministic:
            out["timing"] = {k: _r(v) for k, v in self.timing.items()}
        return out

    def to_json(self, deterministic: bool = False) -> str:
        return dumps_indented(self.to_dict(deterministic)) + "\n"


def _r(x: float) -> float:
    return round(float(x), DIGITS)


def _ratio(a: float, b: float) -> float | None:
    return _r(a / b) if b else None


def _pcts(sorted_vals: Any) -> dict[str, float | None]:
    """Nearest-rank percentiles, max and mean of an ascending array."""
    n = len(sorted_vals)
    if n == 0:
        return {"p50": None, "p95": None, "p99": None, "max": None, "mean": None}
    out: dict[str, float | None] = {}
    for name, q in _PCTS:
        k = max(0, int(np.ceil(q * n)) - 1)
        out[name] = _r(sorted_vals[k])
    out["max"] = _r(sorted_vals[-1])
    out["mean"] = _r(float(np.sum(sorted_vals)) / n)
    return out


class _Cols:
    """Request columns as numpy arrays, one row per request (one selection: client
    requests in steady state or all of them, or the fetches shield nodes answered)."""

    def __init__(
        self,
        t0: Any,
        lat: Any,
        queue: Any,
        node: Any,
        site: Any,
        outcome: Any,
        size: Any,
        retries: Any,
        home: Any,
        w: Any | None,
        wb: Any | None,
    ) -> None:
        self.t0 = t0
        self.lat = lat
        self.queue = queue
        self.node = node
        self.site = site
        self.outcome = outcome
        self.size = size
        self.retries = retries
        self.home = home  # the client's region when it failed over, else -1
        # per-row weights (a stratified sampled run), or None: every row counts once;
        # bytes served have their own (the count's when not given)
        self.w = w
        self.wb = wb


def _client_cols(
    rec: Recorder, mask: Any | None = None, weights: Any | None = None, byte_weights: Any | None = None
) -> _Cols:
    """The client requests (``mask``: a selection of them)."""

    def sel(x: Any) -> Any:
        return x[mask] if mask is not None else x

    key = sel(column(rec.r_key))
    r = np.zeros(len(rec.r_t0), dtype=np.int64)
    for i, n in rec.r_retries.items():
        r[i] = n
    h = np.full(len(rec.r_t0), -1, dtype=np.int64)
    for i, region in rec.r_failover.items():
        h[i] = region
    bw = weights if byte_weights is None else byte_weights
    return _Cols(
        sel(column(rec.r_t0)),
        sel(column(rec.r_lat)),
        sel(column(rec.r_queue)),
        key >> 24,
        (key >> 4) & 0xFFFFF,
        key & 0xF,
        sel(column(rec.r_size)),
        sel(r),
        sel(h),
        None if weights is None else sel(weights),
        None if bw is None else sel(bw),
    )


def _shield_cols(
    rec: Recorder, warmup: float, weights: Any | None = None, byte_weights: Any | None = None
) -> _Cols:
    """The steady-state fetches that shield nodes answered, as their requests: the
    serving shield as the node, its outcome, the bytes it sent, and the latency the
    fetching node saw."""
    key = column(rec.s_key)
    rows = key >> 24
    t0 = column(rec.f_t)[rows]
    keep = t0 >= warmup
    rows, key = rows[keep], key[keep]
    n = len(rows)
    bw = weights if byte_weights is None else byte_weights
    return _Cols(
        t0[keep],
        column(rec.s_lat)[keep],
        np.zeros(n),
        (key >> 4) & 0xFFFFF,
        column(rec.f_site)[rows].astype(np.int64),
        key & 0xF,
        column(rec.f_bytes)[rows],
        np.zeros(n, dtype=np.int64),
        np.full(n, -1, dtype=np.int64),
        None if weights is None else weights[rows],
        None if bw is None else bw[rows],
    )


class _Sums:
    """The per-group sums behind :func:`_group_stats` and :func:`_series_stats`
    (``ids``: the group of each row of ``c``, -1 for none): numpy arrays with a row per
    group, and the answered rows' groups, latencies and queueing times."""

    def __init__(self, c: _Cols, ids: Any, ngroups: int) -> None:
        ok = ids >= 0
        g = ids[ok]
        outcome = c.outcome[ok].astype(np.int64)
        size = c.size[ok]
        cached = np.isin(outcome, (O_HIT, O_COLLAPSED, O_STALE, O_REVALIDATED))
        # answered by another region's node (a failed-over request that got no answer is
        # ``failed``, not a failover)
        moved = (c.home[ok] >= 0) & (outcome != O_FAILED)
        self.weighted = c.w is not None
        self.wc: Any = None
        if c.w is None:
            counts = np.zeros((ngroups, len(_NAMES)), dtype=np.int64)
            if len(g):
                np.add.at(counts, (g, outcome), 1)
            requests = np.bincount(g, minlength=ngroups)
            served = np.bincount(g, weights=size, minlength=ngroups)
            from_cache = np.bincount(g[cached], weights=size[cached], minlength=ngroups)
            retries = np.bincount(g, weights=c.retries[ok], minlength=ngroups)
            failovers = np.bincount(g, weights=moved, minlength=ngroups)
        else:
            # estimates of a stratified sample: weighted sums, rounded to whole requests
            w = c.w[ok]
            wc = np.zeros((ngroups, len(_NAMES)))
            if len(g):
                np.add.at(wc, (g, outcome), w)
            requests = np.rint(np.bincount(g, weights=w, minlength=ngroups)).astype(np.int64)
            counts = apportion(wc, requests)  # a group's outcome counts add up to its requests
            assert c.wb is not None  # set whenever ``w`` is (the count's weights by default)
            sized = size * c.wb[ok]
            served = np.bincount(g, weights=sized, minlength=ngroups)
            from_cache = np.bincount(g[cached], weights=sized[cached], minlength=ngroups)
            retries = np.bincount(g, weights=c.retries[ok] * w, minlength=ngroups)
            failovers = np.rint(np.bincount(g, weights=moved * w, minlength=ngroups))
            self.wc = wc
        self.counts = counts
        self.requests = requests
        self.served = served
        self.from_cache = from_cache
        self.retries = retries
        self.failovers = failovers
        # latency ends at the answer's last byte: a failed request has none, so it is
        # counted (``failed``) but not timed
        answered = outcome != O_FAILED
        self.answered_group = g[answered]
        self.lat = c.lat[ok][answered]
        self.queue = c.queue[ok][answered]


def _group_stats(c: _Cols, ids: Any, ngroups: int) -> list[dict[str, Any]]:
    """Request figures per group (``ids``: the group of each row, -1 for none)."""
    s = _Sums(c, ids, ngroups)
    counts, requests, retries, failovers = s.counts, s.requests, s.retries, s.failovers
    served, from_cache, wc = s.served, s.from_cache, s.wc
    lat_sorted = _sorted_by_group(s.answered_group, s.lat, ngroups)
    queue_sorted = _sorted_by_group(s.answered_group, s.queue, ngroups)
    out = []
    for i in range(ngroups):
        k = counts[i]
        n = int(requests[i])
        if wc is None:
            cache_step: float = float(n - int(k[O_REDIRECT]) - int(k[O_FAILED]))
            hits: float = float(k[O_HIT] + k[O_COLLAPSED] + k[O_STALE])
        else:  # the ratio of the unrounded estimates
            wk = wc[i]
            cache_step = float(np.sum(wk)) - float(wk[O_REDIRECT]) - float(wk[O_FAILED])
            hits = float(wk[O_HIT] + wk[O_COLLAPSED] + wk[O_STALE])
        d: dict[str, Any] = {"requests": n}
        for j, name in enumerate(_NAMES):
            d[name] = int(k[j])
        d["retries"] = int(retries[i])
        d["failovers"] = int(failovers[i])
        d["object_hit_ratio"] = _ratio(hits, cache_step)
        d["byte_hit_ratio"] = _ratio(float(from_cache[i]), float(served[i]))
        d["bytes_served"] = round(float(served[i]))
        d["bytes_from_cache"] = round(float(from_cache[i]))
        d["latency"] = _pcts(lat_sorted[i])
        d["queueing"] = _pcts(queue_sorted[i])
        out.append(d)
    return out


def _series_stats(c: _Cols, ids: Any, ngroups: int) -> dict[str, list[Any]]:
    """The figures of :func:`_group_stats` that the time series shows, as one list per
    figure (``requests``, ``object_hit_ratio``, ``byte_hit_ratio``, ``collapsed``,
    ``redirects``, ``errors`` (errors and failed), ``failovers``, ``latency_p50``,
    ``latency_p99``, ``queueing_p99``): the same values, computed for all groups at
    once, where a dict per group cost a run with a million intervals most of its
    report (``tests/unit/test_metrics_series.py`` compares the two)."""
    s = _Sums(c, ids, ngroups)
    k = s.counts
    if s.wc is None:
        step = (s.requests - k[:, O_REDIRECT] - k[:, O_FAILED]).astype(np.float64)
        hits = (k[:, O_HIT] + k[:, O_COLLAPSED] + k[:, O_STALE]).astype(np.float64)
    else:  # the ratio of the unrounded estimates, summed as _group_stats sums them
        wc = s.wc
        step = np.zeros(ngroups)
        for i in np.flatnonzero(wc.any(axis=1)).tolist():
            wk = wc[i]
            step[i] = float(np.sum(wk)) - float(wk[O_REDIRECT]) - float(wk[O_FAILED])
        hits = wc[:, O_HIT] + wc[:, O_COLLAPSED] + wc[:, O_STALE]
    lat = _group_percentiles(s.answered_group, s.lat, ngroups, (0.50, 0.99))
    queue = _group_percentiles(s.answered_group, s.queue, ngroups, (0.99,))
    return {
        "requests": s.requests.tolist(),
        "object_hit_ratio": _ratios(hits, step),
        "byte_hit_ratio": _ratios(s.from_cache, s.served),
        "collapsed": k[:, O_COLLAPSED].tolist(),
        "redirects": k[:, O_REDIRECT].tolist(),
        "errors": (k[:, O_ERROR] + k[:, O_FAILED]).tolist(),
        "failovers": [int(x) for x in s.failovers.tolist()],
        "latency_p50": lat[0],
        "latency_p99": lat[1],
        "queueing_p99": queue[0],
    }


def _ratios(a: Any, b: Any) -> list[float | None]:
    """:func:`_ratio` of each pair of two float arrays."""
    q = np.divide(a, b, out=np.zeros(len(a)), where=b != 0)
    digits = DIGITS
    return [round(x, digits) if y else None for x, y in zip(q.tolist(), b.tolist(), strict=True)]


def _group_percentiles(g: Any, vals: Any, ngroups: int, qs: tuple[float, ...]) -> list[list[float | None]]:
    """For each of ``qs``, the nearest-rank percentile (as :func:`_pcts`, rounded) of
    ``vals`` in each group ``0 .. ngroups - 1`` (``g``: the group of each), None for an
    empty group: one sort of all values by group and value, then one pick per group."""
    n = np.bincount(g, minlength=ngroups)
    start = np.cumsum(n) - n
    ordered = vals[np.lexsort((vals, g))]
    have = (n > 0).tolist()
    last = max(0, len(ordered) - 1)
    digits = DIGITS
    out = []
    for q in qs:
        at = start + np.maximum(0, np.ceil(q * n).astype(np.int64) - 1)
        picked = ordered[np.minimum(at, last)].tolist() if len(ordered) else [0.0] * ngroups
        out.append([round(x, digits) if h else None for x, h in zip(picked, have, strict=True)])
    return out


def apportion(values: Any, totals: Any) -> Any:
    """Whole numbers for the rows of estimates ``values`` (groups x parts, each >= 0)
    that add up to each row's whole ``totals`` (the rounded row sums): every part gets
    its floor, and the rest of its row's total goes one each to the parts with the
    largest fractions (ties: the first part). Each part then differs from its estimate
    by less than 1."""
    base = np.floor(values)
    frac = values - base
    out = base.astype(np.int64)
    rest = np.asarray(totals, dtype=np.int64) - out.sum(axis=1)
    if len(out) and int(rest.max(initial=0)) > 0:
        order = np.argsort(-frac, axis=1, kind="stable")  # largest fraction first
        rank = np.empty_like(order)
        np.put_along_axis(rank, order, np.arange(values.shape[1])[None, :], axis=1)
        out += rank < rest[:, None]
    return out


def _sorted_by_group(g: Any, vals: Any, ngroups: int) -> list[Any]:
    """``vals`` of each group ``0 .. ngroups - 1`` (``g``: the group of each), sorted:
    grouped by a stable sort of the group ids, then each group sorted on its own (0.4
    of the time of one lexicographic sort by group and value)."""
    sv = vals[np.argsort(g, kind="stable")]
    bounds = np.concatenate(([0], np.cumsum(np.bincount(g, minlength=ngroups))))
    return [np.sort(sv[bounds[i] : bounds[i + 1]]) for i in range(ngroups)]


def _fetch_stats(
    rec: Recorder,
    ids_of_node: Any,
    ngroups: int,
    warmup: float,
    by_site: bool,
    weights: Any | None = None,
    byte_weights: Any | None = None,
) -> list[Any]:
    t = column(rec.f_t)
    node = column(rec.f_node)
    site = column(rec.f_site)
    kind = column(rec.f_kind)
    nbytes = column(rec.f_bytes)
    err = column(rec.f_error)
    keep = t >= warmup
    # by site: the fetches of the nodes ``ids_of_node`` keeps (>= 0), grouped by site
    of_node = ids_of_node[node] if len(node) else node
    gid = np.where(of_node >= 0, site, -1) if by_site else of_node
    keep &= gid >= 0
    g = gid[keep]
    w = None if weights is None else weights[keep]
    wb = w if byte_weights is None else byte_weights[keep]
    reqs = np.bincount(g, weights=w, minlength=ngroups)
    byts = np.bincount(g, weights=nbytes[keep] if wb is None else nbytes[keep] * wb, minlength=ngroups)
    reval = np.isin(kind[keep], (_FETCH_CODE["revalidate"], _FETCH_CODE["background"]))
    revs = np.bincount(g[reval], weights=None if w is None else w[reval], minlength=ngroups)
    bad = err[keep] != 0
    errs = np.bincount(g[bad], weights=None if w is None else w[bad], minlength=ngroups)
    return [
        (round(float(reqs[i])), round(float(byts[i])), round(float(revs[i])), round(float(errs[i])))
        for i in range(ngroups)
    ]


def _with_fetches(stats: dict[str, Any], f: tuple[int, int, int, int]) -> dict[str, Any]:
    reqs, byts, revs, errs = f
    stats["origin_requests"] = reqs
    stats["origin_bytes"] = byts
    stats["revalidations"] = revs
    stats["origin_errors"] = errs
    stats["request_offload"] = (
        _ratio(stats["requests"] - reqs, stats["requests"]) if stats["requests"] else None
    )
    stats["byte_offload"] = (
        _ratio(stats["bytes_served"] - byts, stats["bytes_served"]) if stats["bytes_served"] else None
    )
    return stats


def build_report(
    rec: Recorder,
    *,
    meta: dict[str, Any],
    nodes: Sequence[dict[str, Any]],
    regions: Sequence[str],
    sites: Sequence[str],
    origin: dict[str, Any],
    events: list[dict[str, Any]],
    weights: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The report dict of a run (see the module docstring for definitions).

    Args:
        rec: the recorded rows.
        meta: topology name, seed, version, ``duration``, ``warmup``, ``interval``...
        nodes: per node (in index order): ``name``, ``region`` (a region name, or
            ``shield``), ``tier``, ``workers``, ``busy`` (steady-state busy seconds),
            ``max_queue``, ``crashes``, ``cache`` (its ``CacheStats``).
        regions, sites: names in index order.
        origin: ``workers`` and ``busy`` (steady-state busy seconds).
        events: the run's events, in time order.
        weights: for a stratified sampled run, what each recorded row stands for:
            numpy arrays ``requests``, ``fetches`` and ``origin`` (one weight per row of
            each), and optionally ``request_bytes``, ``fetch_bytes`` and
            ``origin_bytes`` (the weights of the bytes served, fetched upstream and
            sent by the origin, else the rows' count weights); counts become weighted sums
            (docs/sampling.md). None: each row is one.
    """
    rec.flush()
    duration = float(meta["duration"])
    # A run stopped (partial) before its warm-up ended has no steady state: no request
    # counts as steady, and every steady rate and utilisation is null.
    warmup = float(meta["warmup"])
    interval = float(meta["interval"]) or 60.0
    steady_span = duration - warmup

    def per_second(x: float) -> float | None:
        return _r(x / steady_span) if steady_span > 0 else None

    rw = rbw = fw = fbw = ow = obw = None
    if weights is not None:
        rw, fw, ow = weights["requests"], weights["fetches"], weights["origin"]
        rbw, fbw, obw = weights.get("request_bytes"), weights.get("fetch_bytes"), weights.get("origin_bytes")
    all_cols = _client_cols(rec, None, rw, rbw)
    steady = all_cols.t0 >= warmup
    c = _client_cols(rec, steady, rw, rbw)
    region_index = {r: i for i, r in enumerate(regions)}
    node_region = np.array([region_index.get(n["region"], -1) for n in nodes] or [0], dtype=np.int64)
    edge_ids = np.array(
        [i if n["tier"] == "edge" else -1 for i, n in enumerate(nodes)] or [0], dtype=np.int64
    )
    node_ids = np.arange(max(1, len(nodes)), dtype=np.int64)

    def region_of(node_col: Any) -> Any:
        return np.where(node_col >= 0, node_region[np.maximum(node_col, 0)], -1)

    # totals: client requests, and what the edge tier asked upstream
    totals = _group_stats(c, np.zeros(len(c.t0), dtype=np.int64), 1)[0]
    zero_ids = np.where(edge_ids >= 0, 0, -1)
    _with_fetches(totals, _fetch_stats(rec, zero_ids, 1, warmup, False, fw, fbw)[0])
    totals["requests_per_second"] = per_second(totals["requests"])

    reg_stats = _group_stats(c, region_of(c.node.astype(np.int64)), len(regions))
    edge_region = np.where(edge_ids >= 0, node_region, -1)
    reg_f = _fetch_stats(rec, edge_region, len(regions), warmup, False, fw, fbw)
    # a region's own clients answered by another region's nodes (cross-region failover),
    # and those that got no answer, wherever they were last sent
    failed = c.outcome == O_FAILED
    moved = (c.home >= 0) & ~failed
    away = np.bincount(c.home[moved], weights=None if c.w is None else c.w[moved], minlength=len(regions))
    home = np.where(c.home >= 0, c.home, region_of(c.node.astype(np.int64)))
    lost = np.bincount(
        home[failed & (home >= 0)],
        weights=None if c.w is None else c.w[failed & (home >= 0)],
        minlength=len(regions),
    )
    regions_out = {}
    for i, name in enumerate(regions):
        s = _with_fetches(reg_stats[i], reg_f[i])
        s["nodes"] = sum(1 for n in nodes if n["region"] == name and n["tier"] == "edge")
        s["clients_failed_over"] = int(np.rint(away[i]))
        s["clients_failed"] = int(np.rint(lost[i]))
        regions_out[name] = s

    node_stats = _group_stats(c, c.node.astype(np.int64), len(nodes))
    node_f = _fetch_stats(rec, node_ids, len(nodes), warmup, False, fw, fbw)
    # shield nodes serve the edges' fetches, not clients: their requests are the
    # fetches they answered, and their own fetches the shield tier's origin requests
    if any(n["tier"] == "shield" for n in nodes):
        sc = _shield_cols(rec, warmup, fw, fbw)
        shield_stats = _group_stats(sc, sc.node, len(nodes))
        node_stats = [
            shield_stats[i] if n["tier"] == "shield" else node_stats[i] for i, n in enumerate(nodes)
        ]
    nodes_out = {}
    for i, n in enumerate(nodes):
        s = {"region": n["region"], "tier": n["tier"], "workers": n["workers"]}
        s.update(_with_fetches(node_stats[i], node_f[i]))
        s["utilisation"] = _r(n["busy"] / (n["workers"] * steady_span)) if steady_span > 0 else None
        s["max_queue"] = n["max_queue"]
        s["crashes"] = n["crashes"]
        cs = n["cache"]
        # per tier: a stored object is written to both, so their sums would count it twice
        mem, disk = cs.memory.store, cs.disk.store if cs.disk else None
        s["cache"] = {
            "keys": mem.keys,
            "used_bytes": mem.used_bytes,
            "evictions": mem.evictions,
            "disk_keys": disk.keys if disk else 0,
            "disk_used_bytes": disk.used_bytes if disk else 0,
            "disk_evictions": disk.evictions if disk else 0,
            "stores": cs.stores,
        }
        nodes_out[n["name"]] = s

    site_stats = _group_stats(c, c.site.astype(np.int64), len(sites))
    # the edge tier's fetches, as for totals and regions (a shield's own are upstream of them)
    site_f = _fetch_stats(rec, edge_ids, len(sites), warmup, True, fw, fbw)
    sites_out = {name: _with_fetches(site_stats[i], site_f[i]) for i, name in enumerate(sites)}
    # per site, what the origin itself saw (differs from the edges' fetches with a shield)
    o_t = column(rec.o_t)
    o_site = column(rec.o_site)
    o_status = column(rec.o_status)
    o_bytes = column(rec.o_bytes)
    o_wait = column(rec.o_wait)
    o_w = np.ones(len(o_t)) if ow is None else ow
    o_bw = o_w if obw is None else obw

    # time series over the whole run
    nint = max(1, int(np.ceil(duration / interval)))
    bucket = np.minimum((all_cols.t0 // interval).astype(np.int64), nint - 1)
    ts = _series_stats(all_cols, bucket, nint)
    o_bucket = np.minimum((o_t // interval).astype(np.int64), nint - 1) if len(o_t) else np.zeros(0, np.int64)
    o_ok = o_status >= 0
    o_req = (
        np.bincount(o_bucket[o_ok], weights=None if ow is None else o_w[o_ok], minlength=nint)[:nint]
        if len(o_t)
        else np.zeros(nint, np.int64)
    )
    o_by = (
        np.bincount(o_bucket, weights=o_bytes * o_bw, minlength=nint)[:nint] if len(o_t) else np.zeros(nint)
    )
    if ow is not None:
        o_req = np.rint(o_req).astype(np.int64)
    # (a list per figure, built for all intervals at once: a run may have a million;
    # the quiet ones, most of a sparse run's, skip their rounding: 0 stays 0.0)
    digits = DIGITS
    starts = [round(i * interval, digits) for i in range(nint)]
    spans = [min(interval, duration - i * interval) or interval for i in range(nint)]
    o_reqs = [int(x) for x in o_req.tolist()]
    o_rps = [float(x) / span for x, span in zip(o_reqs, spans, strict=True)]
    timeseries = {
        "interval": _r(interval),
        "start": starts,
        "warmup": [s < warmup for s in starts],
        "requests": ts["requests"],
        "requests_per_second": [
            round(n / span, digits) if n else 0.0 for n, span in zip(ts["requests"], spans, strict=True)
        ],
        "object_hit_ratio": ts["object_hit_ratio"],
        "byte_hit_ratio": ts["byte_hit_ratio"],
        "collapsed": ts["collapsed"],
        "redirects": ts["redirects"],
        "errors": ts["errors"],
        "failovers": ts["failovers"],
        "latency_p50": ts["latency_p50"],
        "latency_p99": ts["latency_p99"],
        "queueing_p99": ts["queueing_p99"],
        "origin_requests": o_reqs,
        "origin_requests_per_second": [round(x, digits) if x else 0.0 for x in o_rps],
        "origin_bytes": [int(x) for x in o_by.tolist()],
    }

    steady_o = o_t >= warmup
    ok = steady_o & o_ok
    # (a warm-up that ends inside the last interval leaves no steady interval: all count)
    steady_i = [i for i, s in enumerate(starts) if s >= warmup] or (
        list(range(nint)) if steady_span > 0 else []
    )
    # the busiest steady interval (max keeps the first of equals)
    peak_i = max(steady_i, key=o_rps.__getitem__) if steady_i else 0
    peak = o_rps[peak_i] if steady_i else 0.0
    so = ok & (o_site >= 0)
    site_o = (
        np.bincount(o_site[so], weights=None if ow is None else o_w[so], minlength=len(sites))
        if len(o_t)
        else np.zeros(len(sites))
    )

    def wsum(sel: Any) -> int:
        return int(np.sum(sel)) if ow is None else round(float(np.sum(o_w[sel])))

    origin_out = {
        "requests": wsum(ok),
        "bytes": (
            int(np.sum(o_bytes[steady_o]))
            if ow is None
            else round(float(np.sum(o_bytes[steady_o] * o_bw[steady_o])))
        ),
        "requests_per_second": per_second(wsum(ok)),
        "peak_requests_per_second": _r(peak),
        "peak_at": starts[peak_i] if steady_i else 0.0,
        "refused_outage": wsum(steady_o & (o_status == -1)),
        "rejected_503": wsum(steady_o & (o_status == 503) & (o_wait < 0)),
        "status_5xx": wsum(ok & (o_status >= 500)),
        "queueing": _pcts(np.sort(np.maximum(o_wait[ok], 0.0))),
        "utilisation": _r(origin["busy"] / (origin["workers"] * steady_span)) if steady_span > 0 else None,
        "workers": origin["workers"],
        "sites": {name: round(float(site_o[i])) for i, name in enumerate(sites)},
    }
    meta_out = {k: (_r(v) if isinstance(v, float) else v) for k, v in meta.items()}
    # the run's own count of steady-state requests (a sampled run's totals are scaled)
    meta_out["steady_requests"] = int(np.count_nonzero(steady))
    return {
        "meta": meta_out,
        "totals": totals,
        "regions": regions_out,
        "nodes": nodes_out,
        "sites": sites_out,
        "origin": origin_out,
        "timeseries": timeseries,
        "events": [{k: (_r(v) if isinstance(v, float) else v) for k, v in e.items()} for e in events],
    }


# Spatial sampling (scale_report): fields that are counts (scaled by 1 / rate), rates
# per second (scaled too), and queueing-model figures (not available: null).
_COUNT_KEYS: Final = frozenset(
    (
        *_NAMES,
        "requests",
        "retries",
        "failovers",
        "clients_failed_over",
        "clients_failed",
        "bytes_served",
        "bytes_from_cache",
        "origin_requests",
        "origin_bytes",
        "revalidations",
        "origin_errors",
        "bytes",
        "refused_outage",
        "rejected_503",
        "status_5xx",
        "keys",
        "used_bytes",
        "evictions",
        "disk_keys",
        "disk_used_bytes",
        "disk_evictions",
        "stores",
    )
)
_RATE_KEYS: Final = frozenset(
    ("requests_per_second", "peak_requests_per_second", "origin_requests_per_second")
)
_NA_KEYS: Final = frozenset(
    ("latency", "queueing", "utilisation", "max_queue", "latency_p50", "latency_p99", "queueing_p99")
)


def scale_report(
    report: dict[str, Any], rate: float, *, skipped: int = 0, weighted: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A sampled run's report at full scale (docs/sampling.md).

    Counts (requests, outcomes, bytes, origin requests, cache keys and bytes) and rates
    per second are divided by ``rate``; ratios stay as measured. Latency, queueing,
    utilisation and queue lengths come from a queueing model the sampled run did not
    run at the full rate: they become null. ``meta`` keeps the sampled run's own
    request counts and gains ``sampled``: the rate, ``latency: "not available"``, and
    the arrivals drawn but skipped (keys outside the sample).

    ``weighted``: the report was built with per-row weights (a stratified sample,
    docs/sampling.md), so its request, fetch and origin counts are already estimates at
    full scale; only the nodes' cache contents (keys, bytes, evictions, stores) are
    scaled by ``1 / rate``. The dict is added to ``meta.sampled`` as ``estimator``.
    """
    k = 1.0 / rate

    def count(v: Any) -> Any:
        if isinstance(v, list):
            return [count(x) for x in v]
        if isinstance(v, bool) or not isinstance(v, int | float):
            return v
        return round(v * k) if isinstance(v, int) else _r(v * k)

    def na(v: Any) -> Any:
        if isinstance(v, dict):
            return {x: None for x in v}
        if isinstance(v, list):
            return [None] * len(v)
        return None

    def walk(d: dict[str, Any], scale: bool) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, v in d.items():
            if key in _NA_KEYS:
                out[key] = na(v)
            elif key in _COUNT_KEYS or key in _RATE_KEYS:
                out[key] = count(v) if scale else v
            elif key == "sites" and isinstance(v, dict) and all(isinstance(x, int) for x in v.values()):
                # the origin's requests per site
                out[key] = {s: count(x) for s, x in v.items()} if scale else dict(v)
            elif isinstance(v, dict):
                out[key] = walk(v, scale or (weighted is not None and key == "cache"))
            else:
                out[key] = v
        return out

    out = {key: (v if key in ("meta", "events") else walk(v, weighted is None)) for key, v in report.items()}
    sampled: dict[str, Any] = {"rate": _r(rate), "latency": "not available", "skipped_requests": skipped}
    if weighted is not None:
        sampled["estimator"] = weighted
    out["meta"] = {**report["meta"], "sampled": sampled}
    return out
