"""Bootstrap CIs: determinism, edge cases, brute-force distribution, BCa pieces, coverage."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from orchestrator.analysis import (
    InsufficientDataError,
    InvalidParameterError,
    NonFiniteInputError,
    bootstrap_ci,
    jackknife_acceleration,
)
from orchestrator.analysis.bootstrap import bootstrap_distribution


def test_estimate_is_the_statistic_and_interval_brackets_it() -> None:
    x = [0.2, 0.5, 0.9, 1.4, 0.7, 0.3]
    for method in ("percentile", "bca"):
        est, low, high = bootstrap_ci(x, seed=0, method=method)
        assert est == pytest.approx(np.mean(x))
        assert low < est < high


def test_same_seed_same_interval_other_seed_differs() -> None:
    x = np.random.default_rng(3).normal(size=20)
    for method in ("percentile", "bca"):
        a = bootstrap_ci(x, seed=11, method=method)
        assert a == bootstrap_ci(x, seed=11, method=method)
        assert a != bootstrap_ci(x, seed=12, method=method)


def test_median_statistic_is_vectorised() -> None:
    x = np.arange(15, dtype=float)
    est, low, high = bootstrap_ci(x, seed=0, statistic=np.median, method="bca")
    assert est == 7.0 and low <= est <= high


def test_non_vectorised_statistic_is_refused_with_a_hint() -> None:
    with pytest.raises(InvalidParameterError, match="one value per row"):
        bootstrap_ci([1.0, 2.0, 3.0], seed=0, statistic=lambda a, axis: float(np.mean(a)))
    with pytest.raises(InvalidParameterError, match="axis=-1"):
        bootstrap_ci([1.0, 2.0, 3.0], seed=0, statistic=lambda a: np.mean(a))


def test_large_sample_percentile_matches_normal_theory() -> None:
    x = np.random.default_rng(5).normal(2.0, 1.5, size=400)
    est, low, high = bootstrap_ci(x, n_resamples=4000, seed=1)
    half = 1.959964 * x.std(ddof=1) / np.sqrt(x.size)
    assert low == pytest.approx(est - half, abs=0.15 * half)
    assert high == pytest.approx(est + half, abs=0.15 * half)


def test_resampled_means_match_brute_force_enumeration() -> None:
    # Every ordered resample of 3 values is equally likely: 27 of them, enumerated by hand.
    x = np.array([0.0, 1.0, 5.0])
    exact = {}
    for r in itertools.product(x, repeat=3):
        exact[round(float(np.mean(r)), 9)] = exact.get(round(float(np.mean(r)), 9), 0) + 1 / 27
    boot = bootstrap_distribution(x, statistic=np.mean, n_resamples=60_000, rng=np.random.default_rng(0))
    values, counts = np.unique(np.round(boot, 9), return_counts=True)
    assert set(values.tolist()) == set(exact)
    for v, c in zip(values.tolist(), counts.tolist(), strict=True):
        se = np.sqrt(exact[v] * (1 - exact[v]) / boot.size)
        assert abs(c / boot.size - exact[v]) < 5 * se


def test_jackknife_acceleration_of_the_mean_matches_closed_form() -> None:
    x = np.random.default_rng(2).exponential(size=25)
    d = x - x.mean()
    assert jackknife_acceleration(x) == pytest.approx(np.sum(d**3) / (6 * np.sum(d**2) ** 1.5), rel=1e-9)
    assert jackknife_acceleration(np.ones(5)) == 0.0


def test_bca_is_near_percentile_for_symmetric_data_and_shifts_up_for_right_skew() -> None:
    sym = np.linspace(-1, 1, 21)
    p = bootstrap_ci(sym, n_resamples=4000, seed=0, method="percentile")
    b = bootstrap_ci(sym, n_resamples=4000, seed=0, method="bca")
    assert b[1] == pytest.approx(p[1], abs=0.03) and b[2] == pytest.approx(p[2], abs=0.03)
    skew = np.random.default_rng(1).lognormal(0, 1.2, size=25)
    p = bootstrap_ci(skew, n_resamples=4000, seed=0, method="percentile")
    b = bootstrap_ci(skew, n_resamples=4000, seed=0, method="bca")
    assert b[1] > p[1] and b[2] > p[2]


def test_all_equal_values_give_a_degenerate_interval() -> None:
    for method in ("percentile", "bca"):
        assert bootstrap_ci([0.4] * 7, seed=0, method=method) == pytest.approx((0.4, 0.4, 0.4))


@pytest.mark.parametrize("bad", [[1.0, np.nan, 2.0], [np.inf, 1.0], [1.0, -np.inf]])
def test_non_finite_values_raise(bad: list[float]) -> None:
    with pytest.raises(NonFiniteInputError, match="non-finite"):
        bootstrap_ci(bad, seed=0)


@pytest.mark.parametrize("values", [[], [1.0]])
def test_fewer_than_two_values_raise(values: list[float]) -> None:
    with pytest.raises(InsufficientDataError, match="at least 2"):
        bootstrap_ci(values, seed=0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_resamples": 999}, ">= 1000"),
        ({"confidence": 1.0}, "between 0 and 1"),
        ({"confidence": 0.0}, "between 0 and 1"),
        ({"method": "studentized"}, "percentile"),
        ({"seed": -1}, "non-negative"),
        ({"seed": 1.5}, "non-negative int"),
    ],
)
def test_invalid_settings_raise(kwargs: dict, match: str) -> None:
    args = {"seed": 0, **kwargs}
    with pytest.raises(InvalidParameterError, match=match):
        bootstrap_ci([1.0, 2.0, 3.0], **args)


def test_non_numeric_and_non_flat_inputs_raise() -> None:
    with pytest.raises(InvalidParameterError, match="real numbers"):
        bootstrap_ci(["1.0", "2.0"], seed=0)
    with pytest.raises(InvalidParameterError, match="one-dimensional"):
        bootstrap_ci([[1.0, 2.0], [3.0, 4.0]], seed=0)


def test_chunked_resampling_of_a_large_sample_is_deterministic() -> None:
    x = np.random.default_rng(0).normal(size=6000)  # > one chunk of resamples
    a = bootstrap_ci(x, seed=4, method="bca")
    assert a == bootstrap_ci(x, seed=4, method="bca")
    assert a[1] < 0.1 and a[2] > -0.1


@pytest.mark.parametrize("method", ["percentile", "bca"])
def test_coverage_of_the_mean_of_a_normal_sample(method: str) -> None:
    rng = np.random.default_rng(2024)
    covered = 0
    for sim in range(200):
        x = rng.normal(1.0, 2.0, size=30)
        _, low, high = bootstrap_ci(x, seed=sim, method=method)
        covered += low <= 1.0 <= high
    assert 0.90 <= covered / 200 <= 0.98
