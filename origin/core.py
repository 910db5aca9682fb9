"""The origin's sans-IO core: sites, deploys, rules and conditional responses.

Theory of operation
-------------------
:class:`OriginCore` holds sites by name. ``handle(req, now)`` picks the site from the
request's Host (the folder name; a site called ``default`` catches unknown hosts), reads
that site's *current deploy* once, and answers from it alone. ``now`` is wall-clock or
virtual Unix seconds supplied by the caller; this module never reads a clock, never
imports trio or sockets, and takes randomness only as a ``random.Random`` argument. The
Trio shell (``origin.server``) and the capacity engine drive the same object.

A deploy (:class:`Deploy`) is an immutable snapshot: for a folder of real files, every
file read into memory at deploy time (:class:`FileInfo`: strong ETag from SHA-256,
size, content type, Last-Modified, precomputed response headers, body); for a synthetic
site, a :class:`~origin._catalog.Catalog` that builds entries and bodies on demand.
Rules (`_redirects`, then `netlify.toml`) are compiled once per deploy with
``RuleSet.from_site``. Publishing a deploy builds the whole snapshot first and then
rebinds one reference (``Site.deploy``), so a request sees either the old deploy or the
new one, never a mix. Building may read the disk (:meth:`OriginCore.prepare_deploy`);
publishing (:meth:`OriginCore.publish`) never does, so a shell can build in a worker
thread and publish on its event loop.

Per request: reserved paths under ``/.edgesim/`` first (never subject to rules), then
methods (GET/HEAD only, else 405), then ``edgesim.redirects.resolve`` with the deploy's
file set for shadowing and pretty URLs, then the answer: file, rewrite (target file with
the rule's status), redirect, not found (the site's ``/404.html``), or 502 for proxy and
function targets, which the origin does not fetch. 200 answers honour If-None-Match
(weak comparison, RFC 9110 §13.1.2) and, without it, If-Modified-Since (§13.1.3) with 304.

Invariants:

* Every response for a known site carries ``X-Edgesim-Deploy: <deploy id>``.
* Every file response carries a strong ETag, Last-Modified and Cache-Control.
* The hot path allocates one header list and one :class:`Response`; nothing is
  validated there (inputs are validated when a deploy is built).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import stat
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Final

from edgesim._jsontext import dumps_indented
from edgesim._reqfields import resolution_fields, visitor_fields
from edgesim.errors import RuleFileError
from edgesim.http import FrozenHeaders, Headers, Request, Response, joined
from edgesim.redirects import DEFAULT_ROLE_CLAIM, Resolution, RuleSet
from origin._catalog import DEFAULT_NEW_FRACTION, NO_OBJECT, Catalog, kind_content_type, kind_path_start
from origin._config import (
    CONFIG_NAME,
    NO_STORE,
    CatalogSpec,
    Distribution,
    SiteConfig,
    SiteConfigError,
    parse_config,
)

__all__ = [
    "DEFAULT_SITE",
    "DEPLOY_HEADER",
    "RESERVED_FILES",
    "RESERVED_PREFIX",
    "Catalog",
    "CatalogSpec",
    "Deploy",
    "FileInfo",
    "LoadStats",
    "OriginCore",
    "PreparedDeploy",
    "SiteConfig",
    "SiteConfigError",
    "parse_config",
]

# Response header naming the deploy a response came from (the edge keys purges on it).
DEPLOY_HEADER: Final = "x-edgesim-deploy"
# Set by an edge on the request for a rewrite's target (edgesim/node.py).
REWRITE_HEADER: Final = "x-edgesim-rewrite"
# Request header carrying the visitor's country for Country= rule conditions.
COUNTRY_HEADER: Final = "x-country"
# Folder name of the site that answers hosts without a folder of their own.
DEFAULT_SITE: Final = "default"
# Paths the origin answers itself, for every site, before any rule.
RESERVED_PREFIX: Final = "/.edgesim/"
# Files of a site folder that configure it and are never served.
RESERVED_FILES: Final = frozenset({"_redirects", "netlify.toml", CONFIG_NAME})
# Hex digits of SHA-256 kept in ETags (64 bits: collisions within one site are
# vanishingly unlikely) and in deploy ids (32 bits, next to a unique counter).
_ETAG_HEX: Final = 16
_DEPLOY_HEX: Final = 8

_ALLOW_CONTENT: Final = "GET, HEAD"
# Synthetic files built on demand are kept per deploy up to this many (the working set
# of a Zipf workload fits; the memory stays bounded at a few MB).
_RECENT_FILES: Final = 16384
# Resolutions memoised per deploy (Deploy.resolve), then the memo starts over.
_RESOLVED_MEMO: Final = 65536
# Builds a Resolution from its fields without NamedTuple.__new__'s Python frame.
_new_resolution = tuple.__new__
# What Deploy's memo of shared answers holds for a URL whose answer depends on the
# visitor (built at run time: a distinct object, compared by identity).
_BY_VISITOR: Final[tuple[Any, ...]] = tuple(["answered per visitor"])
_TEXT: Final = "text/plain; charset=utf-8"
_JSON: Final = "application/json"

# Content types by extension: a fixed table, not `mimetypes`, whose answers depend on
# the host's /etc/mime.types (the same deploy must give the same headers everywhere).
CONTENT_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".htm": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "application/javascript; charset=utf-8",
    ".mjs": "application/javascript; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".webmanifest": "application/manifest+json",
    ".xml": "application/xml",
    ".txt": "text/plain; charset=utf-8",
    ".md": "text/markdown; charset=utf-8",
    ".csv": "text/csv; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".avif": "image/avif",
    ".ico": "image/x-icon",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".ttf": "font/ttf",
    ".otf": "font/otf",
    ".eot": "application/vnd.ms-fontobject",
    ".mp4": "video/mp4",
    ".webm": "video/webm",
    ".mp3": "audio/mpeg",
    ".wav": "audio/wav",
    ".pdf": "application/pdf",
    ".zip": "application/zip",
    ".gz": "application/gzip",
    ".wasm": "application/wasm",
}
DEFAULT_CONTENT_TYPE: Final = "application/octet-stream"


def content_type_of(path: str) -> str:
    """Content type for a file path, from its extension."""
    dot = path.rfind(".")
    if dot < 0 or dot < path.rfind("/"):
        return DEFAULT_CONTENT_TYPE
    return CONTENT_TYPES.get(path[dot:].lower(), DEFAULT_CONTENT_TYPE)


_DAYS: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS: Final = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH_NUM: Final = {m: i + 1 for i, m in enumerate(_MONTHS)}
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
# The three date forms a recipient must accept (RFC 9110 §5.6.7): IMF-fixdate,
# obsolete RFC 850 and asctime. (Not email.utils: it imports socket, and the core
# must not.)
_IMF: Final = re.compile(r"[A-Za-z]{3}, (\d\d) ([A-Za-z]{3}) (\d{4}) (\d\d):(\d\d):(\d\d) GMT")
_RFC850: Final = re.compile(r"[A-Za-z]{6,9}, (\d\d)-([A-Za-z]{3})-(\d\d) (\d\d):(\d\d):(\d\d) GMT")
_ASCTIME: Final = re.compile(r"[A-Za-z]{3} ([A-Za-z]{3}) ([ \d]\d) (\d\d):(\d\d):(\d\d) (\d{4})")


_TWO_DIGITS: Final = tuple(f"{i:02d}" for i in range(60))


def http_date(t: float) -> str:
    """IMF-fixdate (RFC 9110 §5.6.7) of Unix time ``t`` (whole seconds)."""
    # Memoised: a synthetic site's files share a handful of Last-Modified times (one
    # per deploy), and every file an origin builds on demand needs its date.
    whole = int(t)
    text = _HTTP_DATES.get(whole)
    if text is None:
        text = _imf_fixdate(whole)
        if len(_HTTP_DATES) >= _HTTP_DATES_MEMO:
            _HTTP_DATES.clear()  # cheaper than LRU bookkeeping
        _HTTP_DATES[whole] = text
    return text


_HTTP_DATES: Final[dict[int, str]] = {}
_HTTP_DATES_MEMO: Final = 4096


def _imf_fixdate(t: int) -> str:
    day, sec = divmod(t, 86400)
    hour, sec = divmod(sec, 3600)
    minute, sec = divmod(sec, 60)
    two = _TWO_DIGITS
    return f"{_date_of_day(day)} {two[hour]}:{two[minute]}:{two[sec]} GMT"


@lru_cache(maxsize=256)
def _date_of_day(day: int) -> str:
    """``Sat, 28 Nov 2026``: the date part of :func:`http_date` for days since 1970."""
    d = _EPOCH + timedelta(days=day)
    return f"{_DAYS[d.weekday()]}, {d.day:02d} {_MONTHS[d.month - 1]} {d.year:04d}"


def parse_http_date(value: str) -> float | None:
    """Unix time of an HTTP date in any of the three forms, or None if invalid."""
    value = value.strip()
    m = _IMF.fullmatch(value)
    if m is not None:
        day, mon, year, hh, mm, ss = m.groups()
    elif (m := _RFC850.fullmatch(value)) is not None:
        day, mon, yy, hh, mm, ss = m.groups()
        year = str(2000 + int(yy) if int(yy) < 70 else 1900 + int(yy))
    elif (m := _ASCTIME.fullmatch(value)) is not None:
        mon, day, hh, mm, ss, year = m.groups()
    else:
        return None
    month = _MONTH_NUM.get(mon.capitalize())
    if month is None:
        return None
    try:
        d = datetime(int(year), month, int(day), int(hh), int(mm), int(ss), tzinfo=UTC)
    except ValueError:
        return None
    return (d - _EPOCH).total_seconds()


class FileInfo:
    """One file of a deploy (plain slots; built once per deploy, or per request for
    synthetic sites).

    Attributes:
        path: decoded site path (``/about/index.html``).
        etag: strong entity tag, quoted (``"3f9c..."``).
        size: body length in bytes.
        content_type: the Content-Type value.
        last_modified: Unix seconds (whole).
        cache_control: the Cache-Control value of a 2xx answer serving this file.
        body: the bytes, or None (metadata-only deploys, synthetic sites).
        headers: content-type, etag, last-modified, cache-control, deploy id: the
            headers every answer with this file's body starts from (a tuple: it is
            never changed, and unlike a list, Python's cyclic garbage collector stops
            scanning it once it has seen it hold only strings; an origin keeps tens of
            thousands of these). The constructor builds them unless given (the same
            fields, in this order: a synthetic deploy shares the pairs its files have
            in common).
    """

    __slots__ = ("body", "cache_control", "content_type", "etag", "headers", "last_modified", "path", "size")

    def __init__(
        self,
        path: str,
        etag: str,
        size: int,
        content_type: str,
        last_modified: float,
        cache_control: str,
        body: bytes | None,
        deploy_id: str,
        headers: FrozenHeaders | None = None,
    ) -> None:
        self.path = path
        self.etag = etag
        self.size = size
        self.content_type = content_type
        self.last_modified = last_modified
        self.cache_control = cache_control
        self.body = body
        self.headers: FrozenHeaders = (
            headers
            if headers is not None
            else (
                ("content-type", content_type),
                ("etag", etag),
                ("last-modified", http_date(last_modified)),
                ("cache-control", cache_control),
                (DEPLOY_HEADER, deploy_id),
            )
        )

    def __repr__(self) -> str:
        return f"FileInfo({self.path!r}, {self.etag}, {self.size} bytes)"


# LoadStats fields, sorted (the compiled class has no __slots__ attribute to read).
_LOAD_FIELDS: Final = (
    "in_flight",
    "max_queued",
    "queue_wait",
    "queued",
    "rejected",
    "served",
    "total_queued",
)


class LoadStats:
    """Modelled-load counters, written by the shell (or engine) and reported by the
    health endpoint. ``served`` is counted by :meth:`OriginCore.handle`.

    Attributes:
        in_flight: requests being handled (service time included).
        queued: requests waiting for a concurrency slot now.
        max_queued: the largest ``queued`` seen.
        total_queued: requests that had to wait at all.
        queue_wait: total seconds spent waiting.
        rejected: requests refused because the queue was full.
        served: responses produced.
    """

    __slots__ = _LOAD_FIELDS

    def __init__(self) -> None:
        self.in_flight = 0
        self.queued = 0
        self.max_queued = 0
        self.total_queued = 0
        self.queue_wait = 0.0
        self.rejected = 0
        self.served = 0

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in _LOAD_FIELDS}


class PreparedDeploy:
    """A deploy built but not yet published (no id yet); see :meth:`OriginCore.publish`."""

    __slots__ = (
        "catalog",
        "config",
        "content_hash",
        "diagnostics",
        "files",
        "folder",
        "rule_texts",
        "rules",
        "site",
    )

    def __init__(
        self,
        site: str,
        folder: Path | None,
        config: SiteConfig,
        rules: RuleSet | None,
        rule_texts: dict[str, str | None],
        diagnostics: list[str],
        files: dict[str, tuple[str, int, float, bytes | None]] | None,
        catalog: Catalog | None,
        content_hash: str,
    ) -> None:
        self.site = site
        self.folder = folder
        self.config = config
        self.rules = rules
        self.rule_texts = rule_texts
        self.diagnostics = diagnostics
        self.files = files
        self.catalog = catalog
        self.content_hash = content_hash


class Deploy:
    """One published, immutable deploy of a site.

    Attributes:
        site: the site's name.
        id: the deploy id (``d<counter>-<content hash>``), unique within the core.
        created: when it was published (the ``now`` of :meth:`OriginCore.publish`).
        previous: the id of the deploy it replaced, or None.
        config: the site's parsed ``_edgesim.toml``.
        rules: the compiled rules, or None when the site has none.
        files: path -> :class:`FileInfo` (folder sites), or None (synthetic sites).
        catalog: the synthetic catalog, or None (folder sites).
        exists: whether a decoded path is a file of this deploy (for shadowing).
    """

    __slots__ = (
        "_dates",
        "_deploy_header",
        "_everyone",
        "_kinds",
        "_manifest",
        "_not_found",
        "_plain",
        "_recent",
        "_resolved",
        "catalog",
        "config",
        "created",
        "diagnostics",
        "files",
        "folder",
        "id",
        "previous",
        "rule_texts",
        "rules",
        "site",
    )

    def __init__(
        self, prepared: PreparedDeploy, deploy_id: str, created: float, previous: str | None
    ) -> None:
        self.site = prepared.site
        self.previous = previous
        self.folder = prepared.folder
        self.id = deploy_id
        self.created = created
        self.config = prepared.config
        self.rules = prepared.rules
        self.rule_texts = prepared.rule_texts
        self.diagnostics = prepared.diagnostics
        self.catalog = prepared.catalog
        self._manifest: bytes | None = None
        self.files: dict[str, FileInfo] | None
        if prepared.files is not None:
            policy = self.config.cache
            self.files = {
                p: FileInfo(
                    p, etag, size, ct := content_type_of(p), mtime, policy.for_file(p, ct), body, deploy_id
                )
                for p, (etag, size, mtime, body) in prepared.files.items()
            }
        else:
            assert prepared.catalog is not None
            self.files = None
        # synthetic files by path, None for paths that name none (pretty-URL candidates
        # such as /page-3.html.html are asked for on every request)
        self._recent: dict[str, FileInfo | None] = {}
        self._not_found: str | None = None  # see _not_found_page
        # resolutions (see :meth:`resolve`): a visitor's own, every visitor's, and
        # those without rules
        self._resolved: dict[tuple[str | bool | None, ...], tuple[Any, ...]] = {}
        self._everyone: dict[str, tuple[Any, ...]] = {}
        self._plain: dict[str, tuple[Any, ...]] = {}
        # What a synthetic file's headers share (see :meth:`file`): by catalog kind, its
        # content type and Cache-Control with their header pairs, and whether a path
        # override may apply; the Last-Modified pair by time; the deploy's pair. (The
        # pairs are typed Any: compiled, a tuple[str, str] is kept unboxed and boxed
        # again, a new tuple, wherever it is put in the headers.)
        self._kinds: dict[int, tuple[str, str, Any, Any, bool]] = {}
        self._dates: dict[float, Any] = {}
        self._deploy_header: Any = (DEPLOY_HEADER, deploy_id)

    def resolve(self, url: str, req: Request, now: float, *, rules: bool = True) -> Resolution:
        """``edgesim.redirects.resolve`` of ``url`` (for ``req``'s visitor, and with this
        deploy's rules unless ``rules`` is false) against this deploy's files.

        Memoised (a deploy never changes): by URL alone when no visitor condition
        decided the answer (``RuleSet.match_scoped``), or without rules; else per (URL,
        visitor), the visitor being what a rule set's own memo is keyed by
        (``edgesim.redirects.visitor_fields``). A request whose roles depend on the time
        (an ``nf_jwt`` cookie) is then resolved every time.

        Raises:
            ValueError: ``url`` is not a URL or path the matcher accepts.
        """
        return _new_resolution(Resolution, self.resolve_fields(url, req, now, rules))

    def resolve_fields(self, url: str, req: Request, now: float, rules: bool) -> tuple[Any, ...]:
        """:meth:`resolve`'s answer as the plain tuple of its fields (action, status,
        target, match): what :meth:`OriginCore.handle` reads, without building the
        NamedTuple."""
        ruleset = self.rules if rules else None
        if ruleset is None:
            fields_of = self._plain.get(url)
            if fields_of is None:
                fields_of = self._fields(url, None)
                _keep(self._plain, url, fields_of)
            return fields_of
        everyone = self._everyone
        fields_of = everyone.get(url)
        if fields_of is None:
            # A URL met for the first time is matched without the visitor's context
            # first: the native matcher reports whether it reached a rule with visitor
            # conditions (``own``), and until it does, the rules it tries answer alike
            # for every context (the context is read by conditions only). When it does
            # not, that answer is every visitor's, found without deriving this one's
            # native context (most URLs, and the conditions a site has are rare).
            m, own = ruleset.match_scoped(url, None, None, None, None, None, None)
            if not own:
                # Kept as a plain tuple: Python's cyclic GC stops scanning a plain tuple
                # of plain values (most answers have no Match), but never a NamedTuple.
                fields_of = self._fields(url, m)
                _keep(everyone, url, fields_of)
                return fields_of
            _keep(everyone, url, _BY_VISITOR)  # later requests go straight to their own
            if not _has_visitor(req):  # the empty context is this request's own
                fields_of = self._fields(url, m)
                _keep(self._resolved, (url, False, None, None, None), fields_of)
                return fields_of
        elif fields_of is not _BY_VISITOR:
            return fields_of
        # the answer depends on the visitor
        visitor = _has_visitor(req)
        fields = visitor_fields(req.headers) if visitor else (None, None)
        country = req.header(COUNTRY_HEADER) if visitor else None
        key = None if fields is None else (url, visitor, country, fields[0], fields[1])
        if key is not None:
            fields_of = self._resolved.get(key)
            if fields_of is not None:
                return fields_of
        m, own = (
            ruleset.match_scoped(url, country, None, None, req.headers, now, fields)
            if visitor
            else ruleset.match_scoped(url, None, None, None, None, None, None)  # no native context
        )
        fields_of = self._fields(url, m)
        if not own:
            _keep(everyone, url, fields_of)
        elif key is not None:
            _keep(self._resolved, key, fields_of)
        return fields_of

    def _fields(self, url: str, m: Any) -> tuple[Any, ...]:
        """The resolution fields of ``url`` given its rule answer ``m`` (a Match or
        None): shadowing by this deploy's files, pretty URLs and the 404 page applied."""
        return resolution_fields(None, url, self.exists, m, {}, self._not_found_page())

    def _not_found_page(self) -> str:
        """What a resolution's ``not_found`` answers name: ``/404.html`` when this
        deploy has it, else "" (found once: resolving asks for every request)."""
        page = self._not_found
        if page is None:
            page = self._not_found = "/404.html" if self.exists("/404.html") else ""
        return page

    def file(self, path: str) -> FileInfo | None:
        """The file at decoded ``path``, or None."""
        if self.files is not None:
            return self.files.get(path)
        recent = self._recent
        if path in recent:
            return recent[path]
        cat = self.catalog
        assert cat is not None
        i = cat.find(path)
        f = None
        if i != NO_OBJECT:
            # The catalog's fields, not its Entry; the headers from pairs shared by the
            # files of a kind, a time and the deploy (only the ETag is the file's own).
            kind, size, digest, last_modified = cat.object_fields(i)
            of_kind = self._kinds.get(kind)
            if of_kind is None:
                of_kind = self._kinds[kind] = self._kind_fields(kind, path)
            ct, cc, ct_header, cc_header, may_override = of_kind
            if may_override:  # ``policy.for_file(path, ct)``: the path overrides first
                override = self.config.cache.path_override(path)
                if override is not None:
                    cc = override
                    cc_header = ("cache-control", override)
            date_header = self._dates.get(last_modified)
            if date_header is None:
                date_header = ("last-modified", http_date(last_modified))
                self._dates[last_modified] = date_header
            etag = f'"{digest}"'
            headers: FrozenHeaders = (ct_header, ("etag", etag), date_header, cc_header, self._deploy_header)
            f = FileInfo(path, etag, size, ct, last_modified, cc, None, self.id, headers)
        if len(recent) >= _RECENT_FILES:
            recent.clear()  # cheaper than LRU bookkeeping; popular files return fast
        recent[path] = f
        return f

    def _kind_fields(self, kind: int, path: str) -> tuple[str, str, Any, Any, bool]:
        """What the synthetic files of catalog ``kind`` share (``path`` is one of them):
        content type, Cache-Control (``policy.by_type``, which depends on the path only
        through its kind: all paths of a kind have one shape, hashed or not), their
        header pairs, and whether a path override may apply to any of them (else the
        override is not tried file by file)."""
        policy = self.config.cache
        ct = kind_content_type(kind)
        cc = policy.by_type(path, ct)
        may_override = bool(policy.paths) and policy.may_override(kind_path_start(kind))
        ct_header: Any = ("content-type", ct)
        cc_header: Any = ("cache-control", cc)
        return ct, cc, ct_header, cc_header, may_override

    def exists(self, path: str) -> bool:
        """Does ``path`` name a file of this deploy? (A method, not a bound method kept
        in an attribute: that would make every deploy a reference cycle, freed only by
        the cyclic collector.)"""
        files = self.files
        return path in files if files is not None else self.file(path) is not None

    def body(self, f: FileInfo) -> bytes:
        """The body of ``f`` (generated for synthetic sites)."""
        if f.body is not None:
            return f.body
        cat = self.catalog
        if cat is not None:
            e = cat.lookup(f.path)
            if e is not None:
                return cat.body(e)
        return b""

    def manifest(self) -> bytes:
        """The JSON manifest (built once per deploy)."""
        if self._manifest is None:
            doc: dict[str, Any] = {
                "site": self.site,
                "deploy_id": self.id,
                "created": self.created,
                "kind": "synthetic" if self.catalog is not None else "files",
                "rules": self.rule_texts,
                "diagnostics": self.diagnostics,
                "files": {p: f.etag for p, f in self.files.items()} if self.files is not None else None,
            }
            doc["catalog"] = self.catalog.describe() if self.catalog is not None else None
            doc["cache"] = self.config.cache.as_dict()
            # (json.dumps(doc, indent=1)'s text: its catalog lists every deploy so far)
            self._manifest = (dumps_indented(doc, 1, ensure_ascii=False) + "\n").encode()
        return self._manifest


