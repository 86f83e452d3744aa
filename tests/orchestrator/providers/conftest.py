"""Fixtures: a running fake Messages API server and an AnthropicClient pointed at it with fast retries."""

from __future__ import annotations

import uuid
from typing import Any, Callable, Iterator

import pytest

from tests.fakes.anthropic_server import FakeAnthropic


@pytest.fixture
def api_key(monkeypatch: pytest.MonkeyPatch) -> str:
    """A unique fake key in the environment, so tests can grep for it anywhere it must not appear."""
    key = f"sk-ant-test-{uuid.uuid4().hex}"
    monkeypatch.setenv("ANTHROPIC_API_KEY", key)
    return key


@pytest.fixture
def fake_server(api_key: str) -> Iterator[FakeAnthropic]:
    with FakeAnthropic(expected_key=api_key) as server:
        yield server


@pytest.fixture
def make_client(fake_server: FakeAnthropic) -> Callable[..., Any]:
    from orchestrator.providers.anthropic_client import AnthropicClient

    def make(**overrides: Any) -> AnthropicClient:
        opts: dict[str, Any] = dict(
            base_url=fake_server.base_url, timeout_s=0.5, max_retries=6,
            backoff_initial_s=0.01, backoff_max_s=0.05, retry_after_cap_s=0.5,
        )
        opts.update(overrides)
        return AnthropicClient(opts.pop("model", "claude-sonnet-4-6"), **opts)

    return make
