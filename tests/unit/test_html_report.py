"""What the HTML pages show a reader: the charts' structure (SVG parsed as XML), the
event markers and their table, the run's identity, and charts without data."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from itertools import pairwise
from pathlib import Path

from helpers import run_cli, topo

from edgesim import __version__
from edgesim._svg import MT, hbar_chart, line_chart, nice_ticks
from edgesim.engine import simulate
from edgesim.report import render_html
from edgesim.topology import Deploy, Faults, NodeCrash, OriginOutage
from edgesim.traces import Trace, write_trace

NS = "{http://www.w3.org/2000/svg}"


def _svgs(page: str) -> list[ET.Element]:
    return [ET.fromstring(s) for s in re.findall(r"<svg\b.*?</svg>", page, re.S)]


def _texts(svg: ET.Element) -> list[ET.Element]:
    return list(svg.iter(f"{NS}text"))


def _title(svg: ET.Element) -> str:
    first = svg.find(f"{NS}title")
    assert first is not None and first.text
    assert svg.get("role") == "img" and svg.get("aria-label") == first.text
    return first.text


def test_nice_ticks_are_round_and_cover_the_range() -> None:
    for lo, hi in ((0.0, 193.0), (0.0, 0.0057), (0.0, 3585.0), (0.0, 1.0), (0.0, 7.3e6), (3.0, 27.0)):
        ticks = nice_ticks(lo, hi)
        assert ticks[0] <= lo and ticks[-1] >= hi and 3 <= len(ticks) <= 9
        steps = {round(b - a, 12) for a, b in pairwise(ticks)}
        assert len(steps) == 1
        step = steps.pop()
        mantissa = step / 10 ** math.floor(math.log10(step))
        assert any(math.isclose(mantissa, m) for m in (1, 2, 2.5, 5))


def test_a_single_interval_is_drawn_as_a_dot_and_a_gap_breaks_the_line() -> None:
    one = ET.fromstring(line_chart("one", [("a", [30.0], [5.0])], x_range=(0.0, 60.0)))
    assert len(list(one.iter(f"{NS}circle"))) == 1
    xs = [float(x) for x in range(50)]
    ys = [1.0] * 20 + [math.nan] * 5 + [2.0] * 25
    gap = ET.fromstring(line_chart("gap", [("a", xs, ys)]))
    lines = list(gap.iter(f"{NS}polyline"))
    assert [len(p.get("points", "").split()) for p in lines] == [20, 25]


def test_a_chart_without_data_says_why_and_draws_no_scale() -> None:
    svg = ET.fromstring(line_chart("empty", [("p50", [0.0, 1.0], [math.nan, math.nan])], empty="not here"))
    assert "not here" in [t.text for t in _texts(svg)]
    assert not [t for t in _texts(svg) if t.get("text-anchor") == "end"]  # no y tick labels
    assert not list(svg.iter(f"{NS}polyline"))
    bars = ET.fromstring(hbar_chart("util", [("n0", None, 0), ("n1", None, 0)], missing="no figure"))
    assert [t.text for t in _texts(bars)].count("no figure") == 1 and not list(bars.iter(f"{NS}rect"))


def test_marker_tags_and_legend_stay_above_the_plot_and_do_not_overlap() -> None:
    at = (10, 11, 12, 13, 40, 40)
    markers = [(float(x), str(i), f"event {i}", i % 2 == 0) for i, x in enumerate(at, 1)]
    svg = ET.fromstring(line_chart("m", [("a", [0.0, 100.0], [1.0, 2.0])], markers=markers))
    tags = [t for t in _texts(svg) if t.get("text-anchor") == "middle" and float(t.get("y", 0)) < MT]
    assert sorted(",".join(t.text or "" for t in tags).split(",")) == sorted(m[1] for m in markers)
    for row in {t.get("y") for t in tags}:
        spans = sorted(
            (float(t.get("x", 0)) - 3.25 * len(t.text or ""), float(t.get("x", 0)) + 3.25 * len(t.text or ""))
            for t in tags
            if t.get("y") == row
        )
        assert all(a[1] < b[0] for a, b in pairwise(spans))
    lines = [ln for ln in svg.iter(f"{NS}line") if ln.find(f"{NS}title") is not None]
    assert len(lines) == len(markers)  # each dashed line names its event in a tooltip
    assert {ln.get("stroke") for ln in lines} == {"#b2182b", "#555"}


def test_run_page_numbers_events_marks_them_and_names_the_run() -> None:
    faults = Faults(crashes=(NodeCrash("r0", 0, at=4.0, down_for=2.0),), outages=(OriginOutage(9.0, 1.0),))
    deploys = (Deploy("shop.test", 7.0),)
    t = topo(rps=80.0, duration=12.0, warmup=2.0, objects=200, faults=faults, deploys=deploys)
    report = simulate(t).to_dict(deterministic=True)
    report["meta"].update(window=[0.0, 12.0], rate_scale=0.25)
    page = render_html(report, "name = 'x'\n")
    kinds = [e["kind"] for e in report["events"]]
    assert {"node_crash", "node_restart", "deploy", "origin_outage"} <= set(kinds)
    rows = re.findall(r"<tr><td>(\d+)</td><td>[\d,]+</td><td>[^<]*</td><td class=l>([a-z_]+)</td>", page)
    assert rows == [(str(i), k) for i, k in enumerate(kinds, 1)]
    svgs = _svgs(page)
    titles = [_title(s) for s in svgs]
    assert len(titles) == 4 and len(set(titles)) == 4
    for chart in svgs[:2]:  # latency and origin load: one dashed line per event
        dashed = [ln for ln in chart.iter(f"{NS}line") if ln.get("stroke-dasharray") == "4 3"]
        assert len(dashed) == len(kinds)
        shaded = [r.find(f"{NS}title") for r in chart.iter(f"{NS}rect") if r.find(f"{NS}title") is not None]
        assert any(s is not None and s.text == "warm-up" for s in shaded)
        assert any(s is not None and "origin_outage" in (s.text or "") for s in shaded)
    util = svgs[3]
    bars = [r for r in util.iter(f"{NS}rect") if r.find(f"{NS}title") is not None]
    assert len(bars) == len(report["nodes"])
    head = re.search(r"<h1>.*?</p>", page, re.S)
    assert head is not None
    seed = report["meta"]["seed"]
    for needed in (f"seed {seed}", f"edgesim {__version__}", "arrival rates scaled by 0.25"):
        assert needed in head.group(0)
    assert "name = &#x27;x&#x27;" in page
    assert not re.findall(r"https?://(?!www\.w3\.org/2000/svg\")", page)  # nothing to download


def test_sampled_page_says_latency_and_utilisation_are_not_available() -> None:
    report = simulate(topo(rps=60.0, duration=6.0, objects=300), sample_rate=0.5).to_dict(deterministic=True)
    assert report["meta"].get("sampled")
    assert all(g.get("utilisation") is None for g in report["nodes"].values())
    svgs = _svgs(render_html(report, ""))
    words = [t.text for s in svgs for t in _texts(s)]
    assert "latency not available in a sampled run" in words
    assert "utilisation not available in a sampled run" in words
    assert not list(svgs[0].iter(f"{NS}polyline"))


def test_many_nodes_get_one_readable_row_each() -> None:
    rows = [(f"eu-west-{i}", i / 400, 0) for i in range(40)] + [("us-east-0", 0.05, 1)]
    svg = ET.fromstring(hbar_chart("util", rows, groups=["eu-west", "us-east"]))
    labels = [t for t in _texts(svg) if t.get("text-anchor") == "end"]
    assert [t.find(f"{NS}title").text for t in labels] == [r[0] for r in rows]  # type: ignore[union-attr]
    ys = [float(t.get("y", 0)) for t in labels]
    assert min(b - a for a, b in pairwise(ys)) >= 14  # one line of 11 px text each
    assert float(svg.get("height", 0)) >= ys[-1]


def test_mrc_page_names_seed_version_and_its_topology(tmp_path: Path) -> None:
    from array import array

    path = tmp_path / "t.csv"
    write_trace(path, Trace(array("d", range(6)), array("Q", [0, 1, 0, 2, 0, 1]), array("q", [5] * 6)), "csv")
    html = tmp_path / "c.html"
    code, _, err = run_cli("mrc", str(path), "--sizes", "10B,1KB", "--seed", "4", "--html", str(html))
    assert code == 0, err
    page = html.read_text()
    assert f"seed 4 &middot; edgesim {__version__}" in page
    (svg,) = _svgs(page)
    _title(svg)
    labels = {t.text for t in _texts(svg)}
    assert {"10B", "1KB"} <= labels  # the x axis is labelled with the table's sizes
    topo_html = tmp_path / "d.html"
    code, _, err = run_cli("mrc", "demo", "--requests", "2000", "--html", str(topo_html))
    assert code == 0, err
    assert "<h2>Topology</h2><pre># demo: the default topology" in topo_html.read_text()
