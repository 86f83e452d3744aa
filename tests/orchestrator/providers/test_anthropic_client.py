"""AnthropicClient against the local fake Messages API, through the real anthropic SDK."""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Callable

import pytest
from structlog.testing import capture_logs

from orchestrator.agent.schemas import Plan
from orchestrator.providers.anthropic_client import AnthropicClient, ProviderUnavailable
from orchestrator.providers.base import Budget, BudgetExceeded, ProviderConfigError, UsageLedger, pricing_for
from tests.fakes import anthropic_server as fk

GOOD_PLAN = {"hypothesis": "late layers carry the answer", "method": "activation_patching",
             "falsification": "no layer restores > 10% of the gap", "slug": "resid-sweep"}


def call(client: AnthropicClient, **kw: Any):
    args: dict[str, Any] = dict(role="planner", system="You plan.", cacheable_context="PROGRAM + GUIDE",
                                prompt="What next?", schema=Plan)
    args.update(kw)
    return client.structured(**args)


def assert_usage_matches(server: fk.FakeAnthropic, ledger: UsageLedger, model: str = "claude-sonnet-4-6") -> None:
    served = server.usage_totals()
    total = ledger.total()
    assert {k: getattr(total, k) for k in served} == served
    price, _ = pricing_for(model)
    expected = (served["input_tokens"] * price.input + served["output_tokens"] * price.output
                + served["cache_creation_input_tokens"] * price.cache_write
                + served["cache_read_input_tokens"] * price.cache_read) / 1e6
    assert total.dollars == pytest.approx(expected, rel=1e-9)


def test_valid_tool_use_returns_value_and_accounts(fake_server: fk.FakeAnthropic, make_client: Callable[..., AnthropicClient]) -> None:
    fake_server.push(fk.tool_use(GOOD_PLAN, usage={"input_tokens": 1000, "output_tokens": 200,
                                                   "cache_creation_input_tokens": 3000, "cache_read_input_tokens": 0}))
    client = make_client()
    result = call(client)
    assert result.error is None and result.value == Plan(**GOOD_PLAN)
    assert result.usage.calls == 1 and result.usage.output_tokens == 200
    # sonnet: 3 in, 15 out, 3.75 cache write per MTok
    assert result.usage.dollars == pytest.approx((1000 * 3 + 200 * 15 + 3000 * 3.75) / 1e6)
    assert client.ledger.by_role()["planner"].calls == 1
    assert_usage_matches(fake_server, client.ledger)


def test_request_shape_forced_tool_cached_prefix_no_sdk_retries(fake_server: fk.FakeAnthropic, make_client: Callable[..., AnthropicClient]) -> None:
    fake_server.push(fk.server_error(), fk.tool_use(GOOD_PLAN))
    call(make_client())
    assert len(fake_server.requests) == 2
    for req in fake_server.requests:
        body = req.body
        assert body["tool_choice"] == {"type": "tool", "name": "submit_plan"}
        assert [t["name"] for t in body["tools"]] == ["submit_plan"]
        assert body["tools"][0]["input_schema"]["properties"].keys() == Plan.model_json_schema()["properties"].keys()
        assert body["system"][0]["text"] == "You plan."
        assert body["system"][-1] == {"type": "text", "text": "PROGRAM + GUIDE", "cache_control": {"type": "ephemeral"}}
        assert req.headers.get("anthropic-version")
        assert req.headers.get("x-stainless-retry-count") == "0"  # the SDK's own retries are off


def test_prompt_cache_is_read_on_the_second_call(fake_server: fk.FakeAnthropic, make_client: Callable[..., AnthropicClient]) -> None:
    fake_server.push(fk.tool_use(GOOD_PLAN), fk.tool_use(GOOD_PLAN))
    client = make_client()
    first, second = call(client), call(client, prompt="And now?")
    assert first.usage.cache_creation_input_tokens > 0 and first.usage.cache_read_input_tokens == 0
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert_usage_matches(fake_server, client.ledger)


def test_429_retry_after_is_honoured(fake_server: fk.FakeAnthropic, make_client: Callable[..., AnthropicClient]) -> None:
    fake_server.push(fk.rate_limited(0.3), fk.tool_use(GOOD_PLAN))
    client = make_client(retry_after_cap_s=5.0)
    started = time.monotonic()
    result = call(client)
    assert result.value is not None and time.monotonic() - started >= 0.3
    assert client.ledger.records[-1].retries == 1


