"""Malformed inputs, table-driven: task files, command lines and damaged run directories.

Each case must end with a non-zero exit and one message on stderr that names the file or field and
the fix, never a traceback, and must create or change nothing. Cases marked "was:" failed before the
fix that came with this file (silently accepted, or a traceback).
"""

from __future__ import annotations

import contextlib
import io
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Callable

import git
import pytest

from orchestrator.cli import main
from orchestrator.rundir import RunDir
from tests.orchestrator.helpers import drive, drive_in_child, make_run, write_task

REPO = Path(__file__).resolve().parents[2]
HEAD = """\
name: inputs
question: Which layer carries the city?
"""
GEN = "generator: {family: factual_recall, n: 12, seed: 1}\n"
PAIR = '  - {{clean: "{c}", corrupted: "The Colosseum is in the city of", correct: " Paris", wrong: " Rome"}}\n'
PAIRS = "pairs:\n" + "".join(PAIR.format(c=c) for c in (
    "The Eiffel Tower is in the city of", "The Louvre Museum is in the city of", "The Moulin Rouge is in the city of",
    "The Palais Royal is in the city of"))

# name -> (task file bytes, or a callable making the path; fragment the message must contain)
TASKS: dict[str, tuple[bytes | Callable[[Path], Path], str]] = {
    "bad yaml": (b"name: x\nquestion: [unclosed\n", "not valid YAML at line 3"),
    "non-utf8": (b"\xff\xfe name: x\n", "cannot read the task file (UnicodeDecodeError); give a readable UTF-8 YAML file"),
    "NUL bytes": (b"\x00\x01\x02", "not valid YAML"),
    "empty file": (b"", "the task file is empty"),
    "a directory": (lambda tmp: _mkdir(tmp / "task.yaml"), "cannot read the task file (IsADirectoryError)"),
    "missing file": (lambda tmp: tmp / "nope.yaml", "no such task file; check the path"),
    "top level list": (b"- a\n- b\n", "must be a YAML mapping"),
    "missing question": (b"name: x\n" + GEN.encode(), "question: Field required; add it to the task file"),
    "wrong type": ((HEAD + GEN + "budgets: {max_experiments: many}\n").encode(), "budgets.max_experiments"),
    # was: accepted as max_experiments 1
    "bool for a count": ((HEAD + GEN + "budgets: {max_experiments: true}\n").encode(), "YAML read it as true/false"),
    "1e3 read as text": ((HEAD + GEN + "budgets: {wall_clock_hours: 1e3}\n").encode(), "YAML read it as text"),
    # was: accepted, failed later inside the sandbox (numpy rejects negative seeds)
    "negative seed": ((HEAD + GEN + "seed: -1\n").encode(), "seed: input should be greater than or equal to 0"),
    "huge seed": ((HEAD + GEN + "seed: 99999999999999999999999\n").encode(), "seed: input should be less than or equal to"),
    "nan budget": ((HEAD + GEN + "budgets: {max_dollars: .nan}\n").encode(), "budgets.max_dollars"),
    "infinite hours": ((HEAD + GEN + "budgets: {wall_clock_hours: .inf}\n").encode(), "budgets.wall_clock_hours"),
    "zero experiments": ((HEAD + GEN + "budgets: {max_experiments: 0}\n").encode(), "budgets.max_experiments: input should be greater than or equal to 1"),
    "absurd experiments": ((HEAD + GEN + "budgets: {max_experiments: 1000000000}\n").encode(), "budgets.max_experiments: input should be less than or equal to 100000"),
    "absurd timeout": ((HEAD + GEN + "sandbox: {timeout_s: 0.0001}\n").encode(), "sandbox.timeout_s: input should be greater than or equal to 1"),
    "unknown model": ((HEAD + GEN + "model: gpt-17-ultra\n").encode(), "model: 'gpt-17-ultra' is not a known model"),
    "model is a plain file": ((HEAD + GEN + "model: /etc/hostname\n").encode(), "neither a .gguf file nor a directory with config.json"),
    "unknown provider": ((HEAD + GEN + "agent: {provider: openai}\n").encode(), "agent.provider: 'openai' is not allowed"),
    "multi-token answer": ((HEAD + PAIRS.replace('" Paris"', '" Parisville"', 1)).encode(), "pairs[0].correct: ' Parisville' is"),
    "empty pair list": ((HEAD + "pairs: []\n").encode(), "pairs: list should have at least 4 items"),
    "pairs: null": ((HEAD + "pairs:\n").encode(), "give either `pairs:`"),
    "pairs not mappings": ((HEAD + "pairs: [1, 2, 3, 4]\n").encode(), "pairs[0]: Input should be a valid dictionary"),
    # was: "cannot write the contract: 1 prompt(s) appear in both splits" (no field named)
    "empty prompt": ((HEAD + PAIRS.replace("The Eiffel Tower is in the city of", "")).encode(), "pairs[0].clean is empty"),
    "repeated prompt": ((HEAD + PAIRS.replace("The Louvre Museum", "The Eiffel Tower")).encode(), "pairs[1].clean repeats pairs[0].clean"),
    # was: accepted with one exploration pair
    "lopsided split": ((HEAD + GEN + "split: {held_out_fraction: 0.99}\n").encode(), "each side needs at least 2"),
    "unknown field": ((HEAD + GEN + "budgetz: {max_experiments: 3}\n").encode(), "budgetz: unknown field; remove it (did you mean `budgets`?)"),
    "generator too large": ((HEAD + "generator: {family: factual_recall, n: 5000}\n").encode(), "generator.n: factual_recall has"),
    "pairs and generator": ((HEAD + GEN + PAIRS).encode(), "give `pairs:` or `generator:`, not both"),
    "bad name": (b"name: My Task!\nquestion: q\n" + GEN.encode(), "name: String should match pattern"),
}


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def invoke(*argv: str) -> tuple[int, str]:
    """main() in this process (fast): (exit code, stderr). A traceback here is an exception escaping main."""
    err = io.StringIO()
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = main(list(argv))
            except SystemExit as exc:  # argparse
                code = int(exc.code or 0)
    finally:
        for s, h in saved.items():
            signal.signal(s, h)
    return code, err.getvalue()


