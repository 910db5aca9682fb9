"""RFC 9111 policy tests for edgesim.cache: synchronous, time is the ``now`` argument."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from email.utils import formatdate

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgesim.cache import (
    DELTA_MAX,
    FRESH,
    STALE,
    CachePolicy,
    DiskStore,
    HttpCache,
    Lookup,
    MemoryStore,
    MetadataStore,
    _fixdate,
    _parse_date_forms,
    is_storable,
    merge_304_headers,
    parse_age,
    parse_byte_range,
    parse_cache_control,
    parse_http_date,
    parse_targeted_cache_control,
)
from edgesim.http import Headers, Request, Response

T0 = 1_700_000_000.0  # Unix time: Date headers are compared with `now`
KEY = "site|d1|/a"


def date(t: float) -> str:
    return formatdate(t, usegmt=True)


def get(headers: Headers | None = None, method: str = "GET", target: str = "/a") -> Request:
    # Every cache-tests request carries these; they must change nothing.
    base = [("host", "example.com"), ("cache-control", "nothing-to-see-here"), ("pragma", "foo")]
    return Request(method, target, base + (headers or []))


def resp(headers: Headers, status: int = 200, body: bytes = b"hello", *, dated: bool = True) -> Response:
    hs = list(headers)
    if dated and not any(k == "date" for k, _ in hs):
        hs.append(("date", date(T0)))
    return Response(status, hs, body)


def cache(**policy: object) -> HttpCache:
    return HttpCache(MemoryStore(1 << 20), policy=CachePolicy(**policy))  # type: ignore[arg-type]


def stored(c: HttpCache, headers: Headers, *, req: Request | None = None, status: int = 200) -> bool:
    return c.store(KEY, req or get(), resp(headers, status), T0, T0) is not None


def hit(c: HttpCache, key: str, req: Request, now: float) -> Lookup:
    lk = c.lookup(key, req, now)
    assert lk is not None, "expected a cache hit"
    return lk


def state_at(c: HttpCache, now: float, req: Request | None = None) -> str | None:
    lk = c.lookup(KEY, req or get(), now)
    return None if lk is None else lk.state


# --- the two gates of the cache-tests suite -------------------------------------------------


def test_no_freshness_no_validator_is_not_stored() -> None:
    c = cache()
    assert not stored(c, [], status=201)
    assert state_at(c, T0 + 1) is None


def test_max_age_fresh_then_stale() -> None:
    c = cache()
    assert stored(c, [("cache-control", "max-age=10")])
    assert state_at(c, T0 + 9.9) == FRESH
    assert state_at(c, T0 + 10) == STALE


# --- freshness lifetime (§4.2.1, §4.2.2) ------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "fresh_at", "stale_at"),
    [
        ([("cache-control", "max-age=3600, s-maxage=1")], 0.5, 1.5),  # s-maxage wins (shared)
        ([("cache-control", "s-maxage=1, max-age=3600")], 0.5, 1.5),
        ([("cache-control", "max-age=3600"), ("cache-control", "s-maxage=1")], 0.5, 1.5),
        ([("cache-control", "max-age=1, s-maxage=3600")], 3000, 3601),
        ([("cache-control", "max-age=100"), ("expires", date(T0 - 7200))], 50, 101),  # max-age beats Expires
        ([("cache-control", "max-age=100"), ("expires", "0")], 50, 101),
        ([("expires", date(T0 + 100))], 50, 101),  # Expires - Date
        ([("expires", date(T0 + 300)), ("date", date(T0 + 400))], None, 0),  # Expires before Date
        ([("cache-control", "MaX-aGe=100")], 50, 101),  # case-insensitive names
        ([("cache-control", "foobar, max-age=100")], 50, 101),
        ([("cache-control", 'max-age="100"')], 50, 101),  # quoted value accepted
        ([("cache-control", "max-age=003600")], 3000, 3601),
        ([("cache-control", "max-age=100, max-age=1")], 50, 101),  # first occurrence wins
        ([("cache-control", "max-age=1"), ("cache-control", "max-age=100")], 0.5, 1.5),
        ([("cache-control", "max-age=99999999999")], 10**9, None),  # clamps to 2^31
    ],
)
def test_freshness_lifetime(headers: Headers, fresh_at: float | None, stale_at: float | None) -> None:
    c = cache()
    assert stored(c, headers)
    if fresh_at is not None:
        assert state_at(c, T0 + fresh_at) == FRESH
    if stale_at is not None:
        assert state_at(c, T0 + stale_at) == STALE


@pytest.mark.parametrize(
    "cc",
    [
        "max-age=-3600",
        "max-age=0",
        "max-age=a3600",
        "max-age= 3600",
        'extension="max-age=3600", max-age=1',
        'max-age=1, extension="max-age=3600"',
        "max-age='3600'",
    ],
)
def test_invalid_or_hidden_max_age_is_not_fresh(cc: str) -> None:
    c = cache()
    c.store(KEY, get(), resp([("cache-control", cc)]), T0, T0)
    assert state_at(c, T0 + 2) in (None, STALE)


def test_space_before_equals_is_an_unknown_directive() -> None:
    assert parse_cache_control("max-age =3600").max_age is None


def test_max_age_zero_beats_expires() -> None:
    c = cache()
    assert stored(c, [("cache-control", "max-age=0"), ("expires", date(T0 + 3600))])
    assert state_at(c, T0) == STALE


@pytest.mark.parametrize(
    "expires",
    [
        "0",
        "Thu, 18 Aug 2050 02:01:18 UTC",
        "Thu, 18 Aug 2050 02:01:18 AEST",
        "Thu, 18 Aug 50 02:01:18 GMT",
        "Thu 18 Aug 2050 02:01:18 GMT",
        "Thu, 18  Aug  2050 02:01:18 GMT",
        "Thu, 18-Aug-2050 02:01:18 GMT",
        "Thu, 18 Aug 2050 02.01.18 GMT",
        "Thu, 18 Aug 2050 2:01:18 GMT",
    ],
)
def test_invalid_expires_means_stale(expires: str) -> None:
    assert parse_http_date(expires) is None
    c = cache()
    assert stored(c, [("expires", expires)])  # storable (Expires present), but already expired
    assert state_at(c, T0) == STALE


@pytest.mark.parametrize(
    "value",
    [
        "Thu, 18 Aug 2050 02:01:18 GMT",
        "THU, 18 AUG 2050 02:01:18 gMT",
        "Thursday, 18-Aug-50 02:01:18 GMT",
        "Thu Aug 18 02:01:18 2050",
    ],
)
def test_http_date_forms(value: str) -> None:
    assert parse_http_date(value) == 2544400878.0
    assert parse_http_date("Thu Aug  8 02:01:18 2050") == 2544400878.0 - 10 * 86400


# IMF-fixdates and near misses: any day number (Feb 30, day 00, year 0000), hour, minute
# and second (24:00, 60 s), other cases and letters, other separators
_DAY = st.sampled_from(["Mon", "Tue", "wed", "THU", "Fri", "sat", "Sun", "Fry", "Mo,"])
_MONTH = st.sampled_from(
    ["Jan", "feb", "MAR", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec", "Foo"]
)
_TWO = st.integers(min_value=0, max_value=99).map(lambda n: f"{n:02d}") | st.sampled_from(
    ["1 ", " 1", "x1", "٣4"]
)
_YEAR = st.integers(min_value=0, max_value=9999).map(lambda n: f"{n:04d}") | st.sampled_from(["19 4", "+994"])
_GMT = st.sampled_from(["GMT", "gmt", "GmT", "UTC", "GMX"])
_SEP = st.sampled_from([" ", " ", " ", "-", "  "])


@given(_DAY, _TWO, _MONTH, _YEAR, _TWO, _TWO, _TWO, _GMT, _SEP, st.sampled_from([",", ",", ";"]))
def test_fixdate_fast_path_agrees_with_the_expressions(
    day: str, dd: str, mon: str, year: str, hh: str, mm: str, ss: str, gmt: str, sep: str, comma: str
) -> None:
    v = f"{day}{comma} {dd}{sep}{mon} {year} {hh}:{mm}:{ss} {gmt}"
    want = _parse_date_forms(v)
    fast = _fixdate(v)
    assert fast is None or fast == want  # where it answers, the same answer
    assert parse_http_date(v) == want
    if want is not None and len(v) == 29 and v.isascii():
        assert fast == want  # and it answers every valid ASCII fixdate


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("Thu, 29 Feb 1900 00:00:00 GMT", False),  # century: no leap day
        ("Tue, 29 Feb 2000 12:00:00 GMT", True),  # but every 400 years
        ("Mon, 29 Feb 2100 00:00:00 GMT", False),
        ("Sat, 29 Feb 2020 23:59:60 GMT", True),  # a leap second reads as :59
        ("Fri, 29 Feb 2019 00:00:00 GMT", False),
        ("Sun, 31 Apr 2024 00:00:00 GMT", False),
        ("Mon, 01 Jan 0001 00:00:00 GMT", True),
        ("Sat, 01 Jan 0000 00:00:00 GMT", False),
        ("Fri, 31 Dec 9999 24:00:00 GMT", False),
    ],
)
def test_fixdate_calendar_edges(value: str, valid: bool) -> None:
    want = _parse_date_forms(value)
    assert (want is not None) == valid
    assert _fixdate(value) == want


@given(st.integers(min_value=-62_135_596_800, max_value=253_402_300_799))
def test_fixdate_fast_path_reads_formatted_dates(t: int) -> None:
    # every second from year 1 to 9999 (leap days included), as an IMF-fixdate
    d = datetime.fromtimestamp(t, UTC)
    v = f"{d:%a}, {d.day:02d} {d:%b} {d.year:04d} {d:%H:%M:%S} GMT"
    assert _fixdate(v) == float(t) == _parse_date_forms(v)
    if t >= 0:
        assert v == formatdate(t, usegmt=True)


def test_invalid_date_uses_response_time() -> None:
    c = cache()
    assert stored(c, [("date", "foo"), ("expires", date(T0 + 10))])
    assert state_at(c, T0 + 5) == FRESH


def test_heuristic_freshness_ten_percent_capped() -> None:
    c = cache()
    assert stored(c, [("last-modified", date(T0 - 1000))])
    assert state_at(c, T0 + 99) == FRESH
    assert state_at(c, T0 + 101) == STALE
    c = cache()
    assert stored(c, [("last-modified", date(T0 - 10**8))])
    assert state_at(c, T0 + 86399) == FRESH
    assert state_at(c, T0 + 86401) == STALE


@pytest.mark.parametrize("status", [200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501])
def test_heuristically_cacheable_statuses(status: int) -> None:
    c = cache()
    assert stored(c, [("last-modified", date(T0 - 86400))], status=status)
    assert state_at(c, T0 + 60) == FRESH


@pytest.mark.parametrize("status", [201, 202, 302, 403, 500, 502, 503, 504, 599])
def test_other_statuses_need_explicit_freshness(status: int) -> None:
    c = cache()
    assert not stored(c, [("last-modified", date(T0 - 86400))], status=status)
    assert stored(c, [("cache-control", "max-age=100")], status=status)
    assert state_at(c, T0 + 50) == FRESH


def test_public_allows_heuristic_for_any_status() -> None:
    c = cache()
    assert stored(c, [("last-modified", date(T0 - 86400)), ("cache-control", "public")], status=599)
    assert state_at(c, T0 + 60) == FRESH


def test_no_heuristic_when_explicit_expiry_present() -> None:
    c = cache()
    assert stored(c, [("expires", date(T0 - 5000)), ("last-modified", date(T0 - 100000))])
    assert state_at(c, T0) == STALE


@pytest.mark.parametrize("status", [206, 304, 100])
def test_partial_304_and_interim_are_not_stored(status: int) -> None:
    assert not stored(cache(), [("cache-control", "max-age=100")], status=status)


def test_must_understand() -> None:
    cc = [("cache-control", "max-age=3600, no-store, must-understand")]
    assert stored(cache(), cc, status=200)
    assert not stored(cache(), cc, status=599)


# --- age (§4.2.3, §5.1) ---------------------------------------------------------------------


def test_age_arithmetic_incoming_age_and_response_delay() -> None:
    c = cache()
    # Request sent at T0-2, response (Date T0, Age 30) received at T0: delay 2.
    e = c.store(KEY, get(), resp([("cache-control", "max-age=100"), ("age", "30")]), T0 - 2, T0)
    assert e is not None
    assert e.initial_age == 32  # corrected_age_value = 30 + 2 > apparent_age 0
    lk = c.lookup(KEY, get(), T0 + 10)
    assert lk is not None and lk.age == 42 and lk.state == FRESH
    assert state_at(c, T0 + 68.1) == STALE
    assert c.serve(lk, T0 + 10.9).header("age") == "42"


def test_apparent_age_from_date() -> None:
    c = cache()
    e = c.store(KEY, get(), resp([("cache-control", "max-age=100"), ("date", date(T0 - 50))]), T0, T0)
    assert e is not None and e.initial_age == 50
    assert state_at(c, T0 + 49) == FRESH
    assert state_at(c, T0 + 51) == STALE


def test_age_makes_expires_response_stale() -> None:
    # freshness-expires-age-slow-date: Date -10, Expires +10 (lifetime 20), Age 25.
    c = cache()
    hs = [("date", date(T0 - 10)), ("expires", date(T0 + 10)), ("age", "25")]
    assert stored(c, hs)
    assert state_at(c, T0) == STALE


@pytest.mark.parametrize(
    ("lines", "value"),
    [
        (["abc"], 0),
        (["-7200"], 0),
        (["7200.0"], 0),
        (["2147483647"], 2147483647),
        (["2147483649"], DELTA_MAX),
        (["9" * 5000], DELTA_MAX),
        (["7200, 0"], 7200),
        (["0, 7200"], 0),
        (["7200", "0"], 7200),
        (["0", "7200"], 0),
        (["7200;foo=bar"], 7200),
        ([], 0),
    ],
)
def test_parse_age(lines: list[str], value: int) -> None:
    assert parse_age([("age", v) for v in lines]) == value


def test_served_age_is_integer_and_replaces_stored_age() -> None:
    c = cache()
    c.store(KEY, get(), resp([("cache-control", "max-age=100"), ("age", "5")]), T0, T0)
    r = c.serve(hit(c, KEY, get(), T0 + 2.7), T0 + 2.7)
    assert [v for k, v in r.headers if k == "age"] == ["7"]
    assert r.header("date") == date(T0)  # Date is not rewritten


# --- storability (§3, §3.5) -----------------------------------------------------------------


@pytest.mark.parametrize(
    "cc",
    ["no-store", "No-StOrE", "max-age=10000, no-store", "private, max-age=3600", 'private="x", max-age=60'],
)
def test_no_store_and_private_are_not_stored(cc: str) -> None:
    c = cache()
    assert not stored(c, [("cache-control", cc), ("expires", date(T0 + 10000))])
    assert state_at(c, T0 + 1) is None


def test_request_no_store_prevents_storing() -> None:
    req = Request("GET", "/a", [("cache-control", "no-store")])
    assert not is_storable(req, resp([("cache-control", "max-age=60")]))


_LINES = st.lists(
    st.tuples(
        st.sampled_from(
            ["cache-control", "cdn-cache-control", "expires", "vary", "date", "connection", "etag", "x-a"]
        ),
        st.sampled_from(
            [
                "max-age=60",
                "no-store",
                "private",
                "public",
                "s-maxage=0",
                "must-understand, no-store",
                "*",
                "accept",
                "x-a",
                date(T0 + 60),
                "cdn-cache-control",
                '"v1"',
                "",
            ]
        ),
    ),
    max_size=6,
)


@given(_LINES, st.sampled_from([200, 203, 206, 301, 404, 500, 599]), st.booleans())
def test_is_storable_is_what_store_decides(lines: Headers, status: int, targeted: bool) -> None:
    # the function and the cache read the same fields the same way
    policy = CachePolicy(targeted_fields=("cdn-cache-control", "date")) if targeted else CachePolicy()
    r = resp(lines, status)
    c = HttpCache(MemoryStore(1 << 20), policy=policy)
    assert is_storable(get(), r, policy) == (c.store(KEY, get(), r, T0, T0) is not None)


def test_no_store_response_removes_the_variant_it_replaces() -> None:
    c = cache()
    assert stored(c, [("cache-control", "max-age=1")])
    assert not stored(c, [("cache-control", "no-store")])
    assert state_at(c, T0 + 5) is None


def test_pragma_is_ignored() -> None:
    c = cache()
    assert stored(c, [("cache-control", "max-age=3600"), ("pragma", "no-cache")])
    assert state_at(c, T0 + 1, get([("pragma", "no-cache")])) == FRESH


@pytest.mark.parametrize(
    ("cc", "ok"),
    [
        ("max-age=100000", False),
        ("max-age=3600, public", True),
        ("max-age=3600, must-revalidate", True),
        ("s-maxage=3600", True),
    ],
)
def test_authorization(cc: str, ok: bool) -> None:
    c = cache()
    assert stored(c, [("cache-control", cc)], req=get([("authorization", "FOO")])) is ok
    assert (state_at(c, T0 + 1) == FRESH) is ok


def test_other_methods_are_not_stored_or_looked_up() -> None:
    c = cache()
    assert not stored(c, [("cache-control", "max-age=60")], req=get(method="POST"))
    assert not stored(c, [("cache-control", "max-age=60")], req=get(method="HEAD"))
    assert stored(c, [("cache-control", "max-age=60")])
    assert c.lookup(KEY, get(method="POST"), T0) is None
    lk = c.lookup(KEY, get(method="HEAD"), T0)
    assert lk is not None
    head = c.serve(lk, T0, get(method="HEAD"))
    assert head.status == 200 and head.body == b"" and head.size == 0


# --- no-cache, must-revalidate, stale serving (§4.2.4, RFC 5861) -------------------------------


def test_no_cache_is_stored_but_always_revalidated() -> None:
    c = cache()
    assert stored(c, [("cache-control", "max-age=10000, no-cache"), ("etag", '"abcd"')])
    lk = c.lookup(KEY, get(), T0 + 1)
    assert lk is not None and lk.state == STALE
    assert not lk.can_serve_stale_while_revalidate and not lk.can_serve_stale_if_error
    assert c.conditional_headers(lk) == [("if-none-match", '"abcd"')]


def test_stale_while_revalidate_window() -> None:
    c = cache()
    assert stored(c, [("cache-control", "max-age=1, stale-while-revalidate=4")])
    lk = c.lookup(KEY, get(), T0 + 3)
    assert lk is not None and lk.state == STALE and lk.can_serve_stale_while_revalidate
    assert not lk.can_serve_stale_if_error
    lk = c.lookup(KEY, get(), T0 + 5.5)
    assert lk is not None and lk.state == STALE and not lk.can_serve_stale_while_revalidate


def test_stale_if_error_window() -> None:
    c = cache()
    assert stored(c, [("cache-control", "max-age=2, stale-if-error=60")])
    lk = c.lookup(KEY, get(), T0 + 10)
    assert lk is not None and lk.can_serve_stale_if_error and not lk.can_serve_stale_while_revalidate
    assert c.stale_if_error_ok(lk, T0 + 62)
    assert not c.stale_if_error_ok(lk, T0 + 62.5)


@pytest.mark.parametrize(
    "extra", ["must-revalidate", "proxy-revalidate", "s-maxage=2", "no-cache", 'no-cache="set-cookie"']
)
def test_stale_serving_refused(extra: str) -> None:
    c = cache()
    assert stored(
        c, [("cache-control", f"max-age=2, stale-while-revalidate=600, stale-if-error=600, {extra}")]
    )
    lk = c.lookup(KEY, get(), T0 + 5)
    assert lk is not None and lk.state == STALE
    assert not lk.can_serve_stale_while_revalidate
    assert not lk.can_serve_stale_if_error
    assert not c.stale_if_error_ok(lk, T0 + 5)


def test_no_blanket_stale_policy() -> None:
    c = cache()
    assert stored(c, [("cache-control", "max-age=2")])
    lk = c.lookup(KEY, get(), T0 + 5)
    assert lk is not None and not lk.can_serve_stale_if_error and not lk.can_serve_stale_while_revalidate


# --- request Cache-Control policy option ----------------------------------------------------------


def test_request_cache_control_ignored_by_default() -> None:
    c = cache()
    assert stored(c, [("cache-control", "max-age=100")])
    assert state_at(c, T0 + 1, get([("cache-control", "no-cache")])) == FRESH
    assert state_at(c, T0 + 1, get([("cache-control", "max-age=0")])) == FRESH


@pytest.mark.parametrize(
    ("cc", "st"), [("no-cache", STALE), ("max-age=0", STALE), ("min-fresh=200", STALE), ("", FRESH)]
)
def test_request_cache_control_honoured_when_enabled(cc: str, st: str) -> None:
    c = cache(honor_request_cache_control=True)
    assert stored(c, [("cache-control", "max-age=100")])
    assert state_at(c, T0 + 1, Request("GET", "/a", [("cache-control", cc)])) == st


# --- CDN-Cache-Control (RFC 9213) -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "fresh_at", "stale_at"),
    [
        ([("cdn-cache-control", "max-age=3600")], 3000, 3601),
        ([("cache-control", "max-age=1"), ("cdn-cache-control", "max-age=3600")], 3000, 3601),
        ([("cache-control", "max-age=3600"), ("cdn-cache-control", "max-age=1")], 0.5, 1.5),
        ([("cdn-cache-control", "max-age=0"), ("expires", date(T0 + 10000))], None, 0),
        ([("cdn-cache-control", "max-age=3600"), ("expires", date(T0 - 10000))], 3000, 3601),
        ([("cache-control", "no-store"), ("cdn-cache-control", "max-age=10000")], 9000, None),
        ([("cdn-cache-control", "foobar, max-age=3600")], 3000, None),
        ([("cdn-cache-control", "max-age=99999999999")], 10**9, None),
    ],
)
def test_cdn_cache_control_replaces_cache_control(
    headers: Headers, fresh_at: float | None, stale_at: float | None
) -> None:
    c = cache()
    assert stored(c, headers)
    if fresh_at is not None:
        assert state_at(c, T0 + fresh_at) == FRESH
    if stale_at is not None:
        assert state_at(c, T0 + stale_at) == STALE
    e = hit(c, KEY, get(), T0).entry
    assert [h for h in e.headers if h[0] == "cdn-cache-control"] == [
        h for h in headers if h[0] == "cdn-cache-control"
    ]


@pytest.mark.parametrize("cdn", ["private", "no-store"])
def test_cdn_cache_control_forbids_storing(cdn: str) -> None:
    hs = [("cdn-cache-control", cdn), ("cache-control", "max-age=10000"), ("expires", date(T0 + 10000))]
    assert not stored(cache(), hs)


def test_cdn_no_cache_means_revalidate() -> None:
    c = cache()
    stored(c, [("cdn-cache-control", "no-cache"), ("cache-control", "max-age=10000")])
    assert state_at(c, T0 + 1) in (None, STALE)


@pytest.mark.parametrize(
    "cdn", ["max-age=10000, &&&&&", 'max-age="10000"', "max-age", "MaX-aGe=10", "max-age=1,"]
)
def test_invalid_cdn_cache_control_falls_back(cdn: str) -> None:
    assert parse_targeted_cache_control(cdn) is None
    assert not stored(cache(), [("cdn-cache-control", cdn), ("cache-control", "no-store")])


def test_cdn_cache_control_ages_with_incoming_age() -> None:
    c = cache()
    assert stored(c, [("cdn-cache-control", "max-age=3600"), ("age", "7200")])
    assert state_at(c, T0) == STALE


def test_targeted_fields_are_configurable() -> None:
    c = cache(targeted_fields=("edgesim-cache-control", "cdn-cache-control"))
    hs = [("cdn-cache-control", "max-age=1"), ("edgesim-cache-control", "max-age=100")]
    assert stored(c, hs)
    assert state_at(c, T0 + 50) == FRESH


def test_store_joins_repeated_field_lines() -> None:
    """``store``'s single pass over the response: list fields' lines are joined (a
    targeted field's too), Connection lines add up, and of Date the first line counts."""
    c = cache()
    hs = [
        ("cdn-cache-control", "max-age=100"),
        ("connection", "a"),
        ("cdn-cache-control", "s-maxage=10"),
        ("connection", "b"),
        ("a", "1"),
        ("b", "2"),
        ("c", "3"),
        ("date", date(T0 - 5)),
        ("date", date(T0 - 1000)),
    ]
    e = c.store(KEY, get(), resp(hs), T0, T0)
    assert e is not None and e.lifetime == 10.0 and e.initial_age == 5.0
    assert [k for k, _ in e.headers] == ["cdn-cache-control", "cdn-cache-control", "c", "date", "date"]


def test_a_targeted_field_may_be_one_store_reads() -> None:
    # an odd policy: Cache-Control itself as the targeted field (RFC 9213 syntax)
    c = cache(targeted_fields=("cache-control",))
    hs = [("cache-control", "max-age=100"), ("cache-control", "s-maxage=20"), ("expires", date(T0 + 5000))]
    e = c.store(KEY, get(), resp(hs), T0, T0)
    assert e is not None and e.lifetime == 20.0 and e.no_stale
    # not a valid structured field: then Cache-Control applies as such (an invalid max-age)
    e = c.store(KEY, get(), resp([("cache-control", "max-age=1.5x"), ("expires", date(T0 + 50))]), T0, T0)
    assert e is not None and e.lifetime == 0.0


# --- Vary (§4.1) ------------------------------------------------------------------------------------

VARY_FOO = [("cache-control", "max-age=5000"), ("vary", "Foo")]


def test_vary_match_and_mismatch() -> None:
    c = cache()
    assert stored(c, VARY_FOO, req=get([("foo", "1")]))
    assert state_at(c, T0 + 1, get([("foo", "1"), ("other", "2")])) == FRESH
    assert state_at(c, T0 + 1, get([("foo", "2")])) is None
    assert state_at(c, T0 + 1, get()) is None


def test_vary_absent_in_stored_request() -> None:
    c = cache()
    assert stored(c, VARY_FOO)
    assert state_at(c, T0 + 1) == FRESH
    assert state_at(c, T0 + 1, get([("foo", "1")])) is None


def test_vary_multiple_fields() -> None:
    c = cache()
    hs = [("cache-control", "max-age=5000"), ("vary", "Foo, Bar, Baz")]
    assert stored(c, hs, req=get([("foo", "1"), ("bar", "abc"), ("baz", "789")]))
    assert state_at(c, T0 + 1, get([("foo", "1"), ("baz", "789"), ("bar", "abc")])) == FRESH
    assert state_at(c, T0 + 1, get([("foo", "1"), ("baz", "789"), ("bar", "abcde")])) is None
    assert state_at(c, T0 + 1, get([("foo", "1"), ("bar", "abc")])) is None


@pytest.mark.parametrize("vary", ["*", "*, *", ", *", "*, Foo", "Foo, *"])
def test_vary_star_never_matches(vary: str) -> None:
    c = cache()
    c.store(KEY, get([("foo", "1")]), resp([("cache-control", "max-age=5000"), ("vary", vary)]), T0, T0)
    assert state_at(c, T0 + 1, get([("foo", "1")])) is None


def test_vary_star_on_separate_lines() -> None:
    c = cache()
    hs = [("cache-control", "max-age=5000"), ("vary", ""), ("vary", "*")]
    c.store(KEY, get(), resp(hs), T0, T0)
    assert state_at(c, T0 + 1) is None


def test_vary_variants_coexist_and_replace() -> None:
    c = cache()
    r1 = Response(200, [("cache-control", "max-age=5000"), ("vary", "Foo")], b"one")
    r2 = Response(200, [("cache-control", "max-age=5000"), ("vary", "Foo")], b"two")
    r3 = Response(200, [("cache-control", "max-age=5000"), ("vary", "Foo")], b"three")
    c.store(KEY, get([("foo", "1")]), r1, T0, T0)
    c.store(KEY, get([("foo", "2")]), r2, T0, T0)
    assert hit(c, KEY, get([("foo", "1")]), T0).entry.body == b"one"
    assert hit(c, KEY, get([("foo", "2")]), T0).entry.body == b"two"
    c.store(KEY, get([("foo", "1")]), r3, T0, T0)
    assert hit(c, KEY, get([("foo", "1")]), T0).entry.body == b"three"
    assert len(c._memory.get(KEY) or []) == 2


def test_vary_variant_count_is_bounded() -> None:
    c = cache(max_variants=3)
    for i in range(10):
        c.store(KEY, get([("foo", str(i))]), resp(VARY_FOO), T0, T0)
    assert state_at(c, T0, get([("foo", "9")])) == FRESH
    assert state_at(c, T0, get([("foo", "7")])) == FRESH
    assert state_at(c, T0, get([("foo", "6")])) is None


@pytest.mark.parametrize(
    ("name", "first", "second"),
    [
        ("foo", [("foo", "1, 2")], [("foo", "1"), ("foo", "2")]),
        ("foo", [("foo", "1,2")], [("foo", " 1, 2 ")]),
        ("accept-language", [("accept-language", "en, de")], [("accept-language", "eN, De")]),
        ("accept-language", [("accept-language", "en, de")], [("accept-language", " en ,   de")]),
    ],
)
def test_vary_normalisation(name: str, first: Headers, second: Headers) -> None:
    c = cache()
    assert stored(c, [("cache-control", "max-age=5000"), ("vary", name)], req=get(first))
    assert state_at(c, T0 + 1, get(second)) == FRESH


# --- validation (§4.3) ----------------------------------------------------------------------------


def test_conditional_headers_prefer_etag() -> None:
    c = cache()
    lm = date(T0 - 100)
    e = c.store(
        KEY, get(), resp([("cache-control", "max-age=1"), ("etag", 'W/"x"'), ("last-modified", lm)]), T0, T0
    )
    assert e is not None
    assert c.conditional_headers(e) == [("if-none-match", 'W/"x"')]
    e = c.store(KEY, get(), resp([("cache-control", "max-age=1"), ("last-modified", lm)]), T0, T0)
    assert e is not None
    assert c.conditional_headers(e) == [("if-modified-since", lm)]
    e = c.store(KEY, get(), resp([("cache-control", "max-age=1")]), T0, T0)
    assert e is not None and c.conditional_headers(e) == []


def test_304_merges_headers_and_refreshes() -> None:
    c = cache()
    hs = [
        ("cache-control", "max-age=2"),
        ("etag", '"e1"'),
        ("test-header", "old"),
        ("content-length", "5"),
        ("content-type", "text/plain"),
    ]
    assert stored(c, hs)
    lk = c.lookup(KEY, get(), T0 + 10)
    assert lk is not None and lk.state == STALE
    r304 = Response(
        304,
        [
            ("date", date(T0 + 10)),
            ("cache-control", "max-age=3600"),
            ("etag", '"e1"'),
            ("test-header", "new"),
            ("content-length", "0"),
            ("connection", "x-hop"),
            ("x-hop", "1"),
            ("keep-alive", "timeout=5"),
        ],
        b"",
    )
    e = c.revalidated(KEY, lk, r304, T0 + 10, T0 + 10)
    hmap = dict(e.headers)
    assert hmap["test-header"] == "new"
    assert hmap["content-length"] == "5"  # never updated from a 304
    assert hmap["content-type"] == "text/plain"
    assert hmap["cache-control"] == "max-age=3600"
    assert "x-hop" not in hmap and "keep-alive" not in hmap and "connection" not in hmap
    assert e.body == b"hello"
    lk2 = c.lookup(KEY, get(), T0 + 100)
    assert lk2 is not None and lk2.state == FRESH and lk2.entry.body == b"hello"
    assert c.serve(lk2, T0 + 100).header("test-header") == "new"
    assert c.statistics().revalidations == 1


def test_304_without_date_uses_receipt_time() -> None:
    c = cache()
    assert stored(c, [("cache-control", "max-age=2"), ("etag", '"e"')])
    lk = hit(c, KEY, get(), T0 + 1000)
    e = c.revalidated(KEY, lk, Response(304, [], b""), T0 + 1000, T0 + 1000)
    assert e.initial_age == 0
    assert state_at(c, T0 + 1001) == FRESH


def test_304_with_no_store_removes_entry() -> None:
    c = cache()
    assert stored(c, [("cache-control", "max-age=2"), ("etag", '"e"')])
    lk = hit(c, KEY, get(), T0 + 10)
    e = c.revalidated(KEY, lk, Response(304, [("cache-control", "no-store")], b""), T0 + 10, T0 + 10)
    assert e.body == b"hello"
    assert state_at(c, T0 + 10) is None


def test_merge_304_helper_keeps_unlisted_fields() -> None:
    merged = merge_304_headers([("a", "1"), ("b", "2"), ("b", "3")], [("b", "4"), ("age", "9")])
    assert merged == [("a", "1"), ("b", "4")]


def test_200_to_validation_replaces_entry() -> None:
    c = cache()
    assert stored(c, [("cache-control", "max-age=2"), ("etag", '"e1"')])
    c.store(
        KEY,
        get(),
        Response(200, [("cache-control", "max-age=100"), ("etag", '"e2"')], b"new"),
        T0 + 5,
        T0 + 5,
    )
    lk = hit(c, KEY, get(), T0 + 6)
    assert lk.state == FRESH and lk.entry.body == b"new"
    assert len(c._memory.get(KEY) or []) == 1


def test_client_conditionals_answered_from_cache() -> None:
    c = cache()
    hs = [("cache-control", "max-age=1000"), ("etag", '"abcdef"'), ("last-modified", date(T0 - 3000))]
    assert stored(c, hs)
    lk = hit(c, KEY, get(), T0 + 1)
    r = c.serve(lk, T0 + 1, get([("if-none-match", '"1234", "abcdef"')]))
    assert r.status == 304 and r.body == b"" and r.header("etag") == '"abcdef"' and r.header("age") == "1"
    assert c.serve(lk, T0 + 1, get([("if-none-match", 'W/"abcdef"')])).status == 304
    assert c.serve(lk, T0 + 1, get([("if-none-match", '"zzz"')])).status == 200
    # If-None-Match takes precedence over If-Modified-Since.
    r = c.serve(lk, T0 + 1, get([("if-none-match", '"abcdef"'), ("if-modified-since", date(T0 - 10000))]))
    assert r.status == 304
    assert c.serve(lk, T0 + 1, get([("if-modified-since", date(T0 - 2000))])).status == 304
    assert c.serve(lk, T0 + 1, get([("if-modified-since", date(T0 - 4000))])).status == 200


def test_client_if_modified_since_without_last_modified_uses_date() -> None:
    c = cache()
    assert stored(c, [("cache-control", "max-age=1000")])
    lk = hit(c, KEY, get(), T0 + 1)
    assert c.serve(lk, T0 + 1, get([("if-modified-since", date(T0 - 3000))])).status == 200
    assert c.serve(lk, T0 + 1, get([("if-modified-since", date(T0))])).status == 304


# --- byte ranges served from a stored complete response (RFC 9110 §14) -------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("bytes=0-1", (0, 1)),
        ("bytes=1-", (1, 10)),
        ("bytes=-1", (10, 10)),
        ("bytes=-100", (0, 10)),
        ("bytes=5-100", (5, 10)),
        ("Bytes = 2-3", (2, 3)),
        ("bytes=0-1,", (0, 1)),  # empty list members are ignored
        ("bytes=11-", (-1, -1)),  # unsatisfiable: 416
        ("bytes=-0", (-1, -1)),
        ("bytes=3-2", None),  # invalid: ignored
        ("bytes=0-1, 3-4", None),  # several ranges: full response (choice)
        ("items=0-1", None),
        ("bytes=a-b", None),
        ("bytes=1", None),
        ("bytes", None),
    ],
)
def test_parse_byte_range(value: str, expected: tuple[int, int] | None) -> None:
    assert parse_byte_range(value, 11) == expected


