"""One call for a circuit question: scores, the circuit, and the evidence a finding is kept on.

Scores come from the discovery pairs; everything a finding is judged by is measured on pairs the
scores never saw (held-out faithfulness, the CPR/CMD comparison of EAP, EAP-IG and random circuits),
plus the bootstrap stability of the selected edge set.
"""

from __future__ import annotations

import time

from engine.circuits.attribution import eap, eap_ig
from engine.circuits.evaluation import MIB_PERCENTAGES, compare_methods, faithfulness
from engine.circuits.forward import prepare_runs, split_model
from engine.circuits.graph import CircuitError
from engine.circuits.growth import grow_to_faithfulness
from engine.circuits.results import CircuitDiscovery
from engine.circuits.stability import MIN_RESAMPLES
from engine.circuits.task import CircuitTask


def discover_circuit(
    model,
    task: CircuitTask,
    *,
    held_out: CircuitTask | None = None,
    steps: int = 5,
    target: float = 0.9,
    rule: str = "topk",
    n_resamples: int = MIN_RESAMPLES,
    seed: int = 0,
    percentages: tuple[float, ...] = MIB_PERCENTAGES,
    max_rows: int = 16,
) -> CircuitDiscovery:
    """EAP-IG circuit grown to ``target`` faithfulness on ``task``, judged on ``held_out`` pairs.

    Without ``held_out`` the pairs are split in half (seeded). The comparison holds EAP, EAP-IG and
    random circuits' faithfulness curves with CPR and CMD on the held-out pairs.
    """
    t0 = time.perf_counter()
    if held_out is None:
        if task.n < 4:
            raise CircuitError(f"need at least 4 pairs to split into discovery and held-out halves, got {task.n}; "
                               "or pass held_out=")
        task, held_out = task.split(0.5, seed=seed)
    sm = split_model(model)
    runs = prepare_runs(sm, task)
    s_ig = eap_ig(model, task, steps=steps, runs=runs, max_rows=max_rows)
    s_eap = eap(model, task, runs=runs, max_rows=max_rows)
    circuit = grow_to_faithfulness(model, task, s_ig, target, rule=rule, runs=runs, stability=n_resamples, seed=seed)
    held_runs = prepare_runs(sm, held_out)
    held_f = float(faithfulness(model, held_out, circuit.mask()[None], runs=held_runs)[0])
    comparison = compare_methods(model, held_out, {"eap": s_eap, "eap-ig": s_ig}, percentages=percentages,
                                 seed=seed, runs=held_runs)
    circuit = circuit.model_copy(update={"held_out_faithfulness": held_f})
    return CircuitDiscovery(circuit=circuit, comparison=comparison, scores_summary=s_ig.summary(),
                            top_edges=s_ig.top(20), runtime_s=time.perf_counter() - t0)
