"""What a circuit is for: clean/corrupted prompt pairs, the answers, the metric and the ablation.

Why a small object: every circuit method (EAP, EAP-IG, ACDC, evaluation, bootstrap) needs the same
five things, and bootstrap/held-out evaluation need to take subsets of them consistently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import mlx.core as mx
import numpy as np

from engine.circuits.graph import CircuitError

Metric = Literal["logit_diff", "logprob", "prob"]
Ablation = Literal["counterfactual", "mean"]


@dataclass(frozen=True)
class CircuitTask:
    """N prompt pairs of equal token length and the metric a circuit must preserve.

    ``ablation``: "counterfactual" (edges outside the circuit carry their value on the corrupted
    prompt, the default) or "mean" (their mean over ``reference`` tokens, per position; the
    corrupted prompts when no reference is given).
    """

    clean: mx.array  # [N, p] int32
    corrupted: mx.array  # [N, p] int32
    correct_ids: tuple[int, ...]
    wrong_ids: tuple[int, ...]
    metric: Metric = "logit_diff"
    ablation: Ablation = "counterfactual"
    reference: mx.array | None = field(default=None, repr=False)  # [M, p] for mean ablation
    position: int = -1

    def __post_init__(self) -> None:
        if self.clean.ndim != 2 or self.clean.shape != self.corrupted.shape:
            raise CircuitError(
                f"clean {tuple(self.clean.shape)} and corrupted {tuple(self.corrupted.shape)} tokens must both be "
                "[n_pairs, pos] with the same shape; tokenise equal-length pairs (model.to_tokens on a list)"
            )
        n = self.clean.shape[0]
        if len(self.correct_ids) != n or len(self.wrong_ids) != n:
            raise CircuitError(f"need one correct and one wrong id per pair: {n} pairs, "
                               f"{len(self.correct_ids)} correct, {len(self.wrong_ids)} wrong")
        if self.metric not in ("logit_diff", "logprob", "prob"):
            raise CircuitError(f"unknown metric {self.metric!r}; use 'logit_diff', 'logprob' or 'prob'")
        if self.ablation not in ("counterfactual", "mean"):
            raise CircuitError(f"unknown ablation {self.ablation!r}; use 'counterfactual' or 'mean'")
        if self.reference is not None and self.reference.shape[1] != self.clean.shape[1]:
            raise CircuitError("mean-ablation reference tokens must have the prompts' length "
                               f"({self.clean.shape[1]}), got {self.reference.shape[1]}")

    @classmethod
    def from_tokens(
        cls,
        clean: mx.array,
        corrupted: mx.array,
        correct_ids: Sequence[int],
        wrong_ids: Sequence[int],
        **kwargs,
    ) -> "CircuitTask":
        """From an experiment context: ``CircuitTask.from_tokens(ctx.clean_tokens, ctx.corrupted_tokens, ctx.correct_ids, ctx.wrong_ids)``."""
        return cls(clean, corrupted, tuple(int(i) for i in correct_ids), tuple(int(i) for i in wrong_ids), **kwargs)

    @classmethod
    def from_pairs(cls, model, pairs: Sequence, **kwargs) -> "CircuitTask":
        """From objects with ``clean``, ``corrupted``, ``correct``, ``wrong`` texts (e.g. PromptPair)."""
        if not pairs:
            raise CircuitError("no prompt pairs given; a circuit needs at least one pair")
        return cls(
            model.to_tokens([p.clean for p in pairs]),
            model.to_tokens([p.corrupted for p in pairs]),
            tuple(model.token_id(p.correct) for p in pairs),
            tuple(model.token_id(p.wrong) for p in pairs),
            **kwargs,
        )

    @property
    def n(self) -> int:
        return int(self.clean.shape[0])

    @property
    def positions(self) -> int:
        return int(self.clean.shape[1])

    def subset(self, rows: Sequence[int] | np.ndarray) -> "CircuitTask":
        """The task restricted to some pairs (bootstrap resamples, held-out splits)."""
        idx = np.asarray(rows, dtype=np.int64)
        sel = mx.array(idx)
        return replace(
            self,
            clean=self.clean[sel],
            corrupted=self.corrupted[sel],
            correct_ids=tuple(self.correct_ids[i] for i in idx),
            wrong_ids=tuple(self.wrong_ids[i] for i in idx),
        )

    def split(self, held_out: float = 0.5, seed: int = 0) -> tuple["CircuitTask", "CircuitTask"]:
        """(discovery, held-out) halves, shuffled with ``seed``."""
        order = np.random.default_rng(seed).permutation(self.n)
        cut = max(1, min(self.n - 1, int(round(self.n * (1 - held_out)))))
        return self.subset(np.sort(order[:cut])), self.subset(np.sort(order[cut:]))

    def metric_values(self, logits: mx.array, rows: mx.array | None = None) -> mx.array:
        """Metric per row from last-position logits [b, v]; ``rows`` [b] maps rows to pairs (default: 0..N-1)."""
        correct = mx.array(self.correct_ids, dtype=mx.int32)
        wrong = mx.array(self.wrong_ids, dtype=mx.int32)
        if rows is not None:
            correct, wrong = correct[rows], wrong[rows]
        c = mx.take_along_axis(logits, correct[:, None], axis=-1)[:, 0]
        if self.metric == "logit_diff":
            return c - mx.take_along_axis(logits, wrong[:, None], axis=-1)[:, 0]
        logprob = c - mx.logsumexp(logits, axis=-1)
        return logprob if self.metric == "logprob" else mx.exp(logprob)

    def describe(self) -> str:
        return f"{self.n} pairs x {self.positions} tokens, metric {self.metric}, {self.ablation} ablation"
