"""The edge supervisor and the crash drill, with real processes on loopback."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest
import trio
from helpers import alive_pids, descendants

from edgesim._client import OriginPool
from edgesim._drillload import choose_node
from edgesim._supervisor import EdgeSpec, Supervisor, free_ports, open_supervisor
from edgesim._topoload import parse_topology
from edgesim.drill import DrillOptions, OriginProcess, failover_groups, run_drill, summary_lines
from edgesim.http import Request


def _site(root: Path) -> Path:
    site = root / "sites" / "a.test"
    site.mkdir(parents=True)
    (site / "index.html").write_text("<p>hello</p>\n")
    (site / "_edgesim.toml").write_text('[cache]\ndefault = "public, max-age=60"\n')
    return root / "sites"


async def _get(url: str, n: int) -> None:
    pool = OriginPool(url)
    try:
        for _ in range(n):
            resp = await pool.request(Request("GET", "/index.html", [("host", "a.test")]))
            assert resp.status == 200
    finally:
        await pool.aclose()


async def test_supervisor_restarts_with_backoff_and_keeps_collected_counters(tmp_path: Path) -> None:
    sites = _site(tmp_path)
    (port,) = free_ports(1)
    spec = EdgeSpec("e0", f"embedded:{sites}", port, extra_args=("--no-manifests",))
    async with open_supervisor(
        [spec], log_dir=tmp_path / "logs", backoff_initial=0.2, flush_interval=0.2
    ) as sup:
        await _get(sup.urls[0], 5)
        await sup.flush()
        before = sup.node_totals(0)
        assert before["requests"] >= 5
        first_pid = sup.pid(0)
        assert sup.kill(0, signal.SIGKILL)
        with trio.fail_after(30):
            await sup.wait_restarts(1)
        assert sup.pid(0) not in (None, first_pid)
        await _get(sup.urls[0], 3)  # same URL after the restart
        await sup.flush()  # else these 3 could be lost with the process: see `unflushed`
        # it dies again at once: the backoff doubles
        assert sup.kill(0, signal.SIGTERM)
        with trio.fail_after(30):
            await sup.wait_restarts(2)
        await sup.flush()
        after = sup.node_totals(0)
    r1, r2 = sup.restarts
    assert (r1.signal, r1.returncode, r1.killed_by_drill) == ("SIGKILL", -9, True)
    assert (r2.signal, r2.returncode, r2.killed_by_drill) == (None, 0, True)  # SIGTERM: drained
    assert r1.backoff == pytest.approx(0.2) and r2.backoff == pytest.approx(0.4)
    assert r1.downtime is not None and r1.downtime >= r1.backoff
    # counters collected before a death are kept: the sum over incarnations only grows,
    # and the second run's own requests were added to it
    assert after["requests"] >= before["requests"] + 3
    assert r1.unflushed <= 0.2 + 0.5  # one flush interval plus a scrape's latency


async def test_kill_hold_and_dead_node_kill_is_refused(tmp_path: Path) -> None:
    sites = _site(tmp_path)
    (port,) = free_ports(1)
    spec = EdgeSpec("e0", f"embedded:{sites}", port, extra_args=("--no-manifests",))
    async with open_supervisor([spec], log_dir=tmp_path / "logs", backoff_initial=0.1) as sup:
        assert sup.kill(0, signal.SIGKILL, hold=1.0)
        await trio.sleep(0.3)  # the supervisor has seen the death by now (real time)
        assert not sup.is_up(0)
        assert not sup.kill(0)  # nothing to kill while it is down
        with trio.fail_after(30):
            await sup.wait_restarts(1)
    (r,) = sup.restarts
    assert r.backoff == pytest.approx(1.0)
    assert r.downtime is not None and r.downtime >= 1.0


DRILL_TOPOLOGY = """
name = "drill-test"
seed = 3

[[regions]]
name = "eu"
edge = { nodes = 2, memory_cache = "32MB" }

[[sites]]
name = "shop.test"

[sites.catalog]
objects = 60
zipf = 1.1
seed = 9
types = { html = 1.0 }

[sites.cache]
html = "public, max-age=1, stale-if-error=60"

[traffic]
duration = "12s"
peak_rps = 60
warmup = "1s"

[faults]
health_check_delay = "1s"
client_timeout = "1s"

[[faults.crashes]]
region = "eu"
node = 0
at = "3s"
down_for = "1s"

