"""Reports of a run: terminal tables, JSON, CSV and a self-contained HTML page.

All of them read the same report dict (``RunResult.to_dict()``, see edgesim/metrics.py),
whichever driver produced it, so runs can be compared field by field. Every output
embeds the topology, the seed and the edgesim version; files are written atomically.
"""

from __future__ import annotations

import csv
import io
from html import escape
from pathlib import Path
from typing import Any

from edgesim._atomic import write_atomic
from edgesim._jsontext import dumps_indented
from edgesim._svg import fmt_percent, hbar_chart, line_chart, script_json

_GROUP_FIELDS = (
    "requests",
    "object_hit_ratio",
    "byte_hit_ratio",
    "origin_requests",
    "origin_bytes",
    "request_offload",
    "byte_offload",
    "collapsed",
    "redirects",
    "revalidations",
    "errors",
    "failed",
    "hits",
    "misses",
    "stale",
    "revalidated",
    "passes",
    "retries",
    "failovers",
    "clients_failed_over",  # regions only
    "clients_failed",  # regions only
    "bytes_served",
    "utilisation",  # nodes only (empty for other rows)
)


def _failed_over(report: dict[str, Any]) -> str:
    """One line on the regions whose clients failed over to another region ('' if none)."""
    away = {name: g.get("clients_failed_over", 0) for name, g in report["regions"].items()}
    if not any(away.values()):
        return ""
    names = ", ".join(f"{name} ({n:,} requests)" for name, n in away.items() if n)
    return f"Cross-region failover: clients of {names} answered by another region's nodes"


def _ms(v: Any) -> str:
    return "-" if v is None else f"{float(v) * 1000:.1f}"


def _per_s(v: Any) -> str:
    return "-" if v is None else f"{v:.1f}/s"


def _pct(v: Any) -> str:
    return "-" if v is None else f"{float(v):.1%}"


def print_summary(
    report: dict[str, Any], *, console: Any = None, timing: dict[str, float] | None = None
) -> None:
    """Terminal summary with rich tables (regions, sites, nodes, origin, and the shadow
    comparison when there is one; ``timing`` adds its measured cost)."""
    import sys

    from rich.console import Console
    from rich.markup import escape as markup_escape
    from rich.table import Table

    # Piped output has no terminal width; keep the tables readable in logs.
    con = console or Console(width=None if sys.stdout.isatty() else 150)
    meta = report["meta"]
    partial = " [bold red](PARTIAL: interrupted)[/]" if meta.get("partial") else ""
    cut = ""  # how the run differs from the topology's whole traffic curve at full rate
    if meta.get("engine", "virtual") != "virtual":
        cut += f", engine {meta['engine']}"
    window = meta.get("window")
    if isinstance(window, list) and len(window) == 2:
        cut += f", window {window[0]:,.0f}-{window[0] + window[1]:,.0f} s of the traffic curve"
    scale = meta.get("rate_scale")
    if scale is not None and scale != 1:
        cut += f", arrival rates scaled by {scale:g}"
    con.print(
        f"[bold]{markup_escape(str(meta['topology']))}[/] seed {meta['seed']}, {meta['duration']:.0f} s simulated "
        f"({meta['simulated_requests']:,} requests; warm-up {meta['warmup']:.0f} s excluded){markup_escape(cut)}, "
        f"edgesim {meta['edgesim_version']}{partial}"
    )

    def group_table(title: str, rows: list[tuple[str, dict[str, Any]]], extra: bool = False) -> Table:
        t = Table(title=title, title_justify="left")
        for col in (
            "",
            "requests",
            "hit",
            "byte hit",
            "origin req",
            "collapsed",
            "redirects",
            "p50 ms",
            "p99 ms",
            "max ms",
            "queue p99 ms",
            "errors",
        ):
            t.add_column(col, justify="right" if col else "left")
        if extra:
            t.add_column("util", justify="right")
        for name, g in rows:
            lat, q = g.get("latency") or {}, g.get("queueing") or {}
            cells = [
                name,
                f"{g.get('requests', 0):,}",
                _pct(g.get("object_hit_ratio")),
                _pct(g.get("byte_hit_ratio")),
                f"{g.get('origin_requests', 0):,}",
                f"{g.get('collapsed', 0):,}",
                f"{g.get('redirects', 0):,}",
                _ms(lat.get("p50")),
                _ms(lat.get("p99")),
                _ms(lat.get("max")),
                _ms(q.get("p99")),
                f"{g.get('errors', 0) + g.get('failed', 0):,}",
            ]
            if extra:
                cells.append(_pct(g.get("utilisation")))
            t.add_row(*cells)
        return t

    con.print(group_table("Regions", [("all", report["totals"]), *_items(report["regions"])]))
    con.print(group_table("Sites", _items(report["sites"])))
    con.print(group_table("Nodes", _items(report["nodes"]), extra=True))
    o = report["origin"]
    con.print(
        f"Origin: {o.get('requests', 0):,} requests, {_per_s(o.get('requests_per_second'))} mean, "
        f"peak {o.get('peak_requests_per_second', 0):.1f}/s at t={o.get('peak_at', 0):.0f} s, "
        f"utilisation {_pct(o.get('utilisation'))}, 5xx {o.get('status_5xx', 0)}"
    )
    away = _failed_over(report)
    if away:
        con.print(away)
    shadow = report.get("shadow")
    if shadow:
        _print_shadow(con, shadow, timing or report.get("timing") or {})


