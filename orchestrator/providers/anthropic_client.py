"""Anthropic Messages API provider: structured output through one forced tool, repair turns,
tenacity retries, prompt caching of the stable prefix, and per-call accounting.

The SDK's own retries are disabled (max_retries=0) so that every attempt, wait and billed call
goes through this module's policy and the ledger. The API key is read from the environment,
handed to the SDK and otherwise only used to redact error text; it is never logged or stored.
"""

from __future__ import annotations

import email.utils
import os
import random
import time
from typing import Any, TypeVar

import anthropic
import httpx2
import structlog
from pydantic import BaseModel
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from orchestrator.agent.base import StepResult, Usage
from orchestrator.providers.base import (
    BudgetExceeded,
    CallRecord,
    Pricing,
    ProviderConfigError,
    ProviderStop,
    UsageLedger,
    pricing_for,
    redact,
)
from orchestrator.providers.validation import input_schema_for, tool_name_for, validate

M = TypeVar("M", bound=BaseModel)
log = structlog.get_logger("orchestrator.providers.anthropic")

DEFAULT_MODEL = "claude-sonnet-4-6"
EPHEMERAL = {"type": "ephemeral"}


class ProviderUnavailable(ProviderStop):
    """Several consecutive calls failed even after retries: the API is down or refusing us."""

    reason = "provider-unavailable"


class MalformedResponse(Exception):
    """A 2xx response that is not a Message: treated like a dropped connection (retried)."""


class _CallFailed(Exception):
    def __init__(self, error: BaseException, attempts: int) -> None:
        super().__init__(str(error))
        self.error, self.attempts = error, attempts


def _retryable(exc: BaseException) -> bool:
    """429, 408, 5xx (500, 529 overloaded, ...), dropped connections and timeouts; obey x-should-retry."""
    if isinstance(exc, anthropic.APIStatusError):
        hint = exc.response.headers.get("x-should-retry")
        if hint in ("true", "false"):
            return hint == "true"
        return exc.status_code in (408, 429) or exc.status_code >= 500
    return isinstance(exc, (anthropic.APIConnectionError, anthropic.APIResponseValidationError, MalformedResponse))


def _retry_after(exc: BaseException | None) -> float | None:
    """Seconds the server asked us to wait (retry-after-ms, retry-after seconds or HTTP date)."""
    if not isinstance(exc, anthropic.APIStatusError):
        return None
    headers = exc.response.headers
    try:
        if headers.get("retry-after-ms") is not None:
            return float(headers["retry-after-ms"]) / 1000
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return float(value)
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return when.timestamp() - time.time()
    except (TypeError, ValueError):
        return None


def _usage(msg: Any, pricing: Pricing) -> Usage:
    u = msg.usage
    usage = Usage(
        calls=1,
        input_tokens=u.input_tokens or 0,
        output_tokens=u.output_tokens or 0,
        cache_creation_input_tokens=getattr(u, "cache_creation_input_tokens", None) or 0,
        cache_read_input_tokens=getattr(u, "cache_read_input_tokens", None) or 0,
    )
    return usage.model_copy(update={"dollars": pricing.dollars(usage)})


def _assistant_turn(content: list[Any]) -> list[dict[str, Any]]:
    """The reply as request blocks (text and tool_use only; a non-object tool input becomes {})."""
    blocks: list[dict[str, Any]] = []
    for b in content:
        if b.type == "text" and b.text:
            blocks.append({"type": "text", "text": b.text})
        elif b.type == "tool_use":
            blocks.append({"type": "tool_use", "id": b.id, "name": b.name,
                           "input": b.input if isinstance(b.input, dict) else {}})
    return blocks


