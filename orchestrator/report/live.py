"""Is a run being driven right now, and when will it end? (for `status`)

Why look at the lock from outside instead of taking it: `status` must never disturb a live run,
and even a momentary lock would make a starting `resume` fail. On Linux /proc/locks tells exactly
whether someone holds the run's flock; elsewhere the pid written in the lock file is probed.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path


def lock_holder(lock_path: Path) -> tuple[bool | None, int | None]:
    """(held, pid): held is None when it cannot be told on this system."""
    if not lock_path.is_file():
        return False, None
    try:
        text = lock_path.read_text(encoding="utf-8", errors="replace").strip()
        pid = int(text) if text.isdigit() else None
    except OSError:
        pid = None
    locks = Path("/proc/locks")
    if locks.is_file():
        inode = os.stat(lock_path).st_ino
        for line in locks.read_text(encoding="ascii", errors="replace").splitlines():
            parts = line.split()
            if len(parts) >= 6 and parts[1] == "FLOCK" and parts[5].rsplit(":", 1)[-1] == str(inode):
                return True, int(parts[4]) if parts[4].isdigit() else pid
        return False, pid
    if pid is None:
        return None, None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False, pid
    except PermissionError:
        return True, pid
    return True, pid


def seconds_since(iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        then = datetime.fromisoformat(iso)
    except ValueError:
        return None
    if then.tzinfo is None:
        then = then.replace(tzinfo=timezone.utc)
    return max(0.0, (datetime.now(timezone.utc) - then).total_seconds())


def eta_seconds(*, finished: bool, elapsed_s: float, completed: int, in_flight: int,
                max_experiments: int | None, wall_clock_hours: float | None) -> float | None:
    """Seconds until the run stops: the sooner of its experiment budget (at the pace so far) and its clock.

    None when there is no basis for an estimate yet (no experiment finished and no wall-clock budget).
    """
    if finished:
        return 0.0
    estimates = []
    if max_experiments is not None and completed > 0:
        remaining = max(0.0, max_experiments - completed - 0.5 * in_flight)
        estimates.append(remaining * elapsed_s / completed)
    if wall_clock_hours is not None:
        estimates.append(max(0.0, wall_clock_hours * 3600 - elapsed_s))
    return min(estimates) if estimates else None
