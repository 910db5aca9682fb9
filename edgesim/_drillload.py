"""The load generator of the crash drill and of ``edgesim stress``, in its own process.

Run as ``python -P -m edgesim._drillload CONFIG.json RESULT.json``. It reads a
:func:`make_config` document, sends GET requests to the edge nodes of each region for
``duration`` seconds and writes its outcome (:func:`run` returns the same dict)
atomically to RESULT.json; every client-side outcome lives here, so a dying edge node
cannot take any of them with it.

Clients and failover: ``connections`` clients, spread over the regions by their share.
Client ``c`` has a home node in its region (``c mod`` the region's node count) and sends
there. When an attempt fails at the connection level (refused, reset, closed
mid-response, or no answer within ``client_timeout``), the client marks that node dead
for ``health_check_delay`` seconds (as the topology's balancer would; the marks are
shared by all clients), and retries the same request on the next node of the region
that is neither marked dead nor already tried for this request. When its region has no
such node, it fails over across regions as ``edgesim run`` does: to the nearest regions
by the topology's ``[network.region_latency]`` (the config's ``failover`` groups,
nearest first); regions at the same latency share the paths by ``zlib.crc32(path) %
k`` (the first of the k tied regions, then the next ones in order), and in a region the
client starts at node ``c mod`` its node count. When no region has such a node either,
it tries an untried node of its own region even if marked dead (else its home node):
the mark may be stale. :func:`choose_node` is that choice. Every attempt counts,
whatever the region: at most ``max_attempts`` per request. No latency is added for a
failover (everything is on loopback). A request is *retried* when it needed more than
one attempt, *failed* when every attempt failed, *failed over* when another region's
node answered it. HTTP error statuses (5xx) are answers, not failures: they are
counted apart and not retried.

Pacing: ``rate`` requests/s in total, shared by the clients (a client that falls behind
does not burst to catch up); ``rate = 0`` sends as fast as the answers come.

Per ``interval`` bucket the result holds ok/failed/retried/failed_over/5xx counts and,
per node, the ``X-Cache`` outcomes (``MISS`` per second on a node is its origin fetch
rate; ``STALE`` is stale content served, such as stale-if-error during an origin
outage); ``failed_over_regions`` gives the failed-over answers of the whole run by
client region and answering region.

Stopping: SIGINT, SIGTERM or SIGHUP (the drill's own stop, or a terminal's Ctrl-C, which
reaches the whole process group) stops the clients at once and writes what was counted,
with ``partial`` true and ``elapsed`` the seconds of load reached; the process then
exits with status 130. Requests still in flight then are left out (neither answered nor
failed: they were cut short by the stop, not by a node).
"""

from __future__ import annotations

import json
import math
import random
import signal
import sys
import time
import zlib
from bisect import bisect
from collections.abc import Callable, Container, Mapping, Sequence
from itertools import accumulate
from typing import Any

import trio

from edgesim._atomic import write_atomic
from edgesim._client import OriginError, OriginPool, OriginTimeout
from edgesim.http import Request, get_header


def make_config(
    *,
    regions: Sequence[tuple[str, float, Sequence[tuple[str, str]]]],
    hosts: Sequence[tuple[str, float, Sequence[str]]],
    duration: float,
    rate: float,
    connections: int,
    client_timeout: float = 2.0,
    health_check_delay: float = 5.0,
    max_attempts: int = 3,
    zipf: float = 0.9,
    seed: int = 1,
    interval: float = 1.0,
    start_at: float | None = None,
    failover: Mapping[str, Sequence[tuple[float, Sequence[str]]]] | None = None,
) -> dict[str, Any]:
    """The load generator's configuration document.

    Args:
        regions: (region name, client share, [(node name, node URL), ...]).
        hosts: (Host header, share of requests, [paths, most popular first]).
        duration: seconds of load.
        rate: total requests/s; 0 for as fast as possible.
        connections: concurrent clients.
        client_timeout: seconds an attempt may take before the client gives up on it.
        health_check_delay: seconds a client avoids a node after a failed attempt.
        max_attempts: attempts per request (the first one included).
        zipf: popularity skew over each host's paths.
        seed: the request mix's seed.
        interval: the time-series bucket in seconds.
        start_at: wall-clock time (``time.time()``) to start at, so that the
            controller's fault times and the buckets share one origin; default: now.
        failover: per region name, where its clients go when it has no usable node:
            ``[(seconds, [region names]), ...]``, nearest first, one entry per latency,
            each group's names in the topology's region order (see
            :func:`edgesim.drill.failover_groups`). The seconds are informative: no
            latency is added. Default: none (clients stay in their region).
    """
    names = {r for r, _, _ in regions}
    groups = dict(failover or {})
    for r, order in groups.items():
        unknown = ({r} | {n for _, g in order for n in g}) - names
        if unknown:
            raise ValueError(f"failover of {r!r} names unknown regions: {sorted(unknown)}")
    return {
        "regions": [
            {
                "name": r,
                "share": share,
                "nodes": [{"name": n, "url": u} for n, u in nodes],
                "failover": [{"seconds": sec, "regions": list(g)} for sec, g in groups.get(r, ())],
            }
            for r, share, nodes in regions
        ],
        "hosts": [{"host": h, "share": share, "paths": list(paths)} for h, share, paths in hosts],
        "duration": duration,
        "rate": rate,
        "connections": connections,
        "client_timeout": client_timeout,
        "health_check_delay": health_check_delay,
        "max_attempts": max_attempts,
        "zipf": zipf,
        "seed": seed,
        "interval": interval,
        "start_at": start_at,
    }


