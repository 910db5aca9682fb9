"""The edge node's HTTP cache: RFC 9111 shared-cache policy over pluggable byte-bounded stores.

Theory of operation
-------------------
This is a sans-IO core: no trio, sockets or clocks. Time is the ``now`` argument (seconds,
a float), and ``request_time``/``response_time`` come in the same clock. Because ``Date``,
``Expires`` and ``Last-Modified`` are compared with those times, the clock must be Unix
time (``time.time()`` in the live shell; epoch-offset virtual time in the simulator,
or an origin that sends no ``Date``).

Policy (the pure functions below) is kept apart from storage (``edgesim._cachestore``):

- **Store** (:meth:`HttpCache.store`): a response is checked for storability once
  (RFC 9111 §3), its Cache-Control (or ``CDN-Cache-Control``, RFC 9213) is parsed once,
  and the result is a :class:`CacheEntry` carrying the pre-computed freshness lifetime
  (§4.2.1), corrected initial age (§4.2.3), validators, stale windows and Vary selecting
  values. Lookups never parse response headers again.
- **Lookup** (:meth:`HttpCache.lookup`): memory tier, then disk tier (a disk hit is promoted
  to memory); the first variant whose Vary selecting fields match (§4.1) is classified
  FRESH or STALE with ``current_age = initial_age + (now - response_time)``, and the
  stale-serving flags are set only where a response directive allows it (§4.2.4).
- **Validate** (:meth:`conditional_headers`, :meth:`revalidated`, §4.3): the node sends the
  conditional headers; a 304 is merged into the stored entry; a 200 is simply stored.
- **Invalidate** (:meth:`invalidate_after`, §4.4) after unsafe methods.

Variants of one URL share one primary key in the store, as a list (newest first).
The node builds keys; they are opaque here.

Choices the RFCs leave open (each is marked "choice" below):

- ``Vary: *`` responses are not stored (they can never be reused, §4.1).
- A directive that appears twice: the first occurrence wins (§4.2.1 allows "first" or
  "stale"); an invalid ``max-age``/``s-maxage`` value makes the response stale (§4.2.1
  "encouraged"); ``Pragma`` is ignored (§5.4).
- ``no-cache`` and ``private`` with field names are treated like their unqualified forms.
- Request Cache-Control is ignored for reuse unless ``CachePolicy.honor_request_cache_control``
  (CDNs usually ignore it; the cache-tests suite marks those tests optional), but request
  ``no-store`` always prevents storing (§5.2.1.5).
- Stale content is served only under ``stale-while-revalidate``/``stale-if-error``
  (RFC 5861), never with must-revalidate, proxy-revalidate, s-maxage or no-cache.
- HEAD responses and 206 partial content are never stored; HEAD is served from a stored GET.
- A GET with a single byte ``Range`` (RFC 9110 §14.2) is answered from a stored complete
  200 with a 206 (or a 416 when unsatisfiable), subject to ``If-Range``; a range set of
  more than one range, another unit, or a syntax error is ignored (the full 200 is sent).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Final
from urllib.parse import urljoin, urlsplit

from edgesim._cachestore import (
    CacheEntry,
    DiskStore,
    Eviction,
    MemoryStore,
    MetadataStore,
    Store,
    StoreStats,
    decode_entries,
    encode_entries,
)
from edgesim.http import HOP_BY_HOP, FrozenHeaders, Headers, Request, Response, get_header, joined

__all__ = [
    "FRESH",
    "STALE",
    "CacheEntry",
    "CachePolicy",
    "CacheStats",
    "Directives",
    "DiskStore",
    "Eviction",
    "HttpCache",
    "Lookup",
    "MemoryStore",
    "MetadataStore",
    "Store",
    "StoreStats",
    "TierStats",
    "current_age",
    "decode_entries",
    "encode_entries",
    "parse_age",
    "parse_byte_range",
    "parse_cache_control",
    "parse_http_date",
    "parse_targeted_cache_control",
]

FRESH: Final = "fresh"
STALE: Final = "stale"

# RFC 9111 §1.2.2: a delta-seconds too large to represent (or overflowing) is 2^31.
DELTA_MAX: Final = 2147483648

# RFC 9110 §15.1 "heuristically cacheable" status codes. 206 is left out on purpose:
# partial content is never stored here.
HEURISTIC_STATUSES: Final = frozenset({200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501})

# Status codes this cache "understands" for must-understand (RFC 9111 §5.2.2.3): the
# final codes defined by RFC 9110, minus 206 (never stored).
UNDERSTOOD_STATUSES: Final = frozenset(
    {200, 201, 202, 203, 204, 205, 300, 301, 302, 303, 305, 307, 308}
    | set(range(400, 418))
    | {421, 422, 426, 428, 429, 431, 451, 500, 501, 502, 503, 504, 505, 511}
)

# Methods that never invalidate (RFC 9110 §9.2.1 safe methods); all others do (§4.4).
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})

# Response fields a shared cache must not store (RFC 9111 §3.1): hop-by-hop fields, and the
# proxy-specific authentication fields (the cache-tests suite checks each of these).
NOT_STORED: Final = HOP_BY_HOP | {"proxy-authentication-info", "age"}

# A 304 never updates these stored fields (RFC 9111 §3.2): Content-Length describes the
# stored body, and Age is recomputed.
NOT_UPDATED_BY_304: Final = NOT_STORED | {"content-length"}

# Fields a 304 built from the cache carries (RFC 9110 §15.4.5), plus CDN-Cache-Control.
_304_FIELDS: Final = frozenset(
    {"cache-control", "cdn-cache-control", "content-location", "date", "etag", "expires", "vary"}
)

# Request fields that can make a stored response's answer something else (§4.3.2, Range).
_SERVE_FIELDS: Final = frozenset({"if-none-match", "if-modified-since", "range"})

# Request fields whose values are case-insensitive lists, so Vary matching may fold case
# (RFC 9111 §4.1 allows normalising selecting fields by their semantics).
_CASE_FOLD_VARY: Final = frozenset({"accept-encoding", "accept-language", "accept-charset"})

_NO_STALE: Final = -1.0


# --- policy options -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """Knobs of the cache policy; the defaults are RFC 9111 shared-cache behaviour.

    Attributes:
        honor_request_cache_control: honour request ``no-cache``, ``max-age`` and
            ``min-fresh`` when deciding reuse (RFC 9111 §5.2.1). Off by default, as in
            most CDNs: a client could otherwise force origin load at will.
        targeted_fields: targeted cache-control fields (RFC 9213 §2) in priority order;
            the first valid one replaces Cache-Control and Expires for this cache.
        heuristic_fraction: heuristic lifetime as a fraction of ``Date - Last-Modified``
            (RFC 9111 §4.2.2 suggests 10%).
        heuristic_max: cap on the heuristic lifetime, seconds (one day, as Squid/ATS).
        max_variants: most Vary variants kept per key (oldest dropped first), bounding
            the cost of a key whose Vary field takes many values.
    """

    honor_request_cache_control: bool = False
    targeted_fields: tuple[str, ...] = ("cdn-cache-control",)
    heuristic_fraction: float = 0.1
    heuristic_max: float = 86400.0
    max_variants: int = 8


# --- field parsing --------------------------------------------------------------------


# Directives fields (a compiled class has no __slots__ attribute to read).
_DIRECTIVE_FIELDS: Final = (
    "max_age",
    "max_stale",
    "min_fresh",
    "must_revalidate",
    "must_understand",
    "no_cache",
    "no_store",
    "private",
    "proxy_revalidate",
    "public",
    "s_maxage",
    "sie",
    "swr",
)


class Directives:
    """Parsed cache directives of one response or request (immutable by convention).

    ``max_age``/``s_maxage``: None when absent, else seconds (0 when invalid, which makes
    the response stale). ``swr``/``sie``/``max_stale``/``min_fresh``: None when absent or
    invalid.
    """

    __slots__ = _DIRECTIVE_FIELDS

    def __init__(self) -> None:
        self.max_age: int | None = None
        self.s_maxage: int | None = None
        self.swr: int | None = None
        self.sie: int | None = None
        self.max_stale: int | None = None
        self.min_fresh: int | None = None
        self.no_store = False
        self.no_cache = False
        self.private = False
        self.public = False
        self.must_revalidate = False
        self.proxy_revalidate = False
        self.must_understand = False

    def __repr__(self) -> str:
        on = [s for s in _DIRECTIVE_FIELDS if getattr(self, s) not in (None, False)]
        return "Directives(" + ", ".join(f"{s}={getattr(self, s)!r}" for s in on) + ")"


_EMPTY: Final = Directives()


def _delta(value: str | None) -> int | None:
    """delta-seconds (RFC 9111 §1.2.2): None if not a non-negative integer."""
    if value is None or not value or not value.isascii() or not value.isdigit():
        return None
    if len(value) > 10:  # also keeps int() clear of the 4300-digit limit
        return DELTA_MAX
    return min(int(value), DELTA_MAX)


def _split_list(value: str) -> list[str]:
    """Split a comma list, keeping commas inside quoted strings."""
    if '"' not in value:
        return value.split(",")
    out = []
    start = 0
    quoted = False
    i = 0
    n = len(value)
    while i < n:
        c = value[i]
        if quoted:
            if c == "\\":
                i += 1
            elif c == '"':
                quoted = False
        elif c == '"':
            quoted = True
        elif c == ",":
            out.append(value[start:i])
            start = i + 1
        i += 1
    out.append(value[start:])
    return out


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        inner = value[1:-1]
        return re.sub(r"\\(.)", r"\1", inner) if "\\" in inner else inner
    return value


def _apply(d: Directives, name: str, value: str | None) -> None:
    if name == "max-age":
        d.max_age = _delta(value)
        if d.max_age is None:
            d.max_age = 0  # choice: invalid freshness information means stale (§4.2.1)
    elif name == "s-maxage":
        d.s_maxage = _delta(value)
        if d.s_maxage is None:
            d.s_maxage = 0
    elif name == "no-store":
        d.no_store = True
    elif name == "no-cache":
        d.no_cache = True  # choice: qualified no-cache="field" treated as unqualified
    elif name == "private":
        d.private = True  # choice: qualified private="field" treated as unqualified
    elif name == "public":
        d.public = True
    elif name == "must-revalidate":
        d.must_revalidate = True
    elif name == "proxy-revalidate":
        d.proxy_revalidate = True
    elif name == "must-understand":
        d.must_understand = True
    elif name == "stale-while-revalidate":
        d.swr = _delta(value)
    elif name == "stale-if-error":
        d.sie = _delta(value)
    elif name == "max-stale":
        d.max_stale = DELTA_MAX if value is None else _delta(value)
    elif name == "min-fresh":
        d.min_fresh = _delta(value)
    # Unknown directives are ignored (RFC 9111 §5.2.3).


@lru_cache(maxsize=4096)
def parse_cache_control(value: str) -> Directives:
    """Parse a (combined) Cache-Control field value (RFC 9111 §5.2).

    Directive names are case-insensitive; values may be tokens or quoted strings; unknown
    directives are ignored; when a directive repeats, the first occurrence wins (choice,
    §4.2.1). ``max-age =1`` (space before ``=``) is an unknown directive, and
    ``max-age= 1`` an invalid value. Results are memoised: origins send few distinct values.
    """
    d = Directives()
    seen: set[str] = set()
    for member in _split_list(value):
        m = member.strip(" \t")
        if not m:
            continue
        name, eq, arg = m.partition("=")
        name = name.lower()
        if name in seen:
            continue
        seen.add(name)
        _apply(d, name, _unquote(arg) if eq else None)
    return d


# RFC 8941 structured-field dictionary, just enough to parse and type-check a targeted
# cache-control field (RFC 9213 §2.1). Any syntax error invalidates the whole field.
_SF_KEY: Final = re.compile(r"[a-z*][a-z0-9_\-.*]*")
_SF_NUMBER: Final = re.compile(r"-?[0-9]{1,15}(\.[0-9]{1,3})?")
_SF_TOKEN: Final = re.compile(r"[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*")
_SF_BYTES: Final = re.compile(r":[A-Za-z0-9+/=]*:")
_INVALID: Final = object()


def _sf_bare_item(s: str, i: int) -> tuple[object, int]:
    n = len(s)
    if i >= n:
        return _INVALID, i
    c = s[i]
    if c == '"':
        out = []
        i += 1
        while i < n:
            c = s[i]
            if c == "\\":
                if i + 1 < n and s[i + 1] in '"\\':
                    out.append(s[i + 1])
                    i += 2
                    continue
                return _INVALID, i
            if c == '"':
                return "".join(out), i + 1
            if not " " <= c <= "~":
                return _INVALID, i
            out.append(c)
            i += 1
        return _INVALID, i
    if c == "-" or c.isdigit():
        m = _SF_NUMBER.match(s, i)
        if m is None:
            return _INVALID, i
        text = m.group()
        if m.group(1) is not None:
            if len(text.lstrip("-").split(".")[0]) > 12:
                return _INVALID, i
            return float(text), m.end()
        return int(text), m.end()
    if c == "?":
        if s.startswith("?1", i):
            return True, i + 2
        if s.startswith("?0", i):
            return False, i + 2
        return _INVALID, i
    if c == ":":
        m = _SF_BYTES.match(s, i)
        return (m.group(), m.end()) if m else (_INVALID, i)
    m = _SF_TOKEN.match(s, i)
    return (m.group(), m.end()) if m else (_INVALID, i)


def _sf_dictionary(s: str) -> dict[str, object] | None:
    out: dict[str, object] = {}
    n = len(s)
    i = 0
    while i < n and s[i] == " ":
        i += 1
    while i < n:
        m = _SF_KEY.match(s, i)
        if m is None:
            return None
        key = m.group()
        i = m.end()
        item: object = True
        if i < n and s[i] == "=":
            item, i = _sf_bare_item(s, i + 1)
            if item is _INVALID:
                return None
        while i < n and s[i] == ";":  # parameters: parsed, then ignored
            i += 1
            while i < n and s[i] == " ":
                i += 1
            pm = _SF_KEY.match(s, i)
            if pm is None:
                return None
            i = pm.end()
            if i < n and s[i] == "=":
                pv, i = _sf_bare_item(s, i + 1)
                if pv is _INVALID:
                    return None
        out[key] = item  # RFC 8941 §4.2.2: a repeated key overwrites
        while i < n and s[i] in " \t":
            i += 1
        if i >= n:
            return out
        if s[i] != ",":
            return None
        i += 1
        while i < n and s[i] in " \t":
            i += 1
        if i >= n:
            return None  # trailing comma
    return out


_SF_INTEGER_DIRECTIVES: Final = frozenset({"max-age", "s-maxage", "stale-while-revalidate", "stale-if-error"})


@lru_cache(maxsize=1024)
def parse_targeted_cache_control(value: str) -> Directives | None:
    """Parse a targeted cache-control field such as CDN-Cache-Control (RFC 9213).

    The value is an RFC 8941 dictionary; keys are lower-case. Returns None when the field
    is invalid (a syntax error, or ``max-age``/``s-maxage``/``stale-*`` not an integer),
    in which case the caller falls back to Cache-Control (RFC 9213 §2.1). An empty value
    also returns None.
    """
    sf = _sf_dictionary(value)
    if not sf:
        return None
    d = Directives()
    for name, item in sf.items():
        if name in _SF_INTEGER_DIRECTIVES:
            if type(item) is not int:
                return None
            secs = min(item, DELTA_MAX) if item >= 0 else None
            if name == "max-age":
                d.max_age = 0 if secs is None else secs
            elif name == "s-maxage":
                d.s_maxage = 0 if secs is None else secs
            elif name == "stale-while-revalidate":
                d.swr = secs
            else:
                d.sie = secs
        elif item is not False:
            _apply(d, name, None)
    return d


_MONTHS: Final = {
    m: i
    for i, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}
_MON: Final = r"(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)"
_IMF_FIXDATE: Final = re.compile(
    r"(?:mon|tue|wed|thu|fri|sat|sun), ([0-9]{2}) "
    + _MON
    + r" ([0-9]{4}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) gmt",
    re.IGNORECASE,
)
_RFC850: Final = re.compile(
    r"(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday), ([0-9]{2})-"
    + _MON
    + r"-([0-9]{2}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) gmt",
    re.IGNORECASE,
)
_ASCTIME: Final = re.compile(
    r"(?:mon|tue|wed|thu|fri|sat|sun) "
    + _MON
    + r" ([0-9 ][0-9]) ([0-9]{2}):([0-9]{2}):([0-9]{2}) ([0-9]{4})",
    re.IGNORECASE,
)


@lru_cache(maxsize=4096)
def parse_http_date(value: str) -> float | None:
    """An HTTP-date (RFC 9110 §5.6.7) as Unix seconds, or None if invalid.

    Accepts IMF-fixdate and the obsolete RFC 850 and asctime forms, case-insensitively;
    anything else (``UTC`` zones, two-digit years in IMF form, extra spaces, ``0``) is
    invalid. RFC 850 two-digit years pivot at 70 (choice: the core has no clock to apply
    the RFC's "50 years in the future" rule). Memoised: many responses share a Date.
    """
    v = value.strip()
    fast = _fixdate(v)
    return fast if fast is not None else _parse_date_forms(v)


def _parse_date_forms(v: str) -> float | None:
    """:func:`parse_http_date` of a stripped value by the three forms' expressions."""
    m = _IMF_FIXDATE.fullmatch(v)
    if m is not None:
        day, mon, year, hh, mm, ss = m.groups()
    else:
        m = _RFC850.fullmatch(v)
        if m is not None:
            day, mon, yy, hh, mm, ss = m.groups()
            year = str((2000 if int(yy) < 70 else 1900) + int(yy))
        else:
            m = _ASCTIME.fullmatch(v)
            if m is None:
                return None
            mon, day, hh, mm, ss, year = m.groups()
            if day[0] == " ":
                day = day[1]
    hour, minute = int(hh), int(mm)
    if hour > 23 or minute > 59:
        return None
    start = _day_start(int(year), _MONTHS[mon.lower()], int(day))
    # exact: whole seconds, far below 2**53
    return None if start is None else start + (hour * 3600 + minute * 60 + min(int(ss), 59))


_WEEKDAYS: Final = frozenset(("mon", "tue", "wed", "thu", "fri", "sat", "sun"))
_MONTH_DAYS: Final = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _fixdate(v: str) -> float | None:
    """The usual case of :func:`parse_http_date`: ``v`` an IMF-fixdate in ASCII of a real
    day and time (``Sun, 06 Nov 1994 08:49:37 GMT``), read in place, and the day counted
    by the civil-calendar formula instead of ``datetime``. None for anything else, which
    the regular expressions then decide (this path answers only where they would
    answer the same: the tests compare them)."""
    if (
        len(v) != 29
        or v[3] != ","
        or v[4] != " "
        or v[7] != " "
        or v[11] != " "
        or v[16] != " "
        or v[19] != ":"
        or v[22] != ":"
        or v[25] != " "
    ):
        return None
    if v[26:].lower() != "gmt" or v[:3].lower() not in _WEEKDAYS:
        return None
    month = _MONTHS.get(v[8:11].lower(), 0)
    day = _decimal(v, 5, 7)
    year = _decimal(v, 12, 16)
    hour = _decimal(v, 17, 19)
    minute = _decimal(v, 20, 22)
    sec = _decimal(v, 23, 25)
    if month == 0 or year < 1 or day < 1 or hour < 0 or hour > 23 or minute < 0 or minute > 59 or sec < 0:
        return None
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    if day > (29 if month == 2 and leap else _MONTH_DAYS[month]):
        return None
    # days from 1970-01-01 to the date (Hinnant's days_from_civil, years from March)
    y = year - 1 if month <= 2 else year
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (month - 3 if month > 2 else month + 9) + 2) // 5 + day - 1
    days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
    return float(days * 86400 + hour * 3600 + minute * 60 + min(sec, 59))


