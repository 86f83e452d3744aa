"""Per-call LLM records land in the run directory (logs/llm_calls.jsonl), crash-tolerant."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from orchestrator.agent.base import Usage
from orchestrator.providers.base import CallRecord
from orchestrator.providers.call_log import FILE_NAME, CallLog, read_call_log
from tests.fakes import anthropic_server as fk


def _record(role: str, tokens: int) -> CallRecord:
    return CallRecord(provider="anthropic", model="m", role=role, usage=Usage(input_tokens=tokens, calls=1))


def test_records_round_trip_and_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    sink = CallLog(tmp_path / "logs")
    sink(_record("planner", 10))
    sink(_record("executor", 20))
    with open(tmp_path / "logs" / FILE_NAME, "a") as fh:
        fh.write('{"provider": "anthr')  # killed mid-write
    got = read_call_log(tmp_path / "logs")
    assert [(r.role, r.usage.input_tokens) for r in got] == [("planner", 10), ("executor", 20)]


def test_a_corrupt_line_before_the_end_is_an_error(tmp_path: Path) -> None:
    (tmp_path / FILE_NAME).write_text("not json\n" + _record("planner", 1).model_dump_json() + "\n")
    with pytest.raises(ValueError):
        read_call_log(tmp_path)


class _Answer(BaseModel):
    """Submit the answer."""

    text: str


def test_wired_agent_writes_every_call_to_the_run_dir(tmp_path: Path, fake_server: fk.FakeAnthropic,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.task import Task
    from orchestrator.wiring import build_agent

    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake_server.base_url)
    task = Task.model_validate({
        "name": "t", "question": "q", "generator": {"family": "factual_recall", "n": 4, "seed": 1},
        "agent": {"provider": "anthropic", "max_repairs": 0}, "budgets": {"max_experiments": 1}})
    agent = build_agent(task, tmp_path)
    fake_server.push_for("submit_answer", fk.server_error(), fk.tool_use({"text": "hi"}))
    with agent.client.ledger.experiment(3):
        step = agent.client.structured(role="planner", system="s", cacheable_context="", prompt="p", schema=_Answer)
    assert step.error is None and step.value.text == "hi"
    records = read_call_log(tmp_path / "logs")
    assert len(records) == 1 and records[0].role == "planner" and records[0].experiment == 3
    assert records[0].retries == 1 and records[0].usage.total_tokens > 0
