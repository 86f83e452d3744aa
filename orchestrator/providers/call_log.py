"""Per-call LLM records appended to the run directory (logs/llm_calls.jsonl).

Why a file: the morning reviewer (and a resumed run's accounting audit) needs every billed call —
role, experiment, tokens, dollars, retries, outcome — not only the totals the ledger line carries.
Each line is written whole and fsynced, so a kill leaves at most one torn last line, which readers skip.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from orchestrator.providers.base import CallRecord

FILE_NAME = "llm_calls.jsonl"


class CallLog:
    """A sink for UsageLedger: one JSON line per CallRecord."""

    def __init__(self, logs_dir: Path) -> None:
        self.path = Path(logs_dir) / FILE_NAME
        self._lock = threading.Lock()

    def __call__(self, record: CallRecord) -> None:
        line = (record.model_dump_json() + "\n").encode("utf-8")
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)


def read_call_log(logs_dir: Path) -> list[CallRecord]:
    """Every complete record; a torn last line (killed mid-write) is skipped, any other bad line raises."""
    path = Path(logs_dir) / FILE_NAME
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    out: list[CallRecord] = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            out.append(CallRecord.model_validate_json(line))
        except ValueError:
            if i == len(lines) - 1:
                break
            raise
    return out