_SHADOW_COLUMNS = (
    ("seen", "seen"),
    ("compared", "compared"),
    ("agreed", "agreed"),
    ("mismatches", "mismatch"),
    ("errors", "errors"),
    ("timeouts", "timeouts"),
    ("garbage", "garbage"),
    ("skipped", "skipped"),
    ("selected", "rollout"),
    ("answered_candidate", "by candidate"),
    ("fallbacks", "fallbacks"),
)


def _shadow_title(shadow: dict[str, Any]) -> str:
    mode = shadow.get("mode", "shadow")
    if mode == "rollout":
        mode = f"rollout {float(shadow.get('rollout') or 0):.0%}"
    return f"Shadow: candidate {shadow.get('candidate')}, {mode}, timeout {shadow.get('timeout')} s"


def shadow_cost(shadow: dict[str, Any], timing: dict[str, Any]) -> str | None:
    """One line on what the candidate cost (wall clock), or None without figures."""
    cand = timing.get("shadow_candidate_seconds")
    prim = timing.get("shadow_primary_seconds")
    n = (shadow.get("totals") or {}).get("compared") or 0
    if cand is None or not n:
        return None
    line = f"candidate cost {cand / n * 1e6:.1f} us per compared request (wall clock)"
    if prim:
        line += f", {cand / prim:.1f}x the primary's rule evaluation ({prim / n * 1e6:.1f} us)"
    return line


def _sample_cells(s: dict[str, Any]) -> tuple[str, str, str, str]:
    def show(d: dict[str, Any]) -> str:
        if "error" in d:
            return str(d["error"])
        return f"{d.get('status')} {d.get('target') or '-'} ({d.get('cache')})"

    req = s.get("request") or {}
    return (
        str(s.get("event")),
        str(req.get("url")),
        show(s.get("primary") or {}),
        show(s.get("candidate") or {}),
    )


def _print_shadow(con: Any, shadow: dict[str, Any], timing: dict[str, Any]) -> None:
    from rich.table import Table

    t = Table(title=_shadow_title(shadow), title_justify="left")
    t.add_column("")
    for _, label in _SHADOW_COLUMNS:
        t.add_column(label, justify="right")
    for name, g in [("all", shadow.get("totals") or {}), *_items(shadow.get("nodes") or {})]:
        t.add_row(name, *(f"{g.get(k, 0):,}" for k, _ in _SHADOW_COLUMNS))
    con.print(t)
    cost = shadow_cost(shadow, timing)
    if cost:
        con.print(f"Shadow: {cost}")
    samples = [s for g in (shadow.get("nodes") or {}).values() for s in g.get("samples", [])][:8]
    if samples:
        st = Table(title="Shadow samples (first 8)", title_justify="left")
        for col in ("event", "request", "primary", "candidate"):
            st.add_column(col)
        for s in samples:
            st.add_row(*_sample_cells(s))
        con.print(st)


