"""The origin's sans-IO core: sites, files, rules, conditional requests, deploys,
synthetic catalogs. No event loop, no sockets, no sleeps; real temp directories."""

from __future__ import annotations

import ast
import json
import math
import os
import random
import statistics
import subprocess
import sys
from array import array
from email.utils import formatdate
from hashlib import blake2b
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgesim.http import Request, Response
from edgesim.redirects import mint_jwt
from origin._catalog import (
    Catalog,
    _bulk_digests,
    _listing,
    _make_listing,
    _object_hash,
    _relisting,
    _rounded,
)
from origin._config import CatalogSpec, Distribution, Uniforms, is_hashed, parse_config
from origin.core import DEPLOY_HEADER, OriginCore, SiteConfigError, http_date

NOW = 1_700_000_000.0
MTIME = 1_600_000_000

RULES = """\
/blog/:year/:slug  /posts/:year-:slug   200
/news/*            /blog/:splat         301
/about             /elsewhere           302
/about.html        /about               301!
/login             /members/            302!
/                  /fr/                 302!  Language=fr
/                  /au/                 302!  Country=au
/api/*             https://api.example.com/:splat  200
/app/*             /app/index.html      200
/gone/*            /404.html            404
/missing-target    /nowhere             200
"""

FILES = {
    "index.html": "<h1>home</h1>",
    "about.html": "<h1>about</h1>",
    "login.html": "<h1>login</h1>",
    "blog/index.html": "<h1>blog</h1>",
    "posts/2024-hello.html": "<h1>hello</h1>",
    "app/index.html": "<h1>app</h1>",
    "fr/index.html": "<h1>fr</h1>",
    "404.html": "<h1>not found</h1>",
    "assets/app.3f9c2a1b.js": "console.log(1)",
    "img/logo.png": "PNG",
}


def write_site(root: Path, name: str, files: dict[str, str], **extra: str) -> Path:
    site = root / name
    site.mkdir(parents=True, exist_ok=True)
    for rel, text in {**files, **extra}.items():
        p = site / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        os.utime(p, (MTIME, MTIME))
    return site


@pytest.fixture
def sites(tmp_path: Path) -> Path:
    write_site(tmp_path, "example.com", FILES, _redirects=RULES)
    write_site(tmp_path, "plain.test", {"index.html": "plain"})
    return tmp_path


@pytest.fixture
def core(sites: Path) -> OriginCore:
    return OriginCore.from_directory(sites, now=NOW)


def get(
    core: OriginCore,
    target: str,
    host: str = "example.com",
    method: str = "GET",
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
) -> Response:
    return core.handle(Request(method, target, [("host", host), *(headers or [])], body), NOW)


# ---- sites -------------------------------------------------------------------------


def test_site_selected_by_host_ignoring_port_and_case(core: OriginCore) -> None:
    assert get(core, "/", host="plain.test").body == b"plain"
    assert get(core, "/", host="PLAIN.test:8080").body == b"plain"
    assert get(core, "/", host="example.com").body == b"<h1>home</h1>"


def test_unknown_host_is_404_with_clear_body(core: OriginCore) -> None:
    r = get(core, "/", host="nowhere.test")
    assert r.status == 404
    assert b"no site for host 'nowhere.test'" in (r.body or b"")
    assert r.header("cache-control") == "no-store"
    assert r.header(DEPLOY_HEADER) is None


def test_default_site_catches_unknown_hosts(sites: Path) -> None:
    write_site(sites, "default", {"index.html": "fallback"})
    core = OriginCore.from_directory(sites, now=NOW)
    assert get(core, "/", host="nowhere.test").body == b"fallback"
    assert get(core, "/", host="plain.test").body == b"plain"


def test_every_site_response_carries_the_deploy_id(core: OriginCore) -> None:
    deploy_id = core.sites["example.com"].deploy.id
    for target in ["/", "/about", "/news/x", "/api/x", "/nope", "/.edgesim/manifest"]:
        assert get(core, target).header(DEPLOY_HEADER) == deploy_id, target
    assert get(core, "/", method="DELETE").header(DEPLOY_HEADER) == deploy_id


def test_sites_dir_must_exist(tmp_path: Path) -> None:
    with pytest.raises(SiteConfigError, match="not a directory"):
        OriginCore.from_directory(tmp_path / "missing", now=NOW)


# ---- files and pretty URLs ------------------------------------------------------------


def test_file_response_headers(core: OriginCore) -> None:
    r = get(core, "/assets/app.3f9c2a1b.js")
    assert r.status == 200
    assert r.body == b"console.log(1)"
    assert r.size == len(b"console.log(1)")
    assert r.header("content-type") == "application/javascript; charset=utf-8"
    assert r.header("content-length") == str(r.size)
    etag = r.header("etag")
    assert etag is not None and etag.startswith('"') and not etag.startswith("W/")
    assert r.header("last-modified") == formatdate(MTIME, usegmt=True)
    assert r.header("date") == formatdate(NOW, usegmt=True)


@pytest.mark.parametrize(
    ("target", "body"),
    [
        ("/", b"<h1>home</h1>"),
        ("/index.html", b"<h1>home</h1>"),
        ("/blog", b"<h1>blog</h1>"),
        ("/blog/", b"<h1>blog</h1>"),
        ("/fr", b"<h1>fr</h1>"),
        ("/posts/2024-hello", b"<h1>hello</h1>"),
    ],
)
def test_pretty_urls(core: OriginCore, target: str, body: bytes) -> None:
    r = get(core, target)
    assert (r.status, r.body) == (200, body)


@pytest.mark.parametrize("name", ["_redirects", "_edgesim.toml", "netlify.toml"])
def test_site_config_files_are_not_served(sites: Path, name: str) -> None:
    write_site(sites, "cfg.test", {"index.html": "x"}, **{name: ""})
    core = OriginCore.from_directory(sites, now=NOW)
    assert get(core, f"/{name}", host="cfg.test").status == 404


def test_percent_encoded_paths(sites: Path) -> None:
    write_site(sites, "enc.test", {"a b.txt": "spaced"})
    core = OriginCore.from_directory(sites, now=NOW)
    assert get(core, "/a%20b.txt", host="enc.test").body == b"spaced"


# ---- rules and shadowing ----------------------------------------------------------------


def test_unforced_rule_yields_to_existing_file_with_pretty_urls(core: OriginCore) -> None:
    r = get(core, "/about")  # "/about /elsewhere 302" but about.html exists
    assert (r.status, r.body) == (200, b"<h1>about</h1>")


