"""Shared input checks, so every public function rejects bad data with the same clear message."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Literal

import numpy as np

from orchestrator.analysis.errors import (
    InsufficientDataError,
    InvalidParameterError,
    NonFiniteInputError,
)

Direction = Literal["increase", "decrease"]

ArrayLike = Sequence[float] | np.ndarray


def as_finite_1d(values: ArrayLike, *, name: str, min_size: int = 1) -> np.ndarray:
    """Return ``values`` as a float64 vector, refusing non-numbers, NaN/inf and too-short inputs."""
    raw = np.asarray(values)
    if raw.dtype.kind not in "biuf":
        raise InvalidParameterError(
            f"{name} must hold real numbers, got dtype {raw.dtype}; pass a list or array of floats"
        )
    if raw.ndim != 1:
        raise InvalidParameterError(
            f"{name} must be one-dimensional (one value per pair or null sample), got shape {raw.shape}"
        )
    arr = raw.astype(np.float64, copy=True)
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        first = int(bad[0])
        raise NonFiniteInputError(
            f"{name} holds {bad.size} non-finite value(s) (first at index {first}: {arr[first]!r}); "
            "a NaN/inf effect usually means a zero clean-corrupted gap in the normalisation or a failed "
            "forward pass; fix or drop those pairs upstream and record why"
        )
    if arr.size < min_size:
        raise InsufficientDataError(f"{name} has {arr.size} value(s); at least {min_size} are needed")
    return arr


def check_seed(seed: int) -> int:
    """Seeds are required non-negative ints: every figure at the gate must be reproducible."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise InvalidParameterError(f"seed must be a non-negative int, got {seed!r} ({type(seed).__name__})")
    if seed < 0:
        raise InvalidParameterError(f"seed must be a non-negative int, got {seed}")
    return int(seed)


def check_count(value: int, *, name: str, minimum: int) -> int:
    """An integer setting with a floor (resample counts)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidParameterError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise InvalidParameterError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_probability(value: float, *, name: str) -> float:
    """A level strictly inside (0, 1): confidence or alpha."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidParameterError(f"{name} must be a number in (0, 1), got {value!r}")
    value = float(value)
    if not 0.0 < value < 1.0:
        raise InvalidParameterError(f"{name} must be strictly between 0 and 1, got {value}")
    return value


def direction_sign(direction: Direction) -> float:
    """+1 for an expected increase, -1 for a decrease, so one-sided tests share one code path."""
    if direction == "increase":
        return 1.0
    if direction == "decrease":
        return -1.0
    raise InvalidParameterError(f"direction must be 'increase' or 'decrease' (as in Claim.expected_direction), got {direction!r}")
