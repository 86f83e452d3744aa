"""The keep rule for an edge-level circuit claim, on the verifier's held-out figures.

A circuit is kept only when all three hold:
1. faithful: the bootstrap CI of its held-out faithfulness lies above the threshold, i.e. the
   claim's ``min_effect`` but never below ``MIN_FAITHFULNESS`` (a "circuit" that reproduces less
   than half of the model's behaviour on new pairs explains too little to be called one), and the
   permutation test of its per-pair faithfulness against random circuits of the same size is
   significant after the run's multiplicity correction (``decide``);
2. clearly above random circuits: the CI's lower bound also exceeds the faithfulness of every
   random circuit of the same edge count (not only their mean), and by at least ``RANDOM_MARGIN``;
3. stable: the mean bootstrap Jaccard of the scoring method's circuit of that size is at least
   ``MIN_JACCARD`` (or the claim's stricter ``min_jaccard``). 0.5 means a resampled circuit shares, on
   average, two thirds of its edges with the full-data one (for equal sizes, overlap = 2J / (1 + J));
   below that, which edges are "the circuit" depends on which prompts were drawn.
numpy and pydantic only; deterministic given the seed (through ``decide``).
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

from orchestrator.analysis.multiple import Correction
from orchestrator.analysis.verdict import Verdict, decide

MIN_FAITHFULNESS = 0.5
MIN_JACCARD = 0.5
RANDOM_MARGIN = 0.2


class CircuitVerdict(BaseModel):
    """The decision on a circuit claim and every figure it rests on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kept: bool
    verdict: Verdict  # faithfulness CI vs threshold, permutation test vs random circuits
    threshold: float
    best_random: float
    beats_random: bool
    jaccard_mean: float
    min_jaccard: float
    stable: bool
    reason: str


def decide_circuit(
    effects: Sequence[float],
    random_effects: Sequence[Sequence[float]],
    *,
    jaccard_mean: float,
    min_effect: float,
    min_jaccard: float,
    alpha: float,
    prior_p_values: Sequence[float],
    correction: Correction,
    seed: int,
    n_bootstrap: int = 10_000,
) -> CircuitVerdict:
    """Keep or discard a circuit from its per-pair held-out faithfulness shares (mean = faithfulness),
    the same for each random circuit (one list per draw) and its bootstrap Jaccard stability.

    Raises the analysis errors of ``decide`` (too few pairs or null samples, non-finite input)."""
    threshold = max(float(min_effect), MIN_FAITHFULNESS)
    need_jaccard = max(float(min_jaccard), MIN_JACCARD)
    pooled = [float(x) for draw in random_effects for x in draw]
    verdict = decide(effects, pooled, claim_direction="increase", min_effect=threshold, alpha=alpha,
                     prior_p_values=prior_p_values, correction=correction, seed=seed, n_bootstrap=n_bootstrap)
    draw_means = [sum(d) / len(d) for d in random_effects if len(d)]
    best_random = max(draw_means) if draw_means else float("nan")
    beats_random = bool(draw_means) and verdict.ci_low > best_random + RANDOM_MARGIN
    stable = jaccard_mean >= need_jaccard
    kept = bool(verdict.kept and beats_random and stable)
    parts = [
        f"held-out faithfulness {verdict.effect:.3f} [{verdict.ci_low:.3f}, {verdict.ci_high:.3f}] vs threshold "
        f"{threshold:.2f} ({'cleared' if verdict.ci_clears_min_effect else 'not cleared'}); permutation test vs "
        f"{len(draw_means)} random circuits adjusted p {verdict.adjusted_p:.2g} "
        f"({'significant' if verdict.significant else 'not significant'} at {verdict.alpha:g})",
        f"best random circuit {best_random:.3f}: CI lower bound {'exceeds' if beats_random else 'does not exceed'} "
        f"it by more than {RANDOM_MARGIN:g}",
        f"bootstrap Jaccard {jaccard_mean:.3f} {'>=' if stable else '<'} {need_jaccard:.2f}",
    ]
    return CircuitVerdict(kept=kept, verdict=verdict, threshold=threshold, best_random=best_random,
                          beats_random=beats_random, jaccard_mean=float(jaccard_mean), min_jaccard=need_jaccard,
                          stable=stable, reason=("kept: " if kept else "not kept: ") + "; ".join(parts))