def test_forced_rule_applies_over_existing_file(core: OriginCore) -> None:
    r = get(core, "/about.html")
    assert (r.status, r.header("location")) == (301, "/about")
    r = get(core, "/login")  # login.html exists, 302! wins
    assert (r.status, r.header("location")) == (302, "/members/")


def test_redirect_passes_the_query_and_uses_redirect_policy(core: OriginCore) -> None:
    r = get(core, "/news/a/b?x=1")
    assert r.status == 301
    assert r.header("location") == "/blog/a/b?x=1"
    assert r.header("cache-control") == "public, max-age=300"
    assert r.header("etag") is None


@pytest.mark.parametrize("proto", ["http", "HTTPS", "a b", "ftp", ""])
def test_any_forwarded_proto_still_resolves(core: OriginCore, proto: str) -> None:
    # X-Forwarded-Proto is a proxy's report; a value that is not a scheme must not
    # make the URL the rules see invalid (it read as a 400 "bad request target")
    r = get(core, "/news/a/b?x=1", headers=[("x-forwarded-proto", proto)])
    assert (r.status, r.header("location")) == (301, "/blog/a/b?x=1")
    assert get(core, "/about", headers=[("x-forwarded-proto", proto)]).status == 200


def test_rewrite_serves_the_target_file(core: OriginCore) -> None:
    r = get(core, "/blog/2024/hello")
    assert (r.status, r.body) == (200, b"<h1>hello</h1>")
    spa = get(core, "/app/some/deep/route")
    assert (spa.status, spa.body) == (200, b"<h1>app</h1>")
    assert spa.header("etag") == get(core, "/app/index.html").header("etag")


def test_rewrite_with_error_status_and_missing_target(core: OriginCore) -> None:
    r = get(core, "/gone/x")
    assert (r.status, r.body) == (404, b"<h1>not found</h1>")
    assert r.header("cache-control") == "public, max-age=60"
    r = get(core, "/missing-target")
    assert (r.status, r.body) == (404, b"<h1>not found</h1>")


def test_conditions_from_headers(core: OriginCore) -> None:
    assert get(core, "/").status == 200
    fr = get(core, "/", headers=[("accept-language", "fr-CA,fr;q=0.9")])
    assert (fr.status, fr.header("location")) == (302, "/fr/")
    au = get(core, "/", headers=[("x-country", "AU")])
    assert (au.status, au.header("location")) == (302, "/au/")
    cookie = get(core, "/", headers=[("cookie", "nf_country=au")])
    assert cookie.header("location") == "/au/"


def test_memoised_answers_stay_per_visitor_and_never_outlive_a_token(tmp_path: Path) -> None:
    # Deploy.resolve memoises per (URL, visitor): interleaved visitors of one URL must
    # each keep their own answer, and a token's roles (time-dependent) are never memoised.
    write_site(
        tmp_path,
        "m.test",
        {"index.html": "home", "fr/index.html": "fr", "admin/index.html": "admin"},
        _redirects="/ /fr/ 302! Language=fr\n/ /au/ 302! Country=au\n/admin/* /index.html 200! Role=staff\n",
        **{"_edgesim.toml": '[rules]\njwt_secret = "s3cret"\n'},
    )
    core = OriginCore.from_directory(tmp_path, now=NOW)
    fr = [("accept-language", "fr")]
    au = [("x-country", "AU")]
    for _ in range(3):
        assert get(core, "/", "m.test").status == 200
        assert get(core, "/", "m.test", headers=fr).header("location") == "/fr/"
        assert get(core, "/", "m.test", headers=au).header("location") == "/au/"
        assert get(core, "/", "m.test", headers=[("cookie", "nf_lang=fr")]).header("location") == "/fr/"
    token = [("cookie", "nf_jwt=" + mint_jwt("s3cret", ["staff"], exp=NOW + 60))]
    req = Request("GET", "/admin/x", [("host", "m.test"), *token])
    assert core.handle(req, NOW).status == 200  # the role holds: rewritten to /index.html
    req = Request("GET", "/admin/x", [("host", "m.test"), *token])
    assert core.handle(req, NOW + 120).status == 404  # expired: denied, not the memo's 200


