"""BuiltinAgent: the offline default — a deterministic research programme with no LLM.

Plans come from orchestrator.agent.programme, code from orchestrator.agent.templates, and the
analyst and reflector read only the deterministic figures (verifier statistics), so the same seed
gives the same run.
"""

from __future__ import annotations

from typing import Any

from orchestrator.agent.base import AgentContext, StepResult
from orchestrator.agent.programme import FINAL_SLUG, STEP_BY_SLUG, base_slug, figures_by_step, next_step
from orchestrator.agent.schemas import Analysis, ExperimentCode, Plan, Reflection, ResearchState
from orchestrator.agent.templates import render


def _fmt(v: dict[str, Any]) -> str:
    return (f"effect {float(v.get('effect', 0.0)):+.3f} [{float(v.get('ci_low', 0.0)):+.3f}, "
            f"{float(v.get('ci_high', 0.0)):+.3f}], adjusted p {float(v.get('adjusted_p', 1.0)):.3g}")


class BuiltinAgent:
    name = "builtin"

    def __init__(self, task: Any = None) -> None:
        self.task = task

    def plan(self, state: ResearchState, context: AgentContext) -> StepResult[Plan]:
        found = next_step(state)
        step, attempt_no = found if found is not None else (STEP_BY_SLUG[FINAL_SLUG], 99)
        figures = figures_by_step(state.history)
        params = step.params(figures)
        slug = step.slug if attempt_no == 1 else f"{step.slug}-r{attempt_no}"
        return StepResult(value=Plan(hypothesis=step.hypothesis, rationale=step.rationale, method=step.method,
                                     parameters=params, falsification=step.falsification, slug=slug[:48]))

    def write_experiment(
        self, plan: Plan, state: ResearchState, context: AgentContext, feedback: str | None
    ) -> StepResult[ExperimentCode]:
        if feedback:
            return StepResult(error=f"the builtin templates cannot repair their own code; {feedback}")
        code = render(base_slug(plan.slug), plan.parameters, seed=context.seed)
        return StepResult(value=ExperimentCode(code=code, notes=f"builtin template {base_slug(plan.slug)}"))

    def analyse(self, plan: Plan, outcome_summary: dict[str, Any], context: AgentContext) -> StepResult[Analysis]:
        claims = list(outcome_summary.get("verification") or [])
        kept = [v for v in claims if v.get("kept")]
        if not claims:
            text = "No claim was submitted for verification; the experiment's measurements inform the next steps."
            supports = None
        else:
            parts = [f"{'verified' if v.get('kept') else 'not verified'}: {v.get('statement', '')} ({_fmt(v)})" for v in claims]
            text = f"{len(kept)} of {len(claims)} claims held on the held-out pairs. " + " ".join(parts)
            supports = bool(kept)
        caveats = []
        if claims and any(int(v.get("n_pairs", 0)) < 8 for v in claims):
            caveats.append("fewer than 8 held-out pairs: intervals are wide")
        return StepResult(value=Analysis(interpretation=text[:4000], supports_hypothesis=supports, caveats=caveats))

    def reflect(
        self,
        state: ResearchState,
        plan: Plan,
        analysis: Analysis | None,
        verification: dict[str, Any] | None,
        context: AgentContext,
    ) -> StepResult[Reflection]:
        claims = list((verification or {}).get("claims") or [])
        kept = [v for v in claims if v.get("kept")]
        beliefs = [f"Verified: {v.get('statement', '')} ({_fmt(v)})" for v in kept]
        beliefs += [f"Not verified: {v.get('statement', '')} ({_fmt(v)})" for v in claims if not v.get("kept")]
        final = base_slug(plan.slug) == FINAL_SLUG
        upcoming = next_step(state.model_copy(update={"history": [*state.history, _pseudo(plan, bool(kept))]}))
        direction = "" if final or upcoming is None else upcoming[0].hypothesis
        if kept:
            decision, reason = "keep", f"{len(kept)} of {len(claims)} claims verified on held-out pairs"
        elif claims:
            decision, reason = "discard", f"none of {len(claims)} claims verified on held-out pairs"
        else:
            decision, reason = "discard", "exploratory measurement; no claim to keep"
        answer = None
        if final:
            verified = [b for b in state.beliefs if b.startswith("Verified: ")]
            answer = (" ".join(verified) if verified else "No localisation claim survived held-out verification.")[:4000]
        return StepResult(value=Reflection(decision=decision, reason=reason, belief_updates=beliefs[:20],
                                           next_direction=direction[:2000], question_answered=final, answer=answer))


def _pseudo(plan: Plan, kept: bool):
    from orchestrator.agent.schemas import AttemptSummary

    return AttemptSummary(attempt=0, slug=plan.slug, method=plan.method, hypothesis=plan.hypothesis,
                          decision="keep" if kept else "discard", reason="")
