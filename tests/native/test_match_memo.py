"""RuleSet.match memoises results per visitor: same answers as the native matcher."""

from __future__ import annotations

import pytest

from edgesim._reqfields import MISSING
from edgesim._visitor import mint_jwt
from edgesim.redirects import RuleSet

SECRET = "s3cret"
NOW = 1_800_000_000.0
RULES = (
    "/a /b 302\n"
    "/home /de/home 302 Country=DE\n"
    "/home /en/home 302 Language=en\n"
    "/news/* /blog/:splat\n"
    "/admin/* /admin/:splat 200! Role=admin\n"
    "/admin/* /login 302!\n"
)


def _fresh(url: str, headers: list[tuple[str, str]], country: str | None) -> object:
    return RuleSet.parse(RULES, jwt_secret=SECRET).match(url, headers=headers, country=country, now=NOW)


def test_memoised_answers_equal_fresh_ones() -> None:
    rs = RuleSet.parse(RULES, jwt_secret=SECRET)
    cases = [
        ("/home", [("host", "a.test"), ("accept-language", "en")], None),
        ("/home", [("host", "a.test"), ("accept-language", "en")], "DE"),
        ("/home", [("host", "a.test"), ("accept-language", "fr")], None),
        ("/news/x?y=1", [("host", "a.test")], "US"),
        ("/a", [("host", "a.test"), ("cookie", "nf_country=DE")], None),
        ("/nothing", [("host", "a.test")], None),
    ]
    for url, headers, country in cases:  # nothing kept yet
        assert rs.memo.lookup(url, country, None, headers) is MISSING
    for _ in range(3):  # the first pass fills the memo, the others read it
        for url, headers, country in cases:
            assert rs.match(url, headers=headers, country=country, now=NOW) == _fresh(url, headers, country)
    # what the edge core reads without calling match (MatchMemo.lookup): the same answers
    for url, headers, country in cases:
        assert rs.memo.lookup(url, country, None, headers) == _fresh(url, headers, country)
    assert len(rs.memo) == len(cases)
    assert rs.match("/home", headers=[("accept-language", "en")]).location == "/en/home"  # type: ignore[union-attr]
    assert rs.match("/home", headers=[("accept-language", "en")], country="DE").location == "/de/home"  # type: ignore[union-attr]


def test_tokens_are_never_memoised() -> None:
    # a token's roles depend on the time: the same request gets a new answer later
    rs = RuleSet.parse(RULES, jwt_secret=SECRET)
    tok = mint_jwt(SECRET, ["admin"], exp=NOW + 60)
    headers = [("host", "a.test"), ("cookie", f"nf_jwt={tok}")]
    assert rs.match("/admin/x", headers=headers, now=NOW).to == "/admin/x"  # type: ignore[union-attr]
    assert rs.match("/admin/x", headers=headers, now=NOW + 61).to == "/login"  # type: ignore[union-attr]
    assert rs.memo.lookup("/admin/x", None, None, headers) is MISSING and len(rs.memo) == 0


def test_a_closed_rule_set_refuses_even_memoised_requests() -> None:
    rs = RuleSet.parse(RULES)
    headers = [("host", "a.test")]
    assert rs.match("/a", headers=headers) is not None
    assert rs.memo.lookup("/a", None, None, headers) is not MISSING
    rs.close()
    with pytest.raises(ValueError, match="closed"):
        rs.match("/a", headers=headers)
    # nor does the edge core find it in the memo any more
    assert rs.memo.lookup("/a", None, None, headers) is MISSING


def test_an_edge_node_takes_the_reference_matcher_too() -> None:
    # the reference matcher answers through match (its match_unmemoised), and the edge
    # core keeps its answers in the rule set's memo as it does the native matcher's
    from edgesim.cache import HttpCache, MemoryStore
    from edgesim.http import Request
    from edgesim.node import EdgeConfig, EdgeNode, Reply
    from edgesim.redirects import ReferenceRuleSet

    rules = ReferenceRuleSet.parse(RULES)
    node = EdgeNode(
        HttpCache(MemoryStore(10**6)),
        # (typed for the native RuleSet; any rule set of the common API works)
        EdgeConfig(name="e", manifests=False, rules={"a.test": rules}),  # type: ignore[dict-item]
    )
    for _ in range(2):
        step = node.handle(Request("GET", "/a", [("host", "a.test")]), NOW)
        assert isinstance(step, Reply) and step.response.status == 302
        assert step.response.header("location") == "/b"
        assert len(rules.memo) == 1
    assert node.stats.redirects == 2