def _items(section: Any) -> list[tuple[str, dict[str, Any]]]:
    if isinstance(section, dict):
        return [(str(k), v) for k, v in section.items()]
    return [(str(g.get("name", i)), g) for i, g in enumerate(section)]


def report_json(report: dict[str, Any]) -> str:
    """The text of ``--json``'s report file (``json.dumps(report, indent=1)``'s)."""
    return dumps_indented(report) + "\n"


def write_json(report: dict[str, Any], path: str | Path) -> None:
    write_atomic(path, report_json(report))


CSV_FILES = ("summary.csv", "timeseries.csv")
"""The files :func:`write_csv` writes in its folder."""


def write_csv(report: dict[str, Any], directory: str | Path) -> list[Path]:
    """``summary.csv`` (one row per region, site and node) and ``timeseries.csv``."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    meta = report["meta"]
    stamp = [("topology", meta["topology"]), ("seed", meta["seed"]), ("edgesim", meta["edgesim_version"])]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        [
            "kind",
            "name",
            *_GROUP_FIELDS,
            "p50",
            "p95",
            "p99",
            "max",
            "queue_p99",
            "topology",
            "seed",
            "edgesim",
        ]
    )
    rows = [("total", "all", report["totals"])]
    rows += [("region", n, g) for n, g in _items(report["regions"])]
    rows += [("site", n, g) for n, g in _items(report["sites"])]
    rows += [("node", n, g) for n, g in _items(report["nodes"])]
    for kind, name, g in rows:
        lat, q = g.get("latency") or {}, g.get("queueing") or {}
        w.writerow(
            [
                kind,
                name,
                *(g.get(f, "") for f in _GROUP_FIELDS),
                lat.get("p50"),
                lat.get("p95"),
                lat.get("p99"),
                lat.get("max"),
                q.get("p99"),
                *(v for _, v in stamp),
            ]
        )
    summary = d / CSV_FILES[0]
    write_atomic(summary, buf.getvalue())
    ts = report["timeseries"]
    cols = [k for k, v in ts.items() if isinstance(v, list) and len(v) == len(ts.get("start", []))]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([*cols, "topology", "seed", "edgesim"])
    for i in range(len(ts.get("start", []))):
        w.writerow([ts[c][i] for c in cols] + [v for _, v in stamp])
    series = d / CSV_FILES[1]
    write_atomic(series, buf.getvalue())
    return [summary, series]


_FAULTS = ("node_crash", "origin_outage", "latency_spike")
_SPAN_FILL = {"warmup": "#ececec", "fault": "#fbd5d5", "event": "#fdf0c2"}


def _time_unit(duration: float) -> tuple[str, float]:
    """The time axis' unit for a run of ``duration`` seconds: (name, seconds in it)."""
    if duration <= 600:
        return "s", 1.0
    if duration <= 3 * 3600:
        return "min", 60.0
    return "h", 3600.0


def _clock(meta: dict[str, Any], at: float) -> str:
    """``at`` seconds into the run as a UTC clock time ('' without ``meta.start_utc``)."""
    from datetime import datetime, timedelta

    try:
        start = datetime.fromisoformat(str(meta.get("start_utc")).replace("Z", "+00:00"))
    except ValueError:
        return ""
    return (start + timedelta(seconds=at)).strftime("%H:%M:%S UTC")


