"""The worked cases of the redirect spec (§4, cases 1-103) against both matchers.

Each case is data: the rules (``_redirects`` text, netlify.toml text, or a whole site),
the exact diagnostics the rules must produce, and one or more checks. A check is a
request plus its visitor context and the expected outcome, either of
:meth:`RuleSet.match` (``expect``) or of :func:`edgesim.redirects.resolve` with a set of
deploy files (``resolve``, the shadowing cases).

Conventions of §4: visitor country ``US``, language ``en``, no cookies. ``<admin>``,
``<editor>`` and ``<expired>`` in cookie or header values stand for HS256 tokens minted
with :data:`SECRET`; matching runs at the virtual time :data:`NOW`, so nothing depends
on the wall clock. Where §4 contrasts edgesim with Netlify's engine, the edgesim
behaviour is expected.

Diagnostics are compared as an exact list of ``(severity, code, line, column)``; a
warning's column is that of the token it is about (spec R3.2: `to` for
``UNBOUND_REFERENCE``, the condition for ``NONCANONICAL_KEY``); ``None`` would skip it.
"""

from __future__ import annotations

from typing import Any

import pytest

from edgesim._visitor import mint_jwt
from edgesim.redirects import resolve

SECRET = "spec-section-4-secret"
NOW = 1_700_000_000.0

TOKENS = {
    "<admin>": mint_jwt(SECRET, ["admin"], exp=NOW + 3600),
    "<editor>": mint_jwt(SECRET, ["editor"], exp=NOW + 3600),
    "<expired>": mint_jwt(SECRET, ["admin"], exp=NOW - 3600),
}

# Sentinel for "do not pass this argument" (so cookies / Accept-Language apply).
OMIT = object()

W = "warning"
E = "error"

ROLE_RULE = "/admin/* /admin/:splat 200! Role=admin"
STORE = "/store id=:id /blog/:id 301"
QUERY_FALLBACKS = "/p a=:a b=:b /r/:a/:b 301\n/p a=:a /r/:a 301\n/p /r 301"
NEWS = "/news/* /blog/:splat"
PLACEHOLDERS = "/news/:year/:month/:date/:slug /blog/:year/:month/:date/:slug"
HOST_RULE = "http://blog.example.com/* https://www.example.com/blog/:splat 301!"
LEGACY = "/* /legacy/:splat 200 Cookie=is_legacy"

