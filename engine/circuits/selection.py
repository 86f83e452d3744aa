"""Choosing a circuit from edge scores: top-k (then pruned to input -> logits paths), MIB's greedy
growth from the logits, and random circuits for the baseline. Pure numpy: no model needed.

Ranking: ``absolute=True`` ranks edges by |score|; ``absolute=False`` by -score, i.e. by how much
patching the edge is estimated to *lower* the metric (the edges that support the clean behaviour),
which is what MIB's signed ranking does with its loss-valued metric.
"""

from __future__ import annotations

import heapq

import numpy as np

from engine.circuits.graph import CircuitError, CircuitGraph
from engine.circuits.results import Circuit, EdgeScores, GraphSpec


def importance(scores: np.ndarray, absolute: bool) -> np.ndarray:
    """The key edges are ranked by (higher = more important)."""
    scores = np.asarray(scores, dtype=np.float64)
    return np.abs(scores) if absolute else -scores


def _order(scores: np.ndarray, absolute: bool) -> np.ndarray:
    return np.argsort(-importance(scores, absolute), kind="stable")


def topk_mask(graph: CircuitGraph, scores: np.ndarray, k: int, *, absolute: bool = True, prune: bool = True) -> np.ndarray:
    """Bool [E]: the k highest-ranked edges, pruned to those on input -> logits paths."""
    if not 0 <= k <= graph.n_edges:
        raise CircuitError(f"circuit size {k} is outside 0..{graph.n_edges} (the graph's edge count)")
    mask = np.zeros(graph.n_edges, dtype=bool)
    mask[_order(scores, absolute)[:k]] = True
    return graph.prune(mask) if prune else mask


def topk_masks(graph: CircuitGraph, scores: np.ndarray, sizes: list[int], *, absolute: bool = True) -> np.ndarray:
    """Bool [len(sizes), E] for a ladder of sizes, sorting once."""
    order = _order(scores, absolute)
    out = np.zeros((len(sizes), graph.n_edges), dtype=bool)
    for i, k in enumerate(sizes):
        out[i, order[:k]] = True
        out[i] = graph.prune(out[i])
    return out


def random_scores(graph: CircuitGraph, seed: int = 0) -> np.ndarray:
    """Scores that rank edges uniformly at random (the random-circuit baseline)."""
    return np.random.default_rng(seed).standard_normal(graph.n_edges)


def greedy_order(graph: CircuitGraph, scores: np.ndarray, *, absolute: bool = True) -> np.ndarray:
    """MIB's greedy growth: the order in which edges join a circuit grown from the logits, always
    adding the best-ranked edge into a node already in the circuit. Every prefix reaches the logits."""
    key = importance(scores, absolute)
    s_idx, r_idx = graph.edge_index
    by_receiver: dict[int, list[int]] = {}
    for e, r in enumerate(r_idx.tolist()):
        by_receiver.setdefault(r, []).append(e)
    receivers_of_sender: dict[int, list[int]] = {}
    for layer in range(graph.n_layers):
        base = graph.attn_receiver_base(layer)
        for h in range(graph.n_heads):
            g = h // graph.group
            receivers_of_sender[graph.head_sender(layer, h)] = [
                base + h, base + graph.n_heads + g, base + graph.n_heads + graph.n_kv_heads + g]
        receivers_of_sender[graph.mlp_sender(layer)] = [graph.mlp_receiver(layer)]
    heap: list[tuple[float, int]] = []
    pushed: set[int] = set()

    def open_receiver(r: int) -> None:
        if r not in pushed:
            pushed.add(r)
            for e in by_receiver.get(r, ()):
                heapq.heappush(heap, (-key[e], e))

    open_receiver(graph.logits_receiver)
    in_circuit = np.zeros(graph.n_senders, dtype=bool)
    order: list[int] = []
    while heap:
        _, e = heapq.heappop(heap)
        order.append(e)
        sender = int(s_idx[e])
        if sender and not in_circuit[sender]:
            in_circuit[sender] = True
            for r in receivers_of_sender[sender]:
                open_receiver(r)
    return np.array(order, dtype=np.int64)


def greedy_masks(graph: CircuitGraph, scores: np.ndarray, sizes: list[int], *, absolute: bool = True) -> np.ndarray:
    """Bool [len(sizes), E]: prefixes of the greedy order, pruned (edges not reaching the input go)."""
    order = greedy_order(graph, scores, absolute=absolute)
    out = np.zeros((len(sizes), graph.n_edges), dtype=bool)
    for i, k in enumerate(sizes):
        out[i, order[:k]] = True
        out[i] = graph.prune(out[i])
    return out


def circuit_from_mask(
    graph: CircuitGraph,
    mask: np.ndarray,
    *,
    model: str,
    method: str,
    scores: np.ndarray | None = None,
    requested_size: int | None = None,
    ablation: str = "counterfactual",
) -> Circuit:
    """A Circuit result from a bool [E] mask (edges listed by decreasing |score| when scores are given)."""
    idx = np.flatnonzero(mask)
    vals = np.full(len(idx), np.nan) if scores is None else np.asarray(scores, dtype=np.float64)[idx]
    if scores is not None:
        order = np.argsort(-np.abs(vals), kind="stable")
        idx, vals = idx[order], vals[order]
    names = graph.edge_names
    return Circuit(
        method=method,
        model=model,
        graph=GraphSpec.of(graph),
        edges=[names[i] for i in idx],
        edge_scores=[float(v) for v in vals],
        requested_size=requested_size,
        ablation=ablation,
    )


def select_circuit(
    scores: EdgeScores,
    size: int | None = None,
    *,
    fraction: float | None = None,
    absolute: bool = True,
    rule: str = "topk",
    stability: int | None = 100,
    seed: int = 0,
) -> Circuit:
    """The circuit of ``size`` edges (or ``fraction`` of all edges) by top-k + pruning or greedy growth,
    with its bootstrap stability over ``stability`` resamples of the pairs (None: skip; it needs the
    per-pair scores, which exist only for scores computed in this process)."""
    graph = scores.graph.graph()
    if (size is None) == (fraction is None):
        raise CircuitError("give exactly one of size (edges) or fraction (of all edges)")
    k = int(size) if size is not None else int(round(float(fraction) * graph.n_edges))
    arr = scores.array()
    if rule == "topk":
        mask = topk_mask(graph, arr, k, absolute=absolute)
    elif rule == "greedy":
        mask = greedy_masks(graph, arr, [k], absolute=absolute)[0]
    else:
        raise CircuitError(f"unknown selection rule {rule!r}; use 'topk' or 'greedy'")
    circuit = circuit_from_mask(graph, mask, model=scores.model, method=f"{scores.method} {rule}", scores=arr,
                                requested_size=k, ablation=scores.ablation)
    return with_stability(circuit, scores, absolute=absolute, rule=rule, n_resamples=stability, seed=seed)


def with_stability(circuit: Circuit, scores: EdgeScores, *, absolute: bool = True, rule: str = "topk",
                   n_resamples: int | None = 100, seed: int = 0) -> Circuit:
    """The circuit with its bootstrap stability attached (unchanged when it cannot be computed)."""
    if n_resamples is None or scores._per_pair is None or circuit.requested_size is None:
        return circuit
    from engine.circuits.stability import bootstrap_jaccard  # stability imports this module

    stab = bootstrap_jaccard(scores, circuit.requested_size, absolute=absolute, rule=rule,
                             n_resamples=n_resamples, seed=seed)
    return circuit.model_copy(update={"stability": stab})
