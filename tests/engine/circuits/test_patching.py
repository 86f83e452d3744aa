"""The edge-patched forward: unpatched = plain forward, one patched edge = a hand-written patched
forward, K circuits in a batch = K separate runs, pruning changes nothing (all on the tiny model)."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from engine.circuits import CircuitTask, circuit_metrics, graph_of
from engine.circuits.forward import patched_logits, prepare_runs, split_model
from tests.engine.circuits.handwritten import handwritten_forward

TOL = 1e-4


def _maxdiff(a, b) -> float:
    return float(np.abs(np.asarray(a) - np.asarray(b)).max())


def _full_minus(g, edges: list[str]) -> np.ndarray:
    mask = np.ones(g.n_edges, dtype=bool)
    mask[g.edge_ids(edges)] = False
    return mask


def test_unpatched_split_forward_equals_plain_forward(tiny, tiny_task):
    g = graph_of(tiny)
    runs = prepare_runs(split_model(tiny), tiny_task)
    plain = tiny.forward(tiny_task.clean)[:, -1]
    assert _maxdiff(runs.clean_logits, plain) <= TOL
    full = mx.array(g.to_dense(np.ones((1, g.n_edges), np.float32)))
    assert _maxdiff(patched_logits(split_model(tiny), full, runs.clean_embeds, runs.ablated)[0], plain) <= TOL
    empty = mx.zeros_like(full)
    corrupted = tiny.forward(tiny_task.corrupted)[:, -1]
    assert _maxdiff(patched_logits(split_model(tiny), empty, runs.clean_embeds, runs.ablated)[0], corrupted) <= TOL


def test_handwritten_forward_is_the_model(tiny, tiny_task):
    logits, _ = handwritten_forward(tiny, tiny_task.clean)
    assert _maxdiff(logits, tiny.forward(tiny_task.clean)[:, -1]) <= TOL


@pytest.mark.parametrize(
    "edge",
    ["input->a0.h2<q>", "input->a0.kv1<k>", "a0.h1->a1.kv0<v>", "m0->a2.kv1<k>", "a1.h3->m1", "a2.h0->logits", "input->logits"],
)
def test_one_patched_edge_equals_handwritten_patch(tiny, tiny_task, edge):
    """Patching u->v = subtracting (clean_u - corrupted_u) from v's input only, everything else recomputed."""
    g = graph_of(tiny)
    sender, receiver = edge.split("->")
    _, clean_outs = handwritten_forward(tiny, tiny_task.clean)
    _, corrupt_outs = handwritten_forward(tiny, tiny_task.corrupted)
    delta = clean_outs[sender] - corrupt_outs[sender]  # [b, p, d]
    expected, _ = handwritten_forward(tiny, tiny_task.clean, shift=(receiver, delta))
    runs = prepare_runs(split_model(tiny), tiny_task)
    mask = mx.array(g.to_dense(_full_minus(g, [edge])[None].astype(np.float32)))
    got = patched_logits(split_model(tiny), mask, runs.clean_embeds, runs.ablated)[0]
    assert _maxdiff(got, expected) <= TOL
    assert _maxdiff(expected, tiny.forward(tiny_task.clean)[:, -1]) > 1e-3  # the patch does something


def test_batched_circuits_equal_one_by_one(tiny, tiny_task):
    g = graph_of(tiny)
    rng = np.random.default_rng(0)
    masks = rng.random((7, g.n_edges)) < np.array([0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0])[:, None]
    batched = circuit_metrics(tiny, tiny_task, masks, max_rows=64)  # all 7 circuits in one forward
    single = np.stack([circuit_metrics(tiny, tiny_task, m[None], max_rows=1)[0] for m in masks])
    assert _maxdiff(batched, single) <= TOL
    chunked = circuit_metrics(tiny, tiny_task, masks, max_rows=8)  # 2 circuits per forward
    assert _maxdiff(batched, chunked) <= TOL


def test_pruning_does_not_change_the_circuit(tiny, tiny_task):
    g = graph_of(tiny)
    rng = np.random.default_rng(1)
    mask = rng.random(g.n_edges) < 0.2
    pruned = g.prune(mask)
    assert pruned.sum() < mask.sum()
    vals = circuit_metrics(tiny, tiny_task, np.stack([mask, pruned]))
    assert _maxdiff(vals[0], vals[1]) <= TOL


def test_mean_ablation_uses_the_reference_mean(tiny, tiny_task):
    """With every edge ablated, every input is the mean residual of the reference run."""
    task = CircuitTask.from_tokens(tiny_task.clean, tiny_task.corrupted, tiny_task.correct_ids, tiny_task.wrong_ids,
                                   ablation="mean")
    g = graph_of(tiny)
    runs = prepare_runs(split_model(tiny), task)
    assert runs.ablated.stack.shape[1] == 1
    _, outs = handwritten_forward(tiny, tiny_task.corrupted)
    mean_input = outs["input"].mean(axis=0)
    assert _maxdiff(runs.ablated.stack[0, 0], mean_input) <= 1e-5
    empty = mx.zeros((1, g.n_senders, g.n_receivers))
    logits = np.asarray(patched_logits(split_model(tiny), empty, runs.clean_embeds, runs.ablated)[0])  # [N, v]
    assert _maxdiff(logits, np.broadcast_to(logits[:1], logits.shape)) <= 1e-5  # every pair sees the same mean run
    full = circuit_metrics(tiny, task, np.ones((1, g.n_edges), bool))[0]
    assert _maxdiff(full, np.asarray(task.metric_values(tiny.forward(task.clean)[:, -1]))) <= TOL
