"""`edgesim drill` and `edgesim stress`: where their reports go. The drill and the
stress run themselves are tests/integration (processes on loopback); here they are
replaced by canned results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers import run_cli

import edgesim.drill
import edgesim.stress

TOPOLOGY = """
[[regions]]
name = "eu"

[[sites]]
name = "a.example"

[traffic]
duration = "20s"
"""

DRILL = {"topology": "t", "restarts": []}
STRESS = {"crashes": 0, "crash_details": [], "throughput_rps": 1.0}


@pytest.fixture
def canned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    async def drill(*args: Any, **kwargs: Any) -> dict[str, Any]:
        return DRILL

    async def stress(*args: Any, **kwargs: Any) -> dict[str, Any]:
        return STRESS

    monkeypatch.setattr(edgesim.drill, "run_drill", drill)
    monkeypatch.setattr(edgesim.drill, "summary_lines", lambda report: ["drill summary"])
    monkeypatch.setattr(edgesim.stress, "run_stress", stress)
    monkeypatch.setattr(edgesim.stress, "summary_line", lambda result: "stress summary")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.toml").write_text(TOPOLOGY)
    return tmp_path


@pytest.mark.parametrize(
    ("command", "report", "summary"), [("drill", DRILL, "drill"), ("stress", STRESS, "stress")]
)
def test_json_dash_is_standard_output_with_the_summary_on_stderr(
    canned: Path, command: str, report: dict[str, Any], summary: str
) -> None:
    code, out, err = run_cli(command, "t.toml", "--json", "-")
    assert code == 0, err
    assert json.loads(out) == report
    assert f"{summary} summary" in err
    assert not (canned / "-").exists()


@pytest.mark.parametrize(
    ("command", "report", "summary"), [("drill", DRILL, "drill"), ("stress", STRESS, "stress")]
)
def test_json_file_is_written_and_the_summary_printed(
    canned: Path, command: str, report: dict[str, Any], summary: str
) -> None:
    code, out, err = run_cli(command, "t.toml", "--json", "r.json")
    assert code == 0, err
    assert json.loads((canned / "r.json").read_text()) == report
    assert out == f"{summary} summary\n"