def test_range_served_from_complete_stored_response() -> None:
    c = cache()
    assert c.store(
        KEY,
        get(),
        resp([("cache-control", "max-age=3600"), ("a", "1"), ("content-length", "11")], body=b"01234567890"),
        T0,
        T0,
    )
    lk = hit(c, KEY, get([("range", "bytes=0-1")]), T0 + 2)
    r = c.serve(lk, T0 + 2, get([("range", "bytes=0-1")]))
    assert r.status == 206 and r.body == b"01" and r.size == 2
    assert r.header("content-range") == "bytes 0-1/11" and r.header("content-length") == "2"
    assert r.header("a") == "1" and r.header("age") == "2"
    assert c.serve(lk, T0 + 2, get([("range", "bytes=1-")])).body == b"1234567890"
    assert c.serve(lk, T0 + 2, get([("range", "bytes=-1")])).body == b"0"
    # Unsatisfiable: 416 with the complete length.
    r = c.serve(lk, T0 + 2, get([("range", "bytes=20-")]))
    assert r.status == 416 and r.header("content-range") == "bytes */11" and r.body == b""
    # Ignored: other units, several ranges, HEAD; and no Range at all.
    for extra in ([("range", "items=0-1")], [("range", "bytes=0-1,4-5")], []):
        r = c.serve(lk, T0 + 2, get(extra))
        assert r.status == 200 and r.body == b"01234567890"
    assert c.serve(lk, T0 + 2, get([("range", "bytes=0-1")], method="HEAD")).status == 200
    # The stored entry itself is unchanged.
    assert c.serve(lk, T0 + 2).body == b"01234567890"


