"""The public rules API, run against the native and the reference matcher alike."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgesim._visitor import mint_jwt
from edgesim.errors import RuleFileError, RuleSyntaxError
from edgesim.redirects import Match, Source, resolve, resolve_file

SECRET = "s3cret"
NOW = 1_800_000_000.0


def test_smoke_native_module_builds() -> None:
    from edgesim import _redirects_cffi

    assert _redirects_cffi.lib.ESR_OK == 0
    assert _redirects_cffi.ffi.string(_redirects_cffi.lib.esr_diag_code_name(1)) == b"MISSING_TO"


def test_basic_match_fields(engine: type) -> None:
    rs = engine.parse("/a /b 302\n/news/* /blog/:splat\n")
    m = rs.match("https://example.com/a?x=1")
    assert isinstance(m, Match)
    assert (m.status, m.to, m.force, m.denied, m.rule) == (302, "/b", False, False, 0)
    assert m.location == "/b?x=1"
    assert m.source == Source("_redirects", 1)
    m2 = rs.match("/news/2024/post/")
    assert (m2.status, m2.to, m2.source.line) == (301, "/blog/2024/post/", 2)
    assert rs.match("/newsroom") is None
    assert len(rs) == 2


def test_match_many_aligned_and_equal_to_match(engine: type) -> None:
    from rulegen import mixed_rules, mixed_urls

    rs = engine.parse(mixed_rules(300))
    urls = mixed_urls(300, 400)
    many = rs.match_many(urls)
    assert len(many) == len(urls)
    assert many == [rs.match(u) for u in urls]
    assert sum(m is not None for m in many) > 150
    assert rs.match_many([]) == []


def test_match_many_with_context(engine: type) -> None:
    rs = engine.parse("/x /de 302 Country=de\n/x /other 302\n")
    got = rs.match_many(["/x", "/x?a=1"], country="DE")
    assert [m.to for m in got if m] == ["/de", "/de"]
    assert got[1].location == "/de?a=1"


def test_visitor_context_sources(engine: type) -> None:
    rs = engine.parse("/ /fr 302 Language=fr\n/ /us 302 Country=us\n/ /ck 302 Cookie=beta\n")
    assert rs.match("/", headers={"Accept-Language": "fr-CA,en;q=0.5"}).to == "/fr"
    assert rs.match("/", headers={"accept-language": "en, fr"}) is None
    assert rs.match("/", cookies={"nf_lang": "fr"}, language=None).to == "/fr"
    assert rs.match("/", cookies={"nf_country": "US"}).to == "/us"
    assert rs.match("/", headers={"Cookie": "a=1; nf_country=us"}).to == "/us"
    assert rs.match("/", cookies={"beta": "1"}).to == "/ck"
    assert rs.match("/", cookies={"beta": ""}) is None
    # an explicit argument wins over cookies
    assert rs.match("/", country="DE", cookies={"nf_country": "us"}) is None


def test_roles_with_virtual_time(engine: type) -> None:
    rules = "/admin/* /admin/:splat 200! Role=admin\n/admin/* /login 302!\n"
    rs = engine.parse(rules, jwt_secret=SECRET)
    good = mint_jwt(SECRET, ["admin"], exp=NOW + 60)
    m = rs.match("/admin/x", cookies={"nf_jwt": good}, now=NOW)
    assert (m.status, m.to, m.after_denial) == (200, "/admin/x", False)
    # the same token, later in virtual time: expired, so denied, then the fallback
    late = rs.match("/admin/x", cookies={"nf_jwt": good}, now=NOW + 61)
    assert (late.status, late.to, late.after_denial) == (302, "/login", True)
    wrong = mint_jwt("other", ["admin"], exp=NOW + 60)
    assert rs.match("/admin/x", cookies={"nf_jwt": wrong}, now=NOW).to == "/login"
    none_alg = mint_jwt(SECRET, ["admin"], exp=NOW + 60, alg="HS512")
    assert rs.match("/admin/x", cookies={"nf_jwt": none_alg}, now=NOW).to == "/login"
    only = engine.parse("/admin/* 200! Role=admin\n", jwt_secret=SECRET)
    d = only.match("/admin/a", cookies={"nf_jwt": mint_jwt(SECRET, "editor", exp=NOW + 5)}, now=NOW)
    assert d.denied and d.status == 404 and d.location == ""
    # no secret configured: role checks always fail
    assert engine.parse(rules).match("/admin/x", cookies={"nf_jwt": good}, now=NOW).to == "/login"


def test_custom_role_claim(engine: type) -> None:
    rs = engine.parse("/r /s 200 Role=ops\n", jwt_secret=SECRET, jwt_role_claim="roles")
    tok = mint_jwt(SECRET, ["ops"], exp=NOW + 10, claim="roles")
    assert rs.match("/r", cookies={"nf_jwt": tok}, now=NOW).to == "/s"


def test_location_query_rules(engine: type) -> None:
    rs = engine.parse(
        "/foo / 302\n/test id=:id /?param=:id 302\n/api/* /.netlify/functions/f?foo=1 200\n/frag /b#top 302\n"
    )
    assert rs.match("/foo?foo=1&foo=2&bar=1").location == "/?foo=1&foo=2&bar=1"
    assert rs.match("/test?id=1&x=2").location == "/?param=1"
    assert rs.match("/api/x?bar=2").location == "/.netlify/functions/f?bar=2"
    assert rs.match("/frag?x=1").location == "/b?x=1#top"


def test_kinds(engine: type) -> None:
    rs = engine.parse("/r /x 301\n/w /x 200\n/p https://api.example.com/ 200\n/e /404.html 404\n")
    assert rs.match("/r").is_redirect
    assert rs.match("/w").is_rewrite and not rs.match("/w").is_proxy
    assert rs.match("/p").is_proxy
    e = rs.match("/e")
    assert e.is_rewrite and e.status == 404


def test_diagnostics_objects_and_format(engine: type) -> None:
    rs = engine.parse("/ok /fine\n/x /y 302 Foo=bar\n\n/a /b 30x\n", filename="site/_redirects")
    assert len(rs) == 1
    codes = [(d.code, d.line, d.column, d.severity) for d in rs.diagnostics]
    assert codes == [("UNKNOWN_CONDITION", 2, 11, "error"), ("BAD_STATUS", 4, 7, "error")]
    text = str(rs.diagnostics[0])
    assert text.startswith("site/_redirects:2:11: error: ")
    assert text.endswith("[UNKNOWN_CONDITION]")
    assert '"Foo"' in text
    assert rs.errors == rs.diagnostics and rs.warnings == ()


def test_strict_raises_with_location(engine: type) -> None:
    with pytest.raises(RuleSyntaxError) as info:
        engine.parse("/a /b\n/c d 301\n", strict=True)
    err = info.value
    assert (err.line, err.column, err.code) == (2, 4, "BAD_TARGET")
    assert "_redirects:2:4" in str(err)
    # warnings alone do not fail strict mode
    assert len(engine.parse("/a /b 307\n", strict=True)) == 1


def test_toml_rules_and_errors(engine: type) -> None:
    toml = """