def _decimal(v: str, start: int, end: int) -> int:
    """The decimal number ``v[start:end]`` of ASCII digits, or -1."""
    n = 0
    for i in range(start, end):
        d = ord(v[i]) - 48
        if d < 0 or d > 9:
            return -1
        n = n * 10 + d
    return n


@lru_cache(maxsize=1024)
def _day_start(year: int, month: int, day: int) -> float | None:
    """Unix time of 00:00:00 UTC on that day, or None when there is no such day."""
    try:
        return datetime(year, month, day, tzinfo=UTC).timestamp()
    except ValueError:
        return None


def parse_age(headers: Headers) -> int:
    """The Age field (RFC 9111 §5.1) as seconds; 0 when absent or invalid.

    Only the first field line and its first list member count (``Age: 0, 7200`` is 0);
    a trailing parameter is dropped; negative, fractional and non-numeric values are
    ignored; values beyond 2^31 clamp to 2147483648 (§1.2.2).
    """
    return _age_value(get_header(headers, "age"))


@lru_cache(maxsize=1024)
def _age_value(v: str | None) -> int:
    """``parse_age`` of the first Age field line's value (memoised: a shield's answers
    carry few distinct Age values, one per store and per revalidation)."""
    if v is None:
        return 0
    n = _delta(v.partition(",")[0].partition(";")[0].strip())
    return 0 if n is None else n


