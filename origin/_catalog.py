"""Synthetic sites: a deterministic catalog of objects that exist only as numbers.

Theory of operation
-------------------
A :class:`Catalog` lays out ``spec.objects`` numbered objects once, from
``random.Random(spec.seed)``: each gets a kind (html, js, css, img, font, json, drawn
from the type mix) and a size (drawn from the kind's size distribution). Kinds and sizes
are two compact arrays shared by every later deploy. A deploy only records, per object,
the deploy *ordinal* in which it last changed (``version``): content hash, ETag, hashed
file name, Last-Modified and body all derive from (seed, index, version), so nothing per
object is stored beyond three array slots, and lookups build values on demand.

URL shapes (``i`` is the index, ``h`` ten hex digits of the content hash)::

    html   /page-<i>.html              font  /assets/obj-<i>.<h>.woff2
    js     /assets/obj-<i>.<h>.js      json  /data/obj-<i>.json
    css    /assets/obj-<i>.<h>.css     and always /index.html and /404.html
    img    /assets/obj-<i>.<h>.jpg

A redeploy (:meth:`Catalog.redeploy`) changes a seeded fraction of objects: hashed
assets get a new name (the old one stops existing), others keep their name with a new
ETag; ``/index.html`` changes on every deploy. Replaying the same deploy history gives
the same catalog, which is how an edge can rebuild the file set from the manifest
(:meth:`Catalog.from_manifest`).

Bodies are generated on demand: a prefix naming the object and version, then filler
(text for text kinds, pseudo-random bytes for binary ones) cut to the exact size.
"""

from __future__ import annotations

import random
import threading
from array import array
from collections.abc import Mapping
from functools import lru_cache
from hashlib import blake2b
from typing import Any, Final

from origin._config import KINDS, MAX_SIZE, CatalogSpec, Uniforms

_KIND_NAMES: Final = tuple(KINDS)
_CONTENT_TYPES: Final = tuple(KINDS[k][0] for k in _KIND_NAMES)
_SHAPES: Final = tuple(KINDS[k][1] for k in _KIND_NAMES)
_HASHED_KIND: Final = tuple("{h}" in s for s in _SHAPES)


def _cut(shape: str) -> tuple[str, str | None, str]:
    """A URL shape around its fields: (before ``{i}``, between ``{i}`` and ``{h}``
    (None: no hash), after the last field)."""
    before, _, rest = shape.partition("{i}")
    between, hashed, after = rest.partition("{h}")
    return (before, between, after) if hashed else (before, None, rest)


_SHAPE_PARTS: Final = tuple(_cut(s) for s in _SHAPES)

# URL extension of each hashed kind (the part after the hash), by kind ("": unhashed).
_EXT: Final = tuple(s.rsplit(".", 1)[1] if "{h}" in s else "" for s in _SHAPES)
_HTML: Final = _KIND_NAMES.index("html")
_JSON: Final = _KIND_NAMES.index("json")
_TEXT_KINDS: Final = frozenset(i for i, k in enumerate(_KIND_NAMES) if k != "img" and k != "font")

# Fixed pages of every synthetic site: (path, size). Index -1 and -2 in lookups.
INDEX_PAGE: Final = ("/index.html", 8192)
NOT_FOUND_PAGE: Final = ("/404.html", 1024)
# What Catalog.find answers for the fixed pages, and for a path that names nothing.
INDEX_OBJECT: Final = -1
NOT_FOUND_OBJECT: Final = -2
NO_OBJECT: Final = -3

