"""Tiny inline-SVG charts for self-contained HTML reports (no scripts, no downloads),
and the JSON data block those pages embed."""

from __future__ import annotations

import json
from collections.abc import Sequence
from html import escape
from typing import Any

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
W, H = 760, 260
# inside <script> text is raw (no character references): JSON escapes instead
_SCRIPT_SAFE = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)
ML, MR, MT, MB = 56, 16, 28, 36  # margins


def script_json(data: Any) -> str:
    """``data`` as JSON for the text of a ``<script type="application/json">`` element.

    A script element's text is not HTML-unescaped, so HTML escapes (``&quot;``) would
    stay in the JSON; instead ``<``, ``>`` and ``&`` (which could close the element or
    open a comment) and the line separators U+2028/U+2029 are written as JSON ``\\u``
    escapes, which are only ever inside strings. The element's text, read back, is
    ``json.dumps(data)``'s meaning exactly: ``json.loads`` of it gives ``data``.
    """
    return json.dumps(data).translate(_SCRIPT_SAFE)


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    step = (hi - lo) / n
    return [lo + i * step for i in range(n + 1)]


def _fmt(v: float) -> str:
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.0f}"
    if abs(v) >= 1:
        return f"{v:.1f}"
    return "0" if v == 0 else f"{v:.2g}"


def line_chart(
    title: str,
    series: Sequence[tuple[str, Sequence[float], Sequence[float]]],
    *,
    y_label: str = "",
    x_label: str = "time (s)",
    markers: Sequence[tuple[float, str]] = (),
) -> str:
    """An SVG line chart. ``series`` is (name, xs, ys); ``markers`` are vertical lines."""
    xs_all = [x for _, xs, _ in series for x in xs] or [0.0, 1.0]
    ys_all = [y for _, _, ys in series for y in ys if y == y] or [0.0, 1.0]  # y == y drops NaN
    x0, x1 = min(xs_all), max(xs_all)
    y0, y1 = 0.0, max(ys_all) * 1.05 or 1.0
    if x1 <= x0:
        x1 = x0 + 1

    def px(x: float) -> float:
        return ML + (x - x0) / (x1 - x0) * (W - ML - MR)

    def py(y: float) -> float:
        return H - MB - (y - y0) / (y1 - y0) * (H - MT - MB)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" role="img">',
        f'<text x="{ML}" y="18" font-size="14" font-weight="bold">{escape(title)}</text>',
    ]
    for t in _ticks(y0, y1):
        y = py(t)
        out.append(f'<line x1="{ML}" x2="{W - MR}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{ML - 6}" y="{y + 4:.1f}" font-size="10" text-anchor="end">{_fmt(t)}</text>')
    for t in _ticks(x0, x1):
        x = px(t)
        out.append(
            f'<text x="{x:.1f}" y="{H - MB + 14}" font-size="10" text-anchor="middle">{_fmt(t)}</text>'
        )
    out.append(
        f'<text x="{(ML + W - MR) / 2}" y="{H - 6}" font-size="11" text-anchor="middle">{escape(x_label)}</text>'
    )
    if y_label:
        out.append(
            f'<text x="12" y="{(MT + H - MB) / 2}" font-size="11" transform="rotate(-90 12 '
            f'{(MT + H - MB) / 2})" text-anchor="middle">{escape(y_label)}</text>'
        )
    for x, label in markers:
        if x0 <= x <= x1:
            X = px(x)
            out.append(
                f'<line x1="{X:.1f}" x2="{X:.1f}" y1="{MT}" y2="{H - MB}" stroke="#999" '
                f'stroke-dasharray="4 3"/>'
            )
            out.append(
                f'<text x="{X + 3:.1f}" y="{MT + 10}" font-size="10" fill="#555">{escape(label)}</text>'
            )
    for i, (name, xs, ys) in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        pts = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(xs, ys, strict=False) if y == y)
        if pts:
            out.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.6" points="{pts}"/>')
        lx = ML + 8 + i * 130
        out.append(f'<rect x="{lx}" y="{MT - 4}" width="10" height="3" fill="{color}"/>')
        out.append(f'<text x="{lx + 14}" y="{MT}" font-size="10">{escape(name)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def bar_chart(
    title: str,
    labels: Sequence[str],
    values: Sequence[float],
    *,
    y_label: str = "",
    y_max: float | None = None,
) -> str:
    """An SVG bar chart, one bar per label."""
    n = max(1, len(labels))
    top = y_max if y_max is not None else (max(values) * 1.1 if values and max(values) > 0 else 1.0)
    bw = (W - ML - MR) / n
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" role="img">',
        f'<text x="{ML}" y="18" font-size="14" font-weight="bold">{escape(title)}</text>',
    ]
    for t in _ticks(0, top):
        y = H - MB - t / top * (H - MT - MB)
        out.append(f'<line x1="{ML}" x2="{W - MR}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{ML - 6}" y="{y + 4:.1f}" font-size="10" text-anchor="end">{_fmt(t)}</text>')
    if y_label:
        out.append(
            f'<text x="12" y="{(MT + H - MB) / 2}" font-size="11" transform="rotate(-90 12 '
            f'{(MT + H - MB) / 2})" text-anchor="middle">{escape(y_label)}</text>'
        )
    for i, (label, v) in enumerate(zip(labels, values, strict=False)):
        h = max(0.0, min(v, top)) / top * (H - MT - MB)
        x = ML + i * bw + bw * 0.15
        out.append(
            f'<rect x="{x:.1f}" y="{H - MB - h:.1f}" width="{bw * 0.7:.1f}" height="{h:.1f}" '
            f'fill="{PALETTE[i % len(PALETTE)]}"><title>{escape(label)}: {_fmt(v)}</title></rect>'
        )
        out.append(
            f'<text x="{x + bw * 0.35:.1f}" y="{H - MB + 14}" font-size="10" '
            f'text-anchor="middle">{escape(label[:14])}</text>'
        )
    out.append("</svg>")
    return "\n".join(out)