def _event_rows(report: dict[str, Any]) -> list[tuple[float, float | None, str, str, bool]]:
    """The run's events as (at, until or None, kind, detail, fault), in time order."""
    out: list[tuple[float, float | None, str, str, bool]] = []
    ev = report.get("events") or []
    lists = ev.values() if isinstance(ev, dict) else [ev]
    for lst in lists:
        for e in lst if isinstance(lst, list) else []:
            at = e.get("at", e.get("start")) if isinstance(e, dict) else None
            if not isinstance(at, int | float):
                continue
            kind = str(e.get("kind") or e.get("type") or "event")
            until = e.get("until")
            detail = []
            for key in ("site", "node", "region", "link", "deploy_id"):
                if e.get(key) is not None:
                    detail.append(f"{key} {e[key]}")
            if e.get("new_fraction") is not None:
                detail.append(f"{float(e['new_fraction']):.0%} of objects renamed")
            if e.get("purged_by") is not None:
                detail.append(f"purged everywhere by t={float(e['purged_by']):.1f} s")
            if e.get("multiplier") is not None:
                detail.append(f"x{float(e['multiplier']):g} traffic")
            if e.get("extra") is not None:
                detail.append(f"+{float(e['extra']) * 1000:.0f} ms")
            if e.get("restart") is not None:
                detail.append(f"restarts at t={float(e['restart']):.0f} s")
            if e.get("failed_in_flight"):
                detail.append(f"requests failed in flight: {e['failed_in_flight']:,}")
            if isinstance(until, int | float):
                detail.append(f"until t={float(until):.0f} s")
            out.append(
                (
                    float(at),
                    float(until) if isinstance(until, int | float) else None,
                    kind,
                    ", ".join(detail),
                    kind in _FAULTS,
                )
            )
    out.sort(key=lambda r: r[0])
    return out


def _events_html(events: list[tuple[float, float | None, str, str, bool]], meta: dict[str, Any]) -> str:
    if not events:
        return "<p>No events (deploys, flash crowds, faults) in this run.</p>\n"
    rows = "".join(
        f"<tr><td>{i}</td><td>{at:,.0f}</td><td>{escape(_clock(meta, at))}</td>"
        f"<td class=l>{escape(kind)}</td><td class=l>{escape(detail)}</td></tr>"
        for i, (at, _, kind, detail, _) in enumerate(events, 1)
    )
    return (
        "<div class=wide><table><tr><th>#</th><th>t (s)</th><th>clock</th><th class=l>event</th>"
        f"<th class=l>detail</th></tr>{rows}</table></div>\n"
    )


def _summary_rows(report: dict[str, Any]) -> str:
    def row(name: str, g: dict[str, Any], util: bool) -> str:
        lat, q = g.get("latency") or {}, g.get("queueing") or {}
        tier = " (shield)" if g.get("tier") == "shield" else ""
        return (
            f"<tr><td>{escape(name)}{tier}</td><td>{g.get('requests', 0):,}</td>"
            f"<td>{_pct(g.get('object_hit_ratio'))}</td><td>{_pct(g.get('byte_hit_ratio'))}</td>"
            f"<td>{g.get('origin_requests', 0):,}</td><td>{_ms(lat.get('p50'))}</td>"
            f"<td>{_ms(lat.get('p99'))}</td><td>{_ms(q.get('p99'))}</td>"
            f"<td>{g.get('errors', 0) + g.get('failed', 0):,}</td>"
            f"<td>{_pct(g.get('utilisation')) if util else ''}</td></tr>"
        )

    out = [row("all", report["totals"], False)]
    for title, section, util in (
        ("Regions", report["regions"], False),
        ("Sites", report["sites"], False),
        ("Nodes", report["nodes"], True),
    ):
        items = _items(section)
        if items:
            out.append(f'<tr class=group><th colspan="10">{title} ({len(items)})</th></tr>')
            out += [row(n, g, util) for n, g in items]
    return "".join(out)


def _origin_html(report: dict[str, Any]) -> str:
    o = report["origin"]
    return (
        f"<p>Origin: {o.get('requests', 0):,} requests, {_per_s(o.get('requests_per_second'))} mean, "
        f"peak {o.get('peak_requests_per_second', 0):.1f}/s at t={o.get('peak_at', 0):.0f} s, "
        f"utilisation {_pct(o.get('utilisation'))}, 5xx {o.get('status_5xx', 0):,}, "
        f"refused in outages {o.get('refused_outage', 0):,}, rejected (queue full) "
        f"{o.get('rejected_503', 0):,}</p>\n"
    )


