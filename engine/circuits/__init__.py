"""Edge-level circuit discovery: the computational graph, edge-patched forwards batched over circuits,
EAP and EAP-IG scores, circuit selection, ACDC, faithfulness curves (CPR/CMD), bootstrap stability and
planted-circuit models.

Entry points (all take an engine HookedModel and a CircuitTask unless said otherwise)::

    from engine import circuits
    task = circuits.CircuitTask.from_pairs(model, pairs)          # or .from_tokens(ctx.clean_tokens, ...)
    graph = circuits.graph_of(model)                               # nodes, inputs, edges; graph.summary()
    scores = circuits.eap_ig(model, task, steps=5)                 # EdgeScores; also circuits.eap(...)
    circuit = circuits.select_circuit(scores, size=200)            # top-k by |score|, pruned to input->logits
    circuit = circuits.grow_to_faithfulness(model, task, scores, target=0.9)
    f = circuits.faithfulness(model, task, masks)                  # [K] for K circuits in one batched run
    cmp = circuits.compare_methods(model, task, {"eap": s1, "eap-ig": s2})   # curves, CPR, CMD, random
    stab = circuits.bootstrap_jaccard(scores, size=200)            # Stability (>= 100 seeded resamples)
    res = circuits.acdc(model, task, threshold=0.05)               # the slow one-edge-at-a-time reference
    found = circuits.discover_circuit(model, task, held_out=other) # all of the above, as one finding
    planted = circuits.build_planted_model(directory)             # mlx-lm dir with a known circuit

Results are pydantic models with summary() and top(k). ``graph``, ``results`` and ``selection``
import no mlx; everything else is loaded lazily on first use.
"""

from __future__ import annotations

from typing import Any

from engine.lazy import lazy_attribute

_EXPORTS: dict[str, str] = {
    "CircuitGraph": "engine.circuits.graph",
    "CircuitError": "engine.circuits.graph",
    "graph_of": "engine.circuits.graph",
    "CircuitTask": "engine.circuits.task",
    "EdgeScores": "engine.circuits.results",
    "Circuit": "engine.circuits.results",
    "Stability": "engine.circuits.results",
    "FaithfulnessCurve": "engine.circuits.results",
    "MethodFaithfulness": "engine.circuits.results",
    "CircuitComparison": "engine.circuits.results",
    "ACDCResult": "engine.circuits.results",
    "CircuitDiscovery": "engine.circuits.results",
    "GraphSpec": "engine.circuits.results",
    "eap": "engine.circuits.attribution",
    "eap_ig": "engine.circuits.attribution",
    "attribute": "engine.circuits.attribution",
    "select_circuit": "engine.circuits.selection",
    "topk_mask": "engine.circuits.selection",
    "greedy_order": "engine.circuits.selection",
    "random_scores": "engine.circuits.selection",
    "circuit_from_mask": "engine.circuits.selection",
    "circuit_metrics": "engine.circuits.evaluation",
    "faithfulness": "engine.circuits.evaluation",
    "compare_methods": "engine.circuits.evaluation",
    "MIB_PERCENTAGES": "engine.circuits.evaluation",
    "grow_to_faithfulness": "engine.circuits.growth",
    "bootstrap_jaccard": "engine.circuits.stability",
    "acdc": "engine.circuits.acdc_search",
    "discover_circuit": "engine.circuits.discover",
    "build_planted_model": "engine.circuits.planted",
    "PlantedModel": "engine.circuits.planted",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    return lazy_attribute(__name__, _EXPORTS, name)
