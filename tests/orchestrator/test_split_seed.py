"""The exploration/held-out split seed: drawn privately per run unless the task gives one, recorded where no
sandboxed child and no findings commit can see it, and stable across resume."""

from __future__ import annotations

import json
from pathlib import Path

import git
import pytest

from orchestrator.rundir import create_run_dir, load_split_record, open_run_dir, pairs_digest
from orchestrator.task import load_task
from sandbox.contract import load_contract
from tests.orchestrator.helpers import drive

TASK = """\
name: split-test
question: Which layer carries the city?
generator: {family: factual_recall, n: 16, seed: 1}
%s
agent: {provider: builtin}
budgets: {max_experiments: 2, wall_clock_hours: 1}
seed: 7
"""


def _task(tmp: Path, split_line: str = "split: {held_out_fraction: 0.5}"):
    path = tmp / "task.yaml"
    path.write_text(TASK % split_line)
    return load_task(path, check_tokenizer=False), path.read_text()


def test_without_a_seed_each_run_draws_its_own_private_split(tmp_path: Path) -> None:
    task, text = _task(tmp_path)
    assert task.split.seed is None
    runs = [create_run_dir(tmp_path / f"run{i}", task, text) for i in range(2)]
    records = [load_split_record(r) for r in runs]
    assert all(r.source == "private" for r in records) and records[0].seed != records[1].seed
    held = [load_contract(r.root).held_out for r in runs]
    assert held[0] != held[1]  # 16 pairs, 8 held out: two private seeds give two different held-out sets
    for run, record, h in zip(runs, records, held):
        assert task.split_pairs(record.seed)[1] == h and record.held_out_sha256 == pairs_digest(h)
        assert str(record.seed) not in run.task_yaml.read_text() + run.program_md.read_text()
        tracked = git.Repo(run.root).git.ls_files().split()
        assert "state/split.json" not in tracked  # never in the findings branch


def test_an_explicit_seed_in_the_task_wins(tmp_path: Path) -> None:
    task, text = _task(tmp_path, "split: {held_out_fraction: 0.5, seed: 4}")
    run = create_run_dir(tmp_path / "run", task, text)
    record = load_split_record(run)
    assert (record.seed, record.source) == (4, "task")
    assert load_contract(run.root).held_out == task.split_pairs()[1] == task.split_pairs(4)[1]


def test_a_resumed_run_keeps_the_recorded_split(tmp_path: Path) -> None:
    task, text = _task(tmp_path)
    run = create_run_dir(tmp_path / "run", task, text)
    before, contract = run.split_record.read_bytes(), load_contract(run.root)
    drive(run, task)  # an interrupted-then-continued loop reads the contract, never re-splits
    reopened = open_run_dir(run.root)
    assert reopened.split_record.read_bytes() == before and load_contract(reopened.root) == contract
    assert task.split_pairs(load_split_record(reopened).seed) == (contract.exploration, contract.held_out)


def test_a_task_without_a_split_seed_cannot_split_by_accident(tmp_path: Path) -> None:
    task, _ = _task(tmp_path)
    with pytest.raises(ValueError, match="no split seed"):
        task.split_pairs()


PROBE = """\
from pathlib import Path


def run(ctx):
    seen = {}
    for rel in ("state/split.json", "contract/setup.py", "task.yaml"):
        try:
            seen[rel] = Path(RUN, rel).read_text()[:200]
        except OSError as exc:
            seen[rel] = "unreadable: " + type(exc).__name__
    return {"summary": "probe", "measurements": seen}
"""


@pytest.mark.slow
def test_the_sandboxed_child_cannot_read_the_split_seed_or_the_held_out_pairs(tmp_path: Path) -> None:
    from sandbox.isolation import isolation_report
    from sandbox.runner import run_experiment
    from tests.orchestrator.analysis.planted import build_model

    if isolation_report().mode != "bwrap":
        pytest.skip("only bubblewrap hides the run directory from the child")
    task, text = _task(tmp_path)
    model = build_model(tmp_path / "model")
    task = task.model_copy(update={"model": str(model)})
    run = create_run_dir(tmp_path / "run", task, text)
    probe = run.experiments / "0001-probe.py"
    probe.write_text(f"RUN = {str(run.root)!r}\n" + PROBE)
    outcome = run_experiment(run.root, probe, 1, guard=False, write_result=False)  # the OS layer alone
    assert outcome.status == "ok", outcome.reason
    seen = outcome.result.measurements
    assert all(v.startswith("unreadable") for v in seen.values()), seen
    record = load_split_record(run)
    assert str(record.seed) not in json.dumps(outcome.result.model_dump(mode="json"))
