"""Figures and agent text for a terminal (`review --show N`).

Why text renderings: a researcher on an SSH session wants to glance at a patching grid without
opening a browser. Why strip control characters: agent-written text printed raw could carry
terminal escape sequences (cursor moves, title changes, hidden text).
"""

from __future__ import annotations

import math

from orchestrator.report.fmt import clean, show_token
from orchestrator.report.specs import FigureSpec, graph_layers, plottable

SHADES = " ░▒▓█"
SPARKS = "▁▂▃▄▅▆▇█"
MAX_NUMERIC_COLS = 14
BAR_WIDTH = 40


def safe(text: str) -> str:
    """Text fit for a terminal: control, escape and bidi-override characters removed (newlines and tabs kept)."""
    return clean(text)


def _num(x: float, width: int = 6) -> str:
    return f"{x:+.2f}".rjust(width) if math.isfinite(x) else "·".rjust(width)


def _label(ticks: list[str], i: int) -> str:
    return show_token(ticks[i]) if ticks else str(i)


def heatmap_text(spec: FigureSpec) -> list[str]:
    """Numbers when narrow enough, otherwise shades of |value| (the peak cell is always named)."""
    rows = [plottable(row) for row in spec.values or []]
    cols = len(rows[0]) if rows else 0
    finite = [(v, r, c) for r, row in enumerate(rows) for c, v in enumerate(row) if math.isfinite(v)]
    if not finite:
        return ["  (no finite values)"]
    peak, pr, pc = max(finite, key=lambda t: abs(t[0]))
    bound = abs(peak) or 1.0
    ylab = [_label(spec.y_ticks, r)[:8] for r in range(len(rows))]
    yw = max(len(s) for s in ylab)
    out = []
    if cols <= MAX_NUMERIC_COLS:
        head = [_label(spec.x_ticks, c)[:6].rjust(6) for c in range(cols)]
        out.append(" " * (yw + 2) + " ".join(head))
        out += [f"  {ylab[r].rjust(yw)} " + " ".join(_num(v) for v in row) for r, row in enumerate(rows)]
    else:
        out.append(f"  shade = |value| up to {bound:.3g}")
        for r, row in enumerate(rows):
            cells = "".join(SHADES[min(4, int(round(4 * abs(v) / bound)))] if math.isfinite(v) else "·" for v in row)
            out.append(f"  {ylab[r].rjust(yw)} |{cells}|")
    out.append(f"  peak {peak:+.4g} at {spec.y_label or 'row'} {_label(spec.y_ticks, pr)}, "
               f"{spec.x_label or 'column'} {_label(spec.x_ticks, pc)!r}")
    return out


def bar_text(spec: FigureSpec) -> list[str]:
    groups = {name: plottable(values) for name, values in spec.groups().items()}
    n = len(next(iter(groups.values())))
    finite = [abs(v) for g in groups.values() for v in g if math.isfinite(v)]
    top = max(finite, default=0.0) or 1.0
    labels = [_label(spec.x_ticks, i)[:24] for i in range(n)]
    lw = max(len(s) for s in labels)
    out = []
    for name, values in groups.items():
        if len(groups) > 1:
            out.append(f"  {name}:")
        for label, v in zip(labels, values):
            bar = "█" * int(round(BAR_WIDTH * abs(v) / top)) if math.isfinite(v) else ""
            out.append(f"  {label.rjust(lw)} {_num(v, 7)} {'-' if v < 0 else ' '}{bar}")
    return out


def line_text(spec: FigureSpec) -> list[str]:
    out = []
    for name, raw in spec.groups().items():
        values = plottable(raw)
        finite = [v for v in values if math.isfinite(v)]
        if not finite:
            out.append(f"  {name}: (no finite values)")
            continue
        lo, hi = min(finite), max(finite)
        span = (hi - lo) or 1.0
        spark = "".join(SPARKS[int((v - lo) / span * 7)] if math.isfinite(v) else " " for v in values)
        best = max(range(len(values)), key=lambda i: values[i] if math.isfinite(values[i]) else -math.inf)
        out.append(f"  {name}: {spark}  min {lo:+.3g}, max {hi:+.3g} at {spec.x_label or 'x'} {_label(spec.x_ticks, best)}")
    return out


def graph_text(spec: FigureSpec) -> list[str]:
    layers = graph_layers(spec)
    labels = {n.id: n.label or n.id for n in spec.nodes}
    nodes = sorted(spec.nodes, key=lambda n: layers[n.id])
    out = ["  nodes: " + ", ".join(f"{labels[n.id]} (layer {n.layer:g})" if n.layer is not None else labels[n.id] for n in nodes)]
    out += [f"  {labels[e.source]} -> {labels[e.target]}  {e.weight:+.3g}" for e in spec.edges]
    return out


def figure_text(spec: FigureSpec) -> str:
    """A figure as terminal lines, headed by its type and title."""
    body = {"heatmap": heatmap_text, "bar": bar_text, "line": line_text, "graph": graph_text}[spec.type](spec)
    axes = f" ({spec.y_label} × {spec.x_label})" if spec.type == "heatmap" and (spec.x_label or spec.y_label) else ""
    return safe("\n".join([f"[{spec.type}] {spec.title}{axes}", *body]))
