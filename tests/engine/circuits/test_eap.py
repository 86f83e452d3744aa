"""EAP and EAP-IG on the tiny model: scores equal the linear estimate from slow per-edge gradients."""

from __future__ import annotations

import json

import mlx.core as mx
import numpy as np

from engine.circuits import EdgeScores, eap, eap_ig, graph_of
from engine.circuits.forward import patched_logits, prepare_runs, split_model


def test_eap_equals_per_edge_linear_estimate(tiny, tiny_task):
    """For each edge separately: d/dt metric(edge weight 1 - t) at t = 0, by its own backward through
    the edge-patched forward, equals the EAP score of that edge (one forward + one backward for all)."""
    g = graph_of(tiny)
    scores = eap(tiny, tiny_task).array()
    sm = split_model(tiny)
    runs = prepare_runs(sm, tiny_task)
    full = mx.array(g.valid.astype(np.float32))
    s_idx, r_idx = g.edge_index

    def metric_with_edge_weight(t: mx.array, edge: int) -> mx.array:
        onehot = np.zeros((g.n_senders, g.n_receivers), np.float32)
        onehot[s_idx[edge], r_idx[edge]] = 1.0
        masks = (full - t * mx.array(onehot))[None]
        logits = patched_logits(sm, masks, runs.clean_embeds, runs.ablated)[0]
        return tiny_task.metric_values(logits).mean()

    slow = np.array([mx.grad(metric_with_edge_weight)(mx.array(0.0), e).item() for e in range(g.n_edges)])
    assert np.abs(scores).max() > 0.1
    np.testing.assert_allclose(scores, slow, atol=1e-5, rtol=1e-4)


def test_eap_ig_with_one_step_is_eap(tiny, tiny_task):
    np.testing.assert_allclose(eap_ig(tiny, tiny_task, steps=1).array(), eap(tiny, tiny_task).array(), atol=1e-6)


def test_eap_ig_batching_does_not_change_scores(tiny, tiny_task):
    a = eap_ig(tiny, tiny_task, steps=4, max_rows=16).array()
    b = eap_ig(tiny, tiny_task, steps=4, max_rows=3).array()
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_eap_ig_riemann_sums_converge(tiny, tiny_task):
    """More interpolation steps settle the integral: 16 steps are closer to 32 than 2 steps are."""
    s16 = eap_ig(tiny, tiny_task, steps=16).array()
    s32 = eap_ig(tiny, tiny_task, steps=32).array()
    s2 = eap_ig(tiny, tiny_task, steps=2).array()
    assert np.abs(s32 - s16).max() < np.abs(s32 - s2).max()


def test_scores_serialise_and_summarise(tiny, tiny_task):
    s = eap_ig(tiny, tiny_task, steps=3)
    again = EdgeScores.model_validate(json.loads(s.model_dump_json()))
    assert again.scores == s.scores and len(again.scores) == graph_of(tiny).n_edges
    assert s.per_pair().shape == (tiny_task.n, graph_of(tiny).n_edges)
    np.testing.assert_allclose(s.per_pair().mean(0), s.array(), atol=1e-5)
    top = s.top(3)
    assert len(top) == 3 and abs(top[0][1]) >= abs(top[1][1]) >= abs(top[2][1])
    assert "eap-ig" in s.summary() and "3 IG steps" in s.summary()
    nodes = s.node_scores()
    assert len(nodes) == graph_of(tiny).n_senders


def test_signed_top_lists_the_supporting_edges_first(tiny, tiny_task):
    s = eap(tiny, tiny_task)
    signed = [v for _, v in s.top(5, absolute=False)]
    assert signed == sorted(signed) and signed[0] == min(s.scores)
