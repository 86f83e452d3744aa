"""The small interfaces the loop drives: experiment backend, static guard, verifier.

Why protocols: the loop must not care whether experiments run in a local subprocess, a fake in
tests, or a Ray cluster later (DESIGN.md section 10): submit → handle, wait → outcome, cancel.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from sandbox.schemas import Claim, ExperimentResult


class ExperimentRequest(BaseModel):
    """One experiment to run: the agent's module plus the run's contract and limits."""

    model_config = ConfigDict(extra="forbid")

    attempt: int
    run_dir: Path
    experiment_file: Path
    contract_dir: Path
    seed: int = 0
    timeout_s: float = 300.0
    memory_gb: float = 4.0
    cpu_s: float = 600.0


class ExperimentOutcome(BaseModel):
    """What came back. ``error`` is written for the executor to act on (it is fed back for repair)."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["ok", "error", "timeout", "violation", "rejected", "cancelled"]
    result: ExperimentResult | None = None
    error: str | None = None
    duration_s: float = 0.0
    details: dict[str, Any] = Field(default_factory=dict)


class ExperimentBackend(Protocol):
    """Runs experiments in isolation; handles are opaque to the loop."""

    def submit(self, request: ExperimentRequest) -> Any: ...

    def wait(self, handle: Any, timeout: float | None = None) -> ExperimentOutcome: ...

    def cancel(self, handle: Any) -> None: ...


class Guard(Protocol):
    """The static check before anything runs: None when accepted, else a message the executor can act on."""

    def check(self, code: str) -> str | None: ...


class VerifyRequest(BaseModel):
    """Where a claim comes from and what the run's significance rules are."""

    model_config = ConfigDict(extra="forbid")

    run_dir: Path
    attempt: int
    claim_index: int
    contract_dir: Path
    seed: int
    alpha: float
    correction: Literal["holm", "bh"]
    bootstrap: int
    prior_p_values: list[float] = Field(default_factory=list, description="raw p-values of every claim tested earlier in the run")


class VerificationResult(BaseModel):
    """The verifier's re-derivation of one claim on held-out pairs."""

    model_config = ConfigDict(extra="forbid")

    kept: bool
    effect: float
    ci_low: float
    ci_high: float
    p_value: float
    adjusted_p: float
    noise_floor: float
    n_pairs: int
    reason: str = ""
    statement: str = ""
    claim_index: int = 0
    details: dict[str, Any] = Field(default_factory=dict, description="everything the decision rests on")


class Verifier(Protocol):
    def verify(self, claim: Claim, attempt: VerifyRequest) -> VerificationResult: ...


class AcceptAllGuard:
    """Only checks that the code parses; stands in until sandbox.guard is wired (tests, dry runs)."""

    def check(self, code: str) -> str | None:
        import ast

        try:
            ast.parse(code)
        except SyntaxError as exc:
            return f"syntax error at line {exc.lineno}: {exc.msg}"
        return None
