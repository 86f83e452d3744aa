"""The real experiment backend and guard: adapters from the loop's interfaces to sandbox/.

Why a thread per experiment: sandbox.runner.run_experiment is synchronous (it supervises one
isolated child); wrapping it in a future gives the loop submit → handle, wait → outcome and
cancel without assuming one experiment at a time (DESIGN.md section 10).
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from orchestrator.interfaces import ExperimentOutcome, ExperimentRequest
from sandbox import guard as sandbox_guard
from sandbox import runner as sandbox_runner
from sandbox.schemas import ExperimentOutcome as SandboxOutcome
from sandbox.schemas import ResourceLimits

# sandbox status → loop status. "error" and "rejected" are fed back to the executor for repair.
_STATUS = {
    "ok": "ok",
    "rejected": "rejected",
    "crashed": "error",
    "invalid_result": "error",
    "resource_limit": "error",
    "timeout": "timeout",
    "violation": "violation",
    "cancelled": "cancelled",
}


@dataclass
class SandboxHandle:
    attempt: int
    future: Future[SandboxOutcome]
    cancel_event: threading.Event


def limits_for(request: ExperimentRequest) -> ResourceLimits:
    return ResourceLimits(timeout_s=request.timeout_s, memory_mb=max(64, int(request.memory_gb * 1024)),
                          cpu_s=max(1, int(request.cpu_s)))


def _feedback(outcome: SandboxOutcome) -> str:
    """The part of a failed outcome an executor can act on: the reason and the end of stderr."""
    tail = outcome.stderr_tail.strip().splitlines()[-15:]
    return outcome.reason + ("\nstderr (last lines):\n" + "\n".join(tail) if tail else "")


class SandboxBackend:
    """Runs each experiment through sandbox.runner in an isolated child, one worker thread each."""

    def __init__(self, max_parallel: int = 1) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max_parallel, thread_name_prefix="experiment")

    def submit(self, request: ExperimentRequest) -> SandboxHandle:
        cancel = threading.Event()
        future = self._pool.submit(
            sandbox_runner.run_experiment, request.run_dir, request.experiment_file, request.attempt,
            limits=limits_for(request), cancel=cancel, write_result=False,  # the loop writes results/ on success
        )
        return SandboxHandle(request.attempt, future, cancel)

    def wait(self, handle: SandboxHandle, timeout: float | None = None) -> ExperimentOutcome:
        raw = handle.future.result(timeout=timeout)
        status = _STATUS.get(raw.status, "error")
        details = raw.model_dump(mode="json", exclude={"result", "stdout_tail"})
        if status == "ok" and raw.result is not None:
            return ExperimentOutcome(status="ok", result=raw.result, duration_s=raw.durations.total_s, details=details)
        return ExperimentOutcome(status=status, error=_feedback(raw), duration_s=raw.durations.total_s,  # type: ignore[arg-type]
                                 details=details)

    def cancel(self, handle: SandboxHandle) -> None:
        handle.cancel_event.set()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class SandboxGuard:
    """The sandbox's AST guard: None when accepted, else the issues as the executor should read them."""

    def check(self, code: str) -> str | None:
        issues = sandbox_guard.check_source(code, "experiment.py")
        return sandbox_guard.format_issues(issues) if issues else None
