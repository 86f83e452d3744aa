"""Batched activation patching equals one run_with_hooks per patch (reference.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.alignment import Alignment
from engine.errors import AlignmentError, MethodError
from engine.methods import PatchingResult, activation_patching
from tests.engine.methods.reference import reference_patching

TOL = 1e-4


@pytest.mark.parametrize("direction", ["denoise", "noise"])
@pytest.mark.parametrize("hook", ["resid_pre", "resid_post", "attn_out", "mlp_out", "z"])
def test_full_grid_equals_reference(tiny, tiny_pairs, hook, direction):
    clean, corrupted, correct, wrong = tiny_pairs
    fast = activation_patching(tiny, clean, corrupted, correct, wrong, hook=hook, direction=direction)
    ref, raw, _, _ = reference_patching(tiny, clean, corrupted, correct, wrong, hook=hook, direction=direction)
    assert fast.grid().shape == ref.shape
    np.testing.assert_allclose(fast.grid(), ref, atol=TOL)
    np.testing.assert_allclose(fast.raw, raw, atol=TOL)
    assert fast.rows_skipped > 0 or hook == "z"  # positions 0-1 are identical in both prompts


def test_per_head_by_position_equals_reference(tiny, tiny_pairs):
    clean, corrupted, correct, wrong = tiny_pairs
    fast = activation_patching(tiny, clean, corrupted, correct, wrong, hook="z", per_position=True)
    ref, *_ = reference_patching(tiny, clean, corrupted, correct, wrong, hook="z", per_position=True)
    assert fast.axes == ["layer", "position", "head"]
    np.testing.assert_allclose(fast.grid(), ref, atol=TOL)


@pytest.mark.parametrize("metric", ["prob_correct", "logprob_correct", "kl"])
def test_other_metrics_equal_reference(tiny, tiny_pairs, metric):
    clean, corrupted, correct, wrong = tiny_pairs
    fast = activation_patching(tiny, clean, corrupted, correct, wrong, metric=metric)
    ref, *_ = reference_patching(tiny, clean, corrupted, correct, wrong, metric=metric)
    np.testing.assert_allclose(fast.grid(), ref, atol=TOL)


def test_per_pair_normalisation_equals_reference(tiny, tiny_pairs):
    clean, corrupted, correct, wrong = tiny_pairs
    fast = activation_patching(tiny, clean, corrupted, correct, wrong, hook="attn_out", normalise_per_pair=True)
    ref, *_ = reference_patching(tiny, clean, corrupted, correct, wrong, hook="attn_out", per_pair=True)
    np.testing.assert_allclose(fast.grid(), ref, atol=TOL)
    assert "each pair" in fast.normalisation


def test_subsets_and_tiny_memory_budget_change_nothing(tiny, tiny_pairs):
    clean, corrupted, correct, wrong = tiny_pairs
    full = activation_patching(tiny, clean, corrupted, correct, wrong, hook="z", per_position=True)
    part = activation_patching(tiny, clean, corrupted, correct, wrong, hook="z", per_position=True,
                               layers=[2, 0], positions=[-1, 2], heads=[3], memory_budget_gb=1e-6)
    expected = full.grid()[np.ix_([2, 0], [5, 2], [3])]
    np.testing.assert_allclose(part.grid(), expected, atol=1e-5)
    assert part.labels[0] == ["L2", "L0"] and part.labels[2] == ["H3"]


def test_patching_all_positions_of_the_residual_recovers_clean(tiny, tiny_pairs):
    clean, corrupted, correct, wrong = tiny_pairs
    res = activation_patching(tiny, clean, corrupted, correct, wrong, per_position=False)
    np.testing.assert_allclose(res.grid(), 1.0, atol=TOL)


def test_different_lengths_with_alignment_equal_reference(tiny):
    clean = [[5, 9, 12, 7, 3], [8, 1, 2, 7, 3, 10]]
    corrupted = [[5, 20, 21, 22, 7, 3], [8, 30, 7, 3, 10]]
    # named positions: the subject's last token, the token after it, the final token
    al = Alignment(names=["subject_last", "next", "final"], clean=[[2, 3, 4], [2, 3, 5]], corrupted=[[3, 4, 5], [1, 2, 4]])
    for hook in ["resid_pre", "z"]:
        fast = activation_patching(tiny, clean, corrupted, [1, 2], [3, 4], hook=hook, alignment=al, per_position=True)
        ref, *_ = reference_patching(tiny, clean, corrupted, [1, 2], [3, 4], hook=hook, per_position=True,
                                     clean_pos=al.clean, corrupted_pos=al.corrupted)
        assert fast.labels[1] == ["subject_last", "next", "final"]
        np.testing.assert_allclose(fast.grid(), ref, atol=TOL)


def test_result_is_json_with_summary_and_top(tiny, tiny_pairs):
    clean, corrupted, correct, wrong = tiny_pairs
    res = activation_patching(tiny, clean, corrupted, correct, wrong, hook="z")
    again = PatchingResult.model_validate(json.loads(res.to_json()))
    assert again == res
    top = res.top(3)
    assert len(top) == 3 and all(isinstance(label, str) and isinstance(v, float) for label, v in top)
    assert top[0][0].startswith("L") and "H" in top[0][0]
    assert "activation_patching" in res.summary() and "z" in res.summary()


def test_clear_errors(tiny, tiny_pairs):
    clean, corrupted, correct, wrong = tiny_pairs
    with pytest.raises(AlignmentError, match="pair 0: clean 6 tokens, corrupted 5.*alignment"):
        activation_patching(tiny, clean, [c[:5] for c in corrupted], correct, wrong)
    with pytest.raises(MethodError, match="score the same"):
        activation_patching(tiny, clean, clean, correct, wrong)
    with pytest.raises(MethodError, match="cannot sweep hook"):
        activation_patching(tiny, clean, corrupted, correct, wrong, hook="mlp_post")
    with pytest.raises(MethodError, match="heads only apply"):
        activation_patching(tiny, clean, corrupted, correct, wrong, heads=[0])
    with pytest.raises(MethodError, match="layer 7 is out of range"):
        activation_patching(tiny, clean, corrupted, correct, wrong, layers=[7])
    with pytest.raises(MethodError, match="unknown direction"):
        activation_patching(tiny, clean, corrupted, correct, wrong, direction="sideways")


@pytest.mark.embedded
def test_embedded_subset_equals_reference(embedded, eiffel):
    clean, corrupted, correct, wrong = eiffel
    layers, positions = [0, 29], [2, 8]
    for hook in ["resid_pre", "attn_out"]:
        fast = activation_patching(embedded, clean, corrupted, correct, wrong, hook=hook, layers=layers, positions=positions)
        ref, *_ = reference_patching(embedded, clean.tolist(), corrupted.tolist(), [correct], [wrong], hook=hook,
                                     layers=layers, positions=positions)
        np.testing.assert_allclose(fast.grid(), ref, atol=TOL)
    # per-head rows join their layer after its attention: first, middle and last layer (last position only)
    fast = activation_patching(embedded, clean, corrupted, correct, wrong, hook="z", layers=[0, 23, 29], heads=[0, 4])
    ref, *_ = reference_patching(embedded, clean.tolist(), corrupted.tolist(), [correct], [wrong], hook="z",
                                 layers=[0, 23, 29], heads=[0, 4])
    np.testing.assert_allclose(fast.grid(), ref, atol=TOL)


@pytest.mark.embedded
def test_embedded_eiffel_resid_sweep(embedded, eiffel):
    """30 layers x 9 positions: layer 0 position 0 changes nothing; the final position recovers at the top."""
    res = activation_patching(embedded, *eiffel)
    grid = res.grid()
    assert grid.shape == (30, 9)
    assert abs(grid[0, 0]) < 1e-6
    assert grid[29, 8] > 0.75  # resid_pre of the last layer: its attention still reads corrupted keys
    post = activation_patching(embedded, *eiffel, hook="resid_post", layers=[29], positions=[8])
    assert abs(post.grid()[0, 0] - 1.0) < 1e-4  # the final residual itself: exactly the clean logits
