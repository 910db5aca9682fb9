"""Cost models: cost files, `calibration` in topologies, and service time by outcome
in the capacity engine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgesim._costs import format_costs, read_cost_file
from edgesim._topoload import load_topology, parse_topology
from edgesim.engine import _Engine, simulate
from edgesim.errors import TopologyError
from edgesim.metrics import O_HIT, O_MISS, O_REDIRECT, O_REVALIDATED
from edgesim.topology import CostModel

COSTS = """
format = 1
[profiles.big]
machine = "test"
rules_default = "250us"
[profiles.big.service_time]
hit_memory = "2ms"
hit_disk = "4ms"
miss = "8ms"
revalidate = "16ms"
redirect = "1ms"
[profiles.big.rules]
"a.example" = "500us"
"""

# Fixed latencies, no queueing (many workers), a memory tier that holds ~3 objects in
# front of a disk tier that holds all: every request's latency is a sum of constants.
TOPOLOGY = """
name = "fixed"
interval = "10s"

[profiles.big]
workers = 1000
memory_cache = "60KB"
disk_cache = "1GB"
calibration = "costs.toml"

[[regions]]
name = "eu"
client_latency = "10ms"
origin_latency = "20ms"
edge = { profile = "big", nodes = 1 }

[origin]
workers = 1000
service_time = "5ms"

[[sites]]
name = "a.example"
rules = "_redirects"
redirect_share = 0.2
[sites.catalog]
objects = 40
size = "20KB"
types = { img = 0.9, html = 0.1 }
[sites.cache]
html = "public, no-cache"

[traffic]
duration = "60s"
warmup = "10s"
peak_rps = 60
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "costs.toml").write_text(COSTS)
    (tmp_path / "_redirects").write_text("/old-a  /new-a  301\n/old-b  /new-b  301\n")
    (tmp_path / "t.toml").write_text(TOPOLOGY)
    return tmp_path


def test_cost_file_round_trips(folder: Path) -> None:
    models = read_cost_file(folder / "costs.toml")
    m = models["big"]
    assert m.outcome_times() == pytest.approx((0.002, 0.004, 0.008, 0.016, 0.001))
    assert dict(m.rules) == {"a.example": pytest.approx(0.0005)}
    assert m.rules_default == pytest.approx(0.00025)
    assert m.base() == pytest.approx(0.001)
    other = CostModel("small", None, 1e-4, 2e-4, 3e-4, 4e-4, 5e-5, (("b.example", 2e-6),), 2e-6)
    (folder / "two.toml").write_text(format_costs([m, other], {"big": {"machine": "test"}}))
    again = read_cost_file(folder / "two.toml")
    assert set(again) == {"big", "small"}
    assert again["small"].outcome_times() == pytest.approx(other.outcome_times())
    assert again["big"].rules[0][1] == pytest.approx(0.0005)
    # a str path, as write_cost_file takes (docs/calibrate.md's Python API)
    assert set(read_cost_file(str(folder / "two.toml"))) == {"big", "small"}


def test_topology_takes_its_service_times_from_the_cost_file(folder: Path) -> None:
    topo = load_topology(folder / "t.toml")
    g = topo.regions[0].edge
    assert g.costs is not None and g.costs.profile == "big"
    assert g.service_time.kind == "fixed" and g.service_time.value == pytest.approx(0.001)
    # an edge group's own service_time wins over its profile's calibration
    text = TOPOLOGY.replace("nodes = 1 }", 'nodes = 1, service_time = "3ms" }')
    g2 = parse_topology(text, path=folder / "t.toml").regions[0].edge
    assert g2.costs is None and g2.service_time.value == pytest.approx(0.003)
    # the table form names another profile of the file
    text = TOPOLOGY.replace('calibration = "costs.toml"', "").replace(
        "nodes = 1 }", 'nodes = 1, calibration = { file = "costs.toml", profile = "big" } }'
    )
    g3 = parse_topology(text, path=folder / "t.toml").regions[0].edge
    assert g3.costs is not None and g3.costs.miss == pytest.approx(0.008)


def _problems(text: str, folder: Path) -> list[str]:
    with pytest.raises(TopologyError) as info:
        parse_topology(text, path=folder / "t.toml")
    return [str(p) for p in info.value.problems]


