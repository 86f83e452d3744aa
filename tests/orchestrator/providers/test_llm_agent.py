"""LLMAgent roles over the Anthropic client and the fake server: prompts, schemas, repairs, stops."""

from __future__ import annotations

from typing import Any, Callable

import pytest

from orchestrator.agent.base import AgentContext
from orchestrator.agent.llm import LLMAgent, compact, summarise_history
from orchestrator.agent.schemas import Analysis, AttemptSummary, ExperimentCode, Plan, ResearchState, Reflection
from orchestrator.providers.anthropic_client import AnthropicClient
from orchestrator.providers.base import Budget, BudgetExceeded, UsageLedger
from tests.fakes import anthropic_server as fk

PLAN = {"hypothesis": "mid layers move the answer", "method": "activation_patching",
        "falsification": "no layer restores > 10%", "slug": "resid-by-layer"}
CODE = "import engine\n\ndef run(ctx):\n    return {'summary': 'x', 'measurements': {}, 'claims': []}\n"


def state() -> ResearchState:
    history = [
        AttemptSummary(attempt=1, slug="lens", method="logit_lens", hypothesis="answer appears late",
                       decision="discard", reason="effect inside the noise floor", key_figures={"effect": 0.01}),
        AttemptSummary(attempt=2, slug="heads", method="ablation", hypothesis="head 3.1 moves it",
                       decision="crash", reason="experiment error: NameError: name 'mx' is not defined"),
        AttemptSummary(attempt=3, slug="resid", method="activation_patching", hypothesis="layer 20 carries it",
                       decision="keep", reason="verified", key_figures={"effect": 0.8, "adjusted_p": 0.001}),
    ]
    return ResearchState(question="Where is the capital recalled?", beliefs=["late layers matter"],
                         history=history, experiments_done=3, max_experiments=10)


def context() -> AgentContext:
    return AgentContext(program="PROGRAM TEXT", contract_description="CONTRACT TEXT", engine_guide="# Engine guide GUIDE",
                        model_facts={"n_layers": 30})


@pytest.fixture
def agent(make_client: Callable[..., AnthropicClient]) -> LLMAgent:
    return LLMAgent(make_client(), max_repairs=1)


def test_four_roles_round_trip(fake_server: fk.FakeAnthropic, agent: LLMAgent) -> None:
    fake_server.push_for("submit_plan", fk.tool_use(PLAN))
    fake_server.push_for("submit_experiment_module", fk.tool_use({"code": f"```python\n{CODE}```", "notes": "n"}))
    fake_server.push_for("submit_analysis", fk.tool_use({"interpretation": "layer 20 restores 80%", "supports_hypothesis": True}))
    fake_server.push_for("submit_reflection", fk.tool_use({"decision": "keep", "reason": "verified", "belief_updates": ["x"]}))
    st, ctx = state(), context()
    plan = agent.plan(st, ctx)
    assert isinstance(plan.value, Plan) and plan.usage.calls == 1
    code = agent.write_experiment(plan.value, st, ctx, None)
    assert type(code.value) is ExperimentCode and code.value.code.strip() == CODE.strip()  # fence stripped
    analysis = agent.analyse(plan.value, {"status": "ok", "measurements": {"restored": list(range(100))}}, ctx)
    assert isinstance(analysis.value, Analysis)
    reflection = agent.reflect(st, plan.value, analysis.value, {"claims": [], "any_kept": False}, ctx)
    assert isinstance(reflection.value, Reflection)

    planner, executor, analyst, reflector = fake_server.requests
    prompt = planner.body["messages"][0]["content"][0]["text"]
    for needle in ("[discard] logit_lens", "[crash] ablation", "NameError", "[keep] activation_patching", "Slugs already used"):
        assert needle in prompt
    stable = planner.body["system"][-1]
    assert "PROGRAM TEXT" in stable["text"] and "CONTRACT TEXT" in stable["text"] and "GUIDE" in stable["text"]
    assert stable["cache_control"] == {"type": "ephemeral"}
    assert "GUIDE" in executor.body["system"][-1]["text"] and "GUIDE" not in analyst.body["system"][-1]["text"]
    assert "NameError" in executor.body["messages"][0]["content"][0]["text"]  # failed attempts shown to the executor
    assert "(60 more)" in analyst.body["messages"][0]["content"][0]["text"]  # long lists compacted
    assert "[discard] logit_lens" in reflector.body["messages"][0]["content"][0]["text"]


def test_executor_code_is_checked_and_repaired(fake_server: fk.FakeAnthropic, agent: LLMAgent) -> None:
    fake_server.push(fk.tool_use({"code": "def run(ctx:\n  pass"}), fk.tool_use({"code": "def main():\n    pass\n"}))
    result = agent.write_experiment(Plan(**PLAN), state(), context(), feedback="guard rejected the code: line 3 ...")
    assert result.value is None and "run(ctx)" in (result.error or "")
    first_repair = fake_server.requests[1].body["messages"][-1]["content"][0]["content"]
    assert "does not parse" in first_repair
    assert "guard rejected the code" in fake_server.requests[0].body["messages"][0]["content"][0]["text"]


def test_provider_stop_propagates_with_the_usage_it_spent(fake_server: fk.FakeAnthropic,
                                                          make_client: Callable[..., AnthropicClient]) -> None:
    agent = LLMAgent(make_client(ledger=UsageLedger(Budget(max_tokens=5))), max_repairs=1)
    fake_server.push(fk.tool_use({"hypothesis": ""}))
    with pytest.raises(BudgetExceeded) as stop:  # the repair turn is refused: the loop stops the run cleanly
        agent.plan(state(), context())
    assert stop.value.reason == "budget" and stop.value.usage.calls == 1
    assert len(fake_server.requests) == 1


def test_engine_guide_is_built_when_the_context_has_none(fake_server: fk.FakeAnthropic, agent: LLMAgent) -> None:
    fake_server.push(fk.tool_use({"code": CODE}))
    ctx = context().model_copy(update={"engine_guide": ""})
    assert agent.write_experiment(Plan(**PLAN), state(), ctx, None).value is not None
    assert "run_with_hooks" in fake_server.requests[0].body["system"][-1]["text"]


def test_history_summary_is_bounded() -> None:
    st = state()
    st.history = [h.model_copy(update={"attempt": i, "slug": f"s{i}", "reason": "r" * 1000}) for i in range(200)
                  for h in st.history[:1]]
    text = summarise_history(st, limit=10)
    assert "190 earlier attempts omitted" in text and text.count("\n#") == 10 and len(text) < 6000


def test_compact_is_bounded_and_json() -> None:
    big: dict[str, Any] = {"a": [0.123456789] * 1000, "s": "x" * 10_000}
    out = compact(big, max_chars=3000)
    assert len(out) <= 3000 + len("...[cut]") and "0.1235" in out
