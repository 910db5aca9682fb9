"""Topology files: parsing, validation (every problem, with key path and line), the
bundled topologies, the docs' examples and ``edgesim validate``."""

from __future__ import annotations

import copy
import json
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, assume, given, note, settings
from hypothesis import strategies as st

from edgesim._topoload import (
    DIURNAL_PROFILES,
    bundled_dir,
    bundled_names,
    load_topology,
    parse_topology,
    resolve_topology_arg,
)
from edgesim._units import parse_duration, parse_rate
from edgesim.cli import cli
from edgesim.errors import EdgesimError, TopologyError, TopologyProblem
from edgesim.topology import Distribution, Latency

REPO = Path(__file__).resolve().parents[2]
TOPOLOGIES = REPO / "topologies"
BUNDLED = [
    "demo",
    "global-5-regions",
    "flash-crowd",
    "deploy-storm",
    "edge-crash",
    "redirect-heavy",
    "crash-drill",
    "capacity",
]

MINIMAL = """\
[[regions]]
name = "eu-west"

[[sites]]
name = "example.com"
"""


def problems(text: str, tmp_path: Path | None = None) -> list[TopologyProblem]:
    """The problems of ``text`` (which must have some)."""
    path = (tmp_path or TOPOLOGIES) / "t.toml"
    with pytest.raises(TopologyError) as info:
        parse_topology(textwrap.dedent(text), path=path)
    return list(info.value.problems)


# --------------------------------------------------------------------------
# Units
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("200ms", 0.2),
        ("1.5s", 1.5),
        ("30m", 1800),
        ("2h", 7200),
        ("1h30m", 5400),
        ("90", 90),
        ("500us", 5e-4),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "-5s", "5 parsecs", "s", "1hh", "1.2.3s"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "bytes_per_s"),
    [
        ("1Gbps", 125e6),
        ("100Mbit/s", 12.5e6),
        ("1Gb/s", 125e6),
        ("100MB/s", 100e6),
        ("100MBps", 100e6),
        ("1GiB/s", 2**30),
        ("125000000", 125e6),
    ],
)
def test_parse_rate(text: str, bytes_per_s: float) -> None:
    assert parse_rate(text) == pytest.approx(bytes_per_s)


@pytest.mark.parametrize("text", ["x", "1GB", "1MiB", "1Kibps", "-1Gbps"])
def test_parse_rate_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="expected a rate"):
        parse_rate(text)


# --------------------------------------------------------------------------
# Good files
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_topology_validates(name: str) -> None:
    topo = load_topology(TOPOLOGIES / f"{name}.toml")
    assert topo.name == name
    assert abs(sum(r.client_share for r in topo.regions) - 1) < 1e-6
    assert abs(sum(s.share for s in topo.sites) - 1) < 1e-6
    assert topo.traffic.duration <= 6 * 3600
    for site in topo.sites:
        assert all(p.is_file() for p in site.rules_files)


def test_outage_mode_defaults_to_stop() -> None:
    text = MINIMAL + '[[faults.origin_outages]]\nat = 0\nduration = "1m"\n'
    text += '[[faults.origin_outages]]\nat = "2m"\nduration = "1m"\nmode = "stall"\n'
    topo = parse_topology(text, path=TOPOLOGIES / "t.toml")
    assert [o.mode for o in topo.faults.outages] == ["stop", "stall"]


def test_bundled_set_is_complete() -> None:
    assert sorted(BUNDLED) == bundled_names()
    assert (TOPOLOGIES / "sites" / "redirect-heavy" / "_redirects").read_text().count("\n") == 10_000


def test_resolve_bundled_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    d = bundled_dir()
    assert d is not None
    assert resolve_topology_arg("demo") == d / "demo.toml"
    assert resolve_topology_arg("demo.toml") == d / "demo.toml"
    assert load_topology(resolve_topology_arg("demo")).name == "demo"
    assert load_topology("demo").name == "demo"  # the API takes the name as the CLI does
    assert load_topology(Path("flash-crowd.toml")).name == "flash-crowd"
    # A file in the current folder wins; paths are never looked up.
    (tmp_path / "demo").write_text(MINIMAL)
    assert resolve_topology_arg("demo") == Path("demo")
    assert [r.name for r in load_topology("demo").regions] == ["eu-west"]
    assert resolve_topology_arg("./nope") == Path("./nope")
    assert resolve_topology_arg("nope") == Path("nope")


def test_minimal_file_gets_defaults() -> None:
    topo = parse_topology(MINIMAL, path="min.toml")
    assert topo.name == "min"
    assert topo.seed == 1
    (region,) = topo.regions
    assert region.client_share == 1.0
    assert region.edge.nodes == 1
    assert region.edge.eviction == "lru"
    assert topo.origin.region == "eu-west"
    assert topo.shield is None
    (site,) = topo.sites
    assert site.share == 1.0
    assert site.catalog is not None and site.catalog.objects == 10_000
    assert topo.traffic.duration == 3600
    assert topo.source_text == MINIMAL


