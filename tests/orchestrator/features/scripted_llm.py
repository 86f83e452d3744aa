"""A scripted fake LLM for the feature loop: canned explanations and attacks, and a revision policy
that moves to its next hypothesis only when the measured adversarial inputs contradict the current one
(read from the explainer's ``CONTRADICTIONS: k of n`` line). Without adversarial evidence it never changes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pydantic import BaseModel

from orchestrator.agent.base import StepResult, Usage
from orchestrator.features.llm_explainer import AttackDraft, ExplanationDraft
from orchestrator.features.schemas import AdversarialInput, Explanation

_CONTRA = re.compile(r"CONTRADICTIONS: (\d+) of (\d+) \(this round\)")


class ScriptedLLM:
    name = "scripted"

    def __init__(self, hypotheses: Sequence[Explanation], attacks: Sequence[Sequence[AdversarialInput]],
                 switch_above: float = 0.2) -> None:
        self.hypotheses, self.attacks, self.switch_above = list(hypotheses), list(attacks), switch_above
        self.current = 0
        self.calls: list[tuple[str, str]] = []

    def structured(self, *, role: str, system: str, cacheable_context: str, prompt: str,
                   schema: type[BaseModel], max_repairs: int = 2) -> StepResult:
        self.calls.append((role, prompt))
        usage = Usage(calls=1, input_tokens=len((system + cacheable_context + prompt).split()), output_tokens=40)
        if role == "feature-explain":
            return StepResult(value=self._draft(), usage=usage)
        if role == "feature-attack":
            n = sum(1 for r, _ in self.calls if r == "feature-attack") - 1
            return StepResult(value=AttackDraft(inputs=list(self.attacks[min(n, len(self.attacks) - 1)])), usage=usage)
        if role == "feature-revise":
            match = _CONTRA.search(prompt)
            k, n = (int(match.group(1)), int(match.group(2))) if match else (0, 0)
            if n and k / n > self.switch_above and self.current + 1 < len(self.hypotheses):
                self.current += 1
            return StepResult(value=self._draft(), usage=usage)
        return StepResult(value=None, usage=usage, error=f"scripted LLM has no answer for role {role!r}")

    def _draft(self) -> ExplanationDraft:
        h = self.hypotheses[self.current]
        return ExplanationDraft(text=h.text, predicate=h.predicate)
