"""The edge node core, driven step by step without an event loop or sockets."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable

import pytest

from edgesim.cache import HttpCache, MemoryStore
from edgesim.http import Request, Response, get_header
from edgesim.node import EdgeConfig, EdgeNode, Fetch, Join, Reply, Step
from edgesim.redirects import RuleSet

T0 = 1_800_000_000.0  # Unix time: Date/Expires arithmetic needs real epochs
HOST = "site.test"


class FakeOrigin:
    """Answers like edgesim's origin: a manifest, files, and a deploy header."""

    def __init__(self) -> None:
        self.deploy = "d1"
        self.rules = ""
        self.files: dict[str, tuple[int, str, bytes]] = {}  # path -> (status, cache-control, body)
        self.requests: list[Request] = []
        self.fail: str | None = None

    def manifest(self) -> bytes:
        return json.dumps(
            {
                "deploy_id": self.deploy,
                "rules": {"_redirects": self.rules},
                "files": {p: "x" for p in self.files},
            }
        ).encode()

    def __call__(self, req: Request, now: float) -> Response:
        self.requests.append(req)
        if req.path == "/.edgesim/manifest":
            return Response(
                200, [("content-type", "application/json"), ("cache-control", "no-store")], self.manifest()
            )
        status, cc, body = self.files.get(req.path, (404, "no-store", b"not found"))
        if req.method == "POST":
            return Response(204, [("x-edgesim-deploy", self.deploy)], b"")
        headers = [
            ("cache-control", cc),
            ("etag", '"v1"'),
            ("x-edgesim-deploy", self.deploy),
            ("date", _date(now)),
        ]
        if req.header("if-none-match") == '"v1"':
            return Response(304, headers, b"")
        return Response(status, [*headers, ("content-length", str(len(body)))], body)

    def content_requests(self) -> list[str]:
        return [r.target for r in self.requests if not r.path.startswith("/.edgesim/")]


def _date(now: float) -> str:
    from email.utils import formatdate

    return formatdate(now, usegmt=True)


def make(origin: FakeOrigin, **cfg: object) -> EdgeNode:
    return EdgeNode(HttpCache(MemoryStore(10**7)), EdgeConfig(name="e1", **cfg))  # type: ignore[arg-type]


def get(target: str, *headers: tuple[str, str], method: str = "GET") -> Request:
    return Request(method, target, [("host", HOST), *headers])


def drive(
    node: EdgeNode, req: Request, origin: Callable[[Request, float], Response | str], now: float
) -> Reply:
    """Run one request to its reply, answering fetches at once (errors as strings)."""
    step: Step = node.handle(req, now)
    while not isinstance(step, Reply):
        if isinstance(step, Fetch):
            got = origin(step.request, now)
            step = node.complete(
                step, None if isinstance(got, str) else got, got if isinstance(got, str) else None, now
            )
        else:
            assert step.fetch.done
            step = node.joined(step, now)
    return step


@pytest.fixture
def origin() -> FakeOrigin:
    o = FakeOrigin()
    o.files = {
        "/a": (200, "public, max-age=60", b"hello"),
        "/nostore": (200, "no-store", b"secret"),
        "/sie": (200, "max-age=10, stale-if-error=100", b"sie"),
        "/swr": (200, "max-age=10, stale-while-revalidate=100", b"swr"),
        "/404.html": (200, "public, max-age=60", b"custom 404"),
        "/spa/index.html": (200, "public, max-age=60", b"app"),
        "/exists": (200, "public, max-age=60", b"a file"),
    }
    return o


def test_miss_then_hit_with_headers(origin: FakeOrigin) -> None:
    node = make(origin)
    r1 = drive(node, get("/a"), origin, T0)
    assert (r1.response.status, r1.outcome, r1.response.body) == (200, "MISS", b"hello")
    assert get_header(r1.response.headers, "x-cache") == "MISS"
    assert get_header(r1.response.headers, "via") == "1.1 e1"
    r2 = drive(node, get("/a"), origin, T0 + 5)
    assert (r2.outcome, r2.response.body) == ("HIT", b"hello")
    assert get_header(r2.response.headers, "age") == "5"
    assert origin.content_requests() == ["/a"]
    assert node.stats.hits == 1 and node.stats.misses == 1