def test_values_and_units() -> None:
    topo = load_topology(TOPOLOGIES / "global-5-regions.toml")
    eu = topo.region("eu-west")
    assert eu.utc_offset == 1
    assert topo.region("ap-south").utc_offset == 5.5
    assert eu.client_latency == Latency(0.012, 0.004)
    assert dict(eu.countries)["GB"] == 0.3
    # From the "large" profile, with the region's own cost.
    assert eu.edge.profile == "large"
    assert eu.edge.workers == 32
    assert eu.edge.memory_cache == 2 * 2**30
    assert eu.edge.egress == pytest.approx(10e9 / 8)
    assert eu.edge.cost_per_hour == 0.42
    assert topo.region("us-east").edge.cost_per_hour == 0.38
    assert eu.edge.service_time == Distribution("lognormal", median=0.0008, sigma=0.5, cap=0.05)
    assert {p.name for p in topo.profiles} == {"standard", "large"}
    assert ("us-east", "eu-west", 0.04) in topo.region_latency
    assert len(topo.region_latency) == 10
    assert topo.shield is not None and topo.shield.region == "us-east"
    docs = next(s for s in topo.sites if s.name == "docs.example")
    assert docs.catalog is not None
    assert docs.catalog.size == Distribution("pareto", alpha=1.5, minimum=4000, cap=5e6)
    assert topo.traffic.diurnal == DIURNAL_PROFILES["web"]


def test_equal_shares_when_none_given() -> None:
    topo = parse_topology(
        MINIMAL + '\n[[regions]]\nname = "us-east"\n\n[[sites]]\nname = "b.example"\n', path="x.toml"
    )
    assert [r.client_share for r in topo.regions] == [0.5, 0.5]
    assert [s.share for s in topo.sites] == [0.5, 0.5]


def test_rule_files_in_spec_order_relative_to_file(tmp_path: Path) -> None:
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "_redirects").write_text("/a /b 301\n")
    (tmp_path / "s" / "netlify.toml").write_text("")
    f = tmp_path / "t.toml"
    f.write_text(MINIMAL + 'rules = ["s/netlify.toml", "s/_redirects"]\nredirect_share = 0.1\n')
    (site,) = load_topology(f).sites
    assert site.rules_files == (tmp_path / "s" / "_redirects", tmp_path / "s" / "netlify.toml")


def test_directory_site_and_trace(tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "_redirects").write_text("/a /b 301\n")
    (tmp_path / "t.csv").write_text("0.0,/a,100\n")
    text = MINIMAL + 'directory = "site"\nredirect_share = 0.2\n\n[traffic]\ntrace = "t.csv"\n'
    f = tmp_path / "t.toml"
    f.write_text(text)
    topo = load_topology(f)
    assert topo.sites[0].directory == tmp_path / "site"
    assert topo.sites[0].catalog is None
    assert topo.traffic.trace == tmp_path / "t.csv"
    assert topo.traffic.trace_format == "csv"


def test_docs_examples_validate() -> None:
    doc = (REPO / "docs" / "topology.md").read_text()
    blocks = re.findall(r"```toml\n(.*?)```", doc, re.S)
    minimal = next(b for b in blocks if b.strip() == MINIMAL.strip())
    full = max(blocks, key=len)
    parse_topology(minimal, path=TOPOLOGIES / "minimal-example.toml")
    topo = parse_topology(full, path=TOPOLOGIES / "full-example.toml")
    assert topo.shield is not None
    assert len(topo.faults.crashes) == len(topo.faults.outages) == len(topo.faults.spikes) == 1
    # Every key of the full example appears in the reference tables (and vice versa
    # every top-level table is in the example).
    for key in set(re.findall(r"^(\w+) =", full, re.M)):
        assert f"`{key}`" in doc or f"`{key} = " in doc, key


# --------------------------------------------------------------------------
# Bad files: key path, line, message
# --------------------------------------------------------------------------


def eu_west(region: str = "", *, after: str = "") -> str:
    """Region eu-west with the lines ``region`` in its table (from line 3), one site
    a.example, then the lines ``after``."""
    return f'[[regions]]\nname = "eu-west"\n{region}[[sites]]\nname = "a.example"\n{textwrap.dedent(after)}'


