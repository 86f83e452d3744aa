"""The noise floor: what null interventions do to the metric, and an effect measured in its units."""

from __future__ import annotations

import numbers

import numpy as np
from pydantic import BaseModel, ConfigDict

from orchestrator.analysis.errors import InvalidParameterError, NonFiniteInputError
from orchestrator.analysis.inputs import ArrayLike, as_finite_1d

# A spread this small relative to the values is treated as zero (float rounding of identical values).
_ZERO_SPREAD_RTOL = 1e-12


class NoiseFloor(BaseModel):
    """Summary of the null samples' per-pair effects (std is the sample std, ddof=1)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n: int
    mean: float
    std: float
    min: float
    p05: float
    p25: float
    p50: float
    p75: float
    p95: float
    max: float


def noise_floor(null_samples: ArrayLike) -> NoiseFloor:
    """Mean, sample std and percentiles of the null samples; two or more are needed for a spread."""
    z = as_finite_1d(null_samples, name="null_samples", min_size=2)
    q = np.percentile(z, [5, 25, 50, 75, 95])
    std = float(z.std(ddof=1))
    if std <= _ZERO_SPREAD_RTOL * max(1.0, float(np.abs(z).max())):
        std = 0.0
    return NoiseFloor(
        n=z.size,
        mean=float(z.mean()),
        std=std,
        min=float(z.min()),
        p05=float(q[0]),
        p25=float(q[1]),
        p50=float(q[2]),
        p75=float(q[3]),
        p95=float(q[4]),
        max=float(z.max()),
    )


def effect_in_noise_units(effect: float, null_mean: float, null_std: float) -> float | None:
    """(effect - null_mean) / null_std: how many noise-floor SDs the effect sits from the null mean.

    When the null has no spread the ratio is 0 if the effect equals the null mean, and otherwise
    undefined: None is returned rather than inf, which would not survive the JSON ledger.
    """
    for name, value in (("effect", effect), ("null_mean", null_mean), ("null_std", null_std)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise InvalidParameterError(f"{name} must be a number, got {value!r}")
        if not np.isfinite(value):
            raise NonFiniteInputError(f"{name} is {value!r}; the noise-floor ratio needs finite inputs")
    if null_std < 0:
        raise InvalidParameterError(f"null_std must be >= 0, got {null_std}")
    scale = max(1.0, abs(effect), abs(null_mean))
    if null_std <= _ZERO_SPREAD_RTOL * scale:
        return 0.0 if abs(effect - null_mean) <= _ZERO_SPREAD_RTOL * scale else None
    return float((effect - null_mean) / null_std)
