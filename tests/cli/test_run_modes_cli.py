"""`edgesim run --engine trio`, `--window`, `--rate-scale` and bad combinations of them.

Live mode end to end is tests/integration/test_run_modes.py (its load generator and
origin are subprocesses); here only its option checks.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import run_cli, small_topology

# One balancer kind that needs state in each region.
SMALL = small_topology(
    name="small-modes",
    seed=5,
    eu_edge='balancer = "consistent-hash"',
    us_edge='nodes = 2\nbalancer = "least-connections"',
)


def test_virtual_window_and_rate_scale_are_in_the_report(tmp_path: Path) -> None:
    topo = tmp_path / "small.toml"
    topo.write_text(SMALL)
    whole, part = tmp_path / "whole.json", tmp_path / "part.json"
    assert run_cli("run", str(topo), "--quiet", "--json", str(whole))[0] == 0
    code, _, err = run_cli(
        "run", str(topo), "--quiet", "--window", "1m,90s", "--rate-scale", "0.5", "--json", str(part)
    )
    assert code == 0, err
    w, p = json.loads(whole.read_text()), json.loads(part.read_text())
    assert "window" not in w["meta"]
    assert p["meta"]["window"] == [60.0, 90.0] and p["meta"]["rate_scale"] == 0.5
    assert p["meta"]["duration"] == 90.0
    # 90 of 240 seconds at half the rate (the curve is flat over these minutes).
    ratio = p["meta"]["simulated_requests"] / w["meta"]["simulated_requests"]
    assert 0.12 < ratio < 0.25


def test_trio_engine_from_the_cli(tmp_path: Path) -> None:
    topo = tmp_path / "small.toml"
    topo.write_text(SMALL)
    out = tmp_path / "trio.json"
    code, _, err = run_cli("run", str(topo), "--engine", "trio", "--window", "0,40s", "--json", str(out))
    assert code == 0, err
    fast = tmp_path / "fast.json"
    assert run_cli("run", str(topo), "--quiet", "--window", "0,40s", "--json", str(fast))[0] == 0
    r, f = json.loads(out.read_text()), json.loads(fast.read_text())
    assert r["meta"]["engine"] == "trio" and r["meta"]["window"] == [0.0, 40.0]
    assert f["meta"]["engine"] == "virtual"
    # Steady state (after the 30 s warm-up): the same requests, about the same hits.
    assert r["totals"]["requests"] == f["totals"]["requests"] > 300
    assert r["totals"]["failed"] == 0
    assert abs(r["totals"]["object_hit_ratio"] - f["totals"]["object_hit_ratio"]) <= 0.02


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mode", "live", "--engine", "trio"], "--engine applies to --mode virtual"),
        (
            ["--engine", "trio", "--sample-rate", "0.1"],
            "--sample-rate works with --mode virtual --engine fast",
        ),
        (["--mode", "live", "--sample-rate", "0.1"], "--sample-rate works with"),
        (["--window", "10m"], "expected START,DURATION"),
        (["--window", "1m,ten"], "expected a duration"),
        (["--window", "3m,2m"], "within the traffic's 240 s"),
        (["--rate-scale", "0"], "expected a number > 0 or 'auto'"),
        (["--rate-scale", "-2"], "expected a number > 0 or 'auto'"),
        (["--mode", "trio"], "'trio' is not one of 'virtual', 'live'"),
    ],
)
def test_bad_options_get_one_error_line(tmp_path: Path, args: list[str], message: str) -> None:
    topo = tmp_path / "small.toml"
    topo.write_text(SMALL)
    code, _, err = run_cli("run", str(topo), "--quiet", *args)
    assert code == 2
    errors = [line for line in err.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0], err
    assert "Traceback" not in err


def test_what_the_shells_do_not_model_is_one_error_line(tmp_path: Path) -> None:
    shadow = tmp_path / "shadow.toml"
    shadow.write_text(SMALL + '\n[shadow]\ncandidate = "reference"\n')
    crash = tmp_path / "crash.toml"
    crash.write_text(SMALL + '\n[[faults.crashes]]\nregion = "eu"\nnode = 0\nat = "20s"\ndown_for = "30s"\n')
    for topo, mode, message in (
        (shadow, ["--mode", "live", "--window", "0,60s"], "[shadow] is not run by live mode"),
        (crash, ["--mode", "live", "--window", "0,60s"], "node crashes are not run by live mode"),
    ):
        code, _, err = run_cli("run", str(topo), "--quiet", *mode)
        assert code == 1
        assert err.count("\n") == 1 and message in err, err


def test_an_interrupt_a_command_does_not_handle_is_one_line_and_status_130() -> None:
    # (`edgesim run` stopped in its first second, before its own handling: click said
    # "Aborted!" and exited 1, as for a failure)
    from edgesim.cli import cli

    @cli.command("stopped-at-once")
    def stopped_at_once() -> None:
        raise KeyboardInterrupt

    try:
        code, out, err = run_cli("stopped-at-once")
    finally:
        del cli.commands["stopped-at-once"]
    assert (code, out, err) == (130, "", "interrupted\n")
