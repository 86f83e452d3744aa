"""Fixtures for sandbox tests: a run directory with a committed contract, a private scratch root,
and a watcher that proves nothing outside the scratch directory changed."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox.contract import contract_digest, create_contract
from sandbox.isolation import CHILD_UID, UID_POOL, isolation_report
from sandbox.schemas import PromptPair, ResourceLimits

EXPLORATION = [
    PromptPair(clean="The Eiffel Tower is in the city of", corrupted="The Colosseum is in the city of",
               correct=" Paris", wrong=" Rome"),
    PromptPair(clean="The Colosseum is in the city of", corrupted="The Eiffel Tower is in the city of",
               correct=" Rome", wrong=" Paris"),
]
HELD_OUT = [
    PromptPair(clean="The Louvre is located in the city of", corrupted="The Vatican is located in the city of",
               correct=" Paris", wrong=" Rome"),
    PromptPair(clean="The Brandenburg Gate is in the city of", corrupted="The Eiffel Tower is in the city of",
               correct=" Berlin", wrong=" Paris"),
]
FAST = ResourceLimits(timeout_s=5.0, memory_mb=1024, cpu_s=20, file_size_mb=16, open_files=64, processes=32,
                      output_cap_bytes=1_000_000, tail_bytes=4000, result_cap_bytes=1_000_000, tmp_size_mb=32,
                      scratch_size_mb=32)
PROJECT = Path(__file__).resolve().parents[2]


def make_run_dir(path: Path) -> Path:
    path.mkdir(parents=True)
    create_contract(path, "smollm2-135m", EXPLORATION, HELD_OUT, metric="logit_diff", seed=7, family="capitals",
                    commit=True)
    return path


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return make_run_dir(tmp_path / "run")


@pytest.fixture
def scratch_root(tmp_path: Path) -> Path:
    root = tmp_path / "scratch"
    root.mkdir()
    return root


def tree_state(root: Path, skip: tuple[Path, ...] = ()) -> dict[str, tuple[int, str]]:
    """size and sha256 of every file under root (symlinks by target), skipping ``skip`` subtrees."""
    state: dict[str, tuple[int, str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        dirnames[:] = [n for n in dirnames if d / n not in skip and n != "__pycache__"]
        for name in filenames:
            p = d / name
            if p.is_symlink():
                state[str(p)] = (-1, os.readlink(p))
            else:
                state[str(p)] = (p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
    return state


def sandbox_uid_processes(marker: str, any_uid: bool = False) -> list[int]:
    """Processes still running as the sandbox uid whose environment mentions ``marker`` (this test's
    scratch root: other engineers' sandboxes may run concurrently on the same machine)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                status = (entry / "status").read_text()
                environ = (entry / "environ").read_bytes()
            except OSError:
                continue
            uid_line = next((line for line in status.splitlines() if line.startswith("Uid:")), "")
            uid = int(uid_line.split()[1]) if uid_line else -1
            if (any_uid or uid in UID_POOL or uid == CHILD_UID) and marker.encode() in environ:
                pids.append(int(entry.name))
    return pids


@pytest.fixture(scope="session")
def canary():
    """A long-lived process standing in for the orchestrator: attacks must not be able to kill it."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    yield proc
    proc.kill()
    proc.wait()


@pytest.fixture(scope="session", autouse=True)
def report_isolation():
    report = isolation_report()
    print("\n" + report.summary())
    return report


__all__ = ["FAST", "HELD_OUT", "EXPLORATION", "PROJECT", "contract_digest", "make_run_dir", "tree_state"]
