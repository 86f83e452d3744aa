"""A feature run killed (SIGKILL) at each of its recording steps resumes to the same ledger, results,
finding notes and findings branch as a run that was never interrupted.

The real CLI in a subprocess: builtin explainer and scorer, measurement by the rule server (no mlx),
the real trusted verifier child. The run is stopped by ORCH_CRASH_AT at a named point, then resumed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import git
import pytest

from orchestrator.features.run import MEASURE_ENV
from orchestrator.fsutil import sha256_file
from tests.orchestrator.features.test_main_cli import RULE_SERVER, TASK, _engine_done

REPO = Path(__file__).resolve().parents[3]
TIMING = re.compile(r"\d+\.\d s\.")  # "...; 0.3 s." in a finding note


def _cli(*args: str, crash: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ORCH_CRASH_AT"}
    env[MEASURE_ENV] = json.dumps(RULE_SERVER)
    if crash:
        env["ORCH_CRASH_AT"] = crash
    return subprocess.run([sys.executable, "-m", "orchestrator", *args, "--quiet"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def _strip(value: Any) -> Any:
    """JSON without wall-clock fields."""
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items()
                if k not in ("seconds", "started_at", "ended_at", "durations_s", "contract_sha256")}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _normal(path: str, text: str, root: Path) -> Any:
    """Wall-clock fields removed; the run directory's own path (in the contract, notes, results) as <RUN>."""
    text = text.replace(str(root), "<RUN>")
    if path.endswith(".jsonl"):
        return [_strip(json.loads(line)) for line in text.splitlines() if line.strip()]
    if path.endswith(".json"):
        return _strip(json.loads(text))
    return TIMING.sub("T s.", text)


def _snapshot(root: Path) -> dict[str, Any]:
    repo = git.Repo(root)
    contract_sha = sha256_file(root / "contract" / "feature_task.json")
    lines = [json.loads(line) for line in (root / "results.jsonl").read_text().splitlines() if line.strip()]
    assert all(e["contract_sha256"] == contract_sha for e in lines), "every ledger line names this run's contract"
    commits = [{"message": c.message,
                "files": {b.path: _normal(b.path, b.data_stream.read().decode(), root)
                          for b in c.tree.traverse() if b.type == "blob"}}
               for c in reversed(list(repo.iter_commits("findings")))]
    return {
        "commits": commits,
        "ledger": _normal("results.jsonl", (root / "results.jsonl").read_text(), root),
        "results": {p.name: _normal(p.name, p.read_text(), root) for p in sorted((root / "results").glob("*.json"))},
        "findings": {p.name: _normal(p.name, p.read_text(), root) for p in sorted((root / "findings").glob("*.md"))},
        "dirty": repo.git.status("--porcelain"),
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, dict[str, Any], list[int]]:
    base = tmp_path_factory.mktemp("feature-crash")
    task = base / "task.yaml"
    task.write_text(TASK)
    root = base / "ref"
    _engine_done(root)
    done = _cli("run", str(task), "--run-dir", str(root))
    assert done.returncode == 0, done.stderr
    snap = _snapshot(root)
    kept = [e["attempt"] for e in snap["ledger"] if e["decision"] == "keep"]
    assert kept and len(snap["ledger"]) == 3
    return task, snap, kept


POINTS = ["feature-result-written", "feature-ledger-written", "commit-staging", "commit-staged"]


@pytest.mark.parametrize("point", POINTS)
def test_a_kill_at_each_recording_step_resumes_to_the_uninterrupted_run(reference, point, tmp_path):
    task, expected, kept = reference
    root = tmp_path / "run"
    _engine_done(root)
    killed = _cli("run", str(task), "--run-dir", str(root), crash=f"{point}:{kept[0]}")
    assert killed.returncode == -9, f"the crash point {point}:{kept[0]} was not reached: {killed.stderr[-800:]}"
    resumed = _cli("resume", str(root))
    assert resumed.returncode == 0, resumed.stderr[-1500:]
    assert _snapshot(root) == expected


def test_a_kill_inside_the_repositorys_creation_is_repaired(reference, tmp_path):
    """A .git without its contract commit (killed between `git init` and the first commit) is made again."""
    task, expected, _ = reference
    root = tmp_path / "run"
    _engine_done(root)
    killed = _cli("run", str(task), "--run-dir", str(root), crash="repo-initialised:0")
    assert killed.returncode == -9 and (root / ".git").is_dir(), killed.stderr[-800:]
    done = _cli("run", str(task), "--run-dir", str(root))
    assert done.returncode == 0, done.stderr[-1500:]
    assert _snapshot(root) == expected
