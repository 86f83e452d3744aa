"""Trusted verification of a circuit claim (called by sandbox.verify_entry in the verifier child).

A circuit claim names a set of edges. Nothing the experiment measured is reused: this module
re-measures, with the engine's edge-patched forward and the contract metric, on the held-out pairs:
- per-pair faithfulness shares (m_i(C) - m_i(empty)) / mean(m(full) - m(empty)); their mean is the
  circuit's faithfulness and their spread gives the analyst's bootstrap CI;
- the same for ``n_null`` random circuits of the same edge count, grown from the logits with random
  scores (so they are connected like the claimed one), as the null the claim must clearly beat;
- the claimed scoring method recomputed on the exploration pairs: its faithfulness curve, CPR and CMD
  on the held-out pairs beside random circuits' (MIB), and the bootstrap Jaccard stability of its
  circuit at the claimed size, plus how far the claimed edges agree with that circuit.
Statistics and the keep rule are the orchestrator's (orchestrator.analysis.circuit).
"""

from __future__ import annotations

import time
from typing import Any

from sandbox.pair_groups import group_by_length

GAP_EPS = 1e-6
NULL_MODE = "random_circuits"
METRICS = {"logit_diff": "logit_diff", "prob_correct": "prob"}  # contract metric -> CircuitTask metric
STABILITY_RESAMPLES = 100


def _error(reason: str, notes: list[str], load_s: float = 0.0) -> dict[str, Any]:
    return {"status": "error", "reason": reason, "notes": notes, "durations": {"model_load_s": load_s}}


def _tasks(model: Any, pairs: list[Any], metric: str, ablation: str) -> tuple[list[tuple[list[int], Any]], list[int], list[str]]:
    """CircuitTasks of equal-length pairs (largest group first), the pairs left out and why."""
    from engine.circuits import CircuitTask

    groups, left_out, notes = group_by_length(model, pairs)
    ordered = sorted(groups.values(), key=lambda ix: (-len(ix), ix[0]))
    return ([(ix, CircuitTask.from_pairs(model, [pairs[i] for i in ix], metric=metric, ablation=ablation))
             for ix in ordered], left_out, notes)


