"""Matplotlib rendering of the experiments' figure specs: heatmaps, bar and line charts, circuit graphs.

Why the object API (Figure + Agg canvas, no pyplot): no global figure state and no GUI backend in a
long-lived orchestrator process. Why math text is off: labels are prompt tokens and agent-written
titles, where a stray "$" must print as "$", not fail to parse.
"""

from __future__ import annotations

import io
import math
import textwrap
import warnings
from contextlib import contextmanager
from typing import Iterator

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from orchestrator.report.fmt import show_token
from orchestrator.report.specs import FigureSpec, graph_layers, plottable

DPI = 100
MAX_DRAWN_EDGES = 200  # the heaviest ones; arrows are slow to draw and a hairball reads no better
MAX_BARS = 600  # beyond this many bars, grouped bars are drawn as lines (thousands of rectangles take seconds each)
POSITIVE, NEGATIVE, NEUTRAL = "#1f5fa8", "#c0392b", "#9e9e9e"
LINESTYLES = {"": "solid", "q": "solid", "k": "dashed", "v": "dotted"}  # by the input an edge enters
PALETTE = ("#1f5fa8", "#e07b39", "#2e8b57", "#c0392b", "#7b4ea3", "#8c6d31", "#d45087", "#5f6b6d",
           "#17becf", "#bcbd22", "#393b79", "#637939")


@contextmanager
def _plain_text() -> Iterator[None]:
    """Render labels literally and quietly (missing glyphs for exotic tokens are not worth a warning each)."""
    with matplotlib.rc_context({"text.parse_math": False, "font.size": 9, "axes.titlesize": 10,
                                "axes.spines.top": False, "axes.spines.right": False}):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Glyph .* missing")
            warnings.filterwarnings("ignore", message=r".*findfont.*")
            yield


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def to_png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _clamp(x: float, lo: float, hi: float) -> float:
    return max(lo, min(hi, x))


def _every(n: int, limit: int) -> int:
    return max(1, math.ceil(n / limit))


def _xticks(ax, labels: list[str], n: int, limit: int = 60) -> None:
    step = _every(n, limit)
    idx = list(range(0, n, step))
    ax.set_xticks(idx)
    if labels:
        shown = [show_token(labels[i]) for i in idx]
        rotate = n > 10 or any(len(s) > 4 for s in shown)
        ax.set_xticklabels(shown, rotation=60 if rotate else 0, ha="right" if rotate else "center",
                           rotation_mode="anchor")


def heatmap(spec: FigureSpec) -> bytes:
    """Layers × positions (or × heads) with a colour scale centred on zero, as in TransformerLens plots."""
    import numpy as np

    data = np.array([plottable(row) for row in spec.values or []], dtype=float)
    rows, cols = data.shape
    finite = data[np.isfinite(data)]
    bound = float(np.max(np.abs(finite))) if finite.size else 1.0
    bound = bound or 1.0
    with _plain_text():
        fig = new_figure(_clamp(2.8 + 0.55 * cols, 5.0, 12.0), _clamp(1.8 + 0.17 * rows, 3.2, 10.0))
        ax = fig.add_subplot()
        cmap = matplotlib.colormaps["RdBu"].with_extremes(bad="#dddddd")
        image = ax.imshow(np.ma.masked_invalid(data), cmap=cmap, vmin=-bound, vmax=bound, aspect="auto",
                          interpolation="nearest")
        fig.colorbar(image, ax=ax, shrink=0.8)
        _xticks(ax, spec.x_ticks, cols)
        ystep = _every(rows, 40)
        ax.set_yticks(list(range(0, rows, ystep)))
        if spec.y_ticks:
            ax.set_yticklabels([show_token(spec.y_ticks[i]) for i in range(0, rows, ystep)])
        if rows * cols <= 120:
            for r in range(rows):
                for c in range(cols):
                    if math.isfinite(data[r, c]):
                        ax.text(c, r, f"{data[r, c]:.2f}", ha="center", va="center", fontsize=7,
                                color="white" if abs(data[r, c]) > 0.6 * bound else "black")
        _labels(ax, spec)
        return to_png(fig)


def title(text: str, width: int = 90) -> str:
    """At most two lines, so a long agent-written title cannot squeeze the plot away."""
    lines = textwrap.wrap(text, width) or [""]
    return "\n".join(lines[:2]) + ("…" if len(lines) > 2 else "")


def _labels(ax, spec: FigureSpec) -> None:
    ax.set_title(title(spec.title), loc="left")
    ax.set_xlabel(spec.x_label)
    ax.set_ylabel(spec.y_label)