SCOPED_RULES = (
    "/ /de/ 302 Country=de\n"
    "/a/* /b/:splat 301\n"
    "/q id=:id /r/:id 301\n"
    "/q /fr/q 302 Language=fr\n"
    "/c/* /legacy/:splat 200 Cookie=legacy\n"
    "/gated/* /gated/:splat 200! Role=admin\n"
    "/x/:n /y/:n 302\n"
    "/* /index.html 200\n"
)
URLS = ["/", "/a/1", "/a/", "/q?id=3", "/q", "/c/x", "/gated/p", "/x/2", "/zzz", "https://h.test/a/9"]
VISITORS: list[tuple[str | None, list[tuple[str, str]]]] = [
    (None, []),
    ("de", []),
    ("us", [("accept-language", "fr")]),
    (None, [("cookie", "legacy=1")]),
    ("de", [("cookie", "legacy=1"), ("accept-language", "fr-CA")]),
]


def test_match_scoped_says_which_answers_every_visitor_shares() -> None:
    rs = RuleSet.parse(SCOPED_RULES)
    own = {}
    for url in URLS:
        answers = {rs.match_unmemoised(url, c, None, None, h, NOW) for c, h in VISITORS}
        for c, h in VISITORS:
            m, mine = rs.match_scoped(url, c, None, None, h, NOW)
            assert m == rs.match_unmemoised(url, c, None, None, h, NOW)
            own[url] = mine
            if not mine:  # a shared answer is every visitor's answer
                assert answers == {m}, url
    # reached a rule with visitor conditions: "/" (Country), "/q" (Language, after the
    # query rule failed), "/c/x" (Cookie), "/gated/p" (Role); the others did not
    assert {u for u, mine in own.items() if mine} == {"/", "/q", "/c/x", "/gated/p"}


def test_shared_answers_are_kept_once_for_every_visitor() -> None:
    rs = RuleSet.parse(SCOPED_RULES)
    for c, h in VISITORS:
        assert rs.match("/a/1", headers=h, country=c, now=NOW).location == "/b/1"  # type: ignore[union-attr]
    assert len(rs.memo) == 1 and rs.memo.shared("/a/1").location == "/b/1"
    # even a token's request reads it: no role decides this URL
    tok = mint_jwt(SECRET, ["admin"], exp=NOW + 60)
    assert rs.memo.lookup("/a/1", None, None, [("cookie", f"nf_jwt={tok}")]).location == "/b/1"
    for c, h in VISITORS:  # per-visitor answers stay per visitor
        rs.match("/", headers=h, country=c, now=NOW)
    assert rs.memo.shared("/") is MISSING
    assert len(rs.memo) == 1 + len(
        {(c, dict(h).get("cookie"), dict(h).get("accept-language")) for c, h in VISITORS}
    )
    assert rs.memo.lookup("/", "de", None, []).location == "/de/"
    assert rs.memo.lookup("/", "us", None, []) is MISSING  # never asked with that visitor
    rs.close()
    assert len(rs.memo) == 0


def test_the_reference_matcher_shares_nothing() -> None:
    from edgesim.redirects import ReferenceRuleSet

    ref = ReferenceRuleSet.parse(SCOPED_RULES)
    assert ref.match_scoped("/a/1", None, None, None, [], NOW) == (
        RuleSet.parse(SCOPED_RULES).match("/a/1"),
        True,
    )


def test_an_edge_node_shares_answers_no_visitor_decided() -> None:
    from edgesim.cache import HttpCache, MemoryStore
    from edgesim.http import Request
    from edgesim.node import EdgeConfig, EdgeNode, Reply

    rules = RuleSet.parse(SCOPED_RULES)
    node = EdgeNode(
        HttpCache(MemoryStore(10**6)), EdgeConfig(name="e", manifests=False, rules={"h.test": rules})
    )
    for country, headers in VISITORS:
        hs = [("host", "h.test"), ("x-country", country or "zz"), *headers]
        step = node.handle(Request("GET", "/x/7", hs), NOW)
        assert isinstance(step, Reply) and step.response.header("location") == "/y/7"
        step = node.handle(Request("GET", "/", hs), NOW)
        if country == "de":
            assert isinstance(step, Reply) and step.response.header("location") == "/de/"
        else:  # rewritten to /index.html: fetched
            assert not isinstance(step, Reply)
    assert rules.memo.shared("https://h.test/x/7").location == "/y/7"
    assert rules.memo.shared("https://h.test/") is MISSING
    assert node.stats.redirects == len(VISITORS) + 2
