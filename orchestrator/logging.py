"""Structured JSON event log of a run (logs/run.jsonl), via structlog.

Why a private logger (not structlog.configure): other code in the process (providers, tests) may
configure structlog globally; the run's log must not depend on or disturb that.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any

import structlog


class RunLog:
    """Appends one JSON object per event, line-buffered so a killed run loses at most one event."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = path.open("a", encoding="utf-8", buffering=1)
        self._log = structlog.wrap_logger(
            structlog.PrintLogger(self._file),
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.processors.dict_tracebacks,
                structlog.processors.JSONRenderer(sort_keys=True, default=str),
            ],
        )

    def info(self, event: str, **fields: Any) -> None:
        self._log.info(event, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._log.warning(event, **fields)

    def error(self, event: str, **fields: Any) -> None:
        self._log.error(event, **fields)

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


class NullLog(RunLog):
    """For callers that do not want a log file (library use)."""

    def __init__(self) -> None:  # noqa: D107 - nothing to open
        pass

    def info(self, event: str, **fields: Any) -> None:
        return None

    warning = error = info

    def close(self) -> None:
        return None
