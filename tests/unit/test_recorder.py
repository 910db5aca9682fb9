"""The metrics recorder: rows kept in pending lists, then moved into the arrays in chunks.

Row numbers must run on across the move, late writes to a fetch row must land whether
its row is still pending or already moved, and a reader sees every row after flush.
"""

from __future__ import annotations

import numpy as np

from edgesim.metrics import O_HIT, O_MISS, Recorder, column


def test_rows_run_on_across_chunks() -> None:
    rec = Recorder(chunk=4)
    for i in range(10):
        rec.add(
            float(i), 0.5 * i, 0.0, i % 3, 1, O_HIT if i % 2 else O_MISS, 100 + i, i % 4, 2 if i == 7 else -1
        )
    assert rec.requests == 10
    # two chunks of 4 moved, 2 rows pending: the arrays hold only the moved ones
    assert len(rec.r_t0) == 8
    rec.flush()
    assert len(rec.r_t0) == 10 and rec.requests == 10
    assert column(rec.r_t0).tolist() == [float(i) for i in range(10)]
    assert column(rec.r_lat).tolist() == [0.5 * i for i in range(10)]
    assert column(rec.r_size).tolist() == [100 + i for i in range(10)]
    key = column(rec.r_key)
    assert (key >> 24).tolist() == [i % 3 for i in range(10)]
    assert (key & 0xF).tolist() == [O_HIT if i % 2 else O_MISS for i in range(10)]
    # retries and failovers keyed by the row number over both
    assert rec.r_retries == {i: i % 4 for i in range(10) if i % 4}
    assert rec.r_failover == {7: 2}


def test_fetch_results_land_in_pending_and_moved_rows() -> None:
    rec = Recorder(chunk=3)
    rows = [rec.fetch(10.0 + i, i, 0, "fill") for i in range(8)]
    assert rows == list(range(8))
    assert len(rec.f_t) == 6  # rows 0-5 moved, 6 and 7 pending
    rec.fetched(1, 111)  # a moved row
    rec.fetch_failed(4)
    rec.fetched(7, 777)  # a pending row
    rec.fetch_failed(6)
    assert rec.fetch_time(2) == 12.0 and rec.fetch_time(7) == 17.0
    rec.flush()
    assert column(rec.f_bytes).tolist() == [0, 111, 0, 0, 0, 0, 0, 777]
    assert column(rec.f_error).tolist() == [0, 0, 0, 0, 1, 0, 1, 0]
    assert column(rec.f_node).tolist() == list(range(8))
    assert column(rec.f_kind).dtype == np.int8


def test_origin_and_shield_rows_flush_whole() -> None:
    rec = Recorder()
    rec.origin(1.0, 2, 200, 1234, 0.01)
    rec.origin(2.0, 1, -1, 0, 0.0)
    rec.shield_answer(5, 3, O_HIT, 0.002)
    assert len(rec.o_t) == 0 and len(rec.s_key) == 0
    rec.flush()
    assert column(rec.o_status).tolist() == [200, -1]
    assert column(rec.o_bytes).tolist() == [1234, 0]
    assert column(rec.s_key).tolist() == [(5 << 24) | (3 << 4) | O_HIT]
    rec.flush()  # idempotent
    assert len(rec.o_t) == 2 and len(rec.s_lat) == 1
