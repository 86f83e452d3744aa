"""Metrics evaluated on the final residual stream at the last position, one value per patched row.

Methods carry only the last position's final residual [rows, d] to the end. For ``logit_diff`` the
score needs two unembedding directions per pair, so the 49152-wide unembed is skipped; every other
metric goes through the full unembed of that one position.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import mlx.core as mx

from engine import metrics
from engine.errors import MethodError
from engine.hookset import EMPTY

# fn(logits [rows, vocab], correct_ids [rows], wrong_ids [rows]) -> [rows]
MetricFn = Callable[[mx.array, mx.array, mx.array], mx.array]
METRIC_NAMES = ("logit_diff", "prob_correct", "logprob_correct", "kl")


class Scorer:
    """A metric on last-position final residuals, each row belonging to one prompt pair."""

    def __init__(self, model, metric: str | MetricFn, correct_ids: Sequence[int], wrong_ids: Sequence[int]) -> None:
        if not callable(metric) and metric not in METRIC_NAMES:
            raise MethodError(f"unknown metric {metric!r}: use one of {list(METRIC_NAMES)} or a function "
                              "fn(logits [rows, vocab], correct_ids [rows], wrong_ids [rows]) -> [rows]")
        self.adapter = model.adapter
        self.metric = metric
        self.name = metric if isinstance(metric, str) else getattr(metric, "__name__", "custom")
        self.correct = mx.array(list(correct_ids), dtype=mx.int32)  # [n]
        self.wrong = mx.array(list(wrong_ids), dtype=mx.int32)  # [n]
        self.reference: mx.array | None = None  # [n, v] clean logits, for kl
        self.directions: mx.array | None = None  # [n, d] W_U[:, correct] - W_U[:, wrong]
        if metric == "logit_diff":
            a = self.adapter
            self.directions = a.unembed_rows(self.correct) - a.unembed_rows(self.wrong)

    def logits(self, last_resid: mx.array) -> mx.array:
        """Full logits [r, v] of final residuals [r, d]."""
        return self.adapter.unembed(self.adapter.final_norm(last_resid, EMPTY))

    def set_reference(self, clean_last_resid: mx.array) -> None:
        """The clean run's final residual [n, d] at the last position: KL is measured against it."""
        self.reference = self.logits(clean_last_resid)

    def logit_diff_along(self, last_resid: mx.array, directions: mx.array) -> mx.array:
        """logit_diff [r] of final residuals [r, d] given each row's direction [r, d] (self.directions[pair]):
        a pure function of its inputs, so it can sit inside a compiled graph."""
        return mx.sum(self.adapter.final_norm(last_resid, EMPTY) * directions, axis=-1)

    def __call__(self, last_resid: mx.array, pair: mx.array) -> mx.array:
        """Scores [r] of final residuals [r, d]; ``pair`` [r] says which pair each row belongs to."""
        if self.directions is not None:
            return self.logit_diff_along(last_resid, self.directions[pair])
        logits = self.logits(last_resid)  # [r, v]
        correct, wrong = self.correct[pair], self.wrong[pair]
        if callable(self.metric):
            return self.metric(logits, correct, wrong).reshape(-1)
        if self.metric == "prob_correct":
            return metrics.token_prob(logits, correct)
        if self.metric == "logprob_correct":
            return metrics.logprob(logits, correct)
        if self.reference is None:
            raise MethodError("the kl metric needs the clean run as reference; call set_reference first")
        return metrics.kl_divergence(logits, self.reference[pair])

    def on_logits(self, logits: mx.array, pair: mx.array) -> mx.array:
        """The same metric on ordinary logits [r, vocab] or [r, pos, vocab] (last position)."""
        last = logits[:, -1] if logits.ndim == 3 else logits
        correct, wrong = self.correct[pair], self.wrong[pair]
        if self.metric == "logit_diff":
            return metrics.logit_diff(last, correct, wrong)
        if callable(self.metric):
            return self.metric(last, correct, wrong).reshape(-1)
        if self.metric == "prob_correct":
            return metrics.token_prob(last, correct)
        if self.metric == "logprob_correct":
            return metrics.logprob(last, correct)
        return metrics.kl_divergence(last, self.reference[pair])


def normalise(patched: float, clean: float, corrupted: float) -> float:
    """0 = corrupted, 1 = clean (means over pairs)."""
    gap = clean - corrupted
    if abs(gap) <= 1e-5 * max(1.0, abs(clean), abs(corrupted)):  # within float32 noise
        raise MethodError(
            f"clean and corrupted prompts score the same ({clean:.6g}): nothing to recover. Check the pairs and "
            "answer tokens (the clean prompt should prefer the correct answer, the corrupted one less so)"
        )
    return (patched - corrupted) / gap