# Filler cut into bodies: 64 KiB, so one bytes multiplication covers most objects.
_BLOCK: Final = 1 << 16
_FILL_TEXT: Final = (b"edgesim synthetic content, lorem ipsum dolor sit amet. " * (_BLOCK // 32))[:_BLOCK]
_FILL_BIN: Final = random.Random(0x5EED).randbytes(_BLOCK)
# Default fraction of objects a synthetic redeploy changes.
DEFAULT_NEW_FRACTION: Final = 0.1


def kind_content_type(kind: int) -> str:
    """The Content-Type of a catalog kind (-1, the fixed pages': HTML)."""
    return _CONTENT_TYPES[kind] if kind >= 0 else _CONTENT_TYPES[_HTML]


def kind_path_start(kind: int) -> str:
    """What every path of a catalog kind starts with (``/page-``, ``/assets/obj-``,
    ...; ``/`` for the fixed pages, kind -1)."""
    return _SHAPE_PARTS[kind][0] if kind >= 0 else "/"


class Entry:
    """One catalog object, built on demand (plain slots, no validation)."""

    __slots__ = (
        "content_type",
        "etag",
        "hashed",
        "index",
        "kind",
        "last_modified",
        "path",
        "size",
        "version",
    )

    def __init__(
        self,
        index: int,
        path: str,
        kind: int,
        size: int,
        version: int,
        etag: str,
        last_modified: float,
    ) -> None:
        self.index = index
        self.path = path
        self.kind = kind
        self.size = size
        self.version = version
        self.etag = etag
        self.last_modified = last_modified
        self.content_type = kind_content_type(kind)
        self.hashed = kind >= 0 and _HASHED_KIND[kind]


# Catalogs Catalog.from_manifest rebuilt, by (spec, deploy history, deploy times), the
# oldest first; immutable, so shared by every caller (and thread)
_REBUILT: dict[tuple[CatalogSpec, tuple[tuple[int, float], ...], tuple[float, ...]], Catalog] = {}
_REBUILT_MAX: Final = 16
_REBUILT_LOCK = threading.Lock()


def _nearest_rebuilt(
    spec: CatalogSpec, history: tuple[tuple[int, float], ...], times: tuple[float, ...]
) -> tuple[Catalog | None, int]:
    """The kept catalog (:data:`_REBUILT`, under its lock) of the latest deploy of
    ``spec`` before the one of ``history`` and ``times``, on the same deploy history
    (the one to replay the rest of the history from), and its count of redeploys.
    (None, 0): none kept."""
    best: Catalog | None = None
    done = 0
    for (s, h, t), cat in _REBUILT.items():
        if s != spec or len(h) >= len(history) or (best is not None and len(h) <= done):
            continue
        if history[: len(h)] == h and times[: len(t)] == t:
            best, done = cat, len(h)
    return best, done


class Catalog:
    """The file set of one deploy of a synthetic site (immutable once built).

    Build the first deploy with ``Catalog(spec, created=now)``; later deploys with
    :meth:`redeploy`, which returns a new catalog and leaves this one unchanged.
    """

    __slots__ = (
        "_exists",
        "_hex",
        "_kinds",
        "_paths",
        "_since",
        "_sizes",
        "_times",
        "_version",
        "history",
        "spec",
    )

    spec: CatalogSpec
    history: tuple[tuple[int, float], ...]
    _times: tuple[float, ...]
    _kinds: bytes
    _sizes: array[int]
    _version: array[int]
    # Every object's content digest (16 hex digits each, by index) once ``paths`` has
    # listed them all; until then each lookup hashes its own object.
    _hex: str | None
    # Every object's path (by index) once ``paths`` has listed them all.
    _paths: tuple[str, ...] | None
    # A redeploy of a listed catalog: the listing of the deploy before (digests, paths)
    # and the objects changed since, so that listing this one redoes only those (None:
    # listed already, or nothing to start from).
    _since: tuple[str, tuple[str, ...], list[int]] | None

    def __init__(self, spec: CatalogSpec, *, created: float = 0.0, _of: Catalog | None = None) -> None:
        self.spec = spec
        self._exists: dict[str, bool] = {}
        if _of is not None:  # a copy sharing ``_of``'s arrays (see _copy)
            self._kinds, self._sizes = _of._kinds, _of._sizes
            self._version = _of._version
            self._hex, self._paths, self._since = _of._hex, _of._paths, _of._since
            self._times = _of._times
            self.history = _of.history
            return
        self._kinds, self._sizes = _layout(spec)
        self._version = array("I", bytes(4 * spec.objects))
        self._hex = self._paths = self._since = None
        self._times = (created,)
        self.history = ()

    @classmethod
    def from_manifest(cls, catalog: Mapping[str, Any]) -> Catalog:
        """Rebuild a catalog from the ``catalog`` object of a manifest (same file set,
        same ETags), replaying its deploy history.

        The last few catalogs rebuilt are kept (:data:`_REBUILT`): a manifest one deploy
        on from one of them is one redeploy away (and one some deploys on, as many:
        a node that skipped the manifests of the deploys between), where replaying the
        whole history for each of a site's deploys took time quadratic in its deploys."""
        spec = CatalogSpec.from_dict({k: v for k, v in catalog.items() if k in _SPEC_KEYS})
        given = catalog.get("deploy_times") or [0.0]
        history = tuple((int(seed), float(frac)) for seed, frac in catalog.get("history", []))
        # the time of each deploy: the first one's, then each redeploy's (0 if not given)
        times = tuple(float(given[n]) if n < len(given) else 0.0 for n in range(len(history) + 1))
        key = (spec, history, times)
        with _REBUILT_LOCK:
            cat = _REBUILT.get(key)
            base = _REBUILT.get((spec, history[:-1], times[:-1])) if history and cat is None else None
            done = len(history) - 1  # the redeploys that ``base`` stands for
            if cat is None and base is None and history:
                base, done = _nearest_rebuilt(spec, history, times)
        if cat is not None:
            return cat
        # from the latest earlier deploy kept (the one before, unless a node skipped
        # some manifests), else from the first
        cat = base if base is not None else cls(spec, created=times[0])
        for n in range(done if base is not None else 0, len(history)):
            seed, frac = history[n]
            cat = cat.redeploy(seed, frac, now=times[n + 1])
        with _REBUILT_LOCK:
            _REBUILT[key] = cat
            while len(_REBUILT) > _REBUILT_MAX:
                del _REBUILT[next(iter(_REBUILT))]  # the oldest
        return cat

    def stamped(self, now: float) -> Catalog:
        """This catalog with its latest deploy dated ``now`` (set when published)."""
        new = self._copy()
        new._times = (*self._times[:-1], now)
        return new

    def _copy(self) -> Catalog:
        return Catalog(self.spec, _of=self)

    def redeploy(self, seed: int, new_fraction: float, *, now: float) -> Catalog:
        """A new deploy in which ``round(objects * new_fraction)`` objects, chosen with
        ``random.Random(seed)``, change (see the module docstring)."""
        if not 0.0 <= new_fraction <= 1.0:
            raise ValueError(f"new_fraction must be in [0, 1], got {new_fraction!r}")
        n = self.spec.objects
        new = self._copy()
        ordinal = len(self._times)
        version = array("I", self._version)
        changed = random.Random(seed).sample(range(n), round(n * new_fraction))
        for i in changed:
            version[i] = ordinal
        new._version = version
        new._hex = new._paths = None
        # listed from this deploy's listing when it has one (the engine lists each
        # deploy of a site in turn): the cost of the objects that changed, not of all
        hexes, paths = self._hex, self._paths
        new._since = (hexes, paths, changed) if hexes is not None and paths is not None else None
        new._times = (*self._times, now)
        new.history = (*self.history, (seed, new_fraction))
        return new

    # ---- lookups ------------------------------------------------------------

    def __len__(self) -> int:
        """Number of numbered objects (the two fixed pages not included)."""
        return self.spec.objects

    def _hash(self, i: int, v: int) -> str:
        return _object_hash(self.spec.seed, i, v)

    def _digest(self, i: int) -> str:
        """``_hash(i, version of i)``, from the digests ``paths`` made if it has run."""
        hexes = self._hex
        if hexes is not None:
            k = 16 * i
            return hexes[k : k + 16]
        return self._hash(i, self._version[i])

    def entry(self, i: int) -> Entry:
        """Object ``i`` (0 <= i < len(self)) in this deploy."""
        return self._entry(i, self._digest(i), None)

    def _entry(self, i: int, h: str, path: str | None) -> Entry:
        """:meth:`entry` of object ``i`` whose digest is ``h``; ``path``: its path if
        the caller has it (else it is built)."""
        kind = self._kinds[i]
        v = self._version[i]
        if path is None:
            path = _path_of(kind, i, h)
        return Entry(i, path, kind, self._sizes[i], v, f'"{h}"', self._times[v])

    def path(self, i: int) -> str:
        """URL path of object ``i`` in this deploy (hashes only hashed kinds' names:
        the engine lists every object's path at start-up)."""
        kind = self._kinds[i]
        return _path_of(kind, i, self._digest(i) if _HASHED_KIND[kind] else "")

    def kind_codes(self) -> bytes:
        """The kind of every object, by index, as its position in ``KINDS`` (shared)."""
        return self._kinds

    def kind(self, i: int) -> str:
        """Kind name of object ``i`` (``html``, ``js``, ...)."""
        return _KIND_NAMES[self._kinds[i]]

    def paths(self) -> list[str]:
        """URL path of every object, by index (``path(i)`` for all ``i`` at once: the
        engine lists them at start-up and after each deploy). A new list each time, of
        strings kept per process (:func:`_listing`) and by this catalog."""
        paths = self._paths
        if paths is None:
            hexes, paths = _listing(self.spec, self._version.tobytes(), self._since)
            if self._hex is None:
                self._hex = hexes
            self._paths = paths
            self._since = None
        return list(paths)

    def kinds(self) -> list[str]:
        """Kind name of every object, by index (``kind(i)`` for all ``i`` at once)."""
        names = _KIND_NAMES
        return [names[k] for k in self._kinds]

    def sizes(self) -> array[int]:
        """Size in bytes of every object, by index (shared: never write to it)."""
        return self._sizes

    def size(self, i: int) -> int:
        """Size in bytes of object ``i``."""
        return self._sizes[i]

    def lookup(self, path: str) -> Entry | None:
        """The object at decoded ``path`` in this deploy, or None."""
        i = self.find(path)
        if i >= 0:
            return self._entry(i, self._digest(i), path)
        if i == INDEX_OBJECT:
            last = len(self._times) - 1
            etag = f'"{self._hash(-1, last)}"'
            return Entry(-1, path, -1, INDEX_PAGE[1], last, etag, self._times[last])
        if i == NOT_FOUND_OBJECT:
            return Entry(-2, path, -1, NOT_FOUND_PAGE[1], 0, f'"{self._hash(-2, 0)}"', self._times[0])
        return None

    def find(self, path: str) -> int:
        """Which object decoded ``path`` names in this deploy: its index, or
        ``INDEX_OBJECT`` / ``NOT_FOUND_OBJECT`` for the fixed pages, else ``NO_OBJECT``.
        (:meth:`lookup` without the Entry; the origin builds its file from
        :meth:`object_fields`.) The path is read in place, character codes and no
        slices: an origin asks once for every path it serves, edges for every path their
        rules touch."""
        n = self.spec.objects
        if path.startswith("/assets/obj-"):
            # /assets/obj-<i>.<10 hex of the digest>.<the kind's extension>
            dot = path.find(".", 12)
            if dot < 0:
                return NO_OBJECT
            i = _index_at(path, 12, dot, n)
            if i < 0:
                return NO_OBJECT
            ext = _EXT[self._kinds[i]]  # "" for unhashed kinds: never at /assets/
            if not ext or len(path) != dot + 12 + len(ext) or ord(path[dot + 11]) != 46:  # "."
                return NO_OBJECT
            if not path.endswith(ext):
                return NO_OBJECT
            # With the index canonical and the extension the kind's, ``path`` is the
            # object's path (``_path_of``) exactly when it carries the current hash:
            # compared here rather than building the path again.
            h = self._digest(i)
            for k in range(10):
                if ord(path[dot + 1 + k]) != ord(h[k]):
                    return NO_OBJECT
            return i
        if path.startswith("/page-") and path.endswith(".html"):
            i = _index_at(path, 6, len(path) - 5, n)
            want = _HTML
        elif path.startswith("/data/obj-") and path.endswith(".json"):
            i = _index_at(path, 10, len(path) - 5, n)
            want = _JSON
        elif path == INDEX_PAGE[0]:
            return INDEX_OBJECT
        elif path == NOT_FOUND_PAGE[0]:
            return NOT_FOUND_OBJECT
        else:
            return NO_OBJECT
        if i < 0 or self._kinds[i] != want:
            return NO_OBJECT
        return i

    def object_fields(self, i: int) -> tuple[int, int, str, float]:
        """(kind, size, content digest, Last-Modified) of what :meth:`find` answered
        ``i`` for (kind -1: a fixed page); the ETag is the quoted digest. The fields of
        :meth:`lookup`'s Entry, for a caller that builds its own record from them."""
        if i >= 0:
            return self._kinds[i], self._sizes[i], self._digest(i), self._times[self._version[i]]
        if i == INDEX_OBJECT:
            last = len(self._times) - 1
            return -1, INDEX_PAGE[1], self._hash(-1, last), self._times[last]
        return -1, NOT_FOUND_PAGE[1], self._hash(-2, 0), self._times[0]

    def exists(self, path: str) -> bool:
        """Whether decoded ``path`` is a file of this deploy (for shadowing); memoised,
        since the file set never changes (edges ask for every rule-matched request)."""
        memo = self._exists
        r = memo.get(path)
        if r is None:
            r = self.lookup(path) is not None
            if len(memo) >= _EXISTS_MEMO:
                memo.clear()  # cheaper than LRU bookkeeping
            memo[path] = r
        return r

    def body(self, e: Entry) -> bytes:
        """The body of ``e``: deterministic bytes of exactly ``e.size``."""
        return _body(e.path, e.etag, e.kind, e.size)

    def describe(self) -> dict[str, Any]:
        """The ``catalog`` object of the manifest (enough for :meth:`from_manifest`)."""
        d = self.spec.as_dict()
        d["history"] = [[s, f] for s, f in self.history]
        d["deploy_times"] = list(self._times)
        d["paths"] = {k: KINDS[k][1] for k in KINDS}
        return d


@lru_cache(maxsize=16)
def _layout(spec: CatalogSpec) -> tuple[bytes, array[int]]:
    """Kinds and sizes of the objects: a pure function of ``spec``, built once per
    process (the origin and every edge's file oracle rebuild the same catalog). The
    size array is shared and never written after this. The draws are those of
    ``random.Random(spec.seed)``, taken ahead in blocks (:class:`Uniforms`)."""
    rng = Uniforms(random.Random(spec.seed), ahead=True)
    names = [k for k, _ in spec.types]
    weights = [w for _, w in spec.types]
    total = sum(weights)
    cum: list[float] = []
    acc = 0.0
    for w in weights:
        acc += w / total
        cum.append(acc)
    kind_ids = [_KIND_NAMES.index(k) for k in names]
    by_kind = dict(spec.sizes)
    dists = [by_kind.get(k, spec.size) for k in names]
    kinds: list[int] = []
    sizes: list[int] = []
    last = len(cum) - 1
    for _ in range(spec.objects):
        r = rng.random()
        j = 0
        while j < last and r >= cum[j]:
            j += 1
        kinds.append(kind_ids[j])
        sizes.append(_rounded(dists[j].draw(rng)))  # drawn even when fixed: same kinds
    if spec.fixed_sizes:
        sizes = [min(max(0, s), MAX_SIZE) for s in spec.fixed_sizes]
    return bytes(kinds), array("Q", sizes)


def _rounded(x: float) -> int:
    """``max(0, round(x))`` (halves to even), without a generic call to ``round``."""
    if x <= 0.0:
        if x != x:  # NaN: as round would
            raise ValueError("cannot convert float NaN to integer")
        return 0
    n = int(x)  # raises OverflowError for inf, as round would
    d = x - n
    if d > 0.5 or (d == 0.5 and n & 1):
        n += 1
    return n


# Catalogs up to this many objects keep their listings (``_listing``): four of them
# hold about 0.4 GB at most.
_KEEP_LISTING_MAX: Final = 1_000_000


# The listings ``_listing`` keeps, by (spec, versions), the last used last.
_LISTED: dict[tuple[CatalogSpec, bytes], tuple[str, tuple[str, ...]]] = {}
_LISTED_MAX: Final = 4
_LISTED_LOCK = threading.Lock()


def _listing(
    spec: CatalogSpec, version: bytes, since: tuple[str, tuple[str, ...], list[int]] | None = None
) -> tuple[str, tuple[str, ...]]:
    """Every object's digest (``Catalog._hash(i, version[i])``, 16 hex digits each,
    concatenated by index) and URL path (:func:`_path_of`'s shapes, filled in place),
    for the deploy of ``spec`` whose versions are ``version`` (``array("I")`` bytes).
    A pure function of both, kept for the last few deploys listed of catalogs up to
    ``_KEEP_LISTING_MAX`` objects: every run of a topology in one process (``edgesim
    plan``, ``sweep``, ``bench``) lists the same catalogs, and their digests are most
    of a sampled run's set-up.

    ``since``: the listing of an earlier deploy of ``spec`` and the objects whose
    versions differ from it (``Catalog._since``); only those are listed again."""
    if spec.objects > _KEEP_LISTING_MAX:
        return _make_listing(spec, version, since)
    key = (spec, version)
    with _LISTED_LOCK:
        kept = _LISTED.pop(key, None)
        if kept is not None:
            _LISTED[key] = kept  # now the last used
            return kept
    made = _make_listing(spec, version, since)
    with _LISTED_LOCK:
        _LISTED[key] = made
        while len(_LISTED) > _LISTED_MAX:
            del _LISTED[next(iter(_LISTED))]  # the least recently used
    return made


def _make_listing(
    spec: CatalogSpec, version: bytes, since: tuple[str, tuple[str, ...], list[int]] | None = None
) -> tuple[str, tuple[str, ...]]:
    versions = array("I")
    versions.frombytes(version)
    if since is not None and len(since[2]) <= len(versions) // _RELIST_SHARE:
        return _relisting(spec, versions, *since)
    hexes = _bulk_digests(spec.seed, versions)  # all at once, natively
    if hexes is None:
        seed = spec.seed
        hexes = "".join([_object_hash(seed, i, versions[i]) for i in range(len(versions))])
    parts = _SHAPE_PARTS
    out = []
    for i, kind in enumerate(_layout(spec)[0]):
        before, between, after = parts[kind]
        if between is None:
            out.append(f"{before}{i}{after}")
        else:
            k = 16 * i
            out.append(f"{before}{i}{between}{hexes[k : k + 10]}{after}")
    return hexes, tuple(out)


# A redeploy that changed more than 1/_RELIST_SHARE of the objects is listed whole
# (the native digests of all beat hashlib's of that many).
_RELIST_SHARE: Final = 4


def _relisting(
    spec: CatalogSpec, versions: array[int], hexes: str, paths: tuple[str, ...], changed: list[int]
) -> tuple[str, tuple[str, ...]]:
    """``_make_listing`` of ``versions`` from the listing (``hexes``, ``paths``) of a
    deploy whose versions differ only at the indices ``changed`` (distinct): their
    digests and paths are made again, the others' are the earlier listing's."""
    seed = spec.seed
    kinds = _layout(spec)[0]
    out = list(paths)
    pieces = []
    at = 0
    for i in sorted(changed):
        h = _object_hash(seed, i, versions[i])
        pieces.append(hexes[16 * at : 16 * i])
        pieces.append(h)
        out[i] = _path_of(kinds[i], i, h)
        at = i + 1
    pieces.append(hexes[16 * at :])
    return "".join(pieces), tuple(out)


def _object_hash(seed: int, i: int, v: int) -> str:
    """The content digest of object ``i`` at version ``v`` (16 hex digits)."""
    return blake2b(b"%d:%d:%d" % (seed, i, v), digest_size=8).hexdigest()


_EXISTS_MEMO: Final = 65536
_INT64: Final = 1 << 63


def _bulk_digests(seed: int, version: array[int]) -> str | None:
    """``Catalog._hash(i, version[i])`` for every i, concatenated, from the native
    library's BLAKE2b (native/src/esr_digest.c: one call for all objects, about a third
    of a hashlib call each); None when the extension is not built or ``seed`` is not a
    64-bit integer (the caller then hashes each object with hashlib)."""
    if not -_INT64 <= seed < _INT64:
        return None
    try:
        from edgesim import _redirects_cffi as native
    except ImportError:
        return None
    n = len(version)
    if not n:
        return ""
    ffi = native.ffi
    out = ffi.new("char[]", 16 * n)
    if native.lib.esr_catalog_digests(seed, ffi.from_buffer("uint32_t[]", version), n, out) != 0:
        return None
    text: str = ffi.buffer(out)[:].decode("ascii")
    return text


def _path_of(kind: int, i: int, h: str) -> str:
    """URL path of object ``i`` of ``kind`` whose content hash is ``h`` (unused by
    kinds whose names carry no hash)."""
    before, between, after = _SHAPE_PARTS[kind]
    return f"{before}{i}{after}" if between is None else f"{before}{i}{between}{h[:10]}{after}"


_SPEC_KEYS: Final = ("objects", "seed", "size", "sizes", "types")


def _index_at(s: str, start: int, end: int, n: int) -> int:
    """The canonical decimal index ``s[start:end]`` (ASCII digits, no leading zero)
    if it is below ``n``, else -1. Read by character code, in place (compiled, this is
    a few instructions a digit; ``int`` of a slice costs a slice and a parse)."""
    if end <= start or (end - start > 1 and ord(s[start]) == 48):  # "0"
        return -1
    i = 0
    for k in range(start, end):
        d = ord(s[k]) - 48
        if d < 0 or d > 9:
            return -1
        i = i * 10 + d
        if i >= n:  # digits only add: stop before a long run makes a big number
            return -1
    return i


def _body(path: str, etag: str, kind: int, size: int) -> bytes:
    """Bodies up to 1 MiB of recently served objects stay cached (popular objects
    repeat); larger ones are built each time, so the cache stays small."""
    if size <= _CACHED_BODY:
        return _cached_body(path, etag, kind, size)
    return _make_body(path, etag, kind, size)


_CACHED_BODY: Final = 1 << 20


@lru_cache(maxsize=64)
def _cached_body(path: str, etag: str, kind: int, size: int) -> bytes:
    return _make_body(path, etag, kind, size)


def _make_body(path: str, etag: str, kind: int, size: int) -> bytes:
    if kind in _TEXT_KINDS or kind < 0:
        if kind < 0 or kind == _HTML:
            head = f"<!doctype html><!-- edgesim {path} {etag} -->\n".encode()
        elif kind == _JSON:
            head = f'{{"edgesim": "{path}", "etag": {etag}}}\n'.encode()
        else:
            head = f"/* edgesim {path} {etag} */\n".encode()
        fill = _FILL_TEXT
    else:
        head = etag.encode()
        fill = _FILL_BIN
    if size <= len(head):
        return head[:size]
    rest = size - len(head)
    return head + (fill * (rest // _BLOCK + 1))[:rest]
