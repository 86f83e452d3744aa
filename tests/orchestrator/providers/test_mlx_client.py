"""MLXClient: a misbehaving child is a failed step, never a crash; the child never sees secrets.

Most tests use tests/fakes/fake_mlx_worker.py (no mlx, fast); one test runs the real worker on the
embedded SmolLM2-135M model.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest
from pydantic import BaseModel

from orchestrator.agent.schemas import Plan
from orchestrator.providers.base import Budget, BudgetExceeded, ProviderConfigError, UsageLedger
from orchestrator.providers.mlx_client import MLXClient, MLXUnavailable, worker_env

FAKE = str(Path(__file__).resolve().parents[2] / "fakes" / "fake_mlx_worker.py")


class Person(BaseModel):
    name: str
    age: int


def fake_client(mode: str, *extra: str, **kw: object) -> MLXClient:
    opts: dict = dict(request_timeout_s=5.0, startup_timeout_s=10.0)
    opts.update(kw)
    return MLXClient("fake", worker_command=[sys.executable, "-I", FAKE, mode, *extra], **opts)


def ask(client: MLXClient, schema: type[BaseModel] = Person, max_repairs: int = 1):
    return client.structured(role="planner", system="sys", cacheable_context="ctx", prompt="Alice is 30.",
                             schema=schema, max_repairs=max_repairs)


def test_valid_json_is_validated_and_counted() -> None:
    with fake_client("valid", '"name": "Alice", "age": 30,}  trailing prose') as client:
        result = ask(client)
    assert result.value == Person(name="Alice", age=30)
    assert result.usage.calls == 1 and result.usage.input_tokens == 100 and result.usage.dollars == 0.0
    assert client.ledger.by_role()["planner"].output_tokens == 7


def test_garbage_is_repaired_then_a_failed_step() -> None:
    with fake_client("garbage") as client:
        result = ask(client, Plan, max_repairs=2)
    assert result.value is None and "invalid output after 2 repair" in (result.error or "")
    assert [r.outcome for r in client.ledger.records] == ["invalid"] * 3


@pytest.mark.parametrize("mode", ["crash", "protocol"])
def test_dead_or_confused_worker_is_a_failed_step_then_a_stop(mode: str) -> None:
    with fake_client(mode, max_consecutive_failures=2) as client:
        first = ask(client)
        assert first.value is None and "mlx generation failed" in (first.error or "")
        with pytest.raises(MLXUnavailable):
            ask(client)


def test_hung_worker_is_killed_on_timeout() -> None:
    client = fake_client("hang", request_timeout_s=0.5)
    started = time.monotonic()
    result = ask(client)
    assert result.value is None and "within" in (result.error or "")
    assert time.monotonic() - started < 10
    assert client.worker_pid is None  # killed, restarted on the next call
    client.close()


def test_model_that_cannot_load_is_a_config_stop() -> None:
    with fake_client("badload") as client, pytest.raises(ProviderConfigError, match="not found"):
        ask(client)


def test_budget_in_tokens() -> None:
    with fake_client("garbage", ledger=UsageLedger(Budget(max_tokens=50))) as client:
        with pytest.raises(BudgetExceeded) as stop:
            ask(client)
    assert stop.value.usage.calls == 1


def test_worker_env_has_no_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-ant-test-mlx-env-0123456789"
    base = {"PATH": "/usr/bin", "HOME": "/root", "ANTHROPIC_API_KEY": secret, "GITHUB_TOKEN": "ghp_x",
            "AWS_SECRET_ACCESS_KEY": "y", "ENGINE_CACHE_DIR": "/tmp/c"}
    env = worker_env(base)
    assert secret not in json.dumps(env) and "GITHUB_TOKEN" not in env and "AWS_SECRET_ACCESS_KEY" not in env
    assert env["ENGINE_CACHE_DIR"] == "/tmp/c" and env["HF_HUB_OFFLINE"] == "1"
    monkeypatch.setenv("ANTHROPIC_API_KEY", secret)
    with fake_client("env") as client:
        answer = client.structured(role="x", system="", cacheable_context="", prompt="p", schema=Person, max_repairs=0)
        assert answer.value is not None
        child_env = answer.value.name  # the fake answered with its environment
        if client.worker_pid and sys.platform.startswith("linux"):
            assert secret.encode() not in Path(f"/proc/{client.worker_pid}/environ").read_bytes()
    assert secret not in child_env and "ANTHROPIC_API_KEY" not in child_env


@pytest.mark.embedded
def test_embedded_model_ends_cleanly_whatever_it_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-ant-test-embedded-0123456789"
    monkeypatch.setenv("ANTHROPIC_API_KEY", secret)
    with MLXClient("smollm2-135m", max_new_tokens=48, request_timeout_s=240, startup_timeout_s=240) as client:
        person = ask(client, Person, max_repairs=1)
        plan = ask(client, Plan, max_repairs=0)
        pid = client.worker_pid
        assert pid is not None and secret.encode() not in Path(f"/proc/{pid}/environ").read_bytes()
    for result in (person, plan):
        assert (result.value is None) != (result.error is None)
        assert result.usage.calls >= 1 and result.usage.input_tokens > 0
    assert not os.path.exists(f"/proc/{pid}")