CASES: list[dict[str, Any]] = [
    # ---- §4.1 paths, splats, placeholders --------------------------------------------
    {
        "n": 1,
        "rules": "/home / 301",
        "checks": [
            {"url": "/home", "expect": {"status": 301, "to": "/", "force": False, "is_redirect": True}},
        ],
    },
    {
        "n": 2,
        "rules": "/home /",
        "checks": [
            {"url": "/home", "expect": {"status": 301, "to": "/"}},
        ],
    },
    {
        "n": 3,
        "rules": "/a /b 301\n/a /c 302",
        "count": 2,
        "checks": [
            {"url": "/a", "expect": {"status": 301, "to": "/b", "rule": 0, "line": 1}},
        ],
    },
    {
        "n": 4,
        "rules": "/a /b 301",
        "checks": [
            {"url": "/a/", "expect": {"status": 301, "to": "/b"}},
        ],
    },
    {
        "n": 5,
        "rules": "/a/ /b 301",
        "checks": [
            {"url": "/a", "expect": {"status": 301, "to": "/b"}},
        ],
    },
    {
        "n": 6,
        "rules": "/a /b 301",
        "checks": [
            {"url": "/A", "expect": None},
            {"url": "/a", "expect": {"to": "/b"}},  # control
        ],
    },
    {
        "n": 7,
        "rules": "/a /b 301",
        "checks": [
            {"url": "/a/index.html", "expect": None},
        ],
    },
    {
        "n": 8,
        "rules": "/a /b 301",
        "checks": [
            {"url": "//a", "expect": None},
            {"url": "https://example.com//a", "expect": None},
        ],
    },
    {
        "n": 9,
        "rules": NEWS,
        "checks": [
            {
                "url": "/news/2004/01/10/my-story",
                "expect": {"status": 301, "to": "/blog/2004/01/10/my-story"},
            },
        ],
    },
    {
        "n": 10,
        "rules": NEWS,
        "checks": [
            {"url": "/news", "expect": {"status": 301, "to": "/blog/"}},
        ],
    },
    {
        "n": 11,
        "rules": NEWS,
        "checks": [
            {"url": "/news/", "expect": {"status": 301, "to": "/blog/"}},
        ],
    },
    {
        "n": 12,
        "rules": NEWS,
        "checks": [
            {"url": "/newsroom", "expect": None},
        ],
    },
    {
        "n": 13,
        "rules": NEWS,
        "checks": [
            {"url": "/news/a/b/", "expect": {"status": 301, "to": "/blog/a/b/"}},
        ],
    },
    {
        "n": 14,
        "rules": "/* /index.html 200",
        "checks": [
            {"url": "/", "expect": {"status": 200, "to": "/index.html", "is_rewrite": True, "force": False}},
        ],
    },
    {
        "n": 15,
        "rules": "/* /index.html 200",
        "checks": [
            {"url": "/deep/link", "expect": {"status": 200, "to": "/index.html", "is_rewrite": True}},
        ],
    },
    {
        "n": 16,
        "rules": PLACEHOLDERS,
        "checks": [
            {
                "url": "/news/2004/02/12/my-story",
                "expect": {"status": 301, "to": "/blog/2004/02/12/my-story"},
            },
        ],
    },
    {
        "n": 17,
        "rules": PLACEHOLDERS,
        "checks": [
            {"url": "/news/2004/02/12", "expect": None},
        ],
    },
    {
        "n": 18,
        "rules": PLACEHOLDERS,
        "checks": [
            {"url": "/news/2004/02/12/my-story/extra", "expect": None},
        ],
    },
    {
        "n": 19,
        "rules": "/:a/:b /:b/:a 301",
        "checks": [
            {"url": "/x/y/", "expect": {"status": 301, "to": "/y/x"}},
        ],
    },
    {
        "n": 20,
        "rules": "/articles/:slug /articles/:slug/ 301",
        "diagnostics": [(W, "TRAILING_SLASH_ONLY", 1, 17)],
        "checks": [
            {"url": "/articles/foo/", "expect": {"status": 301, "to": "/articles/foo/"}},
        ],
    },
    {
        "n": 21,
        "rules": "/a/item-:id /b/:id 301",
        # `:id` is not a placeholder here, so `to` references a name `from` never binds.
        "diagnostics": [(W, "UNBOUND_REFERENCE", 1, 13)],
        "checks": [
            {"url": "/a/item-5", "expect": None},
            {"url": "/a/item-:id", "expect": {"status": 301, "to": "/b/:id"}},  # literal
        ],
    },
    {
        "n": 22,
        "rules": "/a.b /x 301",
        "checks": [
            {"url": "/axb", "expect": None},
            {"url": "/a.b", "expect": {"to": "/x"}},
        ],
    },
    {
        "n": 23,
        "rules": "/a/*/b /x/:splat 301",
        "count": 0,
        "diagnostics": [(E, "SPLAT_NOT_AT_END", 1, 1)],
        "checks": [
            {"url": "/a/q/b", "expect": None},
        ],
    },
    {
        "n": 24,
        "rules": "/a/*.html /x/:splat 301",
        "count": 0,
        "diagnostics": [(E, "SPLAT_NOT_AT_END", 1, 1)],
        "checks": [
            {"url": "/a/q.html", "expect": None},
        ],
    },
    {
        "n": 25,
        "rules": "/a* /x/:splat 301",
        "checks": [
            {"url": "/abc/d", "expect": {"status": 301, "to": "/x/bc/d"}},
            {"url": "/a", "expect": {"to": "/x/"}},
            {"url": "/ab", "expect": {"to": "/x/b"}},
            {"url": "/a/b", "expect": {"to": "/x/b"}},
        ],
    },
    {
        "n": 26,
        "rules": "/a/:i/:id /y/:id/:i 301",
        "checks": [
            {"url": "/a/1/2", "expect": {"status": 301, "to": "/y/2/1"}},
        ],
    },
    {
        "n": 27,
        "rules": "/a/:x/:y /y/:y/:x 301",
        "checks": [
            {"url": "/a/:y/Q", "expect": {"status": 301, "to": "/y/Q/:y"}},
        ],
    },
    {
        "n": 28,
        "rules": "/a/:s/* /y/:splat/:s 301",
        "checks": [
            {"url": "/a/1/2", "expect": {"status": 301, "to": "/y/2/1"}},
        ],
    },
    {
        "n": 29,
        "rules": "/a/:x /y/:xx 301",
        "diagnostics": [(W, "UNBOUND_REFERENCE", 1, 7)],
        "checks": [
            {"url": "/a/1", "expect": {"status": 301, "to": "/y/:xx"}},
        ],
    },
    {
        "n": 30,
        "rules": "/caf%C3%A9 /b 301",
        "checks": [
            {"url": "/caf%C3%A9", "expect": {"status": 301, "to": "/b"}},
        ],
    },
    {
        "n": 31,
        "rules": "/caf%C3%A9 /b 301",
        "checks": [
            {"url": "/caf%c3%a9", "expect": {"status": 301, "to": "/b"}},
            {"url": "/caf\u00e9", "expect": {"status": 301, "to": "/b"}},  # R2.3: same canonical form
        ],
    },
    {
        "n": 32,
        "rules": "/admin/* /x 301",
        "checks": [
            {"url": "/%61dmin/q", "expect": {"status": 301, "to": "/x"}},
        ],
    },
    # ---- §4.2 query parameters -------------------------------------------------------
    {
        "n": 33,
        "rules": STORE,
        "checks": [
            {
                "url": "/store?id=my-post",
                "expect": {"status": 301, "to": "/blog/my-post", "location": "/blog/my-post?id=my-post"},
            },
        ],
    },
    {
        "n": 34,
        "rules": STORE,
        "checks": [
            {"url": "/store?id=my-post&utm=x", "expect": {"status": 301, "to": "/blog/my-post"}},
        ],
    },
    {
        "n": 35,
        "rules": STORE,
        "checks": [
            {"url": "/store", "expect": None},
        ],
    },
    {
        "n": 36,
        "rules": STORE,
        "checks": [
            {"url": "/store?id=", "expect": {"status": 301, "to": "/blog/", "location": "/blog/?id="}},
        ],
    },
    {
        "n": 37,
        "rules": STORE,
        "checks": [
            {"url": "/store?ID=1", "expect": None},
        ],
    },
    {
        "n": 38,
        "rules": STORE,
        "checks": [
            {"url": "/store?id=1&id=2", "expect": {"status": 301, "to": "/blog/2"}},
        ],
    },
    {
        "n": 39,
        "rules": "/s q=:q /search/:q 301",
        "checks": [
            {"url": "/s?q=hello%20world", "expect": {"status": 301, "to": "/search/hello+world"}},
        ],
    },
    {
        "n": 40,
        "rules": "/s q=:q /search/:q 301",
        "checks": [
            {"url": "/s?q=a%2Fb", "expect": {"status": 301, "to": "/search/a%2Fb"}},
        ],
    },
    {
        "n": 41,
        "rules": QUERY_FALLBACKS,
        "checks": [
            {"url": "/p?b=2&a=1", "expect": {"status": 301, "to": "/r/1/2", "rule": 0}},
        ],
    },
    {
        "n": 42,
        "rules": QUERY_FALLBACKS,
        "checks": [
            {"url": "/p?a=1", "expect": {"status": 301, "to": "/r/1", "rule": 1}},
        ],
    },
    {
        "n": 43,
        "rules": QUERY_FALLBACKS,
        "checks": [
            {"url": "/p?c=3", "expect": {"status": 301, "to": "/r", "rule": 2}},
        ],
    },
    {
        "n": 44,
        "rules": "/s v=on /on 301",
        "checks": [
            {"url": "/s?v=ON", "expect": None},
            {"url": "/s?v=on", "expect": {"to": "/on"}},
        ],
    },
    {
        "n": 45,
        "rules": "/path foo /foo.html 200",
        "count": 0,
        "diagnostics": [(E, "BAD_QUERY_PAIR", 1, 7)],
        "checks": [
            {"url": "/path", "expect": None},
            {"url": "/path?foo=1", "expect": None},
        ],
    },
    {
        "n": 46,
        "toml": '[[redirects]]\nfrom = "/path"\nto = "/foo.html"\nstatus = 200\nquery = {foo = ""}\n',
        "count": 1,
        "checks": [
            {"url": "/path?foo", "expect": None},
            {"url": "/path?foo=", "expect": {"status": 200, "to": "/foo.html", "is_rewrite": True}},
            {"url": "/path?foo=1", "expect": None},
        ],
    },
    {
        "n": 47,
        "rules": "/s/:id q=:id /p/:id 301",
        "checks": [
            {"url": "/s/path?q=query", "expect": {"status": 301, "to": "/p/path"}},
        ],
    },
    {
        "n": 48,
        "rules": "/foo / 302",
        "checks": [
            {
                "url": "/foo?foo=1&foo=2&bar=1",
                "expect": {"status": 302, "to": "/", "location": "/?foo=1&foo=2&bar=1"},
            },
        ],
    },
    {
        "n": 49,
        "rules": "/test id=:id /?param=:id 302",
        "checks": [
            {"url": "/test?id=1&x=2", "expect": {"status": 302, "to": "/?param=1", "location": "/?param=1"}},
        ],
    },
    {
        "n": 50,
        "rules": "/api/* /.netlify/functions/f?foo=1 200",
        "checks": [
            {
                "url": "/api/x?bar=2",
                "expect": {
                    "status": 200,
                    "to": "/.netlify/functions/f?foo=1",
                    "location": "/.netlify/functions/f?bar=2",
                    "is_rewrite": True,
                },
            },
        ],
    },
    {
        "n": 51,
        "rules": "/a /b 301",
        "checks": [
            {"url": "/a?x=1", "expect": {"status": 301, "to": "/b", "location": "/b?x=1"}},
        ],
    },
    # ---- §4.3 conditions -------------------------------------------------------------
    {
        "n": 52,
        "rules": "/ /anz 302 Country=au,nz",
        "checks": [
            {"url": "/", "country": "NZ", "expect": {"status": 302, "to": "/anz"}},
        ],
    },
    {
        "n": 53,
        "rules": "/ /anz 302 Country=au,nz",
        "checks": [
            {"url": "/", "country": "US", "expect": None},
        ],
    },
    {
        "n": 54,
        "rules": "/ /anz 302 Country=AU",
        "checks": [
            {"url": "/", "country": "au", "expect": {"status": 302, "to": "/anz"}},
        ],
    },
    {
        "n": 55,
        "rules": "/ /anz 302 Country=au, nz",
        "count": 0,
        "diagnostics": [(E, "BAD_CONDITION", 1, 12)],
        "checks": [
            {"url": "/", "country": "AU", "expect": None},
            {"url": "/", "country": "NZ", "expect": None},
        ],
    },
    {
        "n": 56,
        "rules": "/ /anz 302 country=au",
        "diagnostics": [(W, "NONCANONICAL_KEY", 1, 12)],
        "checks": [
            {"url": "/", "country": "AU", "expect": {"status": 302, "to": "/anz"}},
            {"url": "/", "country": "US", "expect": None},
        ],
    },
    {
        "n": 57,
        "rules": "/israel/* /israel/he/:splat 302 Language=he",
        "checks": [
            {
                "url": "/israel/x",
                "language": OMIT,
                "headers": {"Accept-Language": "he-IL"},
                "expect": {"status": 302, "to": "/israel/he/x"},
            },
        ],
    },
    {
        "n": 58,
        "rules": "/israel/* /israel/he/:splat 302 Language=he",
        "checks": [
            {
                "url": "/israel/x",
                "language": OMIT,
                "headers": {"Accept-Language": "en-US,he;q=0.9"},
                "expect": None,
            },
        ],
    },
    {
        "n": 59,
        "rules": "/ /zh 302 Language=zh-tw",
        "checks": [
            {
                "url": "/",
                "language": OMIT,
                "headers": {"Accept-Language": "zh-TW"},
                "expect": {"status": 302, "to": "/zh"},
            },
            {"url": "/", "language": OMIT, "headers": {"Accept-Language": "zh"}, "expect": None},
        ],
    },
    {
        "n": 60,
        "rules": "/ /en 302 Language=en",
        "checks": [
            {
                "url": "/",
                "language": OMIT,
                "cookies": {"nf_lang": "en"},
                "headers": {"Accept-Language": "de"},
                "expect": {"status": 302, "to": "/en"},
            },
            {"url": "/", "language": OMIT, "headers": {"Accept-Language": "de"}, "expect": None},
        ],
    },
    {
        "n": 61,
        "rules": "/ /us 302 Country=us",
        "checks": [
            # The API's `country` argument is the effective country; the nf_country cookie
            # applies when it is not given.
            {
                "url": "/",
                "country": OMIT,
                "cookies": {"nf_country": "us"},
                "expect": {"status": 302, "to": "/us"},
            },
            {"url": "/", "country": "DE", "expect": None},
        ],
    },
    {
        "n": 62,
        "rules": "/ /il 302 Country=il Language=he",
        "checks": [
            {"url": "/", "country": "IL", "language": "en", "expect": None},
            {"url": "/", "country": "IL", "language": "he", "expect": {"to": "/il"}},
        ],
    },
    {
        "n": 63,
        "rules": "/x /y 302 Country=us Country=de",
        "checks": [
            {"url": "/x", "country": "US", "expect": None},
            {"url": "/x", "country": "DE", "expect": None},
        ],
    },
    {
        "n": 64,
        "rules": "/* /legacy/:splat 200 Cookie=is_legacy,my_other_cookie",
        "checks": [
            {"url": "/a", "cookies": {"my_other_cookie": "1"}, "expect": {"status": 200, "to": "/legacy/a"}},
            {"url": "/a", "expect": None},
        ],
    },
    {
        "n": 65,
        "rules": LEGACY,
        "checks": [
            {"url": "/a", "cookies": {"is_legacy": ""}, "expect": None},
            {"url": "/a", "cookies": {"is_legacy": "1"}, "expect": {"to": "/legacy/a"}},
        ],
    },
    {
        "n": 66,
        "rules": LEGACY,
        "checks": [
            {"url": "/a", "cookies": {"IS_LEGACY": "1"}, "expect": None},
        ],
    },
    {
        "n": 67,
        "rules": "/x /y 302 Foo=bar",
        "count": 0,
        "diagnostics": [(E, "UNKNOWN_CONDITION", 1, 11)],
        "checks": [
            {"url": "/x", "expect": None},
        ],
    },
    {
        "n": 68,
        "rules": ROLE_RULE,
        "checks": [
            {
                "url": "/admin/a",
                "cookies": {"nf_jwt": "<admin>"},
                "expect": {
                    "status": 200,
                    "to": "/admin/a",
                    "force": True,
                    "denied": False,
                    "after_denial": False,
                },
            },
        ],
    },
    {
        "n": 69,
        "rules": ROLE_RULE,
        "checks": [
            {"url": "/admin/a", "cookies": {"nf_jwt": "<editor>"}, "expect": {"denied": True, "status": 404}},
        ],
    },
    {
        "n": 70,
        "rules": ROLE_RULE + "\n/admin/* /login 302!",
        "checks": [
            {
                "url": "/admin/a",
                "cookies": {"nf_jwt": "<expired>"},
                "expect": {
                    "status": 302,
                    "to": "/login",
                    "force": True,
                    "denied": False,
                    "after_denial": True,
                    "rule": 1,
                },
            },
        ],
    },
    {
        "n": 71,
        "rules": "/gated /gated 200! Role=admin",
        "count": 1,
        "checks": [
            {
                "url": "/gated",
                "cookies": {"nf_jwt": "<admin>"},
                "expect": {"status": 200, "to": "/gated", "force": True, "denied": False},
            },
        ],
    },
    {
        "n": 72,
        "rules": "/admin/* 200! Role=admin",
        "checks": [
            {
                "url": "/admin/x",
                "headers": {"Authorization": "Bearer <admin>"},
                "expect": {"denied": True, "status": 404},
            },
            {
                "url": "/admin/x",
                "cookies": {"nf_jwt": "<admin>"},
                "expect": {"status": 200, "to": "/admin/x"},
            },
        ],
    },
    {
        "n": 73,
        "rules": "/x /y 200 Role=admin Country=us",
        "checks": [
            {"url": "/x", "country": "DE", "cookies": {"nf_jwt": "<admin>"}, "expect": None},
        ],
    },
    {
        "n": 74,
        "rules": "/x /y 200 Role=admin Country=us",
        "checks": [
            {"url": "/x", "country": "US", "expect": {"denied": True, "status": 404}},
        ],
    },
    {
        "n": 75,
        "rules": "/admin/* 200! Role=admin",
        "checks": [
            {
                "url": "/admin/secret.html",
                "files": ["/admin/secret.html"],
                "resolve": {"action": "not_found", "status": 404, "target": ""},
            },
            {"url": "/admin/secret.html", "expect": {"denied": True, "status": 404}},
        ],
    },
    # ---- §4.4 status, force, shadowing, proxy, hosts, parsing -------------------------
    {
        "n": 76,
        "rules": "/foo /not-foo 200",
        "checks": [
            {
                "url": "/foo",
                "files": ["/foo.html"],
                "resolve": {"action": "file", "status": 200, "target": "/foo.html"},
            },
            {"url": "/foo", "expect": {"status": 200, "to": "/not-foo", "force": False}},
        ],
    },
    {
        "n": 77,
        "rules": "/foo /not-foo 301",
        "checks": [
            {
                "url": "/foo",
                "files": ["/foo.html"],
                "resolve": {"action": "file", "status": 200, "target": "/foo.html"},
            },
        ],
    },
    {
        "n": 78,
        "rules": "/foo /not-foo 301!",
        "checks": [
            {
                "url": "/foo",
                "files": ["/foo.html"],
                "resolve": {"action": "redirect", "status": 301, "target": "/not-foo"},
            },
            {"url": "/foo", "expect": {"status": 301, "to": "/not-foo", "force": True}},
        ],
    },
    {
        "n": 79,
        "rules": "/not-foo /foo 200!",
        "checks": [
            {"url": "/not-foo/index.html", "expect": None},
            {
                "url": "/not-foo/index.html",
                "files": ["/not-foo/index.html", "/foo.html"],
                "resolve": {"action": "file", "status": 200, "target": "/not-foo/index.html"},
            },
        ],
    },
    {
        "n": 80,
        "rules": "/* /index.html 200",
        "checks": [
            {
                "url": "/app.js",
                "files": ["/app.js", "/index.html"],
                "resolve": {"action": "file", "status": 200, "target": "/app.js"},
            },
            {
                "url": "/deep",
                "files": ["/app.js", "/index.html"],
                "resolve": {"action": "rewrite", "status": 200, "target": "/index.html"},
            },
        ],
    },
    {
        "n": 81,
        "rules": "/* /404.html 404",
        "checks": [
            {
                "url": "/missing",
                "files": ["/404.html", "/about.html"],
                "resolve": {"action": "rewrite", "status": 404, "target": "/404.html"},
            },
            {
                "url": "/about",
                "files": ["/404.html", "/about.html"],
                "resolve": {"action": "file", "status": 200, "target": "/about.html"},
            },
        ],
    },
    {
        "n": 82,
        "rules": "/a /b 404",
        "checks": [
            {
                "url": "/a",
                "files": ["/b.html"],
                "resolve": {"action": "rewrite", "status": 404, "target": "/b.html"},
            },
            {"url": "/a", "expect": {"status": 404, "to": "/b", "denied": False, "is_rewrite": True}},
        ],
    },
    {
        "n": 83,
        "rules": "/a /b 410!",
        "checks": [
            {
                "url": "/a",
                "files": ["/a.html", "/b.html"],
                "resolve": {"action": "rewrite", "status": 410, "target": "/b.html"},
            },
        ],
    },
    {
        "n": 84,
        "rules": "/a /b 307",
        "diagnostics": [(W, "STATUS_NOT_ON_NETLIFY", 1, 7)],
        "checks": [
            {"url": "/a", "expect": {"status": 307, "to": "/b", "is_redirect": True}},
        ],
    },
    {
        "n": 85,
        "rules": "/d /e 999",
        "count": 0,
        "diagnostics": [(E, "BAD_STATUS", 1, 7)],
        "checks": [
            {"url": "/d", "expect": None},
        ],
    },
    {
        "n": 86,
        "rules": "/admin/* 200!",
        "checks": [
            {
                "url": "/admin/panel",
                "expect": {"status": 200, "to": "/admin/panel", "force": True, "is_rewrite": True},
            },
        ],
    },
    {
        "n": 87,
        "rules": "/admin/* 301",
        "count": 0,
        "diagnostics": [(E, "MISSING_TO", 1, 1)],
        "checks": [
            {"url": "/admin/x", "expect": None},
        ],
    },
    {
        "n": 88,
        "rules": "/api/* https://api.example.com/:splat 200",
        "checks": [
            {
                "url": "/api/v1/users?x=1",
                "expect": {
                    "status": 200,
                    "to": "https://api.example.com/v1/users",
                    "location": "https://api.example.com/v1/users?x=1",
                    "is_proxy": True,
                },
            },
        ],
    },
    {
        "n": 89,
        "toml": (
            '[[redirects]]\nfrom = "/search"\nto = "https://api.mysearch.com"\nstatus = 200\n'
            'force = true\nheaders = {X-From = "Netlify"}\nsigned = "API_TOKEN"\n'
        ),
        "count": 1,
        "checks": [
            {
                "url": "/search",
                "expect": {
                    "status": 200,
                    "to": "https://api.mysearch.com",
                    "force": True,
                    "is_proxy": True,
                    "location": "https://api.mysearch.com",
                    "line": 1,
                },
            },
        ],
    },
    {
        "n": 90,
        "rules": HOST_RULE,
        "checks": [
            {
                "url": "http://blog.example.com/2020/post",
                "expect": {"status": 301, "to": "https://www.example.com/blog/2020/post", "force": True},
            },
        ],
    },
    {
        "n": 91,
        "rules": HOST_RULE,
        "checks": [
            {"url": "https://blog.example.com/2020/post", "expect": None},
            {"url": "/2020/post", "expect": None},  # origin-form: host rules never match
        ],
    },
    {
        "n": 92,
        "rules": HOST_RULE,
        "checks": [
            {
                "url": "http://BLOG.example.com/x",
                "expect": {"status": 301, "to": "https://www.example.com/blog/x"},
            },
        ],
    },
    {
        "n": 93,
        "rules": "https://site.netlify.app/* https://site.com/:splat 301!\n/a /b 302",
        "checks": [
            {"url": "https://site.com/a", "expect": {"status": 302, "to": "/b", "rule": 1}},
            {
                "url": "https://site.netlify.app/a",
                "expect": {"status": 301, "to": "https://site.com/a", "rule": 0},
            },
        ],
    },
    {
        "n": 94,
        "rules": "/a /b#frag 302",
        "checks": [
            {"url": "/a?x=1", "expect": {"status": 302, "to": "/b#frag", "location": "/b?x=1#frag"}},
        ],
    },
    {
        "n": 95,
        "rules": "/a /b 302 # note",
        "checks": [
            {"url": "/a", "expect": {"status": 302, "to": "/b"}},
        ],
    },
    {
        "n": 96,
        "rules": "/a /b 302 Country=us#x",
        "count": 1,
        "checks": [
            {"url": "/a", "country": "US", "expect": None},
        ],
    },
    {
        "n": 97,
        "rules": "\ufeff/a /b 302",
        "diagnostics": [(W, "BOM", 1, 1)],
        "checks": [
            {"url": "/a", "expect": {"status": 302, "to": "/b", "line": 1}},
        ],
    },
    {
        "n": 98,
        "rules": "/store /blog/:id id=:id 301",
        "count": 0,
        "diagnostics": [(E, "BAD_STATUS", 1, 18)],
        "checks": [
            {"url": "/store?id=1", "expect": None},
        ],
    },
    {
        "n": 99,
        "site": {
            "_redirects": "/x /from-file 302\n",
            "netlify.toml": '[[redirects]]\nfrom = "/x"\nto = "/from-toml"\n',
        },
        "count": 2,
        "checks": [
            {"url": "/x", "expect": {"status": 302, "to": "/from-file", "rule": 0, "file": "_redirects"}},
        ],
    },
    {
        "n": 100,
        "site": {
            "_redirects": "/one /two\n/one /four\n",
            "netlify.toml": (
                '[[redirects]]\nfrom = "/one"\nto = "/two"\n\n[[redirects]]\nfrom = "/one"\nto = "/three"\n'
            ),
        },
        "count": 4,
        "checks": [
            {
                "url": "/one",
                "expect": {"status": 301, "to": "/two", "rule": 0, "file": "_redirects", "line": 1},
            },
        ],
    },
    {
        "n": 101,
        "rules": "/.netlify/from /to",
        "count": 0,
        "diagnostics": [(E, "RESERVED_PATH", 1, 1)],
        "checks": [
            {"url": "/.netlify/from", "expect": None},
        ],
    },
    {
        "n": 102,
        "rules": "/from /to not_a_status",
        "count": 0,
        "diagnostics": [(E, "BAD_STATUS", 1, 11)],
        "checks": [
            {"url": "/from", "expect": None},
        ],
    },
    {
        "n": 103,
        "rules": "/m/scge/legal",
        "count": 0,
        "diagnostics": [(E, "MISSING_TO", 1, 1)],
        "checks": [
            {"url": "/m/scge/legal", "expect": None},
        ],
    },
]


