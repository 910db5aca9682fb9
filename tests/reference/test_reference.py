"""Tests of the pure-Python reference matcher (edgesim._reference).

The worked cases are those of the research spec §4 that concern parsing and
matching (copied inline; files, shadowing and HTTP responses are not the
matcher's business, so only the matcher's outcome is checked: kind, rule and
target before any request query is passed through).
"""

from __future__ import annotations

import random
import time

import pytest

from edgesim._reference import (
    DENIED,
    MATCH,
    NO_MATCH,
    SEV_ERROR,
    SEV_WARNING,
    ReferenceEngine,
    canonicalize_path,
    form_decode,
    query_escape,
)

Ctx = tuple[bytes, bytes, frozenset[bytes], frozenset[bytes]]


def build(text: str | bytes, **limits: int) -> ReferenceEngine:
    eng = ReferenceEngine(**limits)
    eng.add_text(0, text.encode() if isinstance(text, str) else text)
    eng.compile()
    return eng


def ctx(
    country: str = "",
    language: str = "",
    cookies: tuple[str, ...] = (),
    roles: tuple[str, ...] = (),
) -> Ctx:
    return (
        country.encode(),
        language.encode(),
        frozenset(c.encode() for c in cookies),
        frozenset(r.encode() for r in roles),
    )


US_EN = ctx("US", "en")  # the spec's default request context


def diags(eng: ReferenceEngine) -> list[tuple[str, int, int]]:
    return [(code, line, column) for _, code, _, line, column, _ in eng.diagnostics]


def errors(eng: ReferenceEngine) -> list[tuple[str, int, int]]:
    return [(c, ln, col) for sev, c, _, ln, col, _ in eng.diagnostics if sev == SEV_ERROR]


def warnings(eng: ReferenceEngine) -> list[tuple[str, int, int]]:
    return [(c, ln, col) for sev, c, _, ln, col, _ in eng.diagnostics if sev == SEV_WARNING]


# ---- §4 worked cases: matching ----------------------------------------------------

