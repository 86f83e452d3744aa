"""Circuits evaluated by edge patching, many at once: faithfulness, MIB curves, CPR and CMD.

f(C) = (m(C) - m(empty)) / (m(full) - m(empty)), with m the task metric averaged over pairs, m(full)
the unpatched model and m(empty) every edge ablated. A curve evaluates the top circuits at MIB's
sizes (0.1% .. 100% of edges); CPR is the trapezoid area under f over the fractions with edges
ranked by signed score, CMD the area under |1 - f| with edges ranked by |score| (MIB's choice).
Every circuit of every method and the random baseline goes through the same batched patched
forward (rows = circuits x pairs), so a whole comparison costs a few forwards per pair.
"""

from __future__ import annotations

import time

import mlx.core as mx
import numpy as np

from engine.circuits.forward import Runs, patched_logits, prepare_runs, split_model
from engine.circuits.graph import CircuitError, CircuitGraph
from engine.circuits.results import CircuitComparison, EdgeScores, FaithfulnessCurve, MethodFaithfulness
from engine.circuits.selection import random_scores, topk_masks
from engine.circuits.task import CircuitTask

MIB_PERCENTAGES: tuple[float, ...] = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


def circuit_metrics(
    model, task: CircuitTask, masks: np.ndarray, *, runs: Runs | None = None, max_rows: int = 64
) -> np.ndarray:
    """Metric [K, N] of K circuits (bool or float masks [K, E], 1 = edge kept) on every pair."""
    sm = split_model(model)
    graph = sm.graph
    masks = np.atleast_2d(np.asarray(masks))
    if masks.shape[-1] != graph.n_edges:
        raise CircuitError(f"masks have {masks.shape[-1]} edges; this model's graph has {graph.n_edges}")
    runs = runs or prepare_runs(sm, task)
    N = task.n
    per = max(1, max_rows // N)
    out = np.empty((masks.shape[0], N), dtype=np.float64)
    for start in range(0, masks.shape[0], per):
        dense = graph.to_dense(masks[start : start + per].astype(np.float32))  # [k, S, R]
        k = dense.shape[0]
        logits = patched_logits(sm, mx.array(dense), runs.clean_embeds, runs.ablated, position=task.position)
        rows = mx.array(np.tile(np.arange(N), k))
        vals = task.metric_values(logits.reshape(k * N, -1), rows).reshape(k, N)
        out[start : start + k] = np.asarray(vals, dtype=np.float64)
    return out


def baselines(model, task: CircuitTask, runs: Runs) -> tuple[float, float]:
    """(m(full), m(empty)) averaged over pairs."""
    graph = split_model(model).graph
    m_full = float(np.asarray(task.metric_values(runs.clean_logits)).mean())
    m_empty = float(circuit_metrics(model, task, np.zeros((1, graph.n_edges), bool), runs=runs)[0].mean())
    if abs(m_full - m_empty) < 1e-6:
        raise CircuitError(
            f"the full model and the fully ablated model score the same ({m_full:.4g}); faithfulness is undefined. "
            "Use pairs whose corruption changes the metric (e.g. swap the answer-relevant token)."
        )
    return m_full, m_empty


def faithfulness(
    model, task: CircuitTask, masks: np.ndarray, *, runs: Runs | None = None, max_rows: int = 64
) -> np.ndarray:
    """Faithfulness [K] of K circuits (masks [K, E])."""
    runs = runs or prepare_runs(split_model(model), task)
    m_full, m_empty = baselines(model, task, runs)
    m = circuit_metrics(model, task, masks, runs=runs, max_rows=max_rows).mean(axis=1)
    return (m - m_empty) / (m_full - m_empty)


def areas(percentages: list[float], f: list[float]) -> tuple[float, float]:
    """(area under f, area under |1 - f|) by the trapezoid rule over the fractions, as MIB."""
    x, y = np.asarray(percentages, dtype=np.float64), np.asarray(f, dtype=np.float64)
    dx = np.diff(x)
    return float((dx * (y[1:] + y[:-1]) / 2).sum()), float((dx * (np.abs(1 - y[1:]) + np.abs(1 - y[:-1])) / 2).sum())


def ladder_sizes(graph: CircuitGraph, percentages: tuple[float, ...]) -> list[int]:
    return [int(p * graph.n_edges) for p in percentages]


def compare_methods(
    model,
    task: CircuitTask,
    scores: dict[str, EdgeScores | np.ndarray],
    *,
    percentages: tuple[float, ...] = MIB_PERCENTAGES,
    random_baseline: bool = True,
    seed: int = 0,
    runs: Runs | None = None,
    max_rows: int = 64,
) -> CircuitComparison:
    """Faithfulness curves, CPR and CMD for each scoring method and a random baseline, in one batch.

    Random circuits rank edges by seeded random scores and go through the same top-k + pruning.
    """
    t0 = time.perf_counter()
    sm = split_model(model)
    graph = sm.graph
    runs = runs or prepare_runs(sm, task)
    m_full, m_empty = baselines(model, task, runs)
    sizes = ladder_sizes(graph, percentages)
    named: dict[str, np.ndarray] = {
        name: (s.array() if isinstance(s, EdgeScores) else np.asarray(s, dtype=np.float64)) for name, s in scores.items()
    }
    if random_baseline:
        named["random"] = random_scores(graph, seed)
    # every (method, ranking) ladder, deduplicated: identical masks are evaluated once
    ladders: dict[tuple[str, bool], np.ndarray] = {}
    for name, arr in named.items():
        for absolute in (False, True):
            if name == "random" and not absolute:
                continue  # random scores are symmetric: one ladder serves both
            ladders[(name, absolute)] = topk_masks(graph, arr, sizes, absolute=absolute)
    all_masks = np.concatenate(list(ladders.values()), axis=0)
    unique, inverse = np.unique(all_masks, axis=0, return_inverse=True)
    m = circuit_metrics(model, task, unique, runs=runs, max_rows=max_rows).mean(axis=1)[inverse.reshape(-1)]
    f_all = (m - m_empty) / (m_full - m_empty)
    curves: dict[tuple[str, bool], FaithfulnessCurve] = {}
    for i, ((name, absolute), masks) in enumerate(ladders.items()):
        f = f_all[i * len(sizes) : (i + 1) * len(sizes)].tolist()
        under, from_1 = areas(list(percentages), f)
        curves[(name, absolute)] = FaithfulnessCurve(
            method=name, absolute=absolute, percentages=list(percentages), requested_edges=sizes,
            edges=masks.sum(axis=1).astype(int).tolist(), faithfulness=f, area_under=under, area_from_1=from_1,
        )
    methods = []
    for name in named:
        signed = curves[(name, name == "random")]
        absolute = curves[(name, True)]
        methods.append(MethodFaithfulness(method=name, cpr=signed.area_under, cmd=absolute.area_from_1,
                                          signed=signed, absolute=absolute))
    return CircuitComparison(
        model=model.cfg.name, task=task.describe(), ablation=task.ablation, m_full=m_full, m_empty=m_empty,
        methods=methods, circuits_evaluated=int(unique.shape[0]), runtime_s=time.perf_counter() - t0,
    )