def test_retry_after_is_capped(fake_server: fk.FakeAnthropic, make_client: Callable[..., AnthropicClient]) -> None:
    fake_server.push(fk.rate_limited(3600), fk.tool_use(GOOD_PLAN))
    started = time.monotonic()
    assert call(make_client(retry_after_cap_s=0.1)).value is not None
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("fault", [fk.server_error, fk.overloaded, fk.drop, lambda: fk.hang(2.0),
                                   lambda: fk.raw(200, b'{"id": "msg_x", "type": "mes')],
                         ids=["500", "529", "dropped-connection", "slow-past-timeout", "truncated-body"])
def test_transient_faults_are_retried(fault: Callable[[], fk.Reply], fake_server: fk.FakeAnthropic,
                                      make_client: Callable[..., AnthropicClient]) -> None:
    fake_server.push(fault(), fault(), fk.tool_use(GOOD_PLAN))
    client = make_client()
    result = call(client)
    assert result.error is None and result.value is not None
    assert len(fake_server.requests) == 3 and client.ledger.records[-1].retries == 2
    assert_usage_matches(fake_server, client.ledger)


def test_retries_are_bounded_then_failed_step_then_stop(fake_server: fk.FakeAnthropic, make_client: Callable[..., AnthropicClient]) -> None:
    fake_server.push(*[fk.overloaded() for _ in range(9)])
    client = make_client(max_retries=2, max_consecutive_failures=3)
    first = call(client)
    assert first.value is None and "OverloadedError" in (first.error or "") and len(fake_server.requests) == 3
    assert call(client).value is None
    with pytest.raises(ProviderUnavailable) as stop:
        call(client)
    assert stop.value.reason == "provider-unavailable" and len(fake_server.requests) == 9
    assert [r.outcome for r in client.ledger.records] == ["error"] * 3
    assert client.ledger.total().calls == 0  # failed attempts are not billed


def test_an_outage_is_waited_out_within_the_patience(fake_server: fk.FakeAnthropic,
                                                     make_client: Callable[..., AnthropicClient]) -> None:
    # 2 failed steps, then the 3rd consecutive failure starts the outage wait: probes at 1, 2, 4 s (recorded, not
    # slept); the API comes back on the 3rd probe and the same request succeeds.
    fake_server.push(*[fk.overloaded() for _ in range(2 * 3 + 3 * 3)], fk.tool_use(GOOD_PLAN))
    client = make_client(max_retries=2, max_consecutive_failures=3, outage_patience_s=3600, outage_probe_s=(1.0, 3.0))
    waits: list[float] = []
    client._sleep = waits.append
    assert call(client).value is None and call(client).value is None
    third = call(client)
    assert third.error is None and third.value is not None
    assert waits == [1.0, 2.0, 3.0]  # doubling, capped by the second of outage_probe_s
    assert len(fake_server.requests) == 16 and client._outage_started is None
    assert [r.outcome for r in client.ledger.records] == ["error"] * 5 + ["ok"]