# (case, rules, url, context, (kind, rule, denied_by, target))
MATCH_CASES: list[tuple[int, str, str, Ctx, tuple[int, int, int, str]]] = [
    (1, "/home / 301", "/home", US_EN, (MATCH, 0, -1, "/")),
    (2, "/home /", "/home", US_EN, (MATCH, 0, -1, "/")),
    (3, "/a /b 301\n/a /c 302", "/a", US_EN, (MATCH, 0, -1, "/b")),
    (4, "/a /b 301", "/a/", US_EN, (MATCH, 0, -1, "/b")),
    (5, "/a/ /b 301", "/a", US_EN, (MATCH, 0, -1, "/b")),
    (6, "/a /b 301", "/A", US_EN, (NO_MATCH, -1, -1, "")),
    (7, "/a /b 301", "/a/index.html", US_EN, (NO_MATCH, -1, -1, "")),
    (8, "/a /b 301", "//a", US_EN, (NO_MATCH, -1, -1, "")),
    (
        9,
        "/news/* /blog/:splat",
        "/news/2004/01/10/my-story",
        US_EN,
        (MATCH, 0, -1, "/blog/2004/01/10/my-story"),
    ),
    (10, "/news/* /blog/:splat", "/news", US_EN, (MATCH, 0, -1, "/blog/")),
    (11, "/news/* /blog/:splat", "/news/", US_EN, (MATCH, 0, -1, "/blog/")),
    (12, "/news/* /blog/:splat", "/newsroom", US_EN, (NO_MATCH, -1, -1, "")),
    (13, "/news/* /blog/:splat", "/news/a/b/", US_EN, (MATCH, 0, -1, "/blog/a/b/")),
    (14, "/* /index.html 200", "/", US_EN, (MATCH, 0, -1, "/index.html")),
    (15, "/* /index.html 200", "/deep/link", US_EN, (MATCH, 0, -1, "/index.html")),
    (
        16,
        "/news/:year/:month/:date/:slug /blog/:year/:month/:date/:slug",
        "/news/2004/02/12/my-story",
        US_EN,
        (MATCH, 0, -1, "/blog/2004/02/12/my-story"),
    ),
    (
        17,
        "/news/:year/:month/:date/:slug /blog/:year/:month/:date/:slug",
        "/news/2004/02/12",
        US_EN,
        (NO_MATCH, -1, -1, ""),
    ),
    (
        18,
        "/news/:year/:month/:date/:slug /blog/:year/:month/:date/:slug",
        "/news/2004/02/12/my-story/extra",
        US_EN,
        (NO_MATCH, -1, -1, ""),
    ),
    (19, "/:a/:b /:b/:a 301", "/x/y/", US_EN, (MATCH, 0, -1, "/y/x")),
    (
        20,
        "/articles/:slug /articles/:slug/ 301",
        "/articles/foo/",
        US_EN,
        (MATCH, 0, -1, "/articles/foo/"),
    ),
    (21, "/a/item-:id /b/:id 301", "/a/item-5", US_EN, (NO_MATCH, -1, -1, "")),
    (22, "/a.b /x 301", "/axb", US_EN, (NO_MATCH, -1, -1, "")),
    (25, "/a* /x/:splat 301", "/abc/d", US_EN, (MATCH, 0, -1, "/x/bc/d")),
    (26, "/a/:i/:id /y/:id/:i 301", "/a/1/2", US_EN, (MATCH, 0, -1, "/y/2/1")),
    (27, "/a/:x/:y /y/:y/:x 301", "/a/:y/Q", US_EN, (MATCH, 0, -1, "/y/Q/:y")),
    (28, "/a/:s/* /y/:splat/:s 301", "/a/1/2", US_EN, (MATCH, 0, -1, "/y/2/1")),
    (29, "/a/:x /y/:xx 301", "/a/1", US_EN, (MATCH, 0, -1, "/y/:xx")),
    (30, "/caf%C3%A9 /b 301", "/caf%C3%A9", US_EN, (MATCH, 0, -1, "/b")),
    (31, "/caf%C3%A9 /b 301", "/caf%c3%a9", US_EN, (MATCH, 0, -1, "/b")),
    (32, "/admin/* /x 301", "/%61dmin/q", US_EN, (MATCH, 0, -1, "/x")),
    # §4.2 query parameters
    (33, "/store id=:id /blog/:id 301", "/store?id=my-post", US_EN, (MATCH, 0, -1, "/blog/my-post")),
    (
        34,
        "/store id=:id /blog/:id 301",
        "/store?id=my-post&utm=x",
        US_EN,
        (MATCH, 0, -1, "/blog/my-post"),
    ),
    (35, "/store id=:id /blog/:id 301", "/store", US_EN, (NO_MATCH, -1, -1, "")),
    (36, "/store id=:id /blog/:id 301", "/store?id=", US_EN, (MATCH, 0, -1, "/blog/")),
    (37, "/store id=:id /blog/:id 301", "/store?ID=1", US_EN, (NO_MATCH, -1, -1, "")),
    (38, "/store id=:id /blog/:id 301", "/store?id=1&id=2", US_EN, (MATCH, 0, -1, "/blog/2")),
    (39, "/s q=:q /search/:q 301", "/s?q=hello%20world", US_EN, (MATCH, 0, -1, "/search/hello+world")),
    (40, "/s q=:q /search/:q 301", "/s?q=a%2Fb", US_EN, (MATCH, 0, -1, "/search/a%2Fb")),
    (
        41,
        "/p a=:a b=:b /r/:a/:b 301\n/p a=:a /r/:a 301\n/p /r 301",
        "/p?b=2&a=1",
        US_EN,
        (MATCH, 0, -1, "/r/1/2"),
    ),
    (
        42,
        "/p a=:a b=:b /r/:a/:b 301\n/p a=:a /r/:a 301\n/p /r 301",
        "/p?a=1",
        US_EN,
        (MATCH, 1, -1, "/r/1"),
    ),
    (
        43,
        "/p a=:a b=:b /r/:a/:b 301\n/p a=:a /r/:a 301\n/p /r 301",
        "/p?c=3",
        US_EN,
        (MATCH, 2, -1, "/r"),
    ),
    (44, "/s v=on /on 301", "/s?v=ON", US_EN, (NO_MATCH, -1, -1, "")),
    (47, "/s/:id q=:id /p/:id 301", "/s/path?q=query", US_EN, (MATCH, 0, -1, "/p/path")),
    (48, "/foo / 302", "/foo?foo=1&foo=2&bar=1", US_EN, (MATCH, 0, -1, "/")),
    (49, "/test id=:id /?param=:id 302", "/test?id=1&x=2", US_EN, (MATCH, 0, -1, "/?param=1")),
    (
        50,
        "/api/* /.netlify/functions/f?foo=1 200",
        "/api/x?bar=2",
        US_EN,
        (MATCH, 0, -1, "/.netlify/functions/f?foo=1"),
    ),
    (51, "/a /b 301", "/a?x=1", US_EN, (MATCH, 0, -1, "/b")),
    # §4.3 conditions
    (52, "/ /anz 302 Country=au,nz", "/", ctx("NZ", "en"), (MATCH, 0, -1, "/anz")),
    (53, "/ /anz 302 Country=au,nz", "/", ctx("US", "en"), (NO_MATCH, -1, -1, "")),
    (54, "/ /anz 302 Country=AU", "/", ctx("au", "en"), (MATCH, 0, -1, "/anz")),
    (56, "/ /anz 302 country=au", "/", ctx("AU", "en"), (MATCH, 0, -1, "/anz")),
    (
        57,
        "/israel/* /israel/he/:splat 302 Language=he",
        "/israel/x",
        ctx("US", "he-IL"),
        (MATCH, 0, -1, "/israel/he/x"),
    ),
    # 58: Accept-Language "en-US,he;q=0.9": the effective tag is the first entry.
    (
        58,
        "/israel/* /israel/he/:splat 302 Language=he",
        "/israel/x",
        ctx("US", "en-US"),
        (NO_MATCH, -1, -1, ""),
    ),
    (59, "/ /zh 302 Language=zh-tw", "/", ctx("US", "zh-TW"), (MATCH, 0, -1, "/zh")),
    (59, "/ /zh 302 Language=zh-tw", "/", ctx("US", "zh"), (NO_MATCH, -1, -1, "")),
    # 60/61: the cookie overrides are resolved by the caller into the context.
    (60, "/ /en 302 Language=en", "/", ctx("US", "en"), (MATCH, 0, -1, "/en")),
    (61, "/ /us 302 Country=us", "/", ctx("us", "de"), (MATCH, 0, -1, "/us")),
    (62, "/ /il 302 Country=il Language=he", "/", ctx("IL", "en"), (NO_MATCH, -1, -1, "")),
    (63, "/x /y 302 Country=us Country=de", "/x", ctx("US", "en"), (NO_MATCH, -1, -1, "")),
    (
        64,
        "/* /legacy/:splat 200 Cookie=is_legacy,my_other_cookie",
        "/a",
        ctx("US", "en", cookies=("my_other_cookie",)),
        (MATCH, 0, -1, "/legacy/a"),
    ),
    # 65: a cookie with an empty value is not in the context's cookie names.
    (65, "/* /legacy/:splat 200 Cookie=is_legacy", "/a", US_EN, (NO_MATCH, -1, -1, "")),
    (
        66,
        "/* /legacy/:splat 200 Cookie=is_legacy",
        "/a",
        ctx("US", "en", cookies=("IS_LEGACY",)),
        (NO_MATCH, -1, -1, ""),
    ),
    (
        68,
        "/admin/* /admin/:splat 200! Role=admin",
        "/admin/a",
        ctx("US", "en", roles=("admin",)),
        (MATCH, 0, -1, "/admin/a"),
    ),
    (
        69,
        "/admin/* /admin/:splat 200! Role=admin",
        "/admin/a",
        ctx("US", "en", roles=("editor",)),
        (DENIED, 0, -1, ""),
    ),
    (
        70,
        "/admin/* /admin/:splat 200! Role=admin\n/admin/* /login 302!",
        "/admin/a",
        US_EN,
        (MATCH, 1, 0, "/login"),
    ),
    (
        71,
        "/gated /gated 200! Role=admin",
        "/gated",
        ctx("US", "en", roles=("admin",)),
        (MATCH, 0, -1, "/gated"),
    ),
    (72, "/admin/* 200! Role=admin", "/admin/x", US_EN, (DENIED, 0, -1, "")),
    (73, "/x /y 200 Role=admin Country=us", "/x", ctx("DE", "en", roles=("admin",)), (NO_MATCH, -1, -1, "")),
    (74, "/x /y 200 Role=admin Country=us", "/x", ctx("US", "en"), (DENIED, 0, -1, "")),
    (75, "/admin/* 200! Role=admin", "/admin/secret.html", US_EN, (DENIED, 0, -1, "")),
    # §4.4
    (84, "/a /b 307", "/a", US_EN, (MATCH, 0, -1, "/b")),
    (86, "/admin/* 200!", "/admin/panel", US_EN, (MATCH, 0, -1, "/admin/panel")),
    (
        88,
        "/api/* https://api.example.com/:splat 200",
        "/api/v1/users?x=1",
        US_EN,
        (MATCH, 0, -1, "https://api.example.com/v1/users"),
    ),
    (
        90,
        "http://blog.example.com/* https://www.example.com/blog/:splat 301!",
        "http://blog.example.com/2020/post",
        US_EN,
        (MATCH, 0, -1, "https://www.example.com/blog/2020/post"),
    ),
    (
        91,
        "http://blog.example.com/* https://www.example.com/blog/:splat 301!",
        "https://blog.example.com/2020/post",
        US_EN,
        (NO_MATCH, -1, -1, ""),
    ),
    (
        92,
        "http://blog.example.com/* https://www.example.com/blog/:splat 301!",
        "http://BLOG.example.com/x",
        US_EN,
        (MATCH, 0, -1, "https://www.example.com/blog/x"),
    ),
    (
        93,
        "https://site.netlify.app/* https://site.com/:splat 301!\n/a /b 302",
        "https://site.com/a",
        US_EN,
        (MATCH, 1, -1, "/b"),
    ),
    (94, "/a /b#frag 302", "/a?x=1", US_EN, (MATCH, 0, -1, "/b#frag")),
    (95, "/a /b 302 # note", "/a", US_EN, (MATCH, 0, -1, "/b")),
    (96, "/a /b 302 Country=us#x", "/a", ctx("US", "en"), (NO_MATCH, -1, -1, "")),
    (97, "\ufeff/a /b 302", "/a", US_EN, (MATCH, 0, -1, "/b")),
]