def test_answers_no_condition_decided_are_resolved_once_for_every_visitor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Deploy.resolve keeps by URL alone what no rule condition decided
    # (RuleSet.match_scoped): later visitors, tokens included, reuse it
    from edgesim.redirects import RuleSet

    write_site(
        tmp_path,
        "m.test",
        {"index.html": "home", "fr/index.html": "fr", "new.html": "new"},
        _redirects="/old /new 301\n/ /fr/ 302! Language=fr\n",
        **{"_edgesim.toml": '[rules]\njwt_secret = "s3cret"\n'},
    )
    core = OriginCore.from_directory(tmp_path, now=NOW)
    calls: list[str] = []
    scoped = RuleSet.match_scoped

    def counted(self: RuleSet, url: str, *args: object) -> object:
        calls.append(url)
        return scoped(self, url, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(RuleSet, "match_scoped", counted)
    token = ("cookie", "nf_jwt=" + mint_jwt("s3cret", ["staff"], exp=NOW + 60))
    visitors = [[], [("accept-language", "fr")], [("x-country", "AU")], [token], [("cookie", "a=1")]]
    for headers in visitors:
        assert get(core, "/old", "m.test", headers=headers).header("location") == "/new"
        home = get(core, "/", "m.test", headers=headers)
        assert home.header("location") == ("/fr/" if ("accept-language", "fr") in headers else None)
    assert calls.count("https://m.test/old") == 1
    assert calls.count("https://m.test/") == len(visitors)  # each visitor's own answer


def test_proxy_targets_are_not_fetched(core: OriginCore) -> None:
    r = get(core, "/api/v1/items")
    assert r.status == 502
    assert b"not fetched by the origin: https://api.example.com/v1/items" in (r.body or b"")
    assert r.header("cache-control") == "no-store"


def test_not_found_uses_404_page_or_plain_text(core: OriginCore) -> None:
    r = get(core, "/no/such/page")
    assert (r.status, r.body) == (404, b"<h1>not found</h1>")
    assert r.header("cache-control") == "public, max-age=60"
    assert r.header("etag") is not None
    plain = get(core, "/nope", host="plain.test")
    assert (plain.status, plain.body) == (404, b"Not Found\n")
    assert plain.header("cache-control") == "public, max-age=60"


def test_reserved_paths_are_never_shadowed_by_rules(sites: Path) -> None:
    write_site(sites, "greedy.test", {"index.html": "x"}, _redirects="/* /index.html 200!\n")
    core = OriginCore.from_directory(sites, now=NOW)
    r = get(core, "/.edgesim/manifest", host="greedy.test")
    assert r.header("content-type") == "application/json"
    assert json.loads(r.body or b"")["site"] == "greedy.test"


def test_netlify_toml_rules_follow_redirects_file(sites: Path) -> None:
    toml = '[[redirects]]\nfrom = "/t"\nto = "/from-toml"\nstatus = 302\n'
    write_site(
        sites, "toml.test", {"x.html": "x"}, **{"_redirects": "/r /from-file 302\n", "netlify.toml": toml}
    )
    core = OriginCore.from_directory(sites, now=NOW)
    assert get(core, "/r", host="toml.test").header("location") == "/from-file"
    assert get(core, "/t", host="toml.test").header("location") == "/from-toml"


# ---- conditional requests, HEAD, methods ----------------------------------------------------


def _etag(core: OriginCore, target: str = "/about") -> str:
    e = get(core, target).header("etag")
    assert e is not None
    return e


@pytest.mark.parametrize(
    "inm",
    ["{e}", "W/{e}", '"zzz", {e}', "*", '"a",W/{e}'],
)
def test_if_none_match_gives_304(core: OriginCore, inm: str) -> None:
    e = _etag(core)
    r = get(core, "/about", headers=[("if-none-match", inm.format(e=e))])
    assert r.status == 304
    assert r.body == b""
    assert r.size == 0
    assert r.header("etag") == e
    assert r.header("cache-control") == "public, max-age=0, s-maxage=60"
    assert r.header("last-modified") == formatdate(MTIME, usegmt=True)
    assert r.header(DEPLOY_HEADER) == core.sites["example.com"].deploy.id
    assert r.header("content-type") is None


def test_if_none_match_mismatch_wins_over_if_modified_since(core: OriginCore) -> None:
    later = formatdate(MTIME + 10, usegmt=True)
    r = get(core, "/about", headers=[("if-none-match", '"other"'), ("if-modified-since", later)])
    assert r.status == 200


def test_if_none_match_split_over_two_header_lines(core: OriginCore) -> None:
    e = _etag(core)
    r = get(core, "/about", headers=[("if-none-match", '"a"'), ("if-none-match", e)])
    assert r.status == 304


@pytest.mark.parametrize(
    ("ims", "status"),
    [
        (formatdate(MTIME, usegmt=True), 304),
        (formatdate(MTIME + 3600, usegmt=True), 304),
        (formatdate(MTIME - 1, usegmt=True), 200),
        ("not a date", 200),
    ],
)
def test_if_modified_since(core: OriginCore, ims: str, status: int) -> None:
    assert get(core, "/about", headers=[("if-modified-since", ims)]).status == status


def test_conditionals_only_apply_to_200(core: OriginCore) -> None:
    e = get(core, "/404.html").header("etag")
    assert e is not None
    r = get(core, "/no/such", headers=[("if-none-match", e)])
    assert r.status == 404


def test_head_has_headers_but_no_body(core: OriginCore) -> None:
    g = get(core, "/about")
    h = get(core, "/about", method="HEAD")
    assert h.status == 200
    assert h.body == b""
    assert h.header("content-length") == str(g.size)
    assert h.header("etag") == g.header("etag")


def test_other_methods_get_405_with_allow(core: OriginCore) -> None:
    for method in ["POST", "PUT", "DELETE", "PATCH"]:
        r = get(core, "/about", method=method)
        assert r.status == 405
        assert r.header("allow") == "GET, HEAD"


# ---- cache policy ------------------------------------------------------------------------


def test_default_cache_control_classes(core: OriginCore) -> None:
    assert (
        get(core, "/assets/app.3f9c2a1b.js").header("cache-control") == "public, max-age=31536000, immutable"
    )
    assert get(core, "/about").header("cache-control") == "public, max-age=0, s-maxage=60"
    assert get(core, "/img/logo.png").header("cache-control") == "public, max-age=3600"


def test_cache_policy_overrides(sites: Path) -> None:
    cfg = """
[cache]
html = "no-cache"
not_found = "no-store"
redirect = "public, max-age=5"

[cache.paths]
"/assets/*" = "public, max-age=10"
"/blog/*" = "private"
"""
    files = {"a.html": "a", "assets/x.0123456789.js": "x", "blog/p.html": "p", "y.css": "y"}
    write_site(sites, "pol.test", files, _redirects="/r /a 302\n", **{"_edgesim.toml": cfg})
    core = OriginCore.from_directory(sites, now=NOW)

    def cc(target: str) -> str | None:
        return get(core, target, host="pol.test").header("cache-control")

    assert cc("/a.html") == "no-cache"
    assert cc("/assets/x.0123456789.js") == "public, max-age=10"
    assert cc("/blog/p.html") == "private"
    assert cc("/y.css") == "public, max-age=3600"
    assert cc("/nope") == "no-store"
    assert cc("/r") == "public, max-age=5"


def test_hashed_names() -> None:
    assert is_hashed("/assets/app.3f9c2a1b.js")
    assert is_hashed("/a/b/logo.0123456789abcdef.png")
    assert not is_hashed("/assets/app.3f9c2a1.js")  # 7 hex digits
    assert not is_hashed("/v1.3f9c2a1b.x/app.js")  # hash in a folder, not the name
    assert not is_hashed("/assets/app.js")


# ---- manifest, deploys, health ---------------------------------------------------------------


def test_manifest(core: OriginCore) -> None:
    r = get(core, "/.edgesim/manifest")
    assert r.status == 200
    assert r.header("cache-control") == "no-store"
    m = json.loads(r.body or b"")
    deploy = core.sites["example.com"].deploy
    assert m["site"] == "example.com"
    assert m["deploy_id"] == deploy.id
    assert m["created"] == NOW
    assert m["rules"] == {"_redirects": RULES, "netlify.toml": None}
    assert set(m["files"]) == {"/" + p for p in FILES}
    assert m["files"]["/about.html"] == get(core, "/about").header("etag")
    assert m["catalog"] is None
    assert m["kind"] == "files"
    again = get(core, "/.edgesim/manifest", headers=[("if-none-match", r.header("etag") or "")])
    assert again.status == 304


def test_manifest_lists_rule_diagnostics(sites: Path) -> None:
    write_site(sites, "bad.test", {"a.html": "a"}, _redirects="/a /b 999\n/c /d 301\n")
    core = OriginCore.from_directory(sites, now=NOW)
    m = json.loads(get(core, "/.edgesim/manifest", host="bad.test").body or b"")
    assert any("_redirects:1" in d for d in m["diagnostics"])
    assert get(core, "/c", host="bad.test").header("location") == "/d"


def test_deploy_rereads_the_folder_and_swaps_atomically(sites: Path, core: OriginCore) -> None:
    old = core.sites["example.com"].deploy
    old_etag = get(core, "/about").header("etag")
    (sites / "example.com" / "about.html").write_text("<h1>about v2</h1>")
    (sites / "example.com" / "new.html").write_text("new")
    # The disk changed but nothing is published yet: the snapshot still answers.
    assert get(core, "/about").body == b"<h1>about</h1>"
    assert get(core, "/new").status == 404

    r = get(core, "/.edgesim/deploy", method="POST")
    assert r.status == 200
    doc = json.loads(r.body or b"")
    assert doc["previous"] == old.id
    assert doc["deploy_id"] != old.id
    assert doc["deploy_id"] == core.sites["example.com"].deploy.id

    new = get(core, "/about")
    assert new.body == b"<h1>about v2</h1>"
    assert new.header("etag") != old_etag
    assert new.header(DEPLOY_HEADER) == doc["deploy_id"]
    assert get(core, "/new").status == 200
    # The old snapshot is untouched: a request that read it finishes consistently.
    old_about = old.file("/about.html")
    assert old_about is not None and old.body(old_about) == b"<h1>about</h1>"
    assert old.file("/new.html") is None


def test_deploy_ids_are_unique_even_without_changes(core: OriginCore) -> None:
    ids = {core.sites["example.com"].deploy.id}
    for _ in range(3):
        ids.add(json.loads(get(core, "/.edgesim/deploy", method="POST").body or b"")["deploy_id"])
    assert len(ids) == 4


def test_failed_deploy_keeps_the_old_one(sites: Path, core: OriginCore) -> None:
    before = core.sites["example.com"].deploy.id
    (sites / "example.com" / "_edgesim.toml").write_text("[cache]\nhtml = 3\n")
    r = get(core, "/.edgesim/deploy", method="POST")
    assert r.status == 422
    assert "cache.html" in json.loads(r.body or b"")["error"]
    assert core.sites["example.com"].deploy.id == before
    assert get(core, "/about").status == 200


def test_deploy_endpoint_methods_and_bodies(core: OriginCore) -> None:
    assert get(core, "/.edgesim/deploy").status == 405
    assert get(core, "/.edgesim/deploy", method="POST", body=b"[1]").status == 400
    assert get(core, "/.edgesim/deploy", method="POST", body=b"{").status == 400
    assert get(core, "/.edgesim/nothing").status == 404


def test_deploy_of_a_new_site_folder(sites: Path, core: OriginCore) -> None:
    assert get(core, "/", host="late.test").status == 404
    write_site(sites, "late.test", {"index.html": "late"})
    assert get(core, "/.edgesim/deploy", method="POST", host="late.test").status == 200
    assert get(core, "/", host="late.test").body == b"late"


def test_health(core: OriginCore) -> None:
    get(core, "/")
    core.stats.queued = 2
    r = get(core, "/.edgesim/health", host="anything")
    assert r.status == 200
    h = json.loads(r.body or b"")
    assert h["status"] == "ok"
    assert h["sites"] == {n: s.deploy.id for n, s in core.sites.items()}
    assert h["queued"] == 2
    assert h["in_flight"] == 0
    assert h["served"] >= 2
    assert "max_queued" in h["load"]


# ---- synthetic sites -----------------------------------------------------------------------

CATALOG = """
[catalog]
objects = 2000
seed = 42

[catalog.size]
distribution = "lognormal"
median = 10000
sigma = 0.8

[catalog.sizes.html]
distribution = "fixed"
value = 3000

[catalog.types]
html = 0.2
js = 0.1
css = 0.1
img = 0.6
"""


@pytest.fixture
def syn(sites: Path) -> OriginCore:
    write_site(sites, "syn.test", {}, **{"_edgesim.toml": CATALOG})
    return OriginCore.from_directory(sites, now=NOW)


def _cat(core: OriginCore) -> Catalog:
    cat = core.sites["syn.test"].deploy.catalog
    assert cat is not None
    return cat


def test_synthetic_catalog_is_deterministic(sites: Path, syn: OriginCore) -> None:
    other = OriginCore.from_directory(sites, now=NOW)
    a, b = _cat(syn), _cat(other)
    assert [a.path(i) for i in range(len(a))] == [b.path(i) for i in range(len(b))]
    assert [a.entry(i).etag for i in range(50)] == [b.entry(i).etag for i in range(50)]
    assert syn.sites["syn.test"].deploy.id == other.sites["syn.test"].deploy.id


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(-(2**63), 2**63 - 1),
    versions=st.lists(st.integers(0, 2**32 - 1), max_size=40),
)
def test_native_bulk_digests_are_hashlib_blake2b(seed: int, versions: list[int]) -> None:
    # every object's "<seed>:<i>:<version>" digest, as Catalog._hash makes it one by one
    want = "".join(
        blake2b(b"%d:%d:%d" % (seed, i, v), digest_size=8).hexdigest() for i, v in enumerate(versions)
    )
    assert _bulk_digests(seed, array("I", versions)) == want


