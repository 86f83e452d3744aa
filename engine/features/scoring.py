"""Explanation-score metrics as in the open pipelines (delphi detection/fuzzing, OpenAI simulation),
the random-explanation baseline's spread and the keep rule. numpy only (the orchestrator uses it).

Why a sigma floor: a baseline whose random explanations all score exactly chance has zero spread,
which would make "3 sigma above it" mean "any improvement at all". The floor is the sampling standard
deviation of the metric for a chance-level predictor on the same number of held-out examples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict


def balanced_accuracy(labels: Sequence[bool], probs: Sequence[float], threshold: float = 0.5) -> float:
    """Mean of true-positive and true-negative rates; 0.5 is chance whatever the class balance."""
    y = np.asarray(labels, dtype=bool)
    pred = np.asarray(probs, dtype=float) >= threshold
    rates = [float(np.mean(pred[y == c] == c)) for c in (True, False) if np.any(y == c)]
    return float(np.mean(rates)) if rates else float("nan")


def auroc(labels: Sequence[bool], scores: Sequence[float]) -> float | None:
    """Area under the ROC curve (ties count half); None when one class is absent."""
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=float)
    pos, neg = s[y], s[~y]
    if pos.size == 0 or neg.size == 0:
        return None
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(order.size)
    allv = np.concatenate([pos, neg])[order]
    ranks[order] = _average_ranks(allv)
    return float((ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2) / (pos.size * neg.size))


def _average_ranks(sorted_values: np.ndarray) -> np.ndarray:
    ranks = np.arange(1, sorted_values.size + 1, dtype=float)
    _, start, counts = np.unique(sorted_values, return_index=True, return_counts=True)
    for s, c in zip(start, counts):
        if c > 1:
            ranks[s : s + c] = ranks[s : s + c].mean()
    return ranks


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Correlation; 0.0 when either side is constant (a simulator that predicts nothing explains nothing)."""
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if a.size < 2 or a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def chance_sigma(metric: str, n_pos: int, n_neg: int, n_examples: int | None = None) -> float:
    """Sampling sd of the metric for a chance-level predictor on this held-out set (the sigma floor)."""
    if metric in ("detection", "fuzzing"):
        if n_pos == 0 or n_neg == 0:
            return 0.5
        return 0.5 * math.sqrt(0.25 / n_pos + 0.25 / n_neg)
    if metric == "simulation":
        return 1.0 / math.sqrt(max(2, n_examples or (n_pos + n_neg)))
    raise ValueError(f"unknown metric {metric!r}: use detection, fuzzing or simulation")


class BaselineStats(BaseModel):
    """The random-explanation baseline of one metric on one latent's held-out set."""

    model_config = ConfigDict(extra="forbid")

    metric: str
    scores: list[float]
    mean: float
    std: float
    sigma_floor: float
    sigma: float  # max(std, sigma_floor): what the keep rule uses

    def margin(self, score: float) -> float:
        """How many baseline sigmas ``score`` lies above the baseline mean."""
        return (score - self.mean) / self.sigma if self.sigma > 0 else math.inf


def baseline_stats(metric: str, scores: Sequence[float], sigma_floor: float) -> BaselineStats:
    vals = [float(s) for s in scores if s == s]
    if not vals:
        raise ValueError(f"no baseline scores for {metric}: give at least one explanation of another latent")
    std = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
    return BaselineStats(metric=metric, scores=vals, mean=float(np.mean(vals)), std=std, sigma_floor=sigma_floor,
                         sigma=max(std, sigma_floor))


def beats_baseline(score: float, baseline: BaselineStats, n_sigma: float = 3.0) -> bool:
    """The keep rule: the held-out score is at least ``n_sigma`` baseline sigmas above its mean."""
    return score >= baseline.mean + n_sigma * baseline.sigma