BAD = [
    pytest.param(
        eu_west("[regions.edge]\nnodes = 0\n"),
        "regions[0].edge.nodes",
        4,
        "expected a whole number from 1 to 10000, got 0",
        id="range",
    ),
    pytest.param(
        eu_west('edge = { nodes = "three" }\n'),
        "regions[0].edge.nodes",
        3,
        'got "three"',
        id="wrong-type-inline",
    ),
    pytest.param(
        eu_west("[regions.edge]\nnode = 3\n"),
        "regions[0].edge.node",
        4,
        'unknown key (did you mean "nodes"?)',
        id="unknown-key-suggestion",
    ),
    pytest.param(
        "trafic = {}\n" + MINIMAL,
        "trafic",
        1,
        'unknown key (did you mean "traffic"?)',
        id="unknown-top-level",
    ),
    pytest.param(
        eu_west('[regions.edge]\nmemory_cache = "12 parsecs"\n'),
        "regions[0].edge.memory_cache",
        4,
        'expected a size >= 0 such as 512MB or 1GiB (a number is bytes), got "12 parsecs"',
        id="bad-size-unit",
    ),
    pytest.param(
        eu_west('[regions.edge]\negress = "1 GB"\n'),
        "regions[0].edge.egress",
        4,
        "expected a rate >= 0",
        id="bad-rate-unit",
    ),
    # a transfer time of 1 MB at 0.0001 bit/s is two and a half thousand years
    pytest.param(
        eu_west('[regions.edge]\negress = "0.0001bps"\n'),
        "regions[0].edge.egress",
        4,
        "expected 0 (unlimited) or a rate of at least 1Mbps (125,000 bytes/s) such as 1Gbps or 100MB/s, "
        'got "0.0001bps"',
        id="egress-below-floor",
    ),
    pytest.param(
        "[profiles.slow]\negress = 124999\n" + MINIMAL,
        "profiles.slow.egress",
        2,
        "expected 0 (unlimited) or a rate of at least 1Mbps (125,000 bytes/s)",
        id="profile-egress-below-floor",
    ),
    pytest.param(
        MINIMAL + '[traffic]\nduration = "-1h"\n',
        "traffic.duration",
        7,
        'expected a duration > 0 such as 200ms, 1.5s, 30m or 2h (a number is seconds), got "-1h"',
        id="negative-duration",
    ),
    pytest.param(
        MINIMAL + "[traffic]\nwarmup = -5\n",
        "traffic.warmup",
        7,
        "got -5",
        id="negative-seconds",
    ),
    pytest.param(
        MINIMAL + '[origin]\nregion = "eu-wset"\n',
        "origin.region",
        7,
        'expected a region (eu-west), got "eu-wset" (did you mean "eu-west"?)',
        id="missing-region-reference",
    ),
    pytest.param(
        """\
        [[regions]]
        name = "eu-west"
        client_share = 0.5

        [[regions]]
        name = "us-east"
        client_share = 0.3

        [[sites]]
        name = "a.example"
        """,
        "regions",
        1,
        "expected the client_share values to sum to 1, got 0.8",
        id="shares-not-summing",
    ),
    pytest.param(
        eu_west("countries = { GB = 0.5, DE = 0.4 }\n"),
        "regions[0].countries",
        3,
        "expected the shares to sum to 1, got 0.9",
        id="country-mix-not-summing",
    ),
    pytest.param(
        eu_west(
            "[regions.edge]\nnodes = 2\n",
            after="""\
            [[faults.crashes]]
            region = "eu-west"
            node = 2
            at = "10m"
            down_for = "1m"
            """,
        ),
        "faults.crashes[0].node",
        9,
        "expected a node index from 0 to 1 (eu-west has 2 nodes), got 2",
        id="node-index-out-of-range",
    ),
    pytest.param(
        eu_west(
            after="""\
            [[faults.crashes]]
            region = "eu-west"
            node = 0
            at = "10m"
            down_for = "5m"
            [[faults.crashes]]
            region = "eu-west"
            node = 0
            at = "12m"
            down_for = "1m"
            """,
        ),
        "faults.crashes[1].at",
        13,
        "eu-west node 0 is up (it is down from 600s to 900s)",
        id="overlapping-crashes",
    ),
    pytest.param(
        eu_west(
            after="""\
            [[traffic.flash_crowds]]
            site = "b.example"
            start = "1m"
            duration = "1m"
            multiplier = 3
            """,
        ),
        "traffic.flash_crowds[0].site",
        6,
        'expected a site (a.example), got "b.example"',
        id="unknown-site",
    ),
    pytest.param(
        eu_west(
            after="""\
            [[traffic.deploys]]
            site = "a.example"
            at = "2h"
            """,
        ),
        "traffic.deploys[0].at",
        7,
        'expected a time before the end of traffic (3600s), got "2h"',
        id="event-after-end",
    ),
    # fault windows past the end were accepted (the drill waited out an outage's rest)
    pytest.param(
        MINIMAL + '[[faults.origin_outages]]\nat = "50m"\nduration = "20m"\n',
        "faults.origin_outages[0].duration",
        8,
        "expected at most 600s (the outage starts at 3000s and must end by the end of traffic, "
        '3600s), got "20m"',
        id="outage-past-end",
    ),
    pytest.param(
        MINIMAL
        + '[[faults.latency_spikes]]\nlink = "eu-west->origin"\nat = "59m"\nduration = 61\nextra = 1\n',
        "faults.latency_spikes[0].duration",
        9,
        "expected at most 60s (the spike starts at 3540s and must end by the end of traffic, 3600s), got 61",
        id="spike-past-end",
    ),
    pytest.param(
        """\
        [[regions]]
        utc_offset = 1
        [[sites]]
        name = "a.example"
        """,
        "regions[0].name",
        1,
        "missing (the region's name)",
        id="missing-required",
    ),
    pytest.param(
        eu_west('[regions.edge]\nservice_time = { distribution = "gauss", mean = 1 }\n'),
        "regions[0].edge.service_time.distribution",
        4,
        'expected one of "fixed", "lognormal", "exponential", "pareto", "uniform", got "gauss"',
        id="bad-distribution",
    ),
    pytest.param(
        eu_west(after='[sites.catalog]\nsize = { distribution = "uniform", min = "10KB", max = "1KB" }\n'),
        "sites[0].catalog.size.max",
        6,
        'expected a value >= min, got "1KB"',
        id="uniform-max-below-min",
    ),
    pytest.param(
        MINIMAL + 'rules = "missing/_redirects"\n',
        "sites[0].rules",
        6,
        "missing/_redirects does not exist",
        id="missing-rule-file",
    ),
    pytest.param(
        MINIMAL + "redirect_share = 0.2\n",
        "sites[0].redirect_share",
        6,
        "expected 0 for a site without rules",
        id="redirect-share-without-rules",
    ),
    pytest.param(
        MINIMAL + "[traffic]\ndiurnal = [\n  1, 1, 1,\n  1.5, 1, 1,\n" + "  1, 1, 1,\n" * 6 + "]\n",
        "traffic.diurnal[3]",
        9,
        "expected a number from 0 to 1, got 1.5",
        id="diurnal-element",
    ),
    pytest.param(
        """\
        [[regions]]
        name = "eu-west"
        [[regions]]
        name = "us-east"
        [network.region_latency]
        eu-west = { us-east = "40ms", ap-south = "90ms" }
        [[sites]]
        name = "a.example"
        """,
        "network.region_latency.eu-west.ap-south",
        6,
        'expected a region name (eu-west, us-east), got "ap-south"',
        id="matrix-unknown-region",
    ),
    pytest.param(
        eu_west('utc_offset = 15\nclient_latency = { base = "10ms", jitter = "20ms" }\n'),
        "regions[0].utc_offset",
        3,
        "expected hours from UTC from -12 to 14",
        id="utc-offset-range",
    ),
    pytest.param(
        eu_west('client_latency = { base = "10ms", jitter = "20ms" }\n'),
        "regions[0].client_latency.jitter",
        3,
        'expected at most base (10ms), got "20ms"',
        id="jitter-above-base",
    ),
    pytest.param(
        eu_west('edge = { profile = "huge" }\n'),
        "regions[0].edge.profile",
        3,
        'expected a profile from [profiles] (none defined), got "huge"',
        id="unknown-profile",
    ),
    pytest.param(
        MINIMAL
        + '[[faults.latency_spikes]]\nlink = "eu-west->moon"\nat = 0\nduration = "1m"\nextra = "100ms"\n',
        "faults.latency_spikes[0].link",
        7,
        'expected "REGION->origin" or "REGION->client" with regions eu-west, got "eu-west->moon"',
        id="bad-link",
    ),
    pytest.param(
        MINIMAL + '[[faults.origin_outages]]\nat = 0\nduration = "1m"\nmode = "nap"\n',
        "faults.origin_outages[0].mode",
        9,
        'expected one of "stop", "stall", got "nap"',
        id="bad-outage-mode",
    ),
    pytest.param(
        """\
        [[regions]]
        name = "eu-west"
        [[sites]]
        name = "a.example"
        share = 0.5
        [[sites]]
        name = "b.example"
        """,
        "sites[1].share",
        6,
        "missing (give every element of sites a share, or none)",
        id="share-missing-for-one",
    ),
    pytest.param(
        MINIMAL + '[sites.cache.paths]\n"blog/*" = "no-store"\n',
        'sites[0].cache.paths."blog/*"',
        7,
        'expected a path glob starting with "/"',
        id="quoted-key-path",
    ),
    pytest.param(
        'regions = "eu-west"\n[[sites]]\nname = "a.example"\n',
        "regions",
        1,
        'expected an array of tables ([[regions]]), got "eu-west"',
        id="array-expected",
    ),
    # a plain number of bytes: 0.5 was 0 (no memory tier), 1e30 passed
    pytest.param(
        eu_west("[regions.edge]\nmemory_cache = 0.5\n"),
        "regions[0].edge.memory_cache",
        4,
        "a number of bytes is whole, got 0.5",
        id="fractional-bytes",
    ),
    pytest.param(
        eu_west("[regions.edge]\nmemory_cache = 1e30\n"),
        "regions[0].edge.memory_cache",
        4,
        "at most 9,223,372,036,854,775,807 bytes, got 1e+30",
        id="bytes-beyond-int64",
    ),
    pytest.param(
        MINIMAL + "[traffic]\nstart_hour_utc = 24\n",
        "traffic.start_hour_utc",
        7,
        "expected a number from 0 up to (not including) 24, got 24",
        id="hour-24",
    ),
    pytest.param(
        MINIMAL + 'description = """\nmany\nlines\n"""\n[traffic]\npeak_rps = 0\n',
        "traffic.peak_rps",
        11,
        "expected a number > 0, got 0",
        id="line-after-multiline-string",
    ),
]


