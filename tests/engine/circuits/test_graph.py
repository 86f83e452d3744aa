"""The edge graph: counts, names, connectivity pruning (no model needed)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.circuits import CircuitError, CircuitGraph


def test_embedded_model_counts():
    """SmolLM2-135M: 30 layers, 9 query heads, 3 kv heads; k/v inputs per kv head."""
    g = CircuitGraph(30, 9, 3)
    assert g.n_nodes == 302  # input + 270 heads + 30 MLPs + logits
    assert g.n_receivers == 30 * (9 + 3 + 3 + 1) + 1 == 481
    # attention inputs of layer L read 1 + 10L senders; the MLP of L reads 10 + 10L; logits read all 301
    assert g.n_edges == sum(15 * (1 + 10 * L) + (10 + 10 * L) for L in range(30)) + 301 == 70651


def test_tiny_counts_and_names():
    g = CircuitGraph(3, 4, 2)
    assert g.n_edges == 190 and len(g.edge_names) == 190 and len(set(g.edge_names)) == 190
    assert "input->a0.h3<q>" in g.edge_names and "a0.h1->a1.kv1<v>" in g.edge_names
    assert "a0.h0->m0" in g.edge_names and "m2->logits" in g.edge_names
    assert "a1.h0->a1.h2<q>" not in g.edge_names  # same layer: not upstream
    assert "m1->a1.kv0<k>" not in g.edge_names  # an MLP is after its layer's attention
    with pytest.raises(CircuitError, match="not in this graph"):
        g.edge_ids(["a1.h0->a1.h2<q>"])


def test_prune_keeps_only_input_to_logits_paths():
    g = CircuitGraph(3, 4, 2)
    keep = ["input->a0.h1<q>", "a0.h1->m1", "m1->logits"]
    dangling = ["a1.h2->logits", "input->m2"]  # a1.h2 reads nothing; m2 reaches no logits
    mask = g.mask_from_names(keep + dangling)
    assert g.names_from_mask(g.prune(mask)) == g.names_from_mask(g.mask_from_names(keep))


def test_kv_edges_reach_every_head_of_the_group():
    g = CircuitGraph(3, 4, 2)
    mask = g.mask_from_names(["input->a0.kv1<v>", "a0.h3->logits", "a0.h0->logits"])
    kept = g.names_from_mask(g.prune(mask))
    assert kept == ["input->a0.kv1<v>", "a0.h3->logits"]  # h3 reads kv1; h0 (kv0) has no input edge
    assert g.nodes_of(g.prune(mask)) == ["input", "a0.h3", "logits"]


def test_dense_round_trip():
    g = CircuitGraph(2, 4, 4)
    v = np.arange(g.n_edges, dtype=np.float64)
    assert np.array_equal(g.to_edges(g.to_dense(v)), v)
    assert g.to_dense(v)[~g.valid].sum() == 0
