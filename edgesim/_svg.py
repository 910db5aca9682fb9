"""Tiny inline-SVG charts for self-contained HTML reports (no scripts, no downloads),
and the JSON data block those pages embed.

Every chart is an ``<svg role="img">`` whose ``<title>`` and ``aria-label`` name it;
legends, event numbers and the warm-up label sit outside the plot area, so they never
cover the data. Axes end on round ticks (1, 2, 2.5 or 5 times a power of ten).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from html import escape
from typing import Any

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
FAULT_COLOR = "#b2182b"  # event lines of faults (crash, outage, latency spike)
EVENT_COLOR = "#555"  # other event lines (deploy, flash crowd, restart)
W, H = 760, 280
# inside <script> text is raw (no character references): JSON escapes instead
_SCRIPT_SAFE = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)
# margins: the top one holds the title, the legend row and the event numbers
ML, MR, MT, MB = 64, 16, 62, 38
DOTS_UP_TO = 40  # a series with this many points or fewer also gets a dot per point


def script_json(data: Any) -> str:
    """``data`` as JSON for the text of a ``<script type="application/json">`` element.

    A script element's text is not HTML-unescaped, so HTML escapes (``&quot;``) would
    stay in the JSON; instead ``<``, ``>`` and ``&`` (which could close the element or
    open a comment) and the line separators U+2028/U+2029 are written as JSON ``\\u``
    escapes, which are only ever inside strings. The element's text, read back, is
    ``json.dumps(data)``'s meaning exactly: ``json.loads`` of it gives ``data``.
    """
    return json.dumps(data).translate(_SCRIPT_SAFE)


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values from ``lo`` (or below) to ``hi`` (or above), about ``n`` steps."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo] if math.isfinite(lo) else [0.0]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw * 0.999)
    first = math.floor(lo / step + 1e-9) * step
    out = [first]
    while out[-1] < hi - step * 1e-9:
        out.append(first + len(out) * step)
    return [0.0 if abs(t) < step * 1e-9 else round(t, 12) for t in out]


def fmt_number(v: float) -> str:
    """A tick label: thousands separated, no trailing zeros."""
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.6g}" if abs(v) >= 0.001 else f"{v:.2g}"


def fmt_percent(v: float) -> str:
    """A ratio (0.25) as a percentage label (25%)."""
    return f"{v * 100:.3g}%"


def _svg_open(title: str, height: int, desc: str = "") -> list[str]:
    t = escape(title)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" '
        f'viewBox="0 0 {W} {height}" role="img" aria-label="{t}" font-family="sans-serif">',
        f"<title>{t}</title>",
    ]
    if desc:
        out.append(f"<desc>{escape(desc)}</desc>")
    out.append(f'<text x="{ML}" y="18" font-size="14" font-weight="bold">{t}</text>')
    return out


def _legend(entries: Sequence[tuple[str, str, str]], y: float) -> list[str]:
    """One row of legend entries (kind ``line``, ``dash`` or ``box``, colour, text)."""
    out, x = [], float(ML)
    for kind, color, text in entries:
        if kind == "line":
            out.append(f'<rect x="{x:.0f}" y="{y - 5:.0f}" width="14" height="3" fill="{color}"/>')
        elif kind == "dash":
            out.append(
                f'<line x1="{x + 7:.0f}" x2="{x + 7:.0f}" y1="{y - 10:.0f}" y2="{y + 2:.0f}" '
                f'stroke="{color}" stroke-dasharray="3 2"/>'
            )
        else:
            out.append(
                f'<rect x="{x:.0f}" y="{y - 9:.0f}" width="14" height="10" fill="{color}" stroke="#bbb"/>'
            )
        out.append(f'<text x="{x + 18:.0f}" y="{y:.0f}" font-size="11">{escape(text)}</text>')
        x += 26 + 6.2 * len(text)
    return out


def line_chart(
    title: str,
    series: Sequence[tuple[str, Sequence[float], Sequence[float]]],
    *,
    y_label: str = "",
    x_label: str = "time (s)",
    markers: Sequence[tuple[float, str, str, bool]] = (),
    spans: Sequence[tuple[float, float, str, str, str]] = (),
    x_range: tuple[float, float] | None = None,
    x_ticks: Sequence[tuple[float, str]] | None = None,
    y_max: float | None = None,
    y_format: Callable[[float], str] = fmt_number,
    empty: str = "no data",
) -> str:
    """An SVG line chart. ``series`` is (name, xs, ys), a NaN y a gap in its line.

    ``markers`` are (x, tag, description, fault) vertical dashed lines, tagged above the
    plot (the description is the tag's tooltip; ``fault`` draws it in red); ``spans`` are
    (x0, x1, legend, description, fill) shaded bands behind the data, such as the warm-up
    (the legend names each fill once).
    ``x_range`` fixes the x axis (default: the data's); ``x_ticks`` are (x, label) ticks
    instead of round ones. ``empty`` is written across a chart with no point to draw.
    """
    finite = [(x, y) for _, xs, ys in series for x, y in zip(xs, ys, strict=False) if math.isfinite(y)]
    if x_range is not None:
        x0, x1 = x_range
    else:
        xs_all = [x for _, xs, _ in series for x in xs] or [0.0, 1.0]
        x0, x1 = min(xs_all), max(xs_all)
    if x1 <= x0:
        x1 = x0 + 1
    top = max([y for _, y in finite], default=0.0)
    y_ticks = nice_ticks(0.0, y_max if y_max is not None else (top if top > 0 else 1.0))
    y0, y1 = 0.0, y_ticks[-1] if y_ticks[-1] > 0 else 1.0
    plot_w, plot_h = W - ML - MR, H - MT - MB

    def px(x: float) -> float:
        return ML + (x - x0) / (x1 - x0) * plot_w

    def py(y: float) -> float:
        return H - MB - (min(y, y1) - y0) / (y1 - y0) * plot_h

    desc = f"{len(series)} series over {x_label}; {len(markers)} event markers"
    out = _svg_open(title, H, desc)
    fills: dict[str, str] = {}  # the legend names each fill drawn, once
    for s0, s1, name, text, fill in spans:
        a, b = max(s0, x0), min(s1, x1)
        if b > a:
            fills.setdefault(fill, name)
            out.append(
                f'<rect x="{px(a):.1f}" y="{MT}" width="{px(b) - px(a):.1f}" height="{plot_h}" '
                f'fill="{fill}"><title>{escape(text)}</title></rect>'
            )
    for t in y_ticks:
        y = py(t)
        out.append(f'<line x1="{ML}" x2="{W - MR}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        if finite:  # an empty chart's scale would mean nothing
            out.append(
                f'<text x="{ML - 6}" y="{y + 4:.1f}" font-size="10" text-anchor="end">{y_format(t)}</text>'
            )
    ticks = x_ticks if x_ticks is not None else [(t, fmt_number(t)) for t in nice_ticks(x0, x1, 8) if t <= x1]
    for t, label in ticks:
        if x0 <= t <= x1:
            x = px(t)
            out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{H - MB}" y2="{H - MB + 4}" stroke="#888"/>')
            out.append(
                f'<text x="{x:.1f}" y="{H - MB + 15}" font-size="10" text-anchor="middle">{escape(label)}</text>'
            )
    out.append(f'<line x1="{ML}" x2="{W - MR}" y1="{H - MB}" y2="{H - MB}" stroke="#888"/>')
    out.append(
        f'<text x="{(ML + W - MR) / 2:.0f}" y="{H - 4}" font-size="11" text-anchor="middle">{escape(x_label)}</text>'
    )
    if y_label:
        mid = (MT + H - MB) / 2
        out.append(
            f'<text x="14" y="{mid:.0f}" font-size="11" transform="rotate(-90 14 {mid:.0f})" '
            f'text-anchor="middle">{escape(y_label)}</text>'
        )
    # event lines, their tags in two staggered rows above the plot
    row_end = [-1e9, -1e9]
    placed: dict[float, list[str]] = {}
    for x, tag, text, fault in sorted(markers, key=lambda m: m[0]):
        if not x0 <= x <= x1:
            continue
        X = round(px(x), 1)
        color = FAULT_COLOR if fault else EVENT_COLOR
        out.append(
            f'<line x1="{X}" x2="{X}" y1="{MT}" y2="{H - MB}" stroke="{color}" stroke-dasharray="4 3">'
            f"<title>{escape(text)}</title></line>"
        )
        placed.setdefault(X, []).append(tag)
    labels: list[tuple[float, int, list[str]]] = []  # (x, row, tags): tags too close share a label
    for X, tags in placed.items():
        width = 6.5 * len(",".join(tags))
        row = next((r for r in (0, 1) if X - width / 2 > row_end[r] + 2), None)
        if row is None:  # no room in either row: joins the label before it
            labels[-1][2].extend(tags)
            continue
        row_end[row] = X + width / 2
        labels.append((X, row, list(tags)))
    for X, row, tags in labels:
        out.append(
            f'<text x="{X}" y="{MT - 4 - 12 * row}" font-size="10" text-anchor="middle" '
            f'fill="#333">{escape(",".join(tags))}</text>'
        )
    drawn = 0
    for i, (_, xs, ys) in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        points = list(zip(xs, ys, strict=False))
        run: list[str] = []
        for x, y in [*points, (math.nan, math.nan)]:  # a NaN ends a run of the line
            if math.isfinite(y) and math.isfinite(x):
                run.append(f"{px(x):.1f},{py(y):.1f}")
                continue
            if len(run) > 1:
                out.append(
                    f'<polyline fill="none" stroke="{color}" stroke-width="1.6" points="{" ".join(run)}"/>'
                )
            if run and (len(run) == 1 or len(points) <= DOTS_UP_TO):
                for p in run:
                    cx, cy = p.split(",")
                    out.append(f'<circle cx="{cx}" cy="{cy}" r="2.5" fill="{color}"/>')
            drawn += len(run)
            run = []
    if not drawn:
        out.append(
            f'<text x="{ML + plot_w / 2:.0f}" y="{MT + plot_h / 2:.0f}" font-size="13" fill="#666" '
            f'text-anchor="middle">{escape(empty)}</text>'
        )
    legend = [("line", PALETTE[i % len(PALETTE)], name) for i, (name, _, _) in enumerate(series)]
    legend += [("box", fill, name) for fill, name in fills.items()]
    if markers:
        legend.append(("dash", EVENT_COLOR, "event (numbered in the Events table)"))
    out += _legend(legend, 36)
    out.append("</svg>")
    return "\n".join(out)


def hbar_chart(
    title: str,
    rows: Sequence[tuple[str, float | None, int]],
    *,
    x_label: str = "",
    x_max: float | None = None,
    x_format: Callable[[float], str] = fmt_number,
    groups: Sequence[str] = (),
    missing: str = "n/a",
) -> str:
    """A horizontal bar chart, one bar per (label, value, group) row, its value at its end.

    A ``None`` value is written ``missing`` rather than drawn as 0 (and a chart with no
    value at all is just ``missing``). ``groups`` names the colours (a row's ``group``
    indexes it): the legend shows those the rows use, when they use more than one.
    The chart grows with its rows, so long lists (many nodes) stay readable.
    """
    values = [v for _, v, _ in rows if v is not None and math.isfinite(v)]
    if not values:  # nothing to draw: say why once, not on every row
        out = _svg_open(title, 60, f"{len(rows)} bars, none with a value")
        out.append(f'<text x="{ML}" y="44" font-size="13" fill="#666">{escape(missing)}</text>')
        return "\n".join([*out, "</svg>"])
    bar_h, gap = 14, 4
    label_w = min(28, max([len(label) for label, _, _ in rows] or [4])) * 6.4 + 12
    left = max(ML, int(label_w))
    used = sorted({g for _, _, g in rows if 0 <= g < len(groups)})
    legend_h = 18 if len(used) > 1 else 0
    top_y = 30 + legend_h
    height = int(top_y + len(rows) * (bar_h + gap) + MB)
    ticks = nice_ticks(0.0, x_max if x_max is not None else max([*values, 0.0]) or 1.0)
    end = ticks[-1] if ticks[-1] > 0 else 1.0
    plot_w = W - left - MR - 48  # room for the value written after the longest bar
    bottom = top_y + len(rows) * (bar_h + gap)
    out = _svg_open(title, height, f"{len(rows)} bars, {x_label}")
    for t in ticks:
        x = left + t / end * plot_w
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top_y}" y2="{bottom}" stroke="#ddd"/>')
        out.append(
            f'<text x="{x:.1f}" y="{bottom + 14}" font-size="10" text-anchor="middle">{x_format(t)}</text>'
        )
    if x_label:
        out.append(
            f'<text x="{left + plot_w / 2:.0f}" y="{bottom + 30}" font-size="11" '
            f'text-anchor="middle">{escape(x_label)}</text>'
        )
    for i, (label, v, group) in enumerate(rows):
        y = top_y + i * (bar_h + gap) + gap / 2
        color = PALETTE[group % len(PALETTE)]
        shown = label if len(label) <= 28 else label[:27] + "\u2026"
        out.append(
            f'<text x="{left - 6}" y="{y + bar_h - 3:.0f}" font-size="11" text-anchor="end">'
            f"<title>{escape(label)}</title>{escape(shown)}</text>"
        )
        if v is None or not math.isfinite(v):
            out.append(
                f'<text x="{left + 4}" y="{y + bar_h - 3:.0f}" font-size="11" fill="#666">{missing}</text>'
            )
            continue
        w = max(0.0, min(v, end)) / end * plot_w
        out.append(
            f'<rect x="{left}" y="{y:.0f}" width="{w:.1f}" height="{bar_h}" fill="{color}">'
            f"<title>{escape(label)}: {x_format(v)}</title></rect>"
        )
        out.append(
            f'<text x="{left + w + 4:.1f}" y="{y + bar_h - 3:.0f}" font-size="10">{x_format(v)}</text>'
        )
    if len(used) > 1:
        out += _legend([("box", PALETTE[i % len(PALETTE)], groups[i]) for i in used], 40)
    out.append("</svg>")
    return "\n".join(out)