@pytest.mark.parametrize(("text", "key_path", "line", "message"), BAD)
def test_bad_file(text: str, key_path: str, line: int, message: str) -> None:
    found = problems(text)
    match = [p for p in found if p.key_path == key_path]
    assert match, f"no problem at {key_path}: {[str(p) for p in found]}"
    assert match[0].line == line, str(match[0])
    assert message in match[0].message
    assert str(match[0]).startswith(f"{TOPOLOGIES / 't.toml'}:{line}: {key_path}: ")


def test_fault_windows_may_end_at_the_end_of_traffic() -> None:
    text = MINIMAL + textwrap.dedent(
        """\
        [[faults.crashes]]
        region = "eu-west"
        node = 0
        at = "50m"
        down_for = "10m"
        [[faults.origin_outages]]
        at = "50m"
        duration = "10m"
        [[faults.latency_spikes]]
        link = "eu-west->client"
        at = "59m"
        duration = "1m"
        extra = "1s"
        """
    )
    faults = parse_topology(text, path=TOPOLOGIES / "t.toml").faults
    assert faults.crashes[0].at + faults.crashes[0].down_for == 3600
    assert faults.outages[0].at + faults.outages[0].duration == 3600
    assert faults.spikes[0].at + faults.spikes[0].duration == 3600
    # ... also where the sum of the two is not exactly the end as floats
    short = (
        MINIMAL
        + '[traffic]\nduration = "4.8s"\n'
        + (
            '[[faults.origin_outages]]\nat = "1.1s"\nduration = "3.7s"\n'
            '[[faults.latency_spikes]]\nlink = "eu-west->client"\n'
            'at = "1100ms"\nduration = "3700ms"\nextra = "1s"\n'
        )
    )
    assert 1.1 + 3.7 > 4.8
    cut = parse_topology(short, path=TOPOLOGIES / "t.toml").faults
    assert cut.outages[0].duration == cut.spikes[0].duration == 3.7
    # a crash may outlast the run: the node stays down to the end
    longer = parse_topology(text.replace('down_for = "10m"', 'down_for = "2h"'), path=TOPOLOGIES / "t.toml")
    assert longer.faults.crashes[0].down_for == 7200


