"""`verify` on a committed finding of a finished run reproduces its recorded effect within its CI.

A real run through the CLI: the builtin agent, the real sandbox, guard and verifier (no fakes), on the
hand-built planted model (a mlx-lm directory), then `python -m orchestrator verify RUN_DIR FINDING`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from orchestrator.ledger import read_ledger
from tests.orchestrator.analysis.planted import build_model, prompt_pairs

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
LINE = re.compile(r"claim (\d+): (CONFIRMED|not confirmed)\s+effect ([+-][\d.]+) \[([+-][\d.]+), ([+-][\d.]+)\]")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    from engine.blas import blas_env

    env = {k: v for k, v in os.environ.items() if k not in ("ORCH_COMPONENTS", "ORCH_CRASH_AT")}
    env.update(blas_env(env))
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=900)


def test_verify_reproduces_the_recorded_effects_of_a_real_run(tmp_path: Path) -> None:
    model = build_model(tmp_path / "model")
    task = {"name": "planted", "question": "Which components carry the colour lookup?", "model": str(model),
            "pairs": [p.model_dump() for p in prompt_pairs(32, seed=5)], "split": {"held_out_fraction": 0.5},
            "agent": {"provider": "builtin"}, "budgets": {"max_experiments": 3, "wall_clock_hours": 1},
            "sandbox": {"timeout_s": 120, "memory_gb": 2, "cpu_s": 240}, "seed": 3}
    task_path = tmp_path / "task.yaml"
    task_path.write_text(yaml.safe_dump(task, sort_keys=False))
    run_dir = tmp_path / "run"
    ran = _cli("run", str(task_path), "--run-dir", str(run_dir), "--quiet")
    assert ran.returncode == 0, ran.stderr[-3000:]
    kept = [e for e in read_ledger(run_dir / "results.jsonl") if e.decision == "keep"]
    assert kept, "the planted circuit should give at least one verified finding"
    floor = run_dir / "state" / "noise_floor.json"
    cached = floor.read_bytes()
    assert json.loads(cached)["families"]

    for entry in kept:
        finding = f"findings/{entry.attempt:04d}-{entry.slug}.md"
        assert (run_dir / finding).is_file()
        # Verification reads the finding's own commit, not the live run directory: a claim edited here afterwards
        # (pointed at a component that does nothing) must not change what `verify` re-derives.
        result_path = run_dir / "results" / f"{entry.attempt:04d}.json"
        committed = result_path.read_text()
        edited = json.loads(committed)
        for claim in edited["result"]["claims"]:
            claim["interventions"] = [{"kind": "ablate", "hook": "hook_embed", "mode": "zero", "positions": [0]}]
        result_path.write_text(json.dumps(edited))
        out = _cli("verify", str(run_dir), finding)
        result_path.write_text(committed)
        assert out.returncode == 0, out.stdout + out.stderr[-2000:]
        assert "verified from a clean checkout of findings commit" in out.stdout
        lines = [LINE.search(line) for line in out.stdout.splitlines()]
        got = {int(m.group(1)): m for m in lines if m}
        assert len(got) == len(entry.statistics)
        for i, recorded in enumerate(entry.statistics):
            m = got[i]
            if recorded["kept"]:
                assert m.group(2) == "CONFIRMED", out.stdout
                assert recorded["ci_low"] - 1e-4 <= float(m.group(3)) <= recorded["ci_high"] + 1e-4, (recorded, out.stdout)
    # Every null family these claims need was measured during the run: `verify` reused them all.
    assert floor.read_bytes() == cached
