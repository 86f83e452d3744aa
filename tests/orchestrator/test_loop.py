"""Loop behaviour: stop conditions, keep rules, failures and violations, and the CLI on a finished run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import git
import pytest

from orchestrator.agent.base import StepResult
from orchestrator.agent.schemas import Reflection
from orchestrator.interfaces import AcceptAllGuard
from orchestrator.ledger import read_ledger
from orchestrator.loop import Components, Loop
from orchestrator.rundir import RunLock
from orchestrator.state import StateStore
from tests.orchestrator.fakes import FakeBackend, FakeVerifier, ScriptedAgent
from tests.orchestrator.helpers import TASK_YAML, drive, make_run, write_task

REPO = Path(__file__).resolve().parents[2]


def _task(tmp: Path, extra: str = "", n: int = 8) -> Path:
    path = tmp / "task.yaml"
    path.write_text((TASK_YAML % n).replace("budgets: {max_experiments: %d, wall_clock_hours: 1}" % n, "") +
                    (extra or f"budgets: {{max_experiments: {n}, wall_clock_hours: 1}}\n"))
    return path


def test_uninterrupted_run_keeps_only_verified_findings(tmp_path: Path) -> None:
    run, task = make_run(tmp_path, "run", write_task(tmp_path))
    drive(run, task)
    state = StateStore(run.root).load()
    assert (state.status, state.stop_reason, state.completed, state.kept, state.in_flight) == (
        "finished", "max_experiments", 8, 4, {})
    entries = read_ledger(run.ledger)
    assert [e.decision for e in entries] == ["keep", "discard", "keep", "discard"] * 2
    assert entries[1].repairs == 1 and "guard rejected" not in entries[1].reason
    assert state.usage.calls == sum(e.calls for e in entries) and state.usage.dollars > 0
    commits = list(git.Repo(run.root).iter_commits("findings"))
    assert len(commits) == 5  # contract + 4 findings
    assert sorted(p.name for p in run.findings.iterdir()) == [
        "0001-probe-1.md", "0003-probe-3.md", "0005-probe-5.md", "0007-probe-7.md"]


def test_question_answered_stops_the_run(tmp_path: Path) -> None:
    run, task = make_run(tmp_path, "run", write_task(tmp_path))
    drive(run, task, answer_at=3)
    state = StateStore(run.root).load()
    assert (state.stop_reason, state.completed, state.answer) == ("question_answered", 3, "layer 1 and 3")


@pytest.mark.parametrize("budget, reason", [
    ("budgets: {max_experiments: 50, wall_clock_hours: 1, max_dollars: 0.01}\n", "max_dollars"),
    ("budgets: {max_experiments: 50, wall_clock_hours: 1, max_tokens: 500}\n", "max_tokens"),
    ("budgets: {max_experiments: 50, wall_clock_hours: 0.000001}\n", "wall_clock"),
])
def test_budgets_stop_the_run_with_their_reason(budget: str, reason: str, tmp_path: Path) -> None:
    run, task = make_run(tmp_path, "run", _task(tmp_path, budget))
    drive(run, task)
    state = StateStore(run.root).load()
    assert state.stop_reason == reason and 1 <= state.completed < 50


def test_contract_tampering_is_a_violation_and_is_restored(tmp_path: Path) -> None:
    run, task = make_run(tmp_path, "run", _task(tmp_path, n=2))
    before = (run.contract / "setup.py").read_bytes()
    drive(run, task, tamper_at=1)
    first = read_ledger(run.ledger)[0]
    assert first.decision == "violation" and "setup.py" in first.reason
    assert (run.contract / "setup.py").read_bytes() == before
    assert len(list(git.Repo(run.root).iter_commits("findings", paths="contract"))) == 1


class KeepEverything(ScriptedAgent):
    def reflect(self, state: Any, plan: Any, analysis: Any, verification: Any, context: Any) -> StepResult[Reflection]:
        return StepResult(value=Reflection(decision="keep", reason="looks great"))


class NoPlans(ScriptedAgent):
    def plan(self, state: Any, context: Any) -> StepResult[Any]:
        return StepResult(value=None, error="schema validation failed twice")


def _components(agent: ScriptedAgent) -> Components:
    return Components(agent=agent, backend=FakeBackend(), guard=AcceptAllGuard(), verifier=FakeVerifier())


def test_reflector_cannot_keep_an_unverified_claim(tmp_path: Path) -> None:
    run, task = make_run(tmp_path, "run", _task(tmp_path, n=2))
    Loop(run, task, _components(KeepEverything())).run_until_stopped()
    entries = read_ledger(run.ledger)
    assert [e.decision for e in entries] == ["keep", "discard"]
    assert "no claim passed verification" in entries[1].reason


def test_failed_role_is_recorded_not_trusted(tmp_path: Path) -> None:
    run, task = make_run(tmp_path, "run", _task(tmp_path, n=2))
    Loop(run, task, _components(NoPlans())).run_until_stopped()
    entries = read_ledger(run.ledger)
    assert [(e.decision, e.phase) for e in entries] == [("failed", "planning")] * 2


def test_repairs_are_bounded(tmp_path: Path) -> None:
    class AlwaysBroken(ScriptedAgent):
        def write_experiment(self, plan: Any, state: Any, context: Any, feedback: Any) -> Any:
            from orchestrator.agent.schemas import ExperimentCode

            return StepResult(value=ExperimentCode(code="def run(ctx)\n"))

    run, task = make_run(tmp_path, "run", _task(tmp_path, n=1))
    Loop(run, task, _components(AlwaysBroken())).run_until_stopped()
    (entry,) = read_ledger(run.ledger)
    assert (entry.decision, entry.repairs) == ("rejected", 2) and "syntax error" in entry.reason


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ORCH_COMPONENTS": "tests.orchestrator.fakes:build_components"}
    env.pop("ORCH_CRASH_AT", None)
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("cli")
    task_path = write_task(tmp, max_experiments=6)
    proc = _cli("run", str(task_path), "--run-dir", str(tmp / "run"), "--quiet")
    assert proc.returncode == 0, proc.stderr
    return task_path, tmp / "run"


def test_status_and_review_on_a_finished_run(finished: tuple[Path, Path]) -> None:
    _, run_dir = finished
    status = _cli("status", str(run_dir))
    assert status.returncode == 0
    for text in ("status    finished  — stopped by max_experiments", "6/6 experiments, 3 kept", "spend     $",
                 "findings  3", "question  Which layer carries the city?"):
        assert text in status.stdout, status.stdout
    review = _cli("review", str(run_dir))
    lines = review.stdout.splitlines()
    assert review.returncode == 0 and "3 verified finding(s) from 6 attempts" in lines[0]
    finding_lines = lines[1:]
    assert len(finding_lines) == 3 and all("effect +0.800 [+0.700, +0.900]" in line for line in finding_lines)
    data = json.loads(_cli("review", str(run_dir), "--json").stdout)
    assert [f["attempt"] for f in data["findings"]] == [1, 3, 5] and data["contract_commits"] == 1
    assert json.loads(_cli("status", str(run_dir), "--json").stdout)["kept"] == 3


def test_verify_command_reruns_the_verifier(finished: tuple[Path, Path]) -> None:
    _, run_dir = finished
    ok = _cli("verify", str(run_dir), "findings/0003-probe-3.md")
    assert ok.returncode == 0 and "claim 0: CONFIRMED" in ok.stdout
    missing = _cli("verify", str(run_dir), "42")
    assert missing.returncode == 2 and "attempt 42 is not in the ledger" in missing.stderr


def test_run_again_on_the_same_directory_resumes(finished: tuple[Path, Path], tmp_path: Path) -> None:
    task_path, run_dir = finished
    before = run_dir.joinpath("results.jsonl").read_text()
    again = _cli("run", str(task_path), "--run-dir", str(run_dir), "--quiet")
    assert again.returncode == 0 and "finished (max_experiments)" in again.stdout
    assert run_dir.joinpath("results.jsonl").read_text() == before
    other = tmp_path / "other.yaml"
    other.write_text(task_path.read_text().replace("Which layer", "Which head"))
    mismatch = _cli("run", str(other), "--run-dir", str(run_dir))
    assert mismatch.returncode == 2 and "different task" in mismatch.stderr


@pytest.mark.parametrize("command", ["resume", "status", "review", "report"])
def test_bad_run_dir_is_one_message_and_creates_nothing(command: str, tmp_path: Path) -> None:
    proc = _cli(command, str(tmp_path / "nope"))
    assert proc.returncode == 2 and proc.stderr.strip() == f"error: {tmp_path / 'nope'}: no such run directory"
    assert list(tmp_path.iterdir()) == []


def test_locked_run_is_refused(finished: tuple[Path, Path]) -> None:
    from orchestrator.rundir import RunDir

    _, run_dir = finished
    with RunLock(RunDir(run_dir)):
        proc = _cli("resume", str(run_dir), "--quiet")
    assert proc.returncode == 4 and "another process" in proc.stderr


def test_unrepairable_runtime_error_is_recorded_as_a_crash(tmp_path: Path) -> None:
    class CannotRepair(ScriptedAgent):
        def write_experiment(self, plan: Any, state: Any, context: Any, feedback: Any) -> Any:
            from orchestrator.agent.schemas import ExperimentCode

            if feedback is not None:
                return StepResult(value=None, error="templates cannot repair their own code")
            return StepResult(value=ExperimentCode(code="def run(ctx):\n    return {'summary': 1 / 0}\n"))

    run, task = make_run(tmp_path, "run", _task(tmp_path, n=1))
    Loop(run, task, _components(CannotRepair())).run_until_stopped()
    (entry,) = read_ledger(run.ledger)
    assert (entry.decision, entry.phase) == ("crash", "writing")
    assert "ZeroDivisionError" in entry.reason and "could not repair" in entry.reason


def test_an_agent_that_raises_is_a_recorded_failure(tmp_path: Path) -> None:
    class Buggy(ScriptedAgent):
        def analyse(self, plan: Any, outcome_summary: Any, context: Any) -> Any:
            raise KeyError("figures")

    run, task = make_run(tmp_path, "run", _task(tmp_path, n=1))
    Loop(run, task, _components(Buggy())).run_until_stopped()
    (entry,) = read_ledger(run.ledger)
    assert entry.decision == "keep"  # the analyst is advisory: its failure does not block a verified finding
    log = (run.logs / "run.jsonl").read_text() if (run.logs / "run.jsonl").exists() else ""
    assert StateStore(run.root).load().status == "finished" and log == ""  # no log given: NullLog


def test_damaged_ledger_is_one_clear_message(finished: tuple[Path, Path], tmp_path: Path) -> None:
    import shutil

    _, run_dir = finished
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    lines = (copy / "results.jsonl").read_text().splitlines()
    (copy / "results.jsonl").write_text("\n".join([lines[0], "{oops", *lines[1:]]) + "\n")
    proc = _cli("resume", str(copy), "--quiet")
    assert proc.returncode == 2 and "line 2 is not a ledger entry" in proc.stderr and "Traceback" not in proc.stderr


def test_resume_with_several_attempts_in_flight(tmp_path: Path) -> None:
    """DESIGN.md section 10: records are per attempt, so a run left with two attempts in flight
    (as a parallel backend would) resumes both, commits each kept one once, and numbers on from there."""
    from orchestrator.state import AttemptRecord

    run, task = make_run(tmp_path, "run", _task(tmp_path, n=4))
    store = StateStore(run.root)
    state = store.load()
    state.next_attempt, state.in_flight = 3, {1: "planning", 2: "planning"}
    store.save(state)
    for n in (1, 2):
        store.save_attempt(AttemptRecord(attempt=n))
    Loop(run, task, _components(ScriptedAgent())).run_until_stopped()
    entries = read_ledger(run.ledger)
    assert [e.attempt for e in entries] == [1, 2, 3, 4]
    assert [e.decision for e in entries] == ["keep", "discard", "keep", "discard"]
    trailers = [c.message.rsplit("Attempt: ", 1)[1].strip() for c in git.Repo(run.root).iter_commits("findings")
                if "Attempt: " in c.message]
    assert sorted(trailers) == ["1", "3"]


def test_claims_beyond_the_per_experiment_cap_are_not_verified(tmp_path: Path) -> None:
    class ManyClaims(ScriptedAgent):
        def write_experiment(self, plan: Any, state: Any, context: Any, feedback: Any) -> Any:
            from orchestrator.agent.schemas import ExperimentCode

            claim = ('{"statement": "strong %d", "expected_direction": "increase", '
                     '"interventions": [{"kind": "patch", "hook": "blocks.%d.hook_resid_pre"}]}')
            claims = "[" + ", ".join(claim % (i, i) for i in range(6)) + "]"
            return StepResult(value=ExperimentCode(code=f"def run(ctx):\n    return {{'summary': 's', 'claims': {claims}}}\n"))

    run, task = make_run(tmp_path, "run", _task(tmp_path, "budgets: {max_experiments: 1, max_claims_per_experiment: 2}\n"))
    verifier = FakeVerifier()
    Loop(run, task, Components(agent=ManyClaims(), backend=FakeBackend(), guard=AcceptAllGuard(),
                               verifier=verifier)).run_until_stopped()
    (entry,) = read_ledger(run.ledger)
    assert verifier.calls == [(1, 0), (1, 1)]
    assert entry.key_figures["claims_tested"] == 2 and entry.key_figures["claims_skipped"] == 4