@pytest.mark.parametrize("seed", [42, 2**64 + 5])  # the second beyond 64 bits: hashed one by one
def test_listing_every_path_changes_no_path_or_etag(seed: int) -> None:
    spec = CatalogSpec(
        3000, seed, Distribution("fixed", 1000.0), (), (("html", 0.3), ("js", 0.4), ("img", 0.3))
    )
    first = Catalog(spec)
    for cat in (first, first.redeploy(7, 0.4, now=5.0).stamped(9.0)):
        before = [(cat.path(i), cat.entry(i).etag) for i in range(len(cat))]
        listed = cat.paths()  # every digest at once; later lookups read them
        assert listed == [p for p, _ in before]
        assert [(cat.path(i), cat.entry(i).etag) for i in range(len(cat))] == before
        found = [cat.lookup(p) for p in listed]
        assert [(e.path, e.etag) if e else None for e in found] == before
    # a redeploy of a listed catalog (new versions) lists its own digests
    again = first.redeploy(7, 0.4, now=5.0).redeploy(8, 0.5, now=12.0)
    assert again.paths() == [
        Catalog(spec).redeploy(7, 0.4, now=5.0).redeploy(8, 0.5, now=12.0).path(i) for i in range(3000)
    ]
    # listings are kept per process, but each call returns a list of its own
    mine = first.paths()
    want = list(mine)
    mine.clear()
    assert first.paths() == want == Catalog(spec).paths()
    versions = array("I", bytes(4 * 3000)).tobytes()
    kept, again_kept = _listing(spec, versions), _listing(spec, versions)
    assert kept[0] is again_kept[0] and kept[1] is again_kept[1]  # kept: a small catalog
    assert _make_listing(spec, versions) == _listing(spec, versions)  # as a big one lists it