def measure_circuit(request: dict[str, Any]) -> dict[str, Any]:
    """The verify_entry result dict (status, effects, null_effects, circuit figures) for a circuit claim."""
    import numpy as np

    import engine
    from engine.circuits import CircuitError, compare_methods, eap, eap_ig, graph_of
    from engine.circuits.evaluation import MIB_PERCENTAGES, circuit_metrics
    from engine.circuits.forward import prepare_runs, split_model
    from engine.circuits.selection import greedy_masks, random_scores, topk_mask
    from engine.circuits.stability import bootstrap_jaccard, jaccard
    from sandbox.schemas import CircuitFigures, Claim, PromptPair

    claim = Claim.model_validate(request["claim"])
    spec = claim.circuit
    if spec is None:
        raise ValueError("measure_circuit needs a claim with a circuit")
    held = [PromptPair.model_validate(p) for p in request["pairs"]]
    exploration = [PromptPair.model_validate(p) for p in request.get("exploration") or []]
    seed, n_null = int(request["seed"]), int(request["n_null"])
    notes: list[str] = []
    if request["metric"] not in METRICS:
        return _error(f"circuit claims support the contract metrics {sorted(METRICS)}, not {request['metric']!r}", notes)
    if not exploration:
        return _error("the verifier got no exploration pairs to recompute the circuit's scoring method on", notes)
    metric = METRICS[request["metric"]]
    clock: dict[str, float] = {}
    t = time.perf_counter()
    model = engine.load_model(request["model"])
    load_s = clock["load"] = time.perf_counter() - t
    graph = graph_of(model)
    try:
        mask = graph.mask_from_names(list(spec.edges))
    except CircuitError as exc:
        return _error(f"the circuit does not fit {model.cfg.name}'s graph: {exc}", notes, load_s)
    n_edges = int(mask.sum())
    dangling = n_edges - int(graph.prune(mask).sum())
    if dangling:
        notes.append(f"{dangling} of {n_edges} claimed edges lie on no input->logits path inside the circuit "
                     "(they cannot change the patched run)")
    nulls = [greedy_masks(graph, random_scores(graph, seed * 1000 + k), [n_edges])[0] for k in range(n_null)]
    masks = np.stack([mask, np.zeros_like(mask), *nulls])  # claimed, empty, random circuits

    t = time.perf_counter()
    held_tasks, excluded, held_notes = _tasks(model, held, metric, spec.ablation)
    notes += held_notes
    if not held_tasks:
        return _error("no held-out pair has clean and corrupted prompts of equal token length", notes, load_s)
    sm = split_model(model)
    m_full, per_mask, used = [], [], []
    held_runs = None
    for ix, task in held_tasks:
        runs = prepare_runs(sm, task)
        held_runs = held_runs or runs  # the largest group's, reused for the curves below
        m_full.append(np.asarray(task.metric_values(runs.clean_logits), dtype=np.float64))
        per_mask.append(circuit_metrics(model, task, masks, runs=runs))
        used += ix
    full = np.concatenate(m_full)
    m = np.concatenate(per_mask, axis=1)  # [K, n]
    empty = m[1]
    mean_gap = float(np.mean(full - empty))
    if abs(mean_gap) <= GAP_EPS:
        return _error("the full and the fully ablated model give the same mean metric on the held-out pairs, so "
                      "faithfulness is undefined", notes, load_s)
    effects = (m[0] - empty) / mean_gap
    null_effects = [((m[2 + k] - empty) / mean_gap).tolist() for k in range(n_null)]
    clock["held_out_faithfulness"] = time.perf_counter() - t

    t = time.perf_counter()
    explo_tasks, _, explo_notes = _tasks(model, exploration, metric, spec.ablation)
    if not explo_tasks:
        return _error("no exploration pair has clean and corrupted prompts of equal token length", notes, load_s)
    explo_task = explo_tasks[0][1]
    if len(explo_tasks) > 1 or explo_notes:
        notes.append(f"scores recomputed on the largest equal-length group of exploration pairs ({explo_task.n})")
    if len(held_tasks) > 1:
        notes.append(f"curves measured on the largest equal-length group of held-out pairs ({held_tasks[0][1].n})")
    scores = eap(model, explo_task) if spec.method == "eap" else eap_ig(model, explo_task, steps=spec.ig_steps)
    clock["scores"] = time.perf_counter() - t
    t = time.perf_counter()
    cmp = compare_methods(model, held_tasks[0][1], {spec.method: scores}, percentages=MIB_PERCENTAGES, seed=seed,
                          runs=held_runs)
    clock["curves"] = time.perf_counter() - t
    t = time.perf_counter()
    size = min(spec.requested_size or n_edges, graph.n_edges)
    absolute = not spec.signed
    stab = bootstrap_jaccard(scores, size, absolute=absolute, n_resamples=STABILITY_RESAMPLES, seed=seed)
    agreement = jaccard(mask, topk_mask(graph, scores.array(), size, absolute=absolute))
    clock["stability"] = time.perf_counter() - t
    method, rand = cmp.get(spec.method), cmp.get("random")
    figures = CircuitFigures(
        n_layers=graph.n_layers, n_heads=graph.n_heads, n_kv_heads=graph.n_kv_heads, n_edges=n_edges, nodes=graph.nodes_of(mask), method=spec.method,
        ig_steps=1 if spec.method == "eap" else spec.ig_steps, ablation=spec.ablation, held_out_pairs=len(used),
        exploration_pairs=explo_task.n, m_full=float(full.mean()), m_empty=float(empty.mean()),
        faithfulness=float(effects.mean()), random_faithfulness=[float(np.mean(e)) for e in null_effects],
        random_edges=[int(x.sum()) for x in nulls], cpr=method.cpr, cmd=method.cmd, random_cpr=rand.cpr,
        random_cmd=rand.cmd, curve_percentages=list(MIB_PERCENTAGES), curve=method.absolute.faithfulness,
        random_curve=rand.absolute.faithfulness,
        signed_curve=method.signed.faithfulness, signed=spec.signed, stability_size=size, jaccard_mean=stab.jaccard_mean,
        jaccard_std=stab.jaccard_std, jaccard_p05=stab.jaccard_p05, jaccard_p95=stab.jaccard_p95,
        jaccard_resamples=stab.n_resamples, agreement=agreement, runtime_s={k: round(v, 3) for k, v in clock.items()},
    )
    return {"status": "ok", "metric": request["metric"], "n_pairs": len(used), "effects": effects.tolist(),
            "target_metric": empty.tolist(), "intervened_metric": m[0].tolist(), "clean_metric": full.tolist(),
            "corrupted_metric": empty.tolist(), "null_effects": {NULL_MODE: null_effects},
            "excluded_pairs": sorted(excluded), "notes": notes, "seed": seed, "normaliser": mean_gap,
            "durations": {"model_load_s": load_s}, "circuit": figures.model_dump(mode="json")}


