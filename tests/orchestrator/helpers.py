"""Shared helpers for loop tests: make a run, drive it in a forked child, snapshot its final state."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path
from typing import Any

import git

from orchestrator.interfaces import AcceptAllGuard
from orchestrator.loop import Components, Loop
from orchestrator.logging import RunLog
from orchestrator.rundir import RunDir, create_run_dir
from orchestrator.task import Task, load_task
from tests.orchestrator.fakes import FakeBackend, FakeVerifier, ScriptedAgent

TASK_YAML = """\
name: crash-test
question: Which layer carries the city?
generator: {family: factual_recall, n: 12, seed: 1}
split: {held_out_fraction: 0.5, seed: 2}
agent: {provider: builtin, max_repairs: 2}
budgets: {max_experiments: %d, wall_clock_hours: 1}
seed: 7
"""
TIMING_FIELDS = ("durations_s", "started_at", "ended_at")


def write_task(tmp: Path, max_experiments: int = 8) -> Path:
    path = tmp / "task.yaml"
    path.write_text(TASK_YAML % max_experiments)
    return path


def make_run(tmp: Path, name: str, task_path: Path) -> tuple[RunDir, Task]:
    task = load_task(task_path, check_tokenizer=False)
    return create_run_dir(tmp / name, task, task_path.read_text()), task


def components(answer_at: int | None = None, tamper_at: int | None = None) -> Components:
    return Components(agent=ScriptedAgent(answer_at=answer_at, tamper_at=tamper_at), backend=FakeBackend(),
                      guard=AcceptAllGuard(), verifier=FakeVerifier())


def drive(run: RunDir, task: Task, **kw: Any) -> None:
    log = RunLog(run.logs / "run.jsonl")
    try:
        Loop(run, task, components(**kw), log=log).run_until_stopped()
    finally:
        log.close()


def _child(root: str, task_path: str, crash: str | None) -> None:
    if crash:
        os.environ["ORCH_CRASH_AT"] = crash
    else:
        os.environ.pop("ORCH_CRASH_AT", None)
    task = load_task(task_path, check_tokenizer=False)
    drive(RunDir(Path(root)), task)


def drive_in_child(run: RunDir, task_path: Path, crash: str | None, timeout: float = 60) -> int | None:
    """Run the loop in a forked process (fast: modules already imported); return its exit code."""
    proc = multiprocessing.get_context("fork").Process(target=_child, args=(str(run.root), str(task_path), crash))
    proc.start()
    proc.join(timeout)
    if proc.is_alive():
        proc.kill()
        proc.join()
        raise AssertionError(f"loop child did not finish within {timeout} s (crash={crash})")
    return proc.exitcode


def _normal_ledger_text(text: str) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [{k: v for k, v in row.items() if k not in TIMING_FIELDS} for row in rows]


def snapshot(run: RunDir) -> dict[str, Any]:
    """Everything that must match an uninterrupted run, with wall-clock fields removed."""
    repo = git.Repo(run.root)
    commits = []
    for c in reversed(list(repo.iter_commits("findings"))):
        files = {}
        for blob in c.tree.traverse():
            if blob.type != "blob":
                continue
            data = blob.data_stream.read().decode()
            files[blob.path] = _normal_ledger_text(data) if blob.path == "results.jsonl" else data
        commits.append({"message": c.message, "files": files})
    state = json.loads((run.root / "state.json").read_text())
    for key in ("elapsed_s", "updated_at", "sessions", "run_id"):
        state.pop(key)
    records = {}
    for p in sorted((run.root / "state").glob("attempt-*.json")):
        rec = json.loads(p.read_text())
        rec.pop("durations_s")
        rec.pop("started_at")
        records[p.name] = rec
    return {
        "ledger": _normal_ledger_text(run.ledger.read_text()),
        "commits": commits,
        "state": state,
        "records": records,
        "experiments": {p.name: p.read_text() for p in sorted(run.experiments.glob("*.py"))},
        "results": {p.name: p.read_text() for p in sorted(run.results.glob("*.json"))},
        "findings": {p.name: p.read_text() for p in sorted(run.findings.glob("*.md"))},
        "contract": {p.name: p.read_bytes() for p in sorted(run.contract.iterdir())},
    }
