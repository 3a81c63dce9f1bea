"""Small inline-SVG charts for the audit report: no JavaScript, no external resources.

Each function returns one `<svg>` element as text; every mark carries a `<title>` so that
hovering shows the exact number.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape

FONT = "font-family:inherit"
GRID = "#e6e8eb"
INK = "#5b6470"


def axis(value: float, ticks: int = 5) -> tuple[float, float]:
    """(top, step) of a count axis: a round step (1, 2, 5, 10, 20, 25, 50 ...) and at most
    `ticks` steps up to the first multiple at or above value."""
    value = max(value, 1)
    power = 1
    while True:
        for base in (1, 2, 2.5, 5):
            step = base * power
            if base == 2.5 and power < 10:
                continue  # counts: no quarter steps
            if math.ceil(value / step) <= ticks:
                return math.ceil(value / step) * step, step
        power *= 10


def _number(value: float) -> str:
    if value >= 10_000:
        return f"{value / 1000:.0f}k"
    if value >= 1000:
        return f"{value / 1000:.1f}k".replace(".0k", "k")
    return f"{value:g}"


def stacked_columns(
    labels: Sequence[str],
    series: Mapping[str, Sequence[int]],
    colours: Mapping[str, str],
    *,
    width: int = 760,
    height: int = 260,
) -> str:
    """Columns over time, one colour per series stacked bottom-up (series order)."""
    left, right, top, bottom = 44, 8, 10, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [sum(s[i] for s in series.values()) for i in range(len(labels))]
    top_value, step = axis(max(totals, default=0))
    out = [_svg_open(width, height, "uploads over time")]
    out += _y_axis(top_value, step, left, top, plot_w, plot_h)
    n = max(len(labels), 1)
    slot = plot_w / n
    bar = max(min(slot * 0.72, 38), 1.5)
    every = max(1, math.ceil(n / max(plot_w // 64, 1)))
    for i, label in enumerate(labels):
        x = left + i * slot + (slot - bar) / 2
        y = top + plot_h
        for name, values in series.items():
            value = values[i]
            if not value:
                continue
            h = plot_h * value / top_value
            y -= h
            out.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                f'fill="{colours.get(name, INK)}" rx="1.5"><title>{escape(label)}: '
                f"{value} {escape(name)}</title></rect>"
            )
        if i % every == 0:
            out.append(
                f'<text x="{left + i * slot + slot / 2:.1f}" y="{height - 12}" '
                f'text-anchor="middle" font-size="11" fill="{INK}" style="{FONT}">'
                f"{escape(label)}</text>"
            )
    out.append("</svg>")
    return "".join(out)


def _y_axis(
    top_value: float, step: float, left: int, top: int, plot_w: float, plot_h: float
) -> list[str]:
    out = []
    for k in range(round(top_value / step) + 1):
        value = step * k
        y = top + plot_h - plot_h * value / top_value
        out.append(
            f'<line x1="{left}" x2="{left + plot_w:.1f}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="{GRID}" stroke-width="1"/>'
        )
        out.append(
            f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="{INK}" style="{FONT}">{_number(value)}</text>'
        )
    return out


def stacked_bars(
    rows: Sequence[tuple[str, Mapping[str, int]]],
    colours: Mapping[str, str],
    order: Sequence[str],
    *,
    width: int = 460,
    row_height: int = 26,
) -> str:
    """Horizontal bars, one per row, split by `order` (e.g. verdicts), total at the end."""
    label_w, value_w = 150, 46
    plot_w = width - label_w - value_w
    height = max(len(rows), 1) * row_height + 6
    biggest = max((sum(parts.values()) for _, parts in rows), default=0) or 1
    out = [_svg_open(width, height, "bar chart")]
    for i, (label, parts) in enumerate(rows):
        y = 3 + i * row_height
        out.append(_row_label(label, label_w, y, row_height))
        x = float(label_w)
        for name in order:
            value = parts.get(name, 0)
            if not value:
                continue
            w = plot_w * value / biggest
            out.append(
                f'<rect x="{x:.1f}" y="{y + 4}" width="{max(w, 1.5):.1f}" '
                f'height="{row_height - 9}" fill="{colours.get(name, INK)}" rx="2">'
                f"<title>{escape(label)}: {value} {escape(name)}</title></rect>"
            )
            x += w
        out.append(
            f'<text x="{x + 6:.1f}" y="{y + row_height / 2 + 3:.1f}" font-size="12" '
            f'fill="#1f2933" font-weight="600" style="{FONT}">{sum(parts.values())}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def _row_label(label: str, label_w: int, y: float, row_height: int) -> str:
    shown = label if len(label) <= 21 else label[:20] + "…"
    return (
        f'<text x="{label_w - 10}" y="{y + row_height / 2 + 3:.1f}" text-anchor="end" '
        f'font-size="12" fill="#1f2933" style="{FONT}"><title>{escape(label)}</title>'
        f"{escape(shown)}</text>"
    )


def share_bars(
    rows: Sequence[tuple[str, int, str]],
    total: int,
    *,
    width: int = 460,
    row_height: int = 30,
) -> str:
    """How many of `total` carried each thing: a track per row, filled to its share."""
    label_w, value_w = 150, 86
    plot_w = width - label_w - value_w
    height = max(len(rows), 1) * row_height + 6
    out = [_svg_open(width, height, "share of images")]
    for i, (label, value, colour) in enumerate(rows):
        y = 3 + i * row_height
        share = value / total if total else 0
        out.append(_row_label(label, label_w, y, row_height))
        out.append(
            f'<rect x="{label_w}" y="{y + 6}" width="{plot_w}" height="{row_height - 13}" '
            f'fill="#eef0f3" rx="{(row_height - 13) / 2}"/>'
        )
        if value:
            out.append(
                f'<rect x="{label_w}" y="{y + 6}" width="{max(plot_w * share, 6):.1f}" '
                f'height="{row_height - 13}" fill="{colour}" rx="{(row_height - 13) / 2}">'
                f"<title>{value} of {total} images ({share:.0%}) carried {escape(label)}"
                "</title></rect>"
            )
        out.append(
            f'<text x="{label_w + plot_w + 8}" y="{y + row_height / 2 + 3:.1f}" '
            f'font-size="12" fill="#1f2933" style="{FONT}"><tspan font-weight="600">{value}'
            f'</tspan><tspan fill="{INK}"> · {share:.0%}</tspan></text>'
        )
    out.append("</svg>")
    return "".join(out)


def donut(parts: Sequence[tuple[str, int, str]], *, size: int = 180, label: str = "") -> str:
    """A ring split into parts, with the total (or `label`) in the middle."""
    total = sum(v for _, v, _ in parts)
    r, stroke = size / 2 - 14, 24
    c = size / 2
    circumference = 2 * math.pi * r
    out = [_svg_open(size, size, "share of verdicts")]
    out.append(
        f'<circle cx="{c}" cy="{c}" r="{r:.1f}" fill="none" stroke="#eef0f3" '
        f'stroke-width="{stroke}"/>'
    )
    offset = 0.0
    for name, value, colour in parts:
        if not value or not total:
            continue
        length = circumference * value / total
        out.append(
            f'<circle cx="{c}" cy="{c}" r="{r:.1f}" fill="none" stroke="{colour}" '
            f'stroke-width="{stroke}" stroke-dasharray="{length:.2f} {circumference:.2f}" '
            f'stroke-dashoffset="{-offset:.2f}" transform="rotate(-90 {c} {c})">'
            f"<title>{escape(name)}: {value} ({value / total:.0%})</title></circle>"
        )
        offset += length
    out.append(
        f'<text x="{c}" y="{c + 2}" text-anchor="middle" font-size="30" font-weight="700" '
        f'fill="#1f2933" style="{FONT}">{_number(total)}</text>'
        f'<text x="{c}" y="{c + 22}" text-anchor="middle" font-size="12" fill="{INK}" '
        f'style="{FONT}">{escape(label)}</text>'
    )
    out.append("</svg>")
    return "".join(out)


def _svg_open(width: float, height: float, title: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="100%" role="img" aria-label="{escape(title)}" '
        f'style="max-width:{width}px;display:block">'
    )
