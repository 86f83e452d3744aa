"""What the feature loop produces and exchanges: explanations (text + optional machine-checkable
predicate), adversarial inputs and their measurements, scores, rounds, and the per-latent outcome.

Why explanations may carry a predicate: offline there is no LLM to read prose, so the builtin scorer
evaluates the predicate; an LLM explainer may fill it too, which lets a deterministic scorer check
LLM explanations (and lets tests run without any model).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator

from engine.features.schemas import Example
from engine.features.scoring import BaselineStats
from orchestrator.agent.base import Usage

Intent = Literal["near_miss", "concept_without_surface", "surface_without_concept", "edge_case"]
METRICS: tuple[str, ...] = ("detection", "fuzzing", "simulation")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _in_range(values: dict[str, float], high: float, meaning: str) -> dict[str, float]:
    """``values`` in key order if every one lies in 0..high; else a ValueError naming up to three offenders.

    Key order, because explainers build these maps from sets, whose order changes with each process's
    hash seed: the same explanation must serialise to the same bytes in every run (finding notes,
    results and the findings branch are compared across a resume)."""
    bad = {k: v for k, v in values.items() if not 0.0 <= v <= high}
    if bad:
        raise ValueError(f"{meaning}; out of range: {dict(list(bad.items())[:3])}")
    return dict(sorted(values.items()))


class Predicate(_Strict):
    """Where the latent fires, as a checkable rule over tokens (all matching is case-insensitive).

    A token fires if its stripped text is in ``tokens``, or the word it belongs to is in ``words``, or
    its stripped text matches ``regex``; and, when ``context`` is non-empty, one of those tokens/words
    occurs within the ``context_window`` tokens before it.
    """

    tokens: list[str] = Field(default_factory=list, max_length=400)
    words: list[str] = Field(default_factory=list, max_length=400)
    regex: str | None = Field(default=None, max_length=200)
    context: list[str] = Field(default_factory=list, max_length=50)
    context_window: int = Field(default=8, ge=1, le=64)
    weights: dict[str, float] = Field(default_factory=dict)  # expected activation 0..10 per token/word/'regex'
    default_weight: float = Field(default=10.0, ge=0.0, le=10.0)
    # how often the latent fires where the rule matches (0..1), per token/word/'regex': "fires on 'the'
    # about 40% of the time" is part of what the explanation claims, and what detection should use
    precision: dict[str, float] = Field(default_factory=dict)
    default_precision: float = Field(default=1.0, ge=0.0, le=1.0)

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"regex {value!r} does not compile: {exc}") from None
        return value

    @field_validator("tokens", "words", "context")
    @classmethod
    def _lower(cls, values: list[str]) -> list[str]:
        return [v.strip().lower() or v for v in values]

    @field_validator("weights")
    @classmethod
    def _weights_in_range(cls, values: dict[str, float]) -> dict[str, float]:
        return _in_range(values, 10.0, "weights are expected activations on a 0..10 scale")

    @field_validator("precision")
    @classmethod
    def _precision_in_range(cls, values: dict[str, float]) -> dict[str, float]:
        return _in_range(values, 1.0, "precision values are probabilities in 0..1")

    @field_serializer("weights", "precision")
    def _in_key_order(self, values: dict[str, float]) -> dict[str, float]:
        return dict(sorted(values.items()))  # also for copies made with model_copy(update=...), which skip validation

    def is_empty(self) -> bool:
        return not (self.tokens or self.words or self.regex)


class Explanation(_Strict):
    text: str = Field(min_length=1, max_length=2000)
    predicate: Predicate | None = None


class AdversarialInput(_Strict):
    """A text written to disprove an explanation; ``expect_active`` is what the explanation predicts."""

    text: str = Field(min_length=1, max_length=600)
    intent: Intent
    expect_active: bool
    rationale: str = Field(default="", max_length=400)


class MeasuredInput(_Strict):
    input: AdversarialInput
    example: Example  # tokens and the latent's measured activation per token
    active: bool  # measured: did the latent fire anywhere in the text
    predicted: float  # the scorer's detection probability for this text under the explanation
    contradicts: bool  # prediction (>= 0.5) disagrees with the measurement


class ScoreSet(_Strict):
    detection: float
    detection_auroc: float | None = None
    fuzzing: float
    fuzzing_auroc: float | None = None
    simulation: float
    n_activating: int
    n_negative: int

    def get(self, metric: str) -> float:
        return float(getattr(self, metric))


class RoundRecord(_Strict):
    round: int
    explanation: Explanation
    adversarial: list[MeasuredInput]
    adversarial_accuracy: float  # fraction of adversarial inputs whose outcome the explanation predicted
    falsified: bool  # the adversarial inputs contradicted the explanation (accuracy below the bar)
    val: ScoreSet  # held-out validation score of this round's explanation (decides convergence)
    revised_to: Explanation | None = None
    error: str | None = None


class Verdict(_Strict):
    """The trusted verifier's decision on one explanation (orchestrator/features/verify.py): held-out
    test scores and the random-explanation baseline recomputed from pinned files, and the recorded
    adversarial activations checked against a fresh measurement."""

    latent: int
    test: ScoreSet
    baselines: dict[str, BaselineStats]
    margins: dict[str, float]
    keep_metric: str
    keep_sigma: float
    beats_baseline: bool
    adversarial_checked: int = 0
    adversarial_max_diff: float | None = None  # largest |recorded - re-measured| activation
    adversarial_consistent: bool = True
    kept: bool
    problems: list[str] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)  # the verifier's own scoring calls (an LLM scorer's), for the budget


class LatentOutcome(_Strict):
    """Everything about one latent's explanation: every round, every adversarial input, every score."""

    latent: int
    sae: str
    hook: str
    explainer: str
    scorer: str
    rounds: list[RoundRecord]
    final_val: ScoreSet | None = None  # val score of the final explanation (it may be a revision never attacked)
    final: Explanation
    final_round: int  # index into explanation versions: 0 = first explanation, r+1 = revision of round r
    converged: bool
    convergence_round: int | None = None
    test: ScoreSet  # held-out test score of the final explanation (keep rule)
    baselines: dict[str, BaselineStats]
    margins: dict[str, float]  # score - baseline mean, in baseline sigmas
    keep_metric: str
    keep_sigma: float
    kept: bool
    usage: Usage = Field(default_factory=Usage)
    seconds: float = 0.0
    error: str | None = None
    verdict: Verdict | None = None  # the trusted verifier's decision; when set, ``kept`` is its ``kept``
