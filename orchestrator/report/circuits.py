"""Kept edge-level circuits drawn from what the run verified: the claim's edges (results/NNNN.json, the
exact edge set the verifier measured) and the verifier's held-out figures (the ledger).

Why not the experiment's own figures: a kept circuit's picture should show the circuit that passed
verification and the numbers it passed with, both from trusted records, whatever the experiment drew.
The graph is layered by layer (embedding at the bottom, heads at their layer, each MLP half a layer
above, logits on top); an edge's width is its |score|, its colour the score's sign, its line style the
input it enters (q solid, k dashed, v dotted, MLP/logits solid).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from engine.circuits.results import Circuit, GraphSpec
from orchestrator.report import fmt
from orchestrator.report.assemble import Plot, Table
from orchestrator.report.data import ReportData
from orchestrator.report.figures import render_spec
from orchestrator.report.specs import FigureSpec
from orchestrator.rundir import RunDir

MAX_DRAWN_NODES = 40  # heads/MLPs shown; the heaviest edges are taken until this many nodes are in
MAX_DRAWN_EDGES = 150
HEAD = re.compile(r"^a(\d+)\.h(\d+)$")
MLP = re.compile(r"^m(\d+)$")


def node_label(node: str) -> str:
    if node == "input":
        return "embed"
    if m := HEAD.match(node):
        return f"L{m.group(1)}H{m.group(2)}"
    if m := MLP.match(node):
        return f"MLP{m.group(1)}"
    return node


def _claim_circuit(run: RunDir, attempt: int, index: int) -> dict[str, Any] | None:
    path = run.result_path(attempt)
    try:
        claims = json.loads(path.read_text(encoding="utf-8"))["result"]["claims"]
        circuit = claims[index].get("circuit")
    except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None
    return circuit if isinstance(circuit, dict) and circuit.get("edges") else None


def drawn_subset(edges: list[str], scores: list[float]) -> tuple[list[str], list[float]]:
    """The heaviest edges (by |score|) until MAX_DRAWN_NODES heads/MLPs or MAX_DRAWN_EDGES edges are in."""
    if not scores or len(scores) != len(edges):
        scores = [math.nan] * len(edges)
    order = sorted(range(len(edges)), key=lambda i: -abs(scores[i]) if math.isfinite(scores[i]) else 0.0)
    nodes: set[str] = set()
    kept: list[int] = []
    for i in order:
        sender = edges[i].split("->")[0]
        if sender not in nodes and len(nodes) >= MAX_DRAWN_NODES:
            continue
        nodes.add(sender)
        kept.append(i)
        if len(kept) >= MAX_DRAWN_EDGES:
            break
    return [edges[i] for i in kept], [scores[i] for i in kept]


def graph_spec(claim_circuit: dict[str, Any], figures: dict[str, Any], title: str) -> FigureSpec:
    """The drawn circuit as a graph FigureSpec, through engine.circuits' Circuit.to_graph."""
    edges, scores = drawn_subset(list(claim_circuit["edges"]), list(claim_circuit.get("edge_scores") or []))
    spec = GraphSpec(n_layers=int(figures["n_layers"]), n_heads=int(figures["n_heads"]),
                     n_kv_heads=int(figures["n_kv_heads"]))
    g = Circuit(method=str(figures.get("method", "")), model="", graph=spec, edges=edges, edge_scores=scores).to_graph()
    shown = "" if len(edges) == len(claim_circuit["edges"]) else f" ({len(edges)} heaviest of {len(claim_circuit['edges'])} edges)"
    nodes = [{"id": n["id"], "label": node_label(n["id"]), "layer": n["layer"]} for n in g["nodes"]]
    return FigureSpec.model_validate({"type": "graph", "title": title + shown, "y_label": "layer", "nodes": nodes,
                                      "edges": g["edges"]})


