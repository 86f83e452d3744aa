"""One-sided, seeded significance tests for "the intervention's per-pair effect beats the noise floor".

Two tests, both resampling-based (no normality assumption, which n = 8-64 pairs cannot check):

* ``permutation_test`` (two-sample): are the claim's per-pair effects larger, in the expected
  direction, than the effects of null interventions (resampled-prompt patches, random components
  of the same count)? This is the test ``decide`` uses: the null samples *are* the noise floor, and
  null interventions of the same shape often move the metric by themselves (ablating any five
  heads lowers the logit difference a little), which a one-sample test against 0 would miss.
* ``sign_flip_test`` (one-sample): is the mean effect beyond a threshold (the claim's
  ``min_effect``)? Exact if the effects are symmetric about the threshold under the null. Useful
  when no null samples exist; ``decide`` handles ``min_effect`` through the bootstrap CI instead.

Both enumerate every rearrangement when that is no more work than the Monte Carlo budget (exact
p-value); otherwise they draw seeded random rearrangements and use the +1 correction
``(1 + hits) / (1 + n)``, so p is never 0 and the test stays valid.
"""

from __future__ import annotations

import itertools
import numbers
from dataclasses import dataclass
from math import comb

import numpy as np

from orchestrator.analysis.errors import InvalidParameterError
from orchestrator.analysis.inputs import (
    ArrayLike,
    Direction,
    as_finite_1d,
    check_count,
    check_seed,
    direction_sign,
)

MIN_RESAMPLES = 1000
DEFAULT_RESAMPLES = 10_000
# Enumerating more rearrangements than this is refused even when asked for explicitly.
MAX_EXACT = 1_000_000
_CHUNK_ELEMENTS = 4_000_000
# Rearrangements whose statistic ties the observed one up to float rounding count as hits.
_TIE_RTOL = 1e-10


@dataclass(frozen=True)
class SignificanceResult:
    """A one-sided p-value with what it was computed from."""

    p_value: float
    observed: float  # the test statistic, oriented so that larger = more in the expected direction
    n_rearrangements: int  # enumerated (exact) or drawn (Monte Carlo)
    exact: bool
    min_attainable_p: float  # the smallest p this design and budget can give
    test: str


def permutation_test(
    effects: ArrayLike,
    null_samples: ArrayLike,
    *,
    direction: Direction,
    n_permutations: int = DEFAULT_RESAMPLES,
    seed: int,
    exact: bool | None = None,
) -> SignificanceResult:
    """One-sided two-sample permutation test of mean(effects) vs mean(null_samples).

    Statistic: sign * (mean(effects) - mean(null_samples)), sign = +1 for "increase", -1 for
    "decrease". H0: effects and null samples are exchangeable (the intervention is no different
    from a null one). ``exact=None`` enumerates all C(n+m, n) splits when there are at most
    ``n_permutations`` of them; ``exact=False`` forces Monte Carlo; ``exact=True`` forces
    enumeration (refused above a million splits). Identical pooled values give p = 1.
    """
    e = as_finite_1d(effects, name="effects", min_size=1)
    z = as_finite_1d(null_samples, name="null_samples", min_size=1)
    sign = direction_sign(direction)
    n_permutations = check_count(n_permutations, name="n_permutations", minimum=MIN_RESAMPLES)
    rng = np.random.default_rng(check_seed(seed))

    n, m = e.size, z.size
    pooled = np.concatenate([e, z])
    total = pooled.sum()

    def stat(group_sums: np.ndarray) -> np.ndarray:
        # Mean difference from the first group's sum: the pooled total is fixed under permutation.
        return sign * (group_sums / n - (total - group_sums) / m)

    observed = float(stat(np.array([e.sum()]))[0])
    tol = _TIE_RTOL * float(np.abs(pooled).max())
    splits = comb(n + m, n)
    use_exact = _resolve_exact(exact, splits, n_permutations)
    name = "two-sample permutation (difference in means, one-sided)"
    if use_exact:
        idx = np.fromiter(
            itertools.chain.from_iterable(itertools.combinations(range(n + m), n)), dtype=np.intp, count=splits * n
        ).reshape(splits, n)
        hits = np.count_nonzero(stat(pooled[idx].sum(axis=1)) >= observed - tol)
        return SignificanceResult(hits / splits, observed, splits, True, 1.0 / splits, name)

    hits = 0
    rows = max(1, _CHUNK_ELEMENTS // (n + m))
    for start in range(0, n_permutations, rows):  # chunks of many permutations, not one each
        block = np.tile(pooled, (min(rows, n_permutations - start), 1))
        rng.permuted(block, axis=1, out=block)
        hits += int(np.count_nonzero(stat(block[:, :n].sum(axis=1)) >= observed - tol))
    return SignificanceResult(
        (1 + hits) / (1 + n_permutations), observed, n_permutations, False, 1.0 / (1 + n_permutations), name
    )


def sign_flip_test(
    effects: ArrayLike,
    *,
    threshold: float = 0.0,
    direction: Direction,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int,
    exact: bool | None = None,
) -> SignificanceResult:
    """One-sided one-sample sign-flip test that the mean effect lies beyond ``threshold``.

    ``threshold`` is a magnitude in the expected direction, like Claim.min_effect: for
    "decrease" the alternative is mean(effects) < -threshold. H0: the deviations from the
    threshold are symmetric about 0, so each sign is equally likely. ``exact=None`` enumerates
    all 2**n sign patterns when there are at most ``n_resamples`` of them.
    """
    e = as_finite_1d(effects, name="effects", min_size=1)
    sign = direction_sign(direction)
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not np.isfinite(threshold):
        raise InvalidParameterError(f"threshold must be a finite number, got {threshold!r}")
    n_resamples = check_count(n_resamples, name="n_resamples", minimum=MIN_RESAMPLES)
    rng = np.random.default_rng(check_seed(seed))

    y = sign * e - float(threshold)
    n = y.size
    observed = float(y.mean())
    tol = _TIE_RTOL * max(float(np.abs(y).max()), float(np.abs(sign * e).max()))
    patterns = 2**n
    use_exact = _resolve_exact(exact, patterns, n_resamples)
    name = "one-sample sign-flip (mean vs threshold, one-sided)"
    if use_exact:
        bits = (np.arange(patterns, dtype=np.int64)[:, None] >> np.arange(n)) & 1
        hits = np.count_nonzero((1 - 2 * bits) @ y / n >= observed - tol)
        return SignificanceResult(hits / patterns, observed, patterns, True, 1.0 / patterns, name)

    hits = 0
    rows = max(1, _CHUNK_ELEMENTS // n)
    for start in range(0, n_resamples, rows):
        signs = 1 - 2 * rng.integers(0, 2, size=(min(rows, n_resamples - start), n), dtype=np.int8)
        hits += int(np.count_nonzero(signs @ y / n >= observed - tol))
    return SignificanceResult(
        (1 + hits) / (1 + n_resamples), observed, n_resamples, False, 1.0 / (1 + n_resamples), name
    )


def _resolve_exact(exact: bool | None, count: int, budget: int) -> bool:
    """Enumerate when asked, or when enumeration is no bigger than the Monte Carlo budget."""
    if exact is None:
        return count <= budget
    if exact and count > MAX_EXACT:
        raise InvalidParameterError(
            f"exact enumeration would visit {count} rearrangements (limit {MAX_EXACT}); use exact=None or False"
        )
    return bool(exact)