def test_a_redeploy_of_a_listed_catalog_lists_again_only_what_changed() -> None:
    spec = CatalogSpec(
        5000, 2026_11_29, Distribution("fixed", 1000.0), (), (("html", 0.2), ("js", 0.3), ("img", 0.5))
    )
    cat = Catalog(spec)
    assert cat._since is None and Catalog(spec).redeploy(1, 0.1, now=1.0)._since is None  # nothing listed
    cat.paths()
    for step, frac in enumerate((0.02, 0.1, 0.0, 0.3, 1.0, 0.05)):
        new = cat.redeploy(100 + step, frac, now=float(step)).stamped(step + 0.5)
        since = new._since
        assert since is not None and since[0] is cat._hex and since[1] is cat._paths
        # what it keeps are the objects whose versions differ from the deploy before
        assert len(set(since[2])) == len(since[2]) == round(5000 * frac)
        assert set(since[2]) == {i for i in range(5000) if new._version[i] != cat._version[i]}
        whole = _make_listing(spec, new._version.tobytes())
        # patched from the deploy before (whatever the share), and as the engine lists it
        assert _relisting(spec, new._version, *since) == whole
        assert new.paths() == list(whole[1]) and new._hex == whole[0] and new._since is None
        assert [new.entry(i).etag for i in range(0, 5000, 97)] == [
            f'"{_object_hash(spec.seed, i, new._version[i])}"' for i in range(0, 5000, 97)
        ]
        cat = new


def test_synthetic_sizes_and_types(syn: OriginCore) -> None:
    cat = _cat(syn)
    kinds = [cat.kind(i) for i in range(len(cat))]
    assert 0.15 < kinds.count("html") / len(kinds) < 0.25
    assert 0.55 < kinds.count("img") / len(kinds) < 0.65
    assert all(cat.size(i) == 3000 for i in range(len(cat)) if kinds[i] == "html")
    others = [cat.size(i) for i in range(len(cat)) if kinds[i] != "html"]
    assert 8000 < statistics.median(others) < 12500


def test_synthetic_responses(syn: OriginCore) -> None:
    cat = _cat(syn)
    for i in range(30):
        e = cat.entry(i)
        r = get(syn, e.path, host="syn.test")
        assert r.status == 200, e.path
        assert r.size == e.size
        assert len(r.body or b"") == e.size
        assert r.header("etag") == e.etag
        want = (
            "public, max-age=0, s-maxage=60"
            if cat.kind(i) == "html"
            else "public, max-age=31536000, immutable"
        )
        assert r.header("cache-control") == want
        assert get(syn, e.path, host="syn.test").body == r.body  # deterministic bodies
        assert get(syn, e.path, host="syn.test", headers=[("if-none-match", e.etag)]).status == 304
    assert get(syn, "/", host="syn.test").status == 200
    nf = get(syn, "/assets/obj-1.0000000000.jpg", host="syn.test")
    assert nf.status == 404
    assert nf.size == 1024  # the synthetic /404.html
    assert get(syn, f"/page-{len(cat)}.html", host="syn.test").status == 404
    assert get(syn, "/page-01.html", host="syn.test").status == 404


@pytest.mark.parametrize("paths", ["", '[cache.paths]\n"/page-1*" = "no-cache"\n'])
def test_synthetic_files_cache_control_and_dates(sites: Path, paths: str) -> None:
    # Deploy.file takes Cache-Control once per kind without path overrides, and dates
    # from a memo: each file as if for_file and the date were made for it alone
    write_site(sites, "syn.test", {}, **{"_edgesim.toml": CATALOG + "json = 0.1\n" + paths})
    deploy = OriginCore.from_directory(sites, now=NOW).sites["syn.test"].deploy
    cat = _cat_of(deploy.catalog)
    policy = deploy.config.cache
    overridden = 0
    for p in [*cat.paths(), "/index.html", "/404.html"]:
        f = deploy.file(p)
        assert f is not None
        assert f.cache_control == policy.for_file(p, f.content_type), p
        assert dict(f.headers)["last-modified"] == formatdate(f.last_modified, usegmt=True)
        overridden += f.cache_control == "no-cache"
    assert (overridden > 0) == bool(paths)


def _cat_of(cat: Catalog | None) -> Catalog:
    assert cat is not None
    return cat


def test_synthetic_manifest_describes_the_catalog(syn: OriginCore) -> None:
    m = json.loads(get(syn, "/.edgesim/manifest", host="syn.test").body or b"")
    assert m["files"] is None
    assert m["catalog"]["objects"] == 2000
    assert m["catalog"]["seed"] == 42
    assert m["catalog"]["types"] == {"html": 0.2, "js": 0.1, "css": 0.1, "img": 0.6}


def test_synthetic_redeploy_changes_a_fraction(syn: OriginCore) -> None:
    before = _cat(syn)
    r = get(
        syn, "/.edgesim/deploy", method="POST", host="syn.test", body=b'{"seed": 7, "new_fraction": 0.25}'
    )
    assert r.status == 200
    after = _cat(syn)
    changed = [i for i in range(len(after)) if before.entry(i).etag != after.entry(i).etag]
    assert len(changed) == 500
    hashed = [i for i in changed if after.kind(i) != "html"]
    assert hashed
    i = hashed[0]
    assert before.path(i) != after.path(i)
    assert get(syn, before.path(i), host="syn.test").status == 404
    assert get(syn, after.path(i), host="syn.test").status == 200
    # An edge rebuilds the same file set from the manifest.
    m = json.loads(get(syn, "/.edgesim/manifest", host="syn.test").body or b"")
    rebuilt = Catalog.from_manifest(m["catalog"])
    assert all(rebuilt.entry(j).etag == after.entry(j).etag for j in range(len(after)))
    assert rebuilt.entry(i).last_modified == after.entry(i).last_modified


