"""`edgesim run` and `edgesim validate` end to end on a small topology."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from helpers import run_cli, small_topology

from edgesim._topoload import parse_topology

SMALL = small_topology(name="small", seed=3, eu="languages = { de = 0.5, fr = 0.5 }")


def test_run_writes_every_report_deterministically(tmp_path: Path) -> None:
    topo = tmp_path / "small.toml"
    topo.write_text(SMALL)
    code, _, err = run_cli(
        "run",
        str(topo),
        "--quiet",
        "--json",
        str(tmp_path / "a.json"),
        "--csv",
        str(tmp_path / "csv"),
        "--html",
        str(tmp_path / "r.html"),
    )
    assert code == 0, err
    report = json.loads((tmp_path / "a.json").read_text())
    assert report["meta"]["topology"] == "small" and report["meta"]["seed"] == 3
    assert report["meta"]["edgesim_version"] and "small.example" in report["meta"]["topology_text"]
    assert report["meta"]["partial"] is False
    assert report["totals"]["requests"] > 1000
    assert 0 < report["totals"]["object_hit_ratio"] < 1
    assert set(report["regions"]) == {"eu", "us"}
    code, _, _ = run_cli("run", str(topo), "--quiet", "--json", str(tmp_path / "b.json"))
    assert code == 0
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    code, _, _ = run_cli("run", str(topo), "--quiet", "--seed", "4", "--json", str(tmp_path / "c.json"))
    assert (tmp_path / "a.json").read_bytes() != (tmp_path / "c.json").read_bytes()
    rows = list(csv.DictReader((tmp_path / "csv" / "summary.csv").open()))
    assert {r["kind"] for r in rows} == {"total", "region", "site", "node"}
    assert all(r["seed"] == "3" and r["topology"] == "small" for r in rows)
    series = list(csv.DictReader((tmp_path / "csv" / "timeseries.csv").open()))
    assert len(series) == 8
    html = (tmp_path / "r.html").read_text()
    assert html.count("<svg") == 4 and "small.example" in html and "<script src" not in html


def test_run_prints_tables(tmp_path: Path) -> None:
    topo = tmp_path / "small.toml"
    topo.write_text(SMALL)
    code, out, _ = run_cli("run", str(topo))
    assert code == 0
    assert "Regions" in out and "Nodes" in out and "Origin:" in out
    assert "window" not in out.splitlines()[0]


def test_run_summary_says_how_the_run_was_cut(tmp_path: Path) -> None:
    # a window and a rate scale make a different run than the file's: the first line says so
    topo = tmp_path / "small[1].toml"  # rich markup in a name is printed as it is
    topo.write_text(SMALL.replace('name = "small"', 'name = "small[1]"'))
    code, out, _ = run_cli("run", str(topo), "--window", "60s,30s", "--rate-scale", "0.5")
    assert code == 0
    head = out.splitlines()[0]
    assert head.startswith("small[1] seed ")
    assert "window 60-90 s of the traffic curve, arrival rates scaled by 0.5" in head


def test_run_reports_a_regions_failover_in_every_output(tmp_path: Path) -> None:
    # us's only node is down from 60 s to 120 s: after the health check its clients go
    # to eu, 70 ms away
    topo = tmp_path / "small.toml"
    topo.write_text(
        SMALL
        + '[network.region_latency]\neu = { us = "70ms" }\n'
        + '[faults]\n[[faults.crashes]]\nregion = "us"\nnode = 0\nat = "60s"\ndown_for = "60s"\n'
    )
    code, out, err = run_cli(
        "run",
        str(topo),
        "--json",
        str(tmp_path / "r.json"),
        "--csv",
        str(tmp_path / "csv"),
        "--html",
        str(tmp_path / "r.html"),
    )
    assert code == 0, err
    report = json.loads((tmp_path / "r.json").read_text())
    moved = report["regions"]["us"]["clients_failed_over"]
    assert moved > 500  # about 0.4 x 40/s x 55 s
    assert report["regions"]["eu"]["failovers"] == report["totals"]["failovers"] == moved
    line = f"Cross-region failover: clients of us ({moved:,} requests) answered by another region's nodes"
    assert line in " ".join(out.split())
    assert line.replace("'", "&#x27;") in (tmp_path / "r.html").read_text()
    rows = {r["name"]: r for r in csv.DictReader((tmp_path / "csv" / "summary.csv").open())}
    assert rows["eu"]["failovers"] == str(moved) and rows["us"]["failovers"] == "0"
    assert rows["us"]["clients_failed_over"] == str(moved) and rows["eu"]["clients_failed_over"] == "0"
    assert rows["us"]["clients_failed"] == str(report["regions"]["us"]["clients_failed"])
    assert rows["all"]["clients_failed"] == ""  # a region column
    series = list(csv.DictReader((tmp_path / "csv" / "timeseries.csv").open()))
    assert sum(int(r["failovers"]) for r in series) == moved  # all after the warm-up
    # without a latency to another region, the requests fail instead
    topo.write_text(topo.read_text().replace('eu = { us = "70ms" }', ""))
    code, out, _ = run_cli("run", str(topo), "--json", str(tmp_path / "r.json"))
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["totals"]["failovers"] == 0 and report["regions"]["us"]["failed"] > 500
    assert report["regions"]["us"]["clients_failed"] == report["regions"]["us"]["failed"]
    assert "Cross-region failover" not in out


def test_json_dash_is_standard_output_with_the_summary_on_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    topo = tmp_path / "small.toml"
    topo.write_text(SMALL)
    code, out, err = run_cli("run", str(topo), "--json", "-")
    assert code == 0, err
    assert not (tmp_path / "-").exists()
    # standard output is the report alone, the same bytes as --json FILE
    assert json.loads(out)["meta"]["topology"] == "small"
    assert run_cli("run", str(topo), "--quiet", "--json", str(tmp_path / "r.json"))[0] == 0
    assert out == (tmp_path / "r.json").read_text()
    assert "Regions" in err and "Nodes" in err and "Origin:" in err


def test_edge_processes_json_dash_is_standard_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The drill itself is tests/integration/test_drill.py; here where its report goes."""
    import edgesim.drill

    async def fake_drill(
        topo: object, opts: object, progress: object = None, on_interrupt: object = None
    ) -> dict[str, object]:
        return {"topology": "small", "restarts": []}

    monkeypatch.setattr(edgesim.drill, "run_drill", fake_drill)
    monkeypatch.setattr(edgesim.drill, "summary_lines", lambda report: ["drill small: summary"])
    monkeypatch.chdir(tmp_path)
    topo = tmp_path / "small.toml"
    topo.write_text(SMALL)
    code, out, err = run_cli("run", str(topo), "--mode", "live", "--edge-processes", "--json", "-")
    assert code == 0, err
    assert json.loads(out) == {"topology": "small", "restarts": []}
    assert "drill small: summary" in err
    assert not (tmp_path / "-").exists()