def _vary_value(headers: Headers, name: str) -> str | None:
    """A request field normalised for Vary matching (§4.1): lines combined, whitespace
    around list commas removed, case folded for case-insensitive list fields."""
    vals = [v for k, v in headers if k == name]
    if not vals:
        return None
    v = ",".join(p.strip() for p in ",".join(vals).split(","))
    return v.lower() if name in _CASE_FOLD_VARY else v


def _vary_names_of(v: str | None) -> tuple[str, ...] | None:
    if not v:
        return ()
    names = []
    for p in v.split(","):
        p = p.strip().lower()
        if p == "*":
            return None
        if p and p not in names:
            names.append(p)
    return tuple(names)


def _variant_matches(e: CacheEntry, req_headers: Headers) -> bool:
    names = e.vary_names
    if not names:
        return True
    return all(_vary_value(req_headers, n) == v for n, v in zip(names, e.vary_values, strict=True))


# --- freshness and storability (pure functions) ----------------------------------------


def _directives(headers: Headers, policy: CachePolicy) -> tuple[Directives, bool]:
    """The directives this cache obeys, and whether they came from a targeted field
    (RFC 9213: then Cache-Control and Expires are ignored for this cache's decisions)."""
    for name in policy.targeted_fields:
        v = joined(headers, name)
        if v is not None:
            d = parse_targeted_cache_control(v)
            if d is not None:
                return d, True
    cc = joined(headers, "cache-control")
    return (parse_cache_control(cc) if cc else _EMPTY), False


