"""Store tests for edgesim._cachestore (via edgesim.cache): bounds, eviction, tags, disk integrity."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgesim._cachestore import ENTRY_FIELDS
from edgesim.cache import (
    CacheEntry,
    DiskStore,
    MemoryStore,
    MetadataStore,
    decode_entries,
    encode_entries,
)
from edgesim.http import Headers


def entry(size: int, *, body: bool = True, tag: str = "", headers: Headers | None = None) -> CacheEntry:
    return CacheEntry(
        200,
        headers if headers is not None else [],
        b"x" * size if body else None,
        size,
        request_time=1.0,
        response_time=2.0,
        initial_age=0.5,
        lifetime=60.0,
        no_cache=False,
        no_stale=False,
        swr=-1.0,
        sie=30.0,
        etag='"e"',
        last_modified=None,
        vary_names=("accept-encoding",),
        vary_values=("gzip",),
        tag=tag,
    )


def sized(total: int) -> list[CacheEntry]:
    """A one-entry list whose nbytes is exactly ``total``."""
    e = entry(0)
    return [entry(total - e.nbytes)]


# --- memory: LRU by bytes, FIFO, admission ---------------------------------------------------------


def test_lru_evicts_least_recently_used_by_bytes() -> None:
    s = MemoryStore(3000)
    for k in "abc":
        assert s.put(k, sized(1000))
    assert s.used_bytes == 3000
    assert s.get("a") is not None  # a is now most recent
    assert s.put("d", sized(1500))  # needs 1500: evicts b, then c
    assert s.get("b") is None and s.get("c") is None
    assert s.get("a") is not None and s.get("d") is not None
    assert s.used_bytes == 2500
    assert s.statistics().evictions == 2


def test_fifo_ignores_reads() -> None:
    s = MemoryStore(3000, eviction="fifo")
    for k in "abc":
        s.put(k, sized(1000))
    s.get("a")
    s.put("d", sized(1000))
    assert s.get("a") is None and s.get("b") is not None


def test_unknown_eviction_policy() -> None:
    with pytest.raises(ValueError, match="unknown eviction"):
        MemoryStore(10, eviction="lfu")  # type: ignore[arg-type]


def test_object_larger_than_capacity_never_stored() -> None:
    s = MemoryStore(1000)
    s.put("small", sized(500))
    assert not s.put("big", sized(1001))
    assert s.get("big") is None and s.get("small") is not None  # nothing evicted for it
    assert s.statistics().rejected == 1 and s.used_bytes == 500


def test_admission_limit() -> None:
    s = MemoryStore(10_000, max_object_bytes=1000)
    assert s.put("a", sized(1000))
    assert not s.put("b", sized(1001))
    # Replacing a key with an inadmissible value removes the old value.
    assert not s.put("a", sized(2000))
    assert s.get("a") is None and s.used_bytes == 0


def test_replace_updates_accounting() -> None:
    s = MemoryStore(10_000)
    s.put("a", sized(1000))
    s.put("a", sized(300))
    assert s.used_bytes == 300 and len(s) == 1


def test_tags_and_purge() -> None:
    s = MemoryStore(100_000)
    s.put("s1/a", sized(1000), "s1")
    s.put("s1/b", sized(1000), "s1")
    s.put("s2/a", sized(1000), "s2")
    s.put("s1/b", sized(1000), "s2")  # retagged
    assert sorted(s.purge_tag("s1")) == ["s1/a"]
    assert sorted(s.purge_tag("s2")) == ["s1/b", "s2/a"]
    assert s.used_bytes == 0 and s.purge_tag("s1") == []


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["put", "put", "put", "delete", "purge"]), st.integers(0, 30), st.integers(0, 3)
        ),
        max_size=400,
    )
)
def test_purges_find_exactly_the_keys_that_hold_the_tag(ops: list[tuple[str, int, int]]) -> None:
    # evictions (a small store), deletes and retagging between purges
    s = MemoryStore(8_000)
    sizes = {k: 500 + 37 * k for k in range(31)}
    last_tag: dict[str, str] = {}  # the model: the tag each key was last put with
    for op, k, t in ops:
        key, tag = f"k{k}", f"t{t}"
        if op == "put":
            s.put(key, sized(sizes[k]), tag)
            last_tag[key] = tag
        elif op == "delete":
            s.delete(key)
        else:
            held = {x for x, xt in last_tag.items() if xt == tag and x in s}
            assert set(s.purge_tag(tag)) == held
            assert not any(x in s for x in held)
    stored = [s.get(x) or [] for x in last_tag if x in s]
    assert s.used_bytes == sum(v.nbytes for entries in stored for v in entries)


def test_delete_and_clear() -> None:
    s = MemoryStore(100_000)
    s.put("a", sized(1000), "t")
    assert s.delete("a") and not s.delete("a")
    s.put("b", sized(1000), "t")
    s.clear()
    assert s.used_bytes == 0 and s.get("b") is None and s.purge_tag("t") == []


def test_nbytes_counts_headers_and_overhead() -> None:
    e = entry(100, headers=[("content-type", "text/plain")])
    assert e.nbytes > 100 + len("content-type") + len("text/plain")


@given(st.lists(st.tuples(st.sampled_from("abcdefgh"), st.integers(300, 3000), st.booleans()), max_size=60))
@settings(max_examples=60, deadline=None)
def test_bound_and_accounting_invariants(ops: list[tuple[str, int, bool]]) -> None:
    s = MemoryStore(5000)
    for key, size, read in ops:
        if read:
            s.get(key)
        else:
            s.put(key, sized(size))
        live = [k for k in "abcdefgh" if k in s]
        assert s.used_bytes == sum(e.nbytes for k in live for e in s.get(k) or [])
        assert s.used_bytes <= s.capacity_bytes


# --- metadata store ---------------------------------------------------------------------------------


def test_metadata_store_drops_bodies_keeps_sizes() -> None:
    s = MetadataStore(100_000)
    s.put("a", [entry(5000)])
    got = s.get("a")
    assert got is not None and got[0].body is None and got[0].size == 5000
    assert s.used_bytes == entry(5000).nbytes


def test_metadata_store_evicts_like_memory_store() -> None:
    s = MetadataStore(3 * entry(1000, body=False).nbytes)
    for k in "abcd":
        s.put(k, [entry(1000, body=False)])
    assert s.get("a") is None and s.statistics().evictions == 1


# --- serialization ----------------------------------------------------------------------------------


def test_encode_decode_roundtrip() -> None:
    entries = [entry(10, headers=[("etag", '"é"')]), entry(0, body=False, tag="site")]
    out = decode_entries(encode_entries(entries))
    assert out is not None and len(out) == 2
    for a, b in zip(entries, out, strict=True):
        assert [getattr(a, f) for f in ENTRY_FIELDS] == [getattr(b, f) for f in ENTRY_FIELDS]


def test_decode_rejects_corruption() -> None:
    blob = encode_entries([entry(100)])
    assert decode_entries(blob[:-1]) is None
    flipped = bytearray(blob)
    flipped[-10] ^= 1
    assert decode_entries(bytes(flipped)) is None
    assert decode_entries(b"") is None
    assert decode_entries(b"garbage" * 10) is None


# --- disk store -------------------------------------------------------------------------------------


def _value_files(directory: Path) -> list[Path]:
    return [p for p in directory.rglob("*.val")]


def test_disk_roundtrip_and_bound(tmp_path: Path) -> None:
    with DiskStore(str(tmp_path), 10_000) as s:
        for i in range(10):
            assert s.put(f"k{i}", [entry(1500)], "site")
        assert s.used_bytes <= 10_000
        assert s.statistics().evictions > 0
        got = s.get("k9")
        assert got is not None and got[0].body == b"x" * 1500 and got[0].vary_values == ("gzip",)
        assert s.get("k0") is None


def test_disk_bounded_across_reopen(tmp_path: Path) -> None:
    with DiskStore(str(tmp_path), 20_000) as s:
        for i in range(8):
            s.put(f"k{i}", [entry(2000)], "site" if i % 2 else "other")
        used, keys = s.used_bytes, s.statistics().keys
    with DiskStore(str(tmp_path), 20_000) as s:
        assert (s.used_bytes, s.statistics().keys) == (used, keys)
        assert s.get("k7") is not None
        assert sorted(s.purge_tag("site")) == ["k1", "k3", "k5", "k7"]
    # Reopening with a smaller capacity evicts down to it (oldest first).
    with DiskStore(str(tmp_path), 5000) as s:
        assert 0 < s.used_bytes <= 5000
        assert s.get("k6") is not None and s.get("k0") is None
    with DiskStore(str(tmp_path), 5000) as s:
        assert s.used_bytes <= 5000


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty", "delete"])
def test_disk_corrupt_entry_is_a_miss_and_deleted(tmp_path: Path, damage: str) -> None:
    with DiskStore(str(tmp_path), 1 << 20, min_file_size=0) as s:
        s.put("good", [entry(4000)])
        s.put("bad", [entry(5000)])
    files = _value_files(tmp_path)
    assert len(files) == 2
    victim = max(files, key=lambda p: p.stat().st_size)  # the 5000-byte entry
    data = victim.read_bytes()
    if damage == "truncate":  # a half-written file
        victim.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        victim.write_bytes(data[:-100] + bytes([data[-100] ^ 0xFF]) + data[-99:])
    elif damage == "empty":
        victim.write_bytes(b"")
    else:
        os.remove(victim)
    with DiskStore(str(tmp_path), 1 << 20, min_file_size=0) as s:
        assert s.get("bad") is None
        assert s.statistics().corrupt == 1
        assert "bad" not in s and s.statistics().keys == 1
        good = s.get("good")
        assert good is not None and good[0].body == b"x" * 4000
        assert s.get("bad") is None and s.statistics().corrupt == 1  # gone, not re-counted


def test_disk_admission_and_oversize(tmp_path: Path) -> None:
    with DiskStore(str(tmp_path), 10_000, max_object_bytes=3000) as s:
        assert not s.put("big", [entry(5000)])
        assert s.put("ok", [entry(1000)])
        assert not s.put("ok", [entry(4000)])
        assert s.get("ok") is None and s.used_bytes == 0
        assert s.statistics().rejected == 2


def test_disk_clear(tmp_path: Path) -> None:
    with DiskStore(str(tmp_path), 100_000) as s:
        s.put("a", [entry(100)], "t")
        s.clear()
        assert s.get("a") is None and s.used_bytes == 0
    with DiskStore(str(tmp_path), 100_000) as s:
        assert s.statistics().keys == 0