@pytest.mark.parametrize(("egress", "expected"), [(0, 0.0), ('"1Mbps"', 125_000.0), (125_000, 125_000.0)])
def test_egress_floor_keeps_unlimited_and_one_mbps(egress: object, expected: float) -> None:
    topo = parse_topology(eu_west(f"[regions.edge]\negress = {egress}\n"), path=TOPOLOGIES / "t.toml")
    assert topo.regions[0].edge.egress == expected


def test_toml_syntax_error_has_line_and_column() -> None:
    (p,) = problems('[[regions]]\nname = "eu-west"\nnodes = = 3\n')
    assert (p.line, p.column, p.key_path) == (3, 9, "")
    assert str(p) == f"{TOPOLOGIES / 't.toml'}:3:9: invalid TOML: Invalid value"


def test_toml_syntax_error_at_end() -> None:
    (p,) = problems('[[regions]]\nname = "eu-west"\nx = """abc\n')
    assert p.line == 3
    assert "Unterminated string" in p.message


def test_every_problem_reported_in_file_order() -> None:
    text = """\
    sead = 3

    [[regions]]
    name = "eu-west"
    [regions.edge]
    nodes = 0
    balancer = "least-connection"

    [[sites]]
    name = "Example.com"

    [traffic]
    duration = "1 fortnight"
    """
    found = problems(text)
    assert [(p.line, p.key_path) for p in found] == [
        (1, "sead"),
        (6, "regions[0].edge.nodes"),
        (7, "regions[0].edge.balancer"),
        (10, "sites[0].name"),
        (13, "traffic.duration"),
    ]
    assert 'did you mean "least-connections"?' in found[2].message
    with pytest.raises(TopologyError) as info:
        parse_topology(textwrap.dedent(text), path="x.toml")
    assert str(info.value).count("\n") == 4
    assert isinstance(info.value, EdgesimError)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TopologyError) as info:
        load_topology(tmp_path / "nope.toml")
    (p,) = info.value.problems
    assert str(p) == f"{tmp_path / 'nope.toml'}: cannot read: No such file or directory"


def test_problem_without_line_names_key() -> None:
    (p,) = problems('[[regions]]\nname = "eu-west"\n')
    assert (p.line, p.key_path) == (0, "sites")
    assert str(p) == f"{TOPOLOGIES / 't.toml'}: sites: missing (at least one [[sites]] table)"


# --------------------------------------------------------------------------
# edgesim validate
# --------------------------------------------------------------------------


def test_cli_validate_ok() -> None:
    files = [str(TOPOLOGIES / f"{n}.toml") for n in BUNDLED]
    result = CliRunner().invoke(cli, ["validate", *files])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == len(BUNDLED)
    assert lines[0] == f"{files[0]}: ok (2 regions, 6 nodes, 2 sites)"


def test_cli_validate_by_name() -> None:
    result = CliRunner().invoke(cli, ["validate", "global-5-regions"])
    assert result.exit_code == 0, result.output
    assert result.output.endswith("global-5-regions.toml: ok (5 regions, 10 nodes, 3 sites)\n")


def test_cli_validate_bad_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(MINIMAL + '[origin]\nregion = "nowhere"\nworkers = 0\n')
    syntax = tmp_path / "syntax.toml"
    syntax.write_text("[[regions]\n")
    good = tmp_path / "good.toml"
    good.write_text(MINIMAL)
    missing = tmp_path / "missing.toml"
    result = CliRunner().invoke(cli, ["validate", str(good), str(bad), str(syntax), str(missing)])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.output.splitlines() == [
        f"{good}: ok (1 region, 1 node, 1 site)",
        f'{bad}:7: origin.region: expected a region (eu-west), got "nowhere"',
        f"{bad}:8: origin.workers: expected a whole number from 1 to 1000000, got 0",
        f"{syntax}:1:10: invalid TOML: Expected ']]' at the end of an array declaration",
        f"{missing}: cannot read: No such file or directory",
    ]


def test_cli_validate_usage_error() -> None:
    result = CliRunner().invoke(cli, ["validate"])
    assert result.exit_code == 2


