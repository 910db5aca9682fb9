"""Rules of docs/redirects.md that the spec's worked cases (§4) do not pin down.

One row per behaviour: rules text, request, expected outcome and exact diagnostics,
run against both matchers. The outcome is ``None`` (no match), ``"DENIED"``, or
``(status, to, force, location)``; diagnostics are ``(severity, code, line, column)``
(columns count code points; a warning's column is that of its token, R3.2).
Visitor defaults as in §4: country ``US``, language ``en``; ``language=None`` lets
``Accept-Language`` / cookies decide. Tokens are minted at the virtual time ``NOW``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import pytest

from edgesim._visitor import mint_jwt

SECRET = "doc-rules-secret"
NOW = 1_700_000_000.0


class Row(NamedTuple):
    rules: str
    url: str
    want: Any
    diags: list[tuple[str, str, int, int]] | None
    visitor: dict[str, Any]


def T(
    rules: str, url: str, want: Any, diags: list[tuple[str, str, int, int]] | None = None, **visitor: Any
) -> Row:
    return Row(rules, url, want, diags or [], visitor)


ROWS = [
    T("/a/:x /y/:x 301", "/a/", None),
    T("/s q=:q /x/:q 301", "/s?q=%zz", (301, "/x/%25zz", False, "/x/%25zz?q=%zz")),
    T("/l /m 302 Language=en", "/l", None, language="en_US"),
    T("https://example.com/* /y 301", "https://example.com:443/x", (301, "/y", False, "/y")),
    T("https://example.com/* /y 301", "https://EXAMPLE.com./x", (301, "/y", False, "/y")),
    T("http://example.com:80/* /y 301", "http://example.com/x", (301, "/y", False, "/y")),
    T("https://example.com:8443/* /y 301", "https://example.com/x", None),
    T("/a%2fb /x 301", "/a%2Fb", (301, "/x", False, "/x")),
    T("/a%2Fb /x 301", "/a/b", None),
    T("/a%zz /x 301", "/a%25zz", (301, "/x", False, "/x")),
    T("/a%7e /x 301", "/a~", (301, "/x", False, "/x")),
    T(
        "/a/:x/:x /y/:x 301",
        "/a/1/2",
        (301, "/y/1", False, "/y/1"),
        [("warning", "DUPLICATE_PLACEHOLDER", 1, 1)],
    ),
    T("/a/:splat/* /y/:splat 301", "/a/1/2", (301, "/y/1", False, "/y/1")),
    T("/x /y 301 Country=us Language", "/x", None, [("error", "BAD_CONDITION", 1, 22)]),
    T("/\u00e9 /b 30x", "/x", None, [("error", "BAD_STATUS", 1, 7)]),
    T("/a\x01 /b", "/a", None, [("error", "BAD_ENCODING", 1, 3)]),
    T("/a /b 0301", "/a", (301, "/b", False, "/b")),
    T("/a -301", "/a", None, [("error", "BAD_STATUS", 1, 4)]),
    T("/s q=a%20b /hit 301", "/s?q=a+b", (301, "/hit", False, "/hit?q=a+b")),
    T("/a /b?x=1#f 302", "/a?y=2", (302, "/b?x=1#f", False, "/b?x=1#f")),
    T(
        "/admin/* 200 Role=admin",
        "/admin/x",
        (200, "/admin/x", False, "/admin/x"),
        cookies={"nf_jwt": mint_jwt(SECRET, "admin", exp=NOW + 5)},
    ),
    T("/p https://e.com/ 200 Sign=A,B", "/p", None, [("error", "BAD_CONDITION", 1, 23)]),
    T("/p https://e.com/ 200 signed=A,", "/p", None, [("error", "BAD_CONDITION", 1, 23)]),
    T(
        "/l /m 302 Language=de",
        "/l",
        (302, "/m", False, "/m"),
        language=None,
        headers={"Accept-Language": "  de-DE ;q=0.8, en"},
    ),
    T("/k /l 302 Cookie=ab", "/k", (302, "/l", False, "/l"), headers={"Cookie": "x=1; ab=2"}),
    T(
        "/r /s 200 Role=admin",
        "/r",
        "DENIED",
        cookies={"nf_jwt": mint_jwt(SECRET, ["admin"], exp=NOW + 5, alg="HS512")},
    ),
    T("/r /s 200 Role=admin", "/r", "DENIED", cookies={"nf_jwt": mint_jwt(SECRET, ["admin"], exp=NOW)}),
    T(
        "/go/* /:splat 302",
        "/go//evil.example",
        (302, "//evil.example", False, "//evil.example"),
        [("warning", "OPEN_REDIRECT", 1, 7)],
    ),
    T(
        "/a //evil.example 302",
        "/a",
        (302, "//evil.example", False, "//evil.example"),
        [("warning", "OPEN_REDIRECT", 1, 4)],
    ),
    T(
        "/a/:h https://:h.example.com/ 302",
        "/a/x",
        (302, "https://x.example.com/", False, "https://x.example.com/"),
        [("warning", "OPEN_REDIRECT", 1, 7)],
    ),
    T("/a /b/ 301", "/a", (301, "/b/", False, "/b/")),
    T("/a/ /a 301", "/a", (301, "/a", False, "/a"), [("warning", "TRAILING_SLASH_ONLY", 1, 5)]),
    T("/a /a 200", "/a", (200, "/a", False, "/a")),
    T("/a /b 250", "/a", (250, "/b", False, "/b"), [("warning", "STATUS_NOT_ON_NETLIFY", 1, 7)]),
    T("/a /b 300", "/a", None, [("error", "BAD_STATUS", 1, 7)]),
    T("/a /b 600", "/a", None, [("error", "BAD_STATUS", 1, 7)]),
    T("/a /b 304", "/a", None, [("error", "BAD_STATUS", 1, 7)]),
    T("/a https:// 301", "/a", None, [("error", "BAD_TARGET", 1, 4)]),
    T("/a https://?x 301", "/a", None, [("error", "BAD_TARGET", 1, 4)]),
    T("ftp://x.com/a /b", "/a", None, [("error", "BAD_FROM", 1, 1)]),
    T("HTTPS://X.com/a /b", "https://x.com/a", (301, "/b", False, "/b")),
    T("https://x.com /b", "https://x.com/", (301, "/b", False, "/b"), [("warning", "EMPTY_FROM_PATH", 1, 1)]),
    T("https://x.com:abc/a /b", "/a", None, [("error", "BAD_FROM", 1, 1)]),
    T("/.netlify /b", "/a", None, [("error", "RESERVED_PATH", 1, 1)]),
    T("/.netlifyx /b", "/.netlifyx", (301, "/b", False, "/b")),
    T("/%2Enetlify/x /b", "/a", None, [("error", "RESERVED_PATH", 1, 1)]),
    T(
        "/a /b 301 country=us Country=us",
        "/a",
        (301, "/b", False, "/b"),
        [("warning", "NONCANONICAL_KEY", 1, 11)],
        country="US",
    ),
    T("/a /b 301 Foo", "/a", None, [("error", "BAD_CONDITION", 1, 11)]),
    T("/a /b 301 =x", "/a", None, [("error", "BAD_CONDITION", 1, 11)]),
    T("/a /b 301 Country=a=b", "/a", None, [("error", "BAD_CONDITION", 1, 11)]),
    T("/a =x /b 301", "/a", None, [("error", "BAD_QUERY_PAIR", 1, 4)]),
    T("/a x=1 y /b 301", "/a", None, [("error", "BAD_QUERY_PAIR", 1, 8)]),
    T("/a/* /b 200\n/a/x /c 301", "/a/x", (200, "/b", False, "/b")),
    T("/a /b 301 Country=US", "/a", None, country=""),
    T("/a /b 301 Language=en", "/a", None, language=""),
    T("/a /b 301 Language=en-US", "/a", None, language="en"),
    T("/a /b 301 Language=EN", "/a", (301, "/b", False, "/b"), language="en-gb"),
    T(
        "/api/* /.netlify/functions/f 302",
        "/api/x?y=1",
        (302, "/.netlify/functions/f", False, "/.netlify/functions/f?y=1"),
    ),
    T(
        "/api/* /.netlify/functions/f?a=1#h 200",
        "/api/x?y=1",
        (200, "/.netlify/functions/f?a=1#h", False, "/.netlify/functions/f?y=1#h"),
    ),
    T("/a/:x /b/:x 301", "/a/%C3%A9", (301, "/b/%C3%A9", False, "/b/%C3%A9")),
    T("/a/:x /b/:x 301", "/a/\u00e9", (301, "/b/%C3%A9", False, "/b/%C3%A9")),
    T("/a/* /b/:splat 301", "/a/x%2fy", (301, "/b/x%2Fy", False, "/b/x%2Fy")),
    T(
        "/s q=:q /t/:q 301",
        "/s?q=%C3%A9+x%26",
        (301, "/t/%C3%A9+x%26", False, "/t/%C3%A9+x%26?q=%C3%A9+x%26"),
    ),
    T("/s q=:q /t/:q 301", "/s?q=a~b-c._", (301, "/t/a~b-c._", False, "/t/a~b-c._?q=a~b-c._")),
    T("/a /b 301", "/a#frag", (301, "/b", False, "/b")),
    T("/a /b 301", "/a?x=1#frag", (301, "/b", False, "/b?x=1")),
    T("/ /b 301", "https://x.com", (301, "/b", False, "/b")),
    T("/ /b 301", "https://x.com?q=1", (301, "/b", False, "/b?q=1")),
    T("/p x=1 /r 301", "/p?x=2&x=1", (301, "/r", False, "/r?x=2&x=1")),
    T("/p x=1 /r 301", "/p?x=1;y=2", None),
    T("/p x=:v /r/:v 301", "/p?x", None),
    T("/p x=:v /r/:v 301", "/p?&&x=a=b", (301, "/r/a%3Db", False, "/r/a%3Db?&&x=a=b")),
    T("/a /b 301 Cookie=a Cookie=b", "/a", None, cookies={"a": "1"}),
    T("/a /b 301 Cookie=a Cookie=b", "/a", (301, "/b", False, "/b"), cookies={"a": "1", "b": "0"}),
    T("/a /b 301 Country=us,", "/a", None, [("error", "BAD_CONDITION", 1, 11)]),
    T("/a /b 301 Country=,us", "/a", None, [("error", "BAD_CONDITION", 1, 11)]),
    T("/a /b 301 Country=a,,b", "/a", None, [("error", "BAD_CONDITION", 1, 11)]),
    T("/a /b 301 Country=", "/a", None, [("error", "BAD_CONDITION", 1, 11)]),
    T("a /b 301", "/a", (301, "/b", False, "/b"), [("warning", "FROM_NO_SLASH", 1, 1)]),
    T("//x.com/a /b 301", "/a", None, [("error", "BAD_FROM", 1, 1)]),
    T("/a* /x/:splat 301", "/a/", (301, "/x/", False, "/x/")),
    T("/x/:p* /y/:splat 301", "/x/:pq", (301, "/y/q", False, "/y/q")),
    T("/x/:p* /y/:splat 301", "/x/zq", None),
    T("/a/: /b 301", "/a/:", (301, "/b", False, "/b")),
    T("/a/: /b 301", "/a/x", None),
    T("/* /x 301", "/", (301, "/x", False, "/x")),
    T("/:a /x/:a 301", "/", None),
    T("/a\t/b\t301", "/a", (301, "/b", False, "/b")),
    T("  /a /b 301  \r", "/a", (301, "/b", False, "/b")),
    T("#/a /b", "/a", None),
    T("/a #/b", "/a", None, [("error", "MISSING_TO", 1, 1)]),
    T("/a /b #301", "/a", (301, "/b", False, "/b")),
    T("/a /b\x0b301", "/a", (301, "/b", False, "/b")),
    T("/a /b 301!", "/a", (301, "/b", True, "/b")),
    T("/a /b 200! Country=us", "/a", (200, "/b", True, "/b"), country="us"),
]


def _outcome(m: Any) -> Any:
    if m is None:
        return None
    if m.denied:
        return "DENIED"
    return (m.status, m.to, m.force, m.location)


@pytest.mark.parametrize("row", ROWS, ids=[f"{i:02d}-{r.rules[:40]}" for i, r in enumerate(ROWS)])
def test_doc_rule(engine: type, row: Row) -> None:
    kw: dict[str, Any] = {"country": "US", "language": "en", "now": NOW, **row.visitor}
    if kw["language"] is None:
        del kw["language"]
    rs = engine.parse(row.rules, jwt_secret=SECRET)
    try:
        got = [(d.severity, d.code, d.line, d.column) for d in rs.diagnostics]
        assert got == row.diags, [str(d) for d in rs.diagnostics]
        assert _outcome(rs.match(row.url, **kw)) == row.want
    finally:
        rs.close()
