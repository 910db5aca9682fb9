"""`edgesim sweep`: grids on a real process pool and on a Dask cluster on loopback,
resuming, retry-once with workers that fail or die, and bad specs."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import pytest
import sweep_runners
from helpers import run_cli

from edgesim._topoload import parse_topology
from edgesim.engine import simulate
from edgesim.sweep import Outputs, SweepError, load_spec, metrics, plan, run_sweep

# A tiny topology: one region, one site; 40 s of traffic at 40 req/s (~1,500 requests).
TINY = """
name = "tiny"
interval = "10s"

[[regions]]
name = "eu"
[regions.edge]
nodes = 1
workers = 4
cost_per_hour = 0.5

[[sites]]
name = "a.example"
[sites.catalog]
objects = 200

[traffic]
duration = "1m"
warmup = "5s"
peak_rps = 40
"""

SPEC = """
topology = "tiny.toml"
seeds = [1, 2]

[grid]
regions.eu.edge.nodes = [1, 2]

[set]
traffic.duration = "40s"
"""


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    (tmp_path / "tiny.toml").write_text(TINY)
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    return spec


@pytest.fixture
def marks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "marks"
    d.mkdir()
    monkeypatch.setenv(sweep_runners.MARKS, str(d))
    return d


def _direct(spec_file: Path, nodes: int, seed: int) -> dict[str, Any]:
    """The same run in this process, without the sweep."""
    text = (spec_file.parent / "tiny.toml").read_text().replace("nodes = 1", f"nodes = {nodes}")
    text = text.replace('duration = "1m"', 'duration = "40s"')
    topo = parse_topology(text, path=spec_file.parent / "tiny.toml")
    return metrics(simulate(topo, seed=seed).to_dict(deterministic=True), topo)


def _without_wall(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "wall_seconds"} for r in rows]


def test_process_pool_sweep_has_a_row_per_run_equal_to_direct_runs(spec_file: Path, tmp_path: Path) -> None:
    out = Outputs(tmp_path / "s.csv", tmp_path / "s.json")
    result = run_sweep(load_spec(spec_file), workers=2, outputs=out)
    assert (result.ran, result.kept, result.failed) == (4, 0, 0)
    rows = result.rows
    assert [(r["regions.eu.edge.nodes"], r["seed"]) for r in rows] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert all(r["status"] == "ok" and r["attempts"] == 1 for r in rows)
    for r in rows:
        direct = _direct(spec_file, r["regions.eu.edge.nodes"], r["seed"])
        assert {k: r[k] for k in direct} == direct
    # two nodes at 0.5 per hour for 40 s
    assert rows[2]["cost"] == pytest.approx(2 * 0.5 * 40 / 3600, abs=1e-6)
    assert rows[0]["p99_ms"] > 0 and rows[0]["requests"] > 1000
    doc = json.loads((tmp_path / "s.json").read_text())
    assert doc["sweep"]["parameters"] == ["regions.eu.edge.nodes"]
    assert _without_wall(doc["rows"]) == _without_wall(rows)
    with (tmp_path / "s.csv").open() as f:
        table = list(csv.DictReader(f))
    assert [t["run_id"] for t in table] == [r["run_id"] for r in rows]
    assert table[3]["p99_ms"] == str(rows[3]["p99_ms"])


def test_dask_local_cluster_gives_the_same_rows(spec_file: Path, tmp_path: Path) -> None:
    pytest.importorskip("distributed", reason="the dask extra is part of the test extra")
    local = run_sweep(load_spec(spec_file), workers=2)
    dask = run_sweep(
        load_spec(spec_file), executor="dask-local", workers=2, outputs=Outputs(None, tmp_path / "d.json")
    )
    assert dask.failed == 0
    assert _without_wall(dask.rows) == _without_wall(local.rows)


def test_resume_keeps_finished_rows_and_runs_only_the_rest(
    spec_file: Path, tmp_path: Path, marks: Path
) -> None:
    out = Outputs(tmp_path / "s.csv", None)
    spec = load_spec(spec_file)

    def stop_after_two(row: dict[str, Any], done: int, total: int) -> None:
        if done == 2:
            raise KeyboardInterrupt  # as Ctrl-C in the parent while runs are in flight

    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, workers=1, outputs=out, on_row=stop_after_two)
    with (tmp_path / "s.csv").open() as f:
        kept = list(csv.DictReader(f))
    assert len(kept) == 2 and all(r["status"] == "ok" for r in kept)

    result = run_sweep(spec, workers=2, outputs=out, runner=sweep_runners.record)
    assert (result.kept, result.ran) == (2, 2)
    ran = sorted(p.name for p in marks.iterdir())
    finished = {(int(r["regions.eu.edge.nodes"]), int(r["seed"])) for r in kept}
    expected = sorted(f"ran-nodes{n}-seed{s}" for n in (1, 2) for s in (1, 2) if (n, s) not in finished)
    assert ran == expected
    fresh = run_sweep(spec, workers=2)
    assert _without_wall(result.rows) == _without_wall(fresh.rows)
    # a third run has nothing left to do
    again = run_sweep(spec, workers=2, outputs=out, runner=sweep_runners.die_on_two_nodes)
    assert (again.kept, again.ran, again.failed) == (4, 0, 0)


def test_a_dead_worker_is_retried_once_then_reported(spec_file: Path, tmp_path: Path, marks: Path) -> None:
    spec = load_spec(spec_file)
    once = run_sweep(spec, workers=2, runner=sweep_runners.die_once)
    assert once.failed == 0
    assert [(r["regions.eu.edge.nodes"], r["attempts"]) for r in once.rows] == [
        (1, 1),
        (1, 1),
        (2, 2),
        (2, 2),
    ]

    out = Outputs(None, tmp_path / "s.json")
    always = run_sweep(spec, workers=2, runner=sweep_runners.die_on_two_nodes, outputs=out)
    assert always.failed == 2
    by_nodes = {(r["regions.eu.edge.nodes"], r["seed"]): r for r in always.rows}
    for seed in (1, 2):
        assert by_nodes[(1, seed)]["status"] == "ok"
        failed = by_nodes[(2, seed)]
        assert (failed["status"], failed["attempts"], failed["error"]) == ("failed", 2, "worker process died")
        assert "p99_ms" not in failed
    assert len(json.loads((tmp_path / "s.json").read_text())["rows"]) == 4

    raised = run_sweep(spec, workers=1, runner=sweep_runners.raise_on_two_nodes)
    errors = {r["error"] for r in raised.rows if r["status"] == "failed"}
    assert errors == {"RuntimeError: deliberate failure"}


def test_dask_retries_a_killed_worker_once(spec_file: Path, marks: Path) -> None:
    pytest.importorskip("distributed", reason="the dask extra is part of the test extra")
    spec = load_spec(spec_file)
    result = run_sweep(spec, executor="dask-local", workers=2, runner=sweep_runners.die_on_two_nodes)
    failed = [r for r in result.rows if r["status"] == "failed"]
    assert [(r["regions.eu.edge.nodes"], r["attempts"], r["error"]) for r in failed] == [
        (2, 2, "worker process died"),
        (2, 2, "worker process died"),
    ]
    assert sum(r["status"] == "ok" for r in result.rows) == 2


# ---- bad input ------------------------------------------------------------------------


def test_spec_problems_are_one_line_each_with_file_line_and_key_path(spec_file: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('topology = "tiny.toml"\nseed = [1]\n[grid]\nregions.eu.edge.nodes = [2]\n')
    code, _, err = run_cli("sweep", str(bad))
    assert code == 1
    assert err.strip() == f'{bad}:2: seed: unknown key (did you mean "seeds"?)'

    bad.write_text(
        'topology = "tiny.toml"\n[grid]\nregions.eu.edge.nodes = [1, 0]\ntraffic.peak_rsp = [3]\n'
        "regions.us.edge.nodes = [1]\n"
    )
    code, _, err = run_cli("sweep", str(bad))
    assert code == 1
    assert (
        err.strip() == f"{bad}:5: grid.regions.us.edge.nodes: "
        'regions has no element named "us" (names: eu); use a name or an index from 0'
    )
    bad.write_text('topology = "tiny.toml"\n[grid]\nregions.eu.edge.nodes = [1, 0]\ntraffic.peak_rsp = [3]\n')
    code, _, err = run_cli("sweep", str(bad))
    assert code == 1
    assert err.splitlines() == [
        f"{bad}:3: grid.regions.eu.edge.nodes: value 0: regions[0].edge.nodes: "
        "expected a whole number from 1 to 10000, got 0",
        f'{bad}:4: grid.traffic.peak_rsp: value 3: traffic.peak_rsp: unknown key (did you mean "peak_rps"?)',
    ]
    # a typo in a key path of several values: one line, not one a value (and a value
    # that is bad on its own is still named)
    bad.write_text(
        'topology = "tiny.toml"\n[grid]\ntraffic.peak_rsp = [3, 4, 5]\nregions.eu.edge.nodes = [1, 2]\n'
        'traffic.warmup = ["1s", "1m", "2m"]\n'
    )
    code, _, err = run_cli("sweep", str(bad))
    assert code == 1
    assert err.splitlines() == [
        f'{bad}:3: grid.traffic.peak_rsp: traffic.peak_rsp: unknown key (did you mean "peak_rps"?)',
        f'{bad}:5: grid.traffic.warmup: value "1m": traffic.warmup: expected less than traffic.duration '
        '(60s), got "1m"',
        f'{bad}:5: grid.traffic.warmup: value "2m": traffic.warmup: expected less than traffic.duration '
        '(60s), got "2m"',
    ]
    # a key path through a table the topology does not have: the spec's line, not the
    # topology's (the table was made by the setting)
    bad.write_text('topology = "tiny.toml"\n[grid]\nregions.eu.edge.cache.size = [1]\n')
    code, _, err = run_cli("sweep", str(bad))
    assert code == 1
    assert err.strip() == (
        f"{bad}:3: grid.regions.eu.edge.cache.size: value 1: regions[0].edge.cache: "
        'unknown key (did you mean "disk_cache"?)'
    )
    # one key by its name and by its index: a grid of two values for one key, silently
    bad.write_text(
        'topology = "tiny.toml"\n[grid]\nregions.eu.edge.nodes = [1]\nregions.0.edge.nodes = [2]\n'
    )
    code, _, err = run_cli("sweep", str(bad))
    assert code == 1
    assert err.strip() == (
        f"{bad}:4: grid.regions.0.edge.nodes: sets regions[0].edge.nodes, as grid.regions.eu.edge.nodes "
        "(line 3) does: name each key once"
    )
    bad.write_text('topology = "nope.toml"\n[grid]\nseed = 3\n')
    code, _, err = run_cli("sweep", str(bad))
    assert err.splitlines() == [
        f"{bad}:1: topology: nope.toml is neither a file (relative to {tmp_path}) nor a bundled topology",
        f"{bad}:3: grid.seed: expected a non-empty array of values to try, got 3",
    ]


def test_problems_a_value_causes_elsewhere_name_the_spec_line_and_value(
    spec_file: Path, tmp_path: Path
) -> None:
    topo = tmp_path / "tiny.toml"
    bad = tmp_path / "bad.toml"
    # a grid value that makes another key of the topology wrong (interval = "10s" is
    # line 3 of the topology): the spec's line, key path and value, then the topology's
    # problem; the cell of "40s" has none
    bad.write_text('topology = "tiny.toml"\n[grid]\ntraffic.duration = ["8s", "40s"]\n')
    code, _, err = run_cli("sweep", str(bad))
    assert code == 1
    assert err.splitlines() == [
        f'{bad}:3: grid.traffic.duration: value "8s": {topo}:3: interval: '
        'expected at most traffic.duration (8s), got "10s"'
    ]
    # the same from [set]
    bad.write_text(
        'topology = "tiny.toml"\n[grid]\nregions.eu.edge.nodes = [1]\n[set]\ntraffic.duration = "8s"\n'
    )
    code, _, err = run_cli("sweep", str(bad))
    assert code == 1
    assert err.splitlines() == [
        f'{bad}:5: set.traffic.duration: value "8s": {topo}:3: interval: '
        'expected at most traffic.duration (8s), got "10s"'
    ]
    # a problem at a key the spec set that another value of the cell is needed for: both
    bad.write_text(
        'topology = "tiny.toml"\n[grid]\ntraffic.duration = ["40s", "2m"]\n[set]\ntraffic.warmup = "50s"\n'
    )
    code, _, err = run_cli("sweep", str(bad))
    assert code == 1
    assert err.splitlines() == [
        f'{bad}:5: set.traffic.warmup: value "50s", with grid.traffic.duration = "40s" (line 3): '
        'traffic.warmup: expected less than traffic.duration (40s), got "50s"'
    ]
    # a problem the topology has on its own is told as it is, once
    topo.write_text(TINY.replace('interval = "10s"', 'interval = "2m"'))
    bad.write_text('topology = "tiny.toml"\n[grid]\nregions.eu.edge.nodes = [1, 0]\n')
    code, _, err = run_cli("sweep", str(bad))
    assert code == 1
    assert err.splitlines() == [
        f'{topo}:3: interval: expected at most traffic.duration (60s), got "2m"',
        f"{bad}:3: grid.regions.eu.edge.nodes: value 0: regions[0].edge.nodes: "
        "expected a whole number from 1 to 10000, got 0",
    ]


def test_a_value_twice_in_a_grid_is_refused(spec_file: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('topology = "tiny.toml"\n[grid]\nregions.eu.edge.nodes = [2, 1, 2]\n')
    code, _, err = run_cli("sweep", str(bad))
    assert code == 1
    assert err.splitlines() == [
        f"{bad}:3: grid.regions.eu.edge.nodes: expected an array of distinct values to try, "
        "got 2 more than once"
    ]
    # equal as TOML values: numbers by value, tables whatever their key order; strings
    # by their text (not read as durations here)
    bad.write_text(
        'topology = "tiny.toml"\n[grid]\n'
        'sites."a.example".redirect_share = [0, 0.1, 0.0, 0.1]\n'
        'regions.eu.edge.service_time = [{ median = "1ms", sigma = 0.5 }, { sigma = 0.5, median = "1ms" }]\n'
        'traffic.duration = ["1m", "60s"]\n'
        "regions.eu.edge.nodes = [1, true]\n"
    )
    with pytest.raises(SweepError) as caught:
        load_spec(bad)
    assert [str(p) for p in caught.value.problems] == [
        f'{bad}:3: grid.sites."a.example".redirect_share: expected an array of distinct values to try, '
        "got each of 0, 0.1 more than once",
        f"{bad}:4: grid.regions.eu.edge.service_time: expected an array of distinct values to try, "
        'got {"median": "1ms", "sigma": 0.5} more than once',
    ]


def test_cli_writes_rows_resumes_and_refuses_foreign_files(spec_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, _, err = run_cli("sweep", str(spec_file), "--out", str(out), "--workers", "2")
    assert code == 0, err
    assert "4 runs: 4 run now, 0 kept" in err
    code, _, err = run_cli("sweep", str(spec_file), "--out", str(out), "--workers", "2", "--quiet")
    assert code == 0 and err == ""
    assert len(json.loads((out / "sweep.json").read_text())["rows"]) == 4
    foreign = tmp_path / "notes.csv"
    foreign.write_text("a,b\n1,2\n")
    code, _, err = run_cli("sweep", str(spec_file), "--csv", str(foreign))
    assert code == 1
    assert (
        err.strip() == f"{foreign}: exists and is not a sweep result file (CSV with a run_id column); "
        "choose another output or delete it"
    )
    assert foreign.read_text() == "a,b\n1,2\n"
    code, _, err = run_cli("sweep", str(spec_file), "--executor", "udp://x")
    assert code == 2 and "expected local, dask-local or tcp://HOST:PORT" in err


def test_a_run_that_fails_twice_is_reported_and_the_exit_status_says_so(
    spec_file: Path, tmp_path: Path
) -> None:
    # The rule file exists (validation passes) but is not UTF-8: the run itself fails.
    (tmp_path / "r.toml").write_bytes(b"\xff\xfe")
    (tmp_path / "tiny.toml").write_text(
        TINY.replace('name = "a.example"', 'name = "a.example"\nrules = "r.toml"\nredirect_share = 0.1')
    )
    code, _, err = run_cli("sweep", str(spec_file), "--json", str(tmp_path / "s.json"), "--workers", "2")
    assert code == 1
    assert "4 runs failed twice" in err
    rows = json.loads((tmp_path / "s.json").read_text())["rows"]
    assert [r["status"] for r in rows] == ["failed"] * 4
    assert all(r["attempts"] == 2 and "UnicodeDecodeError" in r["error"] for r in rows)


def test_plan_orders_cells_and_seeds(spec_file: Path) -> None:
    runs = plan(load_spec(spec_file))
    assert [(dict(r.params)["regions.eu.edge.nodes"], r.seed) for r in runs] == [
        (1, 1),
        (1, 2),
        (2, 1),
        (2, 2),
    ]
    assert len({r.run_id for r in runs}) == 4
    with pytest.raises(SweepError):
        load_spec(spec_file.parent / "missing.toml")


def test_a_killed_sweep_keeps_every_finished_row_and_resumes(spec_file: Path, tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    spec_file.write_text(SPEC.replace("seeds = [1, 2]", "seeds = 6"))
    out = tmp_path / "out"
    cmd = [sys.executable, "-P", "-m", "edgesim", "sweep", str(spec_file), "--out", str(out)]
    proc = subprocess.Popen(
        [*cmd, "--workers", "1", "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the kill takes its workers too
    )
    rows: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if (out / "sweep.json").exists():
                rows = json.loads((out / "sweep.json").read_text())["rows"]  # never half-written
                if len(rows) >= 2:
                    break
            time.sleep(0.01)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert len(rows) >= 2
    kept = json.loads((out / "sweep.json").read_text())["rows"]
    with (out / "sweep.csv").open() as f:
        in_csv = [r["run_id"] for r in csv.DictReader(f)]
    # each file is whole; the kill may fall between the two writes (JSON is written first)
    assert set(in_csv) <= {r["run_id"] for r in kept} and len(kept) - len(in_csv) in (0, 1)
    result = run_sweep(
        load_spec(spec_file), workers=2, outputs=Outputs(out / "sweep.csv", out / "sweep.json")
    )
    assert result.kept == len(kept) and result.ran == 12 - len(kept) and result.failed == 0
    assert [r["run_id"] for r in result.rows] == [r.run_id for r in plan(load_spec(spec_file))]


def _children(pid: int) -> dict[int, str]:
    """The processes whose parent is ``pid`` and their descendants, each with its start
    time (from /proc: a pid reused later has another)."""
    parents: dict[int, tuple[int, str]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        parents[int(stat.parent.name)] = (int(fields[1]), fields[19])
    found: dict[int, str] = {}
    todo = [pid]
    while todo:
        parent = todo.pop()
        for child, (ppid, start) in parents.items():
            if ppid == parent and child not in found:
                found[child] = start
                todo.append(child)
    return found


def _running(pid: int, start: str) -> bool:
    """Whether process ``pid`` that started at ``start`` still runs (a zombie does not)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[19] == start and fields[0] != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the workers in /proc")
