"""The edge node end to end: a real origin process, a real edge on loopback port 0, real
diskcache directories, and real HTTP over sockets. Waits are bounded by trio.fail_after.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import trio
from helpers import OriginProcess

from edgesim._client import OriginPool
from edgesim.http import Request, Response
from edgesim.serve import build_node, make_origin, serve_edge

SITE = "site.test"
CONTENT = {
    "index.html": b"<h1>home</h1>",
    "about.html": b"about us",
    "app.3f9a1c2b7d.js": b"console.log('v1')",
    "page.txt": b"version one",
    "404.html": b"custom not found",
}
RULES = "/old /about 301\n/docs/* /about 302\n/spa/* /index.html 200\n"
TOML = """
[cache]
html = "public, max-age=600"
default = "public, max-age=600"

[cache.paths]
"/slow.txt" = "public, max-age=600"
"/flaky.txt" = "public, max-age=1, stale-if-error=600"
"""


def _write_site(root: Path) -> Path:
    site = root / SITE
    site.mkdir(parents=True)
    for name, body in CONTENT.items():
        (site / name).write_bytes(body)
    (site / "slow.txt").write_bytes(b"slow body")
    (site / "flaky.txt").write_bytes(b"flaky body")
    (site / "_redirects").write_text(RULES)
    (site / "_edgesim.toml").write_text(TOML)
    return site


@pytest.fixture
def sites(tmp_path: Path) -> Path:
    root = tmp_path / "sites"
    _write_site(root)
    return root


@pytest.fixture
def origin(sites: Path) -> Iterator[OriginProcess]:
    p = OriginProcess(sites)
    yield p
    p.stop()


class Client:
    """Requests to the edge over real sockets (one pooled client per test)."""

    def __init__(self, port: int) -> None:
        self.pool = OriginPool(f"http://127.0.0.1:{port}", read_timeout=20)

    async def get(self, target: str, method: str = "GET", **headers: str) -> Response:
        hdrs = [("host", SITE), *((k.replace("_", "-").lower(), v) for k, v in headers.items())]
        with trio.fail_after(30):
            return await self.pool.request(Request(method, target, hdrs))


async def _edge(
    nursery: trio.Nursery, origin_url: str, tmp: Path | None = None, name: str = "e1"
) -> tuple[Client, object]:
    disk = (str(tmp / "disk"), 50 * 2**20) if tmp is not None else None
    node = build_node(name=name, memory_bytes=10 * 2**20, disk=disk)
    port = await nursery.start(serve_edge, node, make_origin(origin_url))
    return Client(port), node


@pytest.fixture
async def edge(origin: OriginProcess, tmp_path: Path) -> AsyncIterator[tuple[Client, object]]:
    async with trio.open_nursery() as nursery:
        yield await _edge(nursery, origin.url, tmp_path)
        nursery.cancel_scope.cancel()


def _x(resp: Response) -> str | None:
    return resp.header("x-cache")


async def _raw_origin(nursery: trio.Nursery, answer: Callable[[bytes], bytes]) -> tuple[str, list[bytes]]:
    """An origin on loopback that reads one request head per connection and sends the
    raw bytes ``answer(head)`` (a response the pool could not be made to send); its
    URL, and the heads it got, in order."""
    heads: list[bytes] = []

    async def serve(stream: trio.SocketStream) -> None:
        async with stream:
            buf = b""
            while b"\r\n\r\n" not in buf:
                data = await stream.receive_some(65536)
                if not data:
                    return
                buf += data
            heads.append(buf)
            await stream.send_all(answer(buf))

    listeners = await nursery.start(trio.serve_tcp, serve, 0)
    return f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}", heads


async def test_miss_hit_headers_and_keepalive(edge: tuple[Client, object]) -> None:
    client, _ = edge
    r1 = await client.get("/about")
    assert (r1.status, r1.body, _x(r1)) == (200, b"about us", "MISS")
    assert r1.header("via") == "1.1 e1" and r1.header("age") == "0"
    assert r1.header("x-edgesim-deploy")
    r2 = await client.get("/about")
    assert (_x(r2), r2.body) == ("HIT", b"about us")
    assert r2.header("age") is not None and r2.header("etag") == r1.header("etag")
    r3 = await client.get("/about", if_none_match=r1.header("etag") or "")
    assert r3.status == 304 and _x(r3) == "HIT"
    # RFC 9110 §8.6: a 304's Content-Length, if any, is the 200's; a HEAD's is the GET's
    assert r3.header("content-length") in (None, "8") and not r3.body
    r4 = await client.get("/about", method="HEAD")
    assert (r4.status, _x(r4), r4.header("content-length"), r4.body) == (200, "HIT", "8", b"")


async def test_redirects_and_rewrites_at_the_edge(edge: tuple[Client, object]) -> None:
    client, node = edge
    r = await client.get("/old?x=1")
    assert (r.status, r.header("location"), _x(r)) == (301, "/about?x=1", "REDIRECT")
    spa1 = await client.get("/spa/a/b")
    spa2 = await client.get("/spa/c")
    assert spa1.body == spa2.body == b"<h1>home</h1>"
    assert _x(spa2) == "HIT"
    missing = await client.get("/nothing-here")
    assert (missing.status, missing.body) == (404, b"custom not found")
    assert node.stats.redirects == 1  # type: ignore[attr-defined]


async def test_disk_tier_survives_a_node_restart(origin: OriginProcess, tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        client, _ = await _edge(nursery, origin.url, tmp_path)
        assert _x(await client.get("/page.txt")) == "MISS"
        nursery.cancel_scope.cancel()
    assert any((tmp_path / "disk").iterdir())
    async with trio.open_nursery() as nursery:
        client, node = await _edge(nursery, origin.url, tmp_path, name="e2")
        again = await client.get("/page.txt")
        assert (again.body, _x(again)) == (b"version one", "HIT")
        assert node.cache.statistics().disk.hits == 1  # type: ignore[attr-defined]
        nursery.cancel_scope.cancel()


async def test_corrupt_disk_entry_is_a_miss(origin: OriginProcess, tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        client, _ = await _edge(nursery, origin.url, tmp_path)
        await client.get("/page.txt")
        nursery.cancel_scope.cancel()
    for path in (tmp_path / "disk").rglob("*.val"):
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])  # half-written
    async with trio.open_nursery() as nursery:
        client, _ = await _edge(nursery, origin.url, tmp_path, name="e3")
        r = await client.get("/page.txt")
        assert (r.status, r.body) == (200, b"version one")
        nursery.cancel_scope.cancel()


async def test_without_manifests_the_deploy_header_does_not_defeat_the_cache(origin: OriginProcess) -> None:
    # Fills were keyed by the origin's X-Edgesim-Deploy, lookups by the site's deploy,
    # which only a manifest sets: with --no-manifests nothing was ever a hit.
    async with trio.open_nursery() as nursery:
        node = build_node(name="e1", memory_bytes=2**20, manifests=False)
        client = Client(await nursery.start(serve_edge, node, make_origin(origin.url)))
        first = await client.get("/about")
        assert (first.body, _x(first)) == (b"about us", "MISS") and first.header("x-edgesim-deploy")
        second = await client.get("/about")
        assert (second.body, _x(second)) == (b"about us", "HIT")
        assert node.stats.origin_requests == 1  # no manifest, one fill
        nursery.cancel_scope.cancel()


async def test_concurrent_misses_collapse_to_one_origin_request(sites: Path, tmp_path: Path) -> None:
    (sites / SITE / "_edgesim.toml").write_text(TOML + "\n[load]\nservice_time = 0.4\n")
    origin = OriginProcess(sites)
    try:
        async with trio.open_nursery() as nursery:
            client, node = await _edge(nursery, origin.url, None)
            await client.get("/about")  # manifest and a warm connection
            before = node.stats.origin_requests  # type: ignore[attr-defined]
            results: list[Response] = []

            async def one() -> None:
                results.append(await client.get("/slow.txt"))

            async with trio.open_nursery() as burst:
                for _ in range(12):
                    burst.start_soon(one)
            assert len(results) == 12 and all(r.body == b"slow body" for r in results)
            assert node.stats.origin_requests - before == 1  # type: ignore[attr-defined]
            assert sorted(_x(r) or "" for r in results).count("MISS") == 1
            health = json.loads((await client.get("/.edgesim/health")).body or b"{}")
            assert health["served"] >= 1
            nursery.cancel_scope.cancel()
    finally:
        origin.stop()


async def test_deploy_then_purge(sites: Path, edge: tuple[Client, object], origin: OriginProcess) -> None:
    """A deploy made at the origin directly: the edge serves its copy until purged."""
    client, _ = edge
    v1 = await client.get("/page.txt")
    d1 = v1.header("x-edgesim-deploy")
    assert _x(await client.get("/about")) == "MISS"
    (sites / SITE / "page.txt").write_bytes(b"version two")
    direct = OriginPool(origin.url)
    deployed = await direct.request(Request("POST", "/.edgesim/deploy", [("host", SITE)]))
    await direct.aclose()
    assert deployed.status == 200, deployed.body
    d2 = json.loads(deployed.body or b"{}")["deploy_id"]
    assert d2 != d1
    assert (await client.get("/page.txt")).body == b"version one"  # not told yet
    purged = await client.get(f"/.edgesim/edge/purge?site={SITE}&url=/page.txt", method="POST")
    assert json.loads(purged.body or b"{}")["purged"] == 1
    fresh = await client.get("/page.txt")
    assert (fresh.body, fresh.header("x-edgesim-deploy"), _x(fresh)) == (b"version two", d2, "MISS")
    # That response showed a new deploy id: the edge refetches the manifest and purges
    # everything of the old deploy (here /about, still cached under d1).
    about = await client.get("/about")
    assert (_x(about), about.header("x-edgesim-deploy")) == ("MISS", d2)
    stats = json.loads((await client.get("/.edgesim/edge/stats")).body or b"{}")
    assert stats["sites"][SITE]["deploy"] == d2
    assert stats["deploys_seen"] == 1


async def test_deploy_through_the_edge_is_seen_at_once(sites: Path, edge: tuple[Client, object]) -> None:
    client, _ = edge
    assert (await client.get("/page.txt")).body == b"version one"
    (sites / SITE / "page.txt").write_bytes(b"version two")
    deployed = await client.get("/.edgesim/deploy", method="POST")
    assert (deployed.status, _x(deployed)) == (200, "PASS")
    again = await client.get("/page.txt")
    assert (again.body, _x(again)) == (b"version two", "MISS")


async def test_origin_down_gives_502_and_keeps_serving_cached(sites: Path) -> None:
    """With the origin process gone, cached content is still served and misses get a
    clear 502. (Stale-if-error windows, which need time to pass, are tested on the mock
    clock in test_edge_virtual.py.)"""
    origin = OriginProcess(sites)
    async with trio.open_nursery() as nursery:
        client, _ = await _edge(nursery, origin.url, None)
        assert (await client.get("/about")).body == b"about us"
        origin.stop()
        cached = await client.get("/about")
        assert (cached.status, cached.body, _x(cached)) == (200, b"about us", "HIT")
        down = await client.get("/never-cached")
        assert down.status == 502 and b"origin unreachable" in (down.body or b"")
        assert _x(down) == "ERROR"
        nursery.cancel_scope.cancel()


async def test_unknown_methods_pass_through(edge: tuple[Client, object]) -> None:
    client, _ = edge
    r = await client.get("/about", method="PUT")
    assert (r.status, _x(r)) == (405, "PASS")
    assert r.header("allow") == "GET, HEAD"


async def test_embedded_origin(sites: Path) -> None:
    async with trio.open_nursery() as nursery:
        client, _ = await _edge(nursery, f"embedded:{sites}")
        assert (await client.get("/about")).body == b"about us"
        assert _x(await client.get("/about")) == "HIT"
        nursery.cancel_scope.cancel()


def test_cli_edge_serve_end_to_end(origin: OriginProcess, tmp_path: Path) -> None:
    """`edgesim edge serve` as a real process, stopped by SIGTERM."""
    import socket
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rules = tmp_path / "_redirects"
    rules.write_text("/from-cli /about 301\nnot a rule\n")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-P",
            "-m",
            "edgesim",
            "edge",
            "serve",
            "--origin",
            origin.url,
            "--port",
            str(port),
            "--disk-cache",
            f"{tmp_path / 'd'}:10MB",
            "--name",
            "cli-edge",
            # the site's rules from a file (its bad line skipped, with a warning)
            "--rules",
            f"{SITE.upper()}.={rules}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )
    try:
        assert proc.stdout is not None
        assert "listening on" in proc.stdout.readline()
        deadline = time.monotonic() + 10
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(f"GET /about HTTP/1.1\r\nHost: {SITE}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while time.monotonic() < deadline:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
        assert data.startswith(b"HTTP/1.1 200") and b"via: 1.1 cli-edge" in data.lower()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(f"GET /from-cli HTTP/1.1\r\nHost: {SITE}\r\nConnection: close\r\n\r\n".encode())
            head = conn.recv(65536)
        assert head.startswith(b"HTTP/1.1 301") and b"location: /about" in head.lower()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert proc.stderr is not None
        warnings = [line for line in proc.stderr.read().splitlines() if line.startswith("--rules")]
        assert len(warnings) == 1 and warnings[0].startswith(f"--rules {SITE}: {rules}:2:5: error:"), warnings


def test_cli_edge_serve_bad_arguments(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-P", "-m", "edgesim", "edge", "serve", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)

    bad = run("--origin", "ftp://x")
    assert bad.returncode == 2 and "expected http://HOST:PORT" in bad.stderr and "Traceback" not in bad.stderr
    bad = run("--origin", "http://127.0.0.1:1", "--memory-cache", "lots")
    assert bad.returncode == 2 and "expected a size" in bad.stderr
    bad = run("--origin", "http://127.0.0.1:1", "--rules", "nohost")
    assert bad.returncode == 2 and "expected HOST=FILE, got 'nohost'" in bad.stderr
    # "embedded:" alone served the current directory as the sites folder
    bad = run("--origin", "embedded:")
    assert bad.returncode == 2 and "expected embedded:SITES_DIR, got no directory" in bad.stderr
    rules = tmp_path / "_redirects"
    rules.write_text("/a /b 301\n")
    bad = run("--origin", "http://127.0.0.1:1", "--rules", f"no host!={rules}")
    assert bad.returncode == 2 and "'no host!': expected a host name" in bad.stderr
    bad = run("--origin", "http://127.0.0.1:1", "--rules", f"a.test={rules}", "--rules", f"a.test={rules}")
    assert bad.returncode == 2 and "a.test: at most one _redirects and one .toml file" in bad.stderr
    # an empty disk path: no disk tier at all, or an errno from diskcache
    bad = run("--origin", "embedded: ")
    assert bad.returncode == 2 and "expected embedded:SITES_DIR, got no directory" in bad.stderr
    bad = run("--origin", "http://127.0.0.1:1", "--disk-cache", f"{tmp_path / 'd'}:0")
    assert bad.returncode == 2 and "the disk tier's size must be above 0, got '0'" in bad.stderr
    for value in ("", ":1GB"):
        bad = run("--origin", "http://127.0.0.1:1", "--disk-cache", value)
        assert bad.returncode == 2 and f"expected DIR[:SIZE], got '{value}'" in bad.stderr
    # a rule file of bad lines only: each one said, and the node does not start
    rules.write_text("nothing here\n/x\n")
    bad = run("--origin", "http://127.0.0.1:1", "--rules", f"a.test={rules}")
    lines = bad.stderr.splitlines()
    assert bad.returncode == 1 and "Traceback" not in bad.stderr, bad.stderr
    assert [line.split(": error:")[0] for line in lines[:2]] == [
        f"--rules a.test: {rules}:1:9",
        f"--rules a.test: {rules}:2:1",
    ]
    assert lines[2] == f"Error: --rules a.test={rules}: no valid rule (2 errors, above)"


async def test_shield_tier_passes_manifests_and_deploys(origin: OriginProcess) -> None:
    """An edge whose origin is another edge (a shield): rules, manifests and deploy ids
    pass through, and each tier caches."""
    async with trio.open_nursery() as nursery:
        shield_node = build_node(name="shield", memory_bytes=2**20)
        shield_port = await nursery.start(serve_edge, shield_node, make_origin(origin.url))
        client, child = await _edge(nursery, f"http://127.0.0.1:{shield_port}", name="child")
        r1 = await client.get("/about")
        assert (r1.status, r1.body, _x(r1)) == (200, b"about us", "MISS")
        assert r1.header("via") == "1.1 shield, 1.1 child"
        assert r1.header("x-edgesim-deploy")
        assert _x(await client.get("/about")) == "HIT"
        assert shield_node.stats.requests == 2  # the manifest and /about, once each
        # the child evaluates the site's rules from the manifest it got through the shield
        redirect = await client.get("/old")
        assert (redirect.status, redirect.header("location")) == (301, "/about")
        stats = json.loads((await client.get("/.edgesim/edge/stats")).body or b"{}")
        assert stats["node"] == "child" and stats["sites"][SITE]["rules"] == 3
        assert child.stats.redirects == 1  # type: ignore[attr-defined]
        nursery.cancel_scope.cancel()


async def test_early_hints_relayed_to_the_fetching_client_only(nursery: trio.Nursery) -> None:
    """A 103 from the origin reaches the client whose miss caused the fetch, not a
    collapsed joiner, and is not stored: the later hit has none."""
    import h11
    import trio.testing

    from edgesim._server import HttpServer
    from edgesim.serve import EdgeService

    release = trio.Event()
    hinted = trio.Event()

    async def origin(stream: trio.SocketStream) -> None:
        async with stream:
            buf = b""
            while b"\r\n\r\n" not in buf:
                buf += await stream.receive_some(65536)
            await stream.send_all(b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n")
            hinted.set()
            await release.wait()
            await stream.send_all(
                b"HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\nContent-Length: 4\r\n\r\nbody"
            )

    listeners = await nursery.start(trio.serve_tcp, origin, 0)
    port = listeners[0].socket.getsockname()[1]
    node = build_node(name="e1", memory_bytes=2**20, manifests=False)
    service = EdgeService(node, OriginPool(f"http://127.0.0.1:{port}"))
    await nursery.start(service.run)
    server = HttpServer(service.handle)

    async def get(results: list[tuple[list[int], int, bytes]]) -> None:
        client_end, server_end = trio.testing.memory_stream_pair()
        nursery.start_soon(server.serve_stream, server_end)
        conn = h11.Connection(h11.CLIENT)
        await client_end.send_all(
            conn.send(h11.Request(method="GET", target="/p.txt", headers=[("host", SITE)]))
            + conn.send(h11.EndOfMessage())
        )
        interim: list[int] = []
        status, body = 0, b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(bytes(await client_end.receive_some(65536)))
            elif isinstance(event, h11.InformationalResponse):
                assert (b"link", b"</s.css>; rel=preload") in event.headers
                interim.append(event.status_code)
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
        results.append((interim, status, body))
        await client_end.aclose()

    first: list[tuple[list[int], int, bytes]] = []
    joiner: list[tuple[list[int], int, bytes]] = []
    with trio.fail_after(10):
        async with trio.open_nursery() as clients:
            clients.start_soon(get, first)
            await hinted.wait()
            clients.start_soon(get, joiner)
            await trio.testing.wait_all_tasks_blocked()
            release.set()
        later: list[tuple[list[int], int, bytes]] = []
        await get(later)
    assert first == [([103], 200, b"body")]
    assert joiner == [([], 200, b"body")]
    assert later == [([], 200, b"body")]
    assert node.stats.collapsed == 1


async def test_control_character_in_origin_header_is_a_502_never_stored(nursery: trio.Nursery) -> None:
    """An origin response with a control character in a field value (h11 lets all but
    NUL through) is an invalid response: 502, nothing cached, the next request goes
    to the origin again and the service keeps serving."""

    def answer(head: bytes) -> bytes:
        bad = b"X-Bad: a\x01b\r\n" if b"/bad" in head else b""
        return (
            b"HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\nContent-Length: 2\r\n"
            + bad
            + b"Connection: close\r\n\r\nok"
        )

    url, heads = await _raw_origin(nursery, answer)
    node = build_node(name="e1", memory_bytes=2**20, manifests=False)
    edge_port = await nursery.start(serve_edge, node, make_origin(url))
    client = Client(edge_port)
    for _ in range(2):
        r = await client.get("/bad")
        assert (r.status, _x(r)) == (502, "ERROR")
        assert r.header("x-bad") is None
    good = await client.get("/good")
    assert (good.status, good.body) == (200, b"ok")
    assert [h.split(b" ")[1] for h in heads] == [b"/bad", b"/bad", b"/good"]
    assert node.statistics()["errors"] == 2


@pytest.mark.parametrize("status_line", [b"999 Weird", b"600 Custom", b"000 Zero"])
@pytest.mark.parametrize("via_shield", [False, True], ids=["edge", "shield"])
async def test_origin_status_outside_100_599_is_a_502_never_stored(
    nursery: trio.Nursery, status_line: bytes, via_shield: bool
) -> None:
    """RFC 9110 §15: a status outside 100..599 is invalid; h11 passes 600..999 on as a
    final response, and the edge relayed (and cached) it. Now it is a 502 with its
    reason, counted as an error and never stored, at the edge that fetched it; an edge
    behind a shield gets the shield's 502, and nothing is stored at either tier."""

    def answer(head: bytes) -> bytes:
        status = status_line if b"/weird" in head else b"200 OK"
        return (
            b"HTTP/1.1 " + status + b"\r\nCache-Control: max-age=600\r\nContent-Length: 2\r\n"
            b"Connection: close\r\n\r\nok"
        )

    url, heads = await _raw_origin(nursery, answer)
    first = build_node(name="e1", memory_bytes=2**20, manifests=False)
    edge_port = await nursery.start(serve_edge, first, make_origin(url))
    if via_shield:
        child = build_node(name="child", memory_bytes=2**20, manifests=False)
        edge_port = await nursery.start(serve_edge, child, make_origin(f"http://127.0.0.1:{edge_port}"))
    client = Client(edge_port)
    for _ in range(2):
        r = await client.get("/weird")
        assert r.status == 502
        assert r.body == b"502 invalid or incomplete response from origin\n"
        assert r.header("cache-control") == "no-store"
        # the child relays the shield's 502 as an error of its own upstream, not a miss
        assert _x(r) == "ERROR"
    good = await client.get("/good")
    assert (good.status, good.body) == (200, b"ok")
    assert [h.split(b" ")[1] for h in heads] == [b"/weird", b"/weird", b"/good"]  # never from a cache
    assert first.statistics()["errors"] == 2
    if via_shield:
        assert (child.stats.errors, child.stats.misses) == (2, 1)  # the 502s; then /good