def test_manifest_fetched_once_and_first_requests_collapse(origin: FakeOrigin) -> None:
    node = make(origin)
    s1 = node.handle(get("/a"), T0)
    s2 = node.handle(get("/a"), T0)
    assert isinstance(s1, Fetch) and s1.kind == "manifest"
    assert isinstance(s2, Join) and s2.fetch is s1
    s1b = node.complete(s1, origin(s1.request, T0), None, T0)
    assert isinstance(s1b, Fetch) and s1b.kind == "fill"
    s2b = node.joined(s2, T0)
    assert isinstance(s2b, Join) and s2b.fetch is s1b  # collapsed onto the fill
    r1 = node.complete(s1b, origin(s1b.request, T0), None, T0)
    r2 = node.joined(s2b, T0)
    assert isinstance(r1, Reply) and isinstance(r2, Reply)
    assert (r1.outcome, r2.outcome) == ("MISS", "HIT")
    assert origin.content_requests() == ["/a"]
    assert node.stats.collapsed == 1


def test_many_concurrent_misses_make_one_origin_request(origin: FakeOrigin) -> None:
    node = make(origin)
    drive(node, get("/exists"), origin, T0)  # manifest out of the way
    steps = [node.handle(get("/a"), T0) for _ in range(10)]
    fetches = [s for s in steps if isinstance(s, Fetch)]
    assert len(fetches) == 1 and all(isinstance(s, Join) for s in steps[1:])
    first = node.complete(fetches[0], origin(fetches[0].request, T0), None, T0)
    rest = [node.joined(s, T0) for s in steps[1:]]  # type: ignore[arg-type]
    assert isinstance(first, Reply)
    assert all(isinstance(r, Reply) and r.response.body == b"hello" for r in rest)
    assert origin.content_requests().count("/a") == 1


def test_uncacheable_fill_is_not_shared(origin: FakeOrigin) -> None:
    node = make(origin)
    drive(node, get("/exists"), origin, T0)
    s1 = node.handle(get("/nostore"), T0)
    s2 = node.handle(get("/nostore"), T0)
    assert isinstance(s1, Fetch) and isinstance(s2, Join)
    node.complete(s1, origin(s1.request, T0), None, T0)
    again = node.joined(s2, T0)
    assert isinstance(again, Fetch)  # the waiter fetches on its own
    assert origin.content_requests().count("/nostore") == 1


def test_revalidation_304(origin: FakeOrigin) -> None:
    node = make(origin)
    drive(node, get("/a"), origin, T0)
    r = drive(node, get("/a"), origin, T0 + 120)
    assert r.outcome == "REVALIDATED" and r.response.body == b"hello"
    assert origin.requests[-1].header("if-none-match") == '"v1"'
    assert drive(node, get("/a"), origin, T0 + 130).outcome == "HIT"


def test_stale_if_error_only_when_allowed(origin: FakeOrigin) -> None:
    node = make(origin)
    drive(node, get("/sie"), origin, T0)
    drive(node, get("/a"), origin, T0)
    down = lambda req, now: "connect"  # noqa: E731
    r = drive(node, get("/sie"), down, T0 + 30)
    assert (r.outcome, r.response.body) == ("STALE", b"sie")
    r = drive(node, get("/a"), down, T0 + 120)
    assert (r.response.status, r.outcome) == (502, "ERROR")
    assert b"origin unreachable" in (r.response.body or b"")
    timeout = lambda req, now: "timeout"  # noqa: E731
    assert drive(node, get("/a"), timeout, T0 + 120).response.status == 504
    assert drive(node, get("/sie"), down, T0 + 200).response.status == 502  # window over


def test_stale_while_revalidate_serves_then_refreshes(origin: FakeOrigin) -> None:
    node = make(origin)
    drive(node, get("/swr"), origin, T0)
    step = node.handle(get("/swr"), T0 + 20)
    assert isinstance(step, Reply) and step.outcome == "STALE" and step.background is not None
    node.complete(step.background, origin(step.background.request, T0 + 20), None, T0 + 20)
    assert drive(node, get("/swr"), origin, T0 + 21).outcome == "HIT"