@pytest.mark.parametrize(
    ("case", "rules", "url", "context", "expected"),
    MATCH_CASES,
    ids=[f"case{c[0]}-{i}" for i, c in enumerate(MATCH_CASES)],
)
def test_worked_match_cases(
    case: int, rules: str, url: str, context: Ctx, expected: tuple[int, int, int, str]
) -> None:
    eng = build(rules)
    kind, rule, denied_by, target = eng.match(url.encode(), context)
    assert (kind, rule, denied_by, target.decode()) == expected
    assert not errors(eng), case


# ---- §4 worked cases: diagnostics --------------------------------------------------

# (case, rules, expected diagnostics (code, line, column), rules accepted)
DIAG_CASES: list[tuple[int, str, list[tuple[str, int, int]], int]] = [
    (20, "/articles/:slug /articles/:slug/ 301", [("TRAILING_SLASH_ONLY", 1, 17)], 1),
    (23, "/a/*/b /x/:splat 301", [("SPLAT_NOT_AT_END", 1, 1)], 0),
    (24, "/a/*.html /x/:splat 301", [("SPLAT_NOT_AT_END", 1, 1)], 0),
    (29, "/a/:x /y/:xx 301", [("UNBOUND_REFERENCE", 1, 7)], 1),
    (45, "/path foo /foo.html 200", [("BAD_QUERY_PAIR", 1, 7)], 0),
    (55, "/ /anz 302 Country=au, nz", [("BAD_CONDITION", 1, 12)], 0),
    (56, "/ /anz 302 country=au", [("NONCANONICAL_KEY", 1, 12)], 1),
    (67, "/x /y 302 Foo=bar", [("UNKNOWN_CONDITION", 1, 11)], 0),
    (71, "/gated /gated 200! Role=admin", [], 1),
    (84, "/a /b 307", [("STATUS_NOT_ON_NETLIFY", 1, 7)], 1),
    (85, "/d /e 999", [("BAD_STATUS", 1, 7)], 0),
    (87, "/admin/* 301", [("MISSING_TO", 1, 1)], 0),
    (97, "\ufeff/a /b 302", [("BOM", 1, 1)], 1),
    (98, "/store /blog/:id id=:id 301", [("BAD_STATUS", 1, 18)], 0),
    (101, "/.netlify/from /to", [("RESERVED_PATH", 1, 1)], 0),
    (102, "/from /to not_a_status", [("BAD_STATUS", 1, 11)], 0),
    (103, "/m/scge/legal", [("MISSING_TO", 1, 1)], 0),
]


@pytest.mark.parametrize(
    ("case", "rules", "expected", "accepted"),
    DIAG_CASES,
    ids=[f"case{c[0]}" for c in DIAG_CASES],
)
def test_worked_diagnostic_cases(
    case: int, rules: str, expected: list[tuple[str, int, int]], accepted: int
) -> None:
    eng = ReferenceEngine()
    assert eng.add_text(0, rules.encode()) == accepted
    assert diags(eng) == expected


def test_case_46_toml_query_with_empty_value() -> None:
    eng = ReferenceEngine()
    assert eng.add_fields(1, 1, b"F/path\0T/foo.html\0S200\0Qfoo\x1f\0") == 1
    eng.compile()
    assert eng.match(b"/path?foo", None)[0] == NO_MATCH
    assert eng.match(b"/path?foo=", None) == (MATCH, 0, -1, b"/foo.html")
    assert eng.match(b"/path?foo=1", None)[0] == NO_MATCH


def test_case_89_toml_proxy_with_headers_and_signing() -> None:
    eng = ReferenceEngine()
    record = b"F/search\0Thttps://api.mysearch.com\0S200\0!\0HX-From\x1fNetlify\0GAPI_TOKEN\0"
    assert eng.add_fields(1, 3, record) == 1
    eng.compile()
    assert eng.diagnostics == []
    rule = eng.rules[0]
    assert (rule.status, rule.force, rule.headers, rule.signed) == (
        200,
        True,
        [("X-From", "Netlify")],
        "API_TOKEN",
    )
    assert (rule.source, rule.line) == (1, 3)
    assert eng.match(b"/search", None) == (MATCH, 0, -1, b"https://api.mysearch.com")


def test_case_99_redirects_before_toml() -> None:
    eng = ReferenceEngine()
    eng.add_text(0, b"/x /from-file 302\n")
    eng.add_fields(1, 1, b"F/x\0T/from-toml\0")
    eng.compile()
    assert eng.match(b"/x", None) == (MATCH, 0, -1, b"/from-file")


def test_case_100_no_dedupe() -> None:
    eng = ReferenceEngine()
    eng.add_text(0, b"/one /two\n/one /four\n")
    eng.add_fields(1, 1, b"F/one\0T/two\0")
    eng.add_fields(1, 2, b"F/one\0T/three\0")
    eng.compile()
    assert len(eng.rules) == 4
    assert eng.match(b"/one", None) == (MATCH, 0, -1, b"/two")


def test_case_86_forward_rule_fields() -> None:
    eng = build("/admin/* 200!")
    rule = eng.rules[0]
    assert (rule.from_text, rule.to_text, rule.status, rule.force) == ("/admin/*", "/admin/:splat", 200, True)
    assert rule.dynamic and not rule.target_static


# ---- parsing details ---------------------------------------------------------------