[[faults.origin_outages]]
at = "7s"
duration = "2.5s"
"""


@pytest.mark.slow
async def test_drill_kill_restart_failover_and_stale_if_error(tmp_path: Path) -> None:
    topo = parse_topology(DRILL_TOPOLOGY, path=str(tmp_path / "drill.toml"))
    snapshots: dict[str, Any] = {}

    async def before_the_kill(sup: Supervisor, origin: OriginProcess, start_at: float, end_at: float) -> None:
        await trio.sleep(max(0.0, start_at + 2.5 - time.time()))  # the kill is at 3 s
        await sup.flush()
        snapshots["before"] = sup.node_totals(0)

    opts = DrillOptions(rate=60, connections=6, flush_interval=0.5)
    report = await run_drill(topo, opts, workdir=tmp_path / "work", during=before_the_kill)

    # the supervisor restarted the killed node, after its hold
    (r,) = report["restarts"]
    assert r["name"] == "eu-0" and r["signal"] == "SIGKILL" and r["killed_by_drill"]
    assert r["up_at"] is not None and r["downtime"] >= 1.0
    assert r["unflushed"] <= 0.5 + 0.5
    kinds = [f["kind"] for f in report["faults"]]
    assert kinds == ["edge_killed", "origin_stopped", "origin_started"]

    # client side: every request has one outcome, and the buckets add up to the totals
    c = report["clients"]
    t = c["totals"]
    assert t["requests"] == t["ok"] + t["http_5xx"] + t["failed"]
    for key in ("ok", "failed", "retried", "http_5xx", "attempts_failed"):
        assert sum(b[key] for b in c["buckets"]) == t[key]
    # failover: attempts on the dead node failed, were retried on the other, and succeeded
    assert t["attempts_failed"] >= 1 and t["retried"] >= 1
    assert t["failed"] == 0
    # the restarted node served again after it came back
    back = r["up_at"] + 1.0
    served_after = sum(sum(b["nodes"].get("eu-0", {}).values()) for b in c["buckets"] if b["t"] >= back)
    assert served_after > 0

    # edge counters collected before the kill were not lost with the process
    totals = report["edges"]["nodes"]["eu-0"]
    assert totals["requests"] >= snapshots["before"]["requests"] > 0
    assert "last flush interval" in report["edges"]["lost_window_note"]

    # cold cache after the restart, and stale content served while the origin was down
    (spike,) = report["cold_cache_spikes"]
    assert spike["node"] == "eu-0" and spike["misses_per_s_after"] > 0
    (outage,) = report["origin_outages"]
    assert outage["mode"] == "stop" and outage["stale"] > 0


# ---- cross-region failover of the load generator's clients ----------------------------


def _dead(*nodes: tuple[int, int]) -> Any:
    return lambda r, n: (r, n) in nodes


def test_choose_node_stays_in_its_region_while_it_has_a_usable_node() -> None:
    sizes = [2, 2]
    # client 3's home node is 3 % 2 = 1; then the region's next one
    assert choose_node(3, 0, "/a", sizes, [[1]], _dead(), set()) == (0, 1)
    assert choose_node(3, 0, "/a", sizes, [[1]], _dead((0, 1)), set()) == (0, 0)
    assert choose_node(3, 0, "/a", sizes, [[1]], _dead(), {(0, 1)}) == (0, 0)
    # neither dead nor tried left at home: the other region, from the client's start node
    assert choose_node(3, 0, "/a", sizes, [[1]], _dead((0, 1)), {(0, 0)}) == (1, 1)
    assert choose_node(3, 0, "/a", sizes, [[1]], _dead((0, 1), (1, 1)), {(0, 0)}) == (1, 0)


def test_choose_node_nearest_group_first_and_ties_by_crc32_of_the_path() -> None:
    sizes = [1, 1, 1, 1]
    down = _dead((0, 0))
    # nearest first: region 3 only when the group of 1 and 2 has nothing usable
    assert choose_node(0, 0, "/a", sizes, [[1, 2], [3]], down, set())[0] in (1, 2)
    assert choose_node(0, 0, "/a", sizes, [[1, 2], [3]], _dead((0, 0), (1, 0), (2, 0)), set()) == (3, 0)
    # a tie of k regions: zlib.crc32(path) % k picks the first (crc32 % 2: "/a" 0, "/d" 1)
    assert choose_node(0, 0, "/a", sizes, [[1, 2]], down, set()) == (1, 0)
    assert choose_node(0, 0, "/d", sizes, [[1, 2]], down, set()) == (2, 0)
    # ... then the next ones in order, wrapping
    assert choose_node(0, 0, "/d", sizes, [[1, 2]], _dead((0, 0), (2, 0)), set()) == (1, 0)
    assert choose_node(0, 0, "/a", sizes, [[1, 2]], down, {(1, 0)}) == (2, 0)
    # crc32 % 3: "/a" 0, "/index.html" 1, "/x" 2
    assert choose_node(0, 0, "/x", sizes, [[1, 2, 3]], down, set()) == (3, 0)
    assert choose_node(0, 0, "/x", sizes, [[1, 2, 3]], _dead((0, 0), (3, 0)), set()) == (1, 0)


def test_choose_node_without_a_usable_failover_target_stays_home() -> None:
    # no failover path (or every target dead or tried): an untried node of the client's
    # own region even if it is marked dead, else its home node
    assert choose_node(1, 0, "/a", [2], [], _dead((0, 0), (0, 1)), set()) == (0, 1)
    assert choose_node(1, 0, "/a", [2], [], _dead((0, 0), (0, 1)), {(0, 1)}) == (0, 0)
    assert choose_node(1, 0, "/a", [2], [], _dead(), {(0, 0), (0, 1)}) == (0, 1)
    assert choose_node(1, 0, "/a", [2, 1], [[1]], _dead((0, 0), (1, 0)), {(0, 1)}) == (0, 0)


def test_failover_groups_are_the_engines_order_by_region_name(tmp_path: Path) -> None:
    text = DRILL_TOPOLOGY.replace(
        '[[regions]]\nname = "eu"\nedge = { nodes = 2, memory_cache = "32MB" }',
        "\n".join(f'[[regions]]\nname = "{r}"\nedge = {{ nodes = 1 }}\n' for r in ("a", "b", "c", "d"))
        + '\n[network.region_latency]\na = { b = "40ms", c = "40ms" }\nb = { c = "10ms" }\n',
    ).replace('region = "eu"', 'region = "a"')
    topo = parse_topology(text, path=str(tmp_path / "t.toml"))
    assert failover_groups(topo) == {
        "a": [(0.04, ["b", "c"])],
        "b": [(0.01, ["c"]), (0.04, ["a"])],
        "c": [(0.01, ["b"]), (0.04, ["a"])],
        "d": [],  # no latency listed: no failover path
    }


FAILOVER_TOPOLOGY = """
name = "drill-failover"
seed = 3

