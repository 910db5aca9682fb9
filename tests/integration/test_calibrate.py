"""`edgesim calibrate`: live edge nodes in front of a real origin on loopback, a cost
file that a topology then uses, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import run_cli

from edgesim._costs import read_cost_file
from edgesim._topoload import parse_topology
from edgesim.engine import simulate

# Fixed latencies and no queueing: a memory hit's latency is 2 x 10 ms plus the node's
# CPU time for a memory hit, exactly.
USES = """
name = "uses-costs"
interval = "10s"

[profiles.default]
workers = 1000
calibration = "costs.toml"

[[regions]]
name = "eu"
client_latency = "10ms"
origin_latency = "20ms"

[origin]
service_time = "5ms"

[[sites]]
name = "plain.example"
[sites.catalog]
objects = 30

[traffic]
duration = "40s"
warmup = "10s"
peak_rps = 40
"""


def test_calibrate_writes_a_cost_file_that_a_topology_uses(tmp_path: Path) -> None:
    out = tmp_path / "costs.toml"
    code, stdout, stderr = run_cli(
        "calibrate", "--out", str(out), "--samples", "12", "--rounds", "1", "--topology", "demo", "--json"
    )
    assert code == 0, stderr
    assert "hit disk x 12" in stderr and "rule matching: shop.example" in stderr
    models = read_cost_file(out)
    m = models["default"]
    assert all(t > 0 for t in m.outcome_times())
    # a miss and a revalidation do all a memory hit does, and an origin round trip more
    assert m.miss > m.hit_memory and m.revalidate > m.hit_memory
    assert dict(m.rules).keys() == {"shop.example", "news.example"}
    assert all(t > 0 for _, t in m.rules)
    printed = json.loads(stdout[stdout.index("{") :])
    assert printed["service_time"]["miss"] == m.miss or abs(printed["service_time"]["miss"] - m.miss) < 1e-8

    (tmp_path / "t.toml").write_text(USES)
    topo = parse_topology(USES, path=tmp_path / "t.toml")
    assert topo.regions[0].edge.costs is not None
    p50 = simulate(topo, seed=2).report["totals"]["latency"]["p50"]
    assert abs(p50 - (0.020 + m.hit_memory)) < 2e-6
    plain = parse_topology(
        USES.replace('calibration = "costs.toml"', 'service_time = "0s"'), path=tmp_path / "t.toml"
    )
    assert simulate(plain, seed=2).report["totals"]["latency"]["p50"] == 0.02


def test_calibrate_bad_input_is_one_line(tmp_path: Path) -> None:
    code, _, err = run_cli("calibrate", "--out", str(tmp_path / "c.toml"), "--profile", "a b")
    assert code == 2 and "expected letters, digits, '-' and '_', got 'a b'" in err
    bad = tmp_path / "bad.toml"
    bad.write_text("format = 1\n[profiles.x.service_time]\nhit_memory = 3\n")
    code, _, err = run_cli("calibrate", "--out", str(bad), "--samples", "5")
    assert code == 1
    assert (
        err.splitlines()[0]
        == f"{bad}:2: profiles.x.service_time.hit_disk: missing (CPU time per request of a hit disk)"
    )
    assert bad.read_text() == "format = 1\n[profiles.x.service_time]\nhit_memory = 3\n"
    code, _, err = run_cli(
        "calibrate", "--out", str(tmp_path / "c.toml"), "--topology", str(tmp_path / "none.toml")
    )
    assert code == 1 and err.strip() == f"{tmp_path / 'none.toml'}: cannot read: No such file or directory"
