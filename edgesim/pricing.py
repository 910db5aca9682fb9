"""What a simulated run costs at the topology's prices: one function for ``sweep`` (the
cost of a run) and ``plan`` (the cost of an hour at peak, and each region's part of it).

Prices (docs/topology.md): ``cost_per_hour`` per edge node (from the region's edge group
or its hardware profile) and per shield node, ``cost_per_gb_egress`` per 10**9 bytes an
edge region serves to its clients, and ``origin.cost_per_request``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edgesim.topology import Topology

__all__ = ["HourlyCost", "hourly_cost", "run_cost"]


@dataclass(frozen=True, slots=True)
class HourlyCost:
    """The cost of one hour at a run's steady-state rates.

    Attributes:
        nodes: region -> its edge nodes' cost per hour.
        egress: region -> its egress cost per hour.
        egress_gb: region -> GB (10**9 bytes) served to its clients per hour.
        origin: region -> its part of the origin-request cost per hour (the origin's cost
            split by the requests each region's edges sent upstream).
        shield: the shield nodes' cost per hour.
        origin_requests: the origin-request cost per hour.
        priced: whether the topology gives any price at all.
    """

    nodes: dict[str, float]
    egress: dict[str, float]
    egress_gb: dict[str, float]
    origin: dict[str, float]
    shield: float
    origin_requests: float
    priced: bool

    def region(self, name: str) -> float:
        """What region ``name`` adds per hour: its nodes, its egress, its origin requests."""
        return self.nodes[name] + self.egress[name] + self.origin[name]

    @property
    def total(self) -> float:
        return sum(self.nodes.values()) + self.shield + self.origin_requests + sum(self.egress.values())


def hourly_cost(report: Mapping[str, Any], topo: Topology) -> HourlyCost:
    """Price one hour of ``report`` (a ``simulate(...).to_dict()`` of ``topo``): node-hours
    of the topology's node counts, egress and origin requests at the report's
    steady-state rates (warm-up excluded)."""
    steady = max(float(report["meta"]["duration"]) - float(report["meta"]["warmup"]), 1e-9)
    priced = topo.origin.cost_per_request > 0 or (topo.shield is not None and topo.shield.cost_per_hour > 0)
    nodes: dict[str, float] = {}
    egress: dict[str, float] = {}
    egress_gb: dict[str, float] = {}
    upstream: dict[str, float] = {}
    for r in topo.regions:
        g = r.edge
        priced = priced or g.cost_per_hour > 0 or g.cost_per_gb_egress > 0
        stats = report["regions"].get(r.name, {})
        nodes[r.name] = g.nodes * g.cost_per_hour
        gb = float(stats.get("bytes_served", 0)) / steady * 3600.0 / 1e9
        egress_gb[r.name] = gb
        egress[r.name] = gb * g.cost_per_gb_egress
        upstream[r.name] = float(stats.get("origin_requests", 0))
    shield = topo.shield.nodes * topo.shield.cost_per_hour if topo.shield is not None else 0.0
    origin_rps = float(report["origin"]["requests_per_second"] or 0.0)  # null: stopped in the warm-up
    origin_cost = origin_rps * 3600.0 * topo.origin.cost_per_request
    up = sum(upstream.values())
    origin = {n: origin_cost * u / up if up > 0 else 0.0 for n, u in upstream.items()}
    return HourlyCost(nodes, egress, egress_gb, origin, shield, origin_cost, priced)


def run_cost(report: Mapping[str, Any], topo: Topology) -> float | None:
    """Cost of the whole simulated span (warm-up included) at the topology's prices;
    None when it gives no prices at all."""
    h = hourly_cost(report, topo)
    if not h.priced:
        return None
    return round(h.total * float(report["meta"]["duration"]) / 3600.0, 6)
