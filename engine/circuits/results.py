"""Typed, JSON-serialisable results of the circuit methods, each with summary() and top(k).

Kept free of mlx: the orchestrator and the report read these without loading a model.
Per-edge lists follow the graph's canonical edge order (engine.circuits.graph).
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from engine.circuits.graph import CircuitGraph


class GraphSpec(BaseModel):
    """Enough to rebuild the edge graph (names, order, connectivity)."""

    model_config = ConfigDict(frozen=True)

    n_layers: int
    n_heads: int
    n_kv_heads: int

    def graph(self) -> CircuitGraph:
        return CircuitGraph(self.n_layers, self.n_heads, self.n_kv_heads)

    @classmethod
    def of(cls, graph: CircuitGraph) -> "GraphSpec":
        return cls(n_layers=graph.n_layers, n_heads=graph.n_heads, n_kv_heads=graph.n_kv_heads)


class _Result(BaseModel):
    """Common shape of the engine's method results: strict fields, JSON out, summary() and top(k)."""

    model_config = ConfigDict(extra="forbid")

    def to_json(self) -> str:
        return self.model_dump_json()


def _fmt(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


class EdgeScores(_Result):
    """Attribution scores of every edge: the estimated change of the metric when the edge alone is
    patched to its ablated value (negative = the edge supports the clean behaviour)."""

    method: str = Field(description="'eap' or 'eap-ig'")
    model: str
    graph: GraphSpec
    task: str
    metric: str
    ablation: str
    ig_steps: int = Field(description="interpolation steps (1 for EAP)")
    n_pairs: int
    scores: list[float] = Field(description="one per edge, canonical edge order")
    runtime_s: float
    forwards: int = Field(description="rows of forward passes run (prompts x steps, clean and ablated runs)")
    backwards: int
    _per_pair: np.ndarray | None = PrivateAttr(default=None)  # [N, E], kept for the bootstrap

    def array(self) -> np.ndarray:
        return np.asarray(self.scores, dtype=np.float64)

    def per_pair(self) -> np.ndarray:
        """[N, E] per-pair scores (their mean is ``scores``); only on results computed in this process."""
        if self._per_pair is None:
            raise ValueError("per-pair scores are not serialised; recompute the scores to bootstrap them")
        return self._per_pair

    def top(self, k: int = 20, absolute: bool = True) -> list[tuple[str, float]]:
        """The k edges with the largest |score|, or (``absolute=False``) the most negative scores: the
        edges whose patching is estimated to lower the metric most (the signed ranking of selection)."""
        arr = self.array()
        key = np.abs(arr) if absolute else -arr
        order = np.argsort(-key, kind="stable")[:k]
        names = self.graph.graph().edge_names
        return [(names[i], float(arr[i])) for i in order]

    def node_scores(self) -> dict[str, float]:
        """Per sender node, the sum of its outgoing edge scores: the first-order estimate of patching
        the node's whole output (for a head, its attribution-patching score)."""
        graph = self.graph.graph()
        s, _ = graph.edge_index
        sums = np.bincount(s, weights=self.array(), minlength=graph.n_senders)
        return {name: float(v) for name, v in zip(graph.sender_names, sums)}

    def top_nodes(self, k: int = 10) -> list[tuple[str, float]]:
        items = sorted(self.node_scores().items(), key=lambda kv: -abs(kv[1]))
        return [kv for kv in items if kv[0] != "input"][:k]

    def summary(self) -> str:
        top = ", ".join(f"{n} {v:+.3g}" for n, v in self.top(5))
        nodes = ", ".join(f"{n} {v:+.3g}" for n, v in self.top_nodes(5))
        steps = f", {self.ig_steps} IG steps" if self.method == "eap-ig" else ""
        return (
            f"{self.method} edge scores on {self.model} ({len(self.scores)} edges, {self.n_pairs} pairs{steps}, "
            f"{self.metric}, {self.ablation}) in {self.runtime_s:.2f} s. Top edges: {top}. Top nodes: {nodes}."
        )


class Stability(_Result):
    """Bootstrap over prompt pairs: Jaccard similarity of each resample's selected edge set with the
    full-data selection (same size, same selection rule)."""

    n_resamples: int
    seed: int
    size: int
    jaccard_mean: float
    jaccard_std: float
    jaccard_p05: float
    jaccard_median: float
    jaccard_p95: float

    def summary(self) -> str:
        return (
            f"bootstrap Jaccard {self.jaccard_mean:.3f} +/- {self.jaccard_std:.3f} "
            f"(5-95%: {self.jaccard_p05:.3f}-{self.jaccard_p95:.3f}; {self.n_resamples} resamples, seed {self.seed})"
        )


class Circuit(_Result):
    """A set of edges, with how it was selected and how well it reproduces the model."""

    method: str
    model: str
    graph: GraphSpec
    edges: list[str]
    edge_scores: list[float] = Field(description="the selecting method's score of each edge in `edges`")
    requested_size: int | None = None
    faithfulness: float | None = Field(default=None, description="on the pairs it was found with")
    held_out_faithfulness: float | None = None
    stability: Stability | None = None
    ablation: str = "counterfactual"

    @property
    def n_edges(self) -> int:
        return len(self.edges)

    def mask(self) -> np.ndarray:
        return self.graph.graph().mask_from_names(self.edges)

    def nodes(self) -> list[str]:
        return self.graph.graph().nodes_of(self.mask())

    def top(self, k: int = 20) -> list[tuple[str, float]]:
        pairs = sorted(zip(self.edges, self.edge_scores), key=lambda kv: -abs(kv[1]) if not math.isnan(kv[1]) else 0)
        return [(n, float(v)) for n, v in pairs[:k]]

    def to_graph(self) -> dict:
        """For drawing (the report's graph spec): nodes ``{id, label, layer}`` (heads at their layer, an MLP
        half a layer above; input and logits without one) and edges ``{source, target, weight}`` from
        sender to node, plus the input they enter (``q``/``k``/``v`` or ``""``), the edge name and score."""
        graph = self.graph.graph()
        rid = {name: i for i, name in enumerate(graph.receiver_names)}
        nodes = self.nodes()
        present = set(nodes)

        def layer(node: str) -> float | None:
            if node.startswith("a"):
                return float(node[1 : node.index(".")])
            return float(node[1:]) + 0.5 if node.startswith("m") else None

        out_edges = []
        for name, score in zip(self.edges, self.edge_scores):
            sender, receiver = name.split("->")
            kind = receiver[receiver.index("<") + 1 : -1] if "<" in receiver else ""
            targets = graph.receiver_nodes(rid[receiver])
            weight = score if math.isfinite(score) else 1.0
            # a kv input feeds its whole group: draw it into the group's heads that are in the circuit
            for target in [t for t in targets if t in present] or targets:
                out_edges.append({"source": sender, "target": target, "weight": weight, "input": kind,
                                  "edge": name, "score": score})
        # A receiver that sends nothing itself (an edge subset, e.g. the heaviest edges drawn of a large
        # circuit) is still a node of the drawing: every edge must end at a listed node.
        order = {n: i for i, n in enumerate(graph.node_names)}
        drawn = sorted(present | {e["target"] for e in out_edges}, key=order.__getitem__)
        return {"nodes": [{"id": n, "label": n, "layer": layer(n)} for n in drawn], "edges": out_edges}

    def summary(self) -> str:
        nodes = [n for n in self.nodes() if n not in ("input", "logits")]
        parts = [f"{self.method} circuit on {self.model}: {self.n_edges} edges, {len(nodes)} heads/MLPs"]
        if self.faithfulness is not None:
            parts.append(f"faithfulness {_fmt(self.faithfulness)}")
        if self.held_out_faithfulness is not None:
            parts.append(f"held-out faithfulness {_fmt(self.held_out_faithfulness)}")
        if self.stability is not None:
            parts.append(self.stability.summary())
        shown = ", ".join(nodes[:12]) + (" ..." if len(nodes) > 12 else "")
        return "; ".join(parts) + f". Nodes: {shown}."


class FaithfulnessCurve(_Result):
    """Faithfulness f(C) = (m(C) - m(empty)) / (m(full) - m(empty)) over a ladder of circuit sizes."""

    method: str
    absolute: bool = Field(description="edges ranked by |score| (True) or by signed score (False)")
    percentages: list[float] = Field(description="requested sizes as fractions of all edges")
    requested_edges: list[int]
    edges: list[int] = Field(description="edges left after pruning to input->logits paths")
    faithfulness: list[float]
    area_under: float = Field(description="trapezoid area under f over the fractions (MIB)")
    area_from_1: float = Field(description="trapezoid area under |1 - f| (MIB)")

    def top(self, k: int = 5) -> list[tuple[float, float]]:
        """The k smallest sizes (fraction) with their faithfulness."""
        return list(zip(self.percentages, self.faithfulness))[:k]

    def summary(self) -> str:
        pts = ", ".join(f"{p:g}:{f:.2f}" for p, f in zip(self.percentages, self.faithfulness))
        return f"{self.method} ({'|score|' if self.absolute else 'signed'}): {pts}"


class MethodFaithfulness(_Result):
    """CPR (area under f, signed ranking; higher is better) and CMD (area under |1 - f|, |score|
    ranking; lower is better), as MIB computes them."""

    method: str
    cpr: float
    cmd: float
    signed: FaithfulnessCurve
    absolute: FaithfulnessCurve

    def summary(self) -> str:
        return f"{self.method}: CPR {self.cpr:.3f}, CMD {self.cmd:.3f}"


class CircuitComparison(_Result):
    """Faithfulness curves of several scoring methods and the random baseline, measured in one run."""

    model: str
    task: str
    ablation: str
    m_full: float
    m_empty: float
    methods: list[MethodFaithfulness]
    circuits_evaluated: int
    runtime_s: float

    def get(self, method: str) -> MethodFaithfulness:
        for m in self.methods:
            if m.method == method:
                return m
        raise KeyError(f"no method {method!r}; have {[m.method for m in self.methods]}")

    def top(self, k: int = 5) -> list[tuple[str, float, float]]:
        """Methods ranked by CPR: (method, CPR, CMD)."""
        ranked = sorted(self.methods, key=lambda m: -m.cpr)
        return [(m.method, m.cpr, m.cmd) for m in ranked[:k]]

    def summary(self) -> str:
        rows = "; ".join(f"{m}: CPR {c:.3f}, CMD {d:.3f}" for m, c, d in self.top(len(self.methods)))
        return (
            f"faithfulness on {self.model} ({self.task}; m(full) {self.m_full:.3f}, m(empty) {self.m_empty:.3f}): "
            f"{rows} ({self.circuits_evaluated} circuits in {self.runtime_s:.1f} s)"
        )


class ACDCResult(_Result):
    """ACDC (Conmy et al. 2023): edges removed one at a time from the full graph, logits first,
    whenever removing them moves the loss by less than ``threshold``."""

    circuit: Circuit
    threshold: float
    loss: str = Field(description="'kl' (KL from the full model) or 'metric' (minus the task metric)")
    final_loss: float = Field(description="the loss of the returned circuit")
    edges_considered: int
    edges_removed: int
    forwards: int = Field(description="pair rows run through patched forwards (edges considered x pairs)")
    runtime_s: float
    seconds_per_edge: float
    budget_exhausted: bool = Field(description="stopped at max_edges before considering every edge")
    restricted_to: list[str] | None = Field(default=None, description="receivers considered, when restricted")

    def top(self, k: int = 20) -> list[tuple[str, float]]:
        return self.circuit.top(k)

    def summary(self) -> str:
        scope = " (budget exhausted)" if self.budget_exhausted else ""
        return (
            f"ACDC ({self.loss}, threshold {self.threshold:g}): kept {self.circuit.n_edges} edges after considering "
            f"{self.edges_considered}{scope}; {self.edges_considered} patched forwards ({self.forwards} pair rows) "
            f"in {self.runtime_s:.1f} s "
            f"({self.seconds_per_edge * 1e3:.1f} ms per edge). {self.circuit.summary()}"
        )


class CircuitDiscovery(_Result):
    """The answer to a circuit question: the circuit and the evidence it is kept on."""

    circuit: Circuit
    comparison: CircuitComparison
    scores_summary: str
    top_edges: list[tuple[str, float]]
    runtime_s: float

    def top(self, k: int = 20) -> list[tuple[str, float]]:
        return self.circuit.top(k)

    def summary(self) -> str:
        return f"{self.circuit.summary()} {self.comparison.summary()}"