def test_status_default_force_and_rule_info() -> None:
    eng = build("/a /b\n/c /d 302!\n/e/:x k=:v /f/:x?k=:v 200 Country=us Role=r Sign=S")
    a, c, e = eng.rules
    assert (a.status, a.force, c.status, c.force) == (301, False, 302, True)
    assert not a.dynamic and a.target_static and not a.has_query and not a.has_conditions
    assert e.dynamic and not e.target_static and e.has_query and e.has_conditions and e.has_role
    assert e.signed == "S" and e.host is None and e.scheme is None
    assert (e.source, e.line) == (0, 3)
    # Sign on a non-proxy rule warns at the Sign token.
    assert warnings(eng) == [("HEADERS_ON_NON_PROXY", 3, 45)]


def test_host_rule_fields_and_normalisation() -> None:
    eng = build("HTTPS://Example.COM.:443/x /y 302\nhttp://a.b:8080 /z 302")
    first, second = eng.rules
    assert (first.scheme, first.host, first.from_text) == (
        "https",
        "example.com",
        "HTTPS://Example.COM.:443/x",
    )
    assert (second.scheme, second.host) == ("http", "a.b:8080")
    assert warnings(eng) == [("EMPTY_FROM_PATH", 2, 1)]
    assert eng.match(b"https://example.com/x", None)[:2] == (MATCH, 0)
    assert eng.match(b"https://EXAMPLE.com.:443/x#f", None)[:2] == (MATCH, 0)
    assert eng.match(b"/x", None)[0] == NO_MATCH  # origin-form never matches host rules
    assert eng.match(b"http://a.b:8080", None)[:2] == (MATCH, 1)
    assert eng.match(b"http://a.b/", None)[0] == NO_MATCH


def test_crlf_tabs_and_comments() -> None:
    eng = build("# comment\r\n\t/a\t/b  302 \r\n   \r\n/c /d # /e 200\n#/x /y\n")
    assert [(r.from_text, r.to_text, r.status, r.line) for r in eng.rules] == [
        ("/a", "/b", 302, 2),
        ("/c", "/d", 301, 4),
    ]
    assert eng.diagnostics == []


def test_query_pairs_between_from_and_to() -> None:
    eng = build("/a x=1 y=:y /b/:y 302 Cookie=c")
    assert eng.match(b"/a?y=q&x=1", ctx(cookies=("c",))) == (MATCH, 0, -1, b"/b/q")
    assert eng.match(b"/a?y=q&x=2", ctx(cookies=("c",)))[0] == NO_MATCH
    assert eng.match(b"/a?y=q&x=1", None)[0] == NO_MATCH


def test_query_literal_is_form_decoded() -> None:
    eng = build("/s q=a%20b /hit 302\n/t q=a+b /hit 302")
    for url in (b"/s?q=a+b", b"/s?q=a%20b", b"/t?q=a%20b"):
        assert eng.match(url, None)[0] == MATCH, url
    assert eng.match(b"/s?q=a%2520b", None)[0] == NO_MATCH


def test_query_items_without_equals_and_empty_items() -> None:
    eng = build("/q id=:id /r/:id 302")
    assert eng.match(b"/q?&x=1&&id=3", None)[3] == b"/r/3"
    assert eng.match(b"/q?id", None)[0] == NO_MATCH
    assert eng.match(b"/q?id=a;b", None)[3] == b"/r/a%3Bb"
    assert eng.match(b"/q?id=%zz%", None)[3] == b"/r/%25zz%25"  # invalid escapes kept literally
    assert eng.match(b"/q?id=caf%C3%A9~x", None)[3] == b"/r/caf%C3%A9~x"


def test_language_primary_subtag() -> None:
    eng = build("/ /en 302 Language=en\n/x /us 302 Language=en-US")
    assert eng.match(b"/", ctx(language="EN-gb"))[0] == MATCH
    assert eng.match(b"/", ctx(language="en"))[0] == MATCH
    assert eng.match(b"/", ctx(language="english"))[0] == NO_MATCH
    assert eng.match(b"/", ctx(language=""))[0] == NO_MATCH
    assert eng.match(b"/x", ctx(language="en-us"))[0] == MATCH
    assert eng.match(b"/x", ctx(language="en"))[0] == NO_MATCH


def test_repeated_cookie_keys_and() -> None:
    eng = build("/x /y 302 Cookie=a Cookie=b")
    assert eng.match(b"/x", ctx(cookies=("a",)))[0] == NO_MATCH
    assert eng.match(b"/x", ctx(cookies=("a", "b")))[0] == MATCH


def test_role_denial_bookkeeping() -> None:
    rules = "/m/* 200! Role=member\n/m/* 200! Role=staff Country=de\n/m/* /login 302!"
    eng = build(rules)
    assert eng.match(b"/m/x", None) == (MATCH, 2, 0, b"/login")
    assert eng.match(b"/m/x", ctx("DE", roles=("member",))) == (MATCH, 0, -1, b"/m/x")
    # Role held but Country fails: no denial from rule 1.
    assert eng.match(b"/m/x", ctx("US", roles=("staff",))) == (MATCH, 2, 0, b"/login")
    only = build("/m/* 200! Role=member\n/m/* 200! Role=staff")
    assert only.match(b"/m/x", None) == (DENIED, 0, -1, b"")
    assert only.match(b"/m/x", ctx(roles=("staff",))) == (MATCH, 1, 0, b"/m/x")
    assert only.match(b"/other", None) == (NO_MATCH, -1, -1, b"")


def test_splat_variants() -> None:
    eng = build("/x/ab* /p/:splat 302\n/:k/* /q/:k/:splat 302\n/* /all/:splat 302")
    assert eng.match(b"/x/ab", None) == (MATCH, 0, -1, b"/p/")
    assert eng.match(b"/x/abc/d/", None) == (MATCH, 0, -1, b"/p/c/d/")
    assert eng.match(b"/x/ab/d", None) == (MATCH, 0, -1, b"/p/d")
    assert eng.match(b"/x/a", None) == (MATCH, 1, -1, b"/q/x/a")
    assert eng.match(b"/k", None) == (MATCH, 1, -1, b"/q/k/")
    assert eng.match(b"/", None) == (MATCH, 2, -1, b"/all/")
    assert eng.match(b"//evil", None) == (MATCH, 2, -1, b"/all//evil")


def test_colon_prefix_is_literal_before_splat() -> None:
    eng = build("/x/:ab* /p/:splat 302")
    assert eng.match(b"/x/:abc", None) == (MATCH, 0, -1, b"/p/c")
    assert eng.match(b"/x/zz", None)[0] == NO_MATCH
    assert not warnings(eng)