def test_every_case_is_encoded_once() -> None:
    assert [c["n"] for c in CASES] == list(range(1, 104))
    for c in CASES:
        assert c["checks"], c["n"]
        for chk in c["checks"]:
            assert ("expect" in chk) != ("resolve" in chk), (c["n"], chk)


def _tok(value: str) -> str:
    for name, token in TOKENS.items():
        value = value.replace(name, token)
    return value


def _build(engine: type, case: dict[str, Any], tmp_path: Any) -> Any:
    if "rules" in case:
        return engine.parse(case["rules"], jwt_secret=SECRET)
    if "toml" in case:
        return engine.parse(case["toml"], filename="netlify.toml", jwt_secret=SECRET)
    for name, text in case["site"].items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    return engine.from_site(tmp_path, jwt_secret=SECRET)


def _visitor(chk: dict[str, Any]) -> dict[str, Any]:
    kw: dict[str, Any] = {"country": "US", "language": "en", "now": NOW}
    for key in ("country", "language"):
        if key in chk:
            kw[key] = chk[key]
    if "cookies" in chk:
        kw["cookies"] = {k: _tok(v) for k, v in chk["cookies"].items()}
    if "headers" in chk:
        kw["headers"] = {k: _tok(v) for k, v in chk["headers"].items()}
    return {k: v for k, v in kw.items() if v is not OMIT}