async def test_head_reports_the_length_of_a_chunked_origin_body(nursery: trio.Nursery) -> None:
    """A GET answered chunked was stored without a Content-Length, and HEAD hits on it
    said Content-Length: 0; a HEAD the origin answered chunked got a made-up 0 too."""

    def answer(head: bytes) -> bytes:
        body = b"" if head.startswith(b"HEAD") else b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"
        return (
            b"HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n" + body
        )

    url, heads = await _raw_origin(nursery, answer)
    node = build_node(name="e1", memory_bytes=2**20, manifests=False)
    client = Client(await nursery.start(serve_edge, node, make_origin(url)))
    head_miss = await client.get("/a", method="HEAD")
    assert (head_miss.status, head_miss.header("content-length"), _x(head_miss)) == (200, None, "MISS")
    get = await client.get("/a")
    assert (get.body, get.header("content-length"), _x(get)) == (b"abcdefg", "7", "MISS")
    head_hit = await client.get("/a", method="HEAD")
    assert (head_hit.body, head_hit.header("content-length"), _x(head_hit)) == (b"", "7", "HIT")
    assert [b" ".join(h.split(b" ")[:2]) for h in heads] == [b"HEAD /a", b"GET /a"]


def test_nodes_served_in_a_library_leave_ctrl_c_as_it_was() -> None:
    # Each node took SIGINT and SIGTERM; stopped in any order, the handler left behind
    # could be a finished run's, and a later Ctrl-C raised RunFinishedError.
    import signal

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)

    async def two_nodes() -> None:
        async with trio.open_nursery() as outer:
            async with trio.open_nursery() as first:  # stopped first, started first
                await first.start(serve_edge, build_node(name="a"), make_origin("http://127.0.0.1:1"))
                await outer.start(serve_edge, build_node(name="b"), make_origin("http://127.0.0.1:1"))
                await trio.sleep(0.01)
                first.cancel_scope.cancel()
            await trio.sleep(0.01)
            outer.cancel_scope.cancel()

    trio.run(two_nodes)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