def test_rebuilding_each_deploy_from_its_manifest_is_one_redeploy_a_deploy(syn: OriginCore) -> None:
    # Every edge rebuilds a site's catalog from each new deploy's manifest: replaying
    # the whole history each time was quadratic in the deploys (100 deploys of 200,000
    # objects: 118 s of a 170 s run). The deploy before is kept: one step from it.
    import origin._catalog as catalog_module

    catalog_module._REBUILT.clear()
    for k in range(1, 13):
        body = json.dumps({"seed": 100 + k, "new_fraction": 0.1}).encode()
        assert get(syn, "/.edgesim/deploy", method="POST", host="syn.test", body=body).status == 200
        m = json.loads(get(syn, "/.edgesim/manifest", host="syn.test").body or b"")
        rebuilt = Catalog.from_manifest(m["catalog"])
        assert Catalog.from_manifest(m["catalog"]) is rebuilt  # the same manifest again: kept
        cat = _cat(syn)
        assert [rebuilt.path(j) for j in range(len(cat))] == [cat.path(j) for j in range(len(cat))]
        assert all(
            rebuilt.entry(j).last_modified == cat.entry(j).last_modified for j in range(0, len(cat), 97)
        )
    # The last deploy is one step from the kept deploy before it, not a replay of all
    # 12: with that one swapped for a different catalog, the rebuild follows the swap
    # (a check that holds for compiled code too, where a patched method is not called)
    kept = catalog_module._REBUILT
    last = next(key for key, c in kept.items() if c is rebuilt)
    before = next(key for key in kept if key[1] == last[1][:-1])
    swapped = kept[before].redeploy(999, 0.5, now=1.0)
    kept[before] = swapped
    del kept[last]
    stepped = Catalog.from_manifest(m["catalog"])
    seed, fraction = last[1][-1]
    expected = swapped.redeploy(seed, fraction, now=last[2][-1])
    assert [stepped.path(j) for j in range(len(cat))] == [expected.path(j) for j in range(len(cat))]
    assert [stepped.path(j) for j in range(len(cat))] != [cat.path(j) for j in range(len(cat))]
    # with no deploy before it kept, a manifest's whole history is replayed: the same
    kept.clear()
    again = Catalog.from_manifest(m["catalog"])
    assert [again.path(j) for j in range(len(cat))] == [cat.path(j) for j in range(len(cat))]


def test_a_manifest_some_deploys_on_is_rebuilt_from_the_latest_kept_deploy(syn: OriginCore) -> None:
    # A node that skipped the manifests of some deploys (no request of the site reached
    # it in between) rebuilds from the latest deploy it kept, not from the first.
    import origin._catalog as catalog_module

    kept = catalog_module._REBUILT
    kept.clear()
    manifests = []
    for k in range(1, 9):
        body = json.dumps({"seed": 200 + k, "new_fraction": 0.2}).encode()
        assert get(syn, "/.edgesim/deploy", method="POST", host="syn.test", body=body).status == 200
        manifests.append(json.loads(get(syn, "/.edgesim/manifest", host="syn.test").body or b"")["catalog"])
    cat = _cat(syn)
    paths = [cat.path(j) for j in range(len(cat))]
    for n in (2, 4):  # deploys 3 and 5 rebuilt; 6 to 8 skipped
        Catalog.from_manifest(manifests[n])
    assert len(kept) == 2
    # the kept deploy 5 swapped for another catalog: the rebuild of 8 follows the swap
    # (3 redeploys from it); deploy 3, also on the way, is passed over
    five = next(key for key in kept if len(key[1]) == 5)
    swapped = kept[five] = kept[five].redeploy(999, 0.5, now=1.0)
    last = Catalog.from_manifest(manifests[7])
    expected = swapped
    for n in range(5, 8):
        seed, fraction = manifests[7]["history"][n]
        expected = expected.redeploy(seed, fraction, now=manifests[7]["deploy_times"][n + 1])
    assert [last.path(j) for j in range(len(cat))] == [expected.path(j) for j in range(len(cat))] != paths
    # a kept deploy of another history (deploy 3's, with other times) is no start
    kept.clear()
    first = Catalog.from_manifest(manifests[2])
    first_key = next(iter(kept))
    kept[(first_key[0], first_key[1], (first_key[2][0] + 1.0, *first_key[2][1:]))] = kept.pop(
        first_key
    ).redeploy(7, 0.9, now=2.0)
    again = Catalog.from_manifest(manifests[7])
    assert [again.path(j) for j in range(len(cat))] == paths and first.history == again.history[:3]


def test_synthetic_site_with_files_is_an_error(sites: Path) -> None:
    write_site(sites, "mixed.test", {"a.html": "a"}, **{"_edgesim.toml": "[catalog]\nobjects = 5\n"})
    with pytest.raises(SiteConfigError, match="cannot also have files"):
        OriginCore.from_directory(sites, now=NOW)


def test_metadata_only_mode(sites: Path) -> None:
    write_site(sites, "syn.test", {}, **{"_edgesim.toml": CATALOG})
    core = OriginCore.from_directory(sites, now=NOW, bodies=False)
    r = get(core, "/about")
    assert (r.status, r.body, r.size) == (200, None, len("<h1>about</h1>"))
    assert core.sites["example.com"].deploy.files is not None
    assert all(f.body is None for f in (core.sites["example.com"].deploy.files or {}).values())
    e = _cat(core).entry(3)
    r = get(core, e.path, host="syn.test")
    assert (r.status, r.body, r.size) == (200, None, e.size)
    assert get(core, "/nope").body is None
    assert json.loads(get(core, "/.edgesim/manifest").body or b"")["site"] == "example.com"


def test_in_memory_synthetic_site() -> None:
    core = OriginCore()
    d = core.add_synthetic("mem.test", "[catalog]\nobjects = 10\nsize = 100\n", now=NOW)
    r = core.handle(Request("GET", d.catalog.path(0) if d.catalog else "", [("host", "mem.test")]), NOW)
    assert (r.status, r.size) == (200, 100)
    prepared = core.prepare_deploy("mem.test", options={"new_fraction": 1.0})
    new = core.publish(prepared, NOW + 1)
    assert new.previous == d.id
    assert new.catalog is not None and new.catalog.path(0) != (d.catalog.path(0) if d.catalog else "")


