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