def test_new_deploy_refetches_manifest_and_purges(origin: FakeOrigin) -> None:
    node = make(origin)
    drive(node, get("/a"), origin, T0)
    assert drive(node, get("/a"), origin, T0 + 1).outcome == "HIT"
    origin.deploy = "d2"
    origin.files["/b"] = (200, "public, max-age=60", b"b")
    drive(node, get("/b"), origin, T0 + 2)  # carries the new deploy id
    manifests = [r for r in origin.requests if r.path == "/.edgesim/manifest"]
    r = drive(node, get("/a"), origin, T0 + 3)
    assert len([r for r in origin.requests if r.path == "/.edgesim/manifest"]) == len(manifests) + 1
    assert r.outcome == "MISS"  # the old deploy's copy was purged
    assert node.stats.deploys_seen == 1


def test_nodes_share_the_reading_of_a_manifest(origin: FakeOrigin) -> None:
    # Every node reads each deploy's manifest, the same body: it is parsed once per
    # process and its file test shared (a synthetic site's manifest lists every deploy
    # so far: parsed per node, a site's deploys cost the square of their count)
    n1, n2 = make(origin), make(origin)
    for n in (n1, n2):
        drive(n, get("/exists"), origin, T0)
    exists = n1._sites[HOST].exists
    assert exists is not None and exists is n2._sites[HOST].exists
    assert exists("/exists") and not exists("/b")
    origin.deploy = "d2"  # another body: read anew
    origin.files["/b"] = (200, "public, max-age=60", b"b")
    drive(n1, get("/b"), origin, T0 + 1)
    drive(n1, get("/a"), origin, T0 + 2)
    assert n1._sites[HOST].exists is not exists and n1._sites[HOST].exists("/b")
    assert n1._sites[HOST].deploy == "d2" and n2._sites[HOST].deploy == "d1"


def test_manifests_read_are_kept_bounded() -> None:
    from edgesim import node as node_module

    bodies = [json.dumps({"deploy_id": f"d{i}", "files": [f"/f{i}"]}).encode() for i in range(200)]
    read = [node_module._read_manifest(b) for b in bodies]
    assert all(r is not None and r[0]["deploy_id"] == f"d{i}" for i, r in enumerate(read))
    kept = node_module._READ
    assert len(kept) == node_module._READ_MAX and list(kept) == bodies[-node_module._READ_MAX :]
    again = node_module._read_manifest(bodies[-1])
    # the same document and file test, not parsed again (compiled, the pair itself is
    # a new tuple each time: mypyc returns tuples unboxed)
    assert again is not None and again[0] is read[-1][0] and again[1] is read[-1][1]
    assert again[1] is not None and again[1]("/f199") and not again[1]("/f0")
    for bad in (b"{not json", b"[1, 2]", b"\xff\xfe"):
        assert node_module._read_manifest(bad) is None
    assert len(kept) == node_module._READ_MAX


def test_shared_rules_one_set_per_host_and_deploy(origin: FakeOrigin) -> None:
    origin.rules = "/old /a 301\n"
    shared: dict[str, tuple[str, tuple[tuple[str, str], ...], RuleSet]] = {}
    n1, n2 = make(origin, shared_rules=shared), make(origin, shared_rules=shared)
    alone = make(origin)
    for n in (n1, n2, alone):
        r = drive(n, get("/old"), origin, T0)
        assert r.response.status == 301
        assert (get_header(r.response.headers, "location") or "").endswith("/a")
    deploy, _, first = shared[HOST]
    assert deploy == "d1"
    assert n1._sites[HOST].rules is first and n2._sites[HOST].rules is first
    assert alone._sites[HOST].rules is not None and alone._sites[HOST].rules is not first
    origin.deploy = "d2"  # same rule texts, new deploy: compiled anew
    drive(n1, get("/a?x"), origin, T0 + 1)  # n1 learns about d2 ...
    assert drive(n1, get("/old"), origin, T0 + 2).response.status == 301  # ... and installs it
    deploy, _, second = shared[HOST]
    assert deploy == "d2" and second is not first and n1._sites[HOST].rules is second
    assert n2._sites[HOST].rules is first  # n2 has not seen d2 yet


def test_fill_in_flight_during_deploy_is_keyed_by_its_deploy(origin: FakeOrigin) -> None:
    node = make(origin)
    drive(node, get("/exists"), origin, T0)
    fill = node.handle(get("/a"), T0)
    assert isinstance(fill, Fetch)
    old = origin(fill.request, T0)  # produced by d1
    origin.deploy = "d2"
    drive(node, get("/exists?x"), origin, T0)  # the edge learns about d2 ...
    drive(node, get("/exists?y"), origin, T0)  # ... and installs its manifest
    node.complete(fill, old, None, T0)  # the d1 fill lands late
    r = drive(node, get("/a"), origin, T0 + 1)
    assert r.outcome == "MISS"  # never served under d2
    assert get_header(r.response.headers, "x-edgesim-deploy") == "d2"


