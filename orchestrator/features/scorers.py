"""Scorers read an explanation and predict, as delphi's and OpenAI's scorer models do:
detection (does this text activate the latent?), fuzzing (are the highlighted tokens the ones the
explanation describes?) and simulation (activation 0..10 per token).

``PredicateScorer`` is the offline builtin: it evaluates the explanation's predicate and nothing else,
so it cannot see activations it is asked to predict. ``LLMScorer`` asks a model through any client that
implements ``structured`` (the providers' LLMClient, or a scripted fake in tests).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from pydantic import BaseModel, Field

from orchestrator.agent.base import StepResult, Usage
from orchestrator.features.predicate import detection_probability, evaluate
from orchestrator.features.schemas import Explanation

Tokens = list[str]


class StructuredClient(Protocol):
    """The part of orchestrator.providers.base.LLMClient the feature loop needs."""

    name: str

    def structured(self, *, role: str, system: str, cacheable_context: str, prompt: str,
                   schema: type[BaseModel], max_repairs: int = 2) -> StepResult: ...


class Scorer(Protocol):
    name: str

    def detect(self, explanation: Explanation, examples: Sequence[Tokens]) -> StepResult[list[float]]: ...

    def fuzz(self, explanation: Explanation, examples: Sequence[tuple[Tokens, list[bool]]]) -> StepResult[list[float]]: ...

    def simulate(self, explanation: Explanation, examples: Sequence[Tokens]) -> StepResult[list[list[float]]]: ...


class ScorerUnavailable(ValueError):
    """The scorer cannot read this explanation (e.g. the builtin scorer and an explanation without a predicate)."""


class PredicateScorer:
    """Deterministic, offline: detection/fuzzing/simulation from the explanation's predicate."""

    name = "builtin"

    def _pred(self, explanation: Explanation):
        if explanation.predicate is None:
            raise ScorerUnavailable(
                "the builtin scorer needs an explanation with a predicate (tokens/words/regex); "
                "use an LLM scorer for prose-only explanations"
            )
        return explanation.predicate

    def detect(self, explanation: Explanation, examples: Sequence[Tokens]) -> StepResult[list[float]]:
        pred = self._pred(explanation)
        return StepResult(value=[detection_probability(pred, toks) for toks in examples])

    def fuzz(self, explanation: Explanation, examples: Sequence[tuple[Tokens, list[bool]]]) -> StepResult[list[float]]:
        pred = self._pred(explanation)
        out = []
        for toks, marked in examples:
            sim = evaluate(pred, toks)
            chosen = [sim[i] > 0 for i, m in enumerate(marked) if m]
            out.append(sum(chosen) / len(chosen) if chosen else 0.0)
        return StepResult(value=out)

    def simulate(self, explanation: Explanation, examples: Sequence[Tokens]) -> StepResult[list[list[float]]]:
        pred = self._pred(explanation)
        return StepResult(value=[evaluate(pred, toks) for toks in examples])


# ---- LLM scorer --------------------------------------------------------------------------------
class DetectionAnswer(BaseModel):
    probabilities: list[float] = Field(description="for each numbered text, in order, the probability (0-1) that it activates the feature")


class FuzzAnswer(BaseModel):
    probabilities: list[float] = Field(description="for each numbered text, in order, the probability (0-1) that the <<marked>> tokens are ones the explanation describes")


class SimulationAnswer(BaseModel):
    activations: list[list[int]] = Field(description="for each numbered text, one integer 0-10 per token, in order")


SCORER_SYSTEM = (
    "You score explanations of a sparse-autoencoder feature of a language model. You are given the "
    "explanation and numbered texts split into tokens by '|'. Answer only from the explanation."
)


def _render(toks: Tokens, marked: list[bool] | None = None) -> str:
    parts = [(f"<<{t}>>" if marked and marked[i] else t) for i, t in enumerate(toks)]
    return "|".join(p.replace("\n", "\\n") for p in parts)


class LLMScorer:
    """delphi-style prompts in batches; the answer's length is checked against the batch."""

    def __init__(self, client: StructuredClient, batch_size: int = 10) -> None:
        self.client, self.batch_size = client, batch_size
        self.name = f"llm:{getattr(client, 'name', 'client')}"

    def _ask(self, role: str, explanation: Explanation, task: str, items: list[str], schema: type[BaseModel],
             field: str, lengths: list[int] | None = None) -> StepResult[list]:
        values: list = []
        usage = Usage()
        for b in range(0, len(items), self.batch_size):
            batch = items[b : b + self.batch_size]
            prompt = task + "\n\n" + "\n".join(f"{i + 1}. {text}" for i, text in enumerate(batch))
            res = self.client.structured(role=role, system=SCORER_SYSTEM, cacheable_context=f"Explanation: {explanation.text}",
                                         prompt=prompt, schema=schema)
            usage = usage + res.usage
            if res.value is None:
                return StepResult(value=None, usage=usage, error=res.error or f"{role}: no answer")
            got = list(getattr(res.value, field))
            if len(got) != len(batch):
                return StepResult(value=None, usage=usage, error=f"{role}: {len(got)} answers for {len(batch)} texts")
            if lengths is not None:
                want = lengths[b : b + self.batch_size]
                got = [list(g)[:n] + [0] * max(0, n - len(g)) for g, n in zip(got, want)]
            values.extend(got)
        return StepResult(value=values, usage=usage)

    def detect(self, explanation: Explanation, examples: Sequence[Tokens]) -> StepResult[list[float]]:
        res = self._ask("feature-detection", explanation, "For each text, how likely is it that the feature fires somewhere in it?",
                        [_render(t) for t in examples], DetectionAnswer, "probabilities")
        return StepResult(value=[min(1.0, max(0.0, float(p))) for p in res.value] if res.value is not None else None,
                          usage=res.usage, error=res.error)

    def fuzz(self, explanation: Explanation, examples: Sequence[tuple[Tokens, list[bool]]]) -> StepResult[list[float]]:
        res = self._ask("feature-fuzzing", explanation,
                        "Tokens marked <<like this>> are claimed to be where the feature fires. For each text, how likely is it that the marked tokens are what the explanation describes?",
                        [_render(t, m) for t, m in examples], FuzzAnswer, "probabilities")
        return StepResult(value=[min(1.0, max(0.0, float(p))) for p in res.value] if res.value is not None else None,
                          usage=res.usage, error=res.error)

    def simulate(self, explanation: Explanation, examples: Sequence[Tokens]) -> StepResult[list[list[float]]]:
        res = self._ask("feature-simulation", explanation, "Predict the feature's activation (0-10) at every token of each text.",
                        [_render(t) for t in examples], SimulationAnswer, "activations", lengths=[len(t) for t in examples])
        return StepResult(value=[[float(v) for v in row] for row in res.value] if res.value is not None else None,
                          usage=res.usage, error=res.error)