def test_range_not_applied_to_other_statuses_and_after_conditionals() -> None:
    c = cache()
    assert c.store(KEY, get(), resp([("cache-control", "max-age=3600")], status=404, body=b"missing"), T0, T0)
    assert c.serve(hit(c, KEY, get(), T0), T0, get([("range", "bytes=0-1")])).status == 404
    c = cache()
    assert stored(c, [("cache-control", "max-age=3600"), ("etag", '"x"')])
    lk = hit(c, KEY, get(), T0)
    # A satisfied If-None-Match wins over Range (RFC 9110 §13.2.2).
    assert c.serve(lk, T0, get([("range", "bytes=0-1"), ("if-none-match", '"x"')])).status == 304


def test_if_range() -> None:
    c = cache()
    hs = [("cache-control", "max-age=3600"), ("etag", '"v1"'), ("last-modified", date(T0 - 100))]
    assert stored(c, hs)
    lk = hit(c, KEY, get(), T0)

    def status(if_range: str) -> int:
        return c.serve(lk, T0, get([("range", "bytes=0-1"), ("if-range", if_range)])).status

    assert status('"v1"') == 206
    assert status('"v2"') == 200 and status('W/"v1"') == 200
    assert status(date(T0 - 100)) == 206  # Last-Modified 100 s before Date: strong
    assert status(date(T0 - 99)) == 200 and status("garbage") == 200
    # A weak ETag never matches If-Range.
    c = cache()
    assert stored(c, [("cache-control", "max-age=3600"), ("etag", 'W/"v1"')])
    lk = hit(c, KEY, get(), T0)
    assert c.serve(lk, T0, get([("range", "bytes=0-1"), ("if-range", 'W/"v1"')])).status == 200


