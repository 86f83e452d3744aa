"""The ledger (results.jsonl): one line per attempt, append-only, fsynced.

Why a ledger separate from git: it records *every* attempt (kept, discarded, crashed), it is the
source of truth for what happened, and a kept finding's commit must never exist without its line.
A run killed mid-append leaves at most a torn final line; reading drops it and repairs the file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orchestrator.crashpoints import kill_now, requested

Decision = Literal["keep", "discard", "crash", "violation", "rejected", "failed"]


class LedgerEntry(BaseModel):
    """One attempt, as it ended."""

    model_config = ConfigDict(extra="forbid")

    attempt: int = Field(ge=1)
    slug: str = ""
    phase: str = Field(description="the phase the attempt ended in (committing for a normal end)")
    method: str = ""
    hypothesis: str = ""
    plan: dict[str, Any] | None = None
    experiment_file: str | None = None
    experiment_sha256: str | None = None
    contract_sha256: str
    repairs: int = 0
    result_summary: str = ""
    key_figures: dict[str, float] = Field(default_factory=dict)
    statistics: list[dict[str, Any]] = Field(default_factory=list, description="one VerificationResult per claim")
    decision: Decision
    reason: str
    question_answered: bool = False
    answer: str | None = None
    belief_updates: list[str] = Field(default_factory=list)
    next_direction: str = ""
    tokens: int = 0
    dollars: float = 0.0
    calls: int = 0
    durations_s: dict[str, float] = Field(default_factory=dict)
    started_at: str = ""
    ended_at: str = ""


class LedgerCorrupt(RuntimeError):
    """A complete ledger line cannot be parsed or repeats an attempt: the file was edited by hand."""


class Ledger:
    """Append-only JSONL with an in-memory index of the attempts it holds."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._entries: dict[int, LedgerEntry] = {}
        self._loaded = False

    def load(self) -> list[LedgerEntry]:
        """Read every complete line; a torn final line (no newline: the append was cut off) is cut off and
        the file repaired. Any other bad line, or an attempt recorded twice, is LedgerCorrupt: appends are
        single fsynced writes ending in a newline, so those can only come from an edit."""
        self._entries = {}
        self._loaded = True
        if not self.path.exists():
            return []
        raw = self.path.read_bytes()
        lines = raw.split(b"\n")
        good_bytes = 0
        for i, line in enumerate(lines):
            if i == len(lines) - 1:  # no trailing newline: a torn append (or nothing)
                break
            good_bytes += len(line) + 1
            if not line.strip():
                continue
            try:
                entry = LedgerEntry.model_validate_json(line)
            except ValidationError as exc:
                raise LedgerCorrupt(self._fix(i + 1, f"is not a ledger entry ({exc.errors()[0]['msg']})")) from None
            if entry.attempt in self._entries:
                raise LedgerCorrupt(self._fix(i + 1, f"records attempt {entry.attempt} a second time"))
            self._entries[entry.attempt] = entry
        if good_bytes != len(raw):
            self._truncate(good_bytes)
        return self.entries()

    def _fix(self, line_no: int, problem: str) -> str:
        return (f"{self.path}: line {line_no} {problem}. The loop only appends whole lines, so the file was edited; "
                f"restore the lines from the findings branch (`git -C {self.path.parent} show findings:results.jsonl` holds the "
                "ledger up to the last kept finding) or delete the damaged line, then resume")

    def _truncate(self, size: int) -> None:
        with self.path.open("r+b") as f:
            f.truncate(size)
            f.flush()
            os.fsync(f.fileno())

    def entries(self) -> list[LedgerEntry]:
        if not self._loaded:
            self.load()
        return [self._entries[k] for k in sorted(self._entries)]

    def get(self, attempt: int) -> LedgerEntry | None:
        if not self._loaded:
            self.load()
        return self._entries.get(attempt)

    def append(self, entry: LedgerEntry) -> bool:
        """Append ``entry`` unless its attempt is already recorded; return whether a line was written."""
        if self.get(entry.attempt) is not None:
            return False
        line = json.dumps(entry.model_dump(mode="json"), sort_keys=True, separators=(",", ":")) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            data = line.encode("utf-8")
            if requested("ledger-torn", entry.attempt):  # test hook: die half-way through the line
                os.write(fd, data[: len(data) // 2])
                os.fsync(fd)
                kill_now()
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        self._entries[entry.attempt] = entry
        return True


def read_ledger(path: Path) -> list[LedgerEntry]:
    """Entries of a ledger file without repairing it (for status/review on a run that may be live)."""
    out: dict[int, LedgerEntry] = {}
    if not path.exists():
        return []
    for line in path.read_bytes().split(b"\n"):
        if not line.strip():
            continue
        try:
            entry = LedgerEntry.model_validate_json(line)
        except ValidationError:
            continue
        out.setdefault(entry.attempt, entry)
    return [out[k] for k in sorted(out)]
