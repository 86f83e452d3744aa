"""The explainer interface and the builtin (offline, deterministic) explainer.

An explainer sees only an ``ExplainerView`` (the train split): val and test never reach it. Each round
it writes inputs meant to disprove its own explanation, and revises from what the engine measured.
The builtin explainer fits a predicate to token statistics (orchestrator/features/fit.py), attacks it
with near misses, the concept without its surface tokens and the surface tokens without their context
(orchestrator/features/attacks.py), and revises by local edits of its rule — widen, narrow, add or drop
a context condition — chosen on train + every measured input (orchestrator/features/revise.py).
"""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel, ConfigDict

from engine.features.schemas import ExampleSplit
from orchestrator.agent.base import StepResult
from orchestrator.features.attacks import write_attacks
from orchestrator.features.fit import describe, fit_predicate
from orchestrator.features.revise import revise_predicate
from orchestrator.features.schemas import AdversarialInput, Explanation, RoundRecord


class ExplainerView(BaseModel):
    """What an explainer may see of a latent."""

    model_config = ConfigDict(extra="forbid")

    latent: int
    max_act: float
    train: ExampleSplit


class Explainer(Protocol):
    name: str

    def explain(self, view: ExplainerView) -> StepResult[Explanation]: ...

    def attack(self, explanation: Explanation, view: ExplainerView, round: int,
               history: list[RoundRecord]) -> StepResult[list[AdversarialInput]]: ...

    def revise(self, explanation: Explanation, view: ExplainerView, history: list[RoundRecord]) -> StepResult[Explanation]: ...


class BuiltinExplainer:
    """Token/context statistics; no LLM. ``per_intent`` inputs of each kind per round.

    Revision edits the current rule (up to ``max_edits`` per round) on train + every measured
    adversarial input, each input counted ``adversarial_weight`` times: a few short counterexamples
    would otherwise be drowned by the train windows they were written to correct (val, not this
    weight, decides which version is kept). No edit that helps = the rule survived the round.
    """

    name = "builtin"

    def __init__(self, per_intent: int = 4, context_window: int = 8, seed: int = 0, adversarial_weight: int = 3,
                 max_edits: int = 2) -> None:
        self.per_intent, self.context_window, self.seed = per_intent, context_window, seed
        self.adversarial_weight, self.max_edits = adversarial_weight, max_edits

    def explain(self, view: ExplainerView) -> StepResult[Explanation]:
        pred, _ = fit_predicate(view.train.all(), view.max_act, self.context_window)
        return StepResult(value=Explanation(text=describe(pred), predicate=pred))

    def attack(self, explanation: Explanation, view: ExplainerView, round: int,
               history: list[RoundRecord]) -> StepResult[list[AdversarialInput]]:
        if explanation.predicate is None:
            return StepResult(error="the builtin explainer attacks predicate explanations only")
        seen = {m.input.text for r in history for m in r.adversarial}
        inputs = write_attacks(explanation.predicate, view.train, round=round, seed=self.seed + 7919 * view.latent,
                               per_intent=self.per_intent, seen=seen)
        return StepResult(value=inputs)

    def revise(self, explanation: Explanation, view: ExplainerView, history: list[RoundRecord]) -> StepResult[Explanation]:
        if explanation.predicate is None:
            return StepResult(error="the builtin explainer revises predicate explanations only")
        measured = [m.example for r in history for m in r.adversarial]
        tried = [r.explanation.predicate for r in history if r.explanation.predicate is not None]
        pred, edits = revise_predicate(explanation.predicate, view.train.all(), measured, view.max_act,
                                       adversarial_weight=self.adversarial_weight, max_edits=self.max_edits, tried=tried)
        if not edits:
            return StepResult(value=explanation)
        return StepResult(value=Explanation(text=describe(pred), predicate=pred))
