"""The ``edgesim.testing`` plugin through its ``edge_network`` fixture: the bundled demo
topology in Trio-virtual mode, a small topology live (origin subprocess, real sockets),
a user's own origin with user rules, and virtual mode."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import trio
import trio.testing

from edgesim._server import HttpServer
from edgesim.http import Request, Response
from edgesim.testing import NetworkError, NetworkFactory

TINY = """
name = "tiny"
seed = 3

[[regions]]
name = "lab"

[regions.edge]
nodes = 2
memory_cache = "8MB"
balancer = "consistent-hash"

[[sites]]
name = "tiny.test"
rules = "_redirects"

[sites.catalog]
objects = 50
types = { html = 1.0 }

[sites.cache]
html = "public, max-age=0, s-maxage=600"
"""


def _x(resp: Response) -> str | None:
    return resp.header("x-cache")


async def test_trio_demo_miss_hit_redirect_purge_deploy(
    edge_network: NetworkFactory, autojump_clock: trio.testing.MockClock
) -> None:
    async with edge_network("demo", mode="trio") as net:
        assert net.nodes("eu-west") == ["eu-west-0", "eu-west-1", "eu-west-2"]
        assert len(net.nodes()) == 6
        r1 = await net.get("eu-west", "/index.html")
        assert (r1.status, _x(r1)) == (200, "MISS") and r1.body
        deploy1 = r1.header("x-edgesim-deploy")
        r2 = await net.get("eu-west", "/index.html")  # consistent-hash: the same node
        assert (r2.status, _x(r2), r2.body) == (200, "HIT", r1.body)
        # A rule of the demo's shop (topologies/sites/shop/_redirects), from the manifest.
        r3 = await net.get("eu-west", "/product/42")
        assert (r3.status, r3.header("location"), _x(r3)) == (301, "/page-42.html", "REDIRECT")
        # An absolute URL picks the site.
        news = await net.get("us-east", "https://news.example/rss", node="us-east-1")
        assert (news.status, news.header("location")) == (301, "/feed")

        m = net.metrics()
        assert m["mode"] == "trio"
        assert m["regions"]["eu-west"]["requests"] == 3
        assert (m["totals"]["requests"], m["totals"]["hits"], m["totals"]["misses"]) == (4, 1, 1)
        assert m["totals"]["redirects"] == 2
        # one fill, plus a manifest per node that saw its site first
        assert m["totals"]["origin_requests"] == m["origin"]["served"] >= 3
        assert m["nodes"]["us-east-1"]["requests"] == 1

        # s-maxage=120 for the shop's HTML: past it the edge revalidates (virtual time).
        await trio.sleep(121)
        assert _x(await net.get("eu-west", "/index.html")) == "REVALIDATED"

        assert await net.purge("shop.example", "/index.html") == 1  # the node that had it
        assert await net.purge("shop.example", "/index.html") == 0
        assert _x(await net.get("eu-west", "/index.html")) == "MISS"

        deploy2 = await net.deploy("shop.example")
        assert deploy2 != deploy1
        r4 = await net.get("eu-west", "/index.html")
        assert (_x(r4), r4.header("x-edgesim-deploy")) == ("MISS", deploy2)
        assert net.metrics()["totals"]["purges"] >= 7  # one URL and one deploy purge per node


async def test_trio_user_handler_origin_with_user_rules(
    edge_network: NetworkFactory, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    rules = tmp_path / "_redirects"
    rules.write_text("/old /new 301\n/spa/* /app.html 200\n")
    seen: list[str] = []

    async def origin(req: Request) -> Response:
        seen.append(req.target)
        body = f"page {req.host} {req.path}".encode()
        return Response(200, [("content-type", "text/plain"), ("cache-control", "max-age=60")], body)

    async with edge_network("demo", mode="trio", origin=origin, rules={"app.test": rules}) as net:
        assert net.origin_url == "memory"
        r = await net.get("us-east", "https://app.test/old")
        assert (r.status, r.header("location"), _x(r)) == (301, "/new", "REDIRECT")
        r1 = await net.get("us-east", "https://app.test/spa/x", node=0)
        r2 = await net.get("us-east", "https://app.test/spa/y", node=0)
        page = b"page app.test /app.html"
        assert (r1.body, _x(r1), r2.body, _x(r2)) == (page, "MISS", page, "HIT")
        assert seen == ["/app.html"]  # no manifest: not edgesim's origin
        # a URL in the query is not an authority: the request stays on app.test
        r3 = await net.get("us-east", "https://app.test/login?next=https://evil.test/x")
        assert r3.body == b"page app.test /login"
        with pytest.raises(NetworkError, match="needs edgesim's origin"):
            await net.deploy("app.test")


async def test_live_tiny_topology_over_real_sockets(edge_network: NetworkFactory, tmp_path: Path) -> None:
    (tmp_path / "_redirects").write_text("/old /page-1.html 301\n")
    topo = tmp_path / "tiny.toml"
    topo.write_text(TINY)
    with trio.fail_after(60):
        async with edge_network(topo, mode="live", balancer="round-robin") as net:
            assert net.origin_url is not None and net.origin_url.startswith("http://127.0.0.1:")
            assert all(isinstance(net.port(n), int) for n in net.nodes("lab"))
            r1 = await net.get("lab", "/page-1.html", node="lab-0")
            r2 = await net.get("lab", "/page-1.html", node="lab-0")
            assert (r1.status, _x(r1), _x(r2), r2.body) == (200, "MISS", "HIT", r1.body)
            assert r1.header("via") == "1.1 lab-0"
            # round-robin: the next two requests go to lab-1 then lab-0 (or the reverse)
            names = {(await net.get("lab", "/page-2.html")).header("via") for _ in range(2)}
            assert names == {"1.1 lab-0", "1.1 lab-1"}
            r3 = await net.get("lab", "/old", headers={"X-Test": "1"})
            assert (r3.status, r3.header("location")) == (301, "/page-1.html")
            old = r1.header("x-edgesim-deploy")
            new = await net.deploy("tiny.test")
            r4 = await net.get("lab", "/page-1.html", node=0)
            assert (_x(r4), r4.header("x-edgesim-deploy")) == ("MISS", new) and new != old
            totals = net.metrics()["totals"]
            assert totals["requests"] == 6 + 2 and totals["hits"] == 1  # + the deploy purges
            assert net.metrics()["origin"] is None  # a subprocess: no in-process counters


async def test_live_user_origin_url_and_rules(edge_network: NetworkFactory, tmp_path: Path) -> None:
    rules = tmp_path / "netlify.toml"
    rules.write_text('[[redirects]]\nfrom = "/blog/*"\nto = "https://blog.example/:splat"\nstatus = 302\n')
    hits: list[str] = []

    async def handler(req: Request) -> Response:
        hits.append(req.target)
        return Response(200, [("cache-control", "public, max-age=300")], b"fixed")

    topo = tmp_path / "tiny.toml"
    topo.write_text(TINY)
    (tmp_path / "_redirects").write_text("")
    async with trio.open_nursery() as nursery:
        server = HttpServer(handler)
        port = await nursery.start(server.serve_tcp, "127.0.0.1", 0)
        with trio.fail_after(60):
            async with edge_network(
                topo, mode="live", origin=f"http://127.0.0.1:{port}", rules={"tiny.test": rules}
            ) as net:
                r = await net.get("lab", "/blog/2024/hello")
                assert (r.status, r.header("location")) == (302, "https://blog.example/2024/hello")
                a = await net.get("lab", "/x", node=1)
                b = await net.get("lab", "/x", node=1)
                assert (a.body, _x(a), _x(b)) == (b"fixed", "MISS", "HIT")
                assert hits == ["/x"]
        nursery.cancel_scope.cancel()


async def test_live_refuses_the_autojump_clock(
    edge_network: NetworkFactory, autojump_clock: trio.testing.MockClock
) -> None:
    with pytest.raises(NetworkError, match="autojump_clock"):
        async with edge_network("demo", mode="live"):
            pass  # pragma: no cover


async def test_virtual_mode_returns_a_report(edge_network: NetworkFactory) -> None:
    async with edge_network("demo", mode="virtual", duration=400) as net:
        assert net.report is not None
        m = net.metrics()
        assert m["mode"] == "virtual" and m["totals"]["requests"] > 1000
        assert 0 < m["totals"]["object_hit_ratio"] < 1
        assert json.loads(net.report.to_json())["meta"]["engine"] == "virtual"
        with pytest.raises(NetworkError, match="whole"):
            await net.get("eu-west", "/")


def _origin_children() -> list[int]:
    """This process's child processes running ``python -m origin`` (Linux /proc)."""
    import os

    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == os.getpid() and b"origin" in cmd:
            found.append(int(entry.name))
    return found


