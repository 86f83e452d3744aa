"""End to end with the real sandbox, guard and verifier on the embedded model (scripted agent).

Killed while the isolated experiment child runs, then resumed through the CLI: the experiment is
re-run, the claim verified on held-out pairs, and the finding committed with its ledger line.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import git
import pytest

from orchestrator.ledger import read_ledger

pytestmark = [pytest.mark.embedded, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
TASK = """\
name: e2e
question: Does patching the residual stream move the answer?
generator: {family: factual_recall, n: 12, seed: 1}
budgets: {max_experiments: 2, wall_clock_hours: 1}
sandbox: {timeout_s: 180, memory_gb: 4, cpu_s: 360}
"""


def _cli(*args: str, crash: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ORCH_COMPONENTS": "tests.orchestrator.fakes:build_sandbox_components", "FAKE_N_NULL": "3"}
    env.pop("ORCH_CRASH_AT", None)
    if crash:
        env["ORCH_CRASH_AT"] = crash
    from engine.blas import blas_env

    env.update(blas_env(env))
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=900)


def test_real_sandbox_run_killed_mid_experiment_then_resumed(tmp_path: Path) -> None:
    task = tmp_path / "task.yaml"
    task.write_text(TASK)
    run_dir = tmp_path / "run"
    first = _cli("run", str(task), "--run-dir", str(run_dir), "--quiet", crash="experiment-running:1")
    assert first.returncode == -signal.SIGKILL, first.stderr[-2000:]
    assert not (run_dir / "results" / "0001.json").exists()
    second = _cli("resume", str(run_dir), "--quiet")
    assert second.returncode == 0, second.stderr[-3000:]
    entries = read_ledger(run_dir / "results.jsonl")
    assert [e.attempt for e in entries] == [1, 2]
    assert entries[0].decision == "keep", entries[0].reason
    assert entries[1].repairs == 1  # the guard rejected the first (syntax error) version
    result = json.loads((run_dir / "results" / "0001.json").read_text())
    assert result["outcome"]["status"] == "ok" and result["result"]["claims"]
    stats = entries[0].statistics[0]
    assert stats["kept"] and stats["n_pairs"] >= 4 and stats["ci_low"] > 0
    repo = git.Repo(run_dir)
    assert len(list(repo.iter_commits("findings", paths="contract"))) == 1
    kept = sum(e.decision == "keep" for e in entries)
    assert len(list(repo.iter_commits("findings"))) == 1 + kept
    review = _cli("review", str(run_dir))
    assert review.returncode == 0 and f"{kept} verified finding(s) from 2 attempts" in review.stdout
    assert len(review.stdout.strip().splitlines()) == 1 + kept