@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
def test_sigterm_or_sighup_stops_a_sweep_as_ctrl_c_does_and_ends_its_workers(
    spec_file: Path, tmp_path: Path, signame: str
) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    spec_file.write_text(SPEC.replace("seeds = [1, 2]", "seeds = 6"))
    out = tmp_path / "out"
    err_file = tmp_path / "err.txt"
    cmd = [sys.executable, "-P", "-m", "edgesim", "sweep", str(spec_file), "--out", str(out)]
    with err_file.open("w") as err:
        proc = subprocess.Popen(
            [*cmd, "--workers", "2", "--quiet"],
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,  # the signal goes to the sweep alone, not to this group
        )
    workers: dict[int, str] = {}
    rows: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            workers.update(_children(proc.pid))
            if (out / "sweep.json").exists():
                rows = json.loads((out / "sweep.json").read_text())["rows"]
                if rows:
                    break
            time.sleep(0.01)
        assert rows and proc.poll() is None, "no row within 30 s, or the sweep ended first"
        workers.update(_children(proc.pid))
        # two pool workers and the resource tracker
        assert len(workers) >= 3
        proc.send_signal(getattr(signal, signame))
        code = proc.wait(timeout=30)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_running(p, s) for p, s in workers.items()):
            time.sleep(0.05)
        left = [p for p, s in workers.items() if _running(p, s)]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for p, s in workers.items():  # whatever the sweep left behind (the old behaviour)
            if _running(p, s):
                os.kill(p, signal.SIGKILL)
    assert code == 130  # as after Ctrl-C
    assert err_file.read_text().strip() == (
        "sweep interrupted: finished rows are in the output files; rerun to resume"
    )
    assert left == []
    kept = json.loads((out / "sweep.json").read_text())["rows"]
    assert len(rows) <= len(kept) < 12 and all(r["status"] == "ok" for r in kept)
    assert {r["run_id"] for r in rows} <= {r["run_id"] for r in kept}
    with (out / "sweep.csv").open() as f:
        in_csv = [r["run_id"] for r in csv.DictReader(f)]
    # the signal may fall between the two writes (JSON is written first)
    assert set(in_csv) <= {r["run_id"] for r in kept} and len(kept) - len(in_csv) in (0, 1)