def test_range_from_metadata_entry() -> None:
    c = HttpCache(MetadataStore(10_000))
    r = Response(200, [("cache-control", "max-age=100")], body=None, size=4000)
    assert c.store(KEY, get(), r, T0, T0) is not None
    served = c.serve(hit(c, KEY, get(), T0 + 1), T0 + 1, get([("range", "bytes=100-199")]))
    assert served.status == 206 and served.body is None and served.size == 100
    assert served.header("content-range") == "bytes 100-199/4000"


# --- hop-by-hop stripping (§3.1) ------------------------------------------------------------------


def test_hop_by_hop_and_connection_listed_fields_not_stored() -> None:
    c = cache()
    hs = [
        ("cache-control", "max-age=100000"),
        ("connection", "a, b"),
        ("a", "1"),
        ("b", "2"),
        ("c", "3"),
        ("keep-alive", "x"),
        ("proxy-authenticate", "x"),
        ("proxy-authentication-info", "x"),
        ("proxy-authorization", "x"),
        ("proxy-connection", "x"),
        ("te", "x"),
        ("transfer-encoding", "chunked"),
        ("upgrade", "x"),
        ("set-cookie", "a=c"),
        ("content-location", "/bar"),
        ("cdn-cache-control", "foo"),
    ]
    assert stored(c, hs)
    r = c.serve(hit(c, KEY, get(), T0 + 1), T0 + 1)
    names = {k for k, _ in r.headers}
    assert names == {
        "cache-control",
        "c",
        "set-cookie",
        "content-location",
        "cdn-cache-control",
        "date",
        "age",
    }