# What one pass over a response's lines reads (``_read_fields``): Cache-Control, Date,
# Expires, Last-Modified, ETag, Age, Vary, Connection, and the targeted fields by name.
_Fields = tuple[
    str | None,
    str | None,
    str | None,
    str | None,
    str | None,
    str | None,
    str | None,
    str | None,
    dict[str, str] | None,
]


def _read_fields(
    lines: list[Any], wanted: frozenset[str], also_targeted: frozenset[str], stored: list[Any] | None
) -> _Fields:
    """The fields of ``lines`` that storing reads (:meth:`HttpCache.store`,
    :meth:`HttpCache.revalidated`, :func:`is_storable`; ``wanted``: ``_indexed``,
    ``also_targeted``: ``_targeted_indexed`` of the policy), in one pass: list fields'
    lines joined with ", " (RFC 9110 §5.3); of Date, Expires, Last-Modified, ETag and
    Age the first line; targeted fields (RFC 9213, rare) by name. With ``stored``, the
    same pass appends to it every line not in ``NOT_STORED``. Not a dict of each
    field's lines: compiled, locals cost nothing, where the dict built a list and an
    insertion per field, and a fixed-length tuple comes back to a compiled caller as a
    C struct, not an object."""
    cc: str | None = None
    date: str | None = None
    expires: str | None = None
    lm: str | None = None
    etag: str | None = None
    age: str | None = None
    vary: str | None = None
    conn: str | None = None
    tfields: dict[str, str] | None = None
    for item in lines:
        # (a boxed variable-length tuple: compiled, ``h[0]`` is a tuple item read, and
        # ``stored`` keeps the response's own tuple; typed ``tuple[str, str]`` the line
        # would be unpacked into a C struct and boxed again for the append)
        h: tuple[str, ...] = item
        k = h[0]
        if k in wanted:
            v = h[1]
            keep = True
            if k == "cache-control":
                cc = v if cc is None else cc + ", " + v
            elif k == "date":
                if date is None:
                    date = v
            elif k == "etag":
                if etag is None:
                    etag = v
            elif k == "last-modified":
                if lm is None:
                    lm = v
            elif k == "expires":
                if expires is None:
                    expires = v
            elif k == "age":  # not stored
                keep = False
                if age is None:
                    age = v
            elif k == "vary":
                vary = v if vary is None else vary + ", " + v
            elif k == "connection":  # not stored
                keep = False
                conn = v if conn is None else conn + ", " + v
            else:  # a targeted field
                tfields = _join_field(tfields, k, v)
                keep = k not in NOT_STORED
            if also_targeted and k in also_targeted:  # a policy naming Date etc. targeted
                tfields = _join_field(tfields, k, v)
            if keep and stored is not None:
                stored.append(h)
        elif stored is not None and k not in NOT_STORED:
            stored.append(h)
    return cc, date, expires, lm, etag, age, vary, conn, tfields


def _join_field(fields: dict[str, str] | None, name: str, value: str) -> dict[str, str]:
    """``fields`` (made on the first call) with ``value`` joined to ``name``'s lines so
    far with ", " (RFC 9110 §5.3): ``HttpCache.store``'s targeted fields, which are rare."""
    if fields is None:
        return {name: value}
    prev = fields.get(name)
    fields[name] = value if prev is None else prev + ", " + value
    return fields


def _directives_of(
    cc: str | None, targeted_fields: dict[str, str] | None, policy: CachePolicy
) -> tuple[Directives, bool]:
    """``_directives`` from the Cache-Control lines (joined) and the targeted fields'
    lines (joined, by name; None when the response has none)."""
    if targeted_fields is not None:
        for name in policy.targeted_fields:
            v = targeted_fields.get(name)
            if v is not None:
                d = parse_targeted_cache_control(v)
                if d is not None:
                    return d, True
    if not cc:
        return _EMPTY, False
    return _cache_control(cc), False


# Memos of ``parse_cache_control`` and ``parse_http_date`` for ``store``: compiled, a
# dict lookup costs a quarter of a call through ``lru_cache`` (a generic call that
# hashes an argument tuple). Both functions are pure, so the answers are the same; each
# memo is emptied when it reaches the ``lru_cache`` bound.
_MEMO_MAX: Final = 4096
_CC_MEMO: Final[dict[str, Directives]] = {}
_DATE_MEMO: Final[dict[str, float | None]] = {}


def _cache_control(value: str) -> Directives:
    """``parse_cache_control``, through ``_CC_MEMO``."""
    d = _CC_MEMO.get(value)
    if d is None:
        d = parse_cache_control(value)
        if len(_CC_MEMO) >= _MEMO_MAX:
            _CC_MEMO.clear()
        _CC_MEMO[value] = d
    return d


def _http_date(value: str) -> float | None:
    """``parse_http_date``, through ``_DATE_MEMO``."""
    t = _DATE_MEMO.get(value)
    if t is None and value not in _DATE_MEMO:  # (an invalid date is memoised as None)
        t = parse_http_date(value)
        if len(_DATE_MEMO) >= _MEMO_MAX:
            _DATE_MEMO.clear()
        _DATE_MEMO[value] = t
    return t


def is_storable(req: Request, resp: Response, policy: CachePolicy | None = None) -> bool:
    """Whether a shared cache may store ``resp`` to ``req`` (RFC 9111 §3)."""
    p = policy or _DEFAULT_POLICY
    cc, _, expires, _, _, _, vary, _, tfields = _read_fields(
        resp.headers, _indexed(p), _targeted_indexed(p), None
    )
    d, targeted = _directives_of(cc, tfields, p)
    return _storable(req, resp.status, expires is not None, d, targeted, _vary_names_of(vary) is None)


