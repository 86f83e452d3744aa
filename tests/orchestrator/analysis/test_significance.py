"""Permutation and sign-flip tests: exact values vs enumeration, +1 correction, determinism, calibration."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from orchestrator.analysis import (
    InsufficientDataError,
    InvalidParameterError,
    NonFiniteInputError,
    permutation_test,
    sign_flip_test,
)


def brute_force_permutation_p(effects: list[float], null: list[float], sign: float) -> float:
    """Share of all splits of the pooled values whose mean difference is at least the observed one."""
    pooled = effects + null
    n = len(effects)
    observed = sign * (np.mean(effects) - np.mean(null))
    hits = total = 0
    for chosen in itertools.combinations(range(len(pooled)), n):
        a = [pooled[i] for i in chosen]
        b = [pooled[i] for i in range(len(pooled)) if i not in chosen]
        hits += sign * (np.mean(a) - np.mean(b)) >= observed - 1e-12
        total += 1
    return hits / total


def brute_force_sign_flip_p(effects: list[float], threshold: float, sign: float) -> float:
    y = [sign * v - threshold for v in effects]
    observed = np.mean(y)
    flips = list(itertools.product((1, -1), repeat=len(y)))
    return sum(np.mean([s * v for s, v in zip(f, y, strict=True)]) >= observed - 1e-12 for f in flips) / len(flips)


EFFECTS = [1.2, 0.7, 2.1, 0.4]
NULL = [0.1, -0.3, 0.5, 0.9, 0.0, 0.6]


@pytest.mark.parametrize("direction, sign", [("increase", 1.0), ("decrease", -1.0)])
def test_exact_permutation_p_equals_enumeration(direction: str, sign: float) -> None:
    r = permutation_test(EFFECTS, NULL, direction=direction, seed=0)
    assert r.exact and r.n_rearrangements == 210
    assert r.p_value == pytest.approx(brute_force_permutation_p(EFFECTS, NULL, sign), abs=1e-12)
    assert r.observed == pytest.approx(sign * (np.mean(EFFECTS) - np.mean(NULL)))


def test_monte_carlo_permutation_p_agrees_with_exact() -> None:
    exact = brute_force_permutation_p(EFFECTS, NULL, 1.0)
    r = permutation_test(EFFECTS, NULL, direction="increase", n_permutations=20_000, seed=1, exact=False)
    assert not r.exact
    assert abs(r.p_value - exact) < 4 * np.sqrt(exact * (1 - exact) / 20_000) + 1e-4


def test_plus_one_correction_keeps_p_above_zero() -> None:
    rng = np.random.default_rng(0)
    r = permutation_test(rng.normal(5, 0.1, 30), rng.normal(0, 0.1, 100), direction="increase", seed=2)
    assert not r.exact
    assert r.p_value == pytest.approx(1 / 10_001) == r.min_attainable_p


def test_permutation_is_deterministic_given_seed() -> None:
    rng = np.random.default_rng(1)
    e, z = rng.normal(0.2, 1, 20), rng.normal(0, 1, 50)
    a = permutation_test(e, z, direction="increase", seed=7)
    assert a == permutation_test(e, z, direction="increase", seed=7)
    assert a.p_value != permutation_test(e, z, direction="increase", seed=8).p_value


def test_direction_mirrors() -> None:
    rng = np.random.default_rng(4)
    e, z = rng.normal(0.3, 1, 16), rng.normal(0, 1, 40)
    up = permutation_test(e, z, direction="increase", seed=3)
    down = permutation_test(-e, -z, direction="decrease", seed=3)
    assert up.p_value == down.p_value


def test_all_equal_values_give_p_one_and_separated_constants_the_minimum() -> None:
    assert permutation_test([0.3] * 5, [0.3] * 9, direction="increase", seed=0).p_value == 1.0
    r = permutation_test([1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0], direction="increase", seed=0)
    assert r.exact and r.p_value == pytest.approx(1 / 35)
    assert permutation_test([1.0, 1.0, 1.0], [0.0] * 4, direction="decrease", seed=0).p_value == 1.0


def test_single_effect_is_a_valid_rank_test() -> None:
    r = permutation_test([3.0], [0.0, 1.0, 2.0, 4.0], direction="increase", seed=0)
    assert r.exact and r.p_value == pytest.approx(2 / 5)


def test_permutation_calibration_under_the_null() -> None:
    rng = np.random.default_rng(12345)
    rejections = 0
    for draw in range(400):
        pooled = rng.normal(size=32)
        r = permutation_test(pooled[:12], pooled[12:], direction="increase", n_permutations=1000, seed=draw)
        rejections += r.p_value < 0.05
    assert 0.02 <= rejections / 400 <= 0.08


def test_permutation_input_errors() -> None:
    with pytest.raises(NonFiniteInputError, match="null_samples"):
        permutation_test([1.0, 2.0], [0.0, np.nan], direction="increase", seed=0)
    with pytest.raises(InsufficientDataError, match="effects"):
        permutation_test([], [0.0, 1.0], direction="increase", seed=0)
    with pytest.raises(InvalidParameterError, match="direction"):
        permutation_test([1.0], [0.0], direction="up", seed=0)  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match=">= 1000"):
        permutation_test([1.0], [0.0], direction="increase", n_permutations=10, seed=0)
    with pytest.raises(InvalidParameterError, match="exact enumeration"):
        permutation_test(np.zeros(30), np.zeros(30), direction="increase", seed=0, exact=True)


@pytest.mark.parametrize(
    "effects, threshold, direction, sign",
    [
        ([0.9, 1.3, -0.2, 0.8, 1.1, 0.4], 0.0, "increase", 1.0),
        ([0.9, 1.3, -0.2, 0.8, 1.1, 0.4], 0.5, "increase", 1.0),
        ([-0.9, -1.3, 0.2, -0.8, -1.1], 0.3, "decrease", -1.0),
    ],
)
def test_exact_sign_flip_p_equals_enumeration(effects: list[float], threshold: float, direction: str, sign: float) -> None:
    r = sign_flip_test(effects, threshold=threshold, direction=direction, seed=0)
    assert r.exact and r.n_rearrangements == 2 ** len(effects)
    assert r.p_value == pytest.approx(brute_force_sign_flip_p(effects, threshold, sign), abs=1e-12)


def test_monte_carlo_sign_flip_agrees_with_exact() -> None:
    e = [0.9, 1.3, -0.2, 0.8, 1.1, 0.4, -0.5, 0.7, 0.2, 0.6]
    exact = brute_force_sign_flip_p(e, 0.2, 1.0)
    r = sign_flip_test(e, threshold=0.2, direction="increase", n_resamples=20_000, seed=5, exact=False)
    assert abs(r.p_value - exact) < 4 * np.sqrt(exact * (1 - exact) / 20_000) + 1e-4


def test_sign_flip_edge_cases() -> None:
    assert sign_flip_test([0.5] * 6, threshold=0.1, direction="increase", seed=0).p_value == pytest.approx(1 / 64)
    assert sign_flip_test([0.1] * 6, threshold=0.1, direction="increase", seed=0).p_value == 1.0
    assert sign_flip_test([2.0], direction="increase", seed=0).p_value == 0.5
    big = sign_flip_test(np.full(40, 1.0), direction="increase", seed=0)
    assert not big.exact and big.p_value == pytest.approx(1 / 10_001)
    with pytest.raises(NonFiniteInputError):
        sign_flip_test([1.0, np.inf], direction="increase", seed=0)
    with pytest.raises(InvalidParameterError, match="threshold"):
        sign_flip_test([1.0, 2.0], threshold=float("nan"), direction="increase", seed=0)


def test_sign_flip_calibration_under_a_symmetric_null() -> None:
    rng = np.random.default_rng(777)
    rejections = 0
    for draw in range(400):
        e = 0.25 + rng.standard_t(5, size=16)  # symmetric about the threshold
        rejections += sign_flip_test(e, threshold=0.25, direction="increase", n_resamples=1000, seed=draw).p_value < 0.05
    assert 0.02 <= rejections / 400 <= 0.08
