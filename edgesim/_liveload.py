"""Live mode's load generator: its own process, real HTTP to the edges, one record per
request.

Run by edgesim/live.py as ``python -P -m edgesim._liveload SCHEDULE RECORDS``:

* ``SCHEDULE`` (JSON) holds the edge nodes (URL, region), the regions' balancers, the
  drain time and the arrivals ``[t, region, site, target, headers, node]`` (``node``
  -1: choose by least connections here, as the engine does; else the node the parent
  chose for a ``random`` or ``consistent-hash`` region).
* It prints ``ready`` once loaded, then reads the run's start (Unix seconds) from
  stdin: the parent's edges and this process share that time base.
* Each finished request appends one line to ``RECORDS``, written and flushed at once
  (``t0 latency queued node site outcome size``, seconds from the start): whatever
  happens to a node or to this process, every request already answered is on disk.

Loopback targets only; bounded by the schedule plus the drain time.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import IO, Any
from urllib.parse import urlsplit

import trio

from edgesim._client import OriginError, OriginPool
from edgesim._modelled import outcome_code
from edgesim.http import Request
from edgesim.metrics import O_FAILED

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


class _Load:
    def __init__(self, spec: dict[str, Any], out: IO[str], start_at: float) -> None:
        self.nodes: list[dict[str, Any]] = spec["nodes"]
        self.arrivals: list[list[Any]] = spec["arrivals"]
        self.drain = float(spec["drain"])
        self.read_timeout = float(spec["read_timeout"])
        self.out = out
        self.start_at = start_at
        self.inflight = [0] * len(self.nodes)
        self.by_region: dict[int, list[int]] = {}
        for i, n in enumerate(self.nodes):
            self.by_region.setdefault(int(n["region"]), []).append(i)
        self.rr = 0

    def now(self) -> float:
        return time.time() - self.start_at

    def record(
        self, t0: float, lat: float, queued: float, node: int, site: int, code: int, size: int
    ) -> None:
        self.out.write(f"{t0:.6f} {lat:.6f} {queued:.6f} {node} {site} {code} {size}\n")
        self.out.flush()

    def least_connections(self, region: int) -> int:
        # The engine's rule: fewest requests in flight, ties in round-robin order.
        group = self.by_region[region]
        self.rr += 1
        k = len(group)
        best = group[self.rr % k]
        for j in range(1, k):
            n = group[(self.rr + j) % k]
            if self.inflight[n] < self.inflight[best]:
                best = n
        return best

    async def one(self, pool: OriginPool, node: int, site: int, target: str, headers: list[Any]) -> None:
        t0 = self.now()
        try:
            resp = await pool.request(Request("GET", target, [(str(k), str(v)) for k, v in headers]))
        except OriginError:  # no answer: a failed request
            self.inflight[node] -= 1
            self.record(t0, self.now() - t0, 0.0, node, site, O_FAILED, 0)
            return
        except trio.Cancelled:  # the drain time ran out: failed too
            self.record(t0, self.now() - t0, 0.0, node, site, O_FAILED, 0)
            raise
        self.inflight[node] -= 1
        code, queued = outcome_code(resp)
        self.record(t0, self.now() - t0, queued, node, site, code, resp.size)

    async def run(self, parent: int) -> None:
        # the parent killed (SIGKILL: no one to stop this process): stop sending
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_end_with_parent, parent, nursery.cancel_scope)
            await self.send()
            nursery.cancel_scope.cancel()

    async def send(self) -> None:
        pools = [OriginPool(n["url"], read_timeout=self.read_timeout, max_idle=256) for n in self.nodes]
        last = self.arrivals[-1][0] if self.arrivals else 0.0
        try:
            with trio.move_on_after(max(0.0, self.start_at - time.time()) + last + self.drain):
                async with trio.open_nursery() as nursery:
                    for t, region, site, target, headers, node in self.arrivals:
                        delay = self.start_at + t - time.time()
                        if delay > 0:
                            await trio.sleep(delay)
                        n = int(node) if node >= 0 else self.least_connections(int(region))
                        self.inflight[n] += 1
                        nursery.start_soon(self.one, pools[n], n, int(site), target, headers)
        finally:
            for p in pools:
                await p.aclose()


async def _end_with_parent(parent: int, scope: trio.CancelScope) -> None:
    # (no event tells of a parent's death: polled)
    while os.getppid() == parent:  # noqa: ASYNC110
        await trio.sleep(0.5)
    scope.cancel()


def main() -> int:
    sched, records = sys.argv[1:3]
    parent = os.getppid()
    with open(sched, encoding="utf-8") as f:
        spec = json.load(f)
    for n in spec["nodes"]:
        if urlsplit(n["url"]).hostname not in _LOOPBACK:
            print(f"edgesim live load: {n['url']}: only loopback targets", file=sys.stderr)
            return 2
    print("ready", flush=True)
    line = sys.stdin.readline()
    if not line.strip():
        return 1
    start_at = float(line)
    with open(records, "a", encoding="utf-8") as out:
        try:
            trio.run(_Load(spec, out, start_at).run, parent)
        except KeyboardInterrupt:
            return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
