"""Node crashes in the ``edgesim.testing`` plugin: ``net.crash`` / ``net.restart`` in
Trio-virtual mode (the balancer, the health check, retries, cross-region failover,
counters kept across lives, a request broken by the crash) and live mode (real
sockets refused, a restart on the same port), and the topology's scheduled crashes
(``faults=True``)."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
import trio.testing

from edgesim._client import OriginConnectError, OriginProtocolError
from edgesim.http import Request, Response
from edgesim.testing import NetworkError, NetworkFactory

TWO_REGIONS = """
name = "faulty"
seed = 5

[[regions]]
name = "lab"
client_share = 0.5

[regions.edge]
nodes = 3
memory_cache = "8MB"
balancer = "{balancer}"

[[regions]]
name = "far"
client_share = 0.5

[regions.edge]
nodes = 1
memory_cache = "8MB"

[network.region_latency]
lab = {{ far = "40ms" }}

[faults]
health_check_delay = "7s"

[[sites]]
name = "tiny.test"

[sites.catalog]
objects = 60
types = {{ html = 1.0 }}

[sites.cache]
html = "public, max-age=0, s-maxage=600"
"""


def _topology(tmp_path: Path, balancer: str) -> Path:
    path = tmp_path / f"faulty-{balancer}.toml"
    path.write_text(TWO_REGIONS.format(balancer=balancer))
    return path


def _via(resp: Response) -> str:
    via = resp.header("via")
    assert via is not None and via.startswith("1.1 ")
    return via[4:]


async def test_crash_retry_health_check_restart(
    edge_network: NetworkFactory, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with edge_network(_topology(tmp_path, "random"), mode="trio", balancer="round-robin") as net:
        r1 = await net.get("lab", "/page-1.html", node="lab-0")
        r2 = await net.get("lab", "/page-1.html", node="lab-0")
        assert (r1.header("x-cache"), r2.header("x-cache")) == ("MISS", "HIT")
        assert net.is_up("lab-0")

        await net.crash("lab-0")
        assert not net.is_up("lab-0")
        with pytest.raises(OriginConnectError):  # pinned: nobody retries for the test
            await net.get("lab", "/page-1.html", node="lab-0")
        with pytest.raises(NetworkError, match="lab-0 is down"):
            net.node("lab-0")
        with pytest.raises(NetworkError, match="down already"):
            await net.crash("lab-0")
        with pytest.raises(NetworkError, match="is up"):
            await net.restart("lab-1")
        lab0 = net.metrics()["nodes"]["lab-0"]
        assert (lab0["up"], lab0["crashes"], lab0["requests"], lab0["hits"], lab0["cache"]) == (
            False,
            1,
            2,
            1,
            None,
        )

        # Before the health check drops it, the rotation (one turn per choice) still
        # lands on lab-0 at turns 0, 3, 6, 9 and 12 of 0..2; refused, the client takes
        # the next turn among lab-1 and lab-2. All are answered.
        before = [_via(await net.get("lab", f"/page-{i}.html")) for i in range(2, 11)]
        assert before == ["lab-2", "lab-2", "lab-1", "lab-2", "lab-2", "lab-2", "lab-1", "lab-2", "lab-2"]
        await trio.sleep(7)
        after = [_via(await net.get("lab", f"/page-{i}.html")) for i in range(11, 19)]
        assert after == ["lab-1", "lab-2"] * 4  # dropped: the other two in turn (turns 14 to 21)

        await net.restart("lab-0")
        assert net.is_up("lab-0") and net.node("lab-0").statistics()["requests"] == 0
        r3 = await net.get("lab", "/page-1.html", node="lab-0")
        assert r3.header("x-cache") == "MISS"  # a cold cache
        lab0 = net.metrics()["nodes"]["lab-0"]
        assert (lab0["up"], lab0["crashes"], lab0["requests"], lab0["misses"], lab0["hits"]) == (
            True,
            1,
            3,
            2,
            1,
        )
        assert lab0["cache"]["memory"]["store"]["keys"] == 1  # the new life's only fill
        # the balancer picks it again at once
        again = {_via(await net.get("lab", f"/page-{i}.html")) for i in range(20, 23)}
        assert again == {"lab-0", "lab-1", "lab-2"}
        totals = net.metrics()["totals"]
        assert totals["crashes"] == 1 and totals["requests"] == 2 + 9 + 8 + 1 + 3  # refused: none


async def test_consistent_hash_moves_only_the_crashed_nodes_urls(
    edge_network: NetworkFactory, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with edge_network(_topology(tmp_path, "consistent-hash"), mode="trio") as net:
        paths = [f"/page-{i}.html" for i in range(1, 31)]
        owner = {p: _via(await net.get("lab", p)) for p in paths}
        assert set(owner.values()) == {"lab-0", "lab-1", "lab-2"}
        await net.crash("lab-0")
        await trio.sleep(7)
        for p in paths:
            r = await net.get("lab", p)
            if owner[p] == "lab-0":  # the next node of the region takes it over, cold
                assert (_via(r), r.header("x-cache")) == ("lab-1", "MISS")
            else:  # every other URL stays where it is cached
                assert (_via(r), r.header("x-cache")) == (owner[p], "HIT")


async def test_a_region_with_no_node_left_fails_over_to_the_nearest(
    edge_network: NetworkFactory, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with edge_network(_topology(tmp_path, "least-connections"), mode="trio") as net:
        for name in net.nodes("lab"):
            await net.crash(name)
        r = await net.get("lab", "/page-3.html")  # refused three times, then "far"
        assert (r.status, _via(r)) == (200, "far-0")
        await trio.sleep(7)
        assert _via(await net.get("lab", "/page-3.html")) == "far-0"
        await net.crash("far-0")
        with pytest.raises(OriginConnectError, match=r"no edge node of lab .*answered \(refused: far-0\)"):
            await net.get("lab", "/page-3.html")
        with pytest.raises(OriginConnectError, match="no edge node of far"):
            await net.get("far", "/page-3.html")  # and lab, its failover region, has none either
        await net.restart("lab-2")
        assert _via(await net.get("far", "/page-3.html")) == "lab-2"  # far fails over to lab
        await net.crash("lab-2")
        await trio.sleep(7)  # every node dropped: nothing is tried
        with pytest.raises(OriginConnectError, match="no edge node of lab or its failover regions is up"):
            await net.get("lab", "/page-3.html")
        assert net.metrics()["totals"]["crashes"] == 5


async def test_a_crash_breaks_the_requests_in_progress(
    edge_network: NetworkFactory, autojump_clock: trio.testing.MockClock
) -> None:
    async def slow_origin(req: Request) -> Response:
        await trio.sleep(30)
        return Response(200, [("cache-control", "max-age=60")], b"late")

    async with edge_network("demo", mode="trio", origin=slow_origin) as net:
        outcome: list[BaseException] = []

        async def client() -> None:
            try:
                await net.get("eu-west", "/slow", node="eu-west-1")
            except OriginProtocolError as exc:
                outcome.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(client)
            await trio.sleep(1)
            await net.crash("eu-west-1")
        assert len(outcome) == 1 and "edge node eu-west-1 crashed during the request" in str(outcome[0])
        assert net.metrics()["nodes"]["eu-west-1"]["requests"] == 1
        await net.restart("eu-west-1")
        with trio.fail_after(60):
            r = await net.get("eu-west", "/slow", node="eu-west-1")
        assert (r.status, r.body, r.header("x-cache")) == (200, b"late", "MISS")


async def test_live_crash_refuses_real_connections_and_restarts_on_the_same_port(
    edge_network: NetworkFactory, tmp_path: Path
) -> None:
    with trio.fail_after(60):
        async with edge_network(_topology(tmp_path, "random"), mode="live", balancer="round-robin") as net:
            port = net.port("lab-1")
            r1 = await net.get("lab", "/page-1.html", node="lab-1")
            assert r1.header("x-cache") == "MISS"
            await net.crash("lab-1")
            with pytest.raises(OriginConnectError):  # the port is closed: refused
                await net.get("lab", "/page-1.html", node="lab-1")
            for i in range(2, 8):
                assert _via(await net.get("lab", f"/page-{i}.html")) in ("lab-0", "lab-2")
            await net.restart("lab-1")
            assert net.port("lab-1") == port
            r2 = await net.get("lab", "/page-1.html", node="lab-1")
            assert (r2.status, r2.header("x-cache"), r2.body) == (200, "MISS", r1.body)
            lab1 = net.metrics()["nodes"]["lab-1"]
            assert (lab1["crashes"], lab1["requests"], lab1["misses"]) == (1, 2, 2)


async def test_the_documented_example(
    edge_network: NetworkFactory, autojump_clock: trio.testing.MockClock
) -> None:
    # docs/testing.md, "Node crashes"
    async with edge_network("demo", mode="trio") as net:
        await net.get("eu-west", "/index.html", node="eu-west-0")
        await net.crash("eu-west-0")
        r = await net.get("eu-west", "/index.html")
        via = r.header("via")
        assert r.status == 200 and via is not None and "eu-west-0" not in via
        await trio.sleep(5)
        await net.restart("eu-west-0")
        r = await net.get("eu-west", "/index.html", node="eu-west-0")
        assert r.header("x-cache") == "MISS"
        assert net.metrics()["nodes"]["eu-west-0"]["crashes"] == 1


async def test_a_node_restarts_once_at_a_time(
    edge_network: NetworkFactory, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with edge_network(_topology(tmp_path, "random"), mode="trio") as net:
        await net.crash("lab-0")
        refused: list[str] = []

        async def restart() -> None:
            try:
                await net.restart("lab-0")
            except NetworkError as exc:
                refused.append(str(exc))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(restart)
            nursery.start_soon(restart)
        assert refused == ["node lab-0 is being restarted already"]
        # one life only: a crash ends it, and nothing of lab-0 answers afterwards
        await net.crash("lab-0")
        with pytest.raises(OriginConnectError):
            await net.get("lab", "/page-1.html", node="lab-0")
        assert net.metrics()["nodes"]["lab-0"]["crashes"] == 2


async def test_live_restart_on_a_taken_port_is_a_network_error(
    edge_network: NetworkFactory, tmp_path: Path
) -> None:
    with trio.fail_after(60):
        async with edge_network(_topology(tmp_path, "random"), mode="live") as net:
            port = net.port("lab-0")
            assert port is not None
            await net.crash("lab-0")
            squatter = socket.socket()
            try:
                squatter.bind(("127.0.0.1", port))
                squatter.listen()
                with pytest.raises(
                    NetworkError, match=f"restart of lab-0: cannot listen on port {port} again"
                ):
                    await net.restart("lab-0")
                assert not net.is_up("lab-0")
            finally:
                squatter.close()
            await net.restart("lab-0")  # the port is free again
            assert net.port("lab-0") == port
            assert (await net.get("lab", "/page-1.html", node="lab-0")).status == 200


SHADOWED = """
[shadow]
candidate = "rules"
regions = ["lab"]

