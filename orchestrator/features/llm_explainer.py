"""An explainer backed by an LLM client (anthropic, mlx, or a scripted fake) through ``structured``.

The train examples go in ``cacheable_context`` (stable across the explain/attack/revise calls of a
latent, so providers can cache them). The revision prompt shows every measured adversarial input and
a machine-readable ``CONTRADICTIONS: k of n`` line; held-out scores are never shown to the explainer.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from engine.features.schemas import Example, ExampleSplit
from orchestrator.agent.base import StepResult
from orchestrator.features.explainers import ExplainerView
from orchestrator.features.schemas import AdversarialInput, Explanation, Predicate, RoundRecord
from orchestrator.features.scorers import StructuredClient

SYSTEM = (
    "You explain features (latents) of a sparse autoencoder trained on a language model's activations. "
    "You see texts split into tokens; a token written <<tok:3.1>> is where the feature fired, with its "
    "activation. Explanations must be short and precise; when you can, also give a predicate: the tokens "
    "or whole words it fires on (lower-case), an optional regex over tokens, and optional context tokens "
    "that must appear shortly before. You also try to DISPROVE your own explanations."
)
ATTACK_TASK = (
    "Write {n} short input texts meant to disprove the current explanation, spread over these intents: "
    "near_miss (almost what the explanation describes, but not quite), concept_without_surface (the "
    "concept without the tokens the examples used), surface_without_concept (those tokens without the "
    "concept or context), edge_case. For each, say whether the explanation predicts the feature fires "
    "(expect_active). Do not repeat earlier inputs."
)


class ExplanationDraft(BaseModel):
    text: str = Field(description="one or two sentences: what the feature responds to")
    predicate: Predicate | None = Field(default=None, description="a checkable rule, if the explanation allows one")


class AttackDraft(BaseModel):
    inputs: list[AdversarialInput] = Field(min_length=1, max_length=40)


def render_example(ex: Example) -> str:
    return "".join(f"<<{t}:{a:.1f}>>" if a > 0 else t for t, a in zip(ex.tokens, ex.acts)).replace("\n", "\\n")


def render_train(split: ExampleSplit, limit: int = 40) -> str:
    lines = ["Texts where the feature fires (strongest first):"]
    for ex in sorted(split.activating, key=lambda e: -e.max_act)[:limit]:
        lines.append(f"- {render_example(ex)}")
    lines.append("Texts where it does not fire (some share tokens with the ones above):")
    for ex in [*split.hard_negative, *split.random][: limit // 2]:
        lines.append(f"- {render_example(ex)}")
    return "\n".join(lines)


def render_evidence(history: list[RoundRecord]) -> str:
    lines = []
    total = contradictions = 0
    for r in history:
        for m in r.adversarial:
            total += 1
            contradictions += m.contradicts
            verdict = "CONTRADICTS" if m.contradicts else "consistent"
            lines.append(f"[round {r.round}] ({m.input.intent}, expected {'fires' if m.input.expect_active else 'silent'}) "
                         f"measured max {m.example.max_act:.2f}: {render_example(m.example)} -> {verdict}")
    last = history[-1] if history else None
    last_n = len(last.adversarial) if last else 0
    last_k = sum(m.contradicts for m in last.adversarial) if last else 0
    return "\n".join([*lines, f"CONTRADICTIONS: {last_k} of {last_n} (this round); {contradictions} of {total} (all rounds)"])


class LLMExplainer:
    """explain / attack / revise as three structured calls per round (roles feature-explain/-attack/-revise)."""

    def __init__(self, client: StructuredClient, inputs_per_round: int = 12, max_repairs: int = 2) -> None:
        self.client, self.inputs_per_round, self.max_repairs = client, inputs_per_round, max_repairs
        self.name = f"llm:{getattr(client, 'name', 'client')}"

    def _context(self, view: ExplainerView) -> str:
        return f"Feature {view.latent} (max activation {view.max_act:.2f}).\n" + render_train(view.train)

    def _explanation(self, res: StepResult) -> StepResult[Explanation]:
        if res.value is None:
            return StepResult(value=None, usage=res.usage, error=res.error)
        draft = res.value
        return StepResult(value=Explanation(text=draft.text, predicate=draft.predicate), usage=res.usage)

    def explain(self, view: ExplainerView) -> StepResult[Explanation]:
        res = self.client.structured(role="feature-explain", system=SYSTEM, cacheable_context=self._context(view),
                                     prompt="Explain what this feature responds to.", schema=ExplanationDraft,
                                     max_repairs=self.max_repairs)
        return self._explanation(res)

    def attack(self, explanation: Explanation, view: ExplainerView, round: int,
               history: list[RoundRecord]) -> StepResult[list[AdversarialInput]]:
        prompt = (f"Round {round}. Current explanation: {explanation.text}\n"
                  f"Predicate: {explanation.predicate.model_dump_json() if explanation.predicate else 'none'}\n"
                  + (f"Earlier measured inputs:\n{render_evidence(history)}\n" if history else "")
                  + ATTACK_TASK.format(n=self.inputs_per_round))
        res = self.client.structured(role="feature-attack", system=SYSTEM, cacheable_context=self._context(view),
                                     prompt=prompt, schema=AttackDraft, max_repairs=self.max_repairs)
        if res.value is None:
            return StepResult(value=None, usage=res.usage, error=res.error)
        return StepResult(value=list(res.value.inputs), usage=res.usage)

    def revise(self, explanation: Explanation, view: ExplainerView, history: list[RoundRecord]) -> StepResult[Explanation]:
        prompt = (f"Current explanation: {explanation.text}\n"
                  f"Predicate: {explanation.predicate.model_dump_json() if explanation.predicate else 'none'}\n"
                  f"Measured adversarial inputs:\n{render_evidence(history)}\n"
                  "Revise the explanation so it accounts for every measurement (keep it if nothing contradicts it).")
        res = self.client.structured(role="feature-revise", system=SYSTEM, cacheable_context=self._context(view),
                                     prompt=prompt, schema=ExplanationDraft, max_repairs=self.max_repairs)
        return self._explanation(res)
