"""The incident, rehearsed: a [shadow] rollout of 60% on edges running as separate
processes (the crash drill), and the pieces that carry the table there."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from edgesim._shadowlive import ShadowOptionError, attach_shadow, parse_shadow_options, shadow_args
from edgesim._supervisor import _get_stats
from edgesim._topoload import parse_topology
from edgesim._units import parse_duration
from edgesim.drill import DrillOptions, run_drill, summary_lines
from edgesim.serve import build_node, make_origin, serve_edge

TOPOLOGY = """
name = "rollout-drill"
seed = 3

[[regions]]
name = "eu"
edge = {{ nodes = 1, memory_cache = "32MB" }}

[[regions]]
name = "us"
edge = {{ nodes = 1, memory_cache = "32MB" }}

[[sites]]
name = "shop.test"
rules = "_redirects"

[sites.catalog]
objects = 40
types = {{ html = 1.0 }}

[traffic]
duration = "3s"
peak_rps = 40

[shadow]
{shadow}
"""


def _topo(tmp_path: Path, shadow: str) -> object:
    (tmp_path / "_redirects").write_text("/old /page-1.html 301\n/spa/* /index.html 200\n")
    (tmp_path / "_redirects.v2").write_text("/old /page-2.html 301\n")
    (tmp_path / "v2.toml").write_text('[[redirects]]\nfrom = "/new"\nto = "/page-3.html"\n')
    text = TOPOLOGY.format(shadow=shadow)
    return parse_topology(text, path=str(tmp_path / "t.toml"))


def test_shadow_args_round_trip_through_the_edge_serve_options(tmp_path: Path) -> None:
    topo = _topo(
        tmp_path,
        'candidate = "rules"\nrollout = 0.6\ntimeout = "200ms"\nsamples = 7\nregions = ["eu"]\n'
        '[shadow.rules]\n"shop.test" = ["_redirects.v2", "v2.toml"]',
    )
    assert shadow_args(topo, "us") == ()  # type: ignore[arg-type]
    args = shadow_args(topo, "eu")  # type: ignore[arg-type]
    specs = tuple(args[i + 1] for i, a in enumerate(args) if a == "--shadow")
    opt = dict(zip(args[::2], args[1::2], strict=True))
    config = parse_shadow_options(specs, float(opt["--rollout"]), 0.2, int(opt["--shadow-samples"]))
    assert config is not None and parse_duration(opt["--shadow-timeout"]) == pytest.approx(0.2)
    assert (config.candidate, config.rollout, config.samples) == ("rules", 0.6, 7)
    v2 = config.rules["shop.test"]
    assert v2.match("/old").location == "/page-2.html" and v2.match("/new").location == "/page-3.html"
    # 5e-05s is no duration: the drill's edges would not start
    tiny = _topo(tmp_path, 'candidate = "reference"\ntimeout = "50us"')
    fast = dict(zip(shadow_args(tiny, "eu")[::2], shadow_args(tiny, "eu")[1::2], strict=False))  # type: ignore[arg-type]
    assert parse_duration(fast["--shadow-timeout"]) == pytest.approx(5e-5)
    ref = _topo(tmp_path, 'candidate = "reference"')
    assert shadow_args(ref, "us")[:2] == ("--shadow", "reference")  # type: ignore[arg-type]
    origin = _topo(tmp_path, 'candidate = "origin"')
    with pytest.raises(ShadowOptionError, match="rule candidates only"):
        shadow_args(origin, "eu")  # type: ignore[arg-type]


async def test_supervisor_stats_carry_the_shadow_counters(tmp_path: Path) -> None:
    (tmp_path / "sites" / "shop.test").mkdir(parents=True)
    (tmp_path / "sites" / "shop.test" / "_redirects").write_text("/old /about 301\n")
    node = build_node(name="e")
    origin = attach_shadow(node, make_origin(f"embedded:{tmp_path / 'sites'}"), parse_shadow_options(
        ("reference",), None, 5.0, None))  # type: ignore[arg-type]  # fmt: skip
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_edge, node, origin)
        from edgesim._client import OriginPool
        from edgesim.http import Request

        pool = OriginPool(f"http://127.0.0.1:{port}")
        with trio.fail_after(20):
            await pool.request(Request("GET", "/old", [("host", "shop.test")]))
            stats = await _get_stats(port)
        await pool.aclose()
        nursery.cancel_scope.cancel()
    assert stats is not None and stats["shadow_compared"] == stats["shadow_agreed"] == 1


@pytest.mark.slow
async def test_drill_with_a_60_percent_rollout(tmp_path: Path) -> None:
    topo = _topo(tmp_path, 'candidate = "reference"\nrollout = 0.6\ntimeout = "1s"')
    report = await run_drill(topo, DrillOptions(rate=40, connections=4, flush_interval=0.5),  # type: ignore[arg-type]
                             workdir=tmp_path / "work")  # fmt: skip
    et = report["edges"]["totals"]
    assert et["shadow_seen"] >= et["shadow_compared"] == et["shadow_selected"] > 0
    assert et["shadow_answered_candidate"] == et["shadow_agreed"] == et["shadow_compared"]
    assert et["shadow_errors"] == et["shadow_timeouts"] == 0
    assert report["clients"]["totals"]["failed"] == 0
    assert any(line.startswith("shadow: compared ") for line in summary_lines(report))