async def test_errors_come_out_as_themselves_not_in_exception_groups(
    edge_network: NetworkFactory, autojump_clock: trio.testing.MockClock
) -> None:
    with pytest.raises(NetworkError, match="balancer 'bogus'"):
        async with edge_network("demo", mode="trio", balancer="bogus"):
            pass  # pragma: no cover
    with pytest.raises(ValueError, match="the test's own"):
        async with edge_network("demo", mode="trio"):
            raise ValueError("the test's own")


async def test_a_failed_live_start_stops_the_origin_it_started(edge_network: NetworkFactory) -> None:
    # the origin process starts before the nodes; a start that fails after it (here a
    # bad balancer, found at the first region) left it running, orphaned
    assert _origin_children() == []
    with trio.fail_after(60), pytest.raises(NetworkError, match="balancer 'bogus'"):
        async with edge_network("demo", mode="live", balancer="bogus"):
            pass  # pragma: no cover
    assert _origin_children() == []


async def test_a_live_workdir_can_be_used_again(tmp_path: Path) -> None:
    from edgesim.testing import open_network

    topo = tmp_path / "tiny.toml"
    topo.write_text(TINY)
    (tmp_path / "_redirects").write_text("/old /page-1.html 301\n")
    work = tmp_path / "work"
    for _ in range(2):  # the second start found the first one's sites/ and failed
        with trio.fail_after(60):
            async with open_network(topo, mode="live", workdir=work) as net:
                assert (await net.get("lab", "/old")).status == 301
    assert (work / "sites" / "tiny.test" / "_edgesim.toml").is_file()


