"""``edgesim bench engine`` and ``edgesim bench sampling``: JSON out, bad input refused."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from edgesim.cli import cli


def test_bench_engine_prints_rates_beside_the_simpy_baseline() -> None:
    result = CliRunner().invoke(cli, ["bench", "engine", "demo", "--seconds", "2", "--repeats", "2"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["topology"] == "demo"
    assert out["requests"] > 0
    eng = out["engine_requests_per_second"]
    assert len(eng["runs"]) == 2 and eng["best"] == max(eng["runs"]) > 0
    assert out["baseline"]["kind"].startswith("bare M/M/")
    assert out["engine_vs_baseline"] > 0


SMALL = """
name = "small"
seed = 1
interval = "10s"

[[regions]]
name = "north"
[regions.edge]
nodes = 2
memory_cache = "64MB"

[[sites]]
name = "small.example"
[sites.catalog]
objects = 3000
zipf = 0.9

[traffic]
duration = "30s"
peak_rps = 300
warmup = "5s"
"""


def test_bench_sampling_compares_sampled_runs_with_full_ones(tmp_path: Path) -> None:
    (tmp_path / "small.toml").write_text(SMALL)
    args = ["bench", "sampling", str(tmp_path / "small.toml"), "--rate", "0.1", "--seeds", "1-2"]
    result = CliRunner().invoke(cli, [*args, "--keys", "0", "--keys", "1", "--samples", "2"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["sample_rate"] == 0.1 and out["seeds"] == [1, 2]
    assert [f["seed"] for f in out["full"]] == [1, 2]
    assert [s["sample_keys"] for s in out["sampled"]] == [0.0, 1.0]
    for s in out["sampled"]:
        runs = s["runs"]
        # two sampled runs per seed, each with its own keys
        assert [(r["seed"], r["sample_seed"]) for r in runs] == [(1, 1), (1, 1000001), (2, 2), (2, 1000002)]
        assert len({r["simulated_requests"] for r in runs}) > 1
        full = {f["seed"]: f for f in out["full"]}
        for r in runs:
            err = abs(r["object_hit_ratio"] - full[r["seed"]]["object_hit_ratio"])
            assert r["object_hit_ratio_error"] == round(err, 6)
            assert r["simulated_requests"] < full[r["seed"]]["requests"]
        errors = [r["object_hit_ratio_error"] for r in runs]
        assert s["mean_abs_object_hit_ratio_error"] == round(sum(errors) / len(errors), 6)


def test_bench_sampling_compares_thinning_settings(tmp_path: Path) -> None:
    (tmp_path / "small.toml").write_text(SMALL)
    args = ["bench", "sampling", str(tmp_path / "small.toml"), "--rate", "0.1", "--seeds", "1"]
    result = CliRunner().invoke(cli, [*args, "--thin", "0", "--thin", "5"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert [(s["sample_keys"], s["sample_thin"]) for s in out["sampled"]] == [(0.5, 0.0), (0.5, 5.0)]
    off, on = (s["runs"][0] for s in out["sampled"])
    # thinning keeps a share of the hot keys' arrivals only: fewer simulated requests
    assert on["simulated_requests"] < off["simulated_requests"]
    # each setting once; a plain key sample (K = 0) thins nothing
    both = CliRunner().invoke(cli, [*args, "--keys", "0", "--keys", "1", "--thin", "5", "--thin", "5"])
    assert both.exit_code == 0, both.output
    rows = [(s["sample_keys"], s["sample_thin"]) for s in json.loads(both.output)["sampled"]]
    assert rows == [(0.0, 0.0), (1.0, 5.0)]
    bad = CliRunner().invoke(cli, [*args, "--thin", "-1"])
    assert bad.exit_code == 2 and "--thin" in bad.output


def test_bench_sampling_refuses_bad_seeds() -> None:
    result = CliRunner().invoke(cli, ["bench", "sampling", "demo", "--seeds", "3-1"])
    assert result.exit_code == 2
    assert "--seeds" in result.output
    result = CliRunner().invoke(cli, ["bench", "sampling", "demo", "--seeds", "one"])
    assert result.exit_code == 2


def test_bench_engine_refuses_a_missing_topology(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["bench", "engine", str(tmp_path / "nope.toml")])
    assert result.exit_code == 1
    assert "nope.toml" in result.output
    assert "Traceback" not in result.output