def _leaf_paths(d: object, path: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    out: list[tuple[str | int, ...]] = []
    items = d.items() if isinstance(d, dict) else enumerate(d) if isinstance(d, list) else []
    for k, v in items:
        out.append((*path, k))
        out.extend(_leaf_paths(v, (*path, k)))
    return out


@pytest.mark.parametrize("name", ["demo", "edge-crash", "global-5-regions"])
def test_any_wrong_value_is_a_problem_not_a_crash(name: str) -> None:
    """Every value of a bundled file replaced by each wrong kind of value (or deleted)
    gives problems or a topology, never another exception."""
    import copy
    import tomllib

    from edgesim._topoload import _Checker, _lines

    f = TOPOLOGIES / f"{name}.toml"
    text = f.read_text()
    data = tomllib.loads(text)
    lines = _lines(text)
    for path in _leaf_paths(data):
        for bad in (0, -1, "x", True, [], {}, [1], {"a": 1}, 10**30, float("nan"), None):
            d = copy.deepcopy(data)
            parent: Any = d
            for k in path[:-1]:
                parent = parent[k]
            if bad is None:
                del parent[path[-1]]
            else:
                parent[path[-1]] = copy.deepcopy(bad)
            _Checker(str(f), lines, f.parent).topology(d, f, text)


def test_distribution_parameters_are_floats_even_from_integers() -> None:
    # the compiled cores read them as floats; an int kept here was written as 20000
    # by plain Python and 20000.0 by compiled code (a manifest, then a deploy id)
    d = Distribution("lognormal", median=20_000, sigma=1, cap=5)
    assert [type(x) for x in (d.median, d.sigma, d.cap, d.value)] == [float] * 4
    assert json.dumps([d.median, d.sigma]) == "[20000.0, 1.0]"


def test_region_lists_in_messages_leave_out_missing_and_bad_names() -> None:
    # a cascade: the bad or missing name was listed among the choices ("(, us-east)")
    text = (
        '[[regions]]\nname = "bad name"\n[[regions]]\n[[regions]]\nname = "us-east"\n'
        '[network.region_latency]\nnope = { us-east = "10ms" }\n[[sites]]\nname = "a"\n'
    )
    found = [p.message for p in problems(text) if p.key_path == "network.region_latency.nope"]
    assert found == ['expected a region name (us-east), got "nope"']


def test_a_byte_order_mark_keeps_the_line_numbers() -> None:
    # load_toml reads past a BOM; the line scanner did not, and every line was 0
    found = problems("\ufeff" + MINIMAL + "[traffic]\npeak_rps = 0\n")
    assert [(p.key_path, p.line) for p in found] == [("traffic.peak_rps", 7)]


@pytest.mark.parametrize(
    ("text", "lines"),
    [
        # a misspelt required key: its "missing" too made two lines of one slip
        (
            MINIMAL.replace("[[regions]]", "[[region]]"),
            ['region: unknown key (did you mean "regions"?)'],
        ),
        # a misspelt distribution: each of its parameters was an unknown key of "fixed",
        # and "value" missing
        (
            MINIMAL
            + '[origin]\nservice_time = { distribution = "lognormall", median = "20ms", sigma = 0.5 }\n',
            [
                'origin.service_time.distribution: expected one of "fixed", "lognormal", "exponential", '
                '"pareto", "uniform" (did you mean "lognormal"?), got "lognormall"'
            ],
        ),
        # an array element that is not a table: each of its required keys was "missing"
        (MINIMAL + "[traffic]\ndeploys = [1]\n", ["traffic.deploys[0]: expected a table, got 1"]),
        # a case slip gets its suggestion
        (
            eu_west('[regions.edge]\neviction = "LRU"\n'),
            ['regions[0].edge.eviction: expected one of "lru", "fifo" (did you mean "lru"?), got "LRU"'],
        ),
    ],
    ids=["required-key-typo", "distribution-typo", "element-not-a-table", "case"],
)
def test_one_slip_is_one_line(text: str, lines: list[str]) -> None:
    assert [f"{p.key_path}: {p.message}" for p in problems(text)] == lines


# --------------------------------------------------------------------------
# Property: mutated bundled topologies, written back as TOML text
# --------------------------------------------------------------------------

_TOML_BARE = re.compile(r"[A-Za-z0-9_-]+")


def _toml_key(k: str) -> str:
    return k if _TOML_BARE.fullmatch(k) else _toml_string(k)


def _toml_string(s: str) -> str:
    # JSON escapes are TOML basic-string escapes, except that TOML wants DEL escaped
    return json.dumps(s, ensure_ascii=False).replace("\x7f", "\\u007F")


def _toml_value(v: object) -> str:
    import datetime
    import math

    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return _toml_string(v)
    if isinstance(v, datetime.date | datetime.time):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"no TOML for {v!r}")


def _is_table_array(v: object) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)


def toml_dumps(data: dict[str, Any], header: str = "") -> str:
    """A small TOML writer (tomli_w is not a dependency): plain keys of a table first,
    then its sub-tables as ``[a.b]`` and arrays of tables as ``[[a.b]]``, so that the
    loader's line scanner sees the shapes of a hand-written file."""
    out = []
    later = []
    for k, v in data.items():
        full = f"{header}.{_toml_key(k)}" if header else _toml_key(k)
        if isinstance(v, dict) and v:
            later.append(f"\n[{full}]\n" + toml_dumps(v, full))
        elif _is_table_array(v):
            later.extend(f"\n[[{full}]]\n" + toml_dumps(t, full) for t in v)  # type: ignore[attr-defined]
        else:
            out.append(f"{_toml_key(k)} = {_toml_value(v)}\n")
    return "".join(out) + "".join(later)


