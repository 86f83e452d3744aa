"""Multiple-comparison control over the claims tested in a run: Holm-Bonferroni and Benjamini-Hochberg.

Holm controls the family-wise error rate (the chance that *any* kept finding is false), which
suits a findings branch readers take at face value; Benjamini-Hochberg controls the expected
share of false findings among those kept and keeps more when many claims are real.

The ratchet decides one claim at a time over the claims tested *so far* and never re-judges an
earlier one, so early claims face a smaller family than late ones. ``planned_tests`` pads the
family with p = 1 up to a declared budget: Holm's adjusted p-values only grow when other p-values
grow, so a claim kept against the padded family is also kept by Holm over the whole run, and the
run-wide family-wise error rate stays at alpha. (For BH the padding is conservative but is not a
formal online-FDR guarantee.) Re-running ``adjust_p_values`` over every p-value at the end of a
run tells the report which kept findings survive the final family.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from orchestrator.analysis.errors import InvalidParameterError, InvalidPValueError
from orchestrator.analysis.inputs import ArrayLike, check_probability

Correction = Literal["holm", "bh"]
CORRECTION_LABELS: dict[str, str] = {"holm": "Holm", "bh": "BH"}


@dataclass(frozen=True)
class AdjustedPValues:
    """Adjusted p-values and reject flags, both in the order the p-values were given."""

    adjusted: tuple[float, ...]
    reject: tuple[bool, ...]  # adjusted p strictly below alpha, as the ratchet's keep rule states
    method: Correction
    alpha: float


def adjust_p_values(p_values: ArrayLike, *, method: Correction = "holm", alpha: float = 0.05) -> AdjustedPValues:
    """Adjust ``p_values`` for multiplicity with Holm or Benjamini-Hochberg and flag those below ``alpha``."""
    p = check_p_values(p_values)
    alpha = check_probability(alpha, name="alpha")
    if method == "holm":
        adjusted = holm(p)
    elif method == "bh":
        adjusted = benjamini_hochberg(p)
    else:
        raise InvalidParameterError(f"correction must be 'holm' or 'bh', got {method!r}")
    return AdjustedPValues(
        adjusted=tuple(float(v) for v in adjusted),
        reject=tuple(bool(v < alpha) for v in adjusted),
        method=method,
        alpha=alpha,
    )


def holm(p_values: ArrayLike) -> np.ndarray:
    """Holm step-down adjusted p-values: running max of (m - rank + 1) * p over ascending p, capped at 1."""
    p = check_p_values(p_values)
    m = p.size
    if m == 0:
        return p
    order = np.argsort(p, kind="stable")
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(stepped, 1.0)
    return out


def benjamini_hochberg(p_values: ArrayLike) -> np.ndarray:
    """BH step-up adjusted p-values: running min, from the largest p down, of m * p / rank, capped at 1."""
    p = check_p_values(p_values)
    m = p.size
    if m == 0:
        return p
    order = np.argsort(p, kind="stable")
    scaled = m * p[order] / np.arange(1, m + 1)
    stepped = np.minimum.accumulate(scaled[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(stepped, 1.0)
    return out


def check_p_values(p_values: ArrayLike) -> np.ndarray:
    """p-values as a float vector, each a finite number in [0, 1]."""
    raw = np.asarray(p_values)
    if raw.size == 0:
        return np.empty(0, dtype=np.float64)
    if raw.dtype.kind not in "biuf" or raw.ndim != 1:
        raise InvalidPValueError(f"p-values must be a flat list of numbers, got dtype {raw.dtype} shape {raw.shape}")
    p = raw.astype(np.float64)
    bad = np.flatnonzero(~(np.isfinite(p) & (p >= 0.0) & (p <= 1.0)))
    if bad.size:
        first = int(bad[0])
        raise InvalidPValueError(
            f"{bad.size} p-value(s) outside [0, 1] or non-finite (first at index {first}: {p[first]!r}); "
            "pass the raw p-values of the claims tested earlier in the run"
        )
    return p