def _run_line(meta: dict[str, Any]) -> str:
    """What was run: seed, version, engine, span, and any window or rate scale."""
    parts = [
        f"seed {meta['seed']}",
        f"edgesim {meta['edgesim_version']}",
        f"engine {meta.get('engine', 'virtual')}",
        f"{meta['duration']:,.0f} s simulated from {meta.get('start_utc', '?')}",
        f"{meta['simulated_requests']:,} requests",
        f"warm-up {meta['warmup']:,.0f} s excluded from the summary",
        f"{meta.get('interval', 0):g} s intervals",
    ]
    window = meta.get("window")
    if isinstance(window, list) and len(window) == 2:
        parts.append(f"window: the traffic curve's {window[0]:,.0f}-{window[0] + window[1]:,.0f} s")
    scale = meta.get("rate_scale")
    if scale is not None and scale != 1:
        parts.append(f"arrival rates scaled by {scale:g}")
    return " &middot; ".join(escape(p) for p in parts)


def render_html(report: dict[str, Any], topology_text: str = "") -> str:
    """One self-contained HTML page: latency and origin load over time with event
    markers, hit ratio per region, utilisation per node, and the summary tables."""
    meta = report["meta"]
    ts = report["timeseries"]
    starts = [float(x) for x in ts.get("start", [])]
    interval = float(ts.get("interval") or meta.get("interval") or 0)
    end = max(float(meta.get("duration") or 0), starts[-1] + interval if starts else 0.0)
    unit, per = _time_unit(end)
    xs = [(x + interval / 2) / per for x in starts]  # each interval's value at its middle
    events = _event_rows(report)
    markers = [
        (at / per, str(i), f"{i}: {kind} {detail}", fault)
        for i, (at, _, kind, detail, fault) in enumerate(events, 1)
    ]
    spans = [
        (0.0, float(meta["warmup"]) / per, "warm-up (not in the summary)", "warm-up", _SPAN_FILL["warmup"])
    ]
    spans += [
        (
            at / per,
            until / per,
            "fault in effect" if fault else "event in effect",
            f"{i}: {kind} {detail}",
            _SPAN_FILL["fault" if fault else "event"],
        )
        for i, (at, until, kind, detail, fault) in enumerate(events, 1)
        if until is not None
    ]

    def col(name: str) -> list[float]:
        vals = ts.get(name)
        return [float("nan") if v is None else float(v) for v in vals] if isinstance(vals, list) else []

    lat_series = [
        (n, xs, [v * 1000 for v in col(k)])
        for n, k in (("p50", "latency_p50"), ("p99", "latency_p99"))
        if col(k)
    ]
    origin_series = [
        ("origin requests/s", xs, col(k)) for k in ("origin_rps", "origin_requests_per_second") if col(k)
    ][:1]
    samp = meta.get("sampled")
    x_label, x_range = f"time since the start ({unit})", (0.0, end / per)
    regions = _items(report["regions"])
    nodes = _items(report["nodes"])
    # a region has one colour in both bar charts (shields: the next colours)
    region_names = list(dict.fromkeys([n for n, _ in regions] + [str(g.get("region", "")) for _, g in nodes]))
    util = [g.get("utilisation") for _, g in nodes]
    known = [float(u) for u in util if u is not None]
    no_util = "utilisation not available in a sampled run" if samp else "n/a"
    charts = [
        line_chart(
            "Latency over time (answered requests)",
            lat_series,
            y_label="latency (ms)",
            markers=markers,
            spans=spans,
            empty="latency not available in a sampled run" if samp else "no answered request",
            x_label=x_label,
            x_range=x_range,
        ),
        line_chart(
            "Origin load over time",
            origin_series,
            y_label="origin requests/s",
            markers=markers,
            spans=spans,
            x_label=x_label,
            x_range=x_range,
        ),
        hbar_chart(
            "Object hit ratio per region (steady state)",
            [(n, g.get("object_hit_ratio"), i) for i, (n, g) in enumerate(regions)],
            x_label="object hit ratio",
            x_max=1.0,
            x_format=fmt_percent,
        ),
        hbar_chart(
            "Utilisation per node (steady state)",
            [
                (n, None if u is None else float(u), region_names.index(str(g.get("region", ""))))
                for (n, g), u in zip(nodes, util, strict=True)
            ],
            x_label="utilisation: busy worker-seconds / (workers \u00d7 steady span)",
            # Lightly loaded nodes stay visible: the axis ends just above the busiest one.
            x_max=min(1.0, max([0.001, *known])),
            x_format=fmt_percent,
            groups=region_names,
            missing=no_util,
        ),
    ]
    partial = (
        "<p><strong>Partial report: the run was interrupted.</strong></p>" if meta.get("partial") else ""
    )
    shadow_html = _shadow_html(report)
    away = _failed_over(report)
    failover_html = f"<p>{escape(away)}</p>" if away else ""
    sampled = (
        f"<p><strong>Sampled run</strong>: simulated of a key sample at rate {samp['rate']:g}; the counts"
        " below are estimates for the full traffic, weighted per stratum of keys; latency and"
        " utilisation are not available (docs/sampling.md).</p>\n"
        if samp
        else ""
    )
    name = escape(str(meta["topology"]))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>edgesim report: {name}, seed {meta["seed"]}</title>
