"""`edgesim run --mode live --edge-processes`: the edges as supervised OS processes,
the topology's faults run for real, the drill's report (end to end through the CLI)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import run_cli


@pytest.mark.slow
def test_live_run_with_edge_processes_restarts_the_killed_edge(tmp_path: Path) -> None:
    out = tmp_path / "drill.json"
    # crash-drill's 60 s curve in 15 s: the kill of eu-west-0 comes at 2.5 s
    code, stdout, _ = run_cli(
        "run", "crash-drill", "--mode", "live", "--edge-processes", "--window", "0,15s", "--json", str(out)
    )
    assert code == 0, stdout
    report = json.loads(out.read_text())
    restarts = [r for r in report["restarts"] if r["killed_by_drill"]]
    assert restarts and restarts[0]["signal"] == "SIGKILL"
    assert restarts[0]["up_at"] is not None  # the supervisor brought it back
    t = report["clients"]["totals"]
    assert t["requests"] > 0 and t["requests"] == t["ok"] + t["http_5xx"] + t["failed"]
    assert t["retried"] >= 1  # clients failed over to the region's other node
    assert stdout.startswith("drill crash-drill:")
    assert "restart eu-west-0: died SIGKILL (drill)" in stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--edge-processes",), "--edge-processes needs --mode live"),
        (("--mode", "live", "--edge-processes", "--html", "x.html"), "--html does not apply"),
        (("--mode", "live", "--edge-processes", "--window", "10s,20s"), "must start at 0"),
    ],
)
def test_edge_processes_option_errors(args: tuple[str, ...], message: str) -> None:
    code, _, err = run_cli("run", "crash-drill", *args)
    assert code != 0
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