async def test_urls_with_other_than_ascii_are_sent_percent_encoded(
    edge_network: NetworkFactory, autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    seen: list[str] = []

    async def handler(req: Request) -> Response:
        seen.append(req.target)
        return Response(200, [("cache-control", "public, max-age=300")], b"ok")

    topo = tmp_path / "tiny.toml"
    topo.write_text(TINY)
    (tmp_path / "_redirects").write_text("")
    async with edge_network(topo, mode="trio", origin=handler) as net:
        assert (await net.get("lab", "/café?q=ü&x=1")).status == 200
        assert (await net.get("lab", "https://tiny.test/naïve")).status == 200
    assert seen == ["/caf%C3%A9?q=%C3%BC&x=1", "/na%C3%AFve"]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"duration": -5}, "duration: expected a number of seconds >= 0, got -5"),
        ({"duration": float("nan")}, "duration: expected a number of seconds >= 0, got nan"),
        ({"duration": "10"}, "duration: expected a number of seconds >= 0, got '10'"),
        ({"duration": 60}, "duration 60: the run would end inside the topology's warm-up (300 s)"),
        ({"seed": "x"}, "seed: expected a whole number >= 0, got 'x'"),
        ({"seed": -1}, "seed: expected a whole number >= 0, got -1"),
        ({"balancer": "random"}, "virtual mode takes no balancer="),
        ({"workdir": "/tmp", "clock": lambda: 0.0}, "virtual mode takes no clock=, workdir="),
    ],
)
async def test_virtual_mode_refuses_options_it_would_ignore(
    edge_network: NetworkFactory, options: dict[str, object], expected: str
) -> None:
    with pytest.raises(NetworkError, match=re.escape(expected)):
        async with edge_network("demo", mode="virtual", **options):
            pass  # pragma: no cover