class Site:
    """A named site: where it comes from and its current deploy."""

    __slots__ = ("deploy", "folder", "name")

    def __init__(self, name: str, folder: Path | None, deploy: Deploy) -> None:
        self.name = name
        self.folder = folder
        self.deploy = deploy


# --------------------------------------------------------------------------
# Building deploys
# --------------------------------------------------------------------------


# A site's _edgesim.toml or rule file larger than this is not one (a 10,000-rule
# _redirects is about half a MiB)
MAX_SITE_TEXT: Final = 64 << 20


def _read_text(p: Path) -> str | None:
    try:
        st = os.stat(p)
        if not stat.S_ISREG(st.st_mode):  # a FIFO would never end, /dev/zero never stop
            raise SiteConfigError(f"{p}: not a regular file (a FIFO or device)")
        if st.st_size > MAX_SITE_TEXT:
            raise SiteConfigError(f"{p}: {st.st_size:,} bytes, more than the {MAX_SITE_TEXT:,} read")
        return p.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None
    except OSError as e:
        raise SiteConfigError(f"{p}: cannot read: {e.strerror or e}") from None


# The most files a site folder may hold (each is read and hashed when it is loaded)
MAX_SITE_FILES: Final = 1_000_000


def _scan(root: Path, bodies: bool) -> dict[str, tuple[str, int, float, bytes | None]]:
    """Every file under ``root`` except the reserved ones at its top, sorted by path."""
    out: dict[str, tuple[str, int, float, bytes | None]] = {}
    try:
        top = os.stat(root)
    except OSError as e:
        raise SiteConfigError(f"{root}: cannot list: {e.strerror or e}") from None
    # each folder with the (device, inode) of the folders above it: links are followed,
    # and one that leads back up is a loop, not an endless tree
    stack: list[tuple[Path, str, frozenset[tuple[int, int]]]] = [
        (root, "", frozenset([(top.st_dev, top.st_ino)]))
    ]
    found: list[tuple[str, Path]] = []
    while stack:
        d, prefix, above = stack.pop()
        try:
            entries = list(os.scandir(d))
        except OSError as e:
            raise SiteConfigError(f"{d}: cannot list: {e.strerror or e}") from None
        for ent in entries:
            rel = f"{prefix}/{ent.name}"
            try:
                is_dir = ent.is_dir()  # follows symlinks
                st = ent.stat() if is_dir else None
                here = (st.st_dev, st.st_ino) if st is not None else (0, 0)
                is_file = not is_dir and ent.is_file()
            except OSError as e:  # a link to itself, say
                raise SiteConfigError(f"{ent.path}: {e.strerror or e}") from None
            if is_dir:
                if here in above:
                    raise SiteConfigError(f"{ent.path}: a link loop (it leads back to a folder above it)")
                stack.append((Path(ent.path), rel, above | {here}))
            elif is_file and not (not prefix and ent.name in RESERVED_FILES):
                try:
                    rel.encode("utf-8")
                except UnicodeEncodeError:  # undecodable bytes, kept as surrogates
                    shown = os.fsencode(ent.path).decode("utf-8", "replace")
                    raise SiteConfigError(
                        f"{shown}: a file name that is not UTF-8 (URLs are): rename it"
                    ) from None
                found.append((rel, Path(ent.path)))
                if len(found) > MAX_SITE_FILES:
                    raise SiteConfigError(f"{root}: more than {MAX_SITE_FILES:,} files")
    for rel, p in sorted(found):
        if rel.startswith(RESERVED_PREFIX):
            continue  # shadowed by the reserved endpoints: never reachable
        try:
            data = p.read_bytes()
            mtime = float(int(p.stat().st_mtime))
        except OSError as e:
            raise SiteConfigError(f"{p}: cannot read: {e.strerror or e}") from None
        etag = '"' + hashlib.sha256(data).hexdigest()[:_ETAG_HEX] + '"'
        out[rel] = (etag, len(data), mtime, data if bodies else None)
    return out


