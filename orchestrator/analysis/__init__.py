"""Deterministic statistics at the ratchet's gate: bootstrap CIs, significance against the noise
floor, multiple-comparison control, and the keep/discard verdict.

numpy and pydantic only (the orchestrator process never imports mlx); every random figure is
seeded, so the same inputs and seed give the same verdict.
"""

from orchestrator.analysis.bootstrap import CIMethod, bootstrap_ci, jackknife_acceleration
from orchestrator.analysis.errors import (
    AnalysisError,
    InsufficientDataError,
    InvalidParameterError,
    InvalidPValueError,
    NonFiniteInputError,
)
from orchestrator.analysis.multiple import (
    AdjustedPValues,
    Correction,
    adjust_p_values,
    benjamini_hochberg,
    holm,
)
from orchestrator.analysis.noise import NoiseFloor, effect_in_noise_units, noise_floor
from orchestrator.analysis.significance import SignificanceResult, permutation_test, sign_flip_test
from orchestrator.analysis.verdict import Verdict, decide

__all__ = [
    "AdjustedPValues",
    "AnalysisError",
    "CIMethod",
    "Correction",
    "InsufficientDataError",
    "InvalidPValueError",
    "InvalidParameterError",
    "NoiseFloor",
    "NonFiniteInputError",
    "SignificanceResult",
    "Verdict",
    "adjust_p_values",
    "benjamini_hochberg",
    "bootstrap_ci",
    "decide",
    "effect_in_noise_units",
    "holm",
    "jackknife_acceleration",
    "noise_floor",
    "permutation_test",
    "sign_flip_test",
]
