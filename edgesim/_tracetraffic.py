"""A request trace as a topology's traffic (``[traffic] trace = FILE``).

Theory of operation
-------------------
With a trace, the trace *is* the traffic: each record becomes one client request at
its time (relative to the trace's first record), and the diurnal curve, ``peak_rps``
and redirect shares play no part. Deploys and faults still apply.

- **Keys become URLs of a synthetic site.** Each site's distinct keys are numbered by
  popularity (most requested first; ties in order of first appearance) and become the
  objects of that site's catalog: object ``i`` is the key of rank ``i``, its size the
  key's first size in the trace. The object index is thus a popularity rank, as in a
  synthetic catalog (sampled runs bucket keys by it, docs/sampling.md). Kinds (html, img, ...)
  still come from the site's type mix, so cacheability and TTL come from the site's
  cache policy exactly as for synthetic traffic. A site's ``catalog.objects`` is
  replaced by its key count.
- **Placement.** A trace with ``region,site`` columns places each request: the names
  must be regions and sites of the topology. Without them, each key belongs to one site,
  chosen by a stable hash weighted by the sites' ``share``, and each request's region is
  drawn by ``client_share``.
- Records at or after ``traffic.duration`` are left out (and counted).

The result is a few flat lists the engine walks in order; nothing here runs per request
in the engine's loop.
"""

from __future__ import annotations

import hashlib
from array import array
from bisect import bisect_right
from dataclasses import dataclass

import numpy as np

from edgesim.errors import TopologyError, TopologyProblem
from edgesim.topology import Topology
from edgesim.traces import read_trace

__all__ = ["TraceTraffic", "load_trace_traffic"]


@dataclass(frozen=True, slots=True, eq=False)
class TraceTraffic:
    """Requests of a trace, mapped onto a topology (parallel columns, in time order).

    Attributes:
        times: request time in seconds from the trace's first record.
        regions: region index of each request, or -1 (draw by ``client_share``).
        sites: site index of each request.
        objects: the object (catalog index) of each request within its site.
        site_sizes: per site, the size of each of its objects; empty for a site the
            trace never asks for (it keeps its synthetic catalog).
        dropped: records left out because they fall at or after the run's duration.
        source: the trace file, for messages.
    """

    times: array[float]
    regions: array[int]
    sites: array[int]
    objects: array[int]
    site_sizes: tuple[tuple[int, ...], ...]
    dropped: int
    source: str

    def __len__(self) -> int:
        return len(self.times)


def _stable_unit(key: str | int) -> float:
    d = hashlib.blake2b(str(key).encode(), digest_size=8, person=b"edgesim-trsite").digest()
    return int.from_bytes(d, "big") / 18446744073709551616.0


def load_trace_traffic(topo: Topology) -> TraceTraffic:
    """Read ``topo.traffic.trace`` and map it onto the topology's regions and sites.

    Raises:
        TraceError: the file cannot be read (file, line or record, what was expected).
        TopologyError: the trace names a region or site the topology lacks, or a site it
            uses has no synthetic catalog.
    """
    tr = topo.traffic
    assert tr.trace is not None
    path = str(tr.trace)
    trace = read_trace(path, tr.trace_format or None)
    nsites = len(topo.sites)
    site_of_name = {s.name.lower(): i for i, s in enumerate(topo.sites)}
    region_of_name = {r.name: i for i, r in enumerate(topo.regions)}

    def bad(msg: str) -> TopologyError:
        return TopologyError([TopologyProblem(path, 0, "", msg)])

    n = len(trace)
    order = sorted(range(n), key=trace.times.__getitem__) if n else []
    t0 = trace.times[order[0]] if n else 0.0
    duration = tr.duration

    placed = trace.has_placement
    region_map: list[int] = []
    site_map: list[int] = []
    if placed:
        for name in trace.region_names:
            if name not in region_of_name:
                raise bad(
                    f"region {name!r} is not a region of the topology "
                    f"(expected one of: {', '.join(region_of_name)})"
                )
            region_map.append(region_of_name[name])
        for name in trace.site_names:
            i = site_of_name.get(name.lower())
            if i is None:
                raise bad(
                    f"site {name!r} is not a site of the topology (expected one of: "
                    f"{', '.join(s.name for s in topo.sites)})"
                )
            site_map.append(i)
    shares = [max(0.0, s.share) for s in topo.sites]
    total = sum(shares) or 1.0
    cdf: list[float] = []
    acc = 0.0
    for w in shares:
        acc += w / total
        cdf.append(acc)
    key_site: dict[int, int] = {}

    def site_of_key(k: int) -> int:
        si = key_site.get(k)
        if si is None:
            name: str | int = trace.key_names[k] if trace.key_names is not None else k
            si = key_site[k] = min(bisect_right(cdf, _stable_unit(name)), nsites - 1)
        return si

    times: array[float] = array("d")
    regions: array[int] = array("q")
    sites: array[int] = array("q")
    objects: array[int] = array("q")
    index: list[dict[int, int]] = [{} for _ in range(nsites)]
    sizes: list[list[int]] = [[] for _ in range(nsites)]
    dropped = 0
    keys, tsizes, ttimes = trace.keys, trace.sizes, trace.times
    for j in order:
        t = ttimes[j] - t0
        if t >= duration:
            dropped += 1
            continue
        k = keys[j]
        if placed:
            assert trace.regions is not None and trace.sites is not None
            si = site_map[trace.sites[j]]
            ri = region_map[trace.regions[j]]
        else:
            si = site_of_key(k)
            ri = -1
        ids = index[si]
        obj = ids.get(k)
        if obj is None:
            obj = ids[k] = len(ids)
            sizes[si].append(tsizes[j])
        times.append(t)
        regions.append(ri)
        sites.append(si)
        objects.append(obj)
    _rank_by_popularity(sites, objects, sizes)
    for si, s in enumerate(topo.sites):
        if sizes[si] and s.catalog is None:
            raise bad(
                f"requests for site {s.name!r}, which is a site directory: a trace needs "
                "sites with a [sites.catalog] (its keys become the catalog's objects)"
            )
    return TraceTraffic(times, regions, sites, objects, tuple(tuple(x) for x in sizes), dropped, path)


def _rank_by_popularity(sites: array[int], objects: array[int], sizes: list[list[int]]) -> None:
    """Renumber each site's objects (numbered by first appearance) by request count,
    most requested first, ties kept in first-appearance order; in place."""
    if not objects:
        return
    site_arr = np.frombuffer(sites, dtype=np.int64)
    obj_arr = np.frombuffer(objects, dtype=np.int64).copy()
    for si, site_sizes in enumerate(sizes):
        n = len(site_sizes)
        if n < 2:
            continue
        sel = site_arr == si
        counts = np.bincount(obj_arr[sel], minlength=n)
        order = np.argsort(-counts, kind="stable")  # stable: ties by first appearance
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n)
        obj_arr[sel] = rank[obj_arr[sel]]
        sizes[si] = [site_sizes[i] for i in order.tolist()]
    objects[:] = array("q", obj_arr.tolist())
