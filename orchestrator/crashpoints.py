"""Test-only crash hooks: ORCH_CRASH_AT="point:attempt" SIGKILLs the process at that point.

Why: the crash test needs to kill the loop at exact instants (between ledger write and commit,
mid-commit...). Unset in production, the hook costs one dict lookup.
"""

from __future__ import annotations

import os
import signal

ENV = "ORCH_CRASH_AT"


def crash_point(point: str, attempt: int) -> None:
    """Kill this process with SIGKILL if ORCH_CRASH_AT names ``point:attempt`` (or ``point:*``)."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    for item in spec.split(","):
        name, _, when = item.strip().partition(":")
        if name == point and when in ("*", str(attempt)):
            os.kill(os.getpid(), signal.SIGKILL)
