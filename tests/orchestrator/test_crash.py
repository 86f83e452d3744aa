"""Crash test: SIGKILL the loop at 22 distinct instants, resume, and compare with an uninterrupted run.

With the scripted agent, attempts cycle through: 1 keep, 2 syntax error → repaired → discard,
3 runtime error → repaired → keep, 4 no claims → discard, 5 keep, ... (8 attempts, 4 kept).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import git
import pytest

from orchestrator.rundir import RunDir
from tests.orchestrator import killing
from tests.orchestrator.helpers import drive_in_child, make_run, snapshot, write_task

REPO = Path(__file__).resolve().parents[2]

CRASH_POINTS = [
    "planning:1",            # phase recorded, planner not yet called
    "planned:2",             # planner answered (and was paid), plan not yet saved
    "writing:2",             # before the executor writes the first (broken) version
    "guarding:2",            # before the guard rejects the syntax error
    "running:1",             # before the experiment is submitted
    "experiment-running:1",  # experiment subprocess in flight
    "experiment-running:3",  # in flight, the run that fails and triggers a repair
    "verifying:1",           # result file written, nothing verified
    "verified-claim:1",      # claim verified and saved, phase not advanced
    "analysing:3",
    "reflecting:3",
    "committing:1",          # decision made, ledger line not written
    "ledger-torn:3",         # killed half-way through writing the ledger line
    "ledger-written:1",      # keep: ledger line written, no commit yet
    "ledger-written:2",      # discard: ledger line written, state not advanced
    "commit-staging:3",      # inside the commit: index reset, nothing staged
    "commit-staged:3",       # inside the commit: files staged, commit object not written
    "committed:5",           # commit done, state not advanced
    "recorded-done:5",       # attempt record marked done, global state not advanced
    "atomic-rename:40",      # a state/record file written to its temp name but not renamed
    "planning:8",            # the last attempt
    "done:*",                # never reached (no phase named done is entered): the run must finish normally
]


# Work a crash may legitimately repeat once: the call or experiment that was cut off.
REPEATS = {"planned:2": ("role_called", 1), "experiment-running:1": ("experiment_submitted", 1),
           "experiment-running:3": ("experiment_submitted", 1)}


def paid_work(run: RunDir) -> Counter[str]:
    """LLM calls and experiment submissions over every session of a run (from logs/run.jsonl)."""
    events = [json.loads(line) for line in (run.logs / "run.jsonl").read_text().splitlines() if line.strip()]
    return Counter(e["event"] for e in events if e["event"] in ("role_called", "experiment_submitted"))


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, Counter[str]]:
    tmp = tmp_path_factory.mktemp("baseline")
    task_path = write_task(tmp)
    run, _ = make_run(tmp, "run", task_path)
    assert drive_in_child(run, task_path, None) == 0
    return task_path, snapshot(run), paid_work(run)


def check_invariants(run: RunDir) -> None:
    raw = [json.loads(line) for line in run.ledger.read_text().splitlines() if line.strip()]
    attempts = [r["attempt"] for r in raw]
    assert attempts == list(range(1, len(attempts) + 1)), f"duplicate or missing ledger lines: {attempts}"
    repo = git.Repo(run.root)
    keeps = {r["attempt"] for r in raw if r["decision"] == "keep"}
    committed = []
    for c in repo.iter_commits("findings"):
        if "Attempt: " in c.message:
            committed.append(int(c.message.rsplit("Attempt: ", 1)[1].split()[0]))
    assert sorted(committed) == sorted(keeps), "every kept attempt has exactly one commit and vice versa"
    for c in repo.iter_commits("findings"):  # every findings commit already holds its own ledger line
        if "Attempt: " in c.message:
            n = int(c.message.rsplit("Attempt: ", 1)[1].split()[0])
            ledger_in_commit = (c.tree / "results.jsonl").data_stream.read().decode()
            assert any(json.loads(l)["attempt"] == n for l in ledger_in_commit.splitlines() if l.strip())
    assert len(list(repo.iter_commits("findings", paths="contract"))) == 1, "git log -- contract/ shows one commit"
    assert not repo.is_dirty(untracked_files=False, path="contract")
    stale = [p for p in run.root.rglob(".*.tmp")]
    assert stale == [] or all(p.name == ".state.json.tmp" or p.parent.name == "state" for p in stale)


@pytest.mark.parametrize("crash", CRASH_POINTS)
def test_kill_and_resume_matches_uninterrupted(crash: str, baseline: tuple[Path, dict, Counter[str]], tmp_path: Path) -> None:
    task_path, expected, work = baseline
    run, _ = make_run(tmp_path, "run", task_path)
    code = drive_in_child(run, task_path, crash)
    if crash == "done:*":
        assert code == 0
    else:
        assert code == -signal.SIGKILL, f"crash point {crash} was never reached (exit {code})"
        assert drive_in_child(run, task_path, None) == 0
    check_invariants(run)
    got = snapshot(run)
    for key in expected:
        assert got[key] == expected[key], f"{key} differs after crash at {crash}"
    extra = paid_work(run) - work
    allowed = Counter(dict([REPEATS[crash]])) if crash in REPEATS else Counter()
    if crash.startswith("atomic-rename"):
        assert sum(extra.values()) <= 1, extra
    else:
        assert extra == allowed, f"work repeated after crash at {crash}: {dict(extra)}"


def test_repeated_crashes_in_one_run(baseline: tuple[Path, dict, Counter[str]], tmp_path: Path) -> None:
    """Several kills in a row on the same run directory, each resume crashing again later."""
    task_path, expected, work = baseline
    run, _ = make_run(tmp_path, "run", task_path)
    for crash in ("running:1", "ledger-written:1", "commit-staged:3", "experiment-running:4", "committed:7"):
        assert drive_in_child(run, task_path, crash) == -signal.SIGKILL
    assert drive_in_child(run, task_path, None) == 0
    check_invariants(run)
    assert snapshot(run) == expected


def _cli(*args: str, env_extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", **{k: v for k, v in os.environ.items() if k in ("HOME", "XDG_CACHE_HOME", "ENGINE_CACHE_DIR")}, "ORCH_COMPONENTS": "tests.orchestrator.fakes:build_components", **env_extra}
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)


def test_cli_kill_between_ledger_and_commit_then_resume(baseline: tuple[Path, dict, Counter[str]], tmp_path: Path) -> None:
    """The same through the real CLI: `run` is SIGKILLed, `resume RUN_DIR` finishes it."""
    task_path, expected, work = baseline
    target = tmp_path / "run"
    first = _cli("run", str(task_path), "--run-dir", str(target), "--quiet", env_extra={"ORCH_CRASH_AT": "ledger-written:3"})
    assert first.returncode == -signal.SIGKILL, first.stderr
    pid = (target / ".lock").read_text().strip()
    assert pid.isdigit()  # the killed holder's pid stays in the lock file; the kernel released the lock itself
    second = _cli("resume", str(target), "--quiet", env_extra={})
    assert second.returncode == 0, second.stderr
    assert f"cleared the stale lock of pid {pid}" in second.stderr
    assert "continuing attempt 3 in committing" in second.stderr  # what the resume picks up
    assert (target / ".lock").read_text() == ""
    run = RunDir(target)
    check_invariants(run)
    assert snapshot(run) == expected


# ---------------------------------------------------------------- the real CLI, killed and interrupted
# Sessions are `run TASK --run-dir DIR` in their own process group; components: the scripted agent and
# experiment children that die with the loop (tests/orchestrator/killing.py). The longer randomized
# campaign is tests/bench/bench_kill_campaign.py.


@pytest.fixture(scope="module")
def cli_baseline(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, float]:
    tmp = tmp_path_factory.mktemp("cli-baseline")
    task_path = write_task(tmp)
    code, err, seconds = killing.run_to_end(task_path, tmp / "run", killing.cli_env())
    assert code == 0, err
    run = RunDir(tmp / "run")
    killing.check_clean(run)
    return task_path, snapshot(run), seconds


def test_random_wall_clock_kills_of_the_cli(cli_baseline: tuple[Path, dict, float], tmp_path: Path) -> None:
    """SIGKILL of the whole process group, SIGTERM and SIGINT at random instants, then `run` again each time."""
    task_path, expected, seconds = cli_baseline
    run = RunDir(tmp_path / "run")
    result = killing.campaign(task_path, run.root, killing.cli_env(), random.Random(20261123), max_kills=4, window_s=seconds)
    killing.check_session_output(result)
    check_invariants(run)
    killing.check_clean(run)
    killing.same_as(expected, run)


@pytest.mark.parametrize("crash,signame", [
    ("commit-staged:3", "INT"),        # inside the findings commit
    ("ledger-torn:5", "TERM"),         # half a ledger line written
    ("report-writing:*", "KILL"),      # the run is finished, its report not yet written
])
def test_cli_stopped_at_an_exact_instant_resumes_exactly(crash: str, signame: str, cli_baseline: tuple[Path, dict, float],
                                                         tmp_path: Path) -> None:
    task_path, expected, _ = cli_baseline
    run = RunDir(tmp_path / "run")
    first = killing.start(task_path, run.root, killing.cli_env(ORCH_CRASH_AT=crash, ORCH_CRASH_SIGNAL=signame))
    _, err = first.communicate(timeout=120)
    assert "Traceback" not in err, err
    if signame == "KILL":
        assert first.returncode == -signal.SIGKILL
        assert run.lock_path.read_text() == ""  # killed after the loop released its lock
    else:
        assert first.returncode == 130, err
        assert f"python -m orchestrator resume {run.root}" in err, err
        assert run.lock_path.read_text() == ""  # a clean stop releases the lock
    assert killing.orphans(run.root) == [], "the experiment child outlived the stopped loop"
    code, err, _ = killing.run_to_end(task_path, run.root, killing.cli_env())
    assert code == 0, err
    for said in ("continuing that run", f"report: {run.root}/report.md", f"git -C {run.root} log --oneline findings --"):
        assert said in err, err  # where the run, its report and its findings branch are
    check_invariants(run)
    killing.check_clean(run)
    killing.same_as(expected, run)
    assert (run.root / "report.md").is_file() and (run.root / "report.html").is_file()


def test_sigterm_stops_a_long_experiment_at_once(cli_baseline: tuple[Path, dict, float], tmp_path: Path) -> None:
    """SIGTERM while a 60 s experiment runs: the child is killed, the CLI exits 130 within seconds."""
    task_path, expected, _ = cli_baseline
    run = RunDir(tmp_path / "run")
    proc = killing.start(task_path, run.root, killing.cli_env(FAKE_DELAY_S="60"))
    log = run.logs / "run.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (log.is_file() and "experiment_submitted" in log.read_text()):
        time.sleep(0.1)
    assert killing.orphans(run.root), "no experiment child started"
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert time.monotonic() - t0 < 15, "the loop waited for the experiment instead of stopping it"
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert killing.orphans(run.root) == []
    code, err, _ = killing.run_to_end(task_path, run.root, killing.cli_env())
    assert code == 0, err
    check_invariants(run)
    killing.check_clean(run)
    killing.same_as(expected, run)


def test_ctrl_c_while_the_program_is_still_importing(tmp_path: Path) -> None:
    """A Ctrl-C that lands before main() runs gives one line and exit 130, not an import traceback."""
    task_path = write_task(tmp_path)
    proc = killing.start(task_path, tmp_path / "run", killing.cli_env())
    time.sleep(0.4)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, (proc.returncode, err)
    assert "interrupted" in err
