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
from orchestrator.analysis.significance import SignificanceResult, permutation_test, sign_flip_test

__all__ = [
    "AnalysisError",
    "CIMethod",
    "InsufficientDataError",
    "InvalidPValueError",
    "InvalidParameterError",
    "NonFiniteInputError",
    "SignificanceResult",
    "bootstrap_ci",
    "jackknife_acceleration",
    "permutation_test",
    "sign_flip_test",
]
