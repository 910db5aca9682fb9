"""The ``edgesim.testing`` plugin as a user testing their own edge configuration meets
it: their own topology, rule files and origin, and the mistakes they make on the way
(an origin URL that is wrong or not running, broken rule lines, a forgotten
``async with``), each answered with one clear error."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest
import trio
import trio.testing

from edgesim._client import OriginTimeout
from edgesim.http import Request, Response
from edgesim.testing import NetworkError, NetworkFactory, RuleFileWarning

# A user's topology: one region, their site with their own rule files.
MINE = """
name = "mine"

[[regions]]
name = "lab"

[regions.edge]
nodes = 2
memory_cache = "8MB"

[[sites]]
name = "www.mine.test"
rules = ["_redirects", "netlify.toml"]

[sites.catalog]
objects = 20
types = { html = 1.0 }
"""


def _project(tmp_path: Path) -> Path:
    (tmp_path / "_redirects").write_text("/old /new 301\n/blog/:slug /posts/:slug 301\n")
    (tmp_path / "netlify.toml").write_text('[[redirects]]\nfrom = "/legacy/*"\nto = "/modern/:splat"\n')
    topo = tmp_path / "mine.toml"
    topo.write_text(MINE)
    return topo


async def _static(req: Request) -> Response:
    return Response(200, [("cache-control", "public, max-age=60")], f"mine {req.path}".encode())


async def test_the_result_of_edge_network_says_to_use_async_with(edge_network: NetworkFactory) -> None:
    cm = edge_network("demo", mode="trio")
    with pytest.raises(AttributeError, match=r"^get: .*`async with edge_network\(\.\.\.\) as net:`"):
        cm.get  # type: ignore[attr-defined]  # noqa: B018 - the attribute a test forgetting `async with` reaches for
    with pytest.raises(AttributeError, match="async with"):
        cm.metrics  # type: ignore[attr-defined]  # noqa: B018
    with pytest.raises(AttributeError, match=r"has no attribute 'nonsense'$"):
        cm.nonsense  # type: ignore[attr-defined]  # noqa: B018
    with pytest.raises(TypeError, match="return an async context manager"):
        await cm  # type: ignore[misc]
    with pytest.raises(TypeError, match=r"\(async with, not with\)"), cm:  # type: ignore[attr-defined]
        pass  # pragma: no cover


@pytest.mark.parametrize(
    ("origin", "expected"),
    [
        ("127.0.0.1:8080", "origin: expected http://HOST[:PORT] (no path or query), got '127.0.0.1:8080'"),
        ("https://origin.test", "origin: 'https://origin.test': the edges speak plain HTTP/1.1"),
        ("http://127.0.0.1:8080/app", "origin: expected http://HOST[:PORT] (no path or query)"),
        (8080, "origin: expected None (edgesim's origin), an http://HOST:PORT URL or an async"),
    ],
)
async def test_a_bad_origin_is_refused_before_anything_starts(
    edge_network: NetworkFactory, tmp_path: Path, origin: object, expected: str
) -> None:
    with pytest.raises(NetworkError, match=re.escape(expected)):
        async with edge_network(_project(tmp_path), mode="live", origin=origin):
            pass  # pragma: no cover


async def test_an_origin_url_that_refuses_connections_fails_the_start(
    edge_network: NetworkFactory, tmp_path: Path
) -> None:
    with socket.socket() as s:  # a port nothing listens on once it is closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    for mode in ("live", "trio"):  # trio mode on the real clock may use a URL
        with (
            trio.fail_after(30),
            pytest.raises(NetworkError, match=re.escape(f"origin {url}: cannot connect")),
        ):
            async with edge_network(_project(tmp_path), mode=mode, origin=url):
                pass  # pragma: no cover


async def test_trio_mode_refuses_an_origin_url_under_the_autojump_clock(
    edge_network: NetworkFactory, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    # real sockets under the autojump clock: the edges' 120 s read timeout fired at once
    with pytest.raises(NetworkError, match="reached over real sockets: under autojump_clock"):
        async with edge_network(_project(tmp_path), mode="trio", origin="http://127.0.0.1:9"):
            pass  # pragma: no cover


async def test_an_origin_url_in_trio_mode_on_the_real_clock(
    edge_network: NetworkFactory, tmp_path: Path
) -> None:
    from edgesim._server import HttpServer

    async with trio.open_nursery() as nursery:
        port = await nursery.start(HttpServer(_static).serve_tcp, "127.0.0.1", 0)
        with trio.fail_after(30):
            async with edge_network(
                _project(tmp_path), mode="trio", origin=f"http://127.0.0.1:{port}/"
            ) as net:
                r = await net.get("lab", "/page", node=0)
                assert (r.status, r.body, r.header("x-cache")) == (200, b"mine /page", "MISS")
        nursery.cancel_scope.cancel()


async def test_a_users_origin_keeps_the_topologys_rules_and_rules_takes_both_files(
    edge_network: NetworkFactory, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    topo = _project(tmp_path)
    async with edge_network(topo, mode="trio", origin=_static) as net:
        # no manifest announces the topology's rules: the nodes take them from it
        r = await net.get("lab", "/old")
        assert (r.status, r.header("location")) == (301, "/new")
        r = await net.get("lab", "/legacy/a/b")
        assert (r.status, r.header("location")) == (301, "/modern/a/b")
        assert (await net.get("lab", "/page")).body == b"mine /page"
    other = tmp_path / "other"
    other.mkdir()
    (other / "_redirects").write_text("/old /newer 302\n")
    (other / "netlify.toml").write_text('[[redirects]]\nfrom = "/t"\nto = "/toml"\nstatus = 307\n')
    both = [other / "netlify.toml", str(other / "_redirects")]  # any order; _redirects first
    async with edge_network(topo, mode="trio", origin=_static, rules={"WWW.mine.test": both}) as net:
        r = await net.get("lab", "/old")  # rules= wins over the topology's
        assert (r.status, r.header("location")) == (302, "/newer")
        r = await net.get("lab", "/t")
        assert (r.status, r.header("location")) == (307, "/toml")
        assert (await net.get("lab", "/legacy/x")).status == 200  # the topology's file is replaced


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        ({"a.test": []}, "rules['a.test']: expected a rule file, or a list of a _redirects file and"),
        ({"a.test": ["x/_redirects", "y/_redirects"]}, "(at most one of each)"),
        ({"a.test": 3}, "rules['a.test']: expected a rule file"),
        (["_redirects"], "rules: expected {host: rule file(s)}"),
    ],
)
async def test_rules_of_the_wrong_shape_are_refused(
    edge_network: NetworkFactory, tmp_path: Path, rules: object, expected: str
) -> None:
    with pytest.raises(NetworkError, match=re.escape(expected)):
        async with edge_network(_project(tmp_path), mode="trio", origin=_static, rules=rules):
            pass  # pragma: no cover


async def test_broken_rule_lines_are_warnings_at_their_line(
    edge_network: NetworkFactory,
    tmp_path: Path,
    autojump_clock: trio.testing.MockClock,
    recwarn: pytest.WarningsRecorder,
) -> None:
    topo = _project(tmp_path)
    (tmp_path / "_redirects").write_text("/old /new 301\n/broken\n")  # the topology's own file
    mine = tmp_path / "mine_redirects"
    mine.write_text("/a /b 301\n/x /y 999\n")
    async with edge_network(topo, mode="trio", rules={"app.test": mine}) as net:
        assert (await net.get("lab", "https://app.test/a")).status == 301  # the good line works
        assert (await net.get("lab", "/old")).status == 301
    caught = [w for w in recwarn if issubclass(w.category, RuleFileWarning)]
    assert net.rule_problems == [
        f"{mine}:2:7: error: status 999 is outside 200-299, 301-303, 307, 308, 400-599 [BAD_STATUS]",
        f'{tmp_path / "_redirects"}:2:1: error: "/broken" has no target [MISSING_TO]',
    ]
    assert [str(w.message) for w in caught] == net.rule_problems
    assert [(Path(w.filename), w.lineno) for w in caught] == [(mine, 2), (tmp_path / "_redirects", 2)]


async def test_rule_files_without_one_valid_rule_fail_the_start(
    edge_network: NetworkFactory, tmp_path: Path
) -> None:
    topo = _project(tmp_path)
    bad = tmp_path / "broken.toml"
    bad.write_text("[[redirects]]\nfrom = \n")  # not TOML: Netlify would skip the whole file
    with pytest.raises(
        NetworkError, match=r"rules for app\.test: no valid rule in .*broken\.toml.*invalid TOML"
    ):
        async with edge_network(topo, mode="trio", rules={"app.test": bad}):
            pass  # pragma: no cover


async def test_an_origin_that_never_answers_gives_the_edges_504(
    edge_network: NetworkFactory, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async def parked(req: Request) -> Response:
        await trio.sleep_forever()
        raise AssertionError  # pragma: no cover

    async with edge_network(_project(tmp_path), mode="trio", origin=parked) as net:
        start = trio.current_time()
        try:
            r = await net.get("lab", "/slow")
        except OriginTimeout:  # the test's own client gave up first
            pytest.fail("the test's client timed out before the edge answered")
        assert (r.status, r.header("x-cache")) == (504, "ERROR")
        assert trio.current_time() - start == pytest.approx(120.0)
        with pytest.raises(
            NetworkError, match=r"this network uses an origin handler: .*net\.purge\('www.mine.test'\)"
        ):
            await net.deploy("www.mine.test")