# --- invalidation (§4.4) --------------------------------------------------------------------------


def key_for(target: str) -> str:
    return "site|d1|" + target


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "M-SEARCH"])
def test_unsafe_method_invalidates(method: str) -> None:
    c = cache()
    for t in ("/a", "/b?x=1", "/c"):
        c.store(key_for(t), get(target=t), resp([("cache-control", "max-age=100000")]), T0, T0)
    req = Request(method, "/a", [("host", "example.com")])
    r = Response(201, [("location", "/b?x=1"), ("content-location", "http://example.com/c")], b"")
    keys = c.invalidate_after(key_for, req, r)
    assert keys == [key_for("/a"), key_for("/b?x=1"), key_for("/c")]
    for t in ("/a", "/b?x=1", "/c"):
        assert c.lookup(key_for(t), get(target=t), T0 + 1) is None


def test_relative_location_resolves_against_target() -> None:
    c = cache()
    req = Request("POST", "/dir/page", [("host", "example.com")])
    keys = c.invalidate_after(key_for, req, Response(200, [("location", "location_target")], b""))
    assert keys == [key_for("/dir/page"), key_for("/dir/location_target")]


def test_other_host_location_not_invalidated() -> None:
    c = cache()
    req = Request("PUT", "/a", [("host", "example.com")])
    keys = c.invalidate_after(key_for, req, Response(200, [("location", "http://evil.example/x")], b""))
    assert keys == [key_for("/a")]


