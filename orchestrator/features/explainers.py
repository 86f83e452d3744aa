"""The explainer interface and the builtin (offline, deterministic) explainer.

An explainer sees only an ``ExplainerView`` (the train split): val and test never reach it. Each round
it writes inputs meant to disprove its own explanation, and revises from what the engine measured.
The builtin explainer fits a predicate to token statistics (orchestrator/features/fit.py), attacks it
with near misses, the concept without its surface tokens and the surface tokens without their context
(orchestrator/features/attacks.py), and revises by refitting on train + every measured input.
"""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel, ConfigDict

from engine.features.schemas import ExampleSplit
from orchestrator.agent.base import StepResult
from orchestrator.features.attacks import write_attacks
from orchestrator.features.fit import describe, fit_predicate
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

    Revision refits on train + every measured adversarial input, each input counted
    ``adversarial_weight`` times: a few short counterexamples would otherwise be drowned by the
    train windows they were written to correct (val, not this weight, decides which version is kept).
    """

    name = "builtin"

    def __init__(self, per_intent: int = 4, context_window: int = 8, seed: int = 0, adversarial_weight: int = 3) -> None:
        self.per_intent, self.context_window, self.seed = per_intent, context_window, seed
        self.adversarial_weight = adversarial_weight

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
        measured = [m.example for r in history for m in r.adversarial] * self.adversarial_weight
        pred, _ = fit_predicate([*view.train.all(), *measured], view.max_act, self.context_window)
        return StepResult(value=Explanation(text=describe(pred), predicate=pred))
