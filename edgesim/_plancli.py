"""``edgesim plan`` and ``edgesim mrc``: click commands over :mod:`edgesim.plan` and
:mod:`edgesim.mrc` (parse, call, print; no logic of their own)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from edgesim._clitypes import STDOUT, FiniteFloatRange, OutputFile, load_topology_arg, write_result
from edgesim._topoload import exists
from edgesim.errors import EdgesimError
from edgesim.mrc import MAX_DRAWN

# plan: 0 a plan was found, 3 the objective cannot be met inside the search bounds.
EXIT_NO_PLAN = 3


class _Error(click.ClickException):
    """One line (``Error: ...``), exit status 1."""


def _fail(message: str) -> NoReturn:
    raise _Error(message)


def _sizes(text: str | None, option: str) -> tuple[int, ...]:
    from edgesim._units import parse_size

    if text is None:
        return ()
    out = []
    for part in text.split(","):
        if not part.strip():
            _fail(f"{option}: {text!r} has an empty size (expected sizes such as 16MB,1GB)")
        try:
            v = parse_size(part.strip())
        except ValueError as exc:
            _fail(f"{option}: {exc}")
        if v <= 0:
            _fail(f"{option}: sizes must be above 0 bytes, not {part.strip()!r}")
        out.append(v)
    return tuple(out)


def _bytes(n: float) -> str:
    from edgesim._units import format_size

    return format_size(n)


def _write(path: str, text: str) -> None:
    try:
        write_result(path, text)
    except OSError as exc:
        _fail(f"cannot write {path}: {exc.strerror or exc}")


# ---- plan -------------------------------------------------------------------------------


@click.command("plan", short_help="Find the cheapest node counts meeting a latency objective.")
@click.argument("topology")
@click.option(
    "--slo", required=True, help="Latency objective per region, e.g. 'p99<=80ms' or 'p50<=20ms,p99<=80ms'."
)
@click.option("--origin-max-rps", type=float, help="The origin's request ceiling (requests/s at peak).")
@click.option(
    "--n-plus-1", "n_plus_1", is_flag=True, help="Hold the objective with one node down in each region."
)
@click.option(
    "--region-failure",
    is_flag=True,
    help="Hold it with any one region down, its clients sent to the nearest region.",
)
@click.option("--cache-sizes", help="Memory-tier sizes per node to choose from, e.g. 1GB,4GB,16GB.")
@click.option(
    "--seeds", type=int, default=3, show_default=True, help="K: seeds every candidate must pass on."
)
@click.option("--seed", "seed0", type=int, default=1, show_default=True, help="The first of the K seeds.")
@click.option("--window", default="300s", show_default=True, help="Measured part of the peak window.")
@click.option("--warmup", help="Warm-up before the measured window (default: the topology's).")
@click.option(
    "--min-nodes", type=int, default=1, show_default=True, help="Search bound: fewest nodes per region."
)
@click.option(
    "--max-nodes",
    type=click.IntRange(max=10_000),  # a topology's own bound on nodes per region
    default=64,
    show_default=True,
    help="Search bound: most nodes per region (at most 10,000).",
)
@click.option(
    "--profiles",
    "profiles_arg",
    help="Hardware profiles to weigh in every region: NAME,NAME, 'all' or 'none' (default: all the "
    "topology's [profiles] when it defines two or more).",
)
@click.option(
    "--json",
    "json_path",
    type=OutputFile(stdout=True),
    help="Write the plan as JSON ('-': to standard output, the table to standard error).",
)
@click.option("--quiet", is_flag=True, help="No progress lines.")
def plan_command(
    topology: str,
    slo: str,
    origin_max_rps: float | None,
    n_plus_1: bool,
    region_failure: bool,
    cache_sizes: str | None,
    seeds: int,
    seed0: int,
    window: str,
    warmup: str | None,
    min_nodes: int,
    max_nodes: int,
    profiles_arg: str | None,
    json_path: str | None,
    quiet: bool,
) -> None:
    """Search, per region of TOPOLOGY, the smallest edge node count that meets --slo at
    the traffic peak on every one of --seeds seeds (docs/plan.md). Exits 0 with a plan,
    3 when the objective cannot be met inside the search bounds (saying which
    constraint binds)."""
    from edgesim._units import parse_duration
    from edgesim.plan import PlanError, PlanOptions, parse_objective, plan

    try:
        objective = parse_objective(slo)
    except PlanError as exc:
        _fail(str(exc))
    try:
        win = parse_duration(window)
        warm = parse_duration(warmup) if warmup is not None else None
    except ValueError as exc:
        _fail(f"--window/--warmup: {exc}")
    sizes = _sizes(cache_sizes, "--cache-sizes")
    topo = load_topology_arg(topology)
    profiles: tuple[str, ...] | None = None
    if profiles_arg is not None:
        names = tuple(p.strip() for p in profiles_arg.split(",") if p.strip())
        if names == ("all",):
            profiles = tuple(p.name for p in topo.profiles)
            if not profiles:
                _fail(f"--profiles all: {topo.name} defines no [profiles.NAME]")
        elif names == ("none",):
            profiles = ()
        elif not names:
            _fail("--profiles: expected NAME,NAME, 'all' or 'none'")
        else:
            profiles = names
    opts = PlanOptions(
        objective=objective,
        origin_max_rps=origin_max_rps,
        n_plus_1=n_plus_1,
        region_failure=region_failure,
        cache_sizes=sizes,
        seeds=seeds,
        seed0=seed0,
        window=win,
        warmup=warm,
        min_nodes=min_nodes,
        max_nodes=max_nodes,
        profiles=profiles,
    )

    def progress(line: str) -> None:
        click.echo(line, err=True)

    try:
        result = plan(topo, opts, progress=None if quiet else progress)
    except PlanError as exc:
        _fail(str(exc))
    data = result.as_dict()
    if json_path:
        _write(json_path, json.dumps(data, indent=1) + "\n")
    _print_plan(data, stderr=json_path == STDOUT)
    if not result.found:
        click.echo(f"no plan: {result.reason}", err=True)
        sys.exit(EXIT_NO_PLAN)


def _print_plan(d: dict[str, Any], *, stderr: bool = False) -> None:
    from rich.console import Console
    from rich.table import Table

    # a pipe or file gets a wide table (rich would wrap it at 80 columns)
    tty = (sys.stderr if stderr else sys.stdout).isatty()
    console = Console(stderr=stderr) if tty else Console(stderr=stderr, width=160)
    s = d["search"]
    if d["found"]:
        t = Table(title=f"plan for {d['topology']}: {d['objective']} at peak", title_justify="left")
        profiled = any(r["profile"] for r in d["regions"].values())
        for col in (
            "region",
            *(("profile",) if profiled else ()),
            "nodes",
            "cache/node",
            "peak rps",
            "peak util",
            "p99 at peak",
            "hit ratio",
            "origin rps",
            "headroom",
            "node $/h",
        ):
            t.add_column(col, justify="left" if col == "region" else "right")
        for name, r in d["regions"].items():
            t.add_row(
                name,
                *((r["profile"] or "-",) if profiled else ()),
                str(r["nodes"]),
                _bytes(r["memory_cache"]) + (f"+{_bytes(r['disk_cache'])} disk" if r["disk_cache"] else ""),
                f"{r['peak_rps']:.1f}",
                f"{r['peak_utilisation']:.1%}",
                # a region with no client share served nothing: no latency, no headroom
                f"{r['latency_at_peak']['p99'] * 1000:.1f} ms" if r["latency_at_peak"] else "-",
                f"{r['hit_ratio']:.3f}",
                f"{r['origin_rps']:.1f}",
                f"{r['headroom']:.0%} ({r['binding']})" if r["headroom"] is not None else "-",
                f"{r['cost_per_hour']:.3f}",
            )
        console.print(t)
        if s["profiles"]:
            for name, r in d["regions"].items():
                alts = [
                    f"{a['profile']} {a['nodes']} nodes {a['cost_per_hour']:.4f}/h"
                    if a["found"]
                    else f"{a['profile']} no ({a['reason']})"
                    for a in r["alternatives"]
                ]
                console.print(f"{name}: profiles weighed (nodes, region cost per hour): " + "; ".join(alts))
        o = d["origin"]
        ceiling = f" (ceiling {o['max_rps']:g})" if o["max_rps"] is not None else ""
        console.print(
            f"origin at peak: {o['peak_rps_window']:.1f} requests/s with every region at its peak{ceiling}; "
            f"{o['peak_rps_coincident']:.1f} requests/s at the day's coincident peak (estimate)"
        )
        c = d["costs_per_hour"]
        console.print(
            f"cost per hour at peak: {c['total']:.4f} = nodes {c['nodes']:.4f} + shield {c['shield']:.4f} "
            f"+ origin requests {c['origin_requests']:.4f} + egress {c['egress']:.4f}"
        )
        console.print("scenarios verified: " + "; ".join(s["scenarios"]))
    else:
        console.print(f"no plan for {d['topology']}: {d['reason']}")
    w = s["window"]
    console.print(
        f"search: {s['simulations']} simulations (search rounds: {s['rounds']}, seeds: {len(s['seeds'])}, "
        f"plus verification) of a {w['warmup']:g} s + {w['measured']:g} s peak window, {s['seconds']:.1f} s"
        + (f"; profiles weighed: {', '.join(s['profiles'])}" if s["profiles"] else "")
    )


# ---- mrc --------------------------------------------------------------------------------


@click.command("mrc", short_help="Hit ratio vs LRU cache size of a topology or trace, in one pass.")
@click.argument("source")
@click.option("--region", help="Only this region's requests.")
@click.option("--site", help="Only this site's requests.")
@click.option(
    "--sizes", help="Cache sizes, e.g. 16MB,64MB,256MB,1GB (default: powers of two up to the footprint)."
)
@click.option(
    "--requests",
    "n_requests",
    type=click.IntRange(1, MAX_DRAWN),
    help="Topology: requests to draw (default: the traffic's duration at peak).",
)
@click.option(
    "--sample-rate",
    type=FiniteFloatRange(0.0, 1.0, min_open=True),
    help="SHARDS sampling rate (default: exact up to 1,000,000 requests, then a rate that keeps "
    "the estimate's error small, at least 1,000,000/requests; docs/mrc.md). A rate below that "
    "processes the most requested keys in full (see --no-head).",
)
@click.option(
    "--no-head",
    is_flag=True,
    help="With --sample-rate: sample the most requested keys by hash like the others (a plain "
    "SHARDS sample: faster, noisier on skewed traces).",
)
@click.option(
    "--format",
    "trace_format",
    type=click.Choice(["csv", "oracle-general"]),
    help="Trace format (default: by extension, else by content).",
)
@click.option(
    "--seed",
    type=click.IntRange(0),
    default=1,
    show_default=True,
    help="Seed of a topology's drawn requests and of the SHARDS sample (which keys it keeps).",
)
@click.option("--html", "html_path", type=OutputFile(), help="Write a self-contained HTML chart.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of the table.")
def mrc_command(
    source: str,
    region: str | None,
    site: str | None,
    sizes: str | None,
    n_requests: int | None,
    sample_rate: float | None,
    no_head: bool,
    trace_format: str | None,
    seed: int,
    html_path: str | None,
    as_json: bool,
) -> None:
    """Miss-ratio curve of SOURCE: a topology (file or bundled name, its synthetic
    request stream) or a trace (CSV `time,key,size[,region,site]` or oracleGeneral).
    Exact byte-capacity LRU hit ratios by stack distance (docs/mrc.md)."""
    from edgesim.mrc import select, topology_trace, trace_curve
    from edgesim.traces import format_by_name, read_trace

    caps = _sizes(sizes, "--sizes") or None
    found = exists(Path(source))
    if not found and format_by_name(source) is not None:
        # named as a trace (a trace suffix, maybe compressed): not a topology name
        try:
            Path(source).stat()
            reason = "No such file or directory"
        except OSError as exc:
            reason = exc.strerror or str(exc)
        _fail(f"{source}: cannot open: {reason}")
    is_topology = source.endswith(".toml") or not found
    try:
        if is_topology:
            topo = load_topology_arg(source)
            if topo.traffic.trace is not None:
                # its synthetic stream is not its traffic: say so rather than draw it
                _fail(f"{source}: its traffic is the trace {topo.traffic.trace}; run edgesim mrc on it")
            trace = topology_trace(topo, region=region, site=site, requests=n_requests, seed=seed)
            label, topology_text = topo.name, topo.source_text
        else:
            trace = select(read_trace(source, trace_format), region, site)
            label, topology_text = source, ""
    except EdgesimError as exc:
        _fail(str(exc))
    except ValueError as exc:
        _fail(f"{source}: {exc}")
    if not len(trace):
        _fail(f"{source}: no requests to compute a curve from")
    try:
        curve = trace_curve(trace, caps, sample_rate=sample_rate, seed=seed, head=not no_head)
    except ValueError as exc:  # a sample rate that keeps no request
        _fail(f"{source}: {exc}")
    where = " ".join(x for x in (f"region {region}" if region else "", f"site {site}" if site else "") if x)
    title = f"{label}{' (' + where + ')' if where else ''}"
    data = {"source": source, "region": region, "site": site, **curve.as_dict()}
    if html_path:
        _write(html_path, _mrc_html(title, curve, seed=seed, topology_text=topology_text))
    if as_json:
        click.echo(json.dumps(data))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"LRU hit ratio by cache size: {title}", title_justify="left")
    for col in ("cache size", "hit ratio", "byte hit ratio"):
        t.add_column(col, justify="right")
    for p in data["points"]:
        t.add_row(_bytes(p["cache_size"]), f"{p['hit_ratio']:.4f}", f"{p['byte_hit_ratio']:.4f}")
    console = Console()
    console.print(t)
    sampled = f", SHARDS sample at rate {curve.sample_rate:g}" if curve.sample_rate < 1 else ""
    if curve.exact_keys:
        sampled += f" with the {curve.exact_keys:,} most requested keys in full"
    console.print(
        f"{curve.requests:,} requests, {curve.objects:,} objects, "
        f"footprint {_bytes(curve.footprint)}{sampled}"
    )


def _mrc_html(title: str, curve: Any, *, seed: int, topology_text: str = "") -> str:
    """The ``mrc --html`` page: the curve on a log cache-size axis, its table, the curve
    as JSON, and what made it (seed, edgesim version, the topology file when there is one)."""
    import math
    from html import escape

    from edgesim import __version__
    from edgesim._svg import fmt_percent, line_chart, script_json

    xs = [math.log2(s) for s in curve.sizes]  # sizes are above 0 (--sizes, the default powers of 2)
    step = max(1, math.ceil(len(xs) / 10))  # at most about 10 size labels
    ticks = [(x, _bytes(s)) for x, s in list(zip(xs, curve.sizes, strict=True))[::step]]
    chart = line_chart(
        f"LRU hit ratio vs cache size: {title}",
        [("object hit ratio", xs, list(curve.hit_ratio)), ("byte hit ratio", xs, list(curve.byte_hit_ratio))],
        y_label="hit ratio",
        x_label="cache size (log scale)",
        x_ticks=ticks,
        y_max=1.0,
        y_format=fmt_percent,
    )
    head = f", the {curve.exact_keys:,} most requested keys in full" if curve.exact_keys else ""
    rows = "".join(
        f"<tr><td>{_bytes(s)}</td><td>{h:.4f}</td><td>{b:.4f}</td></tr>"
        for s, h, b in zip(curve.sizes, curve.hit_ratio, curve.byte_hit_ratio, strict=True)
    )
    topology = f"<h2>Topology</h2><pre>{escape(topology_text)}</pre>\n" if topology_text else ""
    meta = {"source": title, "seed": seed, "edgesim_version": __version__, "topology_text": topology_text}
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>edgesim mrc: {escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:24px;max-width:1000px}}
table{{border-collapse:collapse}}svg{{max-width:100%;height:auto}}
td,th{{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right}}
pre{{background:#f6f6f6;padding:8px;overflow:auto}}</style>
</head><body>
<h1>Miss-ratio curve: {escape(title)}</h1>
<p>{curve.requests:,} requests, {curve.objects:,} objects, footprint {_bytes(curve.footprint)},
SHARDS rate {curve.sample_rate:g}{head} &middot; seed {seed} &middot; edgesim {escape(__version__)}</p>
<figure>{chart}</figure>
<table><tr><th>cache size</th><th>object hit ratio</th><th>byte hit ratio</th></tr>{rows}</table>
{topology}<script type="application/json" id="curve">{script_json(curve.as_dict())}</script>
<script type="application/json" id="meta">{script_json(meta)}</script>
</body></html>
"""
