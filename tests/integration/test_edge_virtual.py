"""The edge's Trio shell on in-memory streams under Trio's mock clock ("Trio virtual").

HTTP bytes go through the real server shell and the real pool; the origin is the origin
core in-process; time is virtual (``autojump_clock``), so TTLs, timeouts and collapsing
are tested without real sleeps.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
import trio.testing

from edgesim._client import OriginConnectError, OriginPool
from edgesim._server import HttpServer
from edgesim.http import Request, Response
from edgesim.serve import EdgeService, EmbeddedOrigin, build_node

SITE = "v.test"
EPOCH = time.time()  # virtual seconds are added to this: Date arithmetic needs Unix time


def clock() -> float:
    return EPOCH + trio.current_time()


class ControlledOrigin:
    """The origin core in-process, with a switch to fail and a modelled delay."""

    def __init__(self, sites: Path) -> None:
        self.inner = EmbeddedOrigin(sites, clock=clock)
        self.down = False
        self.delay = 0.0
        self.requests: list[Request] = []

    async def request(self, req: Request, *, on_interim: object = None) -> Response:
        self.requests.append(req)
        if self.delay:
            await trio.sleep(self.delay)
        if self.down:
            raise OriginConnectError("origin switched off")
        return await self.inner.request(req)

    async def aclose(self) -> None:
        await self.inner.aclose()

    def content(self) -> list[str]:
        return [r.target for r in self.requests if not r.target.startswith("/.edgesim/")]


@pytest.fixture
def sites(tmp_path: Path) -> Path:
    site = tmp_path / "sites" / SITE
    site.mkdir(parents=True)
    (site / "sie.txt").write_bytes(b"sie body")
    (site / "swr.txt").write_bytes(b"swr body")
    (site / "plain.txt").write_bytes(b"plain body")
    (site / "_edgesim.toml").write_text(
        '[cache.paths]\n"/sie.txt" = "max-age=10, stale-if-error=60"\n'
        '"/swr.txt" = "max-age=10, stale-while-revalidate=60"\n"/plain.txt" = "max-age=10"\n'
    )
    return tmp_path / "sites"


async def _virtual_edge(
    nursery: trio.Nursery, origin: ControlledOrigin
) -> tuple[Callable[..., object], object]:
    node = build_node(name="v1", memory_bytes=2**20)
    service = EdgeService(node, origin, clock=clock)
    await nursery.start(service.run)
    server = HttpServer(service.handle)

    async def open_stream(host: str, port: int) -> trio.abc.Stream:
        client_side, server_side = trio.testing.memory_stream_pair()
        nursery.start_soon(server.serve_stream, server_side)
        return client_side

    pool = OriginPool("http://edge.invalid:80", open_stream=open_stream, read_timeout=120)

    async def get(target: str, method: str = "GET") -> Response:
        return await pool.request(Request(method, target, [("host", SITE)]))

    return get, node


async def test_ttl_follows_virtual_time(sites: Path, autojump_clock: trio.testing.MockClock) -> None:
    origin = ControlledOrigin(sites)
    async with trio.open_nursery() as nursery:
        get, _ = await _virtual_edge(nursery, origin)
        assert (await get("/plain.txt")).header("x-cache") == "MISS"
        await trio.sleep(9)
        r = await get("/plain.txt")
        assert (r.header("x-cache"), r.header("age")) == ("HIT", "9")
        await trio.sleep(2)
        assert (await get("/plain.txt")).header("x-cache") == "REVALIDATED"
        assert origin.content().count("/plain.txt") == 2
        nursery.cancel_scope.cancel()


async def test_stale_if_error_window(sites: Path, autojump_clock: trio.testing.MockClock) -> None:
    origin = ControlledOrigin(sites)
    async with trio.open_nursery() as nursery:
        get, _ = await _virtual_edge(nursery, origin)
        await get("/sie.txt")
        await get("/plain.txt")
        origin.down = True
        await trio.sleep(30)
        r = await get("/sie.txt")
        assert (r.status, r.body, r.header("x-cache")) == (200, b"sie body", "STALE")
        gone = await get("/plain.txt")  # no stale-if-error: the error shows
        assert (gone.status, gone.header("x-cache")) == (502, "ERROR")
        await trio.sleep(45)  # stale for 65 s > the 60 s window (and < the 60 s idle timeout)
        assert (await get("/sie.txt")).status == 502
        nursery.cancel_scope.cancel()


async def test_stale_while_revalidate_in_the_background(
    sites: Path, autojump_clock: trio.testing.MockClock
) -> None:
    origin = ControlledOrigin(sites)
    async with trio.open_nursery() as nursery:
        get, _ = await _virtual_edge(nursery, origin)
        await get("/swr.txt")
        await trio.sleep(20)
        origin.delay = 5.0
        t = trio.current_time()
        r = await get("/swr.txt")
        assert r.header("x-cache") == "STALE" and trio.current_time() - t < 1  # not waiting on the origin
        await trio.sleep(6)  # the background revalidation (5 s) finishes; age is then 6 < 10
        r2 = await get("/swr.txt")
        assert r2.header("x-cache") == "HIT"
        assert origin.content().count("/swr.txt") == 2
        nursery.cancel_scope.cancel()


async def test_collapsing_under_the_mock_clock(sites: Path, autojump_clock: trio.testing.MockClock) -> None:
    origin = ControlledOrigin(sites)
    async with trio.open_nursery() as nursery:
        get, node = await _virtual_edge(nursery, origin)
        await get("/sie.txt")  # manifest
        origin.delay = 2.0
        results: list[Response] = []

        async def one() -> None:
            results.append(await get("/plain.txt"))

        async with trio.open_nursery() as burst:
            for _ in range(25):
                burst.start_soon(one)
        assert len(results) == 25 and {r.body for r in results} == {b"plain body"}
        assert origin.content().count("/plain.txt") == 1
        assert node.stats.collapsed == 24  # type: ignore[attr-defined]
        nursery.cancel_scope.cancel()


async def test_origin_timeout_is_504(sites: Path, autojump_clock: trio.testing.MockClock) -> None:
    from edgesim.serve import EdgeService

    hung = ControlledOrigin(sites)

    async def never(req: Request) -> Response:
        await trio.sleep_forever()
        raise AssertionError

    node = build_node(name="t", memory_bytes=2**20, manifests=False)
    origin_server = HttpServer(never)

    async def open_stream(host: str, port: int) -> trio.abc.Stream:
        a, b = trio.testing.memory_stream_pair()
        nursery.start_soon(origin_server.serve_stream, b)
        return a

    async with trio.open_nursery() as nursery:
        pool = OriginPool("http://origin.invalid:80", open_stream=open_stream, read_timeout=30)
        service = EdgeService(node, pool, clock=clock)
        await nursery.start(service.run)
        t = trio.current_time()
        r = await service.handle(Request("GET", "/x", [("host", SITE)]))
        assert (r.status, r.header("x-cache")) == (504, "ERROR")
        assert 29 <= trio.current_time() - t <= 31
        nursery.cancel_scope.cancel()
    del hung