def test_an_outage_longer_than_the_patience_stops_the_run(fake_server: fk.FakeAnthropic,
                                                         make_client: Callable[..., AnthropicClient],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    fake_server.push(*[fk.overloaded() for _ in range(30)])
    client = make_client(max_retries=0, max_consecutive_failures=1, outage_patience_s=100, outage_probe_s=(40.0, 40.0))
    clock = [1000.0]
    monkeypatch.setattr("orchestrator.providers.anthropic_client.time.monotonic", lambda: clock[0])
    waits: list[float] = []

    def sleep(s: float) -> None:
        waits.append(s)
        clock[0] += s

    client._sleep = sleep
    with pytest.raises(ProviderUnavailable) as stop:
        call(client)
    assert waits == [40.0, 40.0, 20.0] and "patience 100 s" in str(stop.value)


def test_make_agent_gives_anthropic_the_wall_clock_budget_as_outage_patience(fake_server: fk.FakeAnthropic) -> None:
    from orchestrator.providers import make_agent
    from orchestrator.task import Task

    task = Task.model_validate({"name": "t", "question": "q", "generator": {"family": "ioi", "n": 4, "seed": 1},
                                "agent": {"provider": "anthropic"}, "budgets": {"wall_clock_hours": 8}})
    assert make_agent(task, base_url=fake_server.base_url).client.outage_patience_s == 8 * 3600


def test_bad_request_is_not_retried(fake_server: fk.FakeAnthropic, make_client: Callable[..., AnthropicClient]) -> None:
    fake_server.push(fk.error(400, "invalid_request_error", "prompt is too long"))
    result = call(make_client())
    assert "prompt is too long" in (result.error or "") and len(fake_server.requests) == 1


def test_malformed_tool_input_gets_a_repair_turn(fake_server: fk.FakeAnthropic, make_client: Callable[..., AnthropicClient]) -> None:
    fake_server.push(fk.tool_use("{not json"), fk.tool_use(GOOD_PLAN))
    client = make_client()
    result = call(client)
    assert result.value == Plan(**GOOD_PLAN) and result.usage.calls == 2
    repair = fake_server.requests[1].body["messages"]
    assert [m["role"] for m in repair] == ["user", "assistant", "user"]
    assert repair[1]["content"][0]["type"] == "tool_use"
    tool_result = repair[2]["content"][0]
    assert tool_result["type"] == "tool_result" and tool_result["is_error"] is True
    assert tool_result["tool_use_id"] == repair[1]["content"][0]["id"]
    assert "not a JSON object" in tool_result["content"]
    assert_usage_matches(fake_server, client.ledger)


def test_schema_invalid_twice_is_a_recorded_failure(fake_server: fk.FakeAnthropic, make_client: Callable[..., AnthropicClient]) -> None:
    bad = dict(GOOD_PLAN, slug="Not A Slug!")
    fake_server.push(fk.tool_use(bad), fk.tool_use({"hypothesis": ""}))
    client = make_client()
    result = call(client, max_repairs=1)
    assert result.value is None and result.error and "slug" not in result.error.split("after")[0]
    assert "hypothesis" in result.error and result.usage.calls == 2
    assert [r.outcome for r in client.ledger.records] == ["invalid", "invalid"]
    second = fake_server.requests[1].body["messages"][-1]["content"][0]["content"]
    assert "slug" in second and "Not A Slug!" not in second  # names the field, does not echo the value
    assert_usage_matches(fake_server, client.ledger)


def test_text_reply_without_tool_call_is_repaired(fake_server: fk.FakeAnthropic, make_client: Callable[..., AnthropicClient]) -> None:
    fake_server.push(fk.text("I think we should patch.", stop_reason="end_turn"), fk.tool_use(GOOD_PLAN))
    result = call(make_client())
    assert result.value is not None
    msgs = fake_server.requests[1].body["messages"]
    assert msgs[1] == {"role": "assistant", "content": [{"type": "text", "text": "I think we should patch."}]}
    assert "submit_plan" in msgs[2]["content"][0]["text"]


def test_missing_key_gives_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(ProviderConfigError, match="set ANTHROPIC_API_KEY"):
        AnthropicClient("claude-sonnet-4-6")


def test_rejected_key_stops_cleanly_without_echoing_it(fake_server: fk.FakeAnthropic, make_client: Callable[..., AnthropicClient],
                                                       api_key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_server.expected_key = "sk-ant-some-other-key-000000"
    with pytest.raises(ProviderConfigError) as stop:
        call(make_client())
    assert "authentication_error" in str(stop.value) and api_key not in str(stop.value)
    assert stop.value.reason == "provider-config"


def test_error_text_echoing_the_key_is_redacted(fake_server: fk.FakeAnthropic, make_client: Callable[..., AnthropicClient], api_key: str) -> None:
    fake_server.push(fk.error(400, "invalid_request_error", f"bad header {api_key}"))
    result = call(make_client())
    assert result.error and "[redacted]" in result.error and api_key not in result.error
    assert api_key not in json.dumps([r.model_dump() for r in make_client().ledger.records])


def test_budget_is_enforced_before_each_call(fake_server: fk.FakeAnthropic, make_client: Callable[..., AnthropicClient]) -> None:
    fake_server.push(fk.tool_use({"hypothesis": ""}), fk.tool_use(GOOD_PLAN))
    client = make_client(ledger=UsageLedger(Budget(max_tokens=10)))
    with pytest.raises(BudgetExceeded) as stop:
        call(client)  # the first call spends > 10 tokens, so the repair call is refused
    assert stop.value.reason == "budget" and stop.value.usage.calls == 1
    assert len(fake_server.requests) == 1
    with pytest.raises(BudgetExceeded, match="max_tokens=10"):
        call(client)
    assert_usage_matches(fake_server, client.ledger)


def test_dollar_budget(fake_server: fk.FakeAnthropic, make_client: Callable[..., AnthropicClient]) -> None:
    fake_server.push(fk.tool_use(GOOD_PLAN, usage={"input_tokens": 10_000, "output_tokens": 10_000}))
    client = make_client(ledger=UsageLedger(Budget(max_dollars=0.1)))
    assert call(client).value is not None  # $0.18 spent: over budget only after this call
    with pytest.raises(BudgetExceeded, match="dollar"):
        call(client)


def test_usage_per_role_and_experiment_and_sink(fake_server: fk.FakeAnthropic, make_client: Callable[..., AnthropicClient]) -> None:
    sunk: list[dict[str, Any]] = []
    ledger = UsageLedger(sink=lambda r: sunk.append(r.model_dump()))
    client = make_client(ledger=ledger)
    fake_server.push(fk.tool_use(GOOD_PLAN), fk.tool_use(GOOD_PLAN), fk.tool_use(GOOD_PLAN))
    call(client)
    with ledger.experiment(1):
        call(client)
        call(client, role="reflector")
    assert [s["experiment"] for s in sunk] == [None, 1, 1] and [s["role"] for s in sunk] == ["planner", "planner", "reflector"]
    assert ledger.by_experiment()[1].calls == 2 and ledger.by_role()["planner"].calls == 2
    restored = UsageLedger()
    restored.restore(json.loads(json.dumps(ledger.snapshot())))
    assert restored.total() == ledger.total() and restored.by_experiment() == ledger.by_experiment()


def test_key_never_in_logs_records_or_output(fake_server: fk.FakeAnthropic, make_client: Callable[..., AnthropicClient],
                                             api_key: str, capsys: pytest.CaptureFixture[str],
                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # the SDK's and HTTP library's debug logs included
    fake_server.push(fk.rate_limited(0.01), fk.drop(), fk.tool_use({"x": 1}), fk.tool_use(GOOD_PLAN),
                     fk.error(400, "invalid_request_error", "nope"))
    client = make_client()
    with capture_logs() as logs:
        call(client)
        call(client)
        try:
            raise RuntimeError(repr(client))
        except RuntimeError as exc:
            rendered = str(exc)
    out = capsys.readouterr()
    assert any(r.name.startswith("anthropic") for r in caplog.records)
    blob = json.dumps(logs, default=str) + out.out + out.err + caplog.text + rendered + json.dumps(
        [r.model_dump() for r in client.ledger.records]) + json.dumps(client.ledger.snapshot())
    assert logs and api_key not in blob
    with pytest.raises(TypeError):
        import copy
        copy.deepcopy(client)


def test_pricing_table() -> None:
    assert pricing_for("claude-sonnet-4-5-20250929")[0].input == 3.0 and pricing_for("claude-sonnet-5-5")[0].input == 2.0
    assert pricing_for("claude-opus-4-5")[0].input == 5.0 and pricing_for("claude-opus-4-1")[0].input == 15.0
    price, known = pricing_for("some-future-model")
    assert not known and price.output == 75.0


def test_fake_server_rejects_what_the_api_rejects(fake_server: fk.FakeAnthropic, api_key: str) -> None:
    import anthropic

    sdk = anthropic.Anthropic(api_key=api_key, base_url=fake_server.base_url, max_retries=0)
    with pytest.raises(anthropic.BadRequestError, match="tool_result"):
        sdk.messages.create(model="m", max_tokens=5, messages=[
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_x", "content": "x"}]}])
    with pytest.raises(anthropic.BadRequestError, match="unknown tool"):
        sdk.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "hi"}],
                            tools=[{"name": "a", "input_schema": {"type": "object"}}], tool_choice={"type": "tool", "name": "b"})
    with pytest.raises(anthropic.BadRequestError, match="non-empty"):
        sdk.messages.create(model="m", max_tokens=5, system=[{"type": "text", "text": ""}], messages=[{"role": "user", "content": "hi"}])
    assert all(r.delivered for r in fake_server.requests) and fake_server.usage_totals()["input_tokens"] == 0
