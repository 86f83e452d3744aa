"""Test-only crash hooks: ORCH_CRASH_AT="point:attempt" SIGKILLs the process at that point.

ORCH_CRASH_SIGNAL=TERM (or INT) sends that signal instead: the CLI turns it into KeyboardInterrupt at
that exact instant, which is how the tests place a Ctrl-C or SIGTERM deterministically.

Why: the crash test needs to kill the loop at exact instants (between ledger write and commit,
mid-commit...). ``point:*`` matches any attempt; for points without an attempt (atomic file
writes) ``point:N`` means the N-th time that point is reached in this process. Unset in
production, each hook costs one environment lookup.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

ENV = "ORCH_CRASH_AT"
SIGNAL_ENV = "ORCH_CRASH_SIGNAL"
_seen: Counter[str] = Counter()


def requested(point: str, attempt: int) -> bool:
    """Whether ORCH_CRASH_AT asks for a crash at ``point`` for ``attempt``."""
    spec = os.environ.get(ENV)
    if not spec:
        return False
    for item in spec.split(","):
        name, _, when = item.strip().partition(":")
        if name == point and when in ("*", str(attempt)):
            return True
    return False


def kill_now() -> None:
    sig = getattr(signal, "SIG" + os.environ.get(SIGNAL_ENV, "KILL").upper(), signal.SIGKILL)
    os.kill(os.getpid(), sig)  # a handled signal raises in this thread before the next bytecode


def crash_point(point: str, attempt: int) -> None:
    """SIGKILL this process if ORCH_CRASH_AT names ``point:attempt`` (or ``point:*``)."""
    if requested(point, attempt):
        kill_now()


def crash_point_nth(point: str) -> None:
    """SIGKILL this process the N-th time ``point`` is reached, if ORCH_CRASH_AT names ``point:N``."""
    if not os.environ.get(ENV):
        return
    _seen[point] += 1
    crash_point(point, _seen[point])