def test_run_bad_topology_lists_problems(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(SMALL.replace("nodes = 2", "nodes = 0").replace("peak_rps = 40", "peak_rps = -1"))
    code, _, err = run_cli("run", str(bad), "--quiet")
    assert code == 1
    assert "regions[0].edge.nodes" in err and "traffic.peak_rps" in err
    assert "Traceback" not in err
    code, _, err = run_cli("run", str(tmp_path / "missing.toml"), "--quiet")
    assert code == 1 and "missing.toml" in err and "Traceback" not in err
    code, out, _ = run_cli("validate", str(bad))
    assert code == 1 and "regions[0].edge.nodes" in out


def test_trace_problems_are_one_line_each(tmp_path: Path) -> None:
    topo = tmp_path / "t.toml"
    topo.write_text(SMALL.replace("peak_rps = 40", 'trace = "t.csv"'))
    (tmp_path / "t.csv").write_text("time,key,size,region,site\n1,x,10,mars,small.example\n")
    code, out, _ = run_cli("validate", str(topo))
    assert code == 1
    assert out.strip() == (
        f"{tmp_path / 't.csv'}: region 'mars' is not a region of the topology (expected one of: eu, us)"
    )
    code, _, err = run_cli("run", str(topo), "--quiet")
    assert code == 1 and "region 'mars'" in err and "Traceback" not in err
    (tmp_path / "t.csv").write_text("time,key,size\n1,x,10\n2,y,-3\n")
    code, out, _ = run_cli("validate", str(topo))
    assert code == 1 and f"{tmp_path / 't.csv'}:3" in out and "Traceback" not in out


def test_validate_reports_the_errors_of_the_rule_files_a_topology_names(tmp_path: Path) -> None:
    (tmp_path / "_redirects").write_text("/a /b 301\n/broken\n/x /y 999\n")
    topo = tmp_path / "t.toml"
    topo.write_text(SMALL.replace("[sites.catalog]", 'rules = "_redirects"\n\n[sites.catalog]', 1))
    code, out, _ = run_cli("validate", str(topo))
    assert code == 1
    lines = out.strip().splitlines()
    assert lines == [
        f'{tmp_path / "_redirects"}:2:1: error: "/broken" has no target [MISSING_TO]',
        f"{tmp_path / '_redirects'}:3:7: error: status 999 is outside 200-299, 301-303, 307, 308, "
        "400-599 [BAD_STATUS]",
    ]
    # the same file named again, by a [shadow]: its errors once, not once per naming
    shadow = '\n[shadow]\ncandidate = "rules"\n[shadow.rules]\n"SITE" = "_redirects"\n'
    text = topo.read_text()
    topo.write_text(text + shadow.replace("SITE", parse_topology(text, path=str(topo)).sites[0].name))
    code, out, _ = run_cli("validate", str(topo))
    assert code == 1 and out.strip().splitlines() == lines
    (tmp_path / "_redirects").write_text("/a /b 301\n")
    code, out, _ = run_cli("validate", str(topo))
    assert code == 0 and out.strip().endswith("ok (2 regions, 3 nodes, 1 site)")


def test_validate_reports_a_bad_trace_and_bad_rules_together(tmp_path: Path) -> None:
    # the trace's problem used to hide the rule files' (validate moved on to the next file)
    (tmp_path / "_redirects").write_text("/a /b 301\n/broken\n")
    (tmp_path / "t.csv").write_text("time,key,size\n1,x,10\n2,y,-3\n")
    topo = tmp_path / "t.toml"
    text = SMALL.replace("[sites.catalog]", 'rules = "_redirects"\n\n[sites.catalog]', 1)
    topo.write_text(text.replace("[traffic]", '[traffic]\ntrace = "t.csv"', 1))
    code, out, _ = run_cli("validate", str(topo))
    assert code == 1
    assert out.strip().splitlines() == [
        f"{topo}: traffic.trace: {tmp_path / 't.csv'}:3: size '-3' is negative",
        f'{tmp_path / "_redirects"}:2:1: error: "/broken" has no target [MISSING_TO]',
    ]
