"""The run directory (DESIGN.md section 4): layout, creation, opening and the single-writer lock.

Why build in a temporary sibling and rename: a failure half-way (bad contract, git error) then
leaves no half-made run directory that `resume` would trip over.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from orchestrator.contract import ContractFailure, ContractSpec, write_contract
from orchestrator.fsutil import atomic_write_text, fsync_dir
from orchestrator.ratchet import Ratchet
from orchestrator.state import RunState, StateStore
from orchestrator.task import Task


class RunDirError(RuntimeError):
    """A path that is not a usable run directory; the message says what is missing."""


@dataclass(frozen=True)
class RunDir:
    root: Path

    @property
    def task_yaml(self) -> Path:
        return self.root / "task.yaml"

    @property
    def program_md(self) -> Path:
        return self.root / "program.md"

    @property
    def contract(self) -> Path:
        return self.root / "contract"

    @property
    def experiments(self) -> Path:
        return self.root / "experiments"

    @property
    def results(self) -> Path:
        return self.root / "results"

    @property
    def findings(self) -> Path:
        return self.root / "findings"

    @property
    def ledger(self) -> Path:
        return self.root / "results.jsonl"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def lock_path(self) -> Path:
        return self.root / ".lock"

    @property
    def split_record(self) -> Path:
        """state/split.json: the exploration/held-out split seed (private when the task gives none)."""
        return self.root / "state" / "split.json"

    @property
    def noise_floor(self) -> Path:
        """state/noise_floor.json: null families measured once per run (sandbox.noise_floor)."""
        return self.root / "state" / "noise_floor.json"

    def experiment_path(self, attempt: int, slug: str) -> Path:
        return self.experiments / f"{attempt:04d}-{slug}.py"

    def result_path(self, attempt: int) -> Path:
        return self.results / f"{attempt:04d}.json"

    def finding_path(self, attempt: int, slug: str) -> Path:
        return self.findings / f"{attempt:04d}-{slug}.md"

    def rel(self, path: Path) -> str:
        return str(path.relative_to(self.root))


class SplitRecord(BaseModel):
    """How the run's pairs were split. Kept under state/ in the run directory, which sandboxed children
    never see (bubblewrap hides the whole run directory) and the findings branch never holds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int
    source: Literal["task", "private"]
    held_out_fraction: float
    n_pairs: int
    held_out_sha256: str  # of the held-out pairs as written to the contract (a resumed run can check them)


def pairs_digest(pairs: list) -> str:
    return hashlib.sha256(json.dumps([p.model_dump() for p in pairs], sort_keys=True).encode()).hexdigest()


def draw_split_seed(task: Task) -> tuple[int, Literal["task", "private"]]:
    """The task's split seed if it gives one, else a fresh private one (63 bits from ``secrets``)."""
    if task.split.seed is not None:
        return task.split.seed, "task"
    return secrets.randbits(63), "private"


def load_split_record(run: RunDir) -> SplitRecord:
    try:
        return SplitRecord.model_validate_json(run.split_record.read_bytes())
    except FileNotFoundError:
        raise RunDirError(f"{run.root}: no {run.rel(run.split_record)} (made before split seeds were recorded)") from None


def utc_stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def default_run_dir(task: Task, runs_root: Path = Path("runs")) -> Path:
    return runs_root / f"{task.name}-{utc_stamp()}"


def program_text(task: Task, n_explore: int, n_held: int) -> str:
    """program.md: what the agent is asked and under which rules."""
    b = task.budgets
    return (
        f"# Research programme: {task.name}\n\n## Question\n{task.question.strip()}\n\n"
        f"## Setting\n- model: `{task.model}`\n- metric: `{task.metric}` (fixed by contract/metrics.py)\n"
        f"- prompt pairs: {n_explore} for exploration (what experiments see); {n_held} held out for the verifier\n"
        f"- alignment: {task.alignment or 'equal-length prompts'}\n\n"
        "## Rules\n- Write one experiment module per plan defining `run(ctx)`; import only the engine's public API, "
        "numpy, math, statistics, itertools, functools, collections, dataclasses, typing.\n"
        "- Never touch contract/; it is hashed before and after every experiment.\n"
        "- A finding is kept only when its claim is re-derived by the verifier on held-out pairs at "
        f"alpha={task.significance.alpha} ({task.significance.correction}-corrected).\n\n"
        f"## Budgets\n- experiments: {b.max_experiments}\n- wall clock: {b.wall_clock_hours} h\n"
        f"- tokens: {b.max_tokens if b.max_tokens is not None else 'unlimited'}\n"
        f"- dollars: {b.max_dollars if b.max_dollars is not None else 'unlimited'}\n"
        + (f"\n## Notes\n{task.notes.strip()}\n" if task.notes.strip() else "")
    )


