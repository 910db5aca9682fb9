"""Differential property tests: the native matcher against the pure-Python reference.

Hypothesis generates rule files (valid, invalid and odd lines mixed) and requests from
one small alphabet, so that rules and requests collide often; both matchers must give
the same diagnostics and the same answer for every request.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgesim._visitor import mint_jwt
from edgesim.redirects import ReferenceRuleSet, RuleSet

SECRET = "diff-secret"
NOW = 1_900_000_000.0

SEGMENTS = ["a", "b", "ab", "a.b", "%61", "%2f", "%2F", "caf%C3%A9", "café", "x y", "A", "~u", "%zz", "*x"]
PLACEHOLDERS = [":x", ":y", ":splat", ":id.json", ":", ":X1"]
HOSTS = ["https://ex.com", "http://Ex.com.", "https://ex.com:443", "http://other.org", "https://", "//ex.com"]
TARGETS = [
    "/t",
    "/t/:x",
    "/t/:splat",
    "/:splat",
    "/t/:y/:x",
    "/t?q=:k",
    "/t#frag",
    "//evil.org",
    "https://:x.ex.com/p",
    "https://dst.org/:splat",
    "/a",
    "/a/",
    "/t/:xx",
    "/:x-:y",
    "/t/%zz/é",
    "ftp://no",
    "relative",
]
STATUSES = ["", "301", "302", "301!", "200", "200!", "404", "410!", "307", "999", "30x", "+301", "204"]
CONDITIONS = [
    "Country=de,fr",
    "Country=US",
    "Language=en",
    "Language=fr-CA",
    "Cookie=c1",
    "Cookie=c1,c2",
    "Role=admin",
    "Role=admin,editor",
    "country=de",
    "Foo=bar",
    "Country=",
    "Country=de,",
    "Sign=VAR",
    "Country=a=b",
    "noequals",
]
QUERY = ["k=:k", "k=v", "q=a%20b", "k=", "=v", "bare", "x=:x"]


@st.composite
def from_paths(draw: st.DrawFn) -> str:
    n = draw(st.integers(0, 4))
    segs = [draw(st.sampled_from(SEGMENTS + PLACEHOLDERS)) for _ in range(n)]
    body = "/".join(segs)
    tail = draw(st.sampled_from(["", "", "/", "/*", "*"]))
    path = "/" + body + tail if body else "/" + tail.lstrip("/")
    if draw(st.integers(0, 9)) == 0:
        path = draw(st.sampled_from(HOSTS)) + path
    elif draw(st.integers(0, 19)) == 0:
        path = path.lstrip("/")
    return path


@st.composite
def rule_lines(draw: st.DrawFn) -> str:
    kind = draw(st.integers(0, 19))
    if kind == 0:
        return draw(st.sampled_from(["", "# comment", "   ", "/only", "/a/* 200", "/a/* 301", "/x 404page"]))
    frm = draw(from_paths())
    parts = [frm]
    parts += draw(st.lists(st.sampled_from(QUERY), max_size=2))
    parts.append(draw(st.sampled_from(TARGETS)))
    status = draw(st.sampled_from(STATUSES))
    if status:
        parts.append(status)
    parts += draw(st.lists(st.sampled_from(CONDITIONS), max_size=2))
    if draw(st.integers(0, 9)) == 0:
        parts.append("# trailing comment")
    sep = draw(st.sampled_from([" ", "  ", "\t"]))
    return sep.join(parts)


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, dict[str, object]]:
    n = draw(st.integers(0, 4))
    segs = [draw(st.sampled_from([*SEGMENTS, "q", "", "%41", "7"])) for _ in range(n)]
    path = "/" + "/".join(segs) + draw(st.sampled_from(["", "", "/"]))
    q = draw(
        st.sampled_from(["", "?k=v", "?k=1&k=2", "?q=a+b", "?q=a%20b&x=%2F", "?k", "?k=&x=y", "?x=a%zz"])
    )
    prefix = draw(
        st.sampled_from(["", "", "https://ex.com", "http://ex.com", "https://EX.com:443", "http://other.org"])
    )
    kw: dict[str, object] = {}
    if draw(st.booleans()):
        kw["country"] = draw(st.sampled_from(["de", "FR", "us", ""]))
    if draw(st.booleans()):
        kw["language"] = draw(st.sampled_from(["en", "en-US", "fr-ca", "FR", ""]))
    cookies = {}
    for name in draw(st.lists(st.sampled_from(["c1", "c2"]), max_size=2, unique=True)):
        cookies[name] = draw(st.sampled_from(["1", ""]))
    roles = draw(st.lists(st.sampled_from(["admin", "editor", "x"]), max_size=2, unique=True))
    if roles:
        cookies["nf_jwt"] = mint_jwt(SECRET, roles, exp=NOW + 10)
    if cookies:
        kw["cookies"] = cookies
    return prefix + path + q, kw


def _outcome(rs: object, url: str, kw: dict[str, object]) -> object:
    try:
        m = rs.match(url, now=NOW, **kw)  # type: ignore[attr-defined]
    except ValueError:
        return "ValueError"
    if m is None:
        return None
    return (m.status, m.to, m.force, m.denied, m.rule, m.after_denial, m.location)


def _diags(rs: object) -> list[tuple[str, str, int, int]]:
    return [(d.severity, d.code, d.line, d.column) for d in rs.diagnostics]  # type: ignore[attr-defined]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(rule_lines(), min_size=1, max_size=12), st.lists(requests(), min_size=1, max_size=12))
def test_native_agrees_with_reference(lines: list[str], reqs: list[tuple[str, dict[str, object]]]) -> None:
    text = "\n".join(lines) + "\n"
    native = RuleSet.parse(text, jwt_secret=SECRET)
    ref = ReferenceRuleSet.parse(text, jwt_secret=SECRET)
    assert _diags(native) == _diags(ref)
    assert len(native) == len(ref)
    for url, kw in reqs:
        assert _outcome(native, url, kw) == _outcome(ref, url, kw), url
    urls = [u for u, _ in reqs]
    try:
        many = native.match_many(urls)
    except ValueError:
        assert any(_outcome(native, u, {}) == "ValueError" for u in urls)
    else:
        assert many == [native.match(u) for u in urls]


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_agree(data: bytes) -> None:
    native = RuleSet.parse(data)
    ref = ReferenceRuleSet.parse(data)
    assert _diags(native) == _diags(ref)
    assert [(r.from_, r.to, r.status, r.force) for r in native.rules] == [
        (r.from_, r.to, r.status, r.force) for r in ref.rules
    ]


@pytest.mark.parametrize("seed", range(3))
def test_large_generated_sets_agree(seed: int) -> None:
    from rulegen import mixed_rules, mixed_urls

    text = mixed_rules(1500, seed=seed)
    urls = mixed_urls(1500, 1500, seed=seed, rules_seed=seed)
    native = RuleSet.parse(text)
    ref = ReferenceRuleSet.parse(text)
    visitors: list[dict[str, Any]] = [{}, {"country": "de", "language": "fr"}]
    for kw in visitors:
        assert native.match_many(urls, **kw) == ref.match_many(urls, **kw)


_VISITORS: list[dict[str, object]] = [
    {},
    {"country": "de", "language": "fr-CA"},
    {"country": "US", "language": "en", "cookies": {"c1": "1"}},
    {"cookies": {"c2": "", "nf_jwt": mint_jwt(SECRET, ["admin"], exp=NOW + 10)}},
    {"language": "en-US", "cookies": {"nf_jwt": mint_jwt(SECRET, ["editor", "x"], exp=NOW + 10)}},
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(rule_lines(), min_size=1, max_size=12), st.lists(requests(), min_size=1, max_size=12))
def test_shared_answers_are_every_visitors(
    lines: list[str], reqs: list[tuple[str, dict[str, object]]]
) -> None:
    # match_scoped's "not the visitor's own" (esr_result.context_used == 0) must mean
    # that every visitor gets that answer: checked against the reference matcher
    text = "\n".join(lines) + "\n"
    native = RuleSet.parse(text, jwt_secret=SECRET)
    ref = ReferenceRuleSet.parse(text, jwt_secret=SECRET)
    conditional = any(r.has_conditions for r in native.rules)
    for url, kw in reqs:
        country: Any = kw.get("country")
        language: Any = kw.get("language")
        cookies: Any = kw.get("cookies")
        try:
            m, own = native.match_scoped(url, country, language, cookies, None, NOW)
        except ValueError:
            continue
        assert _outcome(native, url, kw) == (
            None if m is None else (m.status, m.to, m.force, m.denied, m.rule, m.after_denial, m.location)
        )
        if not conditional:
            assert not own  # nothing to reach
        if not own:
            assert {_outcome(ref, url, v) for v in _VISITORS} == {_outcome(ref, url, kw)}, url
