"""A topology's [shadow] table in the edgesim.testing networks: Trio-virtual (rules and
origin candidates) and live (a second origin process)."""

from __future__ import annotations

from pathlib import Path

import trio
import trio.testing

from edgesim.testing import Network, NetworkFactory, build_origin_core

TOPOLOGY = """
name = "shadowed"
seed = 3

[[regions]]
name = "lab"

[regions.edge]
nodes = 1
memory_cache = "8MB"

[[sites]]
name = "tiny.test"
rules = "_redirects"

[sites.catalog]
objects = 20
types = {{ html = 0.5, css = 0.5 }}

[sites.cache]
html = "public, max-age=600"
default = "public, max-age=600"

[shadow]
{shadow}
"""


def _write(tmp_path: Path, shadow: str) -> Path:
    (tmp_path / "_redirects").write_text("/old /page-1.html 301\n/gone /page-2.html 302\n")
    (tmp_path / "_redirects.v2").write_text("/old /page-3.html 301\n/gone /page-2.html 302\n")
    path = tmp_path / "t.toml"
    path.write_text(TOPOLOGY.format(shadow=shadow))
    return path


async def test_trio_network_with_v2_rules(
    edge_network: NetworkFactory, autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    path = _write(
        tmp_path, 'candidate = "rules"\ntimeout = "5s"\n[shadow.rules]\n"tiny.test" = "_redirects.v2"'
    )
    async with edge_network(path, mode="trio") as net:
        old = await net.get("lab", "/old")
        assert (old.status, old.header("location")) == (301, "/page-1.html")
        assert old.header("x-edgesim-answered-by") == "primary"
        await net.get("lab", "/gone")
        shadow = net.metrics()["nodes"]["lab-0"]["shadow"]
        assert (shadow["compared"], shadow["mismatches"], shadow["agreed"]) == (2, 1, 1)


async def _origin_candidate(net: Network) -> None:
    catalog = build_origin_core(net.topology, now=0.0, bodies=False).sites["tiny.test"].deploy.catalog
    urls = [catalog.path(i) for i in range(20)]
    got = [await net.get("lab", u) for u in urls]
    assert all(r.status == 200 for r in got)
    shadow = net.metrics()["nodes"]["lab-0"]["shadow"]
    assert shadow["compared"] == len(urls)
    # HTML differs (no-store at the candidate): the primary answers; the CSS agrees and
    # the candidate answers it
    by = {u: r.header("x-edgesim-answered-by") for u, r in zip(urls, got, strict=True)}
    assert {by[u] for u in urls if u.endswith(".html")} == {"primary"}
    assert {by[u] for u in urls if u.endswith(".css")} == {"candidate"}
    html = sum(1 for u in urls if u.endswith(".html"))
    assert shadow["mismatches"] == shadow["fallbacks"] == html
    assert shadow["agreed"] == shadow["answered_candidate"] == len(urls) - html


ORIGIN = (
    'candidate = "origin"\nrollout = 1.0\ntimeout = "5s"\n'
    '[shadow.origin]\n"tiny.test" = { html = "no-store" }'
)


async def test_trio_network_with_a_candidate_origin(
    edge_network: NetworkFactory, autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with edge_network(_write(tmp_path, ORIGIN), mode="trio") as net:
        await _origin_candidate(net)


async def test_live_network_with_a_candidate_origin_process(
    edge_network: NetworkFactory, tmp_path: Path
) -> None:
    async with edge_network(_write(tmp_path, ORIGIN), mode="live") as net:
        await _origin_candidate(net)