def _assert_one_clear_message(code: int, err: str, fragment: str) -> None:
    assert code != 0, err
    assert "Traceback" not in err, err
    assert fragment in err, err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith(("run directory:", "note:"))]
    assert lines and (lines[0].startswith("error: ") or lines[0].startswith("usage: ")), err


@pytest.mark.parametrize("kind", sorted(TASKS))
def test_malformed_task_file(kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_COMPONENTS", "tests.orchestrator.fakes:build_components")
    content, fragment = TASKS[kind]
    if callable(content):
        path = content(tmp_path)
    else:
        path = tmp_path / "task.yaml"
        path.write_bytes(content)
    code, err = invoke("run", str(path), "--run-dir", str(tmp_path / "runs" / "run"), "--quiet")
    _assert_one_clear_message(code, err, fragment)
    assert code == 2
    assert not (tmp_path / "runs").exists() or list((tmp_path / "runs").iterdir()) == [], "something was created"


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A finished run (3 attempts, 2 kept) and its task file, made in-process with the fakes."""
    tmp = tmp_path_factory.mktemp("finished")
    task_path = write_task(tmp, max_experiments=3)
    run, task = make_run(tmp, "run", task_path)
    drive(run, task)
    return run.root, task_path


@pytest.fixture(scope="module")
def cut_off(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run killed with attempt 2 in flight (in its running phase)."""
    tmp = tmp_path_factory.mktemp("cutoff")
    task_path = write_task(tmp, max_experiments=3)
    run, _ = make_run(tmp, "run", task_path)
    assert drive_in_child(run, task_path, "running:2") == -signal.SIGKILL
    return run.root


def _lines(path: Path, edit: Callable[[list[str]], list[str]]) -> None:
    path.write_text("\n".join(edit(path.read_text().splitlines())) + "\n")


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)