def _all_paths(d: object, path: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Every key path of ``d``, the containers' own paths included (``()`` is the file)."""
    out: list[tuple[str | int, ...]] = [path]
    items = d.items() if isinstance(d, dict) else enumerate(d) if isinstance(d, list) else []
    for k, v in items:
        out.extend(_all_paths(v, (*path, k)))
    return out


def _at(data: Any, path: tuple[str | int, ...]) -> Any:
    for k in path:
        data = data[k]
    return data


# Quantities gone wrong: units unknown or missing, signs, overflow, empty, not numbers.
_GARBAGE_QUANTITIES = [
    "5 parsecs",
    "-1s",
    "1e400KB",
    "1e400s",
    "",
    " ",
    "\n",
    "0s",
    "0",
    "nan",
    "inf s",
    "NaNms",
    "1.5.5ms",
    "99999999999999999999h",
    "1e308GB",
    "1e-400s",
    "1Gbps",
    "100MB/s",
    "-0s",
    "2h-30m",
    "ms",
    "1_000s",
    "+5",
    "\u0661s",  # an Arabic-Indic digit 1: str.isdigit() says yes, float() too
    "10GiB",
    "1 1s",
]
_WRONG_VALUES = st.one_of(
    st.sampled_from(_GARBAGE_QUANTITIES),
    st.text(max_size=12),
    st.sampled_from([0, -1, 1, 2, 10**30, 2**63, -(2**63), 10**400]),
    st.integers(),
    st.sampled_from([0.0, -0.0, -0.5, 0.5, 1e-300, 1e308, float("nan"), float("inf"), float("-inf")]),
    st.floats(),
    st.booleans(),
    st.sampled_from([[], {}, [[]], [[1, 2], [3]], [1, "a"], {"a": 1}, {"": {}}, [{}], [{"x": 1}]]),
    st.dates(),
    st.datetimes(),
    st.times(),
)


def _is_finite(v: object) -> bool:
    """A number small enough to scale (not a bool, NaN or an int beyond the floats)."""
    import math

    return isinstance(v, int | float) and not isinstance(v, bool) and abs(v) < 1e300 and not math.isnan(v)


_MUTATIONS = ("replace", "replace", "delete", "unknown", "duplicate", "quantity", "edge")


def _mutate(draw: Any, data: dict[str, Any], kinds: tuple[str, ...] = _MUTATIONS) -> str:
    """One mutation of ``data``, in place; returns what was done (for the failure)."""
    paths = _all_paths(data)
    kind = draw(st.sampled_from(kinds))
    if kind == "unknown":
        tables = [p for p in paths if isinstance(_at(data, p), dict)]
        where = draw(st.sampled_from(tables))
        key = draw(
            st.one_of(st.sampled_from(["extra", "Name", "regions", "0", "a.b", ""]), st.text(max_size=8))
        )
        if key in _at(data, where):
            return "nothing"
        _at(data, where)[key] = copy.deepcopy(draw(_WRONG_VALUES))  # (a later mutation may change it)
        return f"add {where}.{key!r}"
    if kind == "duplicate":
        arrays = [p for p in paths if isinstance(_at(data, p), list) and _at(data, p)]
        if not arrays:
            return "nothing"
        where = draw(st.sampled_from(arrays))
        a = _at(data, where)
        a.append(copy.deepcopy(a[draw(st.integers(0, len(a) - 1))]))
        return f"duplicate an element of {where}"
    if kind == "edge":  # a number at an edge of its range: mostly still a valid file
        numbers = [p for p in paths if _is_finite(_at(data, p))]
        if not numbers:
            return "nothing"
        where = draw(st.sampled_from(numbers))
        x = float(_at(data, where)) * draw(st.sampled_from([0, 1e-9, 1e-3, 0.5, 2, 1e3, 1e6]))
        new = draw(st.sampled_from([0, 1, 2**31, 2**63 - 1, 1e-9, 0.999999, x, int(x)]))
        _at(data, where[:-1])[where[-1]] = new
        return f"set {where} = {new!r}"
    leaves = [p for p in paths if p]
    where = draw(st.sampled_from(leaves))
    parent = _at(data, where[:-1])
    if kind == "delete":
        del parent[where[-1]]
        return f"delete {where}"
    if kind == "quantity":
        parent[where[-1]] = draw(st.sampled_from(_GARBAGE_QUANTITIES))
    else:
        parent[where[-1]] = copy.deepcopy(draw(_WRONG_VALUES))
    return f"set {where} = {parent[where[-1]]!r}"


def check_problems(err: TopologyError, file: Path) -> None:
    assert err.problems
    for p in err.problems:
        assert p.file == str(file)
        assert p.key_path, p
        assert p.message and "\n" not in p.message, p
        assert "Traceback" not in p.message


@pytest.mark.parametrize("name", BUNDLED)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_topology_is_accepted_or_has_clear_problems(name: str, data: st.DataObject) -> None:
    """A bundled topology with one to three values changed to the wrong type, range or
    unit, keys deleted or added, or array elements duplicated, then written back as TOML:
    the loader accepts it or raises TopologyError whose every problem has a key path and
    a one-line message, never another exception."""
    import tomllib

    f = TOPOLOGIES / f"{name}.toml"
    d = tomllib.loads(f.read_text())
    done = [_mutate(data.draw, d) for _ in range(data.draw(st.integers(1, 3)))]
    text = toml_dumps(d)
    note(f"mutations: {done}\n{text}")
    try:
        parse_topology(text, path=f)
    except TopologyError as err:
        check_problems(err, f)


def test_an_integer_beyond_the_floats_is_a_problem() -> None:
    # math.isfinite(10**400) raised OverflowError out of the loader (found by the
    # property test above); the message does not print all 401 digits either
    found = problems(MINIMAL + f"[origin]\nservice_time = {10**400}\n[traffic]\npeak_rps = {-(10**400)}\n")
    assert [f"{p.key_path}: {p.message}" for p in found] == [
        "origin.service_time: expected a duration >= 0 such as 200ms, 1.5s, 30m or 2h (a number is "
        "seconds), or a distribution table, got a number of 401 digits",
        "traffic.peak_rps: expected a number > 0, got a negative number of 401 digits",
    ]


def test_workers_are_bounded() -> None:
    # 10**400 workers passed the loader, and a run's utilisation (busy time over
    # workers x span) ended in an OverflowError traceback
    text = MINIMAL.replace('name = "eu-west"', f'name = "eu-west"\n[regions.edge]\nworkers = {10**400}')
    found = problems(text + "[origin]\nworkers = 1000001\n")
    assert [f"{p.key_path}: {p.message}" for p in found] == [
        "regions[0].edge.workers: expected a whole number from 1 to 1000000, got a number of 401 digits",
        "origin.workers: expected a whole number from 1 to 1000000, got 1000001",
    ]


def tiny(topo: Any) -> Any:
    """``topo`` with its load cut to a few requests a second (the peak, flash crowds)
    and small synthetic catalogs: a run of a few seconds of it is quick whatever values
    a mutation left."""
    from dataclasses import replace

    tr = topo.traffic
    crowds = tuple(replace(c, multiplier=min(c.multiplier, 3.0)) for c in tr.flash_crowds)
    sites = tuple(
        replace(s, catalog=replace(s.catalog, objects=min(s.catalog.objects, 2000)))
        if s.catalog is not None
        else s
        for s in topo.sites
    )
    return replace(
        topo, traffic=replace(tr, peak_rps=min(tr.peak_rps, 50.0), flash_crowds=crowds), sites=sites
    )


@pytest.mark.parametrize("name", ["demo", "edge-crash", "capacity"])
@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)
@given(st.data())
def test_accepted_mutated_topology_runs(name: str, data: st.DataObject) -> None:
    """What the loader accepts, the engine runs (a few seconds of it): it returns a
    report or raises an EdgesimError, never a ZeroDivisionError or the like."""
    import tomllib

    from edgesim.engine import simulate

    f = TOPOLOGIES / f"{name}.toml"
    d = tomllib.loads(f.read_text())
    done = [
        _mutate(data.draw, d, ("edge", "edge", "delete", "duplicate"))
        for _ in range(data.draw(st.integers(1, 2)))
    ]
    note(f"mutations: {done}")
    try:
        topo = parse_topology(toml_dumps(d), path=f)
    except TopologyError:
        assume(False)
        return
    try:
        result = simulate(tiny(topo), stop_at=2.0)
    except EdgesimError as exc:  # a clear error is fine too (one line, no traceback)
        message = str(exc)
    else:
        message = "ran"
        assert result.to_dict()["meta"]
    assert message and "Traceback" not in message


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_cli_on_mutated_topology(data: st.DataObject) -> None:
    """``edgesim validate`` and ``edgesim run`` on a mutated file beside the bundled
    sites: exit 0 with "ok", or exit 1 with one line per problem, naming the file."""
    import tempfile
    import tomllib

    d = tomllib.loads((TOPOLOGIES / "demo.toml").read_text())
    done = [_mutate(data.draw, d) for _ in range(data.draw(st.integers(1, 3)))]
    note(f"mutations: {done}")
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "sites").symlink_to(TOPOLOGIES / "sites")
        f = Path(tmp) / "mutated.toml"
        f.write_text(toml_dumps(d))
        try:
            parse_topology(f.read_text(), path=f)
            expected = None
        except TopologyError as err:
            expected = [str(p) for p in err.problems]
        result = CliRunner().invoke(cli, ["validate", str(f)])
        assert result.exception is None or isinstance(result.exception, SystemExit), result.output
        assert "Traceback" not in result.output
        lines = result.output.splitlines()
        if expected is None:  # the rules and the trace are checked as well then
            if result.exit_code == 0:
                assert len(lines) == 1 and re.fullmatch(rf"{re.escape(str(f))}: ok \(.+\)", lines[0])
            else:  # a rule file's problems, say
                assert result.exit_code == 1 and lines
                assert all(line.startswith(f"{f}:") for line in lines)
            return
        assert (result.exit_code, lines) == (1, expected)
        # run validates before it runs: the same lines, the same exit
        run = CliRunner().invoke(cli, ["run", str(f)])
        assert run.exit_code == 1
        assert run.exception is None or isinstance(run.exception, SystemExit)
        assert run.stderr.splitlines() == expected or run.output.splitlines() == expected