def test_calibration_problems_name_file_line_and_key_path(folder: Path) -> None:
    t = folder / "t.toml"
    assert _problems(TOPOLOGY.replace("costs.toml", "nope.toml"), folder) == [
        f"{t}:9: profiles.big.calibration: nope.toml does not exist (paths are relative to {folder})"
    ]
    assert _problems(
        TOPOLOGY.replace("[profiles.big]", "[profiles.other]").replace('"big"', '"other"'), folder
    ) == [
        f'{t}:9: profiles.other.calibration: expected a cost file with a model for profile "other" '
        '(costs.toml has: big; name another with { file = "...", profile = "NAME" })'
    ]
    both = TOPOLOGY.replace('calibration = "costs.toml"', 'calibration = "costs.toml"\nservice_time = "1ms"')
    assert _problems(both, folder) == [
        f"{t}:10: profiles.big.service_time: expected either service_time or calibration "
        "(measured service times), not both"
    ]
    (folder / "costs.toml").write_text(
        COSTS.replace('miss = "8ms"', 'mis = "8ms"').replace('"2ms"', '"-2ms"')
    )
    c = folder / "costs.toml"
    # the cost file's own problems (file, line, key path), under the key that names it
    assert _problems(TOPOLOGY, folder) == [
        f"{t}:9: profiles.big.calibration: {c}:6: profiles.big.service_time.miss: missing "
        "(CPU time per request of a miss)",
        f"{t}:9: profiles.big.calibration: {c}:7: profiles.big.service_time.hit_memory: "
        'expected a duration > 0 such as 212.4us, got "-2ms"',
        f"{t}:9: profiles.big.calibration: {c}:9: profiles.big.service_time.mis: unknown key "
        "(expected one of: hit_memory, hit_disk, miss, revalidate, redirect)",
    ]
    # a second key naming the same file: its problems once, and where they are
    inline = TOPOLOGY.replace(
        "nodes = 1 }", 'nodes = 1, calibration = { file = "costs.toml", profile = "big" } }'
    )
    found = _problems(inline, folder)
    assert len(found) == 4 and all(p.startswith(f"{t}:9: profiles.big.calibration: {c}:") for p in found[:3])
    assert found[3] == (
        f"{t}:15: regions[0].edge.calibration.file: expected a valid cost file "
        "(costs.toml has problems, listed under profiles.big.calibration)"
    )
    # an integer beyond the floats: float() raised OverflowError out of the loader
    c.write_text(COSTS.replace('"2ms"', str(10**400)))
    assert _problems(TOPOLOGY, folder) == [
        f"{t}:9: profiles.big.calibration: {c}:7: profiles.big.service_time.hit_memory: "
        "expected a duration > 0 such as 212.4us, got a number of 401 digits"
    ]
    c.write_bytes(b"\xff\xfe")
    assert _problems(inline.replace('calibration = "costs.toml"\n', ""), folder) == [
        f"{t}:14: regions[0].edge.calibration.file: {c}: not UTF-8 text (invalid start byte); not a cost file"
    ]


def test_each_request_costs_its_outcomes_time(folder: Path) -> None:
    """Latency = the links + the node's CPU time for the request's outcome (+ the origin
    for fetches), to the microsecond, for every outcome class."""
    topo = load_topology(folder / "t.toml")
    eng = _Engine(topo, 5, None)
    eng.run(None)
    rec = eng.rec
    lat = np.round(np.frombuffer(rec.r_lat, dtype=np.float64) * 1e6).astype(np.int64)
    code = np.frombuffer(rec.r_key, dtype=np.int64) & 0xF
    rules = 500  # us per request of a.example
    client = 2 * 10_000
    origin = 2 * 20_000 + 5_000

    def common(c: int) -> list[int]:
        """The latencies of outcome ``c``, most frequent first (a few requests also
        waited for a site manifest or joined another's fetch: those vary)."""
        values, counts = np.unique(lat[code == c], return_counts=True)
        return [int(v) for v in values[np.argsort(-counts, kind="stable")]]

    hits = common(O_HIT)
    assert sorted(hits[:2]) == [client + 2_000 + rules, client + 4_000 + rules]  # memory, disk
    assert common(O_REDIRECT)[0] == client + 1_000 + rules
    assert common(O_MISS)[0] == client + 8_000 + rules + origin
    assert common(O_REVALIDATED)[0] == client + 16_000 + rules + origin  # html is no-cache
    # the node was busy for exactly those times
    report = simulate(topo, seed=5).to_dict(deterministic=True)
    assert report["nodes"]["eu-0"]["utilisation"] > 0


def test_uncalibrated_topologies_keep_their_service_time(folder: Path) -> None:
    text = TOPOLOGY.replace('calibration = "costs.toml"', 'service_time = "2ms"')
    topo = parse_topology(text, path=folder / "t.toml")
    assert topo.regions[0].edge.costs is None
    eng = _Engine(topo, 5, None)
    eng.run(None)
    lat = np.round(np.frombuffer(eng.rec.r_lat, dtype=np.float64) * 1e6).astype(np.int64)
    code = np.frombuffer(eng.rec.r_key, dtype=np.int64) & 0xF
    values, counts = np.unique(lat[code == O_REDIRECT], return_counts=True)
    assert values[np.argmax(counts)] == 2 * 10_000 + 2_000


def test_writing_a_profile_keeps_the_others(folder: Path) -> None:
    from edgesim.calibrate import write_cost_file

    path = folder / "costs.toml"
    new = CostModel("laptop", None, 1e-4, 2e-4, 3e-4, 4e-4, 5e-5, (), 1e-6)
    write_cost_file(path, new, {"machine": "a laptop", "samples": 10})
    models = read_cost_file(path)
    assert set(models) == {"big", "laptop"}
    assert models["big"].miss == pytest.approx(0.008)
    assert models["laptop"].outcome_times() == pytest.approx(new.outcome_times())
    assert 'machine = "a laptop"' in path.read_text()
    (folder / "junk.toml").write_text("format = 1\n")
    with pytest.raises(TopologyError):
        write_cost_file(folder / "junk.toml", new, {})
    assert (folder / "junk.toml").read_text() == "format = 1\n"
