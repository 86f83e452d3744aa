"""Selecting circuits from scores: top-k + pruning, greedy growth, random baseline (no model needed)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.circuits import CircuitError, CircuitGraph, greedy_order, random_scores, topk_mask
from engine.circuits.selection import circuit_from_mask, greedy_masks, importance, topk_masks

G = CircuitGraph(3, 4, 2)


def test_topk_ranks_by_abs_or_by_support():
    scores = np.zeros(G.n_edges)
    a, b = G.edge_ids(["a2.h0->logits", "m2->logits"])
    scores[a], scores[b] = 3.0, -5.0
    assert G.names_from_mask(topk_mask(G, scores, 1, prune=False)) == ["m2->logits"]
    # signed ranking prefers edges whose patching lowers the metric (negative scores)
    assert importance(scores, absolute=False)[b] > importance(scores, absolute=False)[a]
    assert G.names_from_mask(topk_mask(G, -scores, 1, absolute=False, prune=False)) == ["a2.h0->logits"]
    with pytest.raises(CircuitError, match="outside"):
        topk_mask(G, scores, G.n_edges + 1)


def test_ladder_matches_single_selections():
    s = random_scores(G, seed=3)
    sizes = [1, 5, 20, 190]
    ladder = topk_masks(G, s, sizes)
    for k, row in zip(sizes, ladder):
        assert np.array_equal(row, topk_mask(G, s, k))
    assert ladder[-1].all()  # every edge: nothing to prune


def test_greedy_prefixes_reach_the_logits():
    s = random_scores(G, seed=1)
    order = greedy_order(G, s)
    assert sorted(order.tolist()) == list(range(G.n_edges))
    _, r_idx = G.edge_index
    assert r_idx[order[0]] == G.logits_receiver
    for k in (1, 3, 10, 40):
        mask = np.zeros(G.n_edges, bool)
        mask[order[:k]] = True
        # grown from the logits: every chosen edge's receiver node is already in the circuit, so pruning
        # can only drop edges that never reach the input
        assert (greedy_masks(G, s, [k])[0] <= mask).all()


def test_random_scores_are_seeded():
    assert np.array_equal(random_scores(G, 7), random_scores(G, 7))
    assert not np.array_equal(random_scores(G, 7), random_scores(G, 8))


def test_drawing_an_edge_subset_lists_every_receiver_as_a_node():
    """The report draws the heaviest edges of a large circuit: receivers that send nothing in that subset
    (a q input of a head, a kv input of a group) must still be nodes (a run's report crashed on this)."""
    s = random_scores(G, 3)
    mask = topk_mask(G, s, 60)
    full = circuit_from_mask(G, mask, model="tiny", method="random", scores=s, requested_size=60)
    into_heads = [i for i, e in enumerate(full.edges) if "<" in e]
    assert into_heads
    subset = type(full)(method=full.method, model=full.model, graph=full.graph,
                        edges=[full.edges[i] for i in into_heads[:3]], edge_scores=[full.edge_scores[i] for i in into_heads[:3]])
    drawn = subset.to_graph()
    ids = {n["id"] for n in drawn["nodes"]}
    assert ids >= {e["source"] for e in drawn["edges"]} | {e["target"] for e in drawn["edges"]}


def test_circuit_result_round_trip():
    s = random_scores(G, 0)
    mask = topk_mask(G, s, 120)
    assert mask.sum() > 3
    c = circuit_from_mask(G, mask, model="tiny", method="random", scores=s, requested_size=120)
    again = type(c).model_validate_json(c.model_dump_json())
    assert again.edges == c.edges and np.array_equal(again.mask(), mask)
    assert abs(c.edge_scores[0]) >= abs(c.edge_scores[-1])
    drawn = c.to_graph()
    ids = {n["id"] for n in drawn["nodes"]}
    assert ids >= {e["source"] for e in drawn["edges"]} and ids >= {e["target"] for e in drawn["edges"]}
    assert {n["id"]: n["layer"] for n in drawn["nodes"]}.get("m1", 1.5) == 1.5
    assert "random circuit on tiny" in c.summary() and len(c.top(3)) == 3
