"""Helpers shared by several test modules, imported by name (tests/ is on sys.path, as
for rulegen and shadow_topo): the CLI run in-process, small topologies (as TOML text
and built in code), a generated request trace, and a real origin process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from edgesim.cli import cli
from edgesim.topology import (
    Catalog,
    Deploy,
    Distribution,
    EdgeGroup,
    Faults,
    Latency,
    Origin,
    Region,
    Site,
    Topology,
    Traffic,
)

# ---- the CLI ---------------------------------------------------------------------------


def run_cli(*args: str, input: str | None = None) -> tuple[int, str, str]:
    """``edgesim ARGS`` in this process: (exit code, stdout, stderr). An exception the
    CLI lets through fails the test with its traceback."""
    result = CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


# ---- topologies ------------------------------------------------------------------------


def small_topology(
    *, name: str, seed: int, eu: str = "", eu_edge: str = "", us_edge: str = "nodes = 1"
) -> str:
    """Two regions (``eu`` with 2 nodes, ``us`` with the origin), one site of 500 objects
    and four minutes of traffic at 40 requests/s: a virtual run of a few seconds.
    ``eu`` adds lines to the eu region's table, ``eu_edge`` and ``us_edge`` to each
    region's ``[regions.edge]`` table."""
    return f"""
name = "{name}"
seed = {seed}
interval = "30s"

[[regions]]
name = "eu"
utc_offset = 1
client_share = 0.6
countries = {{ DE = 0.5, FR = 0.5 }}
{eu}
[regions.edge]
nodes = 2
workers = 8
memory_cache = "64MB"
{eu_edge}

[[regions]]
name = "us"
utc_offset = -5
client_share = 0.4
[regions.edge]
{us_edge}

[origin]
region = "us"
workers = 8

[[sites]]
name = "small.example"
share = 1.0
[sites.catalog]
objects = 500
zipf = 0.9

[traffic]
duration = "4m"
warmup = "30s"
peak_rps = 40
"""


def trace_topology(
    nodes: dict[str, int],
    *,
    cache: str,
    duration: str = "1h",
    sites: tuple[str, ...] = ("a.example", "b.example"),
    client_shares: dict[str, float] | None = None,
    site_shares: dict[str, float] | None = None,
) -> str:
    """A topology whose traffic is the trace ``t.csv`` beside it (as
    :func:`write_zipf_trace` writes it): the regions ``nodes`` names with that many
    nodes and a ``cache`` memory cache each, and ``sites`` of 10 images each. Shares
    not given are equal."""
    parts = []
    for region, n in nodes.items():
        share = "" if client_shares is None else f"client_share = {client_shares[region]}\n"
        parts.append(
            f'[[regions]]\nname = "{region}"\n{share}[regions.edge]\nnodes = {n}\nmemory_cache = "{cache}"\n'
        )
    for site in sites:
        share = "" if site_shares is None else f"share = {site_shares[site]}\n"
        parts.append(
            f'[[sites]]\nname = "{site}"\n{share}[sites.catalog]\nobjects = 10\ntypes = {{ img = 1 }}\n'
        )
    parts.append(f'[traffic]\nduration = "{duration}"\nwarmup = "0s"\ntrace = "t.csv"\n')
    return "\n".join(parts)


def topo(
    *,
    rps: float = 400.0,
    duration: float = 10.0,
    warmup: float = 0.0,
    nodes: int = 2,
    workers: int = 16,
    memory: int = 256 * 2**20,
    balancer: str = "random",
    objects: int = 500,
    service: float = 0.0005,
    origin_service: Distribution | None = None,
    sites: tuple[Site, ...] | None = None,
    faults: Faults | None = None,
    deploys: tuple[Deploy, ...] = (),
    regions: int = 2,
    seed: int = 7,
    interval: float = 1.0,
) -> Topology:
    """A topology built in code for the capacity engine: ``regions`` regions ``r0``,
    ``r1``, ... with equal client shares (the origin in ``r0``) and, unless ``sites``
    is given, one site ``shop.test`` of ``objects`` Zipf-popular objects."""
    regs = tuple(
        Region(
            f"r{i}",
            utc_offset=float(i),
            client_share=1.0 / regions,
            countries=(("US", 0.5), ("DE", 0.5)),
            languages=(("en", 0.7), ("de", 0.3)),
            client_latency=Latency(0.01, 0.002),
            origin_latency=Latency(0.03, 0.005),
            edge=EdgeGroup(
                nodes=nodes,
                workers=workers,
                memory_cache=memory,
                service_time=Distribution("fixed", value=service),
                balancer=balancer,
            ),
        )
        for i in range(regions)
    )
    return Topology(
        name="test",
        path=None,
        seed=seed,
        interval=interval,
        regions=regs,
        region_latency=(),
        origin=Origin(
            region="r0",
            workers=64,
            service_time=origin_service or Distribution("lognormal", median=0.01, sigma=0.3),
        ),
        shield=None,
        sites=sites or (Site("shop.test", catalog=Catalog(objects=objects, zipf=0.9, seed=1)),),
        traffic=Traffic(duration=duration, peak_rps=rps, warmup=warmup, deploys=deploys),
        faults=faults or Faults(),
    )


# ---- traces ----------------------------------------------------------------------------


def write_zipf_trace(
    path: Path, n: int, *, objects: int, gap: float, seed: int, placed: bool = True
) -> list[tuple[float, str, int, str, str]]:
    """Write ``n`` requests ``gap`` seconds apart over ``objects`` keys (Zipf 0.9, one
    lognormal size around 20 kB per key) to the CSV trace ``path``, each placed in
    region ``eu`` or ``us`` and in site ``b.example`` (keys divisible by 3) or
    ``a.example``; ``placed=False`` leaves the region and site columns out of the file.
    Returns the rows (time, key, size, region, site)."""
    rng = np.random.default_rng(seed)
    w = 1 / np.arange(1, objects + 1) ** 0.9
    keys = rng.choice(objects, size=n, p=w / w.sum())
    sizes = rng.lognormal(np.log(20_000), 1.0, objects).astype(int) + 1
    regions = rng.choice(["eu", "us"], size=n)
    rows = [
        (i * gap, f"k{k}", int(sizes[k]), str(regions[i]), "a.example" if k % 3 else "b.example")
        for i, k in enumerate(keys)
    ]
    with path.open("w") as f:
        if placed:
            f.write("time,key,size,region,site\n")
            f.writelines(f"{t},{k},{s},{r},{site}\n" for t, k, s, r, site in rows)
        else:
            f.write("time,key,size\n")
            f.writelines(f"{t},{k},{s}\n" for t, k, s, _, _ in rows)
    return rows


# ---- a real origin ---------------------------------------------------------------------


class OriginProcess:
    """``python -m origin`` serving ``sites`` on a loopback port; ``url`` is where."""

    def __init__(self, sites: Path, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-P", "-m", "origin", "--sites", str(sites), "--port", "0", *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("origin listening on "), line + (
            self.proc.stderr.read() if self.proc.stderr else ""
        )
        self.url = line.split()[-1]

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited 15 s later."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def alive_pids(pids: set[int]) -> list[int]:
    """Those of ``pids`` still running."""
    left = []
    for pid in pids:
        try:
            os.kill(pid, 0)
            left.append(pid)
        except ProcessLookupError:
            pass
    return left


def descendants(pid: int) -> set[int]:
    """The processes below ``pid`` (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.add(child)
            todo.append(child)
    return out