def test_placeholder_named_splat_wins() -> None:
    eng = build("/a/:splat/* /b/:splat 302")
    assert eng.match(b"/a/one/two", None)[3] == b"/b/one"


def test_substitution_single_pass_and_unbound() -> None:
    eng = build("/a/:x /b/:x:x/:xy/::x/:/:splat 302")
    assert eng.match(b"/a/v", None)[3] == b"/b/vv/:xy/:v/:/:splat"


def test_path_captures_are_canonical() -> None:
    eng = build("/a/:x/* /b/:x/:splat 302")
    assert eng.match(b"/a/%7e%2f%C3%A9 x/%41%2a", None)[3] == b"/b/~%2F%C3%A9%20x/A%2A"
    assert eng.match("/a/é/ü".encode(), None)[3] == b"/b/%C3%A9/%C3%BC"


def test_capture_into_host() -> None:
    eng = build("/go/:sub https://:sub.example.com/ 302")
    assert eng.match(b"/go/www", None)[3] == b"https://www.example.com/"
    assert warnings(eng) == [("OPEN_REDIRECT", 1, 10)]


def test_trailing_slash_and_empty_segments() -> None:
    eng = build("/a/ /hit 302\n/:x /one 302\n/ /root 302")
    assert eng.match(b"/a//", None)[0] == NO_MATCH
    assert eng.match(b"/a/", None)[1] == 0
    assert eng.match(b"/q/", None) == (MATCH, 1, -1, b"/one")
    assert eng.match(b"/", None)[1] == 2
    assert eng.match(b"https://h.example", None)[1] == 2
    assert eng.match(b"https://h.example?x=1", None)[1] == 2


def test_origin_form_with_fragment_and_query() -> None:
    eng = build("/a k=:k /b/:k 302")
    assert eng.match(b"/a?k=1#frag&k=2", None)[3] == b"/b/1"


# ---- every diagnostic the engine produces, at its line and column -------------------

DIAGNOSTICS: list[tuple[str, bytes, list[tuple[str, int, int]]]] = [
    ("missing-to", b"\n  /only", [("MISSING_TO", 2, 3)]),
    ("missing-to-forward-3xx", b"/x/* 302", [("MISSING_TO", 1, 1)]),
    ("missing-to-forward-no-slash-star", b"/x* 200", [("MISSING_TO", 1, 1)]),
    ("bad-target-none", b"/a b c 302", [("BAD_TARGET", 1, 4)]),
    ("bad-target-no-host", b"/a x=1 https:///p 302", [("BAD_TARGET", 1, 8)]),
    ("bad-target-no-host-query", b"/a http://?x 302", [("BAD_TARGET", 1, 4)]),
    ("bad-status-suffix", b"/a /b 301x", [("BAD_STATUS", 1, 7)]),
    ("bad-status-plus", b"/a +301", [("BAD_STATUS", 1, 4)]),
    ("bad-status-minus", b"/a -1", [("BAD_STATUS", 1, 4)]),
    ("bad-status-bangs", b"/a /b 301!!", [("BAD_STATUS", 1, 7)]),
    ("bad-status-page", b"/a/* 404page", [("BAD_STATUS", 1, 6)]),
    ("bad-status-range", b"/a /b 300", [("BAD_STATUS", 1, 7)]),
    ("bad-status-huge", b"/a /b " + b"9" * 5000, [("BAD_STATUS", 1, 7)]),
    ("bad-from-scheme", b"ftp://h/x /b", [("BAD_FROM", 1, 1)]),
    ("bad-from-host-star", b"http://*/x /b", [("BAD_FROM", 1, 1)]),
    ("bad-from-host-placeholder", b"https://:sub.example.com/x /b", [("BAD_FROM", 1, 1)]),
    ("bad-from-empty-host", b"https:///x /b", [("BAD_FROM", 1, 1)]),
    ("bad-from-empty-port", b"https://h:/x /b", [("BAD_FROM", 1, 1)]),
    ("bad-from-query-in-host", b"https://h?x=1 /b", [("BAD_FROM", 1, 1)]),
    ("bad-from-protocol-relative", b"  //h/x /b", [("BAD_FROM", 1, 3)]),
    ("bad-from-wins-over-missing-to", b"ftp://x", [("BAD_FROM", 1, 1)]),
    ("reserved", b"/.netlify /b", [("RESERVED_PATH", 1, 1)]),
    ("reserved-encoded", b"/%2Enetlify/functions/x /b", [("RESERVED_PATH", 1, 1)]),
    ("reserved-host", b"https://h.com/.netlify/x /b", [("RESERVED_PATH", 1, 1)]),
    ("not-reserved", b"/.netlifyx /b", []),
    ("splat-mid", b"/a/*/ /b", [("SPLAT_NOT_AT_END", 1, 1)]),
    ("bad-query-pair-empty-key", b"/a =1 /b", [("BAD_QUERY_PAIR", 1, 4)]),
    ("query-before-to-error-order", b"/a bad /b 999 Foo=1", [("BAD_QUERY_PAIR", 1, 4)]),
    ("target-before-status", b"/a http:// 999", [("BAD_TARGET", 1, 4)]),
    ("status-before-conditions", b"/a /b 999 Foo=1", [("BAD_STATUS", 1, 7)]),
    ("unknown-condition", b"/a /b 302 Country=us Foo=bar", [("UNKNOWN_CONDITION", 1, 22)]),
    ("unknown-before-empty-value", b"/a /b 302 Foo=", [("UNKNOWN_CONDITION", 1, 11)]),
    ("bad-condition-no-equals", b"/a /b 302 Country", [("BAD_CONDITION", 1, 11)]),
    ("bad-condition-empty-key", b"/a /b 302 =us", [("BAD_CONDITION", 1, 11)]),
    ("bad-condition-empty-value", b"/a /b 302 Country=", [("BAD_CONDITION", 1, 11)]),
    ("bad-condition-leading-comma", b"/a /b 302 Country=,au", [("BAD_CONDITION", 1, 11)]),
    ("bad-condition-double-comma", b"/a /b 302 Role=a,,b", [("BAD_CONDITION", 1, 11)]),
    ("bad-condition-second-equals", b"/a /b 302 Cookie=a=b", [("BAD_CONDITION", 1, 11)]),
    ("bad-condition-sign-list", b"/a https://x/ 200 Sign=A,B", [("BAD_CONDITION", 1, 19)]),
    ("forward-conditions", b"/a/* 200 Language=", [("BAD_CONDITION", 1, 10)]),
    ("self-redirect", b"/a /a 302", [("SELF_REDIRECT", 1, 4)]),
    ("self-redirect-canonical", b"/%61/:x /a/:x 301", [("SELF_REDIRECT", 1, 9)]),
    ("trailing-slash-only", b"/a/ /a 301", [("TRAILING_SLASH_ONLY", 1, 5)]),
    ("no-self-redirect-for-200", b"/a /a 200", []),
    ("no-self-redirect-with-query", b"/a /a?x=1 301", []),
    ("no-self-redirect-host-rule", b"https://h/a /a 301", []),
    ("status-not-on-netlify-308", b"/a /b 308!", [("STATUS_NOT_ON_NETLIFY", 1, 7)]),
    ("status-not-on-netlify-204", b"/a /b 204", [("STATUS_NOT_ON_NETLIFY", 1, 7)]),
    ("status-not-on-netlify-forward", b"/a/* 299", [("STATUS_NOT_ON_NETLIFY", 1, 6)]),
    (
        "noncanonical-keys",
        b"/a https://x/ 200 ROLE=a language=en COOKIE=c signed=V",
        [("NONCANONICAL_KEY", 1, 19), ("NONCANONICAL_KEY", 1, 26), ("NONCANONICAL_KEY", 1, 38)],
    ),
    ("sign-canonical", b"/a https://x/ 200 Sign=V signed=W", []),
    (
        "placeholder-name",
        b"/a/:id.json/:x-y/:id.json /b 302",
        [("PLACEHOLDER_NAME", 1, 1), ("PLACEHOLDER_NAME", 1, 1), ("DUPLICATE_PLACEHOLDER", 1, 1)],
    ),
    ("duplicate-placeholder", b"/a/:x/:x /y/:x 302", [("DUPLICATE_PLACEHOLDER", 1, 1)]),
    (
        "unbound-reference",
        b"/a/:x q=:q /b/:x/:q/:y/:_z/:9/:splat/:y 302",
        [("UNBOUND_REFERENCE", 1, 12), ("UNBOUND_REFERENCE", 1, 12), ("UNBOUND_REFERENCE", 1, 12)],
    ),
    ("splat-binds", b"/a/* /b/:splat 302", []),
    ("port-is-not-a-reference", b"/a https://h:8080/x 302", []),
    ("bom", b"\xef\xbb\xbf\n/a /b", [("BOM", 1, 1)]),
    ("headers-on-non-proxy-sign", b"/a /b 302 Sign=V", [("HEADERS_ON_NON_PROXY", 1, 11)]),
    ("headers-on-redirect-to-absolute", b"/a https://x/ 301 signed=V", [("HEADERS_ON_NON_PROXY", 1, 19)]),
    ("proxy-with-404-status", b"/a https://x/ 404 Sign=V", []),
    ("empty-from-path", b"https://h.com /b", [("EMPTY_FROM_PATH", 1, 1)]),
    ("from-no-slash", b"a/b /c", [("FROM_NO_SLASH", 1, 1)]),
    ("from-no-slash-reserved", b".netlify/x /c", [("RESERVED_PATH", 1, 1)]),
    ("open-redirect-double-slash", b"/a //evil.example 302", [("OPEN_REDIRECT", 1, 4)]),
    ("open-redirect-splat", b"/go/* /:splat 302", [("OPEN_REDIRECT", 1, 7)]),
    ("no-open-redirect-splatx", b"/go/* /:splatx 302", [("UNBOUND_REFERENCE", 1, 7)]),
    ("open-redirect-host", b"/r/:h https://:h/ 302", [("OPEN_REDIRECT", 1, 7)]),
    ("open-redirect-host-query", b"/r h=:h http://:h.x.com 302", [("OPEN_REDIRECT", 1, 9)]),
    (
        "open-redirect-unbound-host",
        b"/r https://:h/ 302",
        [("UNBOUND_REFERENCE", 1, 4)],
    ),
    ("open-redirect-forward", b"/* 200", [("OPEN_REDIRECT", 1, 1)]),
    (
        "warnings-in-column-order",
        b"x/:a /x/:b 307 country=us",
        [
            ("FROM_NO_SLASH", 1, 1),
            ("UNBOUND_REFERENCE", 1, 6),
            ("STATUS_NOT_ON_NETLIFY", 1, 12),
            ("NONCANONICAL_KEY", 1, 16),
        ],
    ),
    (
        "columns-count-code-points",
        "/café/ü /b/ü 30x".encode(),
        [("BAD_STATUS", 1, 14)],
    ),
    (
        "lines-and-order",
        b"/a /b 999\n\n/c\n/d /e 302 Foo=x\n/f /f 301",
        [("BAD_STATUS", 1, 7), ("MISSING_TO", 3, 1), ("UNKNOWN_CONDITION", 4, 11), ("SELF_REDIRECT", 5, 4)],
    ),
]