@pytest.mark.parametrize(
    ("method", "status"), [("POST", 500), ("PUT", 404), ("GET", 200), ("HEAD", 200), ("OPTIONS", 200)]
)
def test_no_invalidation_for_errors_or_safe_methods(method: str, status: int) -> None:
    c = cache()
    assert stored(c, [("cache-control", "max-age=100000")])
    assert (
        c.invalidate_after(key_for, Request(method, "/a", [("host", "example.com")]), Response(status)) == []
    )
    assert state_at(c, T0 + 1) == FRESH


# --- tiers, statistics, purge -----------------------------------------------------------------------


def test_disk_tier_hit_is_promoted(tmp_path: object) -> None:
    disk = DiskStore(str(tmp_path), 1 << 20)
    try:
        mem = MemoryStore(1 << 20)
        c = HttpCache(mem, disk)
        assert c.store(KEY, get(), resp([("cache-control", "max-age=100")]), T0, T0, tag="site") is not None
        mem.clear()
        lk = c.lookup(KEY, get(), T0 + 1)
        assert lk is not None and lk.tier == "disk" and lk.entry.body == b"hello"
        lk = c.lookup(KEY, get(), T0 + 2)
        assert lk is not None and lk.tier == "memory"
        st = c.statistics()
        assert (st.lookups, st.hits, st.misses, st.memory.hits) == (2, 2, 0, 1)
        assert st.disk is not None and st.disk.hits == 1 and st.disk.store.keys == 1
        assert c.purge_tag("site") == 1
        assert c.lookup(KEY, get(), T0 + 3) is None
        assert c.statistics().misses == 1
    finally:
        disk.close()