def curve_spec(figures: dict[str, Any], title: str) -> FigureSpec | None:
    pct = figures.get("curve_percentages") or []
    series = {f"{figures.get('method', 'method')} (|score|)": figures.get("curve") or [],
              "random circuits": figures.get("random_curve") or []}
    if figures.get("signed_curve"):
        series = {f"{figures.get('method', 'method')} (signed)": figures["signed_curve"], **series}
    if not pct or any(len(v) != len(pct) for v in series.values()):
        return None
    return FigureSpec.model_validate({"type": "line", "title": title, "x_label": "circuit size (share of edges)",
                                      "y_label": "faithfulness", "x_ticks": [f"{p * 100:g}%" for p in pct],
                                      "series": series})


def figures_table(v: dict[str, Any], c: dict[str, Any]) -> Table:
    randoms = [float(x) for x in c.get("random_faithfulness", [])]
    rows = [
        ["edges / heads and MLPs", f"{c['n_edges']} / {len([n for n in c['nodes'] if n not in ('input', 'logits')])}"],
        ["held-out faithfulness (95% CI)", f"{fmt.plain(c['faithfulness'], 3)} {fmt.ci(v.get('ci_low'), v.get('ci_high'))}"],
        ["threshold", fmt.plain(c.get("threshold"), 3)],
        ["random circuits of the same size (best / mean)",
         f"{fmt.plain(max(randoms) if randoms else math.nan, 3)} / {fmt.plain(sum(randoms) / len(randoms) if randoms else math.nan, 3)}"],
        [f"CPR {c['method']} / random (higher is better)", f"{fmt.plain(c['cpr'], 3)} / {fmt.plain(c['random_cpr'], 3)}"],
        [f"CMD {c['method']} / random (lower is better)", f"{fmt.plain(c['cmd'], 3)} / {fmt.plain(c['random_cmd'], 3)}"],
        [f"bootstrap Jaccard ({c['jaccard_resamples']} resamples, 5-95%)",
         f"{fmt.plain(c['jaccard_mean'], 3)} [{fmt.plain(c['jaccard_p05'], 3)}, {fmt.plain(c['jaccard_p95'], 3)}]"],
        ["agreement with the method's own circuit", fmt.plain(c["agreement"], 3)],
        ["adjusted p (vs random circuits)", fmt.pval(v.get("adjusted_p"))],
        ["held-out / exploration pairs", f"{c['held_out_pairs']} / {c['exploration_pairs']}"],
    ]
    return Table(["figure", "value"], rows)


def circuit_plots(d: ReportData) -> list[Plot]:
    """A graph and a held-out faithfulness curve for every kept circuit claim of a kept finding."""
    run = RunDir(d.run_dir)
    plots: list[Plot] = []
    for finding in d.findings:
        for i, v in enumerate(finding.entry.statistics):
            c = (v.get("details") or {}).get("circuit") if isinstance(v, dict) else None
            if not (isinstance(c, dict) and v.get("kept")):
                continue
            index = int(v.get("claim_index", i))
            claimed = _claim_circuit(run, finding.attempt, index)
            stem = f"c{len(plots):02d}-{finding.attempt:04d}-{index}"
            source = run.rel(run.result_path(finding.attempt))
            table = figures_table(v, c)
            if claimed is not None:
                title = (f"Verified circuit, finding {finding.attempt:04d}: {c['n_edges']} edges, held-out faithfulness "
                         f"{c['faithfulness']:.2f}")
                spec = graph_spec(claimed, c, title)
                caption = (f"edges of claim {index} in {source}, layered by layer (embed, heads, MLPs, logits); width = "
                           "|score|, red = patching the edge lowers the metric (it supports the answer); q solid, "
                           "k dashed, v dotted")
                plots.append(Plot(f"{stem}-circuit", spec.title, caption, render_spec(spec), source, table))
            curve = curve_spec(c, f"Held-out faithfulness curves, finding {finding.attempt:04d}")
            if curve is not None:
                rows = [[t, *(fmt.cell(vals[j]) for vals in (curve.series or {}).values())]
                        for j, t in enumerate(curve.x_ticks)]
                plots.append(Plot(f"{stem}-curves", curve.title, "measured by the verifier on held-out pairs (MIB sizes)",
                                  render_spec(curve), "ledger", Table(["size", *(curve.series or {})], rows)))
    return plots