# ---- config and modelled load -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[cache]\nhtml = 1\n", "cache.html: expected a non-empty one-line string"),
        ("[load]\nservice_time = -1\n", "load.service_time: expected a number >= 0"),
        ("[load]\nservice_time = { distribution = 'gamma' }\n", "load.service_time.distribution"),
        ("[catalog]\nseed = 1\n", "catalog.objects: missing"),
        ("[catalog]\nobjects = 5\n[catalog.types]\nvideo = 1\n", "catalog.types.video: unknown kind"),
        ("[catalog]\nobjects = 5\nsize = { distribution = 'lognormal', median = 5 }\n", "catalog.size.sigma"),
        ("[bogus]\n", "bogus: unknown key"),
        ("[cache\n", "_edgesim.toml"),
        # math.isfinite raised OverflowError on it (found through a topology's site folder)
        (
            f"[load]\nservice_time = {10**400}\n",
            "load.service_time: expected a number, got an integer of 401 digits",
        ),
    ],
)
def test_config_errors_name_the_key(text: str, message: str) -> None:
    with pytest.raises(SiteConfigError, match=r"_edgesim\.toml") as info:
        parse_config(text)
    assert message in str(info.value)


def test_service_time(sites: Path) -> None:
    cfg = "[load]\nservice_time = { distribution = 'exponential', mean = 0.01 }\nconcurrency = 3\n"
    write_site(sites, "slow.test", {"a.html": "a"}, **{"_edgesim.toml": cfg})
    write_site(sites, "fixed.test", {"a.html": "a"}, **{"_edgesim.toml": "[load]\nservice_time = 0.25\n"})
    core = OriginCore.from_directory(sites, now=NOW)
    req = Request("GET", "/a", [("host", "slow.test")])
    a = [core.service_time("slow.test", req, random.Random(1)) for _ in range(3)]
    b = [core.service_time("slow.test", req, random.Random(1)) for _ in range(3)]
    assert a == b and a[0] > 0
    rng = random.Random(5)
    mean = statistics.fmean(core.service_time("slow.test", req, rng) for _ in range(4000))
    assert 0.009 < mean < 0.011
    assert core.service_time("fixed.test", req, rng) == 0.25
    assert core.service_time("example.com", req, rng) == 0.0
    assert core.service_time("slow.test", Request("GET", "/.edgesim/health"), rng) == 0.0
    assert core.concurrency("slow.test") == 3
    assert core.concurrency("example.com") == 0


def test_distribution_limits() -> None:
    d = Distribution("pareto", 1.1, 1000.0, 5000.0)
    rng = random.Random(3)
    xs = [d.sample(rng) for _ in range(2000)]
    assert min(xs) >= 1000.0 and max(xs) == 5000.0
    spec = CatalogSpec.from_dict({"objects": 3, "size": {"distribution": "uniform", "min": 5, "max": 6}})
    cat = Catalog(spec)
    assert all(5 <= cat.size(i) <= 6 for i in range(3))


@pytest.mark.parametrize(
    "dist",
    [
        Distribution("uniform", 0.0, 3000.0, 2.0**30),  # the engine's, with the 1 GiB size clamp
        Distribution("uniform", 100.0, 3000.0),
        Distribution("uniform", 0.0, 3000.0, 3000.0),  # as the origin's parser gives it
        Distribution("lognormal", 2000.0, 1.0, 2.0**30),
    ],
)
def test_a_catalog_spec_keeps_its_sizes_through_its_table(dist: Distribution) -> None:
    # A spec goes to the origin as text (site_config_text: Trio engine, live mode) and to
    # the edges in the manifest (describe). A uniform's ``max`` is its bound and its limit
    # at once: the engine's size clamp (1 GiB) was written over the bound, so a site of
    # 0-3 KB objects became one of objects up to 1 GiB at the origin (an 815 MB page
    # made a 300-request Trio run take over ten minutes).
    spec = CatalogSpec(400, 6, dist, (("html", dist),), (("html", 1.0), ("img", 1.0)))
    back = CatalogSpec.from_dict(spec.as_dict())
    assert Catalog(back).sizes().tolist() == Catalog(spec).sizes().tolist()
    assert max(Catalog(back).sizes()) <= (3000 if dist.kind == "uniform" else 2**30)
    rebuilt = Catalog.from_manifest(Catalog(spec).describe())
    assert rebuilt.sizes().tolist() == Catalog(spec).sizes().tolist()


def test_catalog_lists_every_path_and_kind_at_once() -> None:
    # paths() and kinds() are path(i) and kind(i) for every object, also after
    # a redeploy changed some hashed names, and every listed path is found by lookup
    spec = CatalogSpec.from_dict(
        {"objects": 3000, "seed": 5, "types": {"html": 1, "js": 1, "css": 1, "img": 1, "font": 1, "json": 1}}
    )
    for cat in (Catalog(spec), Catalog(spec).redeploy(9, 0.4, now=10.0)):
        paths, kinds = cat.paths(), cat.kinds()
        assert paths == [cat.path(i) for i in range(len(cat))]
        assert kinds == [cat.kind(i) for i in range(len(cat))]
        assert set(kinds) == {"html", "js", "css", "img", "font", "json"}
        for i in range(0, len(cat), 97):
            e = cat.lookup(paths[i])
            assert e is not None and e.index == i
    before, after = Catalog(spec).paths(), Catalog(spec).redeploy(9, 0.4, now=10.0).paths()
    changed = sum(a != b for a, b in zip(before, after, strict=True))
    assert 0.2 * 3000 < changed < 0.4 * 3000  # 40% redeployed; only hashed names change


def test_core_imports_no_trio_socket_or_clock() -> None:
    """The core must be drivable in virtual time: no trio, no sockets, no clock."""
    code = (
        "import sys, origin.core, origin._catalog, origin._config\n"
        "print([m for m in ('trio', 'socket', 'email.utils') if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    origin_dir = Path(__file__).resolve().parents[2] / "origin"
    for name in ("core.py", "_catalog.py", "_config.py"):
        tree = ast.parse((origin_dir / name).read_text())
        imported = {
            a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
        }
        imported |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not imported & {"trio", "socket", "time"}, name


def test_http_dates_are_imf_fixdates_across_days_and_before_1970() -> None:
    # http_date formats the time of day itself and caches only the date of each day
    rng = random.Random(5)
    times = [0, 59, 86_399, 86_400, -1, -86_401, 951_782_400, 4_102_444_799]
    times += [rng.randrange(-2_000_000_000, 20_000_000_000) for _ in range(5000)]
    for t in times:
        assert http_date(t) == formatdate(t, usegmt=True), t
    assert http_date(86_399.99) == "Thu, 01 Jan 1970 23:59:59 GMT"


# ---- the catalog's path reader and the override pre-check --------------------------

_PATH_BITS = st.sampled_from(
    [
        "/page-",
        "/data/obj-",
        "/assets/obj-",
        ".html",
        ".json",
        ".js",
        ".css",
        ".png",
        ".",
        "0",
        "7",
        "12",
        "٣",
        "x",
    ]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_PATH_BITS, max_size=6), st.integers(0, 40))
