"""The time series' figures, computed for every interval at once (``_series_stats``),
are those of the per-group dicts (``_group_stats``) that regions, nodes and sites
still use: the same counts, ratios and percentiles, to the bit, with and without
a stratified sample's weights, and for intervals with no request."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from edgesim.metrics import _NAMES, O_FAILED, Recorder, _client_cols, _Cols, _group_stats, _series_stats


def _cols(rows: list[tuple[int, float, float, int, int, int, int, float]], weighted: bool) -> _Cols:
    n = len(rows)
    group = np.array([r[0] for r in rows], dtype=np.int64)
    w = np.array([r[7] for r in rows]) if weighted else None
    return _Cols(
        group.astype(np.float64),  # t0: unused by the figures
        np.array([r[1] for r in rows]),
        np.array([r[2] for r in rows]),
        np.zeros(n, dtype=np.int64),
        np.zeros(n, dtype=np.int64),
        np.array([r[3] for r in rows], dtype=np.int64),
        np.array([r[4] for r in rows], dtype=np.int64),
        np.array([r[5] for r in rows], dtype=np.int64),
        np.array([r[6] for r in rows], dtype=np.int64),
        w,
        None if w is None else w * 1.5,
    )


def _expected(stats: list[dict[str, Any]]) -> dict[str, list[Any]]:
    return {
        "requests": [d["requests"] for d in stats],
        "object_hit_ratio": [d["object_hit_ratio"] for d in stats],
        "byte_hit_ratio": [d["byte_hit_ratio"] for d in stats],
        "collapsed": [d["collapsed"] for d in stats],
        "redirects": [d["redirects"] for d in stats],
        "errors": [d["errors"] + d["failed"] for d in stats],
        "failovers": [d["failovers"] for d in stats],
        "latency_p50": [d["latency"]["p50"] for d in stats],
        "latency_p99": [d["latency"]["p99"] for d in stats],
        "queueing_p99": [d["queueing"]["p99"] for d in stats],
    }


_row = st.tuples(
    st.integers(-1, 11),  # the interval (-1: none)
    st.floats(0.0, 5.0),  # latency
    st.floats(0.0, 1.0) | st.just(0.0),  # queueing
    st.integers(0, len(_NAMES) - 1),  # outcome
    st.integers(0, 10**7),  # bytes
    st.integers(0, 3),  # retries
    st.integers(-1, 2),  # home region when failed over
    st.floats(0.01, 50.0),  # weight
)


@settings(max_examples=300, deadline=None)
@given(rows=st.lists(_row, max_size=120), ngroups=st.integers(12, 20), weighted=st.booleans())
def test_series_figures_are_the_group_figures(
    rows: list[tuple[int, float, float, int, int, int, int, float]], ngroups: int, weighted: bool
) -> None:
    c = _cols(rows, weighted)
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    series = _series_stats(c, ids, ngroups)
    assert series == _expected(_group_stats(c, ids, ngroups))
    # same types too (the report is JSON: 1 and 1.0 are written differently)
    for key, values in series.items():
        want = _expected(_group_stats(c, ids, ngroups))[key]
        assert [type(v) for v in values] == [type(v) for v in want], key


def test_a_sparse_series_from_recorded_rows() -> None:
    # 3 requests over 100,000 intervals; a failed request is counted but not timed
    rec = Recorder()
    rec.add(5.0, 0.020, 0.001, 0, 0, 0, 1000, 0, -1)
    rec.add(5.5, 0.040, 0.0, 1, 0, 3, 3000, 1, -1)
    rec.add(99_998.2, 2.0, 0.0, 0, 0, O_FAILED, 0, 2, 1)
    rec.flush()
    c = _client_cols(rec)
    ids = (c.t0 // 1.0).astype(np.int64)
    series = _series_stats(c, ids, 100_000)
    assert series == _expected(_group_stats(c, ids, 100_000))
    assert series["requests"][5] == 2 and series["requests"][99_998] == 1 and sum(series["requests"]) == 3
    assert series["latency_p50"][5] == 0.02 and series["latency_p99"][5] == 0.04
    assert series["latency_p50"][99_998] is None and series["errors"][99_998] == 1
    assert series["object_hit_ratio"][5] == 0.5 and series["object_hit_ratio"][4] is None
