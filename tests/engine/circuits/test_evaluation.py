"""Faithfulness, MIB curves, growth to a target and bootstrap stability on the tiny model."""

from __future__ import annotations

import numpy as np
import pytest

from engine.circuits import (
    CircuitComparison, CircuitError, CircuitTask, bootstrap_jaccard, compare_methods, eap, eap_ig, faithfulness,
    graph_of, grow_to_faithfulness,
)
from engine.circuits.evaluation import areas


def test_full_and_empty_circuits_are_one_and_zero(tiny, tiny_task):
    g = graph_of(tiny)
    f = faithfulness(tiny, tiny_task, np.stack([np.ones(g.n_edges, bool), np.zeros(g.n_edges, bool)]))
    np.testing.assert_allclose(f, [1.0, 0.0], atol=1e-4)


def test_areas_follow_mib():
    x = [0.001, 0.01, 0.1, 1.0]
    under, from_1 = areas(x, [1.0, 1.0, 1.0, 1.0])
    assert under == pytest.approx(0.999) and from_1 == pytest.approx(0.0)
    under, from_1 = areas(x, [0.0, 0.0, 0.0, 1.0])
    assert under == pytest.approx(0.9 / 2) and from_1 == pytest.approx(0.009 + 0.09 + 0.9 / 2)


def test_compare_methods_batches_every_curve(tiny, tiny_task):
    s_ig = eap_ig(tiny, tiny_task, steps=4)
    cmp = compare_methods(tiny, tiny_task, {"eap-ig": s_ig, "eap": eap(tiny, tiny_task)}, percentages=(0.05, 0.2, 0.5, 1.0))
    assert [m.method for m in cmp.methods] == ["eap-ig", "eap", "random"]
    for m in cmp.methods:
        assert m.signed.faithfulness[-1] == pytest.approx(1.0, abs=1e-4)
        assert m.cpr == pytest.approx(m.signed.area_under) and m.cmd == pytest.approx(m.absolute.area_from_1)
        assert all(e <= r for e, r in zip(m.absolute.edges, m.absolute.requested_edges))
    # the batched ladder equals evaluating each circuit on its own
    g = graph_of(tiny)
    from engine.circuits.selection import topk_mask
    k = cmp.get("eap-ig").absolute.requested_edges[1]
    alone = faithfulness(tiny, tiny_task, topk_mask(g, s_ig.array(), k)[None])[0]
    assert alone == pytest.approx(cmp.get("eap-ig").absolute.faithfulness[1], abs=1e-4)
    again = CircuitComparison.model_validate_json(cmp.model_dump_json())
    assert again.top(1)[0][0] == cmp.top(1)[0][0] and "CPR" in cmp.summary()


def test_grow_reaches_the_target(tiny, tiny_task):
    s = eap_ig(tiny, tiny_task, steps=4)
    c = grow_to_faithfulness(tiny, tiny_task, s, target=0.8)
    assert c.faithfulness >= 0.8 and 0 < c.n_edges <= graph_of(tiny).n_edges
    check = faithfulness(tiny, tiny_task, c.mask()[None])[0]
    assert check == pytest.approx(c.faithfulness, abs=1e-4)


def test_undefined_faithfulness_is_explained(tiny, tiny_task):
    same = CircuitTask.from_tokens(tiny_task.clean, tiny_task.clean, tiny_task.correct_ids, tiny_task.wrong_ids)
    with pytest.raises(CircuitError, match="faithfulness is undefined"):
        faithfulness(tiny, same, np.ones((1, graph_of(tiny).n_edges), bool))


def test_bootstrap_jaccard(tiny, tiny_task):
    s = eap_ig(tiny, tiny_task, steps=3)
    stab = bootstrap_jaccard(s, size=20, n_resamples=100, seed=1)
    assert 0.0 <= stab.jaccard_p05 <= stab.jaccard_median <= stab.jaccard_p95 <= 1.0
    assert stab == bootstrap_jaccard(s, size=20, n_resamples=100, seed=1)  # seeded
    with pytest.raises(CircuitError, match="at least 100"):
        bootstrap_jaccard(s, size=20, n_resamples=10)
    # identical pairs: every resample selects the same circuit
    rep = tiny_task.subset([0, 0, 0, 0])
    assert bootstrap_jaccard(eap(tiny, rep), size=20).jaccard_mean == pytest.approx(1.0)


def test_selected_and_grown_circuits_carry_their_stability(tiny, tiny_task):
    from engine.circuits import select_circuit

    s = eap_ig(tiny, tiny_task, steps=2)
    c = select_circuit(s, size=30)
    assert c.stability is not None and c.stability.n_resamples == 100 and c.stability.size == 30
    assert select_circuit(s, size=30, stability=None).stability is None
    assert grow_to_faithfulness(tiny, tiny_task, s, target=0.5).stability is not None


def test_bootstrap_by_rerun_compares_each_resample_with_the_reference():
    from engine.circuits.stability import bootstrap_by_rerun

    reference = np.array([True, True, False, False])
    # a "method" that finds edge 2 too whenever pair 0 is missing from the resample
    stab = bootstrap_by_rerun(lambda rows: np.array([True, True, 0 not in rows, False]), 5, reference, seed=3)
    assert stab.n_resamples == 100 and stab.size == 2
    assert set(np.round([stab.jaccard_p05, stab.jaccard_p95], 3)) <= {0.667, 1.0}
