"""decide(): keep/reject on clear cases, the deciding figure in the reason, determinism, edge cases."""

from __future__ import annotations

import json

import numpy as np
import pytest

from orchestrator.analysis import (
    InsufficientDataError,
    InvalidParameterError,
    InvalidPValueError,
    NonFiniteInputError,
    Verdict,
    adjust_p_values,
    decide,
)

RNG = np.random.default_rng(42)
STRONG = RNG.normal(0.8, 0.15, size=12)
NULL = RNG.normal(0.01, 0.03, size=40)
BASE = dict(min_effect=0.1, alpha=0.05, prior_p_values=[], correction="holm", seed=0)


def run(effects, null=NULL, **overrides) -> Verdict:
    return decide(effects, null, **{"claim_direction": "increase", **BASE, **overrides})


def test_clear_true_effect_is_kept_with_a_readable_reason() -> None:
    v = run(STRONG, prior_p_values=[0.3, 0.001, 0.04])
    assert v.kept and v.ci_clears_min_effect and v.significant
    assert v.ci_low > 0.1 and v.effect == pytest.approx(STRONG.mean())
    assert v.n_pairs == 12 and v.n_null == 40 and v.n_tests == 4
    assert v.z_vs_noise == pytest.approx((v.effect - NULL.mean()) / NULL.std(ddof=1))
    assert v.reason.startswith("kept: CI lower bound")
    for fragment in ("12 held-out pairs", "noise floor", "Holm-adjusted", "< alpha 0.05", "over 4 claim(s)"):
        assert fragment in v.reason


def test_no_effect_is_not_kept() -> None:
    null_like = np.random.default_rng(1).normal(0.01, 0.03, size=12)
    v = run(null_like)
    assert not v.kept and not v.ci_clears_min_effect and not v.significant
    assert v.reason.startswith("not kept: CI lower bound") and "is not below alpha" in v.reason


def test_significant_but_smaller_than_min_effect_is_not_kept_and_reason_names_the_ci() -> None:
    small = np.random.default_rng(2).normal(0.06, 0.01, size=16)
    v = run(small)
    assert v.significant and not v.ci_clears_min_effect and not v.kept
    assert v.reason.startswith("not kept: CI lower bound") and "does not exceed min_effect 0.1" in v.reason
    assert "adjusted p" not in v.reason.split(" — ")[0]


def test_correction_over_prior_claims_can_reject_and_reason_names_the_adjusted_p() -> None:
    effects = [0.5, 0.6, 0.55, 0.45]
    null = [0.0, 0.05, -0.05, 0.02, -0.02, 0.01]  # exact test: smallest p is 1 / C(10, 4) = 1/210
    alone = run(effects, null)
    assert alone.kept and alone.p_value == pytest.approx(1 / 210) and alone.exact_p
    crowded = run(effects, null, prior_p_values=[0.5] * 19)  # Holm: 20 * 1/210 = 0.095
    assert not crowded.kept and crowded.ci_clears_min_effect
    assert crowded.adjusted_p == pytest.approx(adjust_p_values([0.5] * 19 + [1 / 210], method="holm").adjusted[-1])
    assert crowded.reason.startswith("not kept: Holm-adjusted p")
    assert "smallest this test can give" in crowded.reason


def test_bh_is_less_strict_than_holm_on_the_same_family() -> None:
    prior = [0.001, 0.002, 0.003, 0.004]
    effects = np.random.default_rng(3).normal(0.4, 0.3, size=10)
    holm_v = run(effects, correction="holm", prior_p_values=prior)
    bh_v = run(effects, correction="bh", prior_p_values=prior)
    assert bh_v.adjusted_p <= holm_v.adjusted_p
    assert "BH-adjusted" in bh_v.reason


def test_decrease_direction() -> None:
    v = run(-STRONG, claim_direction="decrease")
    assert v.kept and v.ci_high < -0.1 and v.effect < 0
    assert "CI upper bound" in v.reason and "-min_effect -0.1" in v.reason
    wrong_way = run(STRONG, claim_direction="decrease")
    assert not wrong_way.kept and not wrong_way.significant and not wrong_way.ci_clears_min_effect


def test_null_interventions_that_move_the_metric_raise_the_bar() -> None:
    # Effects of 0.3 look large against 0 but not against null interventions that also give ~0.3.
    effects = np.random.default_rng(4).normal(0.3, 0.05, size=16)
    shifted_null = np.random.default_rng(5).normal(0.3, 0.05, size=60)
    v = run(effects, shifted_null)
    assert v.ci_clears_min_effect and not v.significant and not v.kept


def test_deterministic_given_seed_and_json_round_trip() -> None:
    a = run(STRONG, seed=123)
    assert a == run(STRONG, seed=123)
    assert a.ci_low != run(STRONG, seed=124).ci_low
    assert Verdict.model_validate(json.loads(a.model_dump_json())) == a


def test_identical_effects_and_zero_spread_null() -> None:
    v = run([0.5] * 6, [0.0] * 5)
    assert v.kept and v.ci_low == v.ci_high == 0.5
    assert v.noise_floor_std == 0.0 and v.z_vs_noise is None
    assert "all 6 effects are identical" in v.reason and "no spread" in v.reason
    json.loads(v.model_dump_json())


def test_planned_tests_pad_the_family() -> None:
    v = run(STRONG, prior_p_values=[0.5], planned_tests=50)
    assert v.n_tests == 50 and v.adjusted_p == pytest.approx(min(1.0, 50 * v.p_value))
    with pytest.raises(InvalidParameterError, match="planned_tests"):
        run(STRONG, prior_p_values=[0.5, 0.5], planned_tests=2)


def test_input_errors_are_specific() -> None:
    with pytest.raises(NonFiniteInputError, match="effects"):
        run([0.5, float("nan"), 0.4])
    with pytest.raises(NonFiniteInputError, match="null_samples"):
        run(STRONG, [0.0, float("inf")])
    with pytest.raises(InsufficientDataError, match="effects"):
        run([0.9])
    with pytest.raises(InsufficientDataError, match="null_samples"):
        run(STRONG, [0.0])
    with pytest.raises(InvalidPValueError):
        run(STRONG, prior_p_values=[1.5])
    with pytest.raises(InvalidParameterError, match="min_effect"):
        run(STRONG, min_effect=-0.1)
    with pytest.raises(InvalidParameterError, match="correction"):
        run(STRONG, correction="bonferroni")
    with pytest.raises(InvalidParameterError, match="direction"):
        run(STRONG, claim_direction="up")


def test_missing_prior_p_values_is_an_error_not_an_empty_family() -> None:
    with pytest.raises(InvalidParameterError, match="pass \\[\\]"):
        run(STRONG, prior_p_values=None)
