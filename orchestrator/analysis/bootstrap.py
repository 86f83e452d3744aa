"""Seeded, vectorised bootstrap confidence intervals (percentile and BCa), numpy only.

Resamples are drawn as one index matrix per chunk and reduced with a vectorised statistic, so the
cost is a few array operations rather than a Python loop over resamples.
"""

from __future__ import annotations

from collections.abc import Callable
from statistics import NormalDist
from typing import Any, Literal

import numpy as np

from orchestrator.analysis.errors import InvalidParameterError, NonFiniteInputError
from orchestrator.analysis.inputs import ArrayLike, as_finite_1d, check_count, check_probability, check_seed

CIMethod = Literal["percentile", "bca"]
Statistic = Callable[..., Any]
"""A reduction called as ``statistic(array, axis=-1)`` returning one value per row (np.mean, np.median)."""

MIN_RESAMPLES = 1000
# Cap on the elements of one resample matrix (~32 MB of float64); larger jobs are done in chunks.
_CHUNK_ELEMENTS = 4_000_000
_NORMAL = NormalDist()


def bootstrap_ci(
    values: ArrayLike,
    *,
    n_resamples: int = MIN_RESAMPLES,
    confidence: float = 0.95,
    seed: int,
    statistic: Statistic = np.mean,
    method: CIMethod = "percentile",
) -> tuple[float, float, float]:
    """Return ``(estimate, low, high)``: ``statistic(values)`` and its two-sided bootstrap CI.

    ``method="bca"`` (bias-corrected and accelerated) corrects the percentile interval for bias
    and skew, which matters for small samples of skewed per-pair effects. At least 2 values are
    required (one pair has no spread to resample); identical values give the degenerate
    interval ``(v, v, v)``, the bootstrap's honest answer.
    """
    x = as_finite_1d(values, name="values", min_size=2)
    n_resamples = check_count(n_resamples, name="n_resamples", minimum=MIN_RESAMPLES)
    confidence = check_probability(confidence, name="confidence")
    if method not in ("percentile", "bca"):
        raise InvalidParameterError(f"method must be 'percentile' or 'bca', got {method!r}")
    rng = np.random.default_rng(check_seed(seed))

    estimate = float(_apply(statistic, x[None, :])[0])
    if not np.isfinite(estimate):
        raise NonFiniteInputError(f"the statistic of values is {estimate}; use a statistic defined on these values")
    boot = bootstrap_distribution(x, statistic=statistic, n_resamples=n_resamples, rng=rng)
    if boot.min() == boot.max():
        # No spread among resamples (identical values, or a statistic blind to the differences).
        value = float(boot[0])
        return estimate, min(estimate, value), max(estimate, value)

    tail = (1.0 - confidence) / 2.0
    if method == "percentile":
        levels = np.array([tail, 1.0 - tail])
    else:
        levels = _bca_levels(x, boot, estimate, statistic=statistic, tail=tail)
    low, high = np.quantile(boot, levels)
    return estimate, float(low), float(high)


def bootstrap_distribution(
    x: np.ndarray, *, statistic: Statistic, n_resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """``n_resamples`` values of ``statistic`` over resamples of ``x`` with replacement."""
    n = x.size
    rows = max(1, _CHUNK_ELEMENTS // n)
    out = np.empty(n_resamples, dtype=np.float64)
    for start in range(0, n_resamples, rows):  # chunks of many resamples, not one resample each
        stop = min(start + rows, n_resamples)
        idx = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = _apply(statistic, x[idx])
    if not np.all(np.isfinite(out)):
        raise NonFiniteInputError("the statistic returned NaN/inf on some resamples; use a statistic defined on every resample")
    return out


def jackknife_acceleration(x: np.ndarray, *, statistic: Statistic = np.mean) -> float:
    """BCa acceleration from leave-one-out values: the skewness of the statistic's influence.

    For the mean this equals sum(d^3) / (6 * sum(d^2)^1.5) with d = x - mean(x).
    """
    n = x.size
    rows = max(1, _CHUNK_ELEMENTS // max(n - 1, 1))
    jack = np.empty(n, dtype=np.float64)
    keep = ~np.eye(n, dtype=bool)
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        loo = np.broadcast_to(x, (stop - start, n))[keep[start:stop]].reshape(stop - start, n - 1)
        jack[start:stop] = _apply(statistic, loo)
    d = jack.mean() - jack
    denom = float(np.sum(d**2)) ** 1.5
    if denom == 0.0:
        return 0.0
    return float(np.sum(d**3) / (6.0 * denom))


def _bca_levels(x: np.ndarray, boot: np.ndarray, estimate: float, *, statistic: Statistic, tail: float) -> np.ndarray:
    """Quantile levels of the BCa interval (Efron 1987), kept finite in degenerate corners."""
    b = boot.size
    # Mid-rank proportion below the estimate, clipped so the bias correction z0 stays finite.
    below = (np.count_nonzero(boot < estimate) + 0.5 * np.count_nonzero(boot == estimate)) / b
    z0 = _NORMAL.inv_cdf(min(max(below, 0.5 / b), 1.0 - 0.5 / b))
    a = jackknife_acceleration(x, statistic=statistic)
    levels = []
    for z in (_NORMAL.inv_cdf(tail), _NORMAL.inv_cdf(1.0 - tail)):
        shifted = z0 + z
        denom = 1.0 - a * shifted
        if denom <= 0.0:
            # The BCa map has passed its pole (extreme skew): use its limit, the end of the distribution.
            levels.append(1.0 if shifted > 0 else 0.0)
        else:
            levels.append(_NORMAL.cdf(z0 + shifted / denom))
    return np.array(sorted(levels))


def _apply(statistic: Statistic, rows: np.ndarray) -> np.ndarray:
    """Reduce each row with ``statistic(rows, axis=-1)``, checking it really is vectorised."""
    try:
        out = np.asarray(statistic(rows, axis=-1), dtype=np.float64)
    except TypeError as exc:
        raise InvalidParameterError(
            f"statistic must accept an array and axis=-1 like np.mean; calling it failed: {exc}"
        ) from exc
    if out.shape != (rows.shape[0],):
        raise InvalidParameterError(
            f"statistic must return one value per row when called with axis=-1 (expected shape "
            f"{(rows.shape[0],)}, got {out.shape}); wrap it, e.g. lambda a, axis: np.mean(a, axis=axis)"
        )
    return out