CLOSE = b"Connection: close\r\n\r\n"  # the end of a raw origin's response head


def _edge_process(origin_url: str, name: str) -> tuple[subprocess.Popen[str], int]:
    """``edgesim edge serve`` without manifests on a free loopback port; it and its port."""
    args = ["edge", "serve", "--origin", origin_url, "--port", "0", "--name", name, "--no-manifests"]
    proc = subprocess.Popen(
        [sys.executable, "-P", "-m", "edgesim", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert " listening on http://127.0.0.1:" in line, line
    return proc, int(line.split("http://127.0.0.1:")[1].split()[0])


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0


async def test_a_shields_502_is_an_error_at_the_child_too() -> None:
    """`edgesim edge serve` processes: a child edge in front of a shield whose origin is
    down. The shield answers 502 (origin unreachable) with X-Cache: ERROR and counts an
    error; the child labelled that same 502 MISS and counted a miss, so its stats and a
    drill's X-Cache counts showed an origin outage as misses."""
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    shield, shield_port = _edge_process(f"http://127.0.0.1:{dead}", "shield")
    try:
        child, child_port = _edge_process(f"http://127.0.0.1:{shield_port}", "child")
        try:
            client = Client(child_port)
            for _ in range(2):
                r = await client.get("/page")
                assert (r.status, r.body) == (502, b"502 origin unreachable (connect)\n")
                assert (_x(r), r.header("via")) == ("ERROR", "1.1 shield, 1.1 child")
            for port in (shield_port, child_port):
                stats = json.loads((await Client(port).get("/.edgesim/edge/stats")).body or b"{}")
                assert (stats["errors"], stats["misses"], stats["origin_requests"]) == (2, 0, 2)
        finally:
            _stop(child)
    finally:
        _stop(shield)


async def test_a_5xx_answer_to_a_revalidation_is_an_error_at_both_tiers(nursery: trio.Nursery) -> None:
    """A stale entry revalidated through a shield, the origin answering 503 (no
    stale-if-error): each tier relays the 503 as ERROR, not MISS, and counts an error."""
    answers = iter(
        [
            b'HTTP/1.1 200 OK\r\nCache-Control: max-age=0\r\nETag: "v1"\r\nContent-Length: 2\r\n'
            b"Connection: close\r\n\r\nok",
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nConnection: close\r\n\r\ndown",
        ]
    )
    url, heads = await _raw_origin(nursery, lambda head: next(answers))
    shield = build_node(name="shield", memory_bytes=2**20, manifests=False)
    shield_port = await nursery.start(serve_edge, shield, make_origin(url))
    child = build_node(name="child", memory_bytes=2**20, manifests=False)
    client = Client(await nursery.start(serve_edge, child, make_origin(f"http://127.0.0.1:{shield_port}")))
    first = await client.get("/p")
    assert (first.status, first.body, _x(first)) == (200, b"ok", "MISS")
    again = await client.get("/p")  # stale at once (max-age=0): revalidated at both tiers
    assert (again.status, again.body, _x(again)) == (503, b"down", "ERROR")
    assert b'if-none-match: "v1"' in heads[1].lower()
    for node in (shield, child):
        assert (node.stats.misses, node.stats.errors, node.stats.revalidated) == (1, 1, 0)


@pytest.mark.parametrize("via_shield", [False, True], ids=["edge", "shield"])
async def test_an_unrequested_304_is_a_502_never_relayed(nursery: trio.Nursery, via_shield: bool) -> None:
    """An origin answering 304 to a request that was not conditional (the edge strips
    the client's conditionals from a fill, and this client sent none): the 304 was
    relayed (a client without a stored copy got an empty answer). It is an invalid
    response now: 502, counted as an error, nothing stored (the next request goes to
    the origin again); a conditional POST passed through still gets the origin's 304."""

    def answer(head: bytes) -> bytes:
        if b"/nm" in head or head.startswith(b"POST"):
            return b'HTTP/1.1 304 Not Modified\r\nETag: "x"\r\nCache-Control: max-age=600\r\n' + CLOSE
        return b"HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\nContent-Length: 2\r\n" + CLOSE + b"ok"

    url, heads = await _raw_origin(nursery, answer)
    first = build_node(name="e1", memory_bytes=2**20, manifests=False)
    port = await nursery.start(serve_edge, first, make_origin(url))
    edge = first
    if via_shield:
        edge = build_node(name="child", memory_bytes=2**20, manifests=False)
        port = await nursery.start(serve_edge, edge, make_origin(f"http://127.0.0.1:{port}"))
    client = Client(port)
    for method in ("GET", "HEAD", "GET"):
        r = await client.get("/nm", method=method)
        assert (r.status, _x(r), r.header("etag")) == (502, "ERROR", None)
        if method == "GET":
            assert r.body == b"502 invalid or incomplete response from origin\n"
    # a client's own conditional is not forwarded on a fill: still no 304 to relay
    r = await client.get("/nm", if_none_match='"x"')
    assert (r.status, _x(r)) == (502, "ERROR")
    post = await client.get("/form", method="POST")
    assert (post.status, _x(post)) == (502, "ERROR")
    post = await client.get("/form", method="POST", if_none_match='"x"')
    assert (post.status, post.header("etag"), _x(post)) == (304, '"x"', "PASS")
    assert [b" ".join(h.split(b" ")[:2]) for h in heads] == [
        b"GET /nm",
        b"HEAD /nm",
        b"GET /nm",
        b"GET /nm",
        b"POST /form",
        b"POST /form",
    ]
    assert first.stats.errors == 5 and first.stats.misses == 0
    assert edge.stats.errors == 5 and edge.stats.misses == 0


async def test_a_304_to_the_edges_own_revalidation_refreshes_and_serves_the_entry(
    nursery: trio.Nursery,
) -> None:
    """The edge's own conditional (a stale entry's ETag) answered 304: the client, who
    asked unconditionally, gets the stored 200 with its body (REVALIDATED), never the
    304; a client that asked conditionally gets a 304 built from the refreshed entry."""

    def answer(head: bytes) -> bytes:
        if b"if-none-match" in head.lower():
            return b'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\nCache-Control: max-age=0\r\n' + CLOSE
        return (
            b'HTTP/1.1 200 OK\r\nCache-Control: max-age=0\r\nETag: "v1"\r\nContent-Length: 4\r\n'
            b"Connection: close\r\n\r\nbody"
        )

    url, heads = await _raw_origin(nursery, answer)
    node = build_node(name="e1", memory_bytes=2**20, manifests=False)
    client = Client(await nursery.start(serve_edge, node, make_origin(url)))
    assert _x(await client.get("/r")) == "MISS"
    for _ in range(2):
        r = await client.get("/r")
        assert (r.status, r.body, r.header("content-length"), _x(r)) == (200, b"body", "4", "REVALIDATED")
    cond = await client.get("/r", if_none_match='"v1"')
    assert (cond.status, cond.body, _x(cond)) == (304, b"", "REVALIDATED")
    assert [b'if-none-match: "v1"' in h.lower() for h in heads] == [False, True, True, True]
    assert (node.stats.revalidated, node.stats.errors) == (3, 0)


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_hop_by_hop_fields_and_expect_are_not_forwarded(nursery: trio.Nursery, method: str) -> None:
    """RFC 9110 §7.6.1: the Connection-named fields, Keep-Alive, TE, Upgrade and the
    Proxy-* fields are the client connection's own; and Expect: 100-continue was
    answered by the edge (it reads the whole body before forwarding), so it is not
    forwarded either: an origin would wait or answer 100 (or 417) for nothing."""
    url, heads = await _raw_origin(
        nursery,
        lambda head: b"HTTP/1.1 200 OK\r\nCache-Control: no-store\r\nContent-Length: 2\r\n" + CLOSE + b"ok",
    )
    node = build_node(name="e1", memory_bytes=2**20, manifests=False)
    port = await nursery.start(serve_edge, node, make_origin(url))
    body = b"a=1" if method == "POST" else b""
    fields = (
        f"Host: {SITE}\r\nConnection: keep-alive, X-Private, TE, Upgrade\r\nX-Private: secret\r\n"
        "Keep-Alive: timeout=5\r\nTE: trailers\r\nUpgrade: websocket\r\nProxy-Authorization: Basic eDp5\r\n"
        "Proxy-Connection: keep-alive\r\nExpect: 100-continue\r\nX-Kept: yes\r\n"
        f"Content-Length: {len(body)}\r\n"
    )
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        with trio.fail_after(10):
            await stream.send_all(f"{method} /h HTTP/1.1\r\n{fields}\r\n".encode())
            got = b""
            if method == "POST":  # the edge asks for the body itself
                while b"\r\n\r\n" not in got:
                    got += await stream.receive_some(65536)
                assert got.startswith(b"HTTP/1.1 100 Continue\r\n")
                got = got.partition(b"\r\n\r\n")[2]
                await stream.send_all(body)
            while not got.endswith(b"\r\n\r\nok"):
                data = await stream.receive_some(65536)
                assert data, got
                got += data
    assert got.startswith(b"HTTP/1.1 200 ")
    (head,) = heads
    names = {line.split(b":")[0].strip().lower() for line in head.split(b"\r\n\r\n")[0].split(b"\r\n")[1:]}
    dropped = {b"connection", b"x-private", b"keep-alive", b"te", b"upgrade", b"proxy-authorization"}
    dropped |= {b"proxy-connection", b"expect"}
    assert not names & dropped, names & dropped
    assert {b"host", b"x-kept", b"via"} <= names
