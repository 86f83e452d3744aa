"""Ledger, state files, run directory and lock: the durable pieces under the loop."""

from __future__ import annotations

import json
from pathlib import Path

import git
import pytest

from orchestrator.ledger import Ledger, LedgerCorrupt, LedgerEntry
from orchestrator.ratchet import Ratchet
from orchestrator.rundir import RunDirError, RunLock, create_run_dir, open_run_dir
from orchestrator.state import AttemptRecord, RunState, StateStore
from tests.orchestrator.helpers import make_run, write_task


def entry(n: int, decision: str = "discard") -> LedgerEntry:
    return LedgerEntry(attempt=n, phase="reflecting", contract_sha256="c" * 64, decision=decision, reason=f"r{n}")


def test_ledger_append_is_idempotent_and_survives_reload(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "results.jsonl")
    assert ledger.append(entry(1)) and ledger.append(entry(2, "keep"))
    assert not ledger.append(entry(2, "keep"))
    again = Ledger(tmp_path / "results.jsonl")
    assert [e.attempt for e in again.load()] == [1, 2]
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 2


def test_torn_final_line_is_dropped_and_file_repaired(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    ledger = Ledger(path)
    ledger.append(entry(1))
    line = json.dumps(entry(2).model_dump(mode="json"))
    with path.open("a") as f:
        f.write(line[: len(line) // 2])
    again = Ledger(path)
    assert [e.attempt for e in again.load()] == [1]
    assert path.read_text().endswith("\n") and len(path.read_text().splitlines()) == 1
    again.append(entry(2))
    assert [e.attempt for e in Ledger(path).load()] == [1, 2]


def test_corrupt_middle_line_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    Ledger(path).append(entry(1))
    with path.open("a") as f:
        f.write("{not json}\n")
    with path.open("a") as f:
        f.write(json.dumps(entry(3).model_dump(mode="json")) + "\n")
    with pytest.raises(LedgerCorrupt, match="line 2"):
        Ledger(path).load()


def test_state_and_attempt_records_round_trip(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.save(RunState(run_id="r", task_name="t", in_flight={3: "running"}))
    assert store.load().in_flight == {3: "running"}
    store.save_attempt(AttemptRecord(attempt=3, phase="verifying"))
    assert store.load_attempt(3).phase == "verifying" and store.load_attempt(4) is None
    assert not list(tmp_path.glob(".*.tmp")) and not list((tmp_path / "state").glob(".*.tmp"))


def test_run_dir_layout_and_first_commit(tmp_path: Path) -> None:
    run, _ = make_run(tmp_path, "run", write_task(tmp_path))
    for name in ("task.yaml", "program.md", "contract/setup.py", "contract/metrics.py", "contract/contract.lock",
                 "experiments", "results", "findings", "logs", "state.json"):
        assert (run.root / name).exists(), name
    repo = git.Repo(run.root)
    assert repo.active_branch.name == "findings"
    (first,) = list(repo.iter_commits("findings"))
    assert sorted(b.path for b in first.tree.traverse() if b.type == "blob") == [
        "contract/contract.lock", "contract/metrics.py", "contract/setup.py", "program.md", "task.yaml"]
    assert "Which layer carries the city?" in (run.root / "program.md").read_text()
    assert open_run_dir(run.root) == run


def test_create_refuses_a_non_empty_directory_and_leaves_it_alone(tmp_path: Path) -> None:
    target = tmp_path / "busy"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    task_path = write_task(tmp_path)
    from orchestrator.task import load_task

    with pytest.raises(RunDirError, match="already exists"):
        create_run_dir(target, load_task(task_path, check_tokenizer=False), task_path.read_text())
    assert [p.name for p in target.iterdir()] == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy", "task.yaml"]


@pytest.mark.parametrize("layout, message", [
    (None, "no such run directory"),
    ("file", "not a directory"),
    ("empty", r"not a run directory \(missing task.yaml"),
])
def test_open_run_dir_errors(layout: str | None, message: str, tmp_path: Path) -> None:
    path = tmp_path / "x"
    if layout == "file":
        path.write_text("")
    elif layout == "empty":
        path.mkdir()
    with pytest.raises(RunDirError, match=message):
        open_run_dir(path)


def test_lock_excludes_a_second_holder(tmp_path: Path) -> None:
    run, _ = make_run(tmp_path, "run", write_task(tmp_path))
    with RunLock(run):
        with pytest.raises(RunDirError, match="another process"):
            RunLock(run).acquire()
    with RunLock(run):
        pass


def test_ratchet_commit_is_idempotent_and_clears_stale_locks(tmp_path: Path) -> None:
    run, _ = make_run(tmp_path, "run", write_task(tmp_path))
    ratchet = Ratchet(run.root)
    (run.findings / "0001-x.md").write_text("finding")
    (Path(ratchet.repo.git_dir) / "index.lock").write_text("")
    assert ratchet.clear_stale_locks() == ["index.lock"]
    sha = ratchet.commit_finding(1, ["findings/0001-x.md"], "finding 0001: x", "body")
    assert ratchet.commit_finding(1, ["findings/0001-x.md"], "finding 0001: x", "body") == sha
    assert [a for a, _ in ratchet.findings()] == [1]
    assert len(list(ratchet.repo.iter_commits("findings"))) == 2


def test_resumed_agent_budget_is_what_is_left(tmp_path: Path) -> None:
    from orchestrator.agent.base import Usage
    from orchestrator.task import load_task
    from orchestrator.wiring import remaining_budget

    path = tmp_path / "t.yaml"
    path.write_text("name: t\nquestion: q\ngenerator: {family: ioi, n: 8}\n"
                    "budgets: {max_experiments: 3, max_tokens: 1000, max_dollars: 2.0}\n")
    task = load_task(path, check_tokenizer=False)
    left = remaining_budget(task, Usage(input_tokens=700, output_tokens=100, dollars=2.5)).budgets
    assert (left.max_tokens, left.max_dollars, left.max_experiments) == (200, 0.0, 3)
    assert remaining_budget(task, None) is task