def test_catalog_find_names_exactly_the_catalogs_paths(bits: list[str], pick: int) -> None:
    from origin._catalog import NO_OBJECT

    # Catalog.find reads paths in place; it must name an object exactly for the
    # object's own path (and lookup, built on it, agree with the paths listed)
    cat = Catalog(CatalogSpec(objects=30, seed=5), created=NOW)
    paths = cat.paths()
    real = paths[pick % len(paths)]
    names = {*paths, "/index.html", "/404.html"}
    for p in ("".join(bits), real, real + "x", real[:-1], real.replace("obj-", "obj-0"), "/index.html"):
        i = cat.find(p)
        e = cat.lookup(p)
        if p in names:
            assert e is not None and e.path == p and i == e.index
            assert i == paths.index(p) if i >= 0 else p == ("/index.html" if i == -1 else "/404.html")
        else:
            assert e is None and i == NO_OBJECT


_GLOB_BITS = st.sampled_from(["/", "page-", "data/", "assets/", "obj-", "*", "?", "[ab]", "x", ".html"])


@settings(max_examples=300, deadline=None)
@given(st.lists(_GLOB_BITS, min_size=1, max_size=5), st.lists(_PATH_BITS, max_size=4))
def test_may_override_never_rules_out_a_pattern_that_matches(globs: list[str], rest: list[str]) -> None:
    # the pre-check may say yes in vain, never no for a path some pattern matches
    from origin._catalog import kind_path_start

    glob = "/" + "".join(globs)
    policy = parse_config(f'[cache.paths]\n"{glob}" = "no-store"\n', "t/_edgesim.toml").cache
    for kind in range(-1, 6):
        start = kind_path_start(kind)
        path = start + "".join(rest)
        if policy.path_override(path) is not None:
            assert policy.may_override(start), (glob, path)


@pytest.mark.parametrize(
    "dist",
    [
        Distribution("lognormal", 24_000.0, 1.2, 20e6),
        Distribution("lognormal", 3.0, 0.1),
        Distribution("pareto", 1.5, 4096.0, 5e6),
        Distribution("exponential", 800.0),
        Distribution("exponential", 0.0),
        Distribution("uniform", 10.0, 20.0),
        Distribution("fixed", 7.0),
    ],
)
def test_distribution_draws_are_the_random_modules(dist: Distribution) -> None:
    # Distribution.sample writes out CPython's formulas: the same floats as ``random``
    ours, theirs = random.Random(11), random.Random(11)
    for _ in range(20_000):
        k = dist.kind
        if k == "lognormal":
            want = theirs.lognormvariate(math.log(dist.a), dist.b)
        elif k == "pareto":
            want = dist.b * theirs.paretovariate(dist.a)
        elif k == "exponential":
            want = theirs.expovariate(1.0 / dist.a) if dist.a > 0 else 0.0
        elif k == "uniform":
            want = theirs.uniform(dist.a, dist.b)
        else:
            want = dist.a
        if dist.limit and want > dist.limit:
            want = dist.limit
        assert dist.sample(ours) == want
    assert ours.random() == theirs.random()  # as many draws taken


@pytest.mark.parametrize("seed", [0, 7, -3, 2**70 + 5])
def test_uniforms_drawn_ahead_are_the_generators_values(seed: int) -> None:
    # a layout draws ahead through numpy's MT19937: the same doubles, past block ends
    rng = random.Random(seed)
    rng.random()  # from any point of the stream, not only a fresh seed
    source = _copy_of(rng)
    ahead = Uniforms(_copy_of(rng), ahead=True)
    direct = Uniforms(source)
    n = 2 * 8192 + 17
    want = [rng.random() for _ in range(n)]
    assert [ahead.random() for _ in range(n)] == want
    # without ahead, each value is asked of the generator: it stays in step
    assert direct.random() == want[0]
    assert source.random() == want[1]
    assert direct.random() == want[2]


def _copy_of(rng: random.Random) -> random.Random:
    out = random.Random()
    out.setstate(rng.getstate())
    return out


@given(
    st.one_of(
        st.floats(min_value=-1e6, max_value=1e18),
        st.integers(min_value=0, max_value=10**6).map(lambda k: k + 0.5),  # ties: to even
        st.integers(min_value=0, max_value=10**6).map(float),
    )
)
def test_rounded_is_max_zero_round(x: float) -> None:
    assert _rounded(x) == max(0, round(x))


def test_rounded_fails_as_round_does() -> None:
    for bad in (math.inf, math.nan):
        with pytest.raises((OverflowError, ValueError)) as ours:
            _rounded(bad)
        with pytest.raises((OverflowError, ValueError)) as theirs:
            round(bad)
        assert type(ours.value) is type(theirs.value)


def test_layout_is_the_seeded_random_modules() -> None:
    # kinds and sizes as random.Random(seed) draws them one by one (the layout's
    # definition), with several size distributions and a kind mix
    spec = CatalogSpec(
        objects=20_000,
        seed=42,
        size=Distribution("lognormal", 20_000.0, 1.1, 5e6),
        sizes=(("img", Distribution("pareto", 1.3, 2048.0)), ("json", Distribution("uniform", 10.0, 900.5))),
        types=(("html", 2.0), ("img", 5.0), ("js", 1.0), ("json", 1.5)),
    )
    rng = random.Random(spec.seed)
    total = sum(w for _, w in spec.types)
    kinds, sizes = [], []
    for _ in range(spec.objects):
        r, acc, j = rng.random(), 0.0, 0
        for j, (_, w) in enumerate(spec.types):  # noqa: B007 - j is the kind drawn
            acc += w / total
            if r < acc:
                break
        name = spec.types[j][0]
        dist = dict(spec.sizes).get(name, spec.size)
        kinds.append(name)
        sizes.append(max(0, round(dist.sample(rng))))
    cat = Catalog(spec, created=NOW)
    assert cat.kinds() == kinds
    assert cat.sizes().tolist() == sizes
