"""LLM clients behind one interface (anthropic, mlx); the builtin agent needs none.

Imports are lazy so that the builtin path never loads the anthropic SDK.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from orchestrator.agent.llm import LLMAgent
    from orchestrator.providers.base import CallRecord, LLMClient, UsageLedger
    from orchestrator.task import Task


def make_client(provider: str, model: str | None = None, *, max_tokens: int | None = None,
                max_dollars: float | None = None, sink: "Callable[[CallRecord], None] | None" = None,
                ledger: "UsageLedger | None" = None, **options: Any) -> "LLMClient":
    """An LLMClient for ``provider`` with a ledger enforcing the given budget; options go to the client.

    Clients that must share one budget (a feature run's explainer and scorer) are given one ``ledger``;
    the budget arguments and ``sink`` are then that ledger's business.
    """
    from orchestrator.providers.base import Budget, UsageLedger

    if ledger is None:
        ledger = UsageLedger(Budget(max_tokens=max_tokens, max_dollars=max_dollars), sink=sink)
    elif max_tokens is not None or max_dollars is not None or sink is not None:
        raise ValueError("make_client: give either a shared ledger or budget/sink arguments, not both")
    if provider == "anthropic":
        from orchestrator.providers.anthropic_client import DEFAULT_MODEL, AnthropicClient

        return AnthropicClient(model or DEFAULT_MODEL, ledger=ledger, **options)
    if provider == "mlx":
        from orchestrator.providers.mlx_client import MLXClient

        return MLXClient(model or "smollm2-135m", ledger=ledger, **options)
    raise ValueError(f"unknown LLM provider {provider!r}: use 'anthropic' or 'mlx' (or 'builtin' for no LLM)")


def make_agent(task: "Task", **options: Any) -> "LLMAgent":
    """The LLMAgent for ``task.agent`` (provider, model, max_repairs) under ``task.budgets``.

    Raises ProviderConfigError (e.g. ANTHROPIC_API_KEY not set) before anything is created.
    """
    from orchestrator.agent.llm import LLMAgent

    if task.agent.provider == "anthropic":  # wait out an API outage rather than end an overnight run
        options.setdefault("outage_patience_s", task.budgets.wall_clock_hours * 3600)
    client = make_client(task.agent.provider, task.agent.model, max_tokens=task.budgets.max_tokens,
                         max_dollars=task.budgets.max_dollars, **options)
    # Local models have small contexts and slow prefill: only the executor reads the engine guide.
    guide_roles = ("executor",) if task.agent.provider == "mlx" else ("planner", "executor")
    return LLMAgent(client, max_repairs=task.agent.max_repairs, guide_roles=guide_roles)
