"""A responder for the fake Messages API that plays explainer and scorer for the feature loop.

It answers each forced tool (explanation, attack, detection, fuzzing, simulation) from a known word
set, so the real AnthropicClient (tool schemas, caching, repairs, accounting) is exercised end to end
without a network. Token counts are the fake server's estimates (JSON characters / 4).
"""

from __future__ import annotations

import re
from typing import Any

from tests.fakes.anthropic_server import RecordedRequest, Reply, tool_use

_ITEM = re.compile(r"^\d+\. (.*)$", re.MULTILINE)
_MARK = re.compile(r"<<(.*?)>>")


def _explained_words(rec: RecordedRequest) -> set[str]:
    """The words the explanation under scoring names (the scorer reads only the explanation)."""
    system = (rec.body or {}).get("system") or []
    text = " ".join(b.get("text", "") for b in system if isinstance(b, dict))
    match = re.search(r"Explanation: (.*)", text)
    said = match.group(1).strip() if match else ""
    if said.startswith("Fires on the words "):
        return {w.strip().lower() for w in said[len("Fires on the words "):].rstrip(".").split(",")}
    return {said.lower()}


def _prompt(rec: RecordedRequest) -> str:
    content = (rec.body or {}).get("messages", [{}])[0].get("content", [])
    return "".join(block.get("text", "") for block in content if isinstance(block, dict))


class Oracle:
    def __init__(self, words: set[str], inputs_per_round: int = 6) -> None:
        self.words = {w.lower() for w in words}
        self.inputs_per_round = inputs_per_round
        self.tools: list[str] = []

    def _hit(self, token: str, words: set[str]) -> bool:
        return token.strip().lower() in words

    def __call__(self, rec: RecordedRequest) -> Reply:
        tool = rec.forced_tool or ""
        self.tools.append(tool)
        prompt = _prompt(rec)
        items = _ITEM.findall(prompt)
        said = _explained_words(rec)
        if tool == "submit_explanation_draft":
            return tool_use({"text": f"Fires on the words {', '.join(sorted(self.words))}.",
                             "predicate": {"tokens": sorted(self.words)}})
        if tool == "submit_attack_draft":
            sample = sorted(self.words)
            inputs = [{"text": f"I saw the {sample[i % len(sample)]} one near the house number {i}.",
                       "intent": "edge_case", "expect_active": True} for i in range(self.inputs_per_round // 2)]
            inputs += [{"text": f"Nothing relevant is said in sentence {i}.", "intent": "surface_without_concept",
                        "expect_active": False} for i in range(self.inputs_per_round - len(inputs))]
            return tool_use({"inputs": inputs})
        if tool == "submit_detection_answer":
            return tool_use({"probabilities": [0.9 if any(self._hit(t, said) for t in it.split("|")) else 0.1 for it in items]})
        if tool == "submit_fuzz_answer":
            probs = []
            for it in items:
                marked = _MARK.findall(it)
                probs.append(sum(self._hit(t, said) for t in marked) / len(marked) if marked else 0.0)
            return tool_use({"probabilities": probs})
        if tool == "submit_simulation_answer":
            return tool_use({"activations": [[8 if self._hit(_MARK.sub(r"\1", t), said) else 0 for t in it.split("|")]
                                             for it in items]})
        return tool_use({"error": f"oracle has no answer for {tool}"})


def answer_counts(oracle: Oracle) -> dict[str, Any]:
    out: dict[str, int] = {}
    for t in oracle.tools:
        out[t] = out.get(t, 0) + 1
    return out
