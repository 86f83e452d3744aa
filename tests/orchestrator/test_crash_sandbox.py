"""Kill/resume with the real sandbox, guard and verifier on the embedded model (scripted agent).

The CLI's whole process group is SIGKILLed while the isolated experiment child runs and again while
the verifier child runs; no sandbox process may outlive the loop (bubblewrap --die-with-parent, pid
namespace), and the resumed run must keep exactly one ledger line per attempt and one findings commit
per kept attempt, with a clean run directory.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.ledger import read_ledger
from orchestrator.rundir import RunDir
from tests.orchestrator import killing
from tests.orchestrator.test_crash import check_invariants

pytestmark = [pytest.mark.embedded, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
TASK = """\
name: e2e-kill
question: Does patching the residual stream move the answer?
generator: {family: factual_recall, n: 12, seed: 1}
split: {held_out_fraction: 0.5, seed: 3}
budgets: {max_experiments: 2, wall_clock_hours: 1}
sandbox: {timeout_s: 180, memory_gb: 4, cpu_s: 360}
"""


def _env(scratch: Path) -> dict[str, str]:
    env = {**os.environ, "ORCH_COMPONENTS": "tests.orchestrator.fakes:build_sandbox_components", "FAKE_N_NULL": "3",
           "TMPDIR": str(scratch)}
    env.pop("ORCH_CRASH_AT", None)
    from engine.blas import blas_env

    env.update(blas_env(env))
    return env


def _kill_when(task: Path, run_dir: Path, env: dict[str, str], event: str, after_s: float, scratch: Path) -> None:
    """Start `run`, wait for ``event`` in the run log plus ``after_s``, SIGKILL the process group."""
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "run", str(task), "--run-dir", str(run_dir), "--quiet"],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    log = run_dir / "logs" / "run.jsonl"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        if log.is_file() and any(json.loads(l).get("event") == event or json.loads(l).get("phase") == event
                                 for l in log.read_text().splitlines() if l.strip()):
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    time.sleep(after_s)
    assert killing.processes_mentioning(str(scratch)), "no sandbox child was running when the kill landed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 10
    while killing.processes_mentioning(str(scratch)) and time.monotonic() < deadline:
        time.sleep(0.2)  # SIGKILL delivery to a pid namespace is asynchronous
    assert killing.processes_mentioning(str(scratch)) == [], "sandbox processes outlived the killed loop"


def test_real_sandbox_killed_in_experiment_and_in_verifier_then_resumed(tmp_path: Path) -> None:
    task = tmp_path / "task.yaml"
    task.write_text(TASK)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    run = RunDir(tmp_path / "run")
    env = _env(scratch)
    _kill_when(task, run.root, env, "experiment_submitted", 2.0, scratch)
    _kill_when(task, run.root, env, "verifying", 3.0, scratch)
    code, out, _ = killing.run_to_end(task, run.root, env, timeout=900)
    assert code == 0, out[-3000:]
    entries = read_ledger(run.ledger)
    assert [e.attempt for e in entries] == [1, 2]
    assert entries[0].decision == "keep", entries[0].reason
    check_invariants(run)
    killing.check_clean(run)
    assert killing.processes_mentioning(str(scratch)) == []