def _storable(
    req: Request, status: int, has_expires: bool, d: Directives, targeted: bool, vary_star: bool
) -> bool:
    if req.method != "GET":  # choice: HEAD responses never create entries
        return False
    if status < 200 or status == 206 or status == 304:  # choice: no partial content
        return False
    if d.must_understand:
        # §5.2.2.3: must-understand overrides no-store when the status is understood.
        if status not in UNDERSTOOD_STATUSES:
            return False
    elif d.no_store:
        return False
    if d.private:
        return False
    # the request's Cache-Control (joined) and Authorization, in one pass
    cc = None
    authorized = False
    for k, v in req.headers:
        if k == "cache-control":
            cc = v if cc is None else f"{cc}, {v}"
        elif k == "authorization":
            authorized = True
    if cc is not None and "no-store" in cc.lower() and parse_cache_control(cc).no_store:
        return False
    # §3.5: responses to authorized requests need an explicit permission.
    if authorized and not d.public and d.s_maxage is None and not d.must_revalidate:
        return False
    if vary_star:  # choice: Vary: * can never be reused, so not stored
        return False
    return (
        d.public
        or d.max_age is not None
        or d.s_maxage is not None
        or (not targeted and has_expires)
        or status in HEURISTIC_STATUSES
    )


def freshness_lifetime(
    status: int, headers: Headers, d: Directives, targeted: bool, date_value: float, policy: CachePolicy
) -> float:
    """RFC 9111 §4.2.1 (shared cache): s-maxage, then max-age, then Expires - Date, then
    the §4.2.2 heuristic; an invalid Expires means already expired."""
    return _lifetime(
        status,
        d,
        targeted,
        date_value,
        get_header(headers, "expires"),
        get_header(headers, "last-modified"),
        policy,
    )


def _lifetime(
    status: int,
    d: Directives,
    targeted: bool,
    date_value: float,
    expires: str | None,
    last_modified: str | None,
    policy: CachePolicy,
) -> float:
    """``freshness_lifetime`` from the first Expires and Last-Modified values."""
    if d.s_maxage is not None:
        return float(d.s_maxage)
    if d.max_age is not None:
        return float(d.max_age)
    if not targeted and expires is not None:
        t = _http_date(expires)
        return max(0.0, t - date_value) if t is not None else 0.0
    if (status in HEURISTIC_STATUSES or d.public) and last_modified is not None:
        t = _http_date(last_modified)
        if t is not None and t < date_value:
            return min((date_value - t) * policy.heuristic_fraction, policy.heuristic_max)
    return 0.0


def current_age(entry: CacheEntry, now: float) -> float:
    """RFC 9111 §4.2.3 ``current_age = corrected_initial_age + resident_time``."""
    return entry.initial_age + (now - entry.response_time)


# Response fields that ``HttpCache.store`` reads (besides the policy's targeted fields).
_INDEXED: Final = frozenset(
    {"age", "cache-control", "connection", "date", "etag", "expires", "last-modified", "vary"}
)


def _indexed(policy: CachePolicy) -> frozenset[str]:
    """The fields that ``_read_fields`` reads under ``policy``."""
    return _INDEXED | frozenset(policy.targeted_fields)


def _targeted_indexed(policy: CachePolicy) -> frozenset[str]:
    """Those of ``_INDEXED`` that ``policy`` also names as targeted fields."""
    return _INDEXED & frozenset(policy.targeted_fields)


def _build_entry(
    status: int,
    stored: Headers,
    body: bytes | None,
    size: int,
    request_time: float,
    response_time: float,
    vary_names: tuple[str, ...],
    vary_values: tuple[str | None, ...],
    tag: str,
    policy: CachePolicy,
    directives: tuple[Directives, bool],
    date: str | None,
    expires: str | None,
    last_modified: str | None,
    etag: str | None,
    received_date: str | None,
    received_age: str | None,
) -> CacheEntry:
    """The entry, with everything lookups need pre-computed. ``stored`` are the headers
    kept (freshness comes from them) and ``date``/``expires``/``last_modified``/``etag``
    the first line of each of those fields in them, as the caller looked them up;
    ``received_date``/``received_age`` are the Date and Age of the message just
    received (they give the initial age)."""
    d, targeted = directives
    t = _http_date(date) if date is not None else None
    date_value = response_time if t is None else t  # RFC 9110 §6.6.1: no Date -> receipt time
    # §4.2.3 age calculation.
    if received_date == date:
        received_value = date_value
    else:
        t = _http_date(received_date) if received_date is not None else None
        received_value = response_time if t is None else t
    apparent_age = max(0.0, response_time - received_value)
    # (no Age, the common case, skips the memoised call)
    age_value = 0 if received_age is None else _age_value(received_age)
    corrected_age_value = age_value + (response_time - request_time)
    initial_age = max(apparent_age, corrected_age_value)
    lifetime = _lifetime(status, d, targeted, date_value, expires, last_modified, policy)
    no_cache = d.no_cache
    return CacheEntry(
        status,
        stored,
        body,
        size,
        request_time,
        response_time,
        initial_age,
        lifetime,
        no_cache,
        # §4.2.4, §5.2.2.2, §5.2.2.8, §5.2.2.10: directives that forbid serving stale.
        no_cache or d.must_revalidate or d.proxy_revalidate or d.s_maxage is not None,
        _NO_STALE if d.swr is None else float(d.swr),
        _NO_STALE if d.sie is None else float(d.sie),
        etag,
        last_modified,
        vary_names,
        vary_values,
        tag,
    )


def merge_304_headers(stored: Headers | FrozenHeaders, received: Headers) -> Headers:
    """RFC 9111 §3.2: every field in the 304 replaces all stored lines of that name,
    except Content-Length, hop-by-hop (incl. Connection-listed) fields and Age."""
    named: frozenset[str] = NOT_UPDATED_BY_304
    for h in received:
        if h[0] == "connection":
            named = named | {t.strip().lower() for t in h[1].split(",")}
    # the 304's lines that update (in order; the stored headers drop those names)
    fresh = [h for h in received if h[0] not in named]
    if not fresh:
        return list(stored)
    names = {h[0] for h in fresh}
    return [h for h in stored if h[0] not in names] + fresh


def _weak_match(tag: str, candidates: str) -> bool:
    """If-None-Match weak comparison (RFC 9110 §8.8.3.2, §13.1.2)."""
    mine = tag[2:] if tag.startswith("W/") else tag
    for c in candidates.split(","):
        c = c.strip()
        if c == "*":
            return True
        if (c[2:] if c.startswith("W/") else c) == mine:
            return True
    return False


def _not_modified(entry: CacheEntry, req: Request) -> bool:
    """Whether the client's own conditionals make this a 304 (RFC 9111 §4.3.2)."""
    if entry.status != 200:
        return False
    inm = joined(req.headers, "if-none-match")
    if inm is not None:  # If-None-Match takes precedence over If-Modified-Since
        return entry.etag is not None and _weak_match(entry.etag, inm)
    ims = get_header(req.headers, "if-modified-since")
    if ims is None:
        return False
    since = parse_http_date(ims)
    if since is None:
        return False
    ref = entry.last_modified or get_header(entry.headers, "date")
    t = parse_http_date(ref) if ref is not None else None
    if t is None:
        t = entry.response_time
    return t <= since


_UNSATISFIABLE: Final = (-1, -1)


