"""Storage for the HTTP cache: bounded key -> variant-list stores, apart from cache policy.

Theory of operation
-------------------
A store maps an opaque primary cache key to the list of stored responses (variants,
RFC 9111 §4.1) for that key, and knows nothing about HTTP: it only reads each entry's
``nbytes`` and ``tag``. Every store is bounded in bytes. ``put`` admits a list only if it
fits both ``capacity_bytes`` and the admission limit ``max_object_bytes``; then it evicts
whole keys in LRU (default) or FIFO order until ``used_bytes <= capacity_bytes``.
Tags (site names) index keys so that a whole site can be purged at once.

Implementations:

- :class:`MemoryStore`: entries (with bodies) in an ``OrderedDict``.
- :class:`MetadataStore`: the same, but bodies are dropped (``None``); for the capacity
  engine, which models sizes, not bytes.
- :class:`DiskStore`: entries serialized with a checksum into a ``diskcache.Cache``
  directory. Byte accounting and eviction order live in an in-memory index that is rebuilt
  from the directory on open, so the bound holds across restarts. A blob whose checksum
  does not match (corrupt or half-written file) reads as a miss and is deleted.

Invariants: ``used_bytes`` is the sum of the admitted sizes of the keys present;
``used_bytes <= capacity_bytes`` after every call; a key belongs to at most one tag.
Stores are single-owner: not safe for concurrent use from several threads.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import struct
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol

from edgesim.http import FrozenHeaders, Headers

Eviction = Literal["lru", "fifo"]

# Fixed per-entry bookkeeping charged on top of body and header bytes, so that many
# tiny (or bodyless metadata) entries still fill a store; roughly a slotted object plus
# its list and dict slots in CPython.
ENTRY_OVERHEAD: Final = 256


# CacheEntry fields (a compiled class has no __slots__ attribute to read).
ENTRY_FIELDS: Final = (
    "body",
    "etag",
    "headers",
    "initial_age",
    "last_modified",
    "lifetime",
    "memo",
    "nbytes",
    "no_cache",
    "no_stale",
    "request_time",
    "response_time",
    "sie",
    "size",
    "status",
    "swr",
    "tag",
    "vary_names",
    "vary_values",
)


class CacheEntry:
    """One stored response, with its freshness facts pre-computed at store time.

    Built by ``edgesim.cache`` (never by callers); stores treat it as an immutable value.

    Attributes:
        status, headers, body, size: the stored response (headers without hop-by-hop
            fields and without ``Age``, as a tuple; ``body`` is None for metadata-only
            entries).
        request_time, response_time: RFC 9111 §4.2.3, in the caller's ``now`` clock.
        initial_age: ``corrected_initial_age`` (§4.2.3).
        lifetime: freshness lifetime in seconds (§4.2.1).
        no_cache: every reuse needs validation (response ``no-cache``, §5.2.2.4).
        no_stale: never serve stale (must-revalidate, proxy-revalidate, s-maxage, no-cache).
        swr, sie: ``stale-while-revalidate`` / ``stale-if-error`` windows, -1.0 if absent.
        etag, last_modified: validators as received (or None).
        vary_names, vary_values: the Vary field names (lower-case) and the normalised
            values of those request fields when stored (None for absent).
        tag: the purge tag (site name).
        nbytes: bytes charged to a store for this entry.
        memo: free for the cache's user, for a value derived from the fields above
            (the edge node keeps its rendering of ``headers`` there); None until set.
    """

    __slots__ = ENTRY_FIELDS

    def __init__(
        self,
        status: int,
        headers: Headers | FrozenHeaders,
        body: bytes | None,
        size: int,
        request_time: float,
        response_time: float,
        initial_age: float,
        lifetime: float,
        no_cache: bool,
        no_stale: bool,
        swr: float,
        sie: float,
        etag: str | None,
        last_modified: str | None,
        vary_names: tuple[str, ...],
        vary_values: tuple[str | None, ...],
        tag: str,
    ) -> None:
        self.status = status
        self.headers: FrozenHeaders = headers if isinstance(headers, tuple) else tuple(headers)
        self.body = body
        self.size = size
        self.request_time = request_time
        self.response_time = response_time
        self.initial_age = initial_age
        self.lifetime = lifetime
        self.no_cache = no_cache
        self.no_stale = no_stale
        self.swr = swr
        self.sie = sie
        self.etag = etag
        self.last_modified = last_modified
        self.vary_names = vary_names
        self.vary_values = vary_values
        self.tag = tag
        self.memo: Any = None
        n = size + ENTRY_OVERHEAD
        for k, v in self.headers:
            n += len(k) + len(v) + 4
        self.nbytes = n

    def without_body(self) -> CacheEntry:
        """A metadata-only copy (``body=None``, same ``size``)."""
        e = CacheEntry(
            self.status,
            self.headers,
            None,
            self.size,
            self.request_time,
            self.response_time,
            self.initial_age,
            self.lifetime,
            self.no_cache,
            self.no_stale,
            self.swr,
            self.sie,
            self.etag,
            self.last_modified,
            self.vary_names,
            self.vary_values,
            self.tag,
        )
        e.memo = self.memo  # derived from fields the copy shares
        return e

    def __repr__(self) -> str:
        return f"CacheEntry({self.status}, {self.size} bytes, lifetime={self.lifetime})"


@dataclass(frozen=True, slots=True)
class StoreStats:
    """Immutable snapshot of one store."""

    keys: int
    used_bytes: int
    capacity_bytes: int
    evictions: int
    rejected: int  # puts refused by the admission limit or capacity
    corrupt: int  # entries that failed their checksum (DiskStore only)


class Store(Protocol):
    """What ``HttpCache`` needs from a storage tier."""

    @property
    def used_bytes(self) -> int: ...

    @property
    def capacity_bytes(self) -> int: ...

    def get(self, key: str) -> list[CacheEntry] | None:
        """The variants stored under ``key`` (marks the key used), or None."""
        ...

    def put(self, key: str, entries: list[CacheEntry], tag: str = "") -> bool:
        """Store ``entries`` under ``key`` (replacing what was there), evicting other keys
        as needed. Returns False, and removes ``key``, if the list is not admitted."""
        ...

    def delete(self, key: str) -> bool: ...

    def purge_tag(self, tag: str) -> list[str]:
        """Remove every key stored with ``tag``; returns those keys."""
        ...

    def clear(self) -> None: ...

    def statistics(self) -> StoreStats: ...


# What a store keeps per key: a lone variant, a variant list, or None (on disk).
_Value = CacheEntry | list[CacheEntry] | None


class _BoundedIndex:
    """Byte accounting, eviction order and tag index shared by all stores.

    Per key it keeps a value (the variants of a memory store, None for the disk store),
    and the bytes charged and the tag, in flat dicts rather than a record object per key:
    a simulated cache holds hundreds of thousands of keys, and every container object
    kept alive that long is one more for each full pass of Python's cyclic garbage
    collector. (The ``(bytes, tag)`` pair is a tuple of an int and a str, which the
    collector stops tracking at its first pass; one dict of pairs costs one insertion
    per put where a dict of bytes and a dict of tags cost two.)

    Subclasses override ``_dropped(key)`` to release whatever else backs an evicted key.
    """

    __slots__ = (
        "_capacity",
        "_charges",
        "_corrupt",
        "_evictions",
        "_lru",
        "_max_object",
        "_rejected",
        "_tags",
        "_used",
        "_values",
    )

    def __init__(
        self, capacity_bytes: int, *, eviction: Eviction = "lru", max_object_bytes: int | None = None
    ) -> None:
        if capacity_bytes < 0:
            raise ValueError("capacity_bytes must be >= 0")
        if eviction not in ("lru", "fifo"):
            raise ValueError(f"unknown eviction policy {eviction!r} (expected 'lru' or 'fifo')")
        self._capacity = capacity_bytes
        self._max_object = (
            capacity_bytes if max_object_bytes is None else min(max_object_bytes, capacity_bytes)
        )
        self._lru = eviction == "lru"
        # key -> value, in eviction order (oldest first); key -> (bytes, tag) beside it
        self._values: OrderedDict[str, _Value] = OrderedDict()
        self._charges: dict[str, tuple[int, str]] = {}
        self._tags: dict[str, set[str]] = {}
        self._used = 0
        self._evictions = 0
        self._rejected = 0
        self._corrupt = 0

    @property
    def used_bytes(self) -> int:
        return self._used

    @property
    def capacity_bytes(self) -> int:
        return self._capacity

    def __len__(self) -> int:
        return len(self._values)

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def _dropped(self, key: str) -> None:
        """Hook: ``key`` left the index (evicted, deleted, purged)."""

    def _touch(self, key: str) -> None:
        if self._lru:
            self._values.move_to_end(key)

    def _admit(self, key: str, value: _Value, nbytes: int, tag: str) -> bool:
        """Account ``value`` (``nbytes``, ``tag``) under ``key``; evict others until
        within capacity."""
        values = self._values
        charges = self._charges
        # one get, then del only for a key present (a new key, nearly every put, costs no
        # dict.pop, which compiles to a generic method call)
        old = charges.get(key)
        if old is not None:
            if old[0] == nbytes and nbytes <= self._max_object and old[1] == tag:
                # the same charge and tag again (a revalidated entry): what taking the old
                # value out and admitting the new one leaves, without the bookkeeping
                values[key] = value
                values.move_to_end(key)
                return True
            del charges[key]
            del values[key]
            self._forget(key, old[0], old[1])
        if nbytes > self._max_object:
            self._rejected += 1
            if old is not None:
                self._dropped(key)
            return False
        values[key] = value
        charges[key] = (nbytes, tag)
        self._used += nbytes
        if tag:
            keys = self._tags.get(tag)
            if keys is None:  # not setdefault: that builds a set on every put
                self._tags[tag] = {key}
            else:
                keys.add(key)
        # The new key sits at the end, and nbytes <= capacity, so it is never the victim.
        while self._used > self._capacity:
            victim = values.popitem(last=False)[0]
            vbytes, vtag = charges.pop(victim)
            self._forget(victim, vbytes, vtag)
            self._dropped(victim)
            self._evictions += 1
        return True

    def _forget(self, key: str, nbytes: int, tag: str) -> None:
        """Release the bytes and the tag of ``key`` (already out of ``_values`` and
        ``_charges``)."""
        self._used -= nbytes
        if tag:
            keys = self._tags.get(tag)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._tags[tag]

    def delete(self, key: str) -> bool:
        charge = self._charges.pop(key, None)
        if charge is None:
            return False
        del self._values[key]
        self._forget(key, charge[0], charge[1])
        self._dropped(key)
        return True

    def purge_tag(self, tag: str) -> list[str]:
        keys = list(self._tags.get(tag, ()))
        for key in keys:
            self.delete(key)
        return keys

    def _clear_index(self) -> None:
        self._values.clear()
        self._charges.clear()
        self._tags.clear()
        self._used = 0

    def statistics(self) -> StoreStats:
        return StoreStats(
            keys=len(self._values),
            used_bytes=self._used,
            capacity_bytes=self._capacity,
            evictions=self._evictions,
            rejected=self._rejected,
            corrupt=self._corrupt,
        )


class MemoryStore(_BoundedIndex):
    """Entries and bodies in process memory, bounded in bytes.

    Args:
        capacity_bytes: the byte bound (entry bodies + headers + ``ENTRY_OVERHEAD``).
        eviction: ``"lru"`` (default) or ``"fifo"`` (insertion order; gets don't reorder).
        max_object_bytes: admission limit for one key's variant list (default: capacity).
    """

    __slots__ = ()

    def get(self, key: str) -> list[CacheEntry] | None:
        v = self._values.get(key)
        if v is None:
            return None
        if self._lru:
            self._values.move_to_end(key)
        return [v] if isinstance(v, CacheEntry) else v

    def put(self, key: str, entries: list[CacheEntry], tag: str = "") -> bool:
        n = 0
        for e in entries:
            n += e.nbytes
        # A lone variant (nearly every key) is kept bare, not in a one-item list: one
        # long-lived object fewer per key for the cyclic GC; ``get`` wraps it again.
        return self._admit(key, entries[0] if len(entries) == 1 else entries, n, tag)

    def clear(self) -> None:
        self._clear_index()


class MetadataStore(MemoryStore):
    """A :class:`MemoryStore` that keeps sizes but never bodies (for the simulator).

    Entries put with a body are stored as body-less copies; byte accounting still
    charges their ``size``, so eviction behaves as if the bodies were there.
    """

    __slots__ = ()

    def put(self, key: str, entries: list[CacheEntry], tag: str = "") -> bool:
        for e in entries:
            if e.body is not None:
                entries = [x if x.body is None else x.without_body() for x in entries]
                break
        return super().put(key, entries, tag)


# --- DiskStore ------------------------------------------------------------------------

# Blob layout: MAGIC | blake2b-128(payload) | payload, where
# payload = u32 length of the JSON metadata | JSON | the bodies, concatenated.
_MAGIC: Final = b"ESC\x01"
_DIGEST: Final = 16
_HEAD: Final = len(_MAGIC) + _DIGEST


def encode_entries(entries: list[CacheEntry]) -> bytes:
    """Serialize a variant list with a checksum (the DiskStore on-disk format)."""
    meta = []
    bodies = []
    for e in entries:
        meta.append(
            [
                e.status,
                e.headers,
                -1 if e.body is None else len(e.body),
                e.size,
                e.request_time,
                e.response_time,
                e.initial_age,
                e.lifetime,
                e.no_cache,
                e.no_stale,
                e.swr,
                e.sie,
                e.etag,
                e.last_modified,
                list(e.vary_names),
                list(e.vary_values),
                e.tag,
            ]
        )
        if e.body is not None:
            bodies.append(e.body)
    js = json.dumps(meta, separators=(",", ":")).encode()
    payload = b"".join([struct.pack(">I", len(js)), js, *bodies])
    return _MAGIC + hashlib.blake2b(payload, digest_size=_DIGEST).digest() + payload


def decode_entries(blob: bytes) -> list[CacheEntry] | None:
    """Inverse of :func:`encode_entries`; None if the blob is corrupt or truncated."""
    if len(blob) < _HEAD + 4 or not blob.startswith(_MAGIC):
        return None
    payload = memoryview(blob)[_HEAD:]
    if hashlib.blake2b(payload, digest_size=_DIGEST).digest() != blob[len(_MAGIC) : _HEAD]:
        return None
    try:
        (jlen,) = struct.unpack_from(">I", payload, 0)
        meta = json.loads(bytes(payload[4 : 4 + jlen]))
        pos = 4 + jlen
        out = []
        for m in meta:
            blen = m[2]
            body = None
            if blen >= 0:
                body = bytes(payload[pos : pos + blen])
                pos += blen
            out.append(
                CacheEntry(
                    m[0],
                    [(k, v) for k, v in m[1]],
                    body,
                    m[3],
                    request_time=m[4],
                    response_time=m[5],
                    initial_age=m[6],
                    lifetime=m[7],
                    no_cache=m[8],
                    no_stale=m[9],
                    swr=m[10],
                    sie=m[11],
                    etag=m[12],
                    last_modified=m[13],
                    vary_names=tuple(m[14]),
                    vary_values=tuple(m[15]),
                    tag=m[16],
                )
            )
    except (ValueError, TypeError, IndexError, KeyError, struct.error):
        return None
    return out


# diskcache culls by its own size estimate (which includes its SQLite file); we set its
# limit well above ours so that it only acts as a backstop and our index stays exact.
_DISKCACHE_SLACK: Final = 64 * 1024 * 1024


class DiskStore(_BoundedIndex):
    """Entries in a ``diskcache.Cache`` directory, bounded in bytes, checksummed.

    Args:
        directory: the cache directory (created if missing; reused across restarts).
        capacity_bytes: the byte bound, counted as the serialized blob sizes.
        eviction: ``"lru"`` (default) or ``"fifo"``.
        max_object_bytes: admission limit for one key's serialized variant list.
        min_file_size: blobs of at least this many bytes go to their own file instead of
            SQLite (diskcache's ``disk_min_file_size``; its default is 32 KiB).

    Resource handling:
        Owns the open ``diskcache.Cache``; call :meth:`close` (or use ``with``) to release
        it. On open the index is rebuilt by scanning the directory (sizes via file handles,
        without reading bodies); the recency order after a restart is store order.

    Error handling:
        A blob that is missing, unreadable or fails its checksum is a miss; the key is
        deleted and counted in ``statistics().corrupt``.
    """

    __slots__ = ("_cache", "_directory")

    def __init__(
        self,
        directory: str,
        capacity_bytes: int,
        *,
        eviction: Eviction = "lru",
        max_object_bytes: int | None = None,
        min_file_size: int | None = None,
    ) -> None:
        import diskcache  # type: ignore[import-untyped]  # deferred: only disk users pay for it

        super().__init__(capacity_bytes, eviction=eviction, max_object_bytes=max_object_bytes)
        self._directory = directory
        settings: dict[str, object] = {
            "size_limit": 2 * capacity_bytes + _DISKCACHE_SLACK,
            "eviction_policy": "least-recently-stored",
        }
        if min_file_size is not None:
            settings["disk_min_file_size"] = min_file_size
        self._cache: Any = diskcache.Cache(directory, **settings)
        self._rebuild()

    @property
    def directory(self) -> str:
        return self._directory

    def _rebuild(self) -> None:
        for key in list(self._cache.iterkeys()):
            if not isinstance(key, str):
                continue
            try:
                value, tag = self._cache.get(key, default=None, read=True, tag=True)
            except (OSError, sqlite3.Error):
                value = None
            if value is None:  # its file is gone or unreadable
                self._corrupt += 1
                self._dropped(key)
                continue
            if isinstance(value, bytes):
                n = len(value)
            else:
                with value:
                    n = value.seek(0, 2)
            self._admit(key, None, n, tag or "")

    def _dropped(self, key: str) -> None:
        with contextlib.suppress(OSError, sqlite3.Error):
            self._cache.delete(key)

    def get(self, key: str) -> list[CacheEntry] | None:
        if key not in self._values:
            return None
        try:
            blob = self._cache.get(key, default=None)
        except (OSError, sqlite3.Error):
            blob = None
        entries = decode_entries(blob) if isinstance(blob, bytes) else None
        if entries is None:
            self._corrupt += 1
            self.delete(key)
            return None
        self._touch(key)
        return entries

    def put(self, key: str, entries: list[CacheEntry], tag: str = "") -> bool:
        blob = encode_entries(entries)
        n = len(blob)
        if n > self._max_object:
            self._rejected += 1
            self.delete(key)
            return False
        self._cache.set(key, blob, tag=tag or None)
        return self._admit(key, None, n, tag)

    def clear(self) -> None:
        self._cache.clear()
        self._clear_index()

    def close(self) -> None:
        """Close the underlying diskcache (safe to repeat)."""
        self._cache.close()

    def __enter__(self) -> DiskStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
