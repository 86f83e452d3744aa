"""The LLM client interface, the errors that stop a run, and token/dollar accounting with budgets.

Why a ledger object here and not in the loop: a single role step can make several calls (repairs,
retries), and the budget must be checked before *each* call, so the client needs it. The loop reads
it (totals per role and per experiment), persists ``snapshot()`` and restores it on resume.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Protocol, TypeVar

from pydantic import BaseModel, Field

from orchestrator.agent.base import StepResult, Usage

M = TypeVar("M", bound=BaseModel)


class LLMClient(Protocol):
    """One structured call: returns a value validated against ``schema`` or an error, never raw text."""

    name: str
    ledger: "UsageLedger"

    def structured(
        self, *, role: str, system: str, cacheable_context: str, prompt: str,
        schema: type[M], max_repairs: int = 2,
    ) -> StepResult[M]: ...


class ProviderStop(Exception):
    """The run cannot usefully continue with this provider; the loop stops cleanly with ``reason``."""

    reason: str = "provider"

    def __init__(self, message: str, *, usage: Usage | None = None) -> None:
        super().__init__(message)
        self.usage = usage or Usage()  # spent by the step before it stopped (already in the ledger)


class BudgetExceeded(ProviderStop):
    """The task's token or dollar budget is spent; raised before a call that would exceed it."""

    reason = "budget"


class ProviderConfigError(ProviderStop):
    """Missing key, bad credentials, unknown model, malformed request: retrying cannot help."""

    reason = "provider-config"


@dataclass(frozen=True)
class Pricing:
    """US dollars per million tokens."""

    input: float
    output: float
    cache_write: float
    cache_read: float

    def dollars(self, usage: Usage) -> float:
        return (
            usage.input_tokens * self.input
            + usage.output_tokens * self.output
            + usage.cache_creation_input_tokens * self.cache_write
            + usage.cache_read_input_tokens * self.cache_read
        ) / 1_000_000


# Longest prefix wins. Sources: platform.claude.com/docs/en/about-claude/pricing (checked 2026-11);
# cache writes are the 5-minute TTL price (1.25x input). Haiku 5.5 is its <=100k-token-prompt tier.
PRICING: dict[str, Pricing] = {
    "claude-fable-5-1": Pricing(10.0, 50.0, 12.50, 0.25),
    "claude-mythos-5-1": Pricing(10.0, 50.0, 12.50, 0.25),
    "claude-fable-5": Pricing(10.0, 50.0, 12.50, 1.00),
    "claude-mythos-5": Pricing(10.0, 50.0, 12.50, 1.00),
    "claude-opus-5-5": Pricing(4.0, 20.0, 5.00, 0.20),
    "claude-opus-5": Pricing(5.0, 25.0, 6.25, 0.50),
    "claude-opus-4-8": Pricing(5.0, 25.0, 6.25, 0.50),
    "claude-opus-4-7": Pricing(5.0, 25.0, 6.25, 0.50),
    "claude-opus-4-6": Pricing(5.0, 25.0, 6.25, 0.50),
    "claude-opus-4-5": Pricing(5.0, 25.0, 6.25, 0.50),
    "claude-opus-4-1": Pricing(15.0, 75.0, 18.75, 1.50),
    "claude-opus-4": Pricing(15.0, 75.0, 18.75, 1.50),
    "claude-sonnet-5-5": Pricing(2.0, 10.0, 2.50, 0.10),
    "claude-sonnet-5": Pricing(2.0, 10.0, 2.50, 0.20),
    "claude-sonnet-4": Pricing(3.0, 15.0, 3.75, 0.30),
    "claude-3-7-sonnet": Pricing(3.0, 15.0, 3.75, 0.30),
    "claude-haiku-5-5": Pricing(0.10, 0.50, 0.125, 0.01),
    "claude-haiku-4-5": Pricing(1.0, 5.0, 1.25, 0.10),
    "claude-3-5-haiku": Pricing(0.80, 4.0, 1.0, 0.08),
}
# Unknown models are priced like the most expensive known one, so a budget is never under-counted.
DEFAULT_PRICING = Pricing(15.0, 75.0, 18.75, 1.50)
FREE = Pricing(0.0, 0.0, 0.0, 0.0)


def pricing_for(model: str, override: Pricing | None = None) -> tuple[Pricing, bool]:
    """(pricing, known): the override, the longest matching prefix, or the conservative default."""
    if override is not None:
        return override, True
    matches = [p for p in PRICING if model.startswith(p)]
    if matches:
        return PRICING[max(matches, key=len)], True
    return DEFAULT_PRICING, False


@dataclass(frozen=True)
class Budget:
    """Task limits on LLM spend; None means unlimited."""

    max_tokens: int | None = None
    max_dollars: float | None = None


