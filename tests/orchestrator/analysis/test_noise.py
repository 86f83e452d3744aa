"""Noise-floor summary and effect size in noise-floor units, including a null with no spread."""

from __future__ import annotations

import json

import numpy as np
import pytest

from orchestrator.analysis import (
    InsufficientDataError,
    InvalidParameterError,
    NonFiniteInputError,
    effect_in_noise_units,
    noise_floor,
)


def test_summary_matches_numpy() -> None:
    z = np.random.default_rng(0).normal(0.02, 0.05, size=101)
    f = noise_floor(z)
    assert f.n == 101
    assert f.mean == pytest.approx(z.mean())
    assert f.std == pytest.approx(z.std(ddof=1))
    assert (f.min, f.max) == (z.min(), z.max())
    assert [f.p05, f.p25, f.p50, f.p75, f.p95] == pytest.approx(np.percentile(z, [5, 25, 50, 75, 95]).tolist())
    json.loads(f.model_dump_json())


def test_hand_computed_small_case() -> None:
    f = noise_floor([1.0, 2.0, 3.0, 4.0])
    assert f.mean == 2.5 and f.std == pytest.approx(np.sqrt(5 / 3)) and f.p50 == 2.5


def test_identical_nulls_have_exactly_zero_spread() -> None:
    assert noise_floor([0.1] * 9).std == 0.0


def test_noise_floor_input_errors() -> None:
    with pytest.raises(InsufficientDataError, match="at least 2"):
        noise_floor([0.3])
    with pytest.raises(NonFiniteInputError, match="null_samples"):
        noise_floor([0.3, np.nan])


def test_effect_in_noise_units() -> None:
    assert effect_in_noise_units(0.82, 0.02, 0.04) == pytest.approx(20.0)
    assert effect_in_noise_units(-0.1, 0.0, 0.05) == pytest.approx(-2.0)
    assert effect_in_noise_units(0.3, 0.3, 0.0) == 0.0
    assert effect_in_noise_units(0.5, 0.3, 0.0) is None
    with pytest.raises(NonFiniteInputError):
        effect_in_noise_units(float("nan"), 0.0, 1.0)
    with pytest.raises(InvalidParameterError, match=">= 0"):
        effect_in_noise_units(1.0, 0.0, -1.0)
