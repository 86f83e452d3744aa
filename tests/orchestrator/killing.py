"""Kill the real CLI at wall-clock instants and check the resumed run against an uninterrupted one.

Each session is `python -m orchestrator run TASK --run-dir DIR` in its own process group (what a
terminal's Ctrl-C or a `kill -- -PGID` reaches). It is stopped after a random delay by SIGKILL of the
whole group, SIGTERM or SIGINT, and the same command is issued again until one session finishes.
Components: the scripted agent with a fake backend whose experiment children die with the loop
(PR_SET_PDEATHSIG, as bubblewrap's --die-with-parent does for the real sandbox), so an orphaned
child is a bug. Used by tests/orchestrator/test_crash.py and tests/bench/bench_kill_campaign.py.
"""

from __future__ import annotations

import ctypes
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import git

from orchestrator.interfaces import AcceptAllGuard, ExperimentRequest
from orchestrator.loop import Components
from orchestrator.rundir import RunDir
from tests.orchestrator.fakes import FakeBackend, FakeVerifier, ScriptedAgent
from tests.orchestrator.helpers import snapshot

REPO = Path(__file__).resolve().parents[2]
FACTORY = "tests.orchestrator.killing:build_components"
SIGNALS = {"KILL-group": signal.SIGKILL, "TERM": signal.SIGTERM, "INT": signal.SIGINT}


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class MortalBackend(FakeBackend):
    """FakeBackend whose children are SIGKILLed when the loop dies and carry the run dir in their env."""

    def submit(self, request: ExperimentRequest) -> tuple[subprocess.Popen[bytes], float]:
        env = {"PATH": os.environ.get("PATH", ""), "FAKE_RUN_DIR": str(request.run_dir)}
        code = f"import time; time.sleep({self.delay_s})\n" + _runner()
        proc = subprocess.Popen([sys.executable, "-I", "-B", "-c", code, str(request.experiment_file), str(request.seed)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True,
                                preexec_fn=_die_with_parent)
        return proc, time.monotonic()


def _runner() -> str:
    from tests.orchestrator import fakes

    return fakes._RUNNER


def build_components(task: Any, run_root: Path) -> Components:
    """ORCH_COMPONENTS factory: the scripted agent, experiments of FAKE_DELAY_S seconds each."""
    delay = float(os.environ.get("FAKE_DELAY_S", "0.3"))
    return Components(agent=ScriptedAgent(), backend=MortalBackend(delay_s=delay), guard=AcceptAllGuard(),
                      verifier=FakeVerifier())


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ORCH_CRASH_AT",)}
    env.update({"ORCH_COMPONENTS": FACTORY, "PYTHONUNBUFFERED": "1", **extra})
    return env


def start(task: Path, run_dir: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "orchestrator", "run", str(task), "--run-dir", str(run_dir), "--quiet"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def run_to_end(task: Path, run_dir: Path, env: dict[str, str], timeout: float = 300) -> tuple[int, str, float]:
    """(exit code, stderr then stdout, seconds) of one uninterrupted session."""
    t0 = time.monotonic()
    proc = start(task, run_dir, env)
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, err + out, time.monotonic() - t0


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains ``text`` (a sandbox scratch root, for the real backend)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                if text.encode() in (proc / "cmdline").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


def orphans(run_dir: Path) -> list[int]:
    """Live processes started for this run (experiment children carry FAKE_RUN_DIR)."""
    needle = f"FAKE_RUN_DIR={run_dir}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if needle in (proc / "environ").read_bytes().split(b"\0"):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


@dataclass
class Session:
    signal: str
    delay_s: float
    returncode: int
    stderr_tail: str
    ledger_lines: int


@dataclass
class Campaign:
    sessions: list[Session] = field(default_factory=list)
    final_stderr: str = ""


def campaign(task: Path, run_dir: Path, env: dict[str, str], rng: random.Random, max_kills: int,
             window_s: float, signals: tuple[str, ...] = tuple(SIGNALS), shrink: float = 0.8) -> Campaign:
    """Stop sessions at random instants until ``max_kills`` landed, then run to the end. Session k is stopped
    within (0.3 s, window_s * shrink**k): later sessions have less left to do, and start-up is a fixed cost."""
    out = Campaign()
    while len(out.sessions) < max_kills:
        name = rng.choice(signals)
        delay = rng.uniform(0.3, max(0.6, window_s * shrink ** len(out.sessions)))  # not inside site.py start-up
        proc = start(task, run_dir, env)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            if SIGNALS[name] == signal.SIGKILL:
                os.killpg(proc.pid, signal.SIGKILL)  # the loop and everything in its group, at once
            else:
                os.kill(proc.pid, SIGNALS[name])
        _, err = proc.communicate(timeout=120)
        lines = len(run_dir.joinpath("results.jsonl").read_text().splitlines()) if (run_dir / "results.jsonl").exists() else 0
        out.sessions.append(Session(name, round(delay, 2), proc.returncode, err[-3000:], lines))
        if proc.returncode == 0:
            break  # the run finished before the kill landed
    code, err, _ = run_to_end(task, run_dir, env)
    out.final_stderr = err
    assert code == 0, f"the final session failed ({code}):\n{err[-3000:]}"
    return out


def check_session_output(c: Campaign) -> None:
    """A stopped session says how to resume and never shows a traceback; SIGKILL says nothing."""
    for s in c.sessions:
        assert "Traceback" not in s.stderr_tail, f"{s.signal} after {s.delay_s}s:\n{s.stderr_tail}"
        if s.returncode == 0:
            continue
        if s.signal == "KILL-group":
            assert s.returncode == -signal.SIGKILL, s
        else:
            assert s.returncode == 130, f"{s.signal} after {s.delay_s}s gave exit {s.returncode}:\n{s.stderr_tail}"
            said = ("python -m orchestrator resume", "python -m orchestrator report", "nothing was created")
            assert any(x in s.stderr_tail for x in said), s.stderr_tail  # how to go on, or that nothing was started


def check_clean(run: RunDir) -> None:
    """Nothing half-done in the run directory: index = HEAD, tracked files as committed (the ledger may have
    grown since the last finding), no temp files, no git lock, no lock pid, no experiment child alive."""
    repo = git.Repo(run.root)
    assert repo.head.reference.name == "findings"
    assert repo.index.diff(repo.head.commit) == [], "files left staged"
    changed = {d.a_path for d in repo.index.diff(None)}
    assert changed <= {"results.jsonl"}, f"tracked files differ from the findings branch: {changed}"
    assert not any(Path(repo.git_dir).rglob("*.lock")), "a git lock file was left behind"
    untracked = set(repo.untracked_files)
    assert all(p.startswith(("experiments/", "results/")) for p in untracked), f"unexpected files: {untracked}"
    temps = [str(p) for p in run.root.rglob(".*.tmp") if ".git" not in p.parts]
    assert temps == [], f"temp files left: {temps}"
    assert run.lock_path.read_text() == "", "the run lock still names a pid after a clean end"
    assert orphans(run.root) == [], "experiment processes outlived the loop"


def same_as(baseline: dict[str, Any], run: RunDir) -> None:
    got = snapshot(run)
    for key in baseline:
        assert got[key] == baseline[key], f"{key} differs from the uninterrupted run"


def summary(c: Campaign) -> dict[str, Any]:
    return {"sessions": len(c.sessions), "by_signal": {k: sum(s.signal == k for s in c.sessions) for k in SIGNALS},
            "finished_before_kill": sum(s.returncode == 0 for s in c.sessions),
            "delays": [s.delay_s for s in c.sessions]}


def dump(c: Campaign) -> str:
    return json.dumps(summary(c))