def _content_hash(
    files: Mapping[str, tuple[str, int, float, bytes | None]] | None,
    rule_texts: Mapping[str, str | None],
    config: SiteConfig,
    catalog: Catalog | None,
) -> str:
    h = hashlib.sha256()
    for name, text in rule_texts.items():
        h.update(f"{name}\0{text}\0".encode("utf-8", "surrogateescape"))
    h.update(f"{config.text}\0".encode("utf-8", "surrogateescape"))
    if files is not None:
        for p, (etag, *_) in files.items():
            h.update(f"{p}\0{etag}\n".encode("utf-8", "surrogateescape"))
    if catalog is not None:
        h.update(json.dumps(catalog.describe(), sort_keys=True).encode())
    return h.hexdigest()


def _compile_rules(
    folder: Path | None, texts: Mapping[str, str | None], secret: str | None
) -> tuple[RuleSet | None, list[str]]:
    if folder is None or all(t is None for t in texts.values()):
        return None, []
    try:
        rules = RuleSet.from_site(folder, jwt_secret=secret)
    except RuleFileError as e:
        raise SiteConfigError(str(e)) from None
    diags = [str(d).replace(str(folder) + os.sep, "", 1) for d in rules.diagnostics]
    return (rules if len(rules) else None), diags


def _compile_texts(texts: Mapping[str, str | None], secret: str | None) -> tuple[RuleSet | None, list[str]]:
    """Compile rule texts given in memory (``_redirects``, then ``netlify.toml``)."""
    from edgesim._rulefiles import redirects_source, toml_source

    sources = [
        (toml_source if fname.endswith(".toml") else redirects_source)(fname, text.encode())
        for fname, text in texts.items()
        if text is not None
    ]
    if not sources:
        return None, []
    rules = RuleSet._from_sources(sources, secret, DEFAULT_ROLE_CLAIM, False, 0, 0)
    return (rules if len(rules) else None), [str(d) for d in rules.diagnostics]


