"""Greedy growth to a target faithfulness: the smallest circuit, in the score order, that is faithful enough.

Edges join in the selection rule's order (top-k by score then pruned, or MIB's greedy growth from
the logits); the size is searched on a geometric ladder and then refined by bisection, each round
one batched patched forward of all candidate sizes, so the search costs a handful of forwards.
"""

from __future__ import annotations

import numpy as np

from engine.circuits.evaluation import baselines, circuit_metrics
from engine.circuits.forward import Runs, prepare_runs, split_model
from engine.circuits.graph import CircuitError
from engine.circuits.results import Circuit, EdgeScores
from engine.circuits.selection import circuit_from_mask, greedy_masks, topk_masks, with_stability
from engine.circuits.task import CircuitTask


def grow_to_faithfulness(
    model,
    task: CircuitTask,
    scores: EdgeScores,
    target: float = 0.9,
    *,
    rule: str = "topk",
    absolute: bool = True,
    ladder: int = 16,
    rounds: int = 4,
    runs: Runs | None = None,
    max_rows: int = 64,
    stability: int | None = 100,
    seed: int = 0,
) -> Circuit:
    """The smallest circuit found whose faithfulness on ``task`` is at least ``target``.

    Faithfulness need not grow monotonically with size, so this is the first size of the searched
    sequence that reaches the target (the full graph always does: f = 1 by definition). The circuit
    carries its bootstrap stability over ``stability`` resamples (None: skip).
    """
    if not 0 < target <= 1:
        raise CircuitError(f"target faithfulness must be in (0, 1], got {target}")
    if rule not in ("topk", "greedy"):
        raise CircuitError(f"unknown selection rule {rule!r}; use 'topk' or 'greedy'")
    graph = scores.graph.graph()
    runs = runs or prepare_runs(split_model(model), task)
    m_full, m_empty = baselines(model, task, runs)
    arr = scores.array()
    make = topk_masks if rule == "topk" else greedy_masks
    evaluated: dict[int, tuple[float, np.ndarray]] = {}

    def evaluate(sizes: list[int]) -> None:
        sizes = sorted(set(sizes) - set(evaluated))
        if not sizes:
            return
        masks = make(graph, arr, sizes, absolute=absolute)
        unique, inverse = np.unique(masks, axis=0, return_inverse=True)
        m = circuit_metrics(model, task, unique, runs=runs, max_rows=max_rows).mean(axis=1)[inverse.reshape(-1)]
        for k, mk, mask in zip(sizes, m, masks):
            evaluated[k] = (float((mk - m_empty) / (m_full - m_empty)), mask)

    def bracket() -> tuple[int, int]:
        ks = sorted(evaluated)
        hi = next((k for k in ks if evaluated[k][0] >= target), graph.n_edges)
        lo = max((k for k in ks if k < hi), default=0)
        return lo, hi

    evaluate(sorted({int(round(graph.n_edges ** (i / (ladder - 1)))) for i in range(ladder)}))
    evaluated.setdefault(graph.n_edges, (1.0, np.ones(graph.n_edges, dtype=bool)))
    for _ in range(rounds):
        lo, hi = bracket()
        if hi - lo <= max(1, int(0.02 * hi)):
            break
        evaluate(np.unique(np.linspace(lo, hi, 10).round().astype(int)).tolist())
    _, hi = bracket()
    f, mask = evaluated[hi]
    circuit = circuit_from_mask(graph, mask, model=scores.model, method=f"{scores.method} {rule} grown to f>={target:g}",
                                scores=arr, requested_size=hi, ablation=task.ablation)
    circuit = circuit.model_copy(update={"faithfulness": f})
    return with_stability(circuit, scores, absolute=absolute, rule=rule, n_resamples=stability, seed=seed)
