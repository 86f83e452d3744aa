"""LLMAgent: the four research roles on top of any LLMClient (anthropic, mlx).

Why the prompts are built here and the stable context separately: the program, contract and engine
guide do not change during a run, so they form the cacheable prefix; only the per-step prompt
(history, plan, results) varies. A provider that must stop (budget spent, API down, bad key) turns
into failed steps with the reason, and ``stop_reason`` tells the loop to end the run cleanly.
"""

from __future__ import annotations

import ast
import json
import math
import re
from typing import Any, TypeVar

from pydantic import BaseModel, field_validator

from orchestrator.agent.base import AgentContext, StepResult
from orchestrator.agent.prompts import ROLE_SYSTEM
from orchestrator.agent.schemas import Analysis, AttemptSummary, ExperimentCode, Plan, Reflection, ResearchState
from orchestrator.providers.base import LLMClient

M = TypeVar("M", bound=BaseModel)

FAILED_DECISIONS = ("crash", "violation", "rejected", "failed")
_FENCE = re.compile(r"^\s*```(?:python|py)?\s*\n(.*?)\n\s*```\s*$", re.DOTALL)


class ExperimentModule(ExperimentCode):
    """Submit the complete experiment module: Python source that defines run(ctx)."""

    @field_validator("code", mode="before")
    @classmethod
    def _strip_fence(cls, v: Any) -> Any:
        if isinstance(v, str):
            match = _FENCE.match(v)
            return match.group(1) if match else v
        return v

    @field_validator("code")
    @classmethod
    def _defines_run(cls, v: str) -> str:
        try:
            tree = ast.parse(v)
        except SyntaxError as exc:
            raise ValueError(f"the code does not parse: line {exc.lineno}: {exc.msg}") from None
        runs = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "run"]
        if not runs:
            raise ValueError("the module must define a top-level function run(ctx)")
        if len(runs[0].args.args) != 1:
            raise ValueError("run must take exactly one argument: run(ctx)")
        return v


def compact(obj: Any, max_chars: int = 8000, max_items: int = 40) -> str:
    """JSON for a prompt: long lists cut, floats rounded, bounded length (with a visible marker)."""

    def shrink(x: Any) -> Any:
        if isinstance(x, float):
            return x if not math.isfinite(x) else float(f"{x:.4g}")
        if isinstance(x, str):
            return x if len(x) <= 2000 else x[:2000] + "...[cut]"
        if isinstance(x, dict):
            return {str(k): shrink(v) for k, v in list(x.items())[:200]}
        if isinstance(x, (list, tuple)):
            items = [shrink(v) for v in list(x)[:max_items]]
            return items + ([f"...({len(x) - max_items} more)"] if len(x) > max_items else [])
        if isinstance(x, BaseModel):
            return shrink(x.model_dump(mode="json"))
        return x

    text = json.dumps(shrink(obj), default=str, ensure_ascii=False)
    return text if len(text) <= max_chars else text[:max_chars] + "...[cut]"


def _line(a: AttemptSummary) -> str:
    figures = ", ".join(f"{k}={v:.3g}" for k, v in list(a.key_figures.items())[:6])
    hyp = a.hypothesis if len(a.hypothesis) <= 160 else a.hypothesis[:157] + "..."
    reason = a.reason if len(a.reason) <= 200 else a.reason[:197] + "..."
    return f"#{a.attempt} [{a.decision}] {a.method} `{a.slug}` - H: {hyp} -> {reason}" + (f" | {figures}" if figures else "")