def _keep(memo: dict[Any, tuple[Any, ...]], key: Any, fields_of: tuple[Any, ...]) -> None:
    """Keep a resolution in one of ``Deploy``'s memos, each at most ``_RESOLVED_MEMO``
    long (then it starts over: cheaper than LRU bookkeeping)."""
    if len(memo) >= _RESOLVED_MEMO:
        memo.clear()
    memo[key] = fields_of


def _has_visitor(req: Request) -> bool:
    """Whether the request carries a visitor context for rule conditions (Cookie,
    Accept-Language or X-Country): without them the matcher's empty context is the same."""
    return any(k == "cookie" or k == "accept-language" or k == COUNTRY_HEADER for k, _ in req.headers)


# --------------------------------------------------------------------------
# The core
# --------------------------------------------------------------------------


class OriginCore:
    """All sites of one origin, and the request handler.

    Create it with :meth:`from_directory` (one folder per site) or empty, then add
    sites with :meth:`add_folder` / :meth:`add_synthetic`.

    Args:
        bodies: False gives metadata-only content responses (``body=None`` and
            ``size``) and keeps no file bodies in memory: for the simulator.

    Attributes:
        sites: name -> :class:`Site` (its ``deploy`` is the current :class:`Deploy`).
        stats: the :class:`LoadStats` the health endpoint reports.
        sites_dir: the folder of site folders, when loaded with :meth:`from_directory`.
    """

    def __init__(self, *, bodies: bool = True) -> None:
        self.bodies = bodies
        self.sites: dict[str, Site] = {}
        self.stats = LoadStats()
        self.sites_dir: Path | None = None
        self._counter = 0
        self._date_sec = -1
        self._date = ""

    # ---- construction -------------------------------------------------------

    @classmethod
    def from_directory(
        cls, sites_dir: str | os.PathLike[str], *, now: float, bodies: bool = True
    ) -> OriginCore:
        """Load every sub-folder of ``sites_dir`` as a site (sorted by name).

        Raises:
            SiteConfigError: ``sites_dir`` is not a directory, or a site is invalid
                (the message names the file and key).
        """
        root = Path(sites_dir)
        if not root.is_dir():
            raise SiteConfigError(f"{sites_dir}: not a directory")
        core = cls(bodies=bodies)
        core.sites_dir = root
        for d in sorted(root.iterdir()):
            if d.is_dir() and not d.name.startswith("."):
                core.add_folder(d, now=now)
        return core

    def add_folder(self, folder: str | os.PathLike[str], *, now: float, name: str | None = None) -> Deploy:
        """Load a site folder (name: the folder's name, lower-cased) and publish it."""
        p = Path(folder)
        site = (name or p.name).lower()
        return self.publish(self.prepare_deploy(site, folder=p), now)

    def add_synthetic(
        self,
        name: str,
        config: SiteConfig | str,
        *,
        now: float,
        rules: Mapping[str, str] | None = None,
    ) -> Deploy:
        """Add a synthetic site from a parsed config or ``_edgesim.toml`` text (no
        folder). The config must have a ``[catalog]`` table.

        Args:
            rules: optional rule texts by file name (``_redirects``, ``netlify.toml``),
                compiled as a folder's would be (the capacity engine's synthetic sites).
        """
        cfg = parse_config(config, f"{name}/{CONFIG_NAME}") if isinstance(config, str) else config
        if cfg.catalog is None:
            raise SiteConfigError(f"{name}: a synthetic site needs a [catalog] table")
        cat = Catalog(cfg.catalog, created=now)
        texts: dict[str, str | None] = {"_redirects": None, "netlify.toml": None}
        compiled: RuleSet | None = None
        diags: list[str] = []
        if rules:
            for fname, text in rules.items():
                if fname not in texts:
                    expected = ", ".join(texts)
                    raise SiteConfigError(f"{name}: unknown rule file {fname!r} (expected {expected})")
                texts[fname] = text
            compiled, diags = _compile_texts(texts, cfg.jwt_secret)
        prepared = PreparedDeploy(
            name.lower(), None, cfg, compiled, texts, diags, None, cat, _content_hash(None, texts, cfg, cat)
        )
        return self.publish(prepared, now)

    # ---- deploys ------------------------------------------------------------

    def prepare_deploy(
        self,
        site: str,
        *,
        folder: Path | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> PreparedDeploy:
        """Build the next deploy of ``site`` without publishing it. May read the disk
        and compile rules (a shell can run it in a worker thread); changes nothing.

        Args:
            site: the site name.
            folder: where the site lives (default: the folder of the current deploy,
                else ``<sites_dir>/<site>``); None with an in-memory synthetic site.
            options: for synthetic sites, ``seed`` (int) and ``new_fraction``
                (0..1, default 0.1): which objects change.

        Raises:
            SiteConfigError: the folder or its config is invalid, or bad options.
        """
        current = self.sites.get(site)
        if folder is None:
            if current is not None:
                folder = current.folder
            elif self.sites_dir is not None:
                folder = self.sites_dir / site
        opts = dict(options or {})
        unknown = set(opts) - {"seed", "new_fraction"}
        if unknown:
            raise SiteConfigError(
                f"deploy options: unknown keys {sorted(unknown)} (expected seed, new_fraction)"
            )
        if folder is None:  # in-memory synthetic site: only the catalog moves
            if current is None or current.deploy.catalog is None:
                raise SiteConfigError(f"{site}: no folder to deploy from")
            cfg = current.deploy.config
            texts = current.deploy.rule_texts
            rules, diags = current.deploy.rules, current.deploy.diagnostics
            files = None
        else:
            if not folder.is_dir():
                raise SiteConfigError(f"{folder}: not a directory")
            cfg = parse_config(_read_text(folder / CONFIG_NAME), str(folder / CONFIG_NAME))
            texts = {n: _read_text(folder / n) for n in ("_redirects", "netlify.toml")}
            rules, diags = _compile_rules(folder, texts, cfg.jwt_secret)
            files = _scan(folder, self.bodies)
        cat: Catalog | None = None
        if cfg.catalog is not None:
            if files:
                raise SiteConfigError(
                    f"{folder}: a synthetic site ([catalog] in {CONFIG_NAME}) cannot also have files"
                    f" (found {next(iter(files))})"
                )
            files = None
            prev = current.deploy.catalog if current is not None else None
            if prev is not None and prev.spec == cfg.catalog:
                seed = opts.get("seed", len(prev.history) + 1)
                frac = opts.get("new_fraction", DEFAULT_NEW_FRACTION)
                if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
                    raise SiteConfigError(f"deploy options: seed: expected an integer >= 0, got {seed!r}")
                if isinstance(frac, bool) or not isinstance(frac, int | float) or not 0 <= frac <= 1:
                    raise SiteConfigError(
                        f"deploy options: new_fraction: expected a number in [0, 1], got {frac!r}"
                    )
                cat = prev.redeploy(seed, float(frac), now=0.0)
            else:
                cat = Catalog(cfg.catalog)
        elif files is None:
            files = {}
        return PreparedDeploy(
            site, folder, cfg, rules, texts, diags, files, cat, _content_hash(files, texts, cfg, cat)
        )

    def publish(self, prepared: PreparedDeploy, now: float) -> Deploy:
        """Make ``prepared`` the current deploy of its site (one reference swap).

        Returns:
            The new deploy; its id is ``d<counter>-<8 hex of the content hash>``.
        """
        self._counter += 1
        deploy_id = f"d{self._counter}-{prepared.content_hash[:_DEPLOY_HEX]}"
        if prepared.catalog is not None:
            prepared.catalog = prepared.catalog.stamped(now)
        site = self.sites.get(prepared.site)
        deploy = Deploy(prepared, deploy_id, now, site.deploy.id if site is not None else None)
        if site is None:
            self.sites[prepared.site] = Site(prepared.site, prepared.folder, deploy)
        else:
            site.folder = prepared.folder
            site.deploy = deploy  # the atomic swap
        return deploy

    # ---- lookups --------------------------------------------------------------

    def site_for(self, host: str) -> Site | None:
        """The site answering ``host`` (its own folder, else ``default``)."""
        s = self.sites.get(host)
        return s if s is not None else self.sites.get(DEFAULT_SITE)

    def service_time(self, site: str, req: Request, rng: random.Random) -> float:
        """Modelled service time of ``req`` on ``site`` (a host name), in seconds.

        0.0 when the site has no ``[load] service_time`` and for reserved paths.
        """
        s = self.site_for(site)
        if s is None or req.target.startswith(RESERVED_PREFIX):
            return 0.0
        d: Distribution | None = s.deploy.config.service_time
        return d.sample(rng) if d is not None else 0.0

    def concurrency(self, site: str) -> int:
        """The per-site concurrency limit of ``site`` (a host name); 0: none."""
        s = self.site_for(site)
        return s.deploy.config.concurrency if s is not None else 0

    # ---- handling -------------------------------------------------------------

    def _date_header(self, now: float) -> str:
        sec = int(now)
        if sec != self._date_sec:
            self._date_sec, self._date = sec, http_date(sec)
        return self._date

    def handle(self, req: Request, now: float) -> Response:
        """Answer one request at time ``now`` (Unix seconds). Never raises for any
        request: every outcome is a response."""
        self.stats.served += 1
        path = req.path
        if path.startswith(RESERVED_PREFIX):
            return self._reserved(req, path, now)
        host = req.host
        site = self.sites.get(host)
        if site is None:
            site = self.sites.get(DEFAULT_SITE)
            if site is None:
                return self._unknown_host(host, now)
        deploy = site.deploy  # read once: the whole answer comes from this snapshot
        method = req.method
        if method != "GET" and method != "HEAD":
            return self._text(
                405,
                f"method {method} not allowed; content allows {_ALLOW_CONTENT}\n",
                now,
                deploy.id,
                NO_STORE,
                [("allow", _ALLOW_CONTENT)],
            )
        rewritten = deploy.rules is None
        xfp = None
        if not rewritten:
            # One pass for the two fields read here (most requests carry neither).
            for k, v in req.headers:
                if k == REWRITE_HEADER:
                    rewritten = True
                    break
                if k == "x-forwarded-proto" and xfp is None:
                    xfp = v
        if rewritten:
            # No rules, or an edge already applied them (a rewrite's target): rewrites
            # are not recursive (spec R2.22), so the path is served as a file.
            res = deploy.resolve_fields(req.target, req, now, False)
        else:
            q = req.query if "?" in req.target else ""  # most targets have no query
            # the client's scheme as a proxy reports it; anything but http is https
            scheme = "http" if xfp is not None and xfp.strip().lower() == "http" else "https"
            url = f"{scheme}://{host}{path}?{q}" if q else f"{scheme}://{host}{path}"
            if not host:
                url = f"{path}?{q}" if q else path
            try:
                res = deploy.resolve_fields(url, req, now, True)
            except ValueError:
                return self._text(400, "bad request target\n", now, deploy.id, NO_STORE)
        # Resolution's fields: action, status, target (a plain tuple, see resolve_fields)
        action: str = res[0]
        status: int = res[1]
        target: str = res[2]
        if action == "file" or action == "rewrite":
            f = deploy.file(target)
            if f is not None:
                return self._serve(req, deploy, f, status, now)
            return self._not_found(req, deploy, "", 404, now)
        if action == "not_found":
            return self._not_found(req, deploy, target, status, now)
        if action == "redirect":
            loc = target
            cc = deploy.config.cache.redirect
            return self._text(status, f"Redirecting to {loc}\n", now, deploy.id, cc, [("location", loc)], req)
        # proxy and function targets: the origin is the end of the line (docs/origin.md)
        what = "proxy targets" if action == "proxy" else "function targets"
        return self._text(
            502,
            f"{what} are not fetched by the origin: {target}\n",
            now,
            deploy.id,
            NO_STORE,
            None,
            req,
        )

    def _serve(self, req: Request, deploy: Deploy, f: FileInfo, status: int, now: float) -> Response:
        headers = [*f.headers, ("date", self._date_header(now))]
        if status == 200 and _not_modified(req, f):
            # RFC 9110 §15.4.5: the headers a 200 would carry that matter to caches.
            # Content-Length of a 304 is that of the 200 (RFC 9110 §8.6), or absent.
            headers[0] = ("content-length", str(f.size))
            return Response(304, headers, b"" if self.bodies else None, 0)
        if status >= 400:
            headers[3] = ("cache-control", deploy.config.cache.not_found)
        headers.append(("content-length", str(f.size)))
        if req.method == "HEAD":
            return Response(status, headers, b"" if self.bodies else None, 0)
        if not self.bodies:
            return Response(status, headers, None, f.size)
        return Response(status, headers, deploy.body(f), f.size)

    def _not_found(self, req: Request, deploy: Deploy, page: str, status: int, now: float) -> Response:
        f = deploy.file(page) if page else None
        if f is not None:
            return self._serve(req, deploy, f, status, now)
        return self._text(status, "Not Found\n", now, deploy.id, deploy.config.cache.not_found, None, req)

    def _text(
        self,
        status: int,
        text: str,
        now: float,
        deploy_id: str | None,
        cache_control: str,
        extra: Headers | None = None,
        req: Request | None = None,
    ) -> Response:
        """A short text answer; in metadata-only mode a content answer (``req`` given)
        has no body."""
        return self._small(status, _TEXT, text, cache_control, now, deploy_id, extra, req, not self.bodies)

    def _small(
        self,
        status: int,
        content_type: str,
        text: str,
        cache_control: str,
        now: float,
        deploy_id: str | None,
        extra: Headers | None,
        req: Request | None,
        metadata_only: bool,
    ) -> Response:
        """A small generated answer (text or JSON) with the origin's usual headers."""
        body = text.encode()
        headers: Headers = [("content-type", content_type), ("cache-control", cache_control)]
        if deploy_id is not None:
            headers.append((DEPLOY_HEADER, deploy_id))
        if extra:
            headers.extend(extra)
        headers.append(("date", self._date_header(now)))
        headers.append(("content-length", str(len(body))))
        if req is not None and req.method == "HEAD":
            return Response(status, headers, None if metadata_only else b"", 0)
        if req is not None and metadata_only:
            return Response(status, headers, None, len(body))
        return Response(status, headers, body, len(body))

    def _unknown_host(self, host: str, now: float) -> Response:
        names = sorted(self.sites)
        shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
        text = (
            f"edgesim origin: no site for host {host!r} and no {DEFAULT_SITE!r} site"
            f" (sites: {shown or 'none'})\n"
        )
        return self._text(404, text, now, None, NO_STORE)

    # ---- reserved endpoints -----------------------------------------------------

    def _json(
        self,
        status: int,
        doc: Any,
        now: float,
        deploy_id: str | None,
        extra: Headers | None = None,
        req: Request | None = None,
    ) -> Response:
        """A JSON answer; reserved endpoints always carry real bodies (``req`` only
        matters for HEAD)."""
        text = json.dumps(doc, indent=1, ensure_ascii=False) + "\n"
        return self._small(status, _JSON, text, NO_STORE, now, deploy_id, extra, req, False)

    def _reserved(self, req: Request, path: str, now: float) -> Response:
        name = path[len(RESERVED_PREFIX) :]
        method = req.method
        if name == "health":
            if method != "GET" and method != "HEAD":
                return self._json(405, {"error": "use GET"}, now, None, [("allow", "GET, HEAD")])
            return self._json(200, self.health(), now, None, None, req)
        site = self.site_for(req.host)
        if name == "manifest":
            if site is None:
                return self._unknown_host(req.host, now)
            d = site.deploy
            if method != "GET" and method != "HEAD":
                return self._json(405, {"error": "use GET"}, now, d.id, [("allow", "GET, HEAD")])
            body = d.manifest()
            etag = f'"m-{d.id}"'
            headers: Headers = [
                ("content-type", _JSON),
                ("cache-control", NO_STORE),
                (DEPLOY_HEADER, d.id),
                ("etag", etag),
                ("date", self._date_header(now)),
            ]
            headers.append(("content-length", str(len(body))))
            if _etag_listed(joined(req.headers, "if-none-match"), etag):
                return Response(304, headers, b"", 0)
            return Response(
                200, headers, b"" if method == "HEAD" else body, 0 if method == "HEAD" else len(body)
            )
        if name == "deploy":
            if method != "POST":
                did = site.deploy.id if site is not None else None
                return self._json(405, {"error": "use POST"}, now, did, [("allow", "POST")])
            return self._deploy(req, now)
        return self._json(404, {"error": f"no such endpoint: {path}"}, now, None)

    def deploy_target(self, host: str) -> str | None:
        """The site a deploy request for ``host`` publishes: the host's own site, a
        folder of that name newly added to the sites directory, or the default site."""
        if host in self.sites:
            return host
        if host and self.sites_dir is not None and (self.sites_dir / host).is_dir():
            return host
        return DEFAULT_SITE if DEFAULT_SITE in self.sites else None

    def parse_deploy_body(self, body: bytes) -> dict[str, Any]:
        """The options of a deploy request body (empty, or a JSON object).

        Raises:
            ValueError: not a JSON object.
        """
        if not body.strip():
            return {}
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError) as e:
            raise ValueError(f"deploy body: not JSON: {e}") from None
        if not isinstance(doc, dict):
            raise ValueError("deploy body: expected a JSON object")
        return doc

    def _deploy(self, req: Request, now: float) -> Response:
        site = self.deploy_target(req.host)
        if site is None:
            return self._unknown_host(req.host, now)
        try:
            opts = self.parse_deploy_body(req.body)
        except ValueError as e:
            return self._json(400, {"error": str(e)}, now, None)
        try:
            prepared = self.prepare_deploy(site, options=opts)
        except SiteConfigError as e:
            return self.deploy_failed(site, str(e), now)
        return self.deploy_response(site, self.publish(prepared, now), now)

    def deploy_failed(self, site: str, error: str, now: float) -> Response:
        """The answer to a deploy that could not be built (the old deploy stays)."""
        s = self.sites.get(site)
        return self._json(422, {"site": site, "error": error}, now, s.deploy.id if s else None)

    def deploy_response(self, site: str, deploy: Deploy, now: float) -> Response:
        """The answer to a published deploy."""
        doc = {
            "site": site,
            "deploy_id": deploy.id,
            "previous": deploy.previous,
            "created": deploy.created,
            "files": len(deploy.files) if deploy.files is not None else len(deploy.catalog or ()),
            "diagnostics": deploy.diagnostics,
        }
        return self._json(200, doc, now, deploy.id)

    def health(self) -> dict[str, Any]:
        """The health document: status, sites with deploy ids, load counters."""
        s = self.stats
        return {
            "status": "ok",
            "sites": {n: site.deploy.id for n, site in sorted(self.sites.items())},
            "in_flight": s.in_flight,
            "queued": s.queued,
            "served": s.served,
            "load": s.as_dict(),
        }


def _etag_listed(inm: str | None, etag: str) -> bool:
    """Weak comparison of ``etag`` with an If-None-Match value (RFC 9110 §13.1.2)."""
    if inm is None:
        return False
    if inm.strip() == "*":
        return True
    for t in inm.split(","):
        t = t.strip()
        if t.startswith("W/"):
            t = t[2:]
        if t == etag:
            return True
    return False


def _not_modified(req: Request, f: FileInfo) -> bool:
    """RFC 9110 §13.2.2 steps 3-4 for GET/HEAD: If-None-Match, else If-Modified-Since."""
    inm = None
    ims = None
    for k, v in req.headers:
        if k == "if-none-match":
            inm = v if inm is None else f"{inm}, {v}"
        elif k == "if-modified-since" and ims is None:
            ims = v
    if inm is not None:
        return _etag_listed(inm, f.etag)
    if ims is not None:
        t = parse_http_date(ims)
        return t is not None and f.last_modified <= t
    return False