def verify_circuit_claim(run_dir: Any, claim: Any, *, n_null: int = 10, limits: Any = None,
                         scratch_root: Any = None, cancel: Any = None) -> Any:
    """Parent side: measure a circuit claim in a fresh isolated verifier child (sandbox.verify_entry) on the
    held-out pairs, with the exploration pairs for recomputing the scoring method. Returns a
    VerificationResult; status 'error' says why it failed. Circuit nulls (random circuits) are drawn per
    claim: they depend on the circuit's size, so the run's noise-floor cache does not apply."""
    import shutil
    import tempfile
    from pathlib import Path

    from pydantic import ValidationError

    from sandbox.contract import load_contract, verify_contract
    from sandbox.isolation import isolation_report, model_paths, require_isolation
    from sandbox.process import interpret, launch_isolated
    from sandbox.runner import default_scratch_root
    from sandbox.schemas import ResourceLimits, VerificationResult
    from sandbox.verifier import ContractViolation

    if claim.circuit is None:
        raise ValueError("verify_circuit_claim needs a claim with a circuit; use sandbox.verifier.verify_claim")
    run_dir = Path(run_dir).resolve()
    limits = limits or ResourceLimits(timeout_s=900.0)
    start = time.perf_counter()
    check = verify_contract(run_dir)
    if not check.ok:
        raise ContractViolation(f"contract of {run_dir} fails verification: {check.problems}; restore it first")
    contract = load_contract(run_dir)
    report = isolation_report()
    require_isolation(report)
    request = {"claim": claim.model_dump(mode="json"), "pairs": [p.model_dump() for p in contract.held_out],
               "exploration": [p.model_dump() for p in contract.exploration], "model": contract.model,
               "metric": contract.metric, "seed": contract.seed, "n_null": int(n_null), "null_modes": [NULL_MODE]}
    scratch = Path(tempfile.mkdtemp(prefix="verify-", dir=scratch_root or default_scratch_root()))
    try:
        run = launch_isolated("sandbox.verify_entry", request, scratch, limits, hidden=[run_dir], cancel=cancel,
                              report=report, extra_readable=model_paths(contract.model))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    status, reason, msg = interpret(run, limits)
    base = {"isolation": report.layers, "seed": contract.seed, "metric": contract.metric}
    if status != "ok":
        return VerificationResult(status="error", reason=f"verification {status}: {reason}", **base)
    try:
        result = VerificationResult.model_validate(msg.get("result"))
    except ValidationError as exc:
        return VerificationResult(status="error", reason=f"verifier output does not validate: {exc}"[:4000], **base)
    result.isolation = report.layers
    result.durations.startup_s = run.ready_s or 0.0
    result.durations.total_s = time.perf_counter() - start
    return result
