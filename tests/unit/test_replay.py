"""Trace readers/writers and the replay policies, checked against naive textbook caches."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import os
import struct
import subprocess
import sys
from array import array
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import zstandard
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from edgesim.cli import cli
from edgesim.errors import EdgesimError, TraceError
from edgesim.replay import ENGINES, POLICIES, bench, replay
from edgesim.traces import Trace, compression_of, format_by_name, read_trace, sniff_format, write_trace

Request = tuple[int, int]  # (key, size)


# ---- naive textbook caches (a list, searched linearly) -----------------------------


def naive(requests: list[Request], capacity: int, policy: str) -> list[bool]:
    """Hit (True) or miss for each request. ``queue`` runs from the eviction end (index
    0) to the insertion end; a hit moves the object to the end under LRU only."""
    queue: list[list[int]] = []  # [key, stored size]
    flags = []
    for key, size in requests:
        found = [entry for entry in queue if entry[0] == key]
        if found:
            flags.append(True)
            if policy == "lru":
                queue.remove(found[0])
                queue.append(found[0])
            continue
        flags.append(False)
        if size > capacity:
            continue  # never stored, evicts nothing
        while sum(entry[1] for entry in queue) + size > capacity:
            queue.pop(0)
        queue.append([key, size])
        assert sum(entry[1] for entry in queue) <= capacity
    return flags


def trace_of(requests: list[Request]) -> Trace:
    return Trace.from_rows([(i, k, s) for i, (k, s) in enumerate(requests)])


def per_request_hits(
    requests: list[Request], capacity: int, policy: str, engine: str = "native"
) -> list[bool]:
    """Hit flags from ``replay`` by replaying every prefix (traces here are short)."""
    flags = []
    before = 0
    for n in range(1, len(requests) + 1):
        result = replay(trace_of(requests[:n]), capacity, policy, engine=engine)
        assert result.engine == engine
        hits = result.hits
        flags.append(hits > before)
        before = hits
    return flags


# Keys from a small range so that objects repeat; sizes sometimes change between
# requests for one key, sometimes exceed the cache; zero-byte objects included.
requests_st = st.lists(st.tuples(st.integers(0, 12), st.integers(0, 40)), max_size=60)
capacity_st = st.integers(0, 120)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("policy", sorted(POLICIES))
@settings(max_examples=300, deadline=None)
@given(requests=requests_st, capacity=capacity_st)
def test_policy_agrees_with_naive_per_request(
    policy: str, engine: str, requests: list[Request], capacity: int
) -> None:
    assert per_request_hits(requests, capacity, policy, engine) == naive(requests, capacity, policy)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("policy", sorted(POLICIES))
@settings(max_examples=200, deadline=None)
@given(
    requests=st.lists(st.tuples(st.integers(0, 60), st.integers(1, 1000)), min_size=1, max_size=400),
    capacity=st.integers(0, 5000),
)
def test_policy_counts_agree_with_naive(
    policy: str, engine: str, requests: list[Request], capacity: int
) -> None:
    result = replay(trace_of(requests), capacity, policy, engine=engine)
    assert result.engine == engine
    flags = naive(requests, capacity, policy)
    assert result.requests == len(requests)
    assert result.hits == sum(flags)
    assert result.bytes == sum(s for _, s in requests)
    assert result.hit_bytes == sum(s for (_, s), hit in zip(requests, flags, strict=True) if hit)
    assert result.hit_ratio == result.hits / result.requests
    assert result.policy == policy
    assert result.cache_size == capacity


@pytest.mark.parametrize("engine", ENGINES)
def test_lru_textbook_example(engine: str) -> None:
    # capacity 3 objects of 1 byte: A B C A D (evicts B) B (miss, evicts C) A (hit)
    reqs = [(ord(c), 1) for c in "ABCADBA"]
    assert per_request_hits(reqs, 3, "lru", engine) == [False, False, False, True, False, False, True]
    # FIFO evicts A at D (the oldest insertion, despite its hit): B hits, A misses.
    assert per_request_hits(reqs, 3, "fifo", engine) == [False, False, False, True, False, True, False]


@pytest.mark.parametrize("engine", ENGINES)
def test_object_larger_than_cache_is_never_stored_and_evicts_nothing(engine: str) -> None:
    reqs = [(1, 5), (2, 50), (1, 5), (2, 50)]
    result = replay(trace_of(reqs), 10, "lru", engine=engine)
    assert result.hits == 1
    assert result.hit_bytes == 5
    assert result.byte_hit_ratio == 5 / 110


@pytest.mark.parametrize("engine", ENGINES)
def test_size_change_is_a_hit_and_keeps_the_stored_size(engine: str) -> None:
    # Stored at 4 bytes; the 9-byte request for the same key is a hit (libCacheSim).
    # Then 6 more bytes fit because the stored size is still 4 (4 + 6 = 10).
    reqs = [(1, 4), (1, 9), (2, 6), (1, 4)]
    assert per_request_hits(reqs, 10, "lru", engine) == [False, True, False, True]
    assert replay(trace_of(reqs), 10, engine=engine).hit_bytes == 13


@pytest.mark.parametrize("engine", ENGINES)
def test_zero_capacity_and_empty_trace(engine: str) -> None:
    assert replay(trace_of([(1, 0), (1, 0), (2, 1), (2, 1)]), 0, engine=engine).hits == 1
    empty = replay(Trace.from_rows([]), 100, engine=engine)
    assert (empty.requests, empty.hit_ratio, empty.byte_hit_ratio) == (0, 0.0, 0.0)
    assert empty.engine == engine


def test_replay_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="cache size"):
        replay(trace_of([(1, 1)]), -1)
    with pytest.raises(ValueError, match="unknown policy 'arc'"):
        replay(trace_of([(1, 1)]), 1, "arc")
    with pytest.raises(ValueError, match="unknown engine 'rust'"):
        replay(trace_of([(1, 1)]), 1, engine="rust")
    # a negative size, in a trace built by hand (readers reject them): both engines
    bad = Trace(array("d", [0, 1, 2]), array("Q", [1, 2, 3]), array("q", [5, 0, -7]))
    for engine in ENGINES:
        with pytest.raises(ValueError, match="request 2: size -7 is negative"):
            replay(bad, 100, engine=engine)


def test_bench_runs_small() -> None:
    result = bench(n_requests=2000, n_objects=100, repeats=1)
    loops = {"bare_dict", "python_lru", "python_fifo", "native_lru", "native_fifo"}
    assert set(result["rates"]) == loops
    assert all(r["median_per_s"] > 0 for r in result["rates"].values())
    rates = result["rates"]
    for name in POLICIES:
        assert rates[f"native_{name}"]["hit_ratio"] == rates[f"python_{name}"]["hit_ratio"]
        assert result["native_vs_python"][name] > 0
    assert set(result["ratio_vs_bare_dict"]) == loops - {"bare_dict"}
    json.dumps(result)


def test_without_the_extension_replay_uses_the_python_loop() -> None:
    # A tree whose extension is not built (or predates esr_replay): replay still
    # answers, says which loop ran, and the benchmark says what to do in one line.
    child = """