def test_rules_at_the_edge(origin: FakeOrigin) -> None:
    origin.rules = (
        "/old /a 301\n/exists /elsewhere 302\n/forced /a 302!\n/spa/* /spa/index.html 200\n"
        "/gone /404.html 410\n/members/* 200! Role=member\n"
    )
    node = make(origin)
    r = drive(node, get("/old?x=1"), origin, T0)
    assert (r.response.status, get_header(r.response.headers, "location"), r.outcome) == (
        301,
        "/a?x=1",
        "REDIRECT",
    )
    assert get_header(r.response.headers, "age") == "0"
    assert "/old?x=1" not in origin.content_requests()
    # an unforced rule yields to a file of the deploy
    assert drive(node, get("/exists"), origin, T0).response.body == b"a file"
    # rewrites fetch their target (once) and keep the rule's status
    r1 = drive(node, get("/spa/deep/link"), origin, T0)
    r2 = drive(node, get("/spa/other"), origin, T0)
    assert (r1.response.body, r2.response.body, r2.outcome) == (b"app", b"app", "HIT")
    assert origin.content_requests().count("/spa/index.html") == 1
    assert any(rq.header("x-edgesim-rewrite") == "/spa/deep/link" for rq in origin.requests)
    g = drive(node, get("/gone"), origin, T0)
    assert (g.response.status, g.response.body) == (410, b"custom 404")
    d = drive(node, get("/members/x"), origin, T0)
    assert (d.response.status, d.response.body) == (404, b"custom 404")


def test_operator_rules_without_manifests(origin: FakeOrigin) -> None:
    from edgesim.redirects import RuleSet

    node = make(origin, manifests=False, rules={HOST: RuleSet.parse("/exists /elsewhere 302\n")})
    r = drive(node, get("/exists"), origin, T0)
    assert r.response.status == 302  # no file list: no shadowing
    assert not [q for q in origin.requests if q.path == "/.edgesim/manifest"]


def test_post_passes_through_and_invalidates(origin: FakeOrigin) -> None:
    node = make(origin)
    drive(node, get("/a"), origin, T0)
    p = drive(node, get("/a", ("content-type", "text/plain"), method="POST"), origin, T0 + 1)
    assert (p.outcome, p.response.status) == ("PASS", 204)
    assert origin.requests[-1].method == "POST"
    assert drive(node, get("/a"), origin, T0 + 2).outcome == "MISS"


def test_upstream_5xx_and_unrequested_304_decided_in_the_core(origin: FakeOrigin) -> None:
    """What the shells and the capacity engine share: an upstream's 5xx answer (here a
    503; a shield's own 502s are tested live) is relayed as ERROR and counted in errors,
    not misses or passes; a 304 to a request without conditionals becomes this node's
    502 and stores nothing; a conditional POST's 304 is relayed."""
    node = make(origin)
    drive(node, get("/exists"), origin, T0)  # the manifest, and one miss
    origin.files["/busy"] = (503, "no-store", b"busy")
    r = drive(node, get("/busy"), origin, T0)
    assert (r.response.status, r.outcome) == (503, "ERROR")
    assert get_header(r.response.headers, "x-cache") == "ERROR"
    busy_post = lambda req, now: Response(500, [("content-length", "0")], b"")  # noqa: E731
    assert drive(node, get("/busy", method="POST"), busy_post, T0).outcome == "ERROR"

    def not_modified(req: Request, now: float) -> Response:
        return Response(304, [("etag", '"v1"'), ("cache-control", "max-age=60")], b"")

    for req in (get("/nm"), get("/nm", method="HEAD"), get("/nm", ("if-none-match", '"v1"'))):
        r = drive(node, req, not_modified, T0)
        assert (r.response.status, r.outcome) == (502, "ERROR")
        assert r.response.body == b"502 invalid or incomplete response from origin\n"
    assert node.cache.lookup(f"{HOST}\x00d1\x00/nm", get("/nm"), T0) is None
    assert drive(node, get("/nm", method="POST"), not_modified, T0).response.status == 502
    cond = drive(node, get("/nm", ("if-none-match", '"v1"'), method="POST"), not_modified, T0)
    assert (cond.response.status, cond.outcome) == (304, "PASS")
    s = node.stats
    assert (s.errors, s.misses, s.passes, s.revalidated) == (6, 1, 1, 0)