@pytest.mark.parametrize(("name", "text", "expected"), DIAGNOSTICS, ids=[d[0] for d in DIAGNOSTICS])
def test_diagnostic_positions(name: str, text: bytes, expected: list[tuple[str, int, int]]) -> None:
    eng = ReferenceEngine()
    eng.add_text(7, text)
    assert diags(eng) == expected
    assert all(d[2] == 7 for d in eng.diagnostics)
    for severity, code, _, _, _, message in eng.diagnostics:
        assert severity == (SEV_WARNING if code in WARNING_CODES else SEV_ERROR)
        assert 0 < len(message.encode()) <= 159
        assert "\n" not in message


WARNING_CODES = {
    "SELF_REDIRECT",
    "TRAILING_SLASH_ONLY",
    "STATUS_NOT_ON_NETLIFY",
    "NONCANONICAL_KEY",
    "PLACEHOLDER_NAME",
    "UNBOUND_REFERENCE",
    "DUPLICATE_PLACEHOLDER",
    "BOM",
    "HEADERS_ON_NON_PROXY",
    "EMPTY_FROM_PATH",
    "FROM_NO_SLASH",
    "OPEN_REDIRECT",
}


def test_error_skips_rule_and_others_compile() -> None:
    eng = build("/a /b\n/c /d 999\n/e /f")
    assert [r.from_text for r in eng.rules] == ["/a", "/e"]
    assert eng.match(b"/c", None)[0] == NO_MATCH


def test_encoding_errors() -> None:
    text = b"/ok /b\n/\xc3\xa9\x00 /b\n/a /\x01\n/\xc3\xbc/\xff\n/x /y\x7f\n/z\t/v\x0b\x0c302\n"
    eng = ReferenceEngine()
    assert eng.add_text(0, text) == 2
    assert diags(eng) == [
        ("BAD_ENCODING", 2, 3),
        ("BAD_ENCODING", 3, 5),
        ("BAD_ENCODING", 4, 4),
        ("BAD_ENCODING", 5, 6),
    ]
    assert [r.from_text for r in eng.rules] == ["/ok", "/z"]