<style>body{{font-family:system-ui,sans-serif;margin:24px;max-width:1000px}}
table{{border-collapse:collapse}}td,th{{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right}}
td:first-child,th:first-child,.l{{text-align:left}}td{{white-space:nowrap}}td.l{{white-space:normal}}
tr.group th{{text-align:left;padding-top:12px;background:#f3f3f3}}
.wide{{overflow-x:auto}}figure{{margin:12px 0}}svg{{max-width:100%;height:auto}}
pre{{background:#f6f6f6;padding:8px;overflow:auto}}</style>
</head><body>
<h1>edgesim report: {name}</h1>
<p>{_run_line(meta)}</p>
{sampled}{partial}
{"".join(f"<figure>{c}</figure>" for c in charts)}
<h2>Events</h2>
{_events_html(events, meta)}<h2>Summary (steady state)</h2>
<div class=wide><table><tr><th></th><th>requests</th><th>hit</th><th>byte hit</th><th>origin req</th><th>p50 ms</th>
<th>p99 ms</th><th>queue p99 ms</th><th>errors</th><th>util</th></tr>{_summary_rows(report)}</table></div>
{_origin_html(report)}{failover_html}{shadow_html}<h2>Topology</h2><pre>{escape(topology_text)}</pre>
<script type="application/json" id="report">{script_json(report)}</script>
</body></html>
"""


def _shadow_html(report: dict[str, Any]) -> str:
    shadow = report.get("shadow")
    if not shadow:
        return ""
    head = "".join(f"<th>{escape(label)}</th>" for _, label in _SHADOW_COLUMNS)
    rows = "".join(
        f"<tr><td>{escape(name)}</td>"
        + "".join(f"<td>{g.get(k, 0):,}</td>" for k, _ in _SHADOW_COLUMNS)
        + "</tr>"
        for name, g in [("all", shadow.get("totals") or {}), *_items(shadow.get("nodes") or {})]
    )
    cost = shadow_cost(shadow, report.get("timing") or {})
    samples = [s for g in (shadow.get("nodes") or {}).values() for s in g.get("samples", [])][:20]
    sample_rows = "".join(
        "<tr>" + "".join(f"<td>{escape(c)}</td>" for c in _sample_cells(s)) + "</tr>" for s in samples
    )
    return (
        f"<h2>{escape(_shadow_title(shadow))}</h2>\n<div class=wide><table><tr><th></th>{head}</tr>{rows}</table></div>\n"
        + (f"<p>{escape(cost)}</p>\n" if cost else "")
        + (
            "<h3>Samples</h3><div class=wide><table><tr><th>event</th><th>request</th><th>primary</th>"
            f"<th>candidate</th></tr>{sample_rows}</table></div>\n"
            if samples
            else ""
        )
    )


def write_html(report: dict[str, Any], path: str | Path, topology_text: str = "") -> None:
    write_atomic(path, render_html(report, topology_text))
