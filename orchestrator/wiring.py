"""Builds the loop's components (agent, experiment backend, guard, verifier) for a task.

Why one place: the CLI must know *before* creating a run directory whether the run can start
(provider available, sandbox present), so that bad input creates nothing. ORCH_COMPONENTS=
"module:function" substitutes a factory ``function(task, run_root) -> Components`` (tests, benches).
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any, Callable

from orchestrator.agent.base import Usage
from orchestrator.loop import Components
from orchestrator.task import Task

ENV = "ORCH_COMPONENTS"


class WiringError(RuntimeError):
    """A component the task needs is not available; the message says what to install or set."""


def _load(spec: str) -> Callable[..., Any]:
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise WiringError(f"{spec}: cannot import {module_name} ({exc})") from None
    factory = getattr(module, attr or "build_components", None)
    if not callable(factory):
        raise WiringError(f"{spec}: {module_name} has no callable {attr or 'build_components'}")
    return factory


def build_agent(task: Task, run_root: Path | None = None) -> Any:
    """The ResearchAgent for ``task.agent.provider`` (provider errors surface before anything is created).

    With ``run_root``, every LLM call is also appended to ``run_root/logs/llm_calls.jsonl``.
    """
    if task.agent.provider == "builtin":
        try:
            from orchestrator.agent.builtin import BuiltinAgent
        except ImportError as exc:
            raise WiringError(f"the builtin agent is not available: {exc}") from None
        return BuiltinAgent(task)
    try:
        from orchestrator.providers import make_agent
        from orchestrator.providers.base import ProviderStop
    except ImportError as exc:
        raise WiringError(f"agent provider {task.agent.provider!r} is not available: {exc}") from None
    options: dict[str, Any] = {}
    if run_root is not None:
        from orchestrator.providers.call_log import CallLog

        options["sink"] = CallLog(Path(run_root) / "logs")
    try:
        return make_agent(task, **options)
    except ProviderStop as exc:
        raise WiringError(f"agent provider {task.agent.provider!r}: {exc}") from None


def build_engine_guide(task: Task) -> str:
    """The engine reference LLM roles read (the builtin agent needs none)."""
    if task.agent.provider == "builtin":
        return ""
    from orchestrator.agent.engine_guide import build_engine_guide as build

    return build()


def build_backend(task: Task, run_root: Path) -> Any:
    """The sandbox backend, after the isolation probe: a machine that cannot isolate experiment code is
    refused here, before the run directory exists, not at the first experiment of an overnight run."""
    try:
        from orchestrator.sandbox_backend import SandboxBackend
        from sandbox.isolation import IsolationUnavailable, isolation_report, require_isolation
    except ImportError as exc:
        raise WiringError(f"the sandbox experiment backend is not available: {exc}") from None
    try:
        require_isolation(isolation_report())
    except IsolationUnavailable as exc:
        raise WiringError(str(exc)) from None
    return SandboxBackend()


def build_guard() -> Any:
    try:
        from orchestrator.sandbox_backend import SandboxGuard
    except ImportError as exc:
        raise WiringError(f"the sandbox static guard is not available: {exc}") from None
    return SandboxGuard()


def build_verifier(task: Task, run_root: Path) -> Any:
    try:
        from orchestrator.verifier import SubprocessVerifier
    except ImportError as exc:
        raise WiringError(f"the verifier is not available: {exc}") from None
    return SubprocessVerifier(task, run_root)


def remaining_budget(task: Task, spent: Usage | None) -> Task:
    """``task`` with token and dollar budgets reduced by what earlier sessions of the run spent.

    Why: a provider's own budget ledger starts at zero in each process, so without this a run
    resumed N times could spend N budgets.
    """
    if spent is None:
        return task
    b = task.budgets
    update: dict[str, Any] = {}
    if b.max_tokens is not None:
        update["max_tokens"] = max(0, b.max_tokens - spent.total_tokens)
    if b.max_dollars is not None:
        update["max_dollars"] = max(0.0, b.max_dollars - spent.dollars)
    return task.model_copy(update={"budgets": b.model_copy(update=update)}) if update else task


def build_components(task: Task, run_root: Path, spent: Usage | None = None) -> Components:
    """Everything a run of ``task`` at ``run_root`` needs; WiringError if anything is missing.

    ``spent``: usage recorded by earlier sessions of this run (on resume), deducted from the agent's budget.
    """
    spec = os.environ.get(ENV)
    if spec:
        components = _load(spec)(task, run_root)
        if not isinstance(components, Components):
            raise WiringError(f"{spec} returned {type(components).__name__}, expected orchestrator.loop.Components")
        return components
    return Components(
        agent=build_agent(remaining_budget(task, spent), run_root),
        backend=build_backend(task, run_root),
        guard=build_guard(),
        verifier=build_verifier(task, run_root),
        engine_guide=build_engine_guide(task),
    )
