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


def build_agent(task: Task) -> Any:
    """The ResearchAgent for ``task.agent.provider``."""
    provider = task.agent.provider
    if provider == "builtin":
        try:
            module = importlib.import_module("orchestrator.agent.builtin")
        except ModuleNotFoundError:
            raise WiringError("the builtin agent (orchestrator/agent/builtin.py) is not installed yet") from None
        return module.BuiltinAgent(task)
    try:
        providers = importlib.import_module("orchestrator.providers")
        make = getattr(providers, "make_agent")
    except (ModuleNotFoundError, AttributeError):
        raise WiringError(f"agent provider {provider!r} is not available yet (orchestrator.providers.make_agent)") from None
    return make(task)


def build_backend(task: Task, run_root: Path) -> Any:
    try:
        module = importlib.import_module("sandbox.backend")
        return module.LocalBackend()
    except (ModuleNotFoundError, AttributeError):
        raise WiringError("the sandbox experiment backend (sandbox.backend.LocalBackend) is not available yet") from None


def build_guard() -> Any:
    try:
        module = importlib.import_module("sandbox.guard")
        return module.Guard()
    except (ModuleNotFoundError, AttributeError):
        raise WiringError("the sandbox static guard (sandbox.guard.Guard) is not available yet") from None


def build_verifier(task: Task, run_root: Path) -> Any:
    try:
        module = importlib.import_module("orchestrator.verifier")
        return module.SubprocessVerifier(task, run_root)
    except (ModuleNotFoundError, AttributeError):
        raise WiringError("the verifier (orchestrator.verifier.SubprocessVerifier) is not available yet") from None


def build_components(task: Task, run_root: Path) -> Components:
    """Everything a run of ``task`` at ``run_root`` needs; WiringError if anything is missing."""
    spec = os.environ.get(ENV)
    if spec:
        components = _load(spec)(task, run_root)
        if not isinstance(components, Components):
            raise WiringError(f"{spec} returned {type(components).__name__}, expected orchestrator.loop.Components")
        return components
    return Components(
        agent=build_agent(task),
        backend=build_backend(task, run_root),
        guard=build_guard(),
        verifier=build_verifier(task, run_root),
    )
