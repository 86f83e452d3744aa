"""A per-experiment cgroup: caps the processes/threads and the memory of the whole tree, and finds every
process to kill.

Root is exempt from RLIMIT_NPROC, a setsid() grandchild leaves the process group, and RLIMIT_AS is per
process (a child that forks N times may use N times the limit); a cgroup catches all three. The memory
cgroup is made INSIDE the orchestrator's own memory cgroup, so it only ever tightens the limits the
orchestrator already runs under. Used only when the machine lets us create one (detected by
sandbox.isolation).
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

V1_ROOT = Path("/sys/fs/cgroup/pids")
V1_MEMORY = Path("/sys/fs/cgroup/memory")
V2_ROOT = Path("/sys/fs/cgroup")
PARENT_NAME = "interp-sandbox"


class CgroupUnavailable(OSError):
    """No writable pids (or memory) cgroup hierarchy on this machine."""


def _v2() -> bool:
    return not (V1_ROOT / "cgroup.procs").exists() and (V2_ROOT / "cgroup.subtree_control").exists()


def _base() -> Path:
    if (V1_ROOT / "cgroup.procs").exists():
        return V1_ROOT / PARENT_NAME
    controllers = V2_ROOT / "cgroup.subtree_control"
    if controllers.exists() and "pids" in controllers.read_text().split():
        return V2_ROOT / PARENT_NAME
    raise CgroupUnavailable("no pids cgroup controller is mounted where the sandbox can use it")


def _own_v1_memory() -> Path:
    """This process's memory cgroup directory (cgroup v1)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, rel = line.split(":", 2)
        if "memory" in controllers.split(","):
            path = V1_MEMORY / rel.lstrip("/")
            if (path / "memory.limit_in_bytes").exists():
                return path
    raise CgroupUnavailable("no cgroup v1 memory controller for this process")


class TreeCgroup:
    """A fresh cgroup with ``pids.max`` (and ``memory`` bytes for the whole tree, when given);
    ``procs_files`` are what a launcher writes its pid into."""

    def __init__(self, max_pids: int, memory: int | None = None) -> None:
        base = _base()
        base.mkdir(exist_ok=True)
        v2 = base.parent == V2_ROOT
        if v2:
            sub = base / "cgroup.subtree_control"
            wanted = {"pids", *(("memory",) if memory else ())}
            missing = wanted - set(sub.read_text().split())
            if missing:
                sub.write_text(" ".join(f"+{c}" for c in sorted(missing)))
        name = f"run-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self.path = base / name
        self.path.mkdir()
        self.memory_path: Path | None = None
        try:
            (self.path / "pids.max").write_text(str(max_pids))
            if memory and v2:
                (self.path / "memory.max").write_text(str(memory))
                if (self.path / "memory.swap.max").exists():
                    (self.path / "memory.swap.max").write_text("0")
            elif memory:
                self.memory_path = _own_v1_memory() / f"{PARENT_NAME}-{name}"
                self.memory_path.mkdir()
                (self.memory_path / "memory.limit_in_bytes").write_text(str(memory))
        except OSError:
            self.remove()
            raise

    @property
    def procs_files(self) -> list[Path]:
        return [self.path / "cgroup.procs"] + ([self.memory_path / "cgroup.procs"] if self.memory_path else [])

    @property
    def procs_file(self) -> Path:
        return self.path / "cgroup.procs"

    def pids(self) -> list[int]:
        try:
            return [int(x) for x in self.procs_file.read_text().split()]
        except (OSError, ValueError):
            return []

    def oom_killed(self) -> bool:
        """Whether the kernel killed a process of this tree for exceeding the memory limit."""
        events = self.memory_path / "memory.oom_control" if self.memory_path else self.path / "memory.events"
        try:
            lines = events.read_text().splitlines()
        except OSError:
            return False
        return any(line.startswith("oom_kill ") and line.split()[1] != "0" for line in lines)

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
        for path in (self.path, self.memory_path):
            if path is not None:
                _rmdir(path, self.pids)


def _rmdir(path: Path, pids) -> None:
    for _ in range(100):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:  # EBUSY while the last processes are reaped
            time.sleep(0.02)
    raise OSError(f"cannot remove cgroup {path}: processes remain {pids()}")


def cgroup_available() -> bool:
    """Whether a pids cgroup can be created and removed here (tries it once)."""
    return _try(None)


def memory_cgroup_available() -> bool:
    """Whether a memory-capped cgroup for a child's whole process tree can be created here."""
    return _try(256 << 20)


def _try(memory: int | None) -> bool:
    try:
        group = TreeCgroup(8, memory)
    except (OSError, CgroupUnavailable):
        return False
    try:
        group.remove()
    except OSError:
        return False
    return True