class _Mix:
    """Draws (host, path) pairs: hosts by share, paths by a Zipf law."""

    def __init__(self, hosts: list[dict[str, Any]], zipf: float, rng: random.Random) -> None:
        self.rng = rng
        self.hosts = [h["host"] for h in hosts]
        self.host_cum = list(accumulate(float(h["share"]) for h in hosts))
        self.paths = [list(h["paths"]) for h in hosts]
        self.path_cum = [list(accumulate(1.0 / (i + 1) ** zipf for i in range(len(p)))) for p in self.paths]

    def draw(self) -> tuple[str, str]:
        r = self.rng.random() * self.host_cum[-1]
        h = min(bisect(self.host_cum, r), len(self.hosts) - 1)
        cum = self.path_cum[h]
        i = min(bisect(cum, self.rng.random() * cum[-1]), len(cum) - 1)
        return self.hosts[h], self.paths[h][i]


# What the totals and each bucket count (the totals count "requests" too).
_COUNTS = ("ok", "failed", "retried", "failed_over", "http_5xx", "attempts_failed")


class _Stats:
    def __init__(self, interval: float, t0: float) -> None:
        self.interval = interval
        self.t0 = t0
        self.buckets: dict[int, dict[str, Any]] = {}
        self.totals = {"requests": 0, **dict.fromkeys(_COUNTS, 0)}
        self.attempt_errors: dict[str, int] = {}
        # failed-over answers: client region -> answering region -> count
        self.failed_over_regions: dict[str, dict[str, int]] = {}
        self.latencies: list[float] = []

    def bucket(self) -> dict[str, Any]:
        k = max(0, int((time.time() - self.t0) // self.interval))
        b = self.buckets.get(k)
        if b is None:
            b = self.buckets[k] = {**dict.fromkeys(_COUNTS, 0), "nodes": {}}
        return b

    def count(self, key: str) -> None:
        self.totals[key] += 1
        self.bucket()[key] += 1

    def cache(self, node: str, outcome: str) -> None:
        nodes = self.bucket()["nodes"]
        per = nodes.get(node)
        if per is None:
            per = nodes[node] = {}
        per[outcome] = per.get(outcome, 0) + 1


def choose_node(
    client: int,
    region: int,
    path: str,
    sizes: Sequence[int],
    groups: Sequence[Sequence[int]],
    dead: Callable[[int, int], bool],
    tried: Container[tuple[int, int]],
) -> tuple[int, int]:
    """The node of an attempt, as ``(region index, node index)``.

    Args:
        client: the client's number; its start node in a region of ``n`` nodes is
            ``client % n`` (its home node in its own region).
        region: the client's region.
        path: the request's path (the hash that shares it among tied regions).
        sizes: the node count of each region.
        groups: the client region's failover order: groups of region indexes at equal
            latency, nearest first, each in region order (:func:`edgesim.engine.failover_order`
            without the seconds); empty: no failover path.
        dead: whether a node is marked dead (it failed an attempt lately).
        tried: the nodes this request has already tried.

    The first node, from the start node on, of the client's region that is neither
    dead nor tried; else of the nearest failover group that has one, where a group of
    ``k`` regions starts at its ``zlib.crc32(path) % k``-th region and goes on in order;
    else an untried node of the client's region even if marked dead, else its home node.
    """

    def ring(r: int) -> list[tuple[int, int]]:
        n = sizes[r]
        return [(r, (client + k) % n) for k in range(n)]

    own = ring(region)
    for rn in own:
        if rn not in tried and not dead(*rn):
            return rn
    h = zlib.crc32(path.encode())
    for group in groups:
        k = len(group)
        first = h % k
        for j in range(k):
            for rn in ring(group[(first + j) % k]):
                if rn not in tried and not dead(*rn):
                    return rn
    return next((rn for rn in own if rn not in tried), own[0])


class _Region:
    def __init__(self, doc: dict[str, Any], read_timeout: float) -> None:
        self.name = doc["name"]
        self.nodes = [n["name"] for n in doc["nodes"]]
        self.pools = [
            OriginPool(n["url"], connect_timeout=read_timeout, read_timeout=read_timeout)
            for n in doc["nodes"]
        ]
        self.dead_until = [0.0] * len(self.nodes)


def _dead_at(regions: list[_Region], now: float) -> Callable[[int, int], bool]:
    """Whether node ``n`` of region ``r`` is marked dead at ``now`` (monotonic time)."""
    return lambda r, n: regions[r].dead_until[n] > now


async def _client(
    cid: int,
    ri: int,
    regions: list[_Region],
    groups: list[list[int]],
    cfg: dict[str, Any],
    mix: _Mix,
    stats: _Stats,
    deadline: float,
    per_client_rate: float,
) -> None:
    gap = 1.0 / per_client_rate if per_client_rate > 0 else 0.0
    next_at = time.monotonic() + (mix.rng.random() * gap if gap else 0.0)
    while True:
        if gap:
            delay = next_at - time.monotonic()
            if delay > 0:
                await trio.sleep(delay)
            next_at = max(next_at + gap, time.monotonic())
        if time.time() >= deadline:
            return
        host, path = mix.draw()
        stats.totals["requests"] += 1
        try:
            await _request(cid, ri, path, host, regions, groups, cfg, stats)
        except BaseException:  # stopped while in flight (possibly in a group): no outcome of the nodes
            stats.totals["requests"] -= 1
            raise


async def _request(
    cid: int,
    ri: int,
    path: str,
    host: str,
    regions: list[_Region],
    groups: list[list[int]],
    cfg: dict[str, Any],
    stats: _Stats,
) -> None:
    """One request of client ``cid``: up to ``max_attempts`` attempts, counted in ``stats``."""
    region = regions[ri]
    sizes = [len(r.nodes) for r in regions]
    timeout = float(cfg["client_timeout"])
    hc_delay = float(cfg["health_check_delay"])
    attempts_max = int(cfg["max_attempts"])
    tried: set[tuple[int, int]] = set()
    t = time.perf_counter()
    for attempt in range(attempts_max):
        to, pick = choose_node(cid, ri, path, sizes, groups, _dead_at(regions, time.monotonic()), tried)
        tried.add((to, pick))
        target = regions[to]
        try:
            with trio.fail_after(timeout):
                resp = await target.pools[pick].request(Request("GET", path, [("host", host)]))
        except (OriginError, trio.TooSlowError) as exc:
            kind = "timeout" if isinstance(exc, OriginTimeout | trio.TooSlowError) else type(exc).__name__
            stats.attempt_errors[kind] = stats.attempt_errors.get(kind, 0) + 1
            stats.count("attempts_failed")
            target.dead_until[pick] = time.monotonic() + hc_delay
            continue
        node = target.nodes[pick]
        stats.cache(node, (get_header(resp.headers, "x-cache") or "NONE").upper())
        if resp.status >= 500:
            stats.count("http_5xx")
        else:
            stats.count("ok")
        if attempt:
            stats.count("retried")
        if to != ri:
            stats.count("failed_over")
            per = stats.failed_over_regions.setdefault(region.name, {})
            per[target.name] = per.get(target.name, 0) + 1
        stats.latencies.append(time.perf_counter() - t)
        break
    else:
        stats.count("failed")


async def run(cfg: dict[str, Any]) -> dict[str, Any]:
    """Send the configured load; returns the outcome document (``partial`` when
    SIGINT, SIGTERM or SIGHUP stopped it first)."""
    for r in cfg["regions"]:
        for n in r["nodes"]:
            if not n["url"].startswith(("http://127.0.0.1:", "http://localhost:", "http://[::1]:")):
                raise SystemExit(f"the load generator only targets loopback addresses, not {n['url']}")
    start_at = cfg.get("start_at") or time.time()
    rng = random.Random(cfg["seed"])
    mix = _Mix(cfg["hosts"], float(cfg["zipf"]), rng)
    stats = _Stats(float(cfg["interval"]), start_at)
    # The attempt's read timeout is the client timeout; the pool's own is a backstop.
    regions = [_Region(r, float(cfg["client_timeout"]) + 1.0) for r in cfg["regions"]]
    index = {r.name: i for i, r in enumerate(regions)}
    groups = [[[index[n] for n in g["regions"]] for g in r.get("failover", ())] for r in cfg["regions"]]
    shares = [float(r["share"]) for r in cfg["regions"]]
    conns = max(len(regions), int(cfg["connections"]))
    per_region = _spread(conns, shares)
    rate = float(cfg["rate"])
    deadline = start_at + float(cfg["duration"])
    stopped: list[int] = []
    load = trio.CancelScope()
    async with trio.open_nursery() as watch:
        await watch.start(_stop_on_signals, load, stopped)
        with load:
            try:
                delay = start_at - time.time()
                if delay > 0:
                    await trio.sleep(delay)
                async with trio.open_nursery() as nursery:
                    cid = 0
                    for ri, k in enumerate(per_region):
                        for _ in range(k):
                            nursery.start_soon(
                                _client, cid, ri, regions, groups[ri], cfg, mix, stats, deadline, rate / conns
                            )
                            cid += 1
            finally:
                with trio.CancelScope(shield=True):
                    for region in regions:
                        for pool in region.pools:
                            await pool.aclose()
        watch.cancel_scope.cancel()
    return _outcome(stats, start_at, conns, partial=bool(stopped))


async def _stop_on_signals(load: trio.CancelScope, stopped: list[int], *, task_status: Any) -> None:
    """Cancel ``load`` on SIGINT, SIGTERM or SIGHUP, noting the signal in ``stopped``."""
    stops = [signal.SIGINT, signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])
    with trio.open_signal_receiver(*stops) as signals:
        task_status.started()
        async for signum in signals:
            stopped.append(signum)
            load.cancel()


def _outcome(stats: _Stats, start_at: float, conns: int, *, partial: bool) -> dict[str, Any]:
    """The result document of what ``stats`` counted from ``start_at`` until now."""
    elapsed = max(1e-9, time.time() - start_at)
    lat = sorted(stats.latencies)

    def pct(p: float) -> float | None:
        return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 3) if lat else None

    answered = stats.totals["ok"] + stats.totals["http_5xx"]
    return {
        "started_at": start_at,
        "elapsed": round(elapsed, 3),
        "partial": partial,
        "connections": conns,
        "totals": stats.totals,
        "attempt_errors": stats.attempt_errors,
        "failed_over_regions": stats.failed_over_regions,
        "throughput_rps": round(answered / elapsed, 1),
        "p50_ms": pct(0.5),
        "p99_ms": pct(0.99),
        "interval": stats.interval,
        "buckets": [{"t": k * stats.interval, **stats.buckets[k]} for k in sorted(stats.buckets)],
    }


def nothing_sent(interval: float, start_at: float, connections: int) -> dict[str, Any]:
    """The result document of a load generator stopped before it could write one (killed,
    or stopped before it ran): nothing counted, ``partial``."""
    return _outcome(_Stats(interval, start_at), start_at, connections, partial=True)


def _spread(total: int, shares: list[float]) -> list[int]:
    """``total`` clients over regions by share, at least one each."""
    s = sum(shares) or 1.0
    out = [max(1, math.floor(total * x / s)) for x in shares]
    i = 0
    while sum(out) < total:
        out[i % len(out)] += 1
        i += 1
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m edgesim._drillload CONFIG.json RESULT.json", file=sys.stderr)
        return 2
    with open(args[0], encoding="utf-8") as f:
        cfg = json.load(f)
    result = trio.run(run, cfg)
    write_atomic(args[1], json.dumps(result))
    return 130 if result["partial"] else 0  # stopped by a signal: what it had is written


if __name__ == "__main__":
    raise SystemExit(main())