def test_out_files_that_cannot_be_results_are_refused_before_anything_runs(
    spec_file: Path, tmp_path: Path
) -> None:
    import os
    import subprocess
    import sys

    # a folder where --out's CSV goes: said of --out (it was "not a sweep result file")
    folder = tmp_path / "folder"
    (folder / "sweep.csv").mkdir(parents=True)
    code, _, err = run_cli("sweep", str(spec_file), "--out", str(folder), "--quiet")
    assert code == 2 and "Invalid value for '--out'" in err and "sweep.csv' is a directory" in err
    # a FIFO where --out's JSON goes: reading it back to resume never ended
    fifo = tmp_path / "fifo"
    fifo.mkdir()
    os.mkfifo(fifo / "sweep.json")
    cmd = [sys.executable, "-P", "-m", "edgesim", "sweep", str(spec_file), "--out", str(fifo), "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert f"{fifo / 'sweep.json'} is not a regular file (results are written as files)" in done.stderr
    assert "Traceback" not in done.stderr
    # the library refuses them too, before any run
    with pytest.raises(SweepError) as caught:
        run_sweep(load_spec(spec_file), workers=1, outputs=Outputs(None, fifo / "sweep.json"))
    assert str(caught.value) == (
        f"{fifo / 'sweep.json'}: is not a regular file (results are written as files); choose another output"
    )


def test_output_files_always_describe_the_spec_of_the_last_command(spec_file: Path, tmp_path: Path) -> None:
    out = Outputs(tmp_path / "s.csv", tmp_path / "s.json")
    first = run_sweep(load_spec(spec_file), workers=2, outputs=out)
    # fewer seeds: nothing left to run, the files are still rewritten for this spec, its
    # rows first in its plan order, the other sweep's rows after them
    spec_file.write_text(SPEC.replace("seeds = [1, 2]", "seeds = [2]"))
    spec = load_spec(spec_file)
    again = run_sweep(spec, workers=2, outputs=out, runner=sweep_runners.die_on_two_nodes)
    assert (again.ran, again.kept, again.foreign) == (0, 2, 2)
    doc = json.loads((tmp_path / "s.json").read_text())
    assert (doc["sweep"]["seeds"], doc["sweep"]["runs"]) == ([2], 2)
    planned = [r.run_id for r in plan(spec)]
    others = [r["run_id"] for r in first.rows if r["run_id"] not in planned]
    assert [r["run_id"] for r in doc["rows"]] == planned + others
    with (tmp_path / "s.csv").open() as f:
        assert [r["run_id"] for r in csv.DictReader(f)] == planned + others


def test_an_empty_output_file_holds_no_rows_yet(spec_file: Path, tmp_path: Path) -> None:
    # --csv "$(mktemp)": an empty file is not another program's file (it was refused)
    empty = tmp_path / "made-by-mktemp.csv"
    empty.write_text("")
    result = run_sweep(load_spec(spec_file), workers=2, outputs=Outputs(empty, None))
    assert (result.ran, result.kept, result.failed) == (4, 0, 0)
    with empty.open() as f:
        assert [r["status"] for r in csv.DictReader(f)] == ["ok"] * 4


# A grid over a site's rule file: every request half on a static redirect's source.
RULES_SPEC = """
topology = "tiny.toml"
seeds = [1]

[grid]
sites."a.example".rules = ["one/_redirects", "two/_redirects"]

[set]
sites."a.example".redirect_share = 0.5
traffic.duration = "40s"
"""


def _rows_by_rules(out: Path) -> dict[str, dict[str, Any]]:
    rows = json.loads((out / "sweep.json").read_text())["rows"]
    return {r['sites."a.example".rules']: r for r in rows[:2]}


def test_an_edited_rule_file_is_run_again_and_an_unchanged_one_keeps_its_rows(
    spec_file: Path, tmp_path: Path
) -> None:
    for name, target in (("one", "/page-1.html"), ("two", "/page-2.html")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "_redirects").write_text(f"/old {target} 301\n")
    spec_file.write_text(RULES_SPEC)
    out = tmp_path / "out"
    code, _, err = run_cli("sweep", str(spec_file), "--out", str(out), "--workers", "1")
    assert code == 0, err
    assert "2 runs: 2 run now, 0 kept" in err
    before = _rows_by_rules(out)
    # the redirect becomes a rewrite: no static redirect left for redirect_share to
    # request, so every request is for the catalog; two/_redirects is only touched
    edited = tmp_path / "one" / "_redirects"
    edited.write_text("/old /page-1.html 200\n")
    os.utime(tmp_path / "two" / "_redirects", (1, 1))
    code, _, err = run_cli("sweep", str(spec_file), "--out", str(out), "--workers", "1")
    assert code == 0, err
    assert "2 runs: 1 run now, 1 kept from the output files, 0 failed; 1 rows of other sweeps" in err
    after = _rows_by_rules(out)
    assert after["two/_redirects"] == before["two/_redirects"]  # the same row, wall time and all
    new, old = after["one/_redirects"], before["one/_redirects"]
    assert new["run_id"] != old["run_id"]
    assert new["status"] == "ok" and new["object_hit_ratio"] != old["object_hit_ratio"]
    # the rewrite's row is the one a fresh sweep of the edited file gives
    fresh = run_sweep(load_spec(spec_file), workers=1)
    assert _without_wall([after["one/_redirects"]]) == _without_wall(fresh.rows[:1])
    # the old row stays in the files: putting the rule back finds it again
    edited.write_text("/old /page-1.html 301\n")
    code, _, err = run_cli("sweep", str(spec_file), "--out", str(out), "--workers", "1")
    assert code == 0, err
    assert "2 runs: 0 run now, 2 kept" in err
    assert _rows_by_rules(out) == before


def test_an_edited_trace_is_run_again(spec_file: Path, tmp_path: Path) -> None:
    def trace(n: int) -> str:
        return "time,key,size\n" + "".join(f"{i * 0.05:.2f},k{i % 50},{1000 + i % 7}\n" for i in range(n))

    (tmp_path / "a.csv").write_text(trace(400))
    (tmp_path / "b.csv").write_text(trace(300))
    spec_file.write_text(
        SPEC.replace("seeds = [1, 2]", "seeds = [1]").replace(
            "regions.eu.edge.nodes = [1, 2]", 'traffic.trace = ["a.csv", "b.csv"]'
        )
    )
    out = Outputs(None, tmp_path / "s.json")
    first = run_sweep(load_spec(spec_file), workers=1, outputs=out)
    assert (first.ran, [r["requests"] for r in first.rows]) == (2, [300, 200])  # (5 s of warm-up)
    (tmp_path / "a.csv").write_text(trace(500))
    again = run_sweep(load_spec(spec_file), workers=1, outputs=out)
    assert (again.ran, again.kept, again.foreign) == (1, 1, 1)
    assert [r["requests"] for r in again.rows[:2]] == [400, 200]
    assert again.rows[1] == first.rows[1]


# Every kind of file a topology names: a cost file, rule files, a site folder, the
# shadow's candidate rules (a trace: above).
NAMED = """
name = "named"
[profiles.big]
calibration = "costs.toml"
[[regions]]
name = "eu"
edge = { profile = "big" }
[[sites]]
name = "a.example"
rules = "a/_redirects"
[[sites]]
name = "b.example"
directory = "b"
[shadow]
candidate = "rules"
[shadow.rules]
"a.example" = "a/_redirects.v2"
"""

COSTS = """
format = 1
[profiles.big]
machine = "test"
[profiles.big.service_time]
hit_memory = "2ms"
hit_disk = "4ms"
miss = "8ms"
revalidate = "16ms"
redirect = "1ms"
"""


@pytest.mark.parametrize(
    ("name", "old", "new"),
    [
        ("costs.toml", '"8ms"', '"9ms"'),
        ("a/_redirects", "/old", "/gone"),
        ("a/_redirects.v2", "/newer", "/newest"),
        ("b/docs/page.html", "hello", "hallo"),
    ],
)
def test_every_file_a_cell_names_is_in_its_run_id_by_content(
    tmp_path: Path, name: str, old: str, new: str
) -> None:
    (tmp_path / "t.toml").write_text(NAMED)
    (tmp_path / "costs.toml").write_text(COSTS)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "_redirects").write_text("/old /new 301\n")
    (tmp_path / "a" / "_redirects.v2").write_text("/old /newer 301\n")
    (tmp_path / "b" / "docs").mkdir(parents=True)
    (tmp_path / "b" / "docs" / "page.html").write_text("<p>hello</p>\n")
    spec = tmp_path / "spec.toml"
    spec.write_text('topology = "t.toml"\nseeds = 2\n[grid]\ntraffic.peak_rps = [10, 20]\n')

    def ids() -> list[str]:
        return [r.run_id for r in plan(load_spec(spec))]

    first = ids()
    assert len(set(first)) == 4
    edited = tmp_path / name
    text = edited.read_text()
    os.utime(edited, (1, 1))  # a new mtime, the same bytes
    assert ids() == first
    edited.write_text(text.replace(old, new))
    assert set(ids()).isdisjoint(first)
    edited.write_text(text)
    assert ids() == first
    if name.startswith("b/"):  # a folder's file names count too
        edited.rename(edited.with_name("other.html"))
        assert set(ids()).isdisjoint(first)


def test_the_run_id_covers_the_edgesim_version(spec_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import edgesim.sweep

    first = [r.run_id for r in plan(load_spec(spec_file))]
    monkeypatch.setattr(edgesim.sweep, "__version__", "0.0.0+older")
    assert {r.run_id for r in plan(load_spec(spec_file))}.isdisjoint(first)


def test_a_file_a_cell_names_that_is_missing_at_planning_stops_the_sweep(
    spec_file: Path, tmp_path: Path
) -> None:
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "_redirects").write_text("/old /page-1.html 301\n")
    spec_file.write_text(RULES_SPEC)
    out = tmp_path / "out"
    code, _, err = run_cli("sweep", str(spec_file), "--out", str(out))
    assert code == 1
    assert err.strip() == (
        f'{spec_file}:6: grid.sites."a.example".rules: value "two/_redirects": sites[0].rules: '
        f"two/_redirects does not exist (paths are relative to {tmp_path})"
    )
    assert not (out / "sweep.json").exists()  # nothing ran, nothing was written