import sys
sys.modules["edgesim._redirects_cffi"] = None  # the import fails, as when not built
from edgesim.replay import replay
from edgesim.traces import Trace
r = replay(Trace.from_rows([(0, 1, 5), (1, 2, 5), (2, 1, 5)]), 10)
print(r.engine, r.hits)
from edgesim.cli import cli
cli.main(["bench", "replay", "--requests", "1000", "--repeats", "1"])
"""
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120)
    assert proc.stdout == "python 1\n"
    assert proc.returncode == 1
    assert proc.stderr == (
        "Error: the native replay loops are not built (rebuild the extension: "
        "pip install ., or python setup.py build_ext --inplace)\n"
    )


def test_read_bench_runs_small() -> None:
    result = CliRunner().invoke(cli, ["bench", "replay", "--read", "--requests", "3000", "--repeats", "1"])
    assert result.exit_code == 0, result.output
    read = json.loads(result.stdout)["read"]
    for fmt in ("csv", "oracle-general"):
        kinds = read[fmt]
        assert set(kinds) == {"plain", "gzip", "bzip2", "xz", "zstd"}
        assert kinds["plain"]["ratio_vs_plain"] == 1.0
        assert all(k["median_per_s"] > 0 for k in kinds.values())
        assert all(kinds[k]["file_bytes"] < kinds["plain"]["file_bytes"] for k in kinds if k != "plain")


# ---- readers and writers ----------------------------------------------------------------

rows_st = st.lists(
    st.tuples(
        st.integers(0, 2**32 - 1),
        st.text(min_size=1, max_size=8),
        st.integers(0, 2**32 - 1),
        st.sampled_from(["eu", "us", "ap,south"]),
        st.sampled_from(["s1", "s2"]),
    ),
    min_size=1,
    max_size=50,
)


@settings(max_examples=100, deadline=None)
@given(rows=rows_st, placed=st.booleans())
def test_csv_round_trip(
    tmp_path_factory: pytest.TempPathFactory, rows: list[tuple[object, ...]], placed: bool
) -> None:
    rows = rows if placed else [r[:3] for r in rows]
    path = tmp_path_factory.mktemp("csv") / "t.csv"
    write_trace(path, Trace.from_rows(rows))
    back = read_trace(path)
    assert [(int(r[0]), *r[1:]) for r in back.rows()] == rows
    assert back.has_placement == placed


@settings(max_examples=100, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1), st.integers(0, 2**32 - 1)),
        min_size=1,
        max_size=50,
    )
)
def test_oracle_general_round_trip(
    tmp_path_factory: pytest.TempPathFactory, rows: list[tuple[int, int, int]]
) -> None:
    path = tmp_path_factory.mktemp("bin") / "t.oracleGeneral"
    write_trace(path, Trace.from_rows(rows))
    back = read_trace(path)
    assert [(int(t), k, s) for t, k, s in back.rows()] == rows  # type: ignore[misc]


def test_oracle_general_layout_matches_libcachesim(tmp_path: Path) -> None:
    path = tmp_path / "t.bin"
    write_trace(path, Trace.from_rows([(10, 7, 100), (11, 8, 200), (12, 7, 100)]))
    records = list(struct.iter_unpack("<IQIq", path.read_bytes()))
    # next_access_vtime: 1-based index of the next request for the object, -1 if none.
    assert records == [(10, 7, 100, 3), (11, 8, 200, -1), (12, 7, 100, -1)]
    raw = struct.pack("<IQIq", 5, 2**63 + 1, 4096, -1) + struct.pack("<IQIq", 6, 1, 0, -1)
    (tmp_path / "raw").write_bytes(raw)  # no extension: sniffed by content
    trace = read_trace(tmp_path / "raw")
    assert list(trace.rows()) == [(5.0, 2**63 + 1, 4096), (6.0, 1, 0)]


def test_csv_keys_are_dense_ids_and_blank_lines_skipped(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("time,key,size\n0,/a,10\n\n1.5,/b,20\n2,/a,10\n", encoding="utf-8")
    assert sniff_format(path) == "csv"
    trace = read_trace(path)
    assert list(trace.keys) == [0, 1, 0]
    assert trace.key_names == ("/a", "/b")
    assert list(trace.times) == [0.0, 1.5, 2.0]
    assert trace.n_objects == 2


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.csv", "", "empty.csv:1: empty file (expected a header line"),
        (
            "hdr.csv",
            "when,what,size\n0,a,1\n",
            "hdr.csv:1: bad header 'when,what,size': expected 'time,key,size'",
        ),
        ("only.csv", "time,key,size\n", "only.csv:2: no requests after the header"),
        (
            "num.csv",
            "time,key,size\n0,a,1\n1,b,ten\n",
            "num.csv:3: size 'ten' is not a whole number of bytes",
        ),
        ("neg.csv", "time,key,size\n0,a,1\n\n1,b,-4\n", "neg.csv:4: size '-4' is negative"),
        ("time.csv", "time,key,size\nnoon,a,1\n", "time.csv:2: time 'noon' is not a number"),
        ("nan.csv", "time,key,size\nnan,a,1\n", "nan.csv:2: time 'nan' is not a finite number"),
        ("cols.csv", "time,key,size\n0,a\n", "cols.csv:2: expected 3 fields (time,key,size), got 2"),
        ("key.csv", "time,key,size\n0,,1\n", "key.csv:2: empty key"),
        ("site.csv", "time,key,size,region,site\n0,a,1,eu,\n", "site.csv:2: empty site"),
        ("many.csv", "time,key,size\n0,a,1\n0,a,1,x\n", "many.csv:3: expected 3 fields"),
        # what Python's int() and float() take, but a trace file does not mean
        ("digits.csv", "time,key,size\n0,a,\u0663\n", "digits.csv:2: size '\u0663' is not a whole number"),
        ("under.csv", "time,key,size\n0,a,1_000\n", "under.csv:2: size '1_000' is not a whole number"),
        ("tunder.csv", "time,key,size\n1_0,a,1\n", "tunder.csv:2: time '1_0' is not a number"),
        ("tdigits.csv", "time,key,size\n\u0661,a,1\n", "tdigits.csv:2: time '\u0661' is not a number"),
        ("commas.csv", "time,key,size\n0,a,1\n,,\n", "commas.csv:3: time '' is not a number"),
        (
            "pcommas.csv",
            "time,key,size,region,site\n0,a,1,eu,s\n,,,,\n",
            "pcommas.csv:3: time '' is not a number",
        ),
        # a quote left open swallows the rest of the file: the error names where it opened
        (
            "quote.csv",
            'time,key,size\n0,a,1\n1,"b,2\n2,c,3\n3,d,4\n',
            "quote.csv:3: expected 3 fields (time,key,size), got 2; a quoted field runs on to line 5",
        ),
        ("quote2.csv", 'time,key,size\r\n0,a,1\r\n1,"b,2\r\n2,c,3\r\n', "quote2.csv:3: expected 3 fields"),
        # a key that holds a line end is a row of two lines, named by its first
        ("nl.csv", 'time,key,size\n0,"a\nb",x\n1,c,1\n', "nl.csv:2: size 'x' is not a whole number"),
    ],
)
def test_csv_errors_name_file_and_line(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(TraceError) as info:
        read_trace(path)
    assert str(info.value).startswith(f"{path}:")
    assert message in str(info.value)


def test_blank_lines_are_skipped_but_not_rows_of_empty_fields(tmp_path: Path) -> None:
    path = tmp_path / "blank.csv"
    path.write_text("time,key,size\n\n0,a,1\n   \n\r\n1,b,2\n\n", encoding="utf-8")
    assert list(read_trace(path).rows()) == [(0.0, "a", 1), (1.0, "b", 2)]


def test_a_binary_trace_whose_first_byte_is_a_newline_is_not_csv(tmp_path: Path) -> None:
    # time 10 = b"\n\0\0\0": the first line is empty, and all() of nothing was True
    path = tmp_path / "trace"
    write_trace(path, Trace.from_rows([(10, 1, 5), (11, 2, 6)]), "oracle-general")
    assert path.read_bytes()[:1] == b"\n"
    assert sniff_format(path) == "oracle-general"
    assert list(read_trace(path).rows()) == [(10.0, 1, 5), (11.0, 2, 6)]


def test_csv_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(b"time,key,size\n0,\xff\xfe,1\n")
    with pytest.raises(TraceError, match="not UTF-8"):
        read_trace(path)


def test_binary_errors(tmp_path: Path) -> None:
    path = tmp_path / "t.oracleGeneral"
    path.write_bytes(struct.pack("<IQIq", 1, 2, 3, -1) * 2 + b"\x00" * 10)
    with pytest.raises(TraceError) as info:
        read_trace(path)
    assert str(info.value) == (
        f"{path}: record 2: truncated record: 10 of 24 bytes at offset 48 "
        "(file size 58 is not a multiple of 24)"
    )
    assert (info.value.record, info.value.line) == (2, None)
    empty = tmp_path / "e.bin"
    empty.write_bytes(b"")
    with pytest.raises(TraceError, match=r"e\.bin: empty file \(expected oracleGeneral records"):
        read_trace(empty)


def test_missing_compressed_and_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match=r"nope\.csv: cannot open: No such file"):
        read_trace(tmp_path / "nope.csv")
    with pytest.raises(TraceError, match=r"nope: cannot open"):
        read_trace(tmp_path / "nope")
    assert issubclass(TraceError, EdgesimError)
    with pytest.raises(ValueError, match="unknown trace format"):
        read_trace(tmp_path / "x.csv", "parquet")


def _compressed(kind: str, data: bytes) -> bytes:
    if kind == "gzip":
        return gzip.compress(data)
    if kind == "bzip2":
        return bz2.compress(data)
    if kind == "xz":
        return lzma.compress(data)
    return zstandard.ZstdCompressor().compress(data)


_SUFFIX = {"gzip": ".gz", "bzip2": ".bz2", "xz": ".xz", "zstd": ".zst"}


@pytest.mark.parametrize("kind", ["gzip", "bzip2", "xz", "zstd"])
@pytest.mark.parametrize("fmt", ["csv", "oracle-general"])
def test_compressed_traces_read_as_the_plain_ones(tmp_path: Path, kind: str, fmt: str) -> None:
    rows = [(t * 0.5 if fmt == "csv" else t, (t * 7) % 13, 100 + t % 5) for t in range(500)]
    name = "t.csv" if fmt == "csv" else "t.oracleGeneral"
    plain = tmp_path / name
    write_trace(plain, Trace.from_rows(rows))
    named = tmp_path / (name + _SUFFIX[kind])
    named.write_bytes(_compressed(kind, plain.read_bytes()))
    unnamed = tmp_path / "trace"  # no suffix at all: compression and format by content
    unnamed.write_bytes(named.read_bytes())
    want = list(read_trace(plain).rows())
    assert len(want) == 500
    for path in (named, unnamed):
        assert compression_of(path) == kind
        assert sniff_format(path) == fmt
        assert list(read_trace(path).rows()) == want
    assert compression_of(plain) is None
    assert format_by_name(named) == fmt and format_by_name(unnamed) is None


def test_zstd_frames_one_after_another(tmp_path: Path) -> None:
    plain = tmp_path / "t.bin"
    write_trace(plain, Trace.from_rows([(t, t % 3, 10) for t in range(100)]))
    frame = _compressed("zstd", plain.read_bytes())
    two = tmp_path / "two.bin.zst"
    two.write_bytes(frame + frame)
    assert len(read_trace(two)) == 200


@pytest.mark.parametrize("kind", ["gzip", "bzip2", "xz", "zstd"])
def test_corrupt_or_truncated_compressed_traces(tmp_path: Path, kind: str) -> None:
    data = b"time,key,size\n" + b"".join(b"%d,k%d,10\n" % (i, i % 50) for i in range(5000))
    whole = _compressed(kind, data)
    cut = tmp_path / ("cut.csv" + _SUFFIX[kind])
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(TraceError, match=rf"cut\.csv\{_SUFFIX[kind]}: corrupt {kind} data: "):
        read_trace(cut)
    garbled = tmp_path / ("garbled.bin" + _SUFFIX[kind])
    garbled.write_bytes(whole[:12] + bytes(range(256)) * 4)
    with pytest.raises(TraceError, match=rf"garbled\.bin\{_SUFFIX[kind]}: corrupt {kind} data: "):
        read_trace(garbled)


def test_a_compression_suffix_must_match_the_content(tmp_path: Path) -> None:
    fake = tmp_path / "t.csv.gz"
    fake.write_bytes(b"time,key,size\n0,a,1\n")
    with pytest.raises(
        TraceError,
        match=r"t\.csv\.gz: expected gzip data \(by its \.gz suffix\), but the file is not compressed",
    ):
        read_trace(fake)
    other = tmp_path / "t.csv.zst"
    other.write_bytes(gzip.compress(b"time,key,size\n0,a,1\n"))
    with pytest.raises(
        TraceError, match=r"expected zstd data \(by its \.zst suffix\), but the file is gzip data"
    ):
        read_trace(other)
    empty = tmp_path / "t.bin.xz"
    empty.write_bytes(b"")
    with pytest.raises(TraceError, match=r"expected xz data \(by its \.xz suffix\), but the file is empty"):
        read_trace(empty)


def test_binary_names_are_not_sniffed_for_compression(tmp_path: Path) -> None:
    # A record whose time is 0x00088b1f starts with gzip's magic bytes 1f 8b 08 00.
    rows = [(0x00088B1F, 1, 10), (0x00088B20, 2, 10)]
    path = tmp_path / "t.oracleGeneral"
    write_trace(path, Trace.from_rows(rows))
    assert path.read_bytes()[:4] == b"\x1f\x8b\x08\x00"
    assert compression_of(path) is None
    assert list(read_trace(path).rows()) == [(float(t), k, s) for t, k, s in rows]


def test_compressed_bad_rows_keep_their_line_numbers(tmp_path: Path) -> None:
    bad = tmp_path / "t.csv.gz"
    bad.write_bytes(gzip.compress(b"time,key,size\n0,a,1\n1,b,x\n"))
    with pytest.raises(TraceError, match=r"t\.csv\.gz:3: size 'x' is not a whole number"):
        read_trace(bad)
    latin = tmp_path / "l.csv.xz"
    latin.write_bytes(lzma.compress(b"time,key,size\n0,a,1\n1,\xe9,2\n"))
    with pytest.raises(TraceError, match=r"l\.csv\.xz:3: not UTF-8 text"):
        read_trace(latin)


def test_decompressed_binary_trace_is_capped_by_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The cap is a quarter of physical memory; a small "machine" shows it.
    import edgesim.engine

    monkeypatch.setattr(edgesim.engine, "physical_memory", lambda: 4.0 * 10**6)
    bomb = tmp_path / "bomb.oracleGeneral.gz"
    bomb.write_bytes(gzip.compress(bytes(24 * 50_000)))  # 1.2 MB, compresses to ~1 KB
    with pytest.raises(
        TraceError, match=r"bomb\.oracleGeneral\.gz: decompresses to more than 1,000,000 bytes"
    ):
        read_trace(bomb)
    small = tmp_path / "small.oracleGeneral.gz"
    small.write_bytes(gzip.compress(bytes(24 * 40_000)))
    assert len(read_trace(small)) == 40_000


def test_plain_binary_trace_is_capped_by_memory_before_it_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A plain oracleGeneral file was read whole whatever its size: one larger than the
    # machine's memory was a MemoryError (traceback). Its size is known: it is checked.
    import edgesim.engine

    monkeypatch.setattr(edgesim.engine, "physical_memory", lambda: 4.0 * 10**6)
    big = tmp_path / "big.oracleGeneral"
    big.write_bytes(bytes(24 * 50_000))
    with pytest.raises(
        TraceError,
        match=r"big\.oracleGeneral: 1,200,000 bytes \(50,000 records\) is more than 1,000,000, a quarter",
    ):
        read_trace(big)
    small = tmp_path / "small.bin"
    small.write_bytes(bytes(24 * 40_000))
    assert len(read_trace(small)) == 40_000


def _limited_memory() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (700 * 2**20, 700 * 2**20))


def test_running_out_of_memory_is_one_line(tmp_path: Path) -> None:
    # A CSV "line" of 3 GB (a sparse file of zeros: no newline) is more than the 700 MB
    # the process may map: reading it was a MemoryError traceback.
    huge = tmp_path / "zeros.csv"
    with huge.open("wb") as f:
        f.truncate(3 * 2**30)
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "edgesim", "replay", str(huge), "--cache-size", "1k"]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=120, preexec_fn=_limited_memory, env=env
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr == (
        f"Error: {huge}: out of memory while reading it (too many requests for this machine, "
        "or a line without end): replay a part of it\n"
    )
    # the same command reads a real trace under the same limit
    ok = tmp_path / "t.csv"
    ok.write_text("time,key,size\n0,a,1\n1,a,1\n")
    cmd[4] = str(ok)
    proc = subprocess.run(
        [*cmd, "--json"], capture_output=True, text=True, timeout=120, preexec_fn=_limited_memory, env=env
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["hits"] == 1


def _limited_to(megabytes: int) -> Callable[[], None]:
    def limit() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (megabytes * 2**20, megabytes * 2**20))

    return limit


def test_native_replay_out_of_memory_is_one_line(tmp_path: Path) -> None:
    # 3,000,000 distinct zero-byte objects all stay in the cache: about 300 MB of
    # native hash table and list, when reading the trace peaks at about 280 MB of
    # address space (measured). Under a 400 MB limit the trace is read, the native
    # cache's allocation fails, and the error is one line (it was a MemoryError
    # traceback from the Python loop before; from C it must be ESR_ENOMEM, not a crash).
    n = 3_000_000
    rec = np.zeros(n, dtype=[("t", "<u4"), ("id", "<u8"), ("size", "<u4"), ("next", "<i8")])
    rec["id"] = np.arange(n, dtype=np.uint64)
    rec["next"] = -1
    path = tmp_path / "distinct.oracleGeneral"
    path.write_bytes(rec.tobytes())
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    # -P: not the current directory's edgesim (the source tree, in CI, has no native
    # module, and would replay with the Python loop), but the installed one
    cmd = [sys.executable, "-P", "-m", "edgesim", "replay", str(path), "--cache-size", "1k", "--json"]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, preexec_fn=_limited_to(400), env=env
    )
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert proc.stderr == (
        f"Error: {path}: out of memory while replaying it (the cache's objects do not fit): "
        "replay a part of it\n"
    )
    # a third of the objects fits under the same limit, and all of them without it
    third = tmp_path / "third.oracleGeneral"
    third.write_bytes(rec[: n // 3].tobytes())
    cmd[cmd.index(str(path))] = str(third)
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, preexec_fn=_limited_to(400), env=env
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["engine"] == "native"
    cmd[cmd.index(str(third))] = str(path)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert (out["engine"], out["requests"], out["hits"]) == ("native", n, 0)


def test_writer_rejects_values_oracle_general_cannot_hold(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match=r"record 1: size 4294967296 does not fit"):
        write_trace(tmp_path / "t.bin", Trace.from_rows([(0, 1, 1), (1, 2, 2**32)]))
    with pytest.raises(TraceError, match=r"record 0: time -1.0 does not fit"):
        write_trace(tmp_path / "t.bin", Trace.from_rows([(-1, 1, 1)]))


# ---- CLI ------------------------------------------------------------------------------


@pytest.fixture
def csv_trace(tmp_path: Path) -> Path:
    path = tmp_path / "t.csv"
    path.write_text("time,key,size\n0,a,10\n1,b,10\n2,a,10\n3,c,30\n4,a,10\n", encoding="utf-8")
    return path


def test_cli_json(csv_trace: Path) -> None:
    result = CliRunner().invoke(cli, ["replay", str(csv_trace), "--cache-size", "30", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["requests"] == 5
    assert out["hit_ratio"] == pytest.approx(1 / 5)  # only the first re-request of a hits
    assert out["byte_hit_ratio"] == pytest.approx(10 / 70)
    assert out["policy"] == "lru"
    assert out["cache_size"] == 30


def test_cli_human_and_binary(csv_trace: Path, tmp_path: Path) -> None:
    binary = tmp_path / "t.data"
    write_trace(binary, read_trace(csv_trace), "oracle-general")
    runner = CliRunner()
    result = runner.invoke(
        cli, ["replay", str(binary), "--format", "oracle-general", "--cache-size", "1KB", "--policy", "fifo"]
    )
    assert result.exit_code == 0, result.output
    assert "hit ratio       0.4000" in result.output
    assert "byte hit ratio  0.2857" in result.output
    assert "requests/s" in result.output


def test_cli_engines_agree(csv_trace: Path) -> None:
    outs = {}
    for engine in ("native", "python"):
        args = ["replay", str(csv_trace), "--cache-size", "30", "--json", "--engine", engine]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
        outs[engine] = json.loads(result.output)
        assert outs[engine].pop("engine") == engine
        del outs[engine]["seconds"], outs[engine]["requests_per_second"]
    assert outs["native"] == outs["python"]
    human = CliRunner().invoke(cli, ["replay", str(csv_trace), "--cache-size", "30"])
    assert "requests/s (native)" in human.output


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["--cache-size", "lots"], 2, "Invalid value for '--cache-size'"),
        (["--cache-size", "1k", "--policy", "arc"], 2, "Invalid value for '--policy'"),
        (["--cache-size", "1k", "--engine", "c"], 2, "Invalid value for '--engine'"),
        ([], 2, "Missing option '--cache-size'"),
    ],
)
def test_cli_bad_options(csv_trace: Path, args: list[str], code: int, needle: str) -> None:
    result = CliRunner().invoke(cli, ["replay", str(csv_trace), *args])
    assert result.exit_code == code
    assert needle in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"time,key,size\n0,a,x\n", "t.csv:2: size 'x' is not a whole number of bytes"),
        (b"", "t.csv:1: empty file"),
        (b"\x00" * 30, "record 1: truncated record"),
    ],
)
def test_cli_bad_trace_is_one_line(tmp_path: Path, content: bytes, needle: str) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(content)
    args = ["replay", str(path), "--cache-size", "1k"]
    if content.startswith(b"\x00"):
        args += ["--format", "oracle-general"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1
    assert result.output.count("\n") == 1
    assert result.output.startswith("Error: ")
    assert needle in result.output
    assert not isinstance(result.exception, TraceError)  # handled, not escaped


def test_cli_missing_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["replay", str(tmp_path / "none.csv"), "--cache-size", "1k"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and "cannot open" in result.output
    assert result.output.count("\n") == 1