class AnthropicClient:
    """LLMClient over the Messages API. Raises ProviderStop subclasses only for run-ending conditions."""

    name = "anthropic"

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        api_key_env: str = "ANTHROPIC_API_KEY",
        base_url: str | None = None,
        timeout_s: float = 180.0,
        max_retries: int = 6,
        pricing: Pricing | None = None,
        ledger: UsageLedger | None = None,
        max_output_tokens: int = 8192,
        temperature: float | None = None,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 60.0,
        retry_after_cap_s: float = 120.0,
        max_consecutive_failures: int = 3,
        outage_patience_s: float = 0.0,
        outage_probe_s: tuple[float, float] = (60.0, 900.0),
    ) -> None:
        key = os.environ.get(api_key_env, "").strip()
        if not key:
            raise ProviderConfigError(
                f"the anthropic provider needs an API key: set {api_key_env} in the environment "
                f"(e.g. `export {api_key_env}=...`); it is read from there only and never written to disk"
            )
        self.model = model
        self.pricing, known = pricing_for(model, pricing)
        if not known:
            log.warning("llm.pricing_unknown", model=model, assumed=self.pricing.__dict__,
                        hint="pass pricing=Pricing(...) for exact dollar accounting")
        self.ledger = ledger or UsageLedger()
        self.max_retries = max_retries
        self.max_output_tokens = max_output_tokens
        self.temperature = temperature
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.retry_after_cap_s = retry_after_cap_s
        self.max_consecutive_failures = max_consecutive_failures
        self._consecutive_failures = 0
        # An overnight run should outlive an API outage: after max_consecutive_failures, wait and probe
        # (first, then doubling up to the second of outage_probe_s) for up to outage_patience_s before stopping.
        self.outage_patience_s = outage_patience_s
        self.outage_probe_s = outage_probe_s
        self._outage_started: float | None = None
        self._sleep = time.sleep  # tests substitute a recorder
        self._secret = key  # only for redacting error text
        self._sdk = anthropic.Anthropic(
            api_key=key, base_url=base_url, max_retries=0,
            timeout=httpx2.Timeout(timeout_s, connect=min(10.0, timeout_s)),
        )

    def __repr__(self) -> str:
        return f"AnthropicClient(model={self.model!r})"

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError("AnthropicClient holds a credential and cannot be pickled or copied")

    # -- retries --------------------------------------------------------------------------------
    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        backoff = wait_exponential_jitter(multiplier=self.backoff_initial_s, max=self.backoff_max_s,
                                          jitter=self.backoff_initial_s)(state)
        asked = _retry_after(exc)
        if asked is None:
            return backoff
        return min(max(asked, 0.0), self.retry_after_cap_s) + random.uniform(0, self.backoff_initial_s)

    def _log_retry(self, role: str, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning("llm.retry", provider=self.name, role=role, attempt=state.attempt_number,
                    error=type(exc).__name__, status=getattr(exc, "status_code", None),
                    wait_s=round(state.upcoming_sleep, 3))

    def _create(self, role: str, **kwargs: Any) -> tuple[Any, int]:
        """One billed message, retried on transient failures; returns (message, failed attempts).

        On failure raises _CallFailed carrying the last error and how many attempts were made."""
        retrying = Retrying(
            stop=stop_after_attempt(self.max_retries + 1),
            wait=self._wait,
            retry=retry_if_exception(_retryable),
            before_sleep=lambda s: self._log_retry(role, s),
            reraise=True,
        )
        try:
            msg = retrying(self._create_once, **kwargs)
        except (anthropic.APIError, MalformedResponse) as exc:
            raise _CallFailed(exc, int(retrying.statistics.get("attempt_number", 1))) from exc
        return msg, int(retrying.statistics.get("attempt_number", 1)) - 1

    def _create_once(self, **kwargs: Any) -> Any:
        try:
            msg = self._sdk.messages.create(**kwargs)
        except ValueError as exc:  # a 200 whose body is not valid JSON (truncated by a proxy, ...)
            raise MalformedResponse(f"response body is not valid JSON: {str(exc)[:200]}") from exc
        if not isinstance(msg, anthropic.types.Message):
            raise MalformedResponse(f"response is not a Message object (got {type(msg).__name__})")
        return msg

    def _describe(self, exc: BaseException) -> str:
        status = getattr(exc, "status_code", None)
        text = f"{type(exc).__name__}" + (f" (HTTP {status})" if status else "") + f": {exc}"
        return redact(text, self._secret)[:1000]

    # -- the structured call ---------------------------------------------------------------------
    def structured(
        self, *, role: str, system: str, cacheable_context: str, prompt: str,
        schema: type[M], max_repairs: int = 2,
    ) -> StepResult[M]:
        tool = tool_name_for(schema)
        system_blocks: list[dict[str, Any]] = [{"type": "text", "text": system.strip() or f"You are the {role}."}]
        if cacheable_context.strip():
            system_blocks.append({"type": "text", "text": cacheable_context})
        system_blocks[-1]["cache_control"] = dict(EPHEMERAL)
        tools = [{"name": tool, "description": (schema.__doc__ or f"Submit the {role} output.").strip()[:1024],
                  "input_schema": input_schema_for(schema)}]
        messages: list[dict[str, Any]] = [{"role": "user", "content": [{"type": "text", "text": prompt or "(no input)"}]}]
        total = Usage()
        error = ""
        for repair in range(max_repairs + 1):
            try:
                self.ledger.check_budget()
            except BudgetExceeded as exc:
                raise BudgetExceeded(str(exc), usage=total) from None
            started = time.monotonic()
            kwargs: dict[str, Any] = dict(
                model=self.model, max_tokens=self.max_output_tokens, system=system_blocks, tools=tools,
                tool_choice={"type": "tool", "name": tool}, messages=messages,
            )
            if self.temperature is not None:  # not a named argument in this SDK version
                kwargs["extra_body"] = {"temperature": self.temperature}
            while True:
                try:
                    msg, retries = self._create(role, **kwargs)
                    break
                except _CallFailed as failed:
                    if isinstance(failed.error, (anthropic.AuthenticationError, anthropic.PermissionDeniedError,
                                                 anthropic.NotFoundError)):
                        raise ProviderConfigError(
                            f"anthropic API refused the request ({self._describe(failed.error)}): "
                            f"check the model name {self.model!r} and the API key", usage=total) from None
                    step = self._failed_call(role, repair, total, failed, started)
                    if step is not None:
                        return step
                    started = time.monotonic()  # waited out part of an outage: probe with the same request
            self._consecutive_failures = 0
            self._outage_started = None
            usage = _usage(msg, self.pricing)
            total = total + usage
            value, error = self._read(msg, tool, schema)
            self.ledger.record(CallRecord(
                provider=self.name, model=self.model, role=role, repair=repair, retries=retries, usage=usage,
                duration_s=round(time.monotonic() - started, 3), outcome="ok" if value is not None else "invalid",
                detail=(error or "")[:500]))
            log.info("llm.call", provider=self.name, role=role, repair=repair, retries=retries,
                     ok=value is not None, **usage.model_dump())
            if value is not None:
                return StepResult(value=value, usage=total)
            messages.extend(self._repair_turn(msg, tool, error or "invalid output"))
        return StepResult(usage=total, error=f"{role}: invalid output after {max_repairs} repair turn(s): {error}")

    def _outage_wait(self) -> float:
        """Seconds to wait before the next probe, or 0 when the outage has outlasted the patience."""
        now = time.monotonic()
        if self._outage_started is None:
            self._outage_started = now
        left = self.outage_patience_s - (now - self._outage_started)
        if left <= 0:
            return 0.0
        first, cap = self.outage_probe_s
        probes = self._consecutive_failures - self.max_consecutive_failures
        return min(first * 2 ** probes, cap, left)

    def _read(self, msg: Any, tool: str, schema: type[M]) -> tuple[M | None, str | None]:
        block = next((b for b in msg.content if b.type == "tool_use" and b.name == tool), None)
        if block is None:
            return None, f"no {tool} tool call in the reply (stop_reason={msg.stop_reason}): call the {tool} tool"
        value, error = validate(schema, block.input)
        if error and msg.stop_reason == "max_tokens":
            error += f"\n(the reply was cut off at max_tokens={self.max_output_tokens}: keep the answer shorter)"
        return value, error

    def _repair_turn(self, msg: Any, tool: str, error: str) -> list[dict[str, Any]]:
        """The assistant's reply plus a user turn that carries the validation error."""
        assistant = _assistant_turn(msg.content)
        ask = f"Your {tool} input was rejected:\n{error}\nCall {tool} again with the complete, corrected input."
        uses = [b for b in assistant if b["type"] == "tool_use"]
        turns: list[dict[str, Any]] = []
        if assistant:
            turns.append({"role": "assistant", "content": assistant})
        if uses:
            results = [{"type": "tool_result", "tool_use_id": b["id"], "is_error": True, "content": ask} for b in uses]
            turns.append({"role": "user", "content": results})
        else:
            turns.append({"role": "user", "content": [{"type": "text", "text": ask}]})
        return turns

    def _failed_call(self, role: str, repair: int, total: Usage, failed: "_CallFailed",
                     started: float) -> StepResult[Any] | None:
        """Retries exhausted (or a non-retryable request error): a failed step; None after waiting out part of
        an outage (the caller probes again with the same request); a stop once the outage outlasts the patience."""
        detail = f"{self._describe(failed.error)} [{failed.attempts} attempt(s)]"
        self._consecutive_failures += 1
        self.ledger.record(CallRecord(provider=self.name, model=self.model, role=role, repair=repair,
                                      retries=failed.attempts, usage=Usage(), outcome="error", detail=detail,
                                      duration_s=round(time.monotonic() - started, 3)))
        log.error("llm.call_failed", provider=self.name, role=role, error=detail,
                  consecutive=self._consecutive_failures)
        if self._consecutive_failures >= self.max_consecutive_failures:
            wait = self._outage_wait()
            if wait > 0:
                log.warning("llm.outage_wait", provider=self.name, role=role, wait_s=round(wait, 1),
                            outage_s=round(time.monotonic() - (self._outage_started or 0.0), 1),
                            patience_s=self.outage_patience_s)
                self._sleep(wait)
                return None
            raise ProviderUnavailable(
                f"anthropic API failed on {self._consecutive_failures} consecutive calls after retries "
                f"(outage patience {self.outage_patience_s:.0f} s spent); last: {detail}",
                usage=total)
        return StepResult(usage=total, error=f"{role}: anthropic call failed after retries: {detail}")
