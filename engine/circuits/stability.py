"""Stability of a selected circuit under resampling of the prompt pairs.

Why it is cheap: an EAP / EAP-IG score is the mean of per-pair scores (each pair's gradient and
activation difference are independent of the others), so a bootstrap resample's scores are a
reweighting of the per-pair scores already computed. No forward is rerun.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from engine.circuits.graph import CircuitError
from engine.circuits.results import EdgeScores, Stability
from engine.circuits.selection import greedy_masks, topk_mask

MIN_RESAMPLES = 100


def _check(n_resamples: int) -> None:
    if n_resamples < MIN_RESAMPLES:
        raise CircuitError(f"stability is reported over at least {MIN_RESAMPLES} bootstrap resamples; "
                           f"got n_resamples={n_resamples}")


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def bootstrap_jaccard(
    scores: EdgeScores,
    size: int,
    *,
    absolute: bool = True,
    rule: str = "topk",
    n_resamples: int = MIN_RESAMPLES,
    seed: int = 0,
) -> Stability:
    """Jaccard similarity between the circuit of ``size`` edges selected on all pairs and on each of
    ``n_resamples`` seeded bootstrap resamples of the pairs (same selection rule and size)."""
    _check(n_resamples)
    if rule not in ("topk", "greedy"):
        raise CircuitError(f"unknown selection rule {rule!r}; use 'topk' or 'greedy'")
    graph = scores.graph.graph()
    per_pair = scores.per_pair().astype(np.float64)  # [N, E]
    n = per_pair.shape[0]

    def select(s: np.ndarray) -> np.ndarray:
        if rule == "topk":
            return topk_mask(graph, s, size, absolute=absolute)
        return greedy_masks(graph, s, [size], absolute=absolute)[0]

    reference = select(per_pair.mean(axis=0))
    rng = np.random.default_rng(seed)
    counts = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(n_resamples)])  # [B, N]
    resampled = counts @ per_pair / n  # [B, E]
    values = np.array([jaccard(reference, select(s)) for s in resampled])
    return _stability(values, seed, size)


def _stability(values: np.ndarray, seed: int, size: int) -> Stability:
    return Stability(
        n_resamples=len(values), seed=seed, size=size,
        jaccard_mean=float(values.mean()), jaccard_std=float(values.std()),
        jaccard_p05=float(np.percentile(values, 5)), jaccard_median=float(np.median(values)),
        jaccard_p95=float(np.percentile(values, 95)),
    )


def bootstrap_by_rerun(
    select: Callable[[np.ndarray], np.ndarray],
    n_pairs: int,
    reference: np.ndarray,
    *,
    n_resamples: int = MIN_RESAMPLES,
    seed: int = 0,
) -> Stability:
    """Stability of a method that must be rerun per resample (ACDC): ``select(rows)`` returns the
    bool [E] circuit found on the pairs ``rows``; compared with ``reference`` (found on all pairs)."""
    _check(n_resamples)
    rng = np.random.default_rng(seed)
    values = np.array([jaccard(reference, select(rng.integers(0, n_pairs, n_pairs))) for _ in range(n_resamples)])
    return _stability(values, seed, int(np.asarray(reference).sum()))
