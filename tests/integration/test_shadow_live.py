"""Shadowing through a real edge on loopback in front of real origin processes: rule
candidates (v2 rules, the reference matcher) and a second origin, in shadow and rollout
mode, plus candidates that fail, hang or answer garbage."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
import trio
from helpers import OriginProcess

from edgesim._client import OriginPool
from edgesim._shadowlive import attach_shadow, parse_shadow_options
from edgesim.http import Request, Response
from edgesim.serve import build_node, make_origin, serve_edge

SITE = "site.test"
V1 = "/old /about 301\n/docs/* /about 302\n/spa/* /index.html 200\n"
V2 = "/old /about-us 301\n/docs/* /about 302\n/spa/* /index.html 200\n/new /about 301\n"
CONTENT = {"index.html": b"<h1>home</h1>", "about.html": b"about us", "page.txt": b"v1 page"}


def _write_sites(root: Path, cache: str, page: bytes) -> Path:
    site = root / SITE
    site.mkdir(parents=True)
    for name, body in CONTENT.items():
        (site / name).write_bytes(body)
    (site / "page.txt").write_bytes(page)
    (site / "_redirects").write_text(V1)
    (site / "_edgesim.toml").write_text(f'[cache]\ndefault = "public, max-age=600"\nhtml = "{cache}"\n')
    return root


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OriginProcess]:
    p = OriginProcess(_write_sites(tmp_path_factory.mktemp("v1"), "public, max-age=600", b"v1 page"))
    yield p
    p.stop()


@pytest.fixture(scope="module")
def origin_v2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OriginProcess]:
    # the same site, but HTML is not cacheable and page.txt has another body
    p = OriginProcess(_write_sites(tmp_path_factory.mktemp("v2"), "no-store", b"v2 page"))
    yield p
    p.stop()


@pytest.fixture
def v2_rules(tmp_path: Path) -> Path:
    f = tmp_path / "_redirects.v2"
    f.write_text(V2)
    return f


class Client:
    def __init__(self, port: int) -> None:
        self.pool = OriginPool(f"http://127.0.0.1:{port}", read_timeout=20)

    async def get(self, target: str) -> Response:
        with trio.fail_after(30):
            return await self.pool.request(Request("GET", target, [("host", SITE)]))

    async def shadow(self) -> dict:  # type: ignore[type-arg]
        doc = json.loads((await self.get("/.edgesim/edge/shadow")).body or b"{}")
        assert isinstance(doc, dict)
        return doc


async def _edge(nursery: trio.Nursery, origin_url: str, *specs: str, rollout: float | None = None,
                candidate_timeout: float = 5.0) -> Client:  # fmt: skip
    node = build_node(name="e1", memory_bytes=10 * 2**20)
    origin = make_origin(origin_url)
    config = parse_shadow_options(specs, rollout, candidate_timeout if specs else None, None)
    if config is not None:
        origin = attach_shadow(node, origin, config)
    port = await nursery.start(serve_edge, node, origin)
    return Client(port)


def _by(r: Response) -> str | None:
    return r.header("x-edgesim-answered-by")


async def test_v2_rules_in_shadow_mode(origin: OriginProcess, v2_rules: Path) -> None:
    async with trio.open_nursery() as nursery:
        client = await _edge(nursery, origin.url, f"rules:{SITE}={v2_rules}")
        old = await client.get("/old")
        assert (old.status, old.header("location"), _by(old)) == (301, "/about", "primary")
        new = await client.get("/new")
        assert (new.status, _by(new)) == (404, "primary")  # v1 has no /new rule: the file lookup
        docs = await client.get("/docs/x")
        assert docs.status == 302
        doc = await client.shadow()
        assert (doc["mode"], doc["compared"], doc["agreed"], doc["mismatches"]) == ("shadow", 3, 1, 2)
        assert [s["request"]["url"] for s in doc["samples"]] == [f"https://{SITE}/old", f"https://{SITE}/new"]
        assert doc["samples"][0]["candidate"]["target"] == "/about-us"
        assert doc["candidate_us_per_request"] > 0
        stats = json.loads((await client.get("/.edgesim/edge/stats")).body or b"{}")
        assert stats["shadow"]["mismatches"] == 2
        nursery.cancel_scope.cancel()


async def test_reference_rollout_answers_by_candidate_when_both_agree(origin: OriginProcess) -> None:
    async with trio.open_nursery() as nursery:
        client = await _edge(nursery, origin.url, "reference", rollout=0.6)
        labels = [_by(await client.get(f"/docs/p{i}")) for i in range(60)]
        doc = await client.shadow()
        assert labels.count("candidate") == doc["answered_candidate"] == doc["selected"] > 0
        assert labels.count("primary") == 60 - doc["selected"] > 0
        assert doc["mismatches"] == doc["errors"] == doc["fallbacks"] == 0
        nursery.cancel_scope.cancel()


async def test_second_origin_mismatches_fall_back_to_the_primary(
    origin: OriginProcess, origin_v2: OriginProcess
) -> None:
    async with trio.open_nursery() as nursery:
        client = await _edge(
            nursery, origin.url, f"origin:{origin_v2.url}", rollout=1.0, candidate_timeout=5.0
        )
        about = await client.get("/about")  # HTML: v2 says no-store
        assert (about.body, _by(about)) == (b"about us", "primary")
        page = await client.get("/page.txt")  # same decision (status, cache-control): v2 answers
        assert (page.body, _by(page)) == (b"v2 page", "candidate")
        # stored under the primary's deploy id: no phantom deploy, no purge
        again = await client.get("/page.txt")
        assert (again.body, again.header("x-cache")) == (b"v2 page", "HIT")
        doc = await client.shadow()
        assert (doc["compared"], doc["mismatches"], doc["answered_candidate"]) == (2, 1, 1)
        sample = doc["samples"][0]
        assert sample["primary"]["cache"] != sample["candidate"]["cache"] == "no-store"
        stats = json.loads((await client.get("/.edgesim/edge/stats")).body or b"{}")
        assert stats["deploys_seen"] == stats["purges"] == 0
        nursery.cancel_scope.cancel()


async def test_dead_or_hanging_candidate_origins_never_change_answers(origin: OriginProcess) -> None:
    async def never_answers(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, never_answers, 0, host="127.0.0.1"))
        hang_port = listeners[0].socket.getsockname()[1]
        dead = trio.socket.socket()
        await dead.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        dead_port = dead.getsockname()[1]
        plain = await _edge(nursery, origin.url)
        expected = [(r.status, r.body) for r in [await plain.get(p) for p in ("/about", "/page.txt", "/old")]]
        for port, event in ((hang_port, "timeouts"), (dead_port, "errors")):
            client = await _edge(
                nursery, origin.url, f"origin:http://127.0.0.1:{port}", rollout=1.0, candidate_timeout=0.3
            )
            got = [await client.get(p) for p in ("/about", "/page.txt", "/old")]
            assert [(r.status, r.body) for r in got] == expected
            assert [_by(r) for r in got] == ["primary"] * 3
            doc = await client.shadow()
            assert doc[event] == 2 and doc["fallbacks"] == 2, doc  # /old is answered by the rules
        dead.close()
        nursery.cancel_scope.cancel()