# name -> (damage done to a copy of the finished run, fragment of the message). All were silently accepted or
# ended in a traceback before session-start checks existed (integrity.check_run, Ratchet.check, StateCorrupt).
DAMAGE: dict[str, tuple[Callable[[Path], object], str]] = {
    "ledger line edited": (lambda r: _lines(r / "results.jsonl", lambda l: ["{garbage"] + l[1:]), "results.jsonl: line 1 is not a ledger entry"),
    "last ledger line invalid": (lambda r: _lines(r / "results.jsonl", lambda l: l[:-1] + ['{"attempt": 3}']), "line 3 is not a ledger entry"),
    "ledger line repeated": (lambda r: _lines(r / "results.jsonl", lambda l: l + l[:1]), "line 4 records attempt 1 a second time"),
    "ledger deleted": (lambda r: (r / "results.jsonl").unlink(), "finished attempts 1, 2, 3 have no ledger line"),
    "state.json garbage": (lambda r: (r / "state.json").write_text("xx"), "state.json: not a valid RunState"),
    "state.json wrong types": (lambda r: (r / "state.json").write_text('{"run_id": 5}'), "run_id: Input should be a valid string"),
    "state.json of another task": (lambda r: (r / "state.json").write_text((r / "state.json").read_text().replace('"crash-test"', '"other"')),
                                   "belongs to task 'other'"),
    "state.json count edited": (lambda r: (r / "state.json").write_text((r / "state.json").read_text().replace('"completed": 3', '"completed": 2')),
                                "says 2 attempts finished"),
    "HEAD detached": (lambda r: _git(r, "checkout", "-q", "--detach"), "git HEAD is detached"),
    "HEAD on another branch": (lambda r: _git(r, "checkout", "-q", "-b", "mine"), "git HEAD is on branch 'mine'"),
    "findings reset backwards": (lambda r: _git(r, "reset", "-q", "--hard", "HEAD~1"), "lost the commit of kept attempt 3"),
    "foreign commit on findings": (lambda r: (_git(r, "commit", "-q", "--allow-empty", "-m", "mine")), "was not made by the loop"),
    "findings branch deleted": (lambda r: (_git(r, "checkout", "-q", "-b", "x"), _git(r, "branch", "-q", "-D", "findings")), "has no `findings` branch"),
    "git objects deleted": (lambda r: [shutil.rmtree(p) for p in (r / ".git" / "objects").glob("??")], "the findings branch cannot be read"),
    "git directory replaced": (lambda r: (shutil.rmtree(r / ".git"), (r / ".git").write_text("junk")), "is not a git repository"),
    "lock path is a directory": (lambda r: ((r / ".lock").unlink(missing_ok=True), (r / ".lock").mkdir()), ".lock: cannot open the run's lock file"),
}


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_damaged_run_dir_is_refused_and_left_alone(kind: str, finished: tuple[Path, Path], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_COMPONENTS", "tests.orchestrator.fakes:build_components")
    root = tmp_path / "run"
    shutil.copytree(finished[0], root, symlinks=True)
    damage, fragment = DAMAGE[kind]
    damage(root)
    ledger = (root / "results.jsonl").read_bytes() if (root / "results.jsonl").exists() else None
    code, err = invoke("resume", str(root), "--quiet")
    _assert_one_clear_message(code, err, fragment)
    assert code == 2
    assert str(root) in err, "the message names the run directory or file"
    after = (root / "results.jsonl").read_bytes() if (root / "results.jsonl").exists() else None
    assert after == ledger, "a refused resume changed the ledger"
    for command in ("status", "review"):  # read-only commands: a message or a result, never a traceback
        code, err = invoke(command, str(root))
        assert "Traceback" not in err and (code == 0 or err.startswith("error: ")), (command, err)


def test_garbage_record_of_the_attempt_in_flight(cut_off: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """was: a pydantic traceback."""
    monkeypatch.setenv("ORCH_COMPONENTS", "tests.orchestrator.fakes:build_components")
    root = tmp_path / "run"
    shutil.copytree(cut_off, root)
    (root / "state" / "attempt-0002.json").write_text("{")
    code, err = invoke("resume", str(root), "--quiet")
    _assert_one_clear_message(code, err, "attempt-0002.json: not a valid AttemptRecord")


def test_a_cut_off_run_resumes_after_the_checks(cut_off: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The session-start checks accept every state a kill can leave (here: attempt 2 in flight, torn ledger tail)."""
    monkeypatch.setenv("ORCH_COMPONENTS", "tests.orchestrator.fakes:build_components")
    root = tmp_path / "run"
    shutil.copytree(cut_off, root)
    with (root / "results.jsonl").open("ab") as f:
        f.write(b'{"attempt": 2, "slug": "torn')  # a torn append: no newline
    (root / ".state.json.tmp").write_text("{half")
    code, err = invoke("resume", str(root), "--quiet")
    assert code == 0, err
    assert "continuing attempt 2 in running" in err
    assert not (root / ".state.json.tmp").exists()
    assert [e["attempt"] for e in map(__import__("json").loads, (root / "results.jsonl").read_text().splitlines())] == [1, 2, 3]


CLI: dict[str, tuple[Callable[[Path, Path, Path], list[str]], str]] = {
    "unknown flag": (lambda t, r, tmp: ["run", str(t), "--frobnicate"], "unrecognized arguments: --frobnicate"),
    "unknown command": (lambda t, r, tmp: ["frob"], "invalid choice: 'frob'"),
    "no command": (lambda t, r, tmp: [], "the following arguments are required"),
    "resume a missing dir": (lambda t, r, tmp: ["resume", str(tmp / "nope")], "no such run directory"),
    "resume a file": (lambda t, r, tmp: ["resume", str(t)], "not a directory; give a run directory"),
    "resume a plain dir": (lambda t, r, tmp: ["resume", str(tmp)], "not a run directory (missing"),
    "run dir of another task": (lambda t, r, tmp: ["run", str(_other_task(tmp)), "--run-dir", str(r)], "holds a run of a different task"),
    "run dir is a file": (lambda t, r, tmp: ["run", str(t), "--run-dir", str(t)], "already exists and is not an empty directory"),
    "verify a bad finding": (lambda t, r, tmp: ["verify", str(r), "x/y"], "give an attempt number"),
    "verify an unknown attempt": (lambda t, r, tmp: ["verify", str(r), "99"], "attempt 99 is not in the ledger"),
    "review --show unknown": (lambda t, r, tmp: ["review", str(r), "--show", "42"], "42"),
}


def _other_task(tmp: Path) -> Path:
    path = tmp / "other.yaml"
    path.write_text(write_task(tmp).read_text().replace("Which layer", "Which head"))
    return path


@pytest.mark.parametrize("kind", sorted(CLI))
def test_bad_command_line(kind: str, finished: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_COMPONENTS", "tests.orchestrator.fakes:build_components")
    make, fragment = CLI[kind]
    root, task_path = finished
    ledger = (root / "results.jsonl").read_bytes()
    code, err = invoke(*make(task_path, root, tmp_path))
    _assert_one_clear_message(code, err, fragment)
    assert (root / "results.jsonl").read_bytes() == ledger


def test_through_the_real_entry_point(tmp_path: Path) -> None:
    """The same as a user sees it: `python -m orchestrator` in a subprocess, non-UTF-8 task file and a bad flag."""
    path = tmp_path / "task.yaml"
    path.write_bytes(b"\xff\xfe name: x\n")
    for argv in (["run", str(path)], ["run", str(path), "--no-such-flag"]):
        proc = subprocess.run([sys.executable, "-m", "orchestrator", *argv], cwd=REPO, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) <= 3, proc.stderr


def test_run_twice_without_run_dir_starts_a_new_run_and_points_at_the_unfinished_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's command given again: a new timestamped run, with a pointer to the cut-off earlier one."""
    monkeypatch.setenv("ORCH_COMPONENTS", "tests.orchestrator.fakes:build_components")
    task_path = write_task(tmp_path, max_experiments=2)
    runs = tmp_path / "runs"
    earlier, _ = make_run(runs, "crash-test-20200101T000000Z", task_path)  # created, never driven: unfinished
    err = io.StringIO()
    out = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = main(["run", str(task_path), "--runs-root", str(runs), "--quiet"])
    assert code == 0, err.getvalue()
    text = err.getvalue() + out.getvalue()
    assert f"resume {earlier.root}" in text
    new = [d for d in runs.iterdir() if d.name != earlier.root.name and not d.name.startswith(".")]
    assert len(new) == 1
    for said in (f"run directory: {new[0]}", f"report: {new[0]}/report.md", f"git -C {new[0]} log --oneline findings --"):
        assert said in text, text


def test_ctrl_c_during_argument_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    """was: a KeyboardInterrupt in parse_args escaped main() as a traceback (seen once in the kill campaign)."""
    import orchestrator.cli as cli

    class Interrupted:
        def parse_args(self, argv: object) -> None:
            raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_parser", lambda: Interrupted())
    code, err = invoke("status", "x")
    assert code == 130 and "interrupted" in err and "Traceback" not in err


def test_a_stop_signal_inside_a_finaliser_is_delivered_again_not_lost() -> None:
    """was: SIGTERM landing in a gitpython __del__ raised KeyboardInterrupt there, which Python only prints
    ("Exception ignored in ... Traceback") and drops: the run went on, or ended with -2."""
    import sys
    import time

    import orchestrator.cli as cli

    got: list[int] = []
    old = signal.signal(signal.SIGUSR1, lambda s, f: got.append(s))
    raised: list[BaseException] = []

    class Finalised:
        def __del__(self) -> None:
            try:
                cli._sigterm(signal.SIGUSR1, sys._getframe())
            except BaseException as exc:  # noqa: BLE001 - what the test looks for
                raised.append(exc)

    try:
        Finalised()  # dropped at once: __del__ runs here
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            time.sleep(0.01)
        assert raised == [] and got == [signal.SIGUSR1]
        with pytest.raises(KeyboardInterrupt):  # anywhere else it stops at once
            cli._sigterm(signal.SIGUSR1, sys._getframe())
    finally:
        signal.signal(signal.SIGUSR1, old)


def test_a_machine_that_cannot_isolate_experiments_is_refused_before_anything_is_created(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: IsolationUnavailable surfaced as a traceback from the first experiment, the run dir made."""
    from sandbox import isolation

    monkeypatch.delenv("ORCH_COMPONENTS", raising=False)
    monkeypatch.delenv(isolation.ALLOW_DEGRADED_ENV, raising=False)
    weak = isolation.IsolationReport(platform="Linux", mode="rlimits-only", network_isolated=False,
                                     degraded=["bubblewrap not installed (apt-get install bubblewrap)"])
    monkeypatch.setattr(isolation, "isolation_report", lambda *a, **k: weak)
    code, err = invoke("run", str(write_task(tmp_path)), "--run-dir", str(tmp_path / "runs" / "run"), "--quiet")
    _assert_one_clear_message(code, err, "refusing to run experiments")
    assert code == 3 and "apt-get install bubblewrap" in err
    assert not (tmp_path / "runs").exists(), "something was created"
