"""A per-experiment pids cgroup: caps the number of processes/threads and finds every process to kill.

Root is exempt from RLIMIT_NPROC, and a setsid() grandchild leaves the process group; a cgroup
catches both. Used only when the machine lets us create one (detected by sandbox.isolation).
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

V1_ROOT = Path("/sys/fs/cgroup/pids")
V2_ROOT = Path("/sys/fs/cgroup")
PARENT_NAME = "interp-sandbox"


class CgroupUnavailable(OSError):
    """No writable pids cgroup hierarchy on this machine."""


def _base() -> Path:
    if (V1_ROOT / "cgroup.procs").exists():
        return V1_ROOT / PARENT_NAME
    controllers = V2_ROOT / "cgroup.subtree_control"
    if controllers.exists() and "pids" in controllers.read_text().split():
        return V2_ROOT / PARENT_NAME
    raise CgroupUnavailable("no pids cgroup controller is mounted where the sandbox can use it")


class PidsCgroup:
    """A fresh cgroup with ``pids.max``; ``procs_file`` is what a launcher writes its pid into."""

    def __init__(self, max_pids: int) -> None:
        base = _base()
        base.mkdir(exist_ok=True)
        if base.parent == V2_ROOT:
            sub = base / "cgroup.subtree_control"
            if "pids" not in sub.read_text().split():
                sub.write_text("+pids")
        self.path = base / f"run-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self.path.mkdir()
        (self.path / "pids.max").write_text(str(max_pids))

    @property
    def procs_file(self) -> Path:
        return self.path / "cgroup.procs"

    def pids(self) -> list[int]:
        try:
            return [int(x) for x in self.procs_file.read_text().split()]
        except (OSError, ValueError):
            return []

    def kill_all(self, attempts: int = 50) -> None:
        """SIGKILL every process in the cgroup until it is empty (fork races are retried)."""
        for _ in range(attempts):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    continue
            time.sleep(0.02)

    def remove(self) -> None:
        self.kill_all()
        for _ in range(100):
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:  # EBUSY while the last processes are reaped
                time.sleep(0.02)
        raise OSError(f"cannot remove cgroup {self.path}: processes remain {self.pids()}")


def cgroup_available() -> bool:
    """Whether a pids cgroup can be created and removed here (tries it once)."""
    try:
        group = PidsCgroup(8)
    except (OSError, CgroupUnavailable):
        return False
    try:
        group.remove()
    except OSError:
        return False
    return True
