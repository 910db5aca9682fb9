"""The traffic model as a stream of arrivals, for drivers other than the capacity engine.

The capacity engine (edgesim/engine.py) draws its arrivals inline in its hot loop. The
Trio engine (edgesim/trioengine.py) and live mode (edgesim/live.py) need the same
arrivals one at a time: :class:`ArrivalStream` builds the engine's own traffic state
(sites and their Zipf samplers, redirect sources, piecewise-constant rates, visitor
mixes, link latencies, balancer rings) and draws from it in the engine's order, so a
given (topology, seed) yields the arrivals the engine would see. This module is the
one place outside engine.py that reads the engine's private state.

:func:`window_topology` cuts a window out of a topology's traffic curve and scales its
rate: live mode runs such a window, and a virtual run of the same derived topology is
its comparison.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, NamedTuple

from edgesim.engine import model_events
from edgesim.topology import Topology

__all__ = ["Arrival", "ArrivalStream", "model_events", "window_topology"]


class Arrival(NamedTuple):
    """One client request of the traffic model.

    ``t`` is virtual seconds from the run's start; ``region`` and ``site`` are indexes
    (topology order); ``headers`` include ``host`` and the visitor's country and
    language; ``u_balance`` is the uniform draw a ``random`` balancer uses.
    """

    t: float
    region: int
    site: int
    target: str
    headers: list[tuple[str, str]]
    u_balance: float


def window_topology(topology: Topology, start: float, duration: float, rate_scale: float = 1.0) -> Topology:
    """The topology restricted to ``[start, start + duration)`` of its traffic curve,
    with every rate multiplied by ``rate_scale``.

    Virtual time 0 of the result is ``start`` of the original: the diurnal curve,
    flash crowds, deploys and faults are shifted (events that end before the window
    are dropped, ones that overlap its start are clipped). The warm-up counts from
    the original start (a window after it has none). Caches start cold.

    Raises:
        ValueError: a window outside the traffic's duration or inside its warm-up, or a
            non-positive scale.
    """
    tr = topology.traffic
    start, duration = float(start), float(duration)
    if not (start >= 0 and duration > 0 and start + duration <= tr.duration + 1e-9):
        raise ValueError(
            f"window {start:g},{duration:g}: expected START >= 0 and DURATION > 0 within the "
            f"traffic's {tr.duration:g} s"
        )
    if not rate_scale > 0 or math.isinf(rate_scale):
        raise ValueError(f"rate scale {rate_scale!r}: expected a number > 0")
    end = start + duration
    if end <= tr.warmup:  # every figure of the report would be left out (or divided by 0)
        raise ValueError(
            f"window {start:g},{duration:g}: it ends inside the traffic's warm-up (its first "
            f"{tr.warmup:g} s), so it would have no steady-state figure; end it after {tr.warmup:g} s"
        )

    def clip(at: float, length: float) -> tuple[float, float] | None:
        a, b = max(at, start), min(at + length, end)
        return (a - start, b - a) if b > a else None

    crowds = []
    for fc in tr.flash_crowds:
        c = clip(fc.start, fc.duration)
        if c is not None:
            crowds.append(replace(fc, start=c[0], duration=c[1]))
    deploys = tuple(replace(d, at=d.at - start) for d in tr.deploys if start <= d.at < end)
    f = topology.faults
    # a crash in progress at the window's start starts with it (the node down, its cache
    # cold, dropped by the balancer after the health check delay) and keeps its restart
    crashes = tuple(
        replace(c, at=max(c.at, start) - start, down_for=c.at + c.down_for - max(c.at, start))
        for c in f.crashes
        if c.at < end and c.at + c.down_for > start
    )
    outages = []
    for o in f.outages:
        c = clip(o.at, o.duration)
        if c is not None:
            outages.append(replace(o, at=c[0], duration=c[1]))
    spikes = []
    for s in f.spikes:
        c = clip(s.at, s.duration)
        if c is not None:
            spikes.append(replace(s, at=c[0], duration=c[1]))
    traffic = replace(
        tr,
        duration=duration,
        peak_rps=tr.peak_rps * rate_scale,
        warmup=max(0.0, min(tr.warmup - start, duration)),
        start_hour_utc=tr.start_hour_utc + start / 3600.0,
        flash_crowds=tuple(crowds),
        deploys=deploys,
    )
    faults = replace(f, crashes=crashes, outages=tuple(outages), spikes=tuple(spikes))
    return replace(topology, traffic=traffic, faults=faults)


class ArrivalStream:
    """The arrivals of a topology's traffic, in time order, one :meth:`next` at a time.

    Args:
        topology: the topology (synthetic traffic, or a replayed trace).
        seed: the run's seed.
        stop_at: end arrivals here (default: the traffic's duration).

    Attributes:
        engine: the capacity engine's state the stream draws from (its sites, links,
            nodes and balancers); drivers use it to choose nodes (:meth:`choose`),
            draw latencies and service times, and publish deploys.
    """

    def __init__(self, topology: Topology, seed: int, stop_at: float | None = None) -> None:
        from edgesim.engine import _Arrivals, _Engine

        self.topology = topology
        self.engine: Any = _Engine(topology, seed, stop_at)
        eng = self.engine
        eng.warmup = topology.traffic.warmup
        self._src = _Arrivals(eng)
        self._block: tuple[list[Any], ...] = ([],)
        self._i = 0
        self._fill()

    def _fill(self) -> None:
        # the engine's blocks, in order, until one has arrivals or they are over
        while self._i >= len(self._block[0]) and self._src.start() < math.inf:
            self._block = tuple(a.tolist() for a in self._src.block())
            self._i = 0

    @property
    def end(self) -> float:
        """Where arrivals stop (virtual seconds)."""
        return float(self.engine.end)

    def peek(self) -> float:
        """The time of the next arrival (``inf`` when there are no more)."""
        i = self._i
        return float(self._block[0][i]) if i < len(self._block[0]) else math.inf

    def next(self) -> Arrival | None:
        """The next arrival, or None after the last."""
        i = self._i
        if i >= len(self._block[0]):
            return None
        t, ri, si, oi, vi, u5 = (col[i] for col in self._block)
        self._i = i + 1
        self._fill()
        eng = self.engine
        sm = eng.sites[si]
        target = sm.urls[oi] if oi >= 0 else sm.redirects[-1 - oi]
        headers = list(eng.headers[si][ri][vi])
        return Arrival(t, ri, si, target, headers, u5)

    def choose(self, arrival: Arrival) -> Any:
        """The engine's node (``_Node``) for ``arrival`` by its region's balancer, among
        the region's live nodes (None when none is left). ``least-connections`` reads
        each node's ``conns``: the driver keeps it up to date."""
        eng = self.engine
        ri = arrival.region
        group = eng.alive[ri]
        if eng.balancers[ri] == "random" and group:
            return group[min(int(arrival.u_balance * len(group)), len(group) - 1)]
        return eng._choose(ri, arrival.target, None)

    def publish_deploy(self, site: str, new_fraction: float, now: float) -> dict[str, Any]:
        """Publish a new deploy of ``site`` on the stream's origin model, so later
        arrivals request its new URLs; returns the deploy options (``seed``,
        ``new_fraction``) for the driver's real origin, which then builds the same
        catalog."""
        eng = self.engine
        host = site.lower()
        si = eng.site_index.get(host)
        if si is None:
            raise ValueError(f"deploy of unknown site {site!r}")
        opts: dict[str, Any] = {}
        if eng.origin.sites[host].deploy.catalog is not None:
            opts = {"seed": int(eng.u_misc() * 2**31), "new_fraction": new_fraction}
        prepared = eng.origin.prepare_deploy(host, options=opts)
        d = eng.origin.publish(prepared, now)
        if d.catalog is not None:
            eng.sites[si].urls = eng._catalog_urls(host)
        return opts
