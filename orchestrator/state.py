"""Where the loop is: state.json (global) and state/attempt-NNNN.json (one record per attempt).

Why per-attempt records keyed by id: several experiments may be in flight later (DESIGN.md
section 10), and each record holds what the agent already produced (plan, code, analysis...) so a
resume never pays twice for an LLM call. Both files are written atomically before each phase acts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from orchestrator.agent.base import Usage
from orchestrator.agent.schemas import Analysis, Plan, Reflection
from orchestrator.fsutil import atomic_write_text

Phase = Literal[
    "planning", "writing", "guarding", "running", "verifying", "analysing", "reflecting", "committing", "done"
]
PHASES: tuple[str, ...] = (
    "planning", "writing", "guarding", "running", "verifying", "analysing", "reflecting", "committing", "done"
)


class RunState(BaseModel):
    """Global loop state; ``in_flight`` maps attempt id → its current phase."""

    version: int = 1
    run_id: str
    task_name: str
    seed: int = 0
    status: Literal["created", "running", "stopped", "finished"] = "created"
    next_attempt: int = 1
    in_flight: dict[int, str] = Field(default_factory=dict)
    completed: int = 0
    kept: int = 0
    elapsed_s: float = 0.0
    usage: Usage = Field(default_factory=Usage)
    stop_reason: str | None = None
    answer: str | None = None
    sessions: int = 0
    updated_at: str = ""


class AttemptRecord(BaseModel):
    """Everything one attempt has produced so far, saved before the next phase starts."""

    attempt: int
    phase: Phase = "planning"
    started_at: str = ""
    plan: Plan | None = None
    slug: str = ""
    repairs: int = 0
    feedback: str | None = None
    code_sha256: str | None = None
    experiment_file: str | None = None
    guard_ok: bool = False
    outcome: dict[str, Any] | None = None
    verifications: list[dict[str, Any]] = Field(default_factory=list)
    claims_skipped: int = 0
    analysis: Analysis | None = None
    reflection: Reflection | None = None
    decision: str | None = None
    reason: str = ""
    ended_in: str = ""
    usage: Usage = Field(default_factory=Usage)
    durations_s: dict[str, float] = Field(default_factory=dict)


class StateCorrupt(RuntimeError):
    """state.json or an attempt record does not parse. Both are only ever replaced atomically, so a
    bad file was edited or damaged by something other than the loop; the message says which and what to do."""


def _parse(model: type[BaseModel], path: Path) -> Any:
    try:
        return model.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in err.get("loc", ())) or "the file"
        raise StateCorrupt(
            f"{path}: not a valid {model.__name__} ({where}: {err['msg']}). The loop replaces this file atomically, "
            "so it was edited or damaged by hand; put back the original (e.g. from a backup of the run directory) "
            "or start a new run — results.jsonl and the findings branch still hold every finished attempt"
        ) from None


class StateStore:
    """Reads and atomically writes the run's state files."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.path = run_dir / "state.json"
        self.attempt_dir = run_dir / "state"

    def exists(self) -> bool:
        return self.path.is_file()

    def load(self) -> RunState:
        return _parse(RunState, self.path)

    def save(self, state: RunState) -> None:
        atomic_write_text(self.path, state.model_dump_json(indent=1) + "\n")

    def attempt_path(self, attempt: int) -> Path:
        return self.attempt_dir / f"attempt-{attempt:04d}.json"

    def load_attempt(self, attempt: int) -> AttemptRecord | None:
        path = self.attempt_path(attempt)
        if not path.is_file():
            return None
        return _parse(AttemptRecord, path)

    def save_attempt(self, record: AttemptRecord) -> None:
        self.attempt_dir.mkdir(exist_ok=True)
        atomic_write_text(self.attempt_path(record.attempt), record.model_dump_json(indent=1) + "\n")


def read_state(run_dir: Path) -> dict[str, Any]:
    """state.json as a plain dict (for status on a live run, without validation surprises)."""
    return json.loads((run_dir / "state.json").read_text(encoding="utf-8"))
