"""The builtin research programme: deterministic order, data-driven parameters, honest keep/discard."""

from __future__ import annotations

import ast

import pytest

from orchestrator.agent.base import AgentContext
from orchestrator.agent.builtin import BuiltinAgent
from orchestrator.agent.programme import FINAL_SLUG, STEPS, base_slug, next_step
from orchestrator.agent.schemas import AttemptSummary, ResearchState
from orchestrator.agent.templates import BODIES, UnknownTemplateError, render
from sandbox.guard import check_source, format_issues

CTX = AgentContext(program="p", contract_description="c", seed=3)


def _state(*history: AttemptSummary) -> ResearchState:
    return ResearchState(question="q", history=list(history), experiments_done=len(history), max_experiments=20)


def _done(attempt: int, slug: str, decision: str = "discard", **figures: float) -> AttemptSummary:
    return AttemptSummary(attempt=attempt, slug=slug, method="m", hypothesis="h", decision=decision, reason="r",
                          key_figures={f"m.{k}": v for k, v in figures.items()})


def test_every_step_has_a_template_that_passes_the_guard():
    assert {s.slug for s in STEPS} == set(BODIES)
    for step in STEPS:
        code = render(step.slug, {"heads": [[3, 1], [5, 2]], "mlp_layers": [2], "layers": [1]}, seed=0)
        ast.parse(code)
        issues = check_source(code)
        assert not issues, f"{step.slug}: {format_issues(issues)}"


def test_unknown_template_is_a_clear_error():
    with pytest.raises(UnknownTemplateError, match="no builtin template"):
        render("nope", {}, seed=0)


def test_programme_runs_in_order_and_ends_with_synthesis():
    agent = BuiltinAgent()
    history: list[AttemptSummary] = []
    seen = []
    for i in range(len(STEPS)):
        plan = agent.plan(_state(*history), CTX).value
        assert plan is not None
        seen.append(plan.slug)
        history.append(_done(i, plan.slug))
    assert seen == [s.slug for s in STEPS]
    assert seen[-1] == FINAL_SLUG
    assert next_step(_state(*history)) is None


def test_failed_step_is_retried_once_then_skipped():
    agent = BuiltinAgent()
    first = _done(0, "logit-lens", decision="crash")
    plan = agent.plan(_state(first), CTX).value
    assert plan.slug == "logit-lens-r2" and base_slug(plan.slug) == "logit-lens"
    second = _done(1, plan.slug, decision="crash")
    assert agent.plan(_state(first, second), CTX).value.slug == "resid-sweep"


def test_parameters_come_from_earlier_figures():
    agent = BuiltinAgent()
    history = [
        _done(0, "logit-lens"), _done(1, "resid-sweep"),
        _done(2, "attn-mlp-sweep", k_attn_layer1=12, k_attn_layer2=7, k_mlp_layer1=2, k_mlp_layer2=0),
        _done(3, "direct-logit-attribution"),
    ]
    plan = agent.plan(_state(*history), CTX).value
    assert plan.slug == "head-sweep" and plan.parameters == {"layers": [12, 7]}
    history += [_done(4, "head-sweep", k_head1=1203, k_head2=705), _done(5, "attribution-check"), _done(6, "path-patching")]
    plan = agent.plan(_state(*history), CTX).value
    assert plan.slug == "circuit-check"
    assert plan.parameters == {"heads": [[12, 3], [7, 5]], "mlp_layers": [2, 0]}
    assert "PARAMS = {'heads': [[12, 3], [7, 5]], 'mlp_layers': [2, 0]}" in agent.write_experiment(plan, _state(), CTX, None).value.code


def test_reflector_keeps_only_verified_claims_and_answers_at_the_end():
    agent = BuiltinAgent()
    plan = agent.plan(_state(), CTX).value
    kept = {"kept": True, "statement": "s1", "effect": 0.7, "ci_low": 0.6, "ci_high": 0.8, "adjusted_p": 0.001}
    lost = {"kept": False, "statement": "s2", "effect": 0.05, "ci_low": -0.1, "ci_high": 0.2, "adjusted_p": 0.6}
    r = agent.reflect(_state(), plan, None, {"claims": [kept, lost], "any_kept": True}, CTX).value
    assert r.decision == "keep" and not r.question_answered
    assert any(b.startswith("Verified: s1") for b in r.belief_updates)
    assert any(b.startswith("Not verified: s2") for b in r.belief_updates)
    r = agent.reflect(_state(), plan, None, {"claims": [lost], "any_kept": False}, CTX).value
    assert r.decision == "discard"
    history = [_done(i, s.slug) for i, s in enumerate(STEPS[:-1])]
    final_plan = agent.plan(_state(*history), CTX).value
    state = _state(*history).model_copy(update={"beliefs": ["Verified: s1 (effect +0.700)"]})
    r = agent.reflect(state, final_plan, None, {"claims": [], "any_kept": False}, CTX).value
    assert r.question_answered and "s1" in (r.answer or "")


def test_builtin_cannot_pretend_to_repair():
    agent = BuiltinAgent()
    plan = agent.plan(_state(), CTX).value
    step = agent.write_experiment(plan, _state(), CTX, "the experiment failed: boom")
    assert step.value is None and "cannot repair" in (step.error or "")
