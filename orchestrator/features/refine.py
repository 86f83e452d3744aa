"""The agentic refinement loop for one latent: explain -> attack -> measure -> score -> revise.

Guardrails, each recorded rather than promised (DESIGN.md section 9):
- every round the explainer attacks its explanation and the measured inputs are scored like examples;
- convergence is decided on the validation split only, which the explainer never sees;
- at least ``min_rounds`` attack rounds before convergence may be declared;
- the outcome is kept only if its test-split score beats the random-explanation baseline (explanations
  of other latents, same scorer, same split) by ``keep_sigma`` baseline sigmas.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from engine.features.schemas import Example, LatentExamples
from engine.features.scoring import beats_baseline
from orchestrator.agent.base import Usage
from orchestrator.features.explainers import Explainer, ExplainerView
from orchestrator.features.schemas import (
    AdversarialInput, Explanation, LatentOutcome, MeasuredInput, RoundRecord, ScoreSet,
)
from orchestrator.features.scorers import Scorer, ScorerUnavailable
from orchestrator.features.scoring import ScoringError, baseline, score


class Measurer(Protocol):
    """Measures one latent on texts (the engine, usually in a subprocess)."""

    def measure(self, latent: int, texts: Sequence[str]) -> list[Example]: ...


class RefineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_rounds: int = Field(default=3, ge=1)
    max_rounds: int = Field(default=5, ge=1)
    epsilon: float = Field(default=0.01, ge=0.0)  # val improvement smaller than this = converged
    keep_metric: Literal["detection", "fuzzing", "simulation"] = "detection"
    keep_sigma: float = Field(default=3.0, gt=0.0)
    falsified_below: float = Field(default=0.8, ge=0.0, le=1.0)  # adversarial accuracy that marks a round falsified
    n_baseline: int = Field(default=10, ge=2)
    seed: int = 0


class RefineError(RuntimeError):
    """The loop could not produce an explanation at all (first explanation failed)."""


def _select(vals: Sequence[ScoreSet], cfg: RefineConfig) -> int:
    """The version to keep: a later one replaces the current choice only if its validation score is
    higher by more than ``epsilon`` (chasing val noise would swap explanations at random on test)."""
    best = 0
    for i in range(1, len(vals)):
        if vals[i].get(cfg.keep_metric) > vals[best].get(cfg.keep_metric) + cfg.epsilon:
            best = i
    return best


def measure_inputs(inputs: Sequence[AdversarialInput], latent: int, explanation: Explanation, measurer: Measurer,
                   scorer: Scorer, round: int) -> tuple[list[MeasuredInput], Usage]:
    """Measure written inputs on the engine and score them with the explanation like any example."""
    if not inputs:
        return [], Usage()
    examples = measurer.measure(latent, [i.text for i in inputs])
    examples = [ex.model_copy(update={"kind": "adversarial", "source": f"adversarial:{round}:{n}"})
                for n, ex in enumerate(examples)]
    det = scorer.detect(explanation, [ex.tokens for ex in examples])
    if det.value is None:
        raise ScoringError(f"{scorer.name} could not score the adversarial inputs: {det.error}")
    out = []
    for inp, ex, p in zip(inputs, examples, det.value):
        active = ex.max_act > 0
        out.append(MeasuredInput(input=inp, example=ex, active=active, predicted=p, contradicts=(p >= 0.5) != active))
    return out, det.usage


def refine_latent(latent: LatentExamples, explainer: Explainer, scorer: Scorer, measurer: Measurer,
                  baseline_pool: Sequence[tuple[int, Explanation]], cfg: RefineConfig | None = None, *,
                  initial: Explanation | None = None, sae: str = "", hook: str = "") -> LatentOutcome:
    """Run the loop on one latent and return everything it did and measured."""
    cfg = cfg or RefineConfig()
    started = time.perf_counter()
    view = ExplainerView(latent=latent.latent, max_act=latent.max_act, train=latent.train)
    usage = Usage()
    if initial is None:
        first = explainer.explain(view)
        usage = usage + first.usage
        if first.value is None:
            raise RefineError(f"latent {latent.latent}: {explainer.name} gave no explanation ({first.error})")
        initial = first.value
    versions: list[Explanation] = [initial]
    vals: list[ScoreSet] = []
    rounds: list[RoundRecord] = []
    converged_at: int | None = None
    for r in range(cfg.max_rounds):
        current = versions[-1]
        val, used = score(current, latent.val, scorer, cfg.seed + r)
        usage = usage + used
        vals.append(val)
        error = None
        measured: list[MeasuredInput] = []
        attack = explainer.attack(current, view, r, rounds)
        usage = usage + attack.usage
        if attack.value is None:
            error = f"attack failed: {attack.error}"
        else:
            measured, used = measure_inputs(attack.value, latent.latent, current, measurer, scorer, r)
            usage = usage + used
        accuracy = 1.0 - sum(m.contradicts for m in measured) / len(measured) if measured else 1.0
        record = RoundRecord(round=r, explanation=current, adversarial=measured, adversarial_accuracy=accuracy,
                             falsified=bool(measured) and accuracy < cfg.falsified_below, val=val, error=error)
        rounds.append(record)
        revised = explainer.revise(current, view, rounds)
        usage = usage + revised.usage
        if revised.value is None:
            record.error = (error + "; " if error else "") + f"revision failed: {revised.error}"
            break
        record.revised_to = revised.value
        versions.append(revised.value)
        if r + 1 >= cfg.min_rounds and len(vals) >= 2:
            best_before = max(v.get(cfg.keep_metric) for v in vals[:-1])
            if vals[-1].get(cfg.keep_metric) - best_before < cfg.epsilon and not record.falsified:
                converged_at = r
                break
    if len(versions) > len(vals):  # the last revision has not been scored on val yet
        val, used = score(versions[-1], latent.val, scorer, cfg.seed + len(vals))
        usage = usage + used
        vals.append(val)
    best = _select(vals, cfg)
    final = versions[best]
    test, used = score(final, latent.test, scorer, cfg.seed + 1000)
    usage = usage + used
    others = [e for lid, e in baseline_pool if lid != latent.latent][: cfg.n_baseline]
    baselines, used = baseline(others, latent.test, scorer, cfg.seed + 1000)
    usage = usage + used
    margins = {m: round(b.margin(test.get(m)), 3) for m, b in baselines.items()}
    kept = beats_baseline(test.get(cfg.keep_metric), baselines[cfg.keep_metric], cfg.keep_sigma)
    return LatentOutcome(
        latent=latent.latent, sae=sae, hook=hook, explainer=explainer.name, scorer=scorer.name, rounds=rounds,
        final_val=vals[best], final=final, final_round=best, converged=converged_at is not None,
        convergence_round=converged_at, test=test, baselines=baselines, margins=margins, keep_metric=cfg.keep_metric,
        keep_sigma=cfg.keep_sigma, kept=kept, usage=usage, seconds=time.perf_counter() - started,
    )


__all__ = ["Measurer", "RefineConfig", "RefineError", "refine_latent", "measure_inputs", "ScorerUnavailable"]