def is_run_dir(path: Path) -> bool:
    return (path / "task.yaml").is_file() and (path / "contract").is_dir() and (path / ".git").exists()


def _remove_dead_creations(path: Path) -> None:
    """Half-built siblings of ``path`` whose creating process was killed (its pid is in the name)."""
    for tmp in path.parent.glob(f".{path.name}.creating-*"):
        pid = tmp.name[len(f".{path.name}.creating-"):].split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(tmp, ignore_errors=True)
        except PermissionError:
            pass


def create_run_dir(path: Path, task: Task, task_text: str) -> RunDir:
    """Create a complete run directory at ``path`` (which must not exist or be empty)."""
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise RunDirError(f"{path} already exists and is not an empty directory; choose another --run-dir")
    parent = path.parent
    parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_creations(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.creating-{os.getpid()}-", dir=parent))
    try:
        split_seed, source = draw_split_seed(task)
        explore, held = task.split_pairs(split_seed)
        atomic_write_text(tmp / "task.yaml", task_text)
        atomic_write_text(tmp / "program.md", program_text(task, len(explore), len(held)))
        spec = ContractSpec(task_name=task.name, model=task.model, metric=task.metric, seed=task.seed,
                            exploration=explore, held_out=held)
        try:
            write_contract(tmp, spec)
        except ContractFailure as exc:
            raise RunDirError(f"cannot write the contract: {exc}") from None
        for sub in ("experiments", "results", "findings", "logs", "state"):
            (tmp / sub).mkdir()
        record = SplitRecord(seed=split_seed, source=source, held_out_fraction=task.split.held_out_fraction,
                             n_pairs=len(explore) + len(held), held_out_sha256=pairs_digest(held))
        atomic_write_text(tmp / "state" / "split.json", record.model_dump_json(indent=1) + "\n")
        Ratchet.init(tmp, ["contract", "task.yaml", "program.md"], f"contract: {task.name}\n\nThe run's immutable setup.\n")
        StateStore(tmp).save(RunState(run_id=path.name, task_name=task.name, seed=task.seed, updated_at=utc_now()))
        if path.exists():
            path.rmdir()
        os.rename(tmp, path)
        fsync_dir(parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return RunDir(path)


def open_run_dir(path: Path) -> RunDir:
    """An existing run directory, or RunDirError naming what is missing."""
    if not path.exists():
        raise RunDirError(f"{path}: no such run directory")
    if not path.is_dir():
        raise RunDirError(f"{path}: not a directory; give a run directory made by `python -m orchestrator run`")
    missing = [n for n in ("task.yaml", "contract/contract.lock", "state.json", ".git") if not (path / n).exists()]
    if missing:
        raise RunDirError(f"{path}: not a run directory (missing {', '.join(missing)}); give a directory made by `run`")
    if not os.access(path, os.R_OK | os.X_OK):
        raise RunDirError(f"{path}: cannot read the run directory (permissions)")
    return RunDir(path)


class RunLocked(RunDirError):
    """Another live process holds the run's lock."""


class RunLock:
    """An exclusive fcntl lock on RUN_DIR/.lock: two processes must never drive one run.

    The kernel drops an fcntl lock when its holder dies, so a killed run never blocks a resume. The file
    holds the holder's pid and is emptied on a clean release; a pid found in it on acquiring is the
    stale trace of a holder that died (``stale_pid``), which the caller reports.
    """

    def __init__(self, run: RunDir) -> None:
        self.path = run.lock_path
        self._fd: int | None = None
        self.stale_pid: str | None = None

    def acquire(self) -> "RunLock":
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise RunDirError(f"{self.path}: cannot open the run's lock file ({exc.strerror}); it must be a regular "
                              "file the loop can write: remove whatever is at that path, then resume") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise RunLocked(f"{self.path.parent}: another process (pid {holder}) is running it; wait for it to end "
                                f"or stop it (kill {holder}), then resume") from None
            raise
        previous = os.pread(fd, 32, 0).decode(errors="replace").strip()
        self.stale_pid = previous if previous and previous != str(os.getpid()) else None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)  # a clean end leaves no pid behind
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