def parse_byte_range(value: str, length: int) -> tuple[int, int] | None:
    """The one byte range of a ``Range`` field value (RFC 9110 §14.1.2) for a
    representation of ``length`` bytes, as ``(first, last)`` inclusive.

    Returns None when the field is to be ignored (another range unit, a syntax error, or
    more than one range: choice, no multipart/byteranges), and ``(-1, -1)`` when the
    range is valid but unsatisfiable (answer 416).
    """
    unit, eq, spec = value.partition("=")
    if not eq or unit.strip(" \t").lower() != "bytes":
        return None
    specs = [p.strip(" \t") for p in spec.split(",")]
    specs = [p for p in specs if p]
    if len(specs) != 1:
        return None
    first_s, dash, last_s = specs[0].partition("-")
    if not dash:
        return None
    if not first_s:  # suffix-range: the last N bytes
        n = _digits(last_s)
        if n is None:
            return None
        if n == 0 or length == 0:
            return _UNSATISFIABLE
        return max(0, length - n), length - 1
    first = _digits(first_s)
    if first is None:
        return None
    if last_s:
        last = _digits(last_s)
        if last is None or last < first:
            return None  # invalid: the field is ignored (§14.1.1)
    else:
        last = length - 1
    if first >= length:
        return _UNSATISFIABLE
    return first, min(last, length - 1)


def _digits(s: str) -> int | None:
    if not s or not s.isascii() or not s.isdigit():
        return None
    return int(s)


def _if_range_ok(entry: CacheEntry, value: str) -> bool:
    """RFC 9110 §13.1.5: a strong ETag match, or a date equal to a strong Last-Modified."""
    v = value.strip()
    if v.startswith('"') or v.startswith("W/"):
        tag = entry.etag
        return tag is not None and not tag.startswith("W/") and v == tag.strip()
    since = parse_http_date(v)
    if since is None or entry.last_modified is None:
        return False
    lm = parse_http_date(entry.last_modified)
    if lm is None or lm != since:
        return False
    date = get_header(entry.headers, "date")
    d = parse_http_date(date) if date is not None else None
    return d is not None and d - lm >= 1.0  # §8.8.2.2: otherwise Last-Modified is weak


def _range_request(entry: CacheEntry, req: Request) -> tuple[int, int] | None:
    """The range to answer ``req`` with from a stored 200, or None for the full response."""
    rv = get_header(req.headers, "range")
    if rv is None:
        return None
    ir = get_header(req.headers, "if-range")
    if ir is not None and not _if_range_ok(entry, ir):
        return None
    if get_header(entry.headers, "content-range") is not None:
        return None  # not a complete representation
    return parse_byte_range(rv, entry.size)


def _partial(e: CacheEntry, rng: tuple[int, int], age: str) -> Response:
    """A 206 (or 416) built from a stored complete 200 (RFC 9110 §15.3.7, §15.5.17)."""
    if rng == _UNSATISFIABLE:
        hs = [("content-range", f"bytes */{e.size}"), ("content-length", "0"), ("age", age)]
        return Response(416, hs, b"", 0)
    first, last = rng
    n = last - first + 1
    hs = [h for h in e.headers if h[0] != "content-length"]
    hs.append(("content-range", f"bytes {first}-{last}/{e.size}"))
    hs.append(("content-length", str(n)))
    hs.append(("age", age))
    body = e.body[first : last + 1] if e.body is not None else None
    return Response(206, hs, body, n)


# --- the facade -----------------------------------------------------------------------


class Lookup:
    """The result of a cache hit (``HttpCache.lookup`` returns None on a miss).

    Attributes:
        entry: the selected stored response.
        tier: ``"memory"`` or ``"disk"``.
        state: ``FRESH`` (serve it) or ``STALE`` (revalidate or fetch; see the flags).
        age: current age in seconds at lookup time.
        can_serve_stale_while_revalidate: STALE, and ``stale-while-revalidate`` allows
            serving it now while revalidating in the background.
        can_serve_stale_if_error: STALE, and ``stale-if-error`` would allow serving it if
            the origin fails now (re-check with ``HttpCache.stale_if_error_ok`` later).
    """

    __slots__ = (
        "age",
        "can_serve_stale_if_error",
        "can_serve_stale_while_revalidate",
        "entry",
        "state",
        "tier",
    )

    def __init__(self, entry: CacheEntry, tier: str, state: str, age: float, swr: bool, sie: bool) -> None:
        self.entry = entry
        self.tier = tier
        self.state = state
        self.age = age
        self.can_serve_stale_while_revalidate = swr
        self.can_serve_stale_if_error = sie

    def __repr__(self) -> str:
        return f"Lookup({self.state}, tier={self.tier}, age={self.age:.1f})"


@dataclass(frozen=True, slots=True)
class TierStats:
    """One tier: lookups it answered, and its store's snapshot."""

    hits: int
    store: StoreStats


@dataclass(frozen=True, slots=True)
class CacheStats:
    """Immutable snapshot of an ``HttpCache`` (``statistics()``)."""

    lookups: int
    hits: int  # fresh_hits + stale_hits
    fresh_hits: int
    stale_hits: int
    misses: int
    stores: int  # responses stored
    not_stored: int  # responses refused by policy or admission
    revalidations: int  # 304s merged
    invalidations: int  # keys invalidated (invalidate, invalidate_after)
    memory: TierStats
    disk: TierStats | None

    @property
    def used_bytes(self) -> int:
        return self.memory.store.used_bytes + (self.disk.store.used_bytes if self.disk else 0)

    @property
    def evictions(self) -> int:
        return self.memory.store.evictions + (self.disk.store.evictions if self.disk else 0)


_DEFAULT_POLICY: Final = CachePolicy()


# Compiled, a call through the ``Store`` protocol is a generic method call (attribute
# lookup, then the argument parsing of the method's Python wrapper); narrowed to
# ``MemoryStore`` (every store of the simulator), the same call is a native one.
def _get(store: Store, key: str) -> list[CacheEntry] | None:
    if isinstance(store, MemoryStore):
        return store.get(key)
    return store.get(key)


def _put(store: Store, key: str, entries: list[CacheEntry], tag: str) -> bool:
    if isinstance(store, MemoryStore):
        return store.put(key, entries, tag)
    return store.put(key, entries, tag)


