"""The two other ways to run a topology, checked against the capacity engine.

* ``--engine trio``: the real edge and origin shells on Trio's mock clock must agree
  with the fast engine on ``demo`` (hit ratio within 0.01, origin requests/s within 5%).
* ``--mode live``: an origin process, edges on loopback and a load-generator process
  must agree with a virtual run of the same window, rate and seed (hit ratio within
  0.02, origin requests/s within 10%), and record every request.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from helpers import alive_pids, descendants

from edgesim._topoload import load_topology, resolve_topology_arg
from edgesim._traffic import ArrivalStream, window_topology
from edgesim.engine import simulate
from edgesim.live import FleetResults, InProcessEdges, LiveError, auto_rate_scale, run_live
from edgesim.topology import (
    Deploy,
    FlashCrowd,
    LatencySpike,
    NodeCrash,
    OriginOutage,
    ShadowSpec,
    Topology,
)
from edgesim.trioengine import simulate_trio


def _demo() -> Topology:
    return load_topology(resolve_topology_arg("demo"))


def _shape(d: Any, depth: int = 0) -> Any:
    """The keys of a report, two levels deep (dicts keyed by name are kept whole)."""
    if isinstance(d, dict) and depth < 2:
        return {k: _shape(v, depth + 1) for k, v in d.items()}
    return type(d).__name__ if not isinstance(d, dict) else sorted(d)


@pytest.mark.slow
def test_trio_engine_agrees_with_the_fast_engine_on_demo() -> None:
    # 30 s of demo's evening traffic at full rate: about 5,400 requests, cold caches.
    topo = window_topology(_demo(), 600, 30)
    fast = simulate(topo, seed=1).report
    trio = simulate_trio(topo, seed=1).report
    assert trio["meta"]["engine"] == "trio"
    assert trio["meta"]["simulated_requests"] == fast["meta"]["simulated_requests"] > 4000
    assert trio["totals"]["requests"] == fast["totals"]["requests"]
    assert trio["totals"]["failed"] == trio["totals"]["errors"] == 0
    assert abs(trio["totals"]["object_hit_ratio"] - fast["totals"]["object_hit_ratio"]) <= 0.01
    fo, to = fast["origin"]["requests_per_second"], trio["origin"]["requests_per_second"]
    assert abs(to - fo) <= 0.05 * fo
    # The modelled latencies and service times reach the shells.
    for pct in ("p50", "p95"):
        ft, tt = fast["totals"]["latency"][pct], trio["totals"]["latency"][pct]
        assert abs(tt - ft) <= 0.1 * ft
    assert _shape(trio) == _shape(fast)


def test_trio_engine_carries_out_deploys_outages_spikes_and_flash_crowds() -> None:
    base = window_topology(_demo(), 600, 40, 0.4)
    topo = replace(
        base,
        traffic=replace(
            base.traffic,
            deploys=(Deploy("shop.example", 12.0, 0.5, 2.0),),
            flash_crowds=(FlashCrowd("news.example", 5.0, 10.0, 3.0),),
        ),
        faults=replace(
            base.faults,
            outages=(OriginOutage(25.0, 4.0),),
            spikes=(LatencySpike("eu-west->origin", 30.0, 5.0, 0.2),),
        ),
    )
    fast = simulate(topo, seed=2).report
    trio = simulate_trio(topo, seed=2).report
    kinds = [e["kind"] for e in trio["events"]]
    assert kinds == [e["kind"] for e in fast["events"]]
    assert {"deploy", "origin_outage", "latency_spike", "flash_crowd"} <= set(kinds)
    # Misses during the outage get errors in both, in about the same number.
    assert trio["origin"]["refused_outage"] > 50
    assert abs(trio["origin"]["refused_outage"] - fast["origin"]["refused_outage"]) <= 10
    assert trio["totals"]["errors"] > 50
    assert abs(trio["totals"]["object_hit_ratio"] - fast["totals"]["object_hit_ratio"]) <= 0.01


def test_live_mode_refuses_what_it_does_not_run() -> None:
    topo = window_topology(_demo(), 600, 10)
    with pytest.raises(LiveError, match=r"\[shadow\] is not run by live mode: use --mode virtual"):
        run_live(replace(topo, shadow=ShadowSpec("reference")), seed=1)
    crashing = replace(topo, faults=replace(topo.faults, crashes=(NodeCrash("eu-west", 0, 5.0, 2.0),)))
    with pytest.raises(LiveError, match="node crashes are not run by live mode"):
        run_live(crashing, seed=1)
    # a huge --rate-scale: the schedule alone used to fill the memory
    with pytest.raises(LiveError, match=r"a peak of 1200 requests/s is more than live mode sends"):
        run_live(window_topology(_demo(), 600, 0.1, 6.0), seed=1)


def test_window_topology_shifts_the_curve_and_scales_the_rate() -> None:
    demo = _demo()
    cut = window_topology(demo, 900, 60, 0.5)
    assert cut.traffic.duration == 60
    assert cut.traffic.peak_rps == demo.traffic.peak_rps * 0.5
    assert cut.traffic.start_hour_utc == demo.traffic.start_hour_utc + 0.25
    assert cut.traffic.warmup == 0  # demo's 5 min warm-up is over by then
    # The same window at half the rate has about half the arrivals.
    full = simulate(window_topology(demo, 900, 60), seed=4).report["meta"]["simulated_requests"]
    half = simulate(cut, seed=4).report["meta"]["simulated_requests"]
    assert 0.45 * full < half < 0.55 * full
    with pytest.raises(ValueError, match="window"):
        window_topology(demo, 3590, 60)


def test_a_window_keeps_the_crashes_in_progress_at_its_start() -> None:
    # edge-crash: eu-west-0 is down 15 - 25 min, eu-west-1 18 - 28 min, eu-west-2
    # 20 - 22 min (then eu-west's clients fail over), us-east-2 40 - 45 min
    topo = load_topology(resolve_topology_arg("edge-crash"))
    cut = window_topology(topo, 19 * 60, 4 * 60)
    assert [(c.region, c.node, c.at, c.down_for) for c in cut.faults.crashes] == [
        ("eu-west", 0, 0.0, 360.0),
        ("eu-west", 1, 0.0, 540.0),
        ("eu-west", 2, 60.0, 120.0),
    ]
    report = simulate(cut, seed=1).report
    assert report["regions"]["eu-west"]["clients_failed_over"] > 1000


class _WatchedFleet:
    """An EdgeFleet that passes everything to another and notes what it was asked."""

    def __init__(self, inner: InProcessEdges) -> None:
        self.inner = inner
        self.urls: list[str] = []
        self.start_at: float | None = None

    async def start(self, nursery: Any, origin_url: str) -> list[str]:
        self.urls = await self.inner.start(nursery, origin_url)
        return self.urls

    def set_start(self, start_at: float) -> None:
        self.start_at = start_at
        self.inner.set_start(start_at)

    async def purge(self, node: int, site: str) -> None:
        await self.inner.purge(node, site)

    def results(self) -> FleetResults:
        return self.inner.results()


@pytest.mark.slow
def test_live_demo_agrees_with_its_virtual_run(tmp_path: Path) -> None:
    # 30 s of demo at 40 requests/s peak (about 1,000 requests): the origin, the edges
    # and the load generator share the machine with the test runner.
    demo = _demo()
    topo = window_topology(demo, 600, 30, auto_rate_scale(demo))
    fleet = _WatchedFleet(InProcessEdges(topo, ArrivalStream(topo, 1).engine))
    result = run_live(topo, seed=1, workdir=tmp_path, fleet=fleet)
    # The driver used the fleet it was given: six nodes, their URLs, time 0 set.
    assert len(fleet.urls) == 6 and all(u.startswith("http://127.0.0.1:") for u in fleet.urls)
    assert fleet.start_at is not None
    live = result.report
    virtual = simulate(topo, seed=1).report
    assert live["meta"]["engine"] == "live"
    assert not live["meta"]["partial"]
    # Every scheduled request was sent and recorded, once, by the load generator.
    scheduled = int(result.timing["scheduled_requests"])
    lines = (tmp_path / "records.txt").read_text().splitlines()
    assert len(lines) == scheduled == virtual["meta"]["simulated_requests"] > 700
    assert live["totals"]["requests"] == scheduled
    assert live["totals"]["failed"] == 0
    assert abs(live["totals"]["object_hit_ratio"] - virtual["totals"]["object_hit_ratio"]) <= 0.02
    lo, vo = live["origin"]["requests_per_second"], virtual["origin"]["requests_per_second"]
    assert abs(lo - vo) <= 0.10 * vo
    cmp = live["meta"]["virtual_comparison"]
    assert cmp["object_hit_ratio"]["virtual"] == virtual["totals"]["object_hit_ratio"]
    assert cmp["origin_requests_per_second"]["live"] == lo
    # Real HTTP over real links: the modelled 2 x 40 ms eu-west -> origin round trip
    # shows in eu-west's latency, and the report has the virtual one's shape.
    assert live["regions"]["eu-west"]["latency"]["p50"] > 0.08
    del live["meta"]["virtual_comparison"]
    assert _shape(live) == _shape(virtual), (sorted(live["meta"]), sorted(virtual["meta"]))
    assert json.loads(json.dumps(live)) == live


@pytest.mark.slow
def test_live_deploy_and_outage_match_the_virtual_run(tmp_path: Path) -> None:
    # 15 s at demo's live rate: a deploy of half of shop's URLs at 4 s (purged within
    # 2 s), then a 3 s origin outage. The origin process builds the same new catalog
    # the model does, so the arrivals after the deploy find their URLs.
    demo = _demo()
    base = window_topology(demo, 600, 15, auto_rate_scale(demo))
    topo = replace(
        base,
        traffic=replace(base.traffic, deploys=(Deploy("shop.example", 4.0, 0.5, 2.0),)),
        faults=replace(base.faults, outages=(OriginOutage(9.0, 3.0),)),
    )
    live = run_live(topo, seed=3, workdir=tmp_path, compare=False).report
    virtual = simulate(topo, seed=3).report
    assert [e["kind"] for e in live["events"]] == ["deploy", "origin_outage"]
    assert live["events"][0]["deploy_id"]  # the origin process published it
    assert live["events"][0]["purged_by"] == virtual["events"][0]["purged_by"]
    assert live["origin"]["refused_outage"] > 20
    assert abs(live["origin"]["refused_outage"] - virtual["origin"]["refused_outage"]) <= 5
    assert abs(live["totals"]["object_hit_ratio"] - virtual["totals"]["object_hit_ratio"]) <= 0.02
    lo, vo = live["origin"]["requests_per_second"], virtual["origin"]["requests_per_second"]
    assert abs(lo - vo) <= 0.10 * vo
    assert live["totals"]["failed"] == 0
    # The same objects, the same bytes: URLs missing at the origin would be small 404s.
    lb, vb = live["totals"]["bytes_served"], virtual["totals"]["bytes_served"]
    assert abs(lb - vb) <= 0.02 * vb


class _CtrlC:
    """A progress callback that raises KeyboardInterrupt, as Ctrl-C would, once the run
    has reached ``at`` seconds."""

    def __init__(self, at: float) -> None:
        self.at = at

    def __call__(self, t: float, end: float, n: int) -> None:
        if t >= self.at and t < end:
            raise KeyboardInterrupt


def test_interrupted_trio_run_reports_what_it_has() -> None:
    topo = window_topology(_demo(), 600, 60)
    result = simulate_trio(topo, seed=1, progress=_CtrlC(5.0))
    meta = result.report["meta"]
    assert meta["partial"] is True
    assert 5.0 <= meta["duration"] < 10.0
    assert 500 < result.report["totals"]["requests"] <= meta["simulated_requests"]


def test_interrupted_live_run_keeps_every_answered_request(tmp_path: Path) -> None:
    demo = _demo()
    topo = window_topology(demo, 600, 30, auto_rate_scale(demo))
    result = run_live(topo, seed=1, workdir=tmp_path, progress=_CtrlC(3.0))
    report = result.report
    assert report["meta"]["partial"] is True
    assert "virtual_comparison" not in report["meta"]
    assert 3.0 <= report["meta"]["duration"] < 10.0
    lines = (tmp_path / "records.txt").read_text().splitlines()
    assert len(lines) == report["totals"]["requests"] > 50
    assert report["totals"]["requests"] < result.timing["scheduled_requests"]


class _StoppedWhileReporting(InProcessEdges):
    """Ctrl-C as the finished run's report is being built (the fleet's results read)."""

    def results(self) -> FleetResults:
        import os
        import signal

        os.kill(os.getpid(), signal.SIGINT)
        return super().results()


def test_ctrl_c_while_a_finished_live_run_is_reported_keeps_it_whole() -> None:
    # it used to escape run_live (the whole run lost), or, during the virtual
    # comparison, to leave a comparison against part of the virtual run
    demo = _demo()
    topo = window_topology(demo, 600, 5, auto_rate_scale(demo))
    fleet = _StoppedWhileReporting(topo, ArrivalStream(topo, 1).engine)
    result = run_live(topo, seed=1, fleet=fleet)
    meta = result.report["meta"]
    assert result.stopped and meta["partial"] is False and meta["duration"] == 5.0
    assert "virtual_comparison" not in meta
    assert result.report["totals"]["requests"] == result.timing["scheduled_requests"] > 50


class _StoppedAtStartUp(InProcessEdges):
    """Ctrl-C while the edge servers start (the origin process is up already)."""

    async def start(self, nursery: Any, origin_url: str) -> list[str]:
        raise KeyboardInterrupt


def test_a_live_run_stopped_during_start_up_reports_no_run_time() -> None:
    # the start-up's wall time was reported as run time (duration ~1 s, 0 requests)
    topo = window_topology(_demo(), 600, 5, 0.2)
    result = run_live(topo, seed=1, fleet=_StoppedAtStartUp(topo, ArrivalStream(topo, 1).engine))
    meta = result.report["meta"]
    assert meta["partial"] is True and meta["duration"] < 1e-6
    assert result.report["totals"]["requests"] == 0


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
def test_a_live_run_stopped_by_sigterm_or_sighup_stops_its_processes_and_reports(
    tmp_path: Path, signame: str
) -> None:
    # `timeout`, CI runners and closed terminals send these: the run used to die at once,
    # leaving its origin and load generator running and no report
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "r.json"
    cmd = [sys.executable, "-P", "-m", "edgesim", "run", "demo", "--mode", "live"]
    cmd += ["--window", "10m,60s", "--quiet", "--json", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while len(descendants(proc.pid)) < 2 and time.monotonic() < deadline:  # origin, load
            time.sleep(0.1)
        time.sleep(2.0)  # some requests answered
        started = descendants(proc.pid)
        assert len(started) >= 2
        proc.send_signal(getattr(signal, signame))
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "interrupted: the report is partial" in err
    report = json.loads(out.read_text())
    assert report["meta"]["partial"] is True and report["totals"]["requests"] > 0
    assert alive_pids(started) == [], "still running"


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
def test_a_virtual_run_stopped_by_sigterm_or_sighup_writes_its_partial_report(
    tmp_path: Path, signame: str
) -> None:
    # The virtual engine died at once on these signals, with no report at all.
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "r.json"
    cmd = [sys.executable, "-P", "-m", "edgesim", "run", "global-5-regions", "--quiet", "--json", str(out)]
    cmd += ["--csv", str(tmp_path / "csv")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(6.0)  # started, and well into its six hours of traffic (about 20 s compiled)
        assert proc.poll() is None
        proc.send_signal(getattr(signal, signame))
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "interrupted: the report is partial" in err
    report = json.loads(out.read_text())
    meta, ts = report["meta"], report["timeseries"]
    assert meta["partial"] is True and 0 < meta["duration"] < 6 * 3600
    assert sum(ts["requests"]) == meta["simulated_requests"] > 1000
    assert (tmp_path / "csv" / "summary.csv").is_file()


def test_a_drill_stopped_by_sigterm_stops_its_processes_and_exits_130(tmp_path: Path) -> None:
    # It used to end with click's "Aborted!" and exit status 1.
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "r.json"
    cmd = [sys.executable, "-P", "-m", "edgesim", "drill", "crash-drill", "--duration", "30s"]
    cmd += ["--rate", "20", "--workdir", str(tmp_path / "w"), "--json", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        # origin, 2 edges and the load generator; then the load runs for a while
        while len(descendants(proc.pid)) < 4 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(5.0)
        started = descendants(proc.pid)
        assert len(started) >= 4
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "interrupted: every process it started is stopped" in err and "Aborted" not in err
    assert "the report is partial" in err  # (it wrote none: tests/integration/test_drill.py)
    assert json.loads(out.read_text())["partial"] is True
    assert alive_pids(started) == [], "still running"


def test_a_live_run_killed_with_sigkill_leaves_no_process(tmp_path: Path) -> None:
    # its cleanup cannot run: the origin process served on, orphaned, until killed by hand
    import os
    import signal
    import subprocess
    import sys
    import time

    cmd = [sys.executable, "-P", "-m", "edgesim", "run", "demo", "--mode", "live"]
    proc = subprocess.Popen([*cmd, "--window", "10m,60s", "--quiet"], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while len(descendants(proc.pid)) < 2 and time.monotonic() < deadline:  # origin, load
            time.sleep(0.1)
        started = descendants(proc.pid)
        assert len(started) >= 2
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 15  # the origin drains (SIGTERM) before it exits
        while alive_pids(started) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    left = alive_pids(started)
    for pid in left:  # (the old code's orphans: not left to the next test)
        os.kill(pid, signal.SIGKILL)
    assert left == [], "still running"