def bar(spec: FigureSpec) -> bytes:
    """One group: bars coloured by sign (DLA-style); several groups: grouped bars with a legend."""
    groups = {name: plottable(values) for name, values in spec.groups().items()}
    n = len(next(iter(groups.values())))
    if n * len(groups) > MAX_BARS:
        return line(spec)
    with _plain_text():
        fig = new_figure(_clamp(2.5 + 0.28 * n * max(1, len(groups) // 2), 5.0, 12.0), 4.0)
        ax = fig.add_subplot()
        width = 0.8 / len(groups)
        for g, (name, values) in enumerate(groups.items()):
            xs = [i - 0.4 + width * (g + 0.5) for i in range(n)]
            heights = [0.0 if math.isnan(v) else v for v in values]
            if len(groups) == 1:
                colors = [POSITIVE if v >= 0 else NEGATIVE for v in heights]
                ax.bar(xs, heights, width=width, color=colors)
            else:
                ax.bar(xs, heights, width=width, color=PALETTE[g % len(PALETTE)], label=name)
        ax.axhline(0, color="black", linewidth=0.6)
        _xticks(ax, spec.x_ticks, n)
        if len(groups) > 1:
            ax.legend(fontsize=8, frameon=False)
        _labels(ax, spec)
        return to_png(fig)


def line(spec: FigureSpec) -> bytes:
    """One line per group over the x ticks (e.g. logit lens by layer)."""
    groups = {name: plottable(values) for name, values in spec.groups().items()}
    n = len(next(iter(groups.values())))
    with _plain_text():
        fig = new_figure(_clamp(3.0 + 0.18 * n, 5.5, 11.0), 3.8)
        ax = fig.add_subplot()
        for g, (name, values) in enumerate(groups.items()):
            ax.plot(range(n), values, marker="o", markersize=3, color=PALETTE[g % len(PALETTE)], label=name)
        ax.axhline(0, color="black", linewidth=0.5, alpha=0.6)
        _xticks(ax, spec.x_ticks, n)
        if len(groups) > 1:
            ax.legend(fontsize=8, frameon=False)
        ax.grid(alpha=0.25)
        _labels(ax, spec)
        return to_png(fig)


def graph_positions(spec: FigureSpec) -> tuple[dict[str, tuple[float, float]], list[float]]:
    """Node positions: one row per distinct layer (evenly spaced), nodes in a row ordered by their inputs."""
    layers = graph_layers(spec)
    levels = sorted(set(layers.values()))
    rank = {layer: i for i, layer in enumerate(levels)}
    preds: dict[str, list[str]] = {}
    for e in spec.edges:
        preds.setdefault(e.target, []).append(e.source)
    pos: dict[str, tuple[float, float]] = {}

    def inputs_x(node_id: str) -> float:
        xs = [pos[p][0] for p in preds.get(node_id, []) if p in pos]
        return sum(xs) / len(xs) if xs else 0.0

    for layer in levels:
        ids = sorted((n.id for n in spec.nodes if layers[n.id] == layer), key=inputs_x)
        for i, node_id in enumerate(ids):
            pos[node_id] = (i - (len(ids) - 1) / 2, float(rank[layer]))
    return pos, levels


def graph(spec: FigureSpec) -> bytes:
    """A circuit as a layered diagram: layers bottom to top, edge width and colour by weight.

    Edges that skip rows are drawn as arcs so they do not run through the nodes in between.
    """
    pos, levels = graph_positions(spec)
    widest = max(sum(1 for p in pos.values() if p[1] == r) for r in range(len(levels)))
    heaviest = max((abs(e.weight) for e in spec.edges), default=1.0) or 1.0
    labels = {n.id: n.label or n.id for n in spec.nodes}
    with _plain_text():
        fig = new_figure(_clamp(3.0 + 1.6 * widest, 5.5, 12.0), _clamp(1.2 + 0.62 * len(levels), 3.5, 11.0))
        ax = fig.add_subplot()
        drawn = {id(e) for e in sorted(spec.edges, key=lambda e: -abs(e.weight))[:MAX_DRAWN_EDGES]}
        for k, e in enumerate(e for e in spec.edges if id(e) in drawn and e.source != e.target):
            (x0, y0), (x1, y1) = pos[e.source], pos[e.target]
            skip = abs(y1 - y0) > 1
            rad = (0.35 if k % 2 else -0.35) if skip and x0 == x1 else (0.15 if skip else 0.0)
            ax.annotate("", xy=(x1, y1), xytext=(x0, y0), arrowprops={
                "arrowstyle": "-|>", "color": POSITIVE if e.weight >= 0 else NEGATIVE,
                "lw": 0.6 + abs(e.weight) / heaviest * 3.4, "alpha": 0.75, "shrinkA": 12, "shrinkB": 12,
                "linestyle": LINESTYLES[e.input],
                "connectionstyle": f"arc3,rad={rad}"})
        for node_id, (x, y) in pos.items():
            ax.text(x, y, show_token(labels[node_id]), ha="center", va="center", fontsize=8,
                    bbox={"boxstyle": "round,pad=0.35", "fc": "#fff7e0", "ec": "#8c6d31", "lw": 0.8})
        ax.set_xlim(-widest / 2 - 0.6, widest / 2 + 0.6)
        ax.set_ylim(-0.6, len(levels) - 0.4)
        ax.set_yticks(range(len(levels)))
        given = {n.layer for n in spec.nodes if n.layer is not None and math.isfinite(n.layer)}
        lowest = min(given) if given else 0.0
        ax.set_yticklabels([f"{y:g}" if y in given else ("input" if y < lowest else "output") for y in levels])
        ax.set_xticks([])
        ax.spines["bottom"].set_visible(False)
        note = f" ({len(drawn)} heaviest of {len(spec.edges)} edges drawn)" if len(drawn) < len(spec.edges) else ""
        ax.set_title(title(spec.title + note), loc="left")
        ax.set_ylabel(spec.y_label or "layer")
        return to_png(fig)


def render_spec(spec: FigureSpec) -> bytes:
    """PNG bytes of one validated figure spec."""
    return {"heatmap": heatmap, "bar": bar, "line": line, "graph": graph}[spec.type](spec)