[[redirects]]
from = "/old"
to = "/new"
status = "302"

[[redirects]]
from = "/bad"
to = "/x"
force = "yes"

[[redirects]]
origin = "/search"
destination = "https://s.example.com/"
status = 200
force = true
params = { q = ":q" }
conditions = { country = "de, fr" }
headers = { X-From = "edge" }

[[redirects]]
from = "/fwd/*"
status = 200
"""
    rs = engine.parse(toml, filename="netlify.toml")
    assert len(rs) == 3
    assert rs.match("/old").to == "/new" and rs.match("/old").status == 302
    assert rs.match("/old").source == Source("netlify.toml", 2, 1)
    s = rs.match("/search?q=a+b", country="FR")
    assert s is not None and s.is_proxy and s.force and s.to == "https://s.example.com/"
    assert s.location == "https://s.example.com/?q=a+b"
    assert rs.match("/search?q=1", country="US") is None
    assert rs.match("/fwd/a/b").to == "/fwd/a/b"
    diags = [(d.code, d.line, d.key) for d in rs.diagnostics]
    assert ("BAD_FIELD_TYPE", 7, "redirects[1].force") in diags
    assert ("NONCANONICAL_KEY", 12, "redirects[2]") in diags
    assert str(next(d for d in rs.diagnostics if d.code == "BAD_FIELD_TYPE")).startswith(
        "netlify.toml:7:1: error: redirects[1].force: "
    )


@pytest.mark.parametrize(
    ("toml", "code"),
    [
        ("[[redirects]\nfrom='/a'\n", "TOML_SYNTAX"),
        ("[redirects]\nfrom='/a'\nto='/b'\n", "NOT_AN_ARRAY"),
        ("redirects = [1, 2]\n", "NOT_AN_ARRAY"),
        ("[[redirects]]\nto='/b'\n", "BAD_FROM"),
        ("[[redirects]]\nfrom='/a'\nto='/b'\nstatus='301!'\n", "BAD_FIELD_TYPE"),
        ("[[redirects]]\nfrom='/a'\nto='/b'\nstatus=999\n", "BAD_STATUS"),
        ("[[redirects]]\nfrom='/a'\nto='/b'\nheaders=[{a='b'}]\n", "BAD_FIELD_TYPE"),
        ("[[redirects]]\nfrom='/a'\nto='/b'\nquery={a=1}\n", "BAD_FIELD_TYPE"),
        ("[[redirects]]\nfrom='/a'\nto='/b'\nconditions={Country=['de','']}\n", "BAD_CONDITION"),
        ("[[redirects]]\nfrom='/a'\nto='/b'\nconditions={Planet='mars'}\n", "UNKNOWN_CONDITION"),
    ],
)
def test_toml_error_codes(engine: type, toml: str, code: str) -> None:
    rs = engine.parse(toml, filename="netlify.toml")
    assert len(rs) == 0
    assert [d.code for d in rs.errors] == [code]


def test_headers_on_non_proxy_warns(engine: type) -> None:
    rs = engine.parse("[[redirects]]\nfrom='/a'\nto='/b'\nheaders={X='1'}\n", filename="netlify.toml")
    assert [d.code for d in rs.warnings] == ["HEADERS_ON_NON_PROXY"]
    assert len(rs) == 1


def test_from_site_order_and_files(engine: type, tmp_path: Path) -> None:
    (tmp_path / "_redirects").write_text("/x /from-file 302\n")
    (tmp_path / "netlify.toml").write_text(
        '[[redirects]]\nfrom = "/x"\nto = "/from-toml"\n[[redirects]]\nfrom = "/y"\nto = "/toml-only"\n'
    )
    rs = engine.from_site(tmp_path)
    assert rs.match("/x").to == "/from-file"
    y = rs.match("/y")
    assert y.to == "/toml-only" and y.rule == 2 and y.source.file.endswith("netlify.toml")
    assert y.source.table == 2 and y.source.line == 4
    assert rs.files == (str(tmp_path / "_redirects"), str(tmp_path / "netlify.toml"))


def test_rules_give_each_rule_as_written(engine: type, tmp_path: Path) -> None:
    lines = ["# comment", "", *(f"/old-{i} /new-{i} 30{1 + i % 2}" for i in range(300)), "bad-line"]
    (tmp_path / "_redirects").write_text("\n".join(lines) + "\n")
    (tmp_path / "netlify.toml").write_text('[[redirects]]\nfrom = "/t"\nto = "/u"\nforce = true\n')
    rules = engine.from_site(tmp_path).rules
    assert len(rules) == 301
    # every rule's text is its own line (each file is split once, not once per rule)
    assert [r.text for r in rules[:300]] == lines[2:302]
    assert [r.source.line for r in rules[:300]] == list(range(3, 303))
    assert rules[300].text == "from = '/t', to = '/u', status = 301, force = true"
    assert (rules[7].from_, rules[7].to, rules[7].status) == ("/old-7", "/new-7", 302)


def test_from_file_picks_format(engine: type, tmp_path: Path) -> None:
    p = tmp_path / "rules.toml"
    p.write_text('[[redirects]]\nfrom = "/a"\nto = "/b"\n')
    assert engine.from_file(p).match("/a").to == "/b"
    q = tmp_path / "_redirects"
    q.write_text("/a /c\n")
    assert engine.from_file(q).match("/a").to == "/c"
    with pytest.raises(RuleFileError, match="cannot read"):
        engine.from_file(tmp_path / "missing")
    with pytest.raises(RuleFileError, match="not a directory"):
        engine.from_site(tmp_path / "missing")


def test_invalid_urls_raise_value_error(engine: type) -> None:
    rs = engine.parse("/a /b\n")
    for bad in ["", "a/b", "ftp://x/y", "mailto:x"]:
        with pytest.raises(ValueError, match="not an http"):
            rs.match(bad)
    with pytest.raises(ValueError, match="not an http"):
        rs.match_many(["/a", "nope"])
    with pytest.raises(TypeError):
        rs.match(b"/a")  # type: ignore[arg-type]


def test_context_manager_and_close(engine: type) -> None:
    with engine.parse("/a /b\n") as rs:
        m = rs.match("/a")
    with pytest.raises(ValueError, match="closed"):
        rs.match("/a")
    with pytest.raises(ValueError, match="closed"):
        rs.match_many(["/a"])
    rs.close()  # idempotent
    assert m.to == "/b"  # results are plain values, valid after close


def test_resolve_shadowing_and_pretty_urls(engine: type) -> None:
    files = {"/foo.html", "/about/index.html", "/404.html", "/app.js", "/b.html"}
    rs = engine.parse("/foo /not-foo 200\n/about /x 301!\n/missing /gone 410\n/* /index.html 200\n")
    ex = files.__contains__
    assert resolve(rs, "/foo", exists=ex)[:3] == ("file", 200, "/foo.html")
    assert resolve(rs, "/about", exists=ex)[:3] == ("redirect", 301, "/x")
    assert resolve(rs, "/app.js", exists=ex)[:3] == ("file", 200, "/app.js")
    # rewrite to a missing target: 404 page, with the rule's status when it is an error
    assert resolve(rs, "/deep/link", exists=ex)[:3] == ("not_found", 404, "/404.html")
    assert resolve(rs, "/missing", exists=ex)[:3] == ("not_found", 410, "/404.html")
    assert resolve(None, "/nothing", exists=set().__contains__)[:3] == ("not_found", 404, "")


def test_resolve_function_rewrite(engine: type) -> None:
    rs = engine.parse("/api/* /.netlify/functions/f?foo=1 200\n")
    got = resolve(rs, "/api/x?bar=2", exists=set().__contains__)
    assert got[:3] == ("function", 200, "/.netlify/functions/f?bar=2")


def test_resolve_file_order() -> None:
    have = {"/a.htm", "/a/index.html", "/d/index.htm", "/x.png.html"}
    assert resolve_file("/a", have.__contains__) == "/a.htm"
    assert resolve_file("/d/", have.__contains__) == "/d/index.htm"
    assert resolve_file("/x.png", have.__contains__) is None
    assert resolve_file("/", {"/index.html"}.__contains__) == "/index.html"


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(["[[redirects]]", "  [[ redirects ]]", 'from = "/a"', "", "# [[redirects]]", "x\r"]),
        max_size=40,
    )
)
def test_toml_table_lines_are_each_headers_line(rows: list[str]) -> None:
    # counted from header to header (linear), as counting from the file's start would
    from edgesim._rulefiles import _TABLE_HEADER, toml_source

    data = "\n".join(rows).encode()
    naive = [data.count(b"\n", 0, m.start()) + 1 for m in _TABLE_HEADER.finditer(data)]
    assert toml_source("netlify.toml", data).table_lines == naive
