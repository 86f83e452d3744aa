"""The one interface the loop uses to run experiments (DESIGN.md section 10).

submit → handle, wait(handle) → validated ExperimentOutcome, cancel(handle). The local backend runs
each experiment in its own isolated subprocess from a small thread pool; a cluster backend (e.g. Ray)
can implement the same protocol without the loop changing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from sandbox.isolation import IsolationReport, isolation_report
from sandbox.runner import run_experiment
from sandbox.schemas import ExperimentOutcome, ResourceLimits


class ExperimentRequest(BaseModel):
    """One experiment to run: which file, in which run directory, under which number and limits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_dir: Path
    experiment: Path
    number: int = Field(ge=0)
    limits: ResourceLimits = Field(default_factory=ResourceLimits)
    guard: bool = Field(default=True, description="False only in tests of the OS layer")


@dataclass(frozen=True)
class ExperimentHandle:
    """Opaque ticket for a submitted experiment."""

    id: str
    number: int


class UnknownHandle(KeyError):
    """wait/cancel on a handle this backend did not issue (or already collected)."""


class ModelWarmError(RuntimeError):
    """The model could not be converted/cached before sandboxed work (children cannot write the cache)."""


@runtime_checkable
class ExperimentBackend(Protocol):
    def submit(self, request: ExperimentRequest) -> ExperimentHandle: ...

    def wait(self, handle: ExperimentHandle, timeout: float | None = None) -> ExperimentOutcome: ...

    def cancel(self, handle: ExperimentHandle) -> None: ...


@dataclass
class _Job:
    future: Future
    request: ExperimentRequest
    cancel: threading.Event = field(default_factory=threading.Event)


def warm_model(model: str, timeout_s: float = 1800.0) -> None:
    """Convert and cache ``model``'s weights (trusted, unsandboxed ``python -m engine.warm``)."""
    from engine.blas import blas_env

    env = {**os.environ, **blas_env(warn=False)}
    proc = subprocess.run([sys.executable, "-I", "-m", "engine.warm", model], capture_output=True, text=True,
                          timeout=timeout_s, env=env, check=False)
    if proc.returncode != 0:
        raise ModelWarmError(f"could not prepare model {model!r}: {proc.stderr.strip()[-2000:]}")


class LocalSubprocessBackend:
    """Runs experiments as isolated local subprocesses, ``max_parallel`` at a time."""

    def __init__(self, max_parallel: int = 1, scratch_root: Path | None = None,
                 warm_models: tuple[str, ...] = ()) -> None:
        for model in warm_models:
            warm_model(model)
        self.report: IsolationReport = isolation_report()
        self.scratch_root = scratch_root
        self._pool = ThreadPoolExecutor(max_workers=max_parallel, thread_name_prefix="sandbox")
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.Lock()

    def submit(self, request: ExperimentRequest) -> ExperimentHandle:
        handle = ExperimentHandle(id=uuid.uuid4().hex, number=request.number)
        cancel = threading.Event()
        future = self._pool.submit(run_experiment, request.run_dir, request.experiment, request.number,
                                   limits=request.limits, guard=request.guard, scratch_root=self.scratch_root,
                                   cancel=cancel)
        with self._lock:
            self._jobs[handle.id] = _Job(future=future, request=request, cancel=cancel)
        return handle

    def _job(self, handle: ExperimentHandle) -> _Job:
        with self._lock:
            job = self._jobs.get(handle.id)
        if job is None:
            raise UnknownHandle(f"no experiment with handle {handle.id} (number {handle.number}) on this backend")
        return job

    def wait(self, handle: ExperimentHandle, timeout: float | None = None) -> ExperimentOutcome:
        """The validated outcome; raises TimeoutError if ``timeout`` passes first (the run continues)."""
        job = self._job(handle)
        try:
            outcome = job.future.result(timeout=timeout)
        except FutureTimeout as exc:
            raise TimeoutError(f"experiment {handle.number} still running after {timeout} s") from exc
        except CancelledError:
            outcome = ExperimentOutcome(number=job.request.number, experiment=job.request.experiment.name,
                                        status="cancelled", reason="cancelled before it started",
                                        guard_enabled=job.request.guard, isolation=self.report.layers)
        with self._lock:
            self._jobs.pop(handle.id, None)
        return outcome

    def cancel(self, handle: ExperimentHandle) -> None:
        """Kill the experiment's process tree (or drop it if it has not started); wait() then reports it."""
        job = self._job(handle)
        job.cancel.set()
        job.future.cancel()

    def shutdown(self) -> None:
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.cancel.set()
        self._pool.shutdown(wait=True, cancel_futures=True)