def summarise_history(state: ResearchState, limit: int = 30) -> str:
    """A compact ledger view for the planner and reflector, discarded and crashed attempts included."""
    counts: dict[str, int] = {}
    for a in state.history:
        counts[a.decision] = counts.get(a.decision, 0) + 1
    parts = [f"Research question: {state.question}",
             f"Experiments done: {state.experiments_done} of {state.max_experiments}."
             + (" Decisions so far: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + "." if counts else "")]
    if state.beliefs:
        parts.append("Current beliefs:\n" + "\n".join(f"- {b}" for b in state.beliefs[-20:]))
    if state.open_hypotheses:
        parts.append("Open hypotheses:\n" + "\n".join(f"- {h}" for h in state.open_hypotheses[-20:]))
    if state.history:
        shown = state.history[-limit:]
        older = state.history[:-limit]
        head = "History (oldest first; kept, discarded and failed attempts):"
        if older:
            methods = sorted({a.method for a in older})
            head += f"\n({len(older)} earlier attempts omitted; methods used: {', '.join(methods)})"
        parts.append(head + "\n" + "\n".join(_line(a) for a in shown))
        parts.append("Slugs already used: " + ", ".join(sorted({a.slug for a in state.history if a.slug})))
    else:
        parts.append("History: no attempts yet.")
    return "\n\n".join(parts)


class LLMAgent:
    """ResearchAgent whose roles are prompts to an LLMClient; every output is schema-validated."""

    def __init__(self, client: LLMClient, *, max_repairs: int = 2, guide_roles: tuple[str, ...] = ("planner", "executor"),
                 history_limit: int = 30, engine_guide: str | None = None) -> None:
        self.client = client
        self.name = f"llm-{client.name}"
        self.max_repairs = max_repairs
        self.guide_roles = guide_roles
        self.history_limit = history_limit
        self._guide = engine_guide

    # -- roles ------------------------------------------------------------------------------------
    def plan(self, state: ResearchState, context: AgentContext) -> StepResult[Plan]:
        prompt = summarise_history(state, self.history_limit) + "\n\nPropose the next experiment."
        return self._call("planner", context, prompt, Plan)

    def write_experiment(self, plan: Plan, state: ResearchState, context: AgentContext,
                         feedback: str | None) -> StepResult[ExperimentCode]:
        parts = [f"Plan:\n{compact(plan)}"]
        failures = [a for a in state.history if a.decision in FAILED_DECISIONS][-5:]
        if failures:
            parts.append("Recent failed attempts (avoid their mistakes):\n" + "\n".join(
                f"#{a.attempt} `{a.slug}`: {a.reason[:300]}" for a in failures))
        if feedback:
            parts.append(f"Your previous version of this experiment failed:\n{feedback[:4000]}\n"
                         "Fix that problem and return the complete corrected module.")
        parts.append("Write the experiment module now.")
        step = self._call("executor", context, "\n\n".join(parts), ExperimentModule)
        value = ExperimentCode(code=step.value.code, notes=step.value.notes) if step.value is not None else None
        return StepResult(value=value, usage=step.usage, error=step.error)

    def analyse(self, plan: Plan, outcome_summary: dict[str, Any], context: AgentContext) -> StepResult[Analysis]:
        prompt = (f"Plan:\n{compact(plan)}\n\nOutcome (deterministic statistics; quote them, do not invent):\n"
                  f"{compact(outcome_summary, 12_000)}\n\nInterpret the outcome.")
        return self._call("analyst", context, prompt, Analysis)

    def reflect(self, state: ResearchState, plan: Plan, analysis: Analysis | None,
                verification: dict[str, Any] | None, context: AgentContext) -> StepResult[Reflection]:
        prompt = "\n\n".join([
            summarise_history(state, self.history_limit),
            f"This attempt's plan:\n{compact(plan)}",
            f"Analysis:\n{compact(analysis) if analysis is not None else '(no analysis: the analyst failed)'}",
            f"Verification on held-out pairs:\n{compact(verification) if verification else '(nothing verified)'}",
            "Decide keep or discard, update the beliefs and choose the next direction.",
        ])
        return self._call("reflector", context, prompt, Reflection)

    # -- plumbing ---------------------------------------------------------------------------------
    def engine_guide(self, context: AgentContext) -> str:
        if context.engine_guide:
            return context.engine_guide
        if self._guide is None:
            from orchestrator.agent.engine_guide import build_engine_guide

            self._guide = build_engine_guide()
        return self._guide

    def stable_context(self, context: AgentContext, role: str) -> str:
        """The cacheable prefix: program, contract, model facts and (for some roles) the engine guide."""
        parts = [f"# Research programme\n{context.program.strip()}",
                 f"# Contract (trusted setup and metric; immutable)\n{context.contract_description.strip()}"]
        if context.model_facts:
            parts.append(f"# Model facts\n{compact(context.model_facts, 4000)}")
        if role in self.guide_roles:
            parts.append(self.engine_guide(context))
        return "\n\n".join(p for p in parts if p.strip())

    def _call(self, role: str, context: AgentContext, prompt: str, schema: type[M]) -> StepResult[M]:
        """One schema-validated role call; ProviderStop (with the usage it spent) propagates to the loop."""
        return self.client.structured(role=role, system=ROLE_SYSTEM[role],
                                      cacheable_context=self.stable_context(context, role),
                                      prompt=prompt, schema=schema, max_repairs=self.max_repairs)