def test_purge_api(origin: FakeOrigin) -> None:
    node = make(origin)
    drive(node, get("/a"), origin, T0)
    drive(node, get("/exists"), origin, T0)
    r = drive(node, get(f"/.edgesim/edge/purge?site={HOST}&url=/a", method="POST"), origin, T0)
    assert json.loads(r.response.body or b"")["purged"] == 1
    # the count is what was there: /a is gone now, /never was never cached
    for url in ("/a", "/never"):
        r = drive(node, get(f"/.edgesim/edge/purge?site={HOST}&url={url}", method="POST"), origin, T0)
        assert json.loads(r.response.body or b"")["purged"] == 0
    assert drive(node, get("/a"), origin, T0).outcome == "MISS"
    assert drive(node, get("/exists"), origin, T0).outcome == "HIT"
    drive(node, get(f"/.edgesim/edge/purge?site={HOST}", method="PURGE"), origin, T0)
    assert drive(node, get("/exists"), origin, T0).outcome == "MISS"
    bad = drive(node, get("/.edgesim/edge/purge", method="POST"), origin, T0)
    assert bad.response.status == 400
    stats = json.loads(drive(node, get("/.edgesim/edge/stats"), origin, T0).response.body or b"")
    assert stats["node"] == "e1" and stats["purges"] == 4


def test_connection_cannot_strip_host_from_the_fill(origin: FakeOrigin) -> None:
    # A client listing Host in Connection must not make the edge forward the fill
    # without it (an origin would then answer for its default host, and that answer
    # would be cached under this host for everyone). Other listed fields do go.
    node = make(origin)
    req = get("/a", ("connection", "host, x-private, close"), ("x-private", "1"), ("x-other", "2"))
    drive(node, req, origin, T0)
    fill = next(r for r in origin.requests if r.path == "/a")
    assert fill.header("host") == HOST
    assert fill.header("x-private") is None and fill.header("connection") is None
    assert fill.header("x-other") == "2"


def test_head_served_from_get(origin: FakeOrigin) -> None:
    node = make(origin)
    drive(node, get("/a"), origin, T0)
    r = drive(node, get("/a", method="HEAD"), origin, T0 + 1)
    assert r.outcome == "HIT" and not r.response.body


def test_core_imports_no_trio() -> None:
    code = "import sys, edgesim.node, edgesim.cache; print('trio' in sys.modules, 'socket' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-P", "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split()[0] == "False"


def test_a_shield_never_applies_rules_again(origin: FakeOrigin) -> None:
    # Forced rules on a rewrite's target: an edge rewrites /r to /b, and /b itself is
    # rewritten (forced) or redirected (forced). Rewrites are not recursive (spec R2.22):
    # the client gets /b's file, with or without a shield tier between edge and origin.
    origin.files["/b"] = (200, "public, max-age=60", b"file b")
    origin.files["/b2"] = (200, "public, max-age=60", b"file b2")
    origin.files["/c"] = (200, "public, max-age=60", b"file c")
    origin.rules = "/r /b 200\n/b /c 200!\n/r2 /b2 200\n/b2 /x 301!\n/old /c 301\n"

    def through(shield: EdgeNode) -> Callable[[Request, float], Response]:
        return lambda req, now: drive(shield, req, origin, now).response

    shield = EdgeNode(HttpCache(MemoryStore(10**7)), EdgeConfig(name="s1", shield=True))
    behind, direct = make(origin), make(origin)
    for target, body in (("/r", b"file b"), ("/r2", b"file b2"), ("/b", b"file c")):
        r1 = drive(behind, get(target), through(shield), T0)
        r2 = drive(direct, get(target), origin, T0)
        assert (r1.response.status, r1.response.body) == (200, body) == (r2.response.status, r2.response.body)
    # the edge still answers redirects itself; the shield saw only what edges forwarded
    r = drive(behind, get("/old"), through(shield), T0)
    assert (r.response.status, r.outcome) == (301, "REDIRECT")
    assert shield.stats.redirects == 0
    # an edge (no shield flag) in the shield's place rewrites /b a second time
    wrong = drive(make(origin), get("/r"), through(make(origin)), T0)
    assert wrong.response.body == b"file c"