def test_encoding_truncated_and_surrogate_sequences() -> None:
    eng = ReferenceEngine()
    eng.add_text(0, b"/ab\xe2\x82 /c\n/\xed\xa0\x80 /c\n/\xc0\xaf /c\n/\xf4\x90\x80\x80 /c")
    assert diags(eng) == [
        ("BAD_ENCODING", 1, 4),
        ("BAD_ENCODING", 2, 2),
        ("BAD_ENCODING", 3, 2),
        ("BAD_ENCODING", 4, 2),
    ]


def test_line_too_long() -> None:
    eng = ReferenceEngine(max_line=10)
    assert eng.add_text(0, b"/a /b 302\n/abcdefg /b\n/a /b\r\n/0123 /567\r") == 2
    assert diags(eng) == [("LINE_TOO_LONG", 2, 1), ("LINE_TOO_LONG", 4, 1)]


def test_line_too_long_wins_over_encoding() -> None:
    eng = ReferenceEngine(max_line=4)
    eng.add_text(0, b"/\x00\x00\x00\x00")
    assert diags(eng) == [("LINE_TOO_LONG", 1, 1)]


def test_too_many_rules_stops_loading() -> None:
    eng = ReferenceEngine(max_rules=2)
    assert eng.add_text(0, b"/a /b\n/bad\n/c /d\n  /e /f 307\n/g\n") == 2
    assert diags(eng) == [("MISSING_TO", 2, 1), ("TOO_MANY_RULES", 4, 3)]
    assert eng.add_text(1, b"/h /i\n/j") == 0
    assert eng.add_fields(2, 1, b"F/k\0T/l\0") == 0
    assert len(eng.diagnostics) == 2
    eng.compile()
    assert [r.from_text for r in eng.rules] == ["/a", "/c"]


def test_bom_only_at_start() -> None:
    eng = ReferenceEngine()
    assert eng.add_text(0, b"/a /b\n\xef\xbb\xbf/c /d") == 2
    assert diags(eng) == [("FROM_NO_SLASH", 2, 1)]
    assert eng.rules[1].from_text == "\ufeff/c"
    assert eng.rules[1].pattern.path == b"/%EF%BB%BF/c"


def test_diagnostics_ordered_by_source_line_column() -> None:
    eng = ReferenceEngine()
    eng.add_text(2, b"/x /y 999")
    eng.add_fields(1, 5, b"F/a\0S999\0")
    eng.add_text(1, b"/a /b 302\n/c /d 999\n\n\n\n/e")
    eng.add_fields(1, 3, b"F/q\0")
    got = [(d[2], d[3], d[4], d[1]) for d in eng.diagnostics]
    assert got == [
        (1, 2, 7, "BAD_STATUS"),
        (1, 3, 1, "MISSING_TO"),
        (1, 5, 1, "BAD_STATUS"),
        (1, 6, 1, "MISSING_TO"),
        (2, 1, 7, "BAD_STATUS"),
    ]


# ---- records (the netlify.toml path) ------------------------------------------------

RECORDS: list[tuple[str, bytes, int, list[tuple[str, int, int]]]] = [
    ("minimal", b"F/a\0T/b\0", 1, []),
    ("forward", b"F/a/*\0S200\0", 1, []),
    ("forward-301", b"F/a/*\0", 0, [("MISSING_TO", 9, 1)]),
    ("no-from", b"T/b\0", 0, [("BAD_FROM", 9, 1)]),
    ("empty-record", b"", 0, [("BAD_FROM", 9, 1)]),
    ("empty-from", b"F\0T/b\0", 0, [("BAD_FROM", 9, 1)]),
    ("bad-target", b"F/a\0Tb\0", 0, [("BAD_TARGET", 9, 1)]),
    ("empty-target", b"F/a\0T\0", 0, [("BAD_TARGET", 9, 1)]),
    ("bang-is-not-force", b"F/a\0T/b\0S301!\0", 0, [("BAD_STATUS", 9, 1)]),
    ("empty-status", b"F/a\0T/b\0S\0", 0, [("BAD_STATUS", 9, 1)]),
    ("negative-status", b"F/a\0T/b\0S-1\0", 0, [("BAD_STATUS", 9, 1)]),
    ("reserved", b"F/.netlify/x\0T/b\0", 0, [("RESERVED_PATH", 9, 1)]),
    ("bad-query-key", b"F/a\0T/b\0Q\x1fv\0", 0, [("BAD_QUERY_PAIR", 9, 1)]),
    ("unknown-condition", b"F/a\0T/b\0CFoo\x1fx\0", 0, [("UNKNOWN_CONDITION", 9, 1)]),
    ("empty-condition", b"F/a\0T/b\0CCountry\x1f\0", 0, [("BAD_CONDITION", 9, 1)]),
    ("condition-empty-item", b"F/a\0T/b\0CCountry\x1fau,\0", 0, [("BAD_CONDITION", 9, 1)]),
    ("noncanonical", b"F/a\0T/b\0Ccountry\x1fau\0", 1, [("NONCANONICAL_KEY", 9, 1)]),
    ("headers-non-proxy", b"F/a\0T/b\0S200\0HX\x1fy\0", 1, [("HEADERS_ON_NON_PROXY", 9, 1)]),
    ("signed-non-proxy", b"F/a\0Thttps://x/\0S302\0GV\0", 1, [("HEADERS_ON_NON_PROXY", 9, 1)]),
    ("proxy-headers", b"F/a\0Thttps://x/\0S200\0HX\x1fy\0GV\0", 1, []),
    (
        "warning-order",
        b"Fa/:x\0T/y/:z\0S308\0Clanguage\x1fen\0",
        1,
        [
            ("FROM_NO_SLASH", 9, 1),
            ("UNBOUND_REFERENCE", 9, 1),
            ("STATUS_NOT_ON_NETLIFY", 9, 1),
            ("NONCANONICAL_KEY", 9, 1),
        ],
    ),
    ("self-redirect", b"F/a\0T/a/\0S302\0", 1, [("TRAILING_SLASH_ONLY", 9, 1)]),
]


@pytest.mark.parametrize(("name", "record", "accepted", "expected"), RECORDS, ids=[r[0] for r in RECORDS])
def test_records(name: str, record: bytes, accepted: int, expected: list[tuple[str, int, int]]) -> None:
    eng = ReferenceEngine()
    assert eng.add_fields(4, 9, record) == accepted
    assert diags(eng) == expected
    assert all(d[2] == 4 for d in eng.diagnostics)