def test_metadata_store_serves_sizes() -> None:
    c = HttpCache(MetadataStore(10_000))
    r = Response(200, [("cache-control", "max-age=100")], body=None, size=4000)
    assert c.store(KEY, get(), r, T0, T0) is not None
    served = c.serve(hit(c, KEY, get(), T0 + 1), T0 + 1)
    assert served.body is None and served.size == 4000
    c.store("k2", get(), Response(200, [("cache-control", "max-age=100")], body=None, size=4000), T0, T0)
    c.store("k3", get(), Response(200, [("cache-control", "max-age=100")], body=None, size=4000), T0, T0)
    st = c.statistics()
    assert st.memory.store.evictions == 1 and st.memory.store.used_bytes <= 10_000


def test_object_larger_than_memory_capacity_not_stored() -> None:
    c = HttpCache(MemoryStore(1000))
    assert c.store(KEY, get(), resp([("cache-control", "max-age=100")], body=b"x" * 2000), T0, T0) is not None
    assert c.lookup(KEY, get(), T0) is None
    assert c.statistics().not_stored == 1 and c.statistics().stores == 0


def test_clear() -> None:
    c = cache()
    assert stored(c, [("cache-control", "max-age=100")])
    c.clear()
    assert state_at(c, T0) is None


def test_core_imports_no_io_modules() -> None:
    code = "import sys, edgesim.cache; print({'trio', 'diskcache'} & set(sys.modules))"
    out = subprocess.run(
        [sys.executable, "-P", "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "trio" not in out and "diskcache" not in out
