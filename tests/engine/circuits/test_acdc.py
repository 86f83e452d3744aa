"""ACDC on the tiny model: its bookkeeping, budgets, and the layer-prefix reuse it relies on."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from engine.circuits import ACDCResult, CircuitError, acdc, circuit_metrics, graph_of
from engine.circuits.forward import clean_prefix, patched_logits, prepare_runs, split_model


def test_prefix_reuse_equals_full_recompute(tiny, tiny_task):
    """With every edge into layers < L intact, starting at L from the clean prefix changes nothing."""
    g = graph_of(tiny)
    sm = split_model(tiny)
    runs = prepare_runs(sm, tiny_task)
    rng = np.random.default_rng(0)
    dense = g.valid & (rng.random(g.valid.shape) < 0.6)
    dense[:, : g.attn_receiver_base(1)] = g.valid[:, : g.attn_receiver_base(1)]  # layer 0 untouched
    masks = mx.array(dense[None].astype(np.float32))
    full = patched_logits(sm, masks, runs.clean_embeds, runs.ablated)
    reused = patched_logits(sm, masks, runs.clean_embeds, runs.ablated, start_layer=1,
                            prefix=clean_prefix(sm, runs.clean_stack, runs.ablated, 1))
    assert float(mx.abs(full - reused).max()) <= 1e-4


@pytest.mark.parametrize("loss,threshold", [("metric", 0.05), ("kl", 0.002)])
def test_final_loss_is_the_returned_circuits(tiny, tiny_task, loss, threshold):
    res = acdc(tiny, tiny_task, threshold=threshold, loss=loss)
    assert 0 < res.edges_removed < graph_of(tiny).n_edges and not res.budget_exhausted
    if loss == "metric":
        m = circuit_metrics(tiny, tiny_task, res.circuit.mask()[None])[0].mean()
        assert -m == pytest.approx(res.final_loss, abs=1e-4)
    assert ACDCResult.model_validate_json(res.model_dump_json()).circuit.edges == res.circuit.edges
    assert "ACDC" in res.summary()


def test_thresholds_at_the_extremes(tiny, tiny_task):
    g = graph_of(tiny)
    keep_all = acdc(tiny, tiny_task, threshold=-np.inf, loss="metric")
    assert keep_all.circuit.n_edges == g.n_edges and keep_all.edges_considered == g.n_edges
    drop_all = acdc(tiny, tiny_task, threshold=np.inf, loss="metric")
    assert drop_all.circuit.n_edges == 0
    assert drop_all.edges_considered == g.n_senders  # only the logits' inputs: nothing else stays alive


def test_budget_and_restriction(tiny, tiny_task):
    res = acdc(tiny, tiny_task, threshold=0.01, max_edges=7)
    assert res.edges_considered == 7 and res.budget_exhausted
    only = acdc(tiny, tiny_task, threshold=np.inf, loss="metric", receivers=["m2"])
    assert only.edges_considered == graph_of(tiny).mlp_up(2) and "m2" not in only.circuit.nodes()
    with pytest.raises(CircuitError, match="unknown receiver"):
        acdc(tiny, tiny_task, threshold=0.1, receivers=["a9.h0<q>"])
