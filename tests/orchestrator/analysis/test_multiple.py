"""Holm and Benjamini-Hochberg against hand-computed and published examples."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.analysis import InvalidParameterError, InvalidPValueError, adjust_p_values, benjamini_hochberg, holm

# Benjamini & Hochberg (1995), section 4: 15 p-values; BH at q=0.05 rejects 4, Bonferroni-type (Holm) 3.
BH1995 = [0.0001, 0.0004, 0.0019, 0.0095, 0.0201, 0.0278, 0.0298, 0.0344, 0.0459, 0.3240, 0.4262, 0.5719, 0.6528, 0.7590, 1.000]


def test_holm_hand_computed_in_input_order() -> None:
    # sorted: .005*4=.02, .01*3=.03, .03*2=.06, .04*1=.04 -> running max .02 .03 .06 .06
    r = adjust_p_values([0.01, 0.04, 0.03, 0.005], method="holm", alpha=0.05)
    assert r.adjusted == pytest.approx((0.03, 0.06, 0.06, 0.02))
    assert r.reject == (True, False, False, True)


def test_bh_hand_computed_in_input_order() -> None:
    # sorted: .005*4/1=.02, .01*4/2=.02, .03*4/3=.04, .04*4/4=.04 -> running min from the top: same
    r = adjust_p_values([0.01, 0.04, 0.03, 0.005], method="bh", alpha=0.05)
    assert r.adjusted == pytest.approx((0.02, 0.04, 0.04, 0.02))
    assert r.reject == (True, True, True, True)


def test_published_bh1995_example_shuffled() -> None:
    order = np.random.default_rng(0).permutation(len(BH1995))
    p = np.array(BH1995)[order]
    bh = adjust_p_values(p, method="bh", alpha=0.05)
    ho = adjust_p_values(p, method="holm", alpha=0.05)
    smallest = set(np.argsort(p)[:4].tolist())
    assert {i for i, r in enumerate(bh.reject) if r} == smallest
    assert {i for i, r in enumerate(ho.reject) if r} == set(np.argsort(p)[:3].tolist())
    # hand-computed BH values of the four smallest: 15p/i = .0015, .003, .0095, .035625
    assert sorted(bh.adjusted)[:4] == pytest.approx([0.0015, 0.003, 0.0095, 0.035625])
    # the fifth is the running min of 15*.0201/5=.0603 and later values -> .0603; sixth .0695 -> .063857
    assert sorted(bh.adjusted)[4:6] == pytest.approx([0.0603, 15 * 0.0298 / 7])
    assert sorted(ho.adjusted)[:4] == pytest.approx([0.0015, 0.0056, 0.0247, 0.114])


def test_caps_at_one_and_ties_get_equal_values() -> None:
    assert holm([0.5, 0.6]).tolist() == pytest.approx([1.0, 1.0])
    assert benjamini_hochberg([0.5, 0.6]).tolist() == pytest.approx([0.6, 0.6])
    assert holm([0.01, 0.01, 0.2]).tolist() == pytest.approx([0.03, 0.03, 0.2])
    assert benjamini_hochberg([0.01, 0.01, 0.2]).tolist() == pytest.approx([0.015, 0.015, 0.2])


def test_reject_is_strictly_below_alpha() -> None:
    assert adjust_p_values([0.05], method="holm", alpha=0.05).reject == (False,)
    assert adjust_p_values([0.0499], method="bh", alpha=0.05).reject == (True,)


def test_single_and_empty_families() -> None:
    assert adjust_p_values([0.02], method="holm").adjusted == (0.02,)
    empty = adjust_p_values([], method="bh")
    assert empty.adjusted == () and empty.reject == ()


def test_reject_flags_match_the_step_procedures_on_random_families() -> None:
    rng = np.random.default_rng(9)
    for _ in range(200):
        m = int(rng.integers(1, 12))
        p = np.where(rng.random(m) < 0.5, rng.random(m) * 0.02, rng.random(m))
        alpha = 0.05
        s = np.sort(p)
        # Holm step-down: reject the k smallest while p_(j) < alpha / (m - j + 1) for all j <= k.
        k = 0
        while k < m and s[k] < alpha / (m - k):
            k += 1
        holm_expected = p < s[k] if k < m else np.ones(m, bool)
        # BH step-up: reject the k smallest, k the largest index with p_(k) < k * alpha / m.
        below = np.flatnonzero(s < np.arange(1, m + 1) * alpha / m)
        bh_expected = p <= s[below[-1]] if below.size else np.zeros(m, bool)
        assert adjust_p_values(p, method="holm", alpha=alpha).reject == tuple(holm_expected)
        assert adjust_p_values(p, method="bh", alpha=alpha).reject == tuple(bh_expected)
        assert np.all(holm(p) >= benjamini_hochberg(p) - 1e-15)
        assert np.all(holm(p) <= np.minimum(1, m * p) + 1e-15)


@pytest.mark.parametrize("bad", [[0.1, 1.2], [-0.01], [np.nan], [0.1, np.inf]])
def test_invalid_p_values_raise(bad: list[float]) -> None:
    with pytest.raises(InvalidPValueError, match=r"outside \[0, 1\]"):
        adjust_p_values(bad, method="holm")


def test_invalid_settings_raise() -> None:
    with pytest.raises(InvalidParameterError, match="holm"):
        adjust_p_values([0.1], method="bonferroni")  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match="alpha"):
        adjust_p_values([0.1], method="holm", alpha=1.5)


def test_holm_against_a_padded_family_never_keeps_what_the_final_family_rejects() -> None:
    # The guarantee behind decide(planned_tests=...): deciding claim k against p_1..p_k padded with
    # 1s up to the budget is never more lenient than Holm over the whole run.
    rng = np.random.default_rng(0)
    for _ in range(300):
        m = int(rng.integers(2, 12))
        p = np.where(rng.random(m) < 0.4, rng.random(m) * 0.01, rng.random(m))
        final = holm(p)
        for k in range(m):
            padded = holm(np.concatenate([p[: k + 1], np.ones(m - k - 1)]))
            assert padded[k] >= final[k] - 1e-15