[shadow.rules]
"tiny.test" = "{rules}"
"""


async def test_a_nodes_shadow_outlives_its_crashes(
    edge_network: NetworkFactory, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    (tmp_path / "_redirects").write_text("/old /page-1.html 301\n")
    (tmp_path / "candidate").write_text("/old /page-2.html 302\n")
    path = _topology(tmp_path, "random")
    text = path.read_text().replace('name = "tiny.test"\n', 'name = "tiny.test"\nrules = "_redirects"\n')
    path.write_text(text + SHADOWED.format(rules=(tmp_path / "candidate").as_posix()))
    async with edge_network(path, mode="trio") as net:
        for _ in range(2):
            await net.get("lab", "/old", node="lab-0")
        assert net.metrics()["nodes"]["lab-0"]["shadow"]["compared"] == 2
        await net.crash("lab-0")
        assert net.metrics()["nodes"]["lab-0"]["shadow"]["compared"] == 2  # down: still there
        await net.restart("lab-0")
        await net.get("lab", "/old", node="lab-0")
        assert net.metrics()["nodes"]["lab-0"]["shadow"]["compared"] == 3


SCHEDULED = """
[[faults.crashes]]
region = "lab"
node = 0
at = "10s"
down_for = "20s"

[[faults.crashes]]
region = "lab"
node = 1
at = "15s"
down_for = "30s"
"""


def _scheduled(tmp_path: Path, crashes: str = SCHEDULED) -> Path:
    path = tmp_path / "scheduled.toml"
    path.write_text(TWO_REGIONS.format(balancer="random") + crashes)
    return path


async def test_scheduled_crashes_run_on_trios_clock_with_faults_true(
    edge_network: NetworkFactory, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    topo = _scheduled(tmp_path)
    async with edge_network(topo, mode="trio", faults=True, balancer="round-robin") as net:
        t0 = trio.current_time()
        await net.get("lab", "/page-2.html", node="lab-0")
        assert (await net.get("lab", "/page-2.html", node="lab-0")).header("x-cache") == "HIT"
        await trio.sleep_until(t0 + 9.9)
        assert net.is_up("lab-0") and net.is_up("lab-1") and net.fault_events == []
        await trio.sleep_until(t0 + 10.1)
        assert not net.is_up("lab-0") and net.is_up("lab-1")
        with pytest.raises(OriginConnectError):
            await net.get("lab", "/page-2.html", node="lab-0")
        assert (await net.get("lab", "/page-2.html")).status == 200  # retried elsewhere
        await trio.sleep_until(t0 + 15.1)
        assert not net.is_up("lab-0") and not net.is_up("lab-1")
        await trio.sleep_until(t0 + 30.1)
        assert net.is_up("lab-0") and not net.is_up("lab-1")
        assert (await net.get("lab", "/page-2.html", node="lab-0")).header("x-cache") == "MISS"  # cold
        await trio.sleep_until(t0 + 45.1)
        assert net.is_up("lab-1")
        nodes = net.metrics()["nodes"]
        assert (nodes["lab-0"]["crashes"], nodes["lab-1"]["crashes"], nodes["lab-2"]["crashes"]) == (1, 1, 0)
        assert net.fault_events == [
            {"at": 10.0, "kind": "node_crash", "node": "lab-0", "restart": 30.0},
            {"at": 15.0, "kind": "node_crash", "node": "lab-1", "restart": 45.0},
            {"at": 30.0, "kind": "node_restart", "node": "lab-0"},
            {"at": 45.0, "kind": "node_restart", "node": "lab-1"},
        ]


async def test_scheduled_crashes_are_off_by_default(
    edge_network: NetworkFactory, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with edge_network(_scheduled(tmp_path), mode="trio") as net:
        await trio.sleep(20)
        assert net.is_up("lab-0") and net.is_up("lab-1")
        assert net.metrics()["totals"]["crashes"] == 0 and net.fault_events == []


async def test_scheduled_crashes_beside_the_tests_own(
    edge_network: NetworkFactory, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    # lab-0 is down (the test crashed it) when its scheduled crash comes: the crash
    # counts and the schedule restarts it; lab-1 is restarted by the test before its
    # scheduled restart, which then leaves it alone
    async with edge_network(_scheduled(tmp_path), mode="trio", faults=True) as net:
        t0 = trio.current_time()
        await net.crash("lab-0")
        await trio.sleep_until(t0 + 16)
        assert not net.is_up("lab-0") and not net.is_up("lab-1")
        await net.restart("lab-1")
        await trio.sleep_until(t0 + 31)
        assert net.is_up("lab-0") and net.is_up("lab-1")
        await net.crash("lab-1")
        await trio.sleep_until(t0 + 46)
        assert not net.is_up("lab-1")  # the schedule restarted nothing it had not crashed
        nodes = net.metrics()["nodes"]
        assert (nodes["lab-0"]["crashes"], nodes["lab-1"]["crashes"]) == (2, 2)
        assert net.fault_events == [
            {"at": 10.0, "kind": "node_crash", "node": "lab-0", "was_down": True, "restart": 30.0},
            {"at": 15.0, "kind": "node_crash", "node": "lab-1", "restart": 45.0},
            {"at": 30.0, "kind": "node_restart", "node": "lab-0"},
        ]


async def _until(condition: Callable[[], bool]) -> None:
    """Wait for ``condition`` on the wall clock (polled: live mode's times are not exact)."""
    for _ in range(3000):
        if condition():
            return
        await trio.sleep(0.01)
    raise AssertionError("still waiting after 30 s")


async def test_live_scheduled_crash_refuses_real_connections_then_restarts(
    edge_network: NetworkFactory, tmp_path: Path
) -> None:
    crash = '\n[[faults.crashes]]\nregion = "far"\nnode = 0\nat = "1s"\ndown_for = "1s"\n'
    with trio.fail_after(60):
        async with edge_network(_scheduled(tmp_path, crash), mode="live", faults=True) as net:
            port = net.port("far-0")
            assert port is not None
            assert net.is_up("far-0")
            await _until(lambda: not net.is_up("far-0"))
            assert [e["kind"] for e in net.fault_events] == ["node_crash"]  # listed first
            with pytest.raises(OriginConnectError):  # the port is closed: refused
                await net.get("far", "/page-3.html", node="far-0")
            await _until(lambda: net.is_up("far-0"))
            assert net.port("far-0") == port
            assert (await net.get("far", "/page-3.html", node="far-0")).header("x-cache") == "MISS"
            await _until(lambda: len(net.fault_events) == 2)  # listed once the restart returns
            assert [e["kind"] for e in net.fault_events] == ["node_crash", "node_restart"]
            assert net.metrics()["nodes"]["far-0"]["crashes"] == 1


async def test_the_documented_scheduled_crash_example(
    edge_network: NetworkFactory, autojump_clock: trio.testing.MockClock
) -> None:
    # docs/testing.md, "Scheduled crashes"
    async with edge_network("edge-crash", mode="trio", faults=True) as net:
        crash = net.topology.faults.crashes[0]
        await trio.sleep(crash.at + 1)
        name = f"{crash.region}-{crash.node}"
        assert not net.is_up(name)
        assert (await net.get(crash.region, "/")).status == 200
        assert net.fault_events[0] == {
            "at": crash.at,
            "kind": "node_crash",
            "node": name,
            "restart": crash.at + crash.down_for,
        }
