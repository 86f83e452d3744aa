"""Exceptions of the ratchet's statistics: each names the input and what to change.

All subclass ValueError, so a caller that already treats bad input as ValueError keeps working;
the gate must fail closed, so nothing here is ever swallowed into a default verdict.
"""

from __future__ import annotations


class AnalysisError(ValueError):
    """Base class for every error this package raises on purpose."""


class NonFiniteInputError(AnalysisError):
    """An input holds NaN or inf: a statistic over it would be meaningless, so we refuse."""


class InsufficientDataError(AnalysisError):
    """Too few values for the requested statistic (e.g. a confidence interval from one pair)."""


class InvalidParameterError(AnalysisError):
    """A setting outside its valid range (n_resamples, confidence, alpha, method, seed, ...)."""


class InvalidPValueError(AnalysisError):
    """A p-value that is not a finite number in [0, 1]."""