[[regions]]
name = "eu"
edge = { nodes = 1, memory_cache = "32MB" }

[[regions]]
name = "us"
edge = { nodes = 1, memory_cache = "32MB" }

[network.region_latency]
eu = { us = "40ms" }

[[sites]]
name = "shop.test"

[sites.catalog]
objects = 40
zipf = 1.1
seed = 9
types = { html = 1.0 }

[sites.cache]
html = "public, max-age=60"

[traffic]
duration = "6s"
peak_rps = 40
warmup = "1s"

[faults]
health_check_delay = "1s"
client_timeout = "1s"

[[faults.crashes]]
region = "eu"
node = 0
at = "1.5s"
down_for = "2.5s"
"""


@pytest.mark.slow
async def test_drill_clients_of_a_dead_region_fail_over_to_the_nearest(tmp_path: Path) -> None:
    topo = parse_topology(FAILOVER_TOPOLOGY, path=str(tmp_path / "failover.toml"))
    opts = DrillOptions(rate=40, connections=4, flush_interval=0.5)
    report = await run_drill(topo, opts, workdir=tmp_path / "work")

    (r,) = report["restarts"]
    assert r["name"] == "eu-0" and r["killed_by_drill"] and r["downtime"] >= 2.5
    c = report["clients"]
    t = c["totals"]
    assert t["requests"] == t["ok"] + t["http_5xx"] + t["failed"]
    # eu's only node was down for 2.5 s or more: its clients (about 20 requests/s) were
    # answered by us-0, not failed
    assert t["failed"] <= 2
    assert t["failed_over"] >= 20
    assert c["failed_over_regions"] == {"eu": {"us": t["failed_over"]}}
    for key in ("ok", "failed", "retried", "failed_over", "http_5xx", "attempts_failed"):
        assert sum(b[key] for b in c["buckets"]) == t[key]
    # only while eu-0 was down (and its dead mark lasted): none before the crash
    assert sum(b["failed_over"] for b in c["buckets"] if b["t"] < 1.0) == 0
    line = summary_lines(report)[1]
    assert f"failed over {t['failed_over']:,} (eu->us {t['failed_over']:,})" in line


def test_a_node_that_cannot_start_is_told_by_its_logs_last_line(tmp_path: Path) -> None:
    # The error was the log's last 400 characters: cut mid-word, over several lines.
    from edgesim._supervisor import _tail

    log = tmp_path / "eu-0.log"
    log.write_text(
        "Usage: edgesim edge serve [OPTIONS]\nTry 'edgesim edge serve -h' for help.\n\n"
        "Error: Invalid value for '--shadow-timeout': expected a duration\n" * 5
    )
    assert _tail(log) == "Error: Invalid value for '--shadow-timeout': expected a duration"
    (tmp_path / "empty.log").write_text("\n\n")
    assert _tail(tmp_path / "empty.log") == "empty log"
    assert _tail(tmp_path / "none.log") == "no log"
    long = tmp_path / "long.log"
    long.write_text("x" * 1000)
    assert _tail(long) == "..." + "x" * 400


async def test_a_node_that_refuses_its_arguments_fails_the_start_at_once(tmp_path: Path) -> None:
    # It was restarted with backoff until the 30 s start timeout, then told by a raw log tail.
    from edgesim._supervisor import SupervisorError

    sites = _site(tmp_path)
    good, bad = free_ports(2)
    specs = [
        EdgeSpec("e0", f"embedded:{sites}", good, extra_args=("--no-manifests",)),
        EdgeSpec("e1", f"embedded:{sites}", bad, extra_args=("--shadow-timeout", "5e-05s")),
    ]
    from edgesim.errors import single_exception

    started = time.monotonic()
    with pytest.raises(BaseExceptionGroup) as info:  # (Trio's group of one)
        async with open_supervisor(specs, log_dir=tmp_path / "logs", backoff_initial=0.2):
            pass
    assert time.monotonic() - started < 20
    error = single_exception(info.value)
    assert isinstance(error, SupervisorError)
    message = str(error)
    assert message.startswith("edge nodes cannot start (e1: Error: ") and "--shadow-timeout" in message
    assert "\n" not in message


# ---- a drill stopped by Ctrl-C, SIGTERM or SIGHUP writes what it recorded -------------


# seconds after every process is up: the lead-in (1.5 s) and the kill at 3 s, and a bit
LEAD_IN_AND_KILL = 5.5


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signame", "group"),
    [("SIGTERM", False), ("SIGHUP", False), ("SIGINT", True)],  # SIGINT to the group: a terminal's Ctrl-C
)
def test_a_stopped_drill_writes_its_partial_report_and_leaves_no_process(
    tmp_path: Path, signame: str, group: bool
) -> None:
    # It stopped its processes but wrote no report: one line, exit 130, the run lost.
    import json
    import os
    import subprocess
    import sys

    (tmp_path / "drill.toml").write_text(DRILL_TOPOLOGY)
    out = tmp_path / "r.json"
    cmd = [sys.executable, "-P", "-m", "edgesim", "drill", str(tmp_path / "drill.toml"), "--rate", "60"]
    cmd += ["--connections", "6", "--flush-interval", "0.5", "--json", str(out)]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=group
    )
    try:
        deadline = time.monotonic() + 60
        while len(descendants(proc.pid)) < 4 and time.monotonic() < deadline:  # origin, 2 edges, load
            time.sleep(0.1)
        time.sleep(LEAD_IN_AND_KILL)  # the load ran past the kill of eu-0 at 3 s
        started = descendants(proc.pid)
        assert len(started) >= 4
        sig = getattr(signal, signame)
        if group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
        stop = time.monotonic()
        summary, err = proc.communicate(timeout=60)
        stopping = time.monotonic() - stop
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "the report is partial" in err and "Traceback" not in err
    assert stopping < 10, stopping
    assert alive_pids(started) == [], "still running"

    report = json.loads(out.read_text())
    assert report["partial"] is True and report["duration"] == 12
    assert 3.0 < report["reached"] < 12
    assert f"drill drill-test: stopped at {report['reached']:.1f} s of 12 s" in summary
    c = report["clients"]
    t = c["totals"]
    assert c["partial"] is True and t["requests"] > 100
    # requests in flight at the stop are left out: every one counted has one outcome
    assert t["requests"] == t["ok"] + t["http_5xx"] + t["failed"]
    for key in ("ok", "failed", "retried", "http_5xx", "attempts_failed"):
        assert sum(b[key] for b in c["buckets"]) == t[key]
    assert max(b["t"] for b in c["buckets"]) < report["reached"]
    # the kill before the stop is there, and nothing the stop did is taken for a crash
    (r,) = report["restarts"]
    assert r["name"] == "eu-0" and r["signal"] == "SIGKILL" and r["killed_by_drill"]
    assert [f["kind"] for f in report["faults"]] == ["edge_killed"]
    assert report["edges"]["nodes"]["eu-1"]["requests"] > 0