def test_record_fields_and_matching() -> None:
    eng = ReferenceEngine()
    record = (
        b"F/shop/:item\0T/store/:item?c=:c\0S200\0!\0Qc\x1f:c\0Qv\x1fa b\0"
        b"CCountry\x1fus,de\0CLanguage\x1fen\0"
    )
    assert eng.add_fields(0, 2, record) == 1
    eng.compile()
    rule = eng.rules[0]
    assert (rule.status, rule.force, rule.has_query, rule.has_conditions, rule.has_role) == (
        200,
        True,
        True,
        True,
        False,
    )
    good = ctx("DE", "en-GB")
    assert eng.match(b"/shop/x?v=a+b&c=%2F%20", good) == (MATCH, 0, -1, b"/store/x?c=%2F+")
    assert eng.match(b"/shop/x?v=a+b&c=1", ctx("FR", "en"))[0] == NO_MATCH
    assert eng.match(b"/shop/x?v=ab&c=1", good)[0] == NO_MATCH


@pytest.mark.parametrize(
    "record",
    [
        b"F/a",  # not NUL-terminated
        b"F/a\0T/b",  # last field not NUL-terminated
        b"\0",  # empty field
        b"F/a\0X1\0",  # unknown tag
        b"F/a\0Qnosep\0",  # Q without \x1f
        b"F/a\0Cnosep\0",
        b"F/a\0Hnosep\0",
        b"F/a\0!x\0",  # force with a value
        b"F/a\0F/b\0",  # repeated field
        b"F/a\0T/b\0T/c\0",
        b"F/a\0S1\0S2\0",
        b"F/a\0GA\0GB\0",
    ],
)
def test_malformed_records_raise(record: bytes) -> None:
    eng = ReferenceEngine()
    with pytest.raises(ValueError, match="record"):
        eng.add_fields(0, 1, record)
    assert eng.diagnostics == []
    assert eng.rules == []


def test_compile_freezes() -> None:
    eng = ReferenceEngine()
    with pytest.raises(RuntimeError):
        eng.match(b"/", None)
    eng.add_text(0, b"/a /b")
    eng.compile()
    with pytest.raises(RuntimeError):
        eng.add_text(0, b"/c /d")
    with pytest.raises(RuntimeError):
        eng.add_fields(0, 1, b"F/c\0T/d\0")
    with pytest.raises(RuntimeError):
        eng.compile()
    assert len(eng.rules) == 1


# ---- URLs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        b"",
        b"a/b",
        b"?x=1",
        b"#f",
        b"*",
        b"ftp://h/x",
        b"http:/x",
        b"http//x",
        b"https://",
        b"http://?x",
        b"http:///x",
    ],
)
def test_invalid_urls(url: bytes) -> None:
    eng = build("/* /x 200")
    with pytest.raises(ValueError, match="URL"):
        eng.match(url, None)


@pytest.mark.parametrize(
    ("url", "target"),
    [
        (b"/p", b"/x/p"),
        (b"//p", b"/x//p"),
        (b"HTTPS://h/p", b"/x/p"),
        (b"http://h", b"/x/"),
        (b"http://h?q", b"/x/"),
        (b"http://h#f", b"/x/"),
        (b"/a b/\xff", b"/x/a%20b/%FF"),
        (b"/%zz%4", b"/x/%25zz%254"),
    ],
)
def test_valid_urls(url: bytes, target: bytes) -> None:
    eng = build("/* /x/:splat 200")
    assert eng.match(url, None) == (MATCH, 0, -1, target)


# ---- helpers ---------------------------------------------------------------------------


def test_canonicalize_path() -> None:
    assert canonicalize_path(b"/%61%2f%2F%7E%25%zz%") == b"/a%2F%2F~%25%25zz%25"
    assert canonicalize_path('/é ?#[]"<>\\^`{|}'.encode()) == (
        b"/%C3%A9%20%3F%23%5B%5D%22%3C%3E%5C%5E%60%7B%7C%7D"
    )
    assert canonicalize_path(b"/!$&'()*+,;=:@-._~") == b"/!$&'()*+,;=:@-._~"


def test_form_decode_and_query_escape() -> None:
    assert form_decode(b"a+b%20c%2x%") == b"a b c%2x%"
    assert query_escape(b"a b/&;=+~\xc3\xa9") == b"a+b%2F%26%3B%3D%2B~%C3%A9"


# ---- robustness and speed -----------------------------------------------------------------


def test_binary_garbage_is_fast_and_safe() -> None:
    rng = random.Random(1234)
    blob = bytes(rng.getrandbits(8) for _ in range(1 << 20))
    eng = ReferenceEngine()
    start = time.perf_counter()
    eng.add_text(0, blob)
    eng.add_text(1, blob.replace(b"\x00", b"\n"))
    eng.compile()
    for _ in range(20):
        eng.match(b"/" + blob[:2000].replace(b"#", b"").replace(b"?", b""), None)
    assert time.perf_counter() - start < 20
    assert all(d[4] >= 1 and d[3] >= 1 for d in eng.diagnostics)


def test_nul_bytes() -> None:
    eng = ReferenceEngine()
    assert eng.add_text(0, b"\x00" * 1000 + b"\n/a /b") == 1
    assert diags(eng) == [("BAD_ENCODING", 1, 1)]


def test_one_megabyte_line_default_limit() -> None:
    eng = ReferenceEngine()
    start = time.perf_counter()
    assert eng.add_text(0, b"/a " + b"x" * (1 << 20) + b"\n/b /c") == 1
    assert time.perf_counter() - start < 2
    assert diags(eng) == [("LINE_TOO_LONG", 1, 1)]


def test_one_megabyte_line_raised_limit() -> None:
    eng = ReferenceEngine(max_line=4 << 20)
    n = 1 << 19
    long_path = b"/" + b"\xc3\xa9" * n + b" /b 302 Foo=x"  # columns count code points
    many_tokens = b"/a /b 302" + b" Cookie=c" * (1 << 17)
    start = time.perf_counter()
    assert eng.add_text(0, long_path + b"\n" + many_tokens + b"\n/q" + b" x" * n) == 1
    eng.compile()
    assert eng.match(b"/a", ctx(cookies=("c",)))[1] == 0
    assert eng.match(b"/" + b"a/" * n, None)[0] == NO_MATCH
    assert time.perf_counter() - start < 10
    assert diags(eng) == [("UNKNOWN_CONDITION", 1, n + 10), ("BAD_TARGET", 3, 4)]


def test_many_rules_linear_scan() -> None:
    text = "\n".join(f"/p{i}/:x /q{i}/:x 302" for i in range(20000)).encode()
    eng = build(text)
    start = time.perf_counter()
    assert eng.match(b"/p19999/z", None) == (MATCH, 19999, -1, b"/q19999/z")
    assert eng.match(b"/none/z", None)[0] == NO_MATCH
    assert time.perf_counter() - start < 5