class CallRecord(BaseModel):
    """One billed API call (or local generation), as written to the ledger sink."""

    ts: float = Field(default_factory=time.time)
    provider: str
    model: str
    role: str
    experiment: int | None = None
    repair: int = 0  # 0 = first call of the step, n = n-th repair turn
    retries: int = 0  # failed attempts before this one (not billed)
    usage: Usage
    duration_s: float = 0.0
    outcome: str = "ok"  # "ok" | "invalid" | "error"
    detail: str = ""


_experiment: contextvars.ContextVar[int | None] = contextvars.ContextVar("llm_experiment", default=None)


class UsageLedger:
    """Thread-safe accounting of LLM usage per call, per role and per experiment, with budget checks."""

    def __init__(self, budget: Budget | None = None, sink: Callable[[CallRecord], None] | None = None) -> None:
        self.budget = budget or Budget()
        self.sink = sink
        self._lock = threading.Lock()
        self._records: list[CallRecord] = []
        self._base_total = Usage()  # restored from a previous process (resume)
        self._base_roles: dict[str, Usage] = {}
        self._base_experiments: dict[int, Usage] = {}

    @contextlib.contextmanager
    def experiment(self, number: int | None) -> Iterator[None]:
        """Attribute calls made inside this block (in this thread/context) to experiment ``number``."""
        token = _experiment.set(number)
        try:
            yield
        finally:
            _experiment.reset(token)

    def check_budget(self) -> None:
        """Raise BudgetExceeded if the budget is already spent (called before every call)."""
        total = self.total()
        b = self.budget
        if b.max_tokens is not None and total.total_tokens >= b.max_tokens:
            raise BudgetExceeded(f"LLM token budget spent: {total.total_tokens} of max_tokens={b.max_tokens}")
        if b.max_dollars is not None and total.dollars >= b.max_dollars:
            raise BudgetExceeded(f"LLM dollar budget spent: ${total.dollars:.4f} of max_dollars=${b.max_dollars:.2f}")

    def record(self, record: CallRecord) -> CallRecord:
        if record.experiment is None:
            record = record.model_copy(update={"experiment": _experiment.get()})
        with self._lock:
            self._records.append(record)
        if self.sink is not None:
            self.sink(record)
        return record

    @property
    def records(self) -> list[CallRecord]:
        with self._lock:
            return list(self._records)

    def total(self) -> Usage:
        with self._lock:
            out = self._base_total
            for r in self._records:
                out = out + r.usage
        return out

    def by_role(self) -> dict[str, Usage]:
        with self._lock:
            out = dict(self._base_roles)
            for r in self._records:
                out[r.role] = out.get(r.role, Usage()) + r.usage
        return out

    def by_experiment(self) -> dict[int, Usage]:
        """Usage per experiment number; calls made outside any experiment are not included."""
        with self._lock:
            out = dict(self._base_experiments)
            for r in self._records:
                if r.experiment is not None:
                    out[r.experiment] = out.get(r.experiment, Usage()) + r.usage
        return out

    def snapshot(self) -> dict[str, Any]:
        """JSON-able totals for state.json / reports (records themselves go to the sink)."""
        return {
            "total": self.total().model_dump(),
            "by_role": {k: v.model_dump() for k, v in self.by_role().items()},
            "by_experiment": {str(k): v.model_dump() for k, v in self.by_experiment().items()},
        }

    def add_external(self, usage: Usage, role: str) -> None:
        """Count calls billed by another process (the trusted verifier child, which logs its own records)."""
        with self._lock:
            self._base_total = self._base_total + usage
            self._base_roles[role] = self._base_roles.get(role, Usage()) + usage

    def remaining(self) -> Budget:
        """What is left of the budget, for a child process that must stay inside it (None = unlimited)."""
        total, b = self.total(), self.budget
        return Budget(
            max_tokens=None if b.max_tokens is None else max(0, b.max_tokens - total.total_tokens),
            max_dollars=None if b.max_dollars is None else max(0.0, b.max_dollars - total.dollars),
        )

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Carry totals over from a killed run so the budget holds across resume."""
        with self._lock:
            self._base_total = Usage(**snapshot.get("total", {}))
            self._base_roles = {k: Usage(**v) for k, v in snapshot.get("by_role", {}).items()}
            self._base_experiments = {int(k): Usage(**v) for k, v in snapshot.get("by_experiment", {}).items()}


# --- secrets ------------------------------------------------------------------------------------

SECRET_NAME = re.compile(r"(API_?KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL|AUTH)", re.IGNORECASE)


def redact(text: str, *secrets: str | None) -> str:
    """Replace every occurrence of the given secrets (and anything key-shaped) in ``text``."""
    for s in secrets:
        if s:
            text = text.replace(s, "[redacted]")
    return re.sub(r"sk-ant-[A-Za-z0-9_\-]{8,}", "[redacted]", text)


def scrubbed_env(base: dict[str, str] | None = None, keep: tuple[str, ...] = ()) -> dict[str, str]:
    """A child-process environment without anything that looks like a credential."""
    env = dict(os.environ if base is None else base)
    return {k: v for k, v in env.items() if k in keep or not SECRET_NAME.search(k)}
