"""The LLM explainer and scorer through the real AnthropicClient against the local fake Messages API:
tool schemas are accepted, the explainer's examples are cached across its calls, and every call and
token is accounted in the outcome."""

from __future__ import annotations

import pytest

from orchestrator.features.llm_explainer import LLMExplainer
from orchestrator.features.refine import RefineConfig, refine_latent
from orchestrator.features.schemas import Explanation, Predicate
from orchestrator.features.scorers import LLMScorer
from tests.fakes.anthropic_server import FakeAnthropic
from tests.orchestrator.features.anthropic_oracle import Oracle
from tests.orchestrator.features.synthetic import RuleMeasurer, make_latent, token_rule

WORDS = {"red", "blue", "green", "yellow"}


@pytest.fixture
def client(monkeypatch):
    from orchestrator.providers.anthropic_client import AnthropicClient

    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-features")
    oracle = Oracle(WORDS)
    with FakeAnthropic(expected_key="sk-ant-test-features", responder=oracle) as server:
        yield AnthropicClient("claude-sonnet-4-6", base_url=server.base_url, timeout_s=60.0, max_retries=2,
                              backoff_initial_s=0.01, backoff_max_s=0.02), server, oracle


def test_llm_explainer_and_scorer_through_the_anthropic_client(client):
    anthropic_client, server, oracle = client
    latent = make_latent(token_rule(WORDS), latent=5, sizes=((20, 10, 5), (20, 10, 5), (20, 10, 5)))
    pool = [(i, Explanation(text=w, predicate=Predicate(tokens=[w]))) for i, w in enumerate(["the", "of"])]
    outcome = refine_latent(latent, LLMExplainer(anthropic_client, inputs_per_round=6), LLMScorer(anthropic_client),
                            RuleMeasurer({5: token_rule(WORDS)}), pool, RefineConfig(n_baseline=2, min_rounds=1, max_rounds=1))
    assert outcome.kept and outcome.test.detection > 0.9 and outcome.explainer == outcome.scorer == "llm:anthropic"
    delivered = [r for r in server.requests if r.delivered]
    assert outcome.usage.calls == len(delivered) == len(oracle.tools)
    totals = server.usage_totals()
    assert outcome.usage.input_tokens == totals["input_tokens"] and outcome.usage.output_tokens == totals["output_tokens"]
    assert outcome.usage.cache_read_input_tokens > 0, "the explainer's train examples are read from the cache"
    assert {"submit_explanation_draft", "submit_attack_draft", "submit_detection_answer", "submit_fuzz_answer",
            "submit_simulation_answer"} >= set(oracle.tools)
    assert all(len(r.adversarial) == 6 for r in outcome.rounds)