def _check_match(m: Any, want: dict[str, Any] | None, what: str) -> None:
    if want is None:
        assert m is None, f"{what}: expected no match, got {m}"
        return
    assert m is not None, f"{what}: expected a match {want}, got None"
    got: dict[str, Any] = {}
    for key in want:
        if key == "line":
            got[key] = m.source.line
        elif key == "file":
            got[key] = m.source.file.rsplit("/", 1)[-1]
        else:
            got[key] = getattr(m, key)
    assert got == want, f"{what}: {m}"
    if want.get("denied"):
        assert m.location == ""
        assert not m.is_redirect and not m.is_proxy and not m.is_rewrite


def _check_diagnostics(rs: Any, want: list[tuple[str, str, int, int | None]]) -> None:
    got = [(d.severity, d.code, d.line, d.column) for d in rs.diagnostics]
    ok = len(got) == len(want) and all(
        g[:3] == w[:3] and (w[3] is None or g[3] == w[3]) for g, w in zip(got, want, strict=True)
    )
    assert ok, f"diagnostics: want {want}, got {[str(d) for d in rs.diagnostics]}"


@pytest.mark.parametrize("case", CASES, ids=[f"case-{c['n']:02d}" for c in CASES])
def test_spec_case(engine: type, case: dict[str, Any], tmp_path: Any) -> None:
    rs = _build(engine, case, tmp_path)
    try:
        _check_diagnostics(rs, case.get("diagnostics", []))
        if "count" in case:
            assert len(rs) == case["count"]
        for i, chk in enumerate(case["checks"]):
            what = f"check {i} ({chk['url']!r})"
            kw = _visitor(chk)
            if "resolve" in chk:
                files = frozenset(chk["files"])
                res = resolve(rs, chk["url"], exists=files.__contains__, **kw)
                want = chk["resolve"]
                assert (res.action, res.status, res.target) == (
                    want["action"],
                    want["status"],
                    want["target"],
                ), f"{what}: {res}"
            else:
                m = rs.match(chk["url"], **kw)
                _check_match(m, chk["expect"], what)
                # The batch API must agree with single matching.
                assert rs.match_many([chk["url"]], **kw) == [m], what
    finally:
        rs.close()