class HttpCache:
    """RFC 9111 shared cache over a memory tier and an optional disk tier.

    Stores are write-through: ``store`` and ``revalidated`` write the variant list to
    both tiers; ``lookup`` reads memory first, then disk (promoting a disk hit to memory).

    Args:
        memory: the front tier (``MemoryStore``, or ``MetadataStore`` in the simulator).
        disk: an optional second tier (``DiskStore``).
        policy: policy knobs (defaults: RFC 9111 shared cache).

    Resource handling:
        Does not own the stores; the caller closes a ``DiskStore``.

    Error handling:
        Never raises for bad header values: invalid fields are treated as RFC 9111 says
        (ignored or stale). Corrupt disk entries are misses.
    """

    __slots__ = (
        "_disk",
        "_disk_hits",
        "_fresh_hits",
        "_indexed",
        "_invalidations",
        "_lookups",
        "_memory",
        "_memory_hits",
        "_not_stored",
        "_policy",
        "_revalidations",
        "_stale_hits",
        "_stores",
        "_targeted_indexed",
    )

    def __init__(
        self, memory: Store, disk: Store | None = None, *, policy: CachePolicy | None = None
    ) -> None:
        self._memory = memory
        self._disk = disk
        self._policy = policy or _DEFAULT_POLICY
        self._indexed = _indexed(self._policy)
        # targeted fields that ``store`` also reads as themselves (none for any sensible
        # policy, which names CDN-Cache-Control and the like)
        self._targeted_indexed = _targeted_indexed(self._policy)
        self._lookups = 0
        self._fresh_hits = 0
        self._stale_hits = 0
        self._memory_hits = 0
        self._disk_hits = 0
        self._stores = 0
        self._not_stored = 0
        self._revalidations = 0
        self._invalidations = 0

    @property
    def policy(self) -> CachePolicy:
        return self._policy

    @property
    def disk_hits(self) -> int:
        """Lookups answered by the disk tier so far (a cheap counter, no snapshot)."""
        return self._disk_hits

    # -- lookup ---------------------------------------------------------------------

    def lookup(self, key: str, req: Request, now: float) -> Lookup | None:
        """Find a stored response for ``req`` (GET or HEAD) under ``key``.

        Returns None on a miss (and for other methods). The caller then revalidates a
        STALE entry (``conditional_headers``), serves it per the stale flags, or fetches.
        """
        self._lookups += 1
        if req.method != "GET" and req.method != "HEAD":
            return None
        rh = req.headers
        entry = None
        tier = "memory"
        entries = _get(self._memory, key)
        if entries is not None:
            for e in entries:
                if not e.vary_names or _variant_matches(e, rh):
                    entry = e
                    break
        if entry is None and self._disk is not None:
            entries = _get(self._disk, key)
            if entries is not None:
                for e in entries:
                    if not e.vary_names or _variant_matches(e, rh):
                        entry = e
                        break
                if entry is not None:
                    tier = "disk"
                    _put(self._memory, key, entries, entry.tag)
        if entry is None:
            return None
        if tier == "memory":
            self._memory_hits += 1
        else:
            self._disk_hits += 1
        age = entry.initial_age + (now - entry.response_time)
        if age < entry.lifetime and not entry.no_cache:
            if not self._policy.honor_request_cache_control or self._request_allows(rh, entry, age):
                self._fresh_hits += 1
                return Lookup(entry, tier, FRESH, age, False, False)
            self._stale_hits += 1
            return Lookup(entry, tier, STALE, age, False, False)
        self._stale_hits += 1
        if entry.no_stale:
            return Lookup(entry, tier, STALE, age, False, False)
        staleness = age - entry.lifetime
        return Lookup(entry, tier, STALE, age, staleness <= entry.swr, staleness <= entry.sie)

    @staticmethod
    def _request_allows(headers: Headers, entry: CacheEntry, age: float) -> bool:
        """Request directives (§5.2.1), only with ``honor_request_cache_control``."""
        cc = joined(headers, "cache-control")
        if cc is None:
            return True
        d = parse_cache_control(cc)
        if d.no_cache:
            return False
        if d.max_age is not None and age > d.max_age:
            return False
        return d.min_fresh is None or entry.lifetime - age >= d.min_fresh

    # -- store / validate ------------------------------------------------------------

    def store(
        self,
        key: str,
        req: Request,
        resp: Response,
        request_time: float,
        response_time: float,
        *,
        tag: str = "",
    ) -> CacheEntry | None:
        """Store ``resp`` (the origin's answer to ``req``) if RFC 9111 §3 allows it.

        Returns the new entry (ready for ``serve``), or None when policy forbids storing.
        An entry too large for every tier's admission limit is still returned, but not
        kept (counted in ``statistics().not_stored``). A ``no-store`` or ``private``
        response also removes the stored variant it would have replaced. The entry
        replaces any stored variant that ``req`` selects (§4.1).
        """
        p = self._policy
        # One pass over the response's lines reads the fields ``store`` needs and gathers
        # the stored lines (§3.1: without hop-by-hop fields and Age; Connection-listed
        # fields are dropped below).
        stored: list[Any] = []
        cc, date, expires, lm, etag, age, vary_v, conn, tfields = _read_fields(
            resp.headers, self._indexed, self._targeted_indexed, stored
        )
        dt = _directives_of(cc, tfields, p)
        d, targeted = dt
        vary = _vary_names_of(vary_v)
        if not _storable(req, resp.status, expires is not None, d, targeted, vary is None):
            self._not_stored += 1
            if d.no_store or d.private:
                self._remove_variant(key, req.headers)
            return None
        named: frozenset[str] = NOT_STORED
        if conn is not None:
            named = named | {t.strip().lower() for t in conn.split(",")}
            stored = [h for h in stored if h[0] not in named]
        names = vary or ()
        rh = req.headers
        values = tuple([_vary_value(rh, n) for n in names]) if names else ()
        entry = _build_entry(
            resp.status,
            stored,
            resp.body,
            resp.size,
            request_time,
            response_time,
            names,
            values,
            tag,
            p,
            dt,
            None if date is None or "date" in named else date,
            None if expires is None or "expires" in named else expires,
            None if lm is None or "last-modified" in named else lm,
            None if etag is None or "etag" in named else etag,
            date,
            age,
        )
        if self._put_variant(key, rh, entry):
            self._stores += 1
        else:
            self._not_stored += 1
        return entry

    def _current(self, key: str) -> list[CacheEntry] | None:
        entries = _get(self._memory, key)
        if entries is None and self._disk is not None:
            entries = _get(self._disk, key)
        return entries

    def _put_variant(self, key: str, req_headers: Headers, entry: CacheEntry) -> bool:
        old = self._current(key)
        if old:
            keep = [e for e in old if not _variant_matches(e, req_headers)]
            new = [entry, *keep[: self._policy.max_variants - 1]]
        else:
            new = [entry]
        ok = _put(self._memory, key, new, entry.tag)
        if self._disk is not None:
            ok = _put(self._disk, key, new, entry.tag) or ok
        return ok

    def _remove_variant(self, key: str, req_headers: Headers) -> None:
        old = self._current(key)
        if not old:
            return
        keep = [e for e in old if not _variant_matches(e, req_headers)]
        if len(keep) == len(old):
            return
        if keep:
            _put(self._memory, key, keep, keep[0].tag)
            if self._disk is not None:
                _put(self._disk, key, keep, keep[0].tag)
        else:
            self.invalidate(key)

    def conditional_headers(self, entry: CacheEntry | Lookup) -> list[tuple[str, str]]:
        """Headers that make the origin request a validation (RFC 9111 §4.3.1):
        ``If-None-Match`` with the stored ETag, else ``If-Modified-Since`` with the stored
        Last-Modified, else nothing (the request is then an ordinary fetch)."""
        e = entry.entry if isinstance(entry, Lookup) else entry
        if e.etag is not None:
            return [("if-none-match", e.etag)]
        if e.last_modified is not None:
            return [("if-modified-since", e.last_modified)]
        return []

    def revalidated(
        self,
        key: str,
        lookup_or_entry: Lookup | CacheEntry,
        resp304: Response,
        request_time: float,
        response_time: float,
    ) -> CacheEntry:
        """Merge a 304 into the entry that was validated (an entry of this cache; RFC 9111
        §4.3.4) and store it.

        The 304's fields replace the stored ones (§3.2) and the entry's age starts again
        from this exchange. Returns the updated entry, ready for ``serve``; if the merged
        headers now forbid storing (``no-store``/``private``), the variant is removed but
        the entry is still returned for this one response. (For a 200 answer to a
        validation, call ``store`` instead.)
        """
        old = lookup_or_entry.entry if isinstance(lookup_or_entry, Lookup) else lookup_or_entry
        received = resp304.headers
        merged = merge_304_headers(old.headers, received)
        # one pass over the merged lines for what ``_build_entry`` needs of them
        cc, date, expires, lm, etag, _, _, _, tfields = _read_fields(
            merged, self._indexed, self._targeted_indexed, None
        )
        dt = _directives_of(cc, tfields, self._policy)
        new = _build_entry(
            old.status,
            merged,
            old.body,
            old.size,
            request_time,
            response_time,
            old.vary_names,
            old.vary_values,
            old.tag,
            self._policy,
            dt,
            date,
            expires,
            lm,
            etag,
            get_header(received, "date"),
            get_header(received, "age"),
        )
        self._revalidations += 1
        d = dt[0]
        current = self._current(key) or []
        # Choice: the validated entry is updated even if the 304 carries a different ETag.
        keep = [e for e in current if e is not old and e.vary_values != old.vary_values]
        if d.no_store or d.private:
            if keep:
                _put(self._memory, key, keep, keep[0].tag)
                if self._disk is not None:
                    _put(self._disk, key, keep, keep[0].tag)
            else:
                self.invalidate(key)
            return new
        lst = [new, *keep[: self._policy.max_variants - 1]]
        _put(self._memory, key, lst, new.tag)
        if self._disk is not None:
            _put(self._disk, key, lst, new.tag)
        return new

    # -- serve -----------------------------------------------------------------------

    def serve(
        self,
        entry: CacheEntry | Lookup,
        now: float,
        req: Request | None = None,
        fields: FrozenHeaders | None = None,
    ) -> Response:
        """The response to send from cache: stored status, headers and body plus ``Age``.

        With ``req``: a HEAD gets an empty body (``size`` 0; stored Content-Length kept),
        and a client's ``If-None-Match``/``If-Modified-Since`` that the stored response
        satisfies yields a 304 (RFC 9111 §4.3.2), and a GET with one satisfiable byte
        ``Range`` (and a matching ``If-Range``, if any) of a stored 200 yields a 206 with
        ``Content-Range`` (an unsatisfiable one a 416). Metadata entries give ``body=None`` and
        the stored ``size``. The caller adds X-Cache and Via, and frames the body.

        ``fields`` (default: the entry's headers) are the header lines of the stored
        response itself, the answer whose status is the entry's (a GET, or a HEAD): a
        caller that rewrites some stored fields on every such answer passes its rewrite,
        kept from one hit to the next. The 304, 206 and 416 answers, whose status is never
        a stored one, are always built from the entry's headers.
        """
        e = entry.entry if isinstance(entry, Lookup) else entry
        age = e.initial_age + (now - e.response_time)
        a = "0" if age <= 0 else str(int(age)) if age < DELTA_MAX else str(DELTA_MAX)
        if req is not None:
            conditional = ranged = False
            for h in req.headers:
                if h[0] in _SERVE_FIELDS:  # mostly none: one set test per line
                    k = h[0]
                    if k == "range":
                        ranged = True
                    else:
                        conditional = True
            if conditional and _not_modified(e, req):
                hs = [h for h in e.headers if h[0] in _304_FIELDS]
                hs.append(("age", a))
                return Response(304, hs, b"", 0)
            if req.method == "HEAD":
                return Response(e.status, [*(e.headers if fields is None else fields), ("age", a)], b"", 0)
            if ranged and e.status == 200 and req.method == "GET":
                rng = _range_request(e, req)
                if rng is not None:
                    return _partial(e, rng, a)
        return Response(e.status, [*(e.headers if fields is None else fields), ("age", a)], e.body, e.size)

    def stale_if_error_ok(self, entry: CacheEntry | Lookup, now: float) -> bool:
        """Whether ``stale-if-error`` allows serving ``entry`` at ``now`` after an origin
        error (connection failure, timeout, 500/502/503/504; RFC 5861 §4)."""
        e = entry.entry if isinstance(entry, Lookup) else entry
        if e.no_stale or e.sie < 0:
            return False
        return e.initial_age + (now - e.response_time) - e.lifetime <= e.sie

    # -- invalidation and purge -------------------------------------------------------

    def invalidate(self, key: str) -> bool:
        """Remove every variant stored under ``key`` from both tiers; whether any tier
        held it."""
        self._invalidations += 1
        removed = self._memory.delete(key)
        if self._disk is not None:
            removed = self._disk.delete(key) or removed
        return removed

    def invalidate_after(self, key_for: Callable[[str], str], req: Request, resp: Response) -> list[str]:
        """RFC 9111 §4.4: after an unsafe method with a 2xx/3xx response, invalidate the
        target URI and the same-host ``Location``/``Content-Location`` URIs.

        Args:
            key_for: maps an origin-form target (``/path?query``, of ``req``'s host) to
                the cache key the node uses for it.
            req, resp: the request forwarded and the origin's response.

        Returns:
            The keys invalidated (empty for safe methods or error responses).
        """
        if req.method in SAFE_METHODS or not 200 <= resp.status < 400:
            return []
        host = req.host
        target = req.path + ("?" + req.query if req.query else "")
        targets = [target]
        base = "http://" + (host or "localhost") + target
        for name in ("location", "content-location"):
            v = get_header(resp.headers, name)
            if v is None or not v.strip():
                continue
            try:
                u = urlsplit(urljoin(base, v.strip()))
            except ValueError:
                continue
            if (u.hostname or "") != (host or "localhost"):
                continue  # §4.4: never invalidate another host's URIs
            t = (u.path or "/") + ("?" + u.query if u.query else "")
            if t not in targets:
                targets.append(t)
        keys = []
        for t in targets:
            k = key_for(t)
            self.invalidate(k)
            keys.append(k)
        return keys

    def purge_tag(self, tag: str) -> int:
        """Remove every key stored with ``tag`` (a site) from both tiers; returns how many
        distinct keys were removed."""
        keys = set(self._memory.purge_tag(tag))
        if self._disk is not None:
            keys.update(self._disk.purge_tag(tag))
        return len(keys)

    def clear(self) -> None:
        self._memory.clear()
        if self._disk is not None:
            self._disk.clear()

    def statistics(self) -> CacheStats:
        return CacheStats(
            lookups=self._lookups,
            hits=self._fresh_hits + self._stale_hits,
            fresh_hits=self._fresh_hits,
            stale_hits=self._stale_hits,
            misses=self._lookups - self._fresh_hits - self._stale_hits,
            stores=self._stores,
            not_stored=self._not_stored,
            revalidations=self._revalidations,
            invalidations=self._invalidations,
            memory=TierStats(self._memory_hits, self._memory.statistics()),
            disk=TierStats(self._disk_hits, self._disk.statistics()) if self._disk is not None else None,
        )
