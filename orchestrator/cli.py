"""`python -m orchestrator run|resume|status|review|report|verify` (DESIGN.md section 8).

Exit codes: 0 ok; 1 verify did not confirm / unexpected failure; 2 bad input (task file, run
directory); 3 a component is unavailable; 4 the run is locked by another process; 130 interrupted.
Bad input gets one message on stderr and creates or changes nothing.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any, Sequence

from orchestrator.contract import ContractFailure
from orchestrator.crashpoints import crash_point
from orchestrator.integrity import RunInconsistent
from orchestrator.ledger import LedgerCorrupt, read_ledger
from orchestrator.logging import RunLog
from orchestrator.loop import Loop
from orchestrator.progress import Progress
from orchestrator.ratchet import Ratchet, RatchetError
from orchestrator.review import format_review, format_status, review_data, status_data, to_json
from orchestrator.rundir import RunDir, RunDirError, RunLocked, create_run_dir, default_run_dir, is_run_dir, open_run_dir
from orchestrator.state import StateCorrupt, StateStore
from orchestrator.task import Task, TaskError, load_task
from orchestrator.wiring import ENV as WIRING_ENV
from orchestrator.wiring import WiringError, build_components, build_verifier

EXIT_OK, EXIT_FAIL, EXIT_INPUT, EXIT_UNAVAILABLE, EXIT_LOCKED, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130


class CliError(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m orchestrator", description="Unattended interpretability research loop.")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="start a run from a task file (or continue the run in --run-dir)")
    r.add_argument("task", type=Path)
    r.add_argument("--run-dir", type=Path, default=None, help="default: runs/<task>-<UTC time>")
    r.add_argument("--runs-root", type=Path, default=Path("runs"))
    r.add_argument("--quiet", action="store_true", help="no progress line")
    s = sub.add_parser("resume", help="continue a killed or stopped run exactly where it stopped")
    s.add_argument("run_dir", type=Path)
    s.add_argument("--quiet", action="store_true")
    for name, help_text in (("status", "where a run is: progress, spend, recent attempts"), ("review", "one line per verified finding")):
        q = sub.add_parser(name, help=help_text)
        q.add_argument("run_dir", type=Path)
        q.add_argument("--json", action="store_true")
    sub.choices["review"].add_argument("--show", type=int, metavar="N", default=None,
                                       help="one attempt in full: verified figures, finding note, code, figures")
    rep = sub.add_parser("report", help="write report.md (and report.html) into the run directory")
    rep.add_argument("run_dir", type=Path)
    rep.add_argument("--html", action="store_true", help="also write the self-contained report.html")
    v = sub.add_parser("verify", help="re-run the verifier on a finding (attempt number or findings/NNNN-slug.md)")
    v.add_argument("run_dir", type=Path)
    v.add_argument("finding")
    return p


def _open(path: Path) -> RunDir:
    from orchestrator.features.cli import is_feature_run

    if is_feature_run(path):  # a feature run has no prompt-pair contract; status/review/report read it alike
        return RunDir(path)
    try:
        run = open_run_dir(path)
        Ratchet(run.root).branch_commits()  # a damaged repository: one message here, not a git traceback later
        StateStore(run.root).load()
    except (RunDirError, RatchetError, StateCorrupt) as exc:
        raise CliError(str(exc), EXIT_INPUT) from None
    return run


def _stored_task(run: RunDir) -> Task:
    try:  # the tokenizer checks passed when the run was created; the contract pins the pairs
        return load_task(run.task_yaml, check_tokenizer=False)
    except TaskError as exc:
        raise CliError(f"{run.root}: its task.yaml no longer loads: {exc}", EXIT_INPUT) from None


def _components(task: Task, root: Path):
    spent = StateStore(root).load().usage if StateStore(root).exists() else None
    try:
        return build_components(task, root, spent)
    except WiringError as exc:
        raise CliError(f"cannot start: {exc}", EXIT_UNAVAILABLE) from None


def _notice(text: str) -> None:
    print(f"note: {text}", file=sys.stderr)


def _drive(run: RunDir, task: Task, components, quiet: bool) -> int:
    log = RunLog(run.logs / "run.jsonl")
    progress = Progress(quiet=quiet)
    try:
        state = Loop(run, task, components, log=log, on_progress=progress.update, on_notice=_notice).run_until_stopped()
    except RunLocked as exc:
        raise CliError(str(exc), EXIT_LOCKED) from None
    except KeyboardInterrupt:
        progress.close()
        log.warning("interrupted")
        print(f"interrupted: the experiment in flight was stopped and nothing finished is lost; continue with: "
              f"python -m orchestrator resume {run.root}", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        progress.close()
        log.close()
    crash_point("report-writing", state.completed)
    try:
        _end_of_run_report(run)
    except KeyboardInterrupt:
        print(f"interrupted while writing the report; the run itself is {state.status}: write the report with "
              f"python -m orchestrator report {run.root} --html", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"{run.root}: {state.status} ({state.stop_reason}); {state.completed} experiments, {state.kept} kept.\n"
          f"  findings branch: git -C {run.root} log --oneline findings --   (one commit per verified finding)\n"
          f"  review: python -m orchestrator review {run.root}")
    return EXIT_OK if state.status == "finished" else EXIT_UNAVAILABLE


def _end_of_run_report(run: RunDir) -> None:
    """Write report.md/report.html when a session ends; a report failure never fails the run itself."""
    from orchestrator.report import ReportError, write_report

    try:
        paths = write_report(run.root, html=True)
    except ReportError as exc:
        print(f"warning: the run is intact but its report could not be written: {exc}; "
              f"retry with: python -m orchestrator report {run.root} --html", file=sys.stderr)
        return
    print("report: " + ", ".join(str(p) for p in paths), file=sys.stderr)


def _feature(call) -> int:
    """Run a feature-task command (orchestrator/features/cli.py), mapping its errors to ours."""
    from orchestrator.features.cli import FeatureCliError

    try:
        return call()
    except FeatureCliError as exc:
        raise CliError(str(exc), exc.code) from None


def cmd_run(args: argparse.Namespace) -> int:
    from orchestrator.features import cli as features

    if features.is_feature_task_file(args.task):  # kind: explain_sae | behaviour_features
        return _feature(lambda: features.run(args.task, args.run_dir, args.runs_root, args.quiet))
    try:
        task = load_task(args.task)
    except TaskError as exc:
        raise CliError(str(exc), EXIT_INPUT) from None
    text = args.task.read_text(encoding="utf-8")
    path = args.run_dir or default_run_dir(task, args.runs_root)
    if path.exists() and is_run_dir(path):
        run = _open(path)
        stored = _stored_task(run)
        if stored.model_dump(exclude={"model"}) != task.model_dump(exclude={"model"}):
            raise CliError(f"{path} holds a run of a different task; use `resume {path}` or another --run-dir", EXIT_INPUT)
        print(f"run directory: {run.root} (exists: continuing that run)", file=sys.stderr)
        return _drive(run, stored, _components(stored, path), args.quiet)
    components = _components(task, path)  # before creating anything
    if args.run_dir is None:
        _mention_unfinished(args.runs_root, task)
    try:
        run = create_run_dir(path, task, text)
    except RunDirError as exc:
        raise CliError(str(exc), EXIT_INPUT) from None
    print(f"run directory: {run.root}", file=sys.stderr)
    return _drive(run, task, components, args.quiet)


def _mention_unfinished(runs_root: Path, task: Task) -> None:
    """`run TASK` always starts a new timestamped run; say so when an earlier run of the task was cut off."""
    for d in sorted(runs_root.glob(f"{task.name}-*"), reverse=True):
        try:
            state = StateStore(d).load() if (d / "state.json").is_file() else None
        except StateCorrupt:
            continue
        if state is not None and state.status != "finished" and state.task_name == task.name:
            print(f"note: {d} is an unfinished run of this task ({state.completed} attempts done); this starts a new "
                  f"run — to continue that one instead: python -m orchestrator resume {d}", file=sys.stderr)
            return


def cmd_resume(args: argparse.Namespace) -> int:
    from orchestrator.features import cli as features

    d = args.run_dir
    if (d / "contract" / "feature_task.json").is_file() or ((d / "engine").is_dir() and not (d / "contract" / "contract.lock").exists()):
        return _feature(lambda: features.resume(args.run_dir, args.quiet))
    run = _open(args.run_dir)
    task = _stored_task(run)
    print(f"run directory: {run.root} (resuming)", file=sys.stderr)
    return _drive(run, task, _components(task, run.root), args.quiet)


def cmd_status(args: argparse.Namespace) -> int:
    data = status_data(_open(args.run_dir))
    print(to_json(data) if args.json else format_status(data))
    return EXIT_OK


def cmd_review(args: argparse.Namespace) -> int:
    from orchestrator.report import ReportError
    from orchestrator.report.show import NoSuchAttempt
    from orchestrator.review import format_show, show_data, show_json

    run = _open(args.run_dir)
    if args.show is None:
        data = review_data(run)
        print(to_json(data) if args.json else format_review(data))
        return EXIT_OK
    try:
        detail = show_data(run, args.show)
    except (NoSuchAttempt, ReportError) as exc:
        raise CliError(str(exc), EXIT_INPUT) from None
    print(to_json(show_json(detail)) if args.json else format_show(detail))
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    run = _open(args.run_dir)
    try:
        module = importlib.import_module("orchestrator.report")
        write_report = module.write_report
    except (ModuleNotFoundError, AttributeError):
        raise CliError("report is not available yet (orchestrator.report.write_report)", EXIT_UNAVAILABLE) from None
    try:
        paths = write_report(run.root, html=args.html)
    except module.ReportError as exc:
        raise CliError(str(exc), EXIT_INPUT) from None
    print("\n".join(str(p) for p in paths))
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    from orchestrator.verify_cmd import CheckoutError, verify_committed

    run = _open(args.run_dir)
    match = re.match(r"^(?:.*/)?0*(\d+)(?:-[a-z0-9-]*)?(?:\.md)?$", args.finding)
    if match is None:
        raise CliError(f"finding {args.finding!r}: give an attempt number (e.g. 3) or findings/NNNN-slug.md", EXIT_INPUT)
    from orchestrator.features import cli as features

    if features.is_feature_run(run.root):  # re-scored by the trusted feature verifier child
        confirmed, lines = _feature(lambda: features.verify(run.root, int(match.group(1))))
        print("\n".join(lines))
        return EXIT_OK if confirmed else EXIT_FAIL
    task = _stored_task(run)

    def make_verifier(task: Task, root: Path) -> Any:  # only the verifier: no agent provider credentials needed
        return build_components(task, root).verifier if os.environ.get(WIRING_ENV) else build_verifier(task, root)

    try:
        confirmed, lines = verify_committed(run, task, int(match.group(1)), make_verifier, read_ledger(run.ledger))
    except WiringError as exc:
        raise CliError(f"cannot verify: {exc}", EXIT_UNAVAILABLE) from None
    except (ValueError, CheckoutError) as exc:
        raise CliError(str(exc), EXIT_INPUT) from None
    print("\n".join(lines))
    return EXIT_OK if confirmed else EXIT_FAIL


def _sigterm(signum: int, frame: FrameType | None) -> None:
    """SIGTERM, SIGHUP and SIGINT stop the run like Ctrl-C: the experiment child is killed, the run stays resumable.

    Python ignores (only prints) an exception raised inside a ``__del__`` finaliser, which would lose the
    stop and print a traceback: there the signal is sent again 50 ms later instead."""
    f = frame
    while f is not None:
        if f.f_code.co_name == "__del__":
            threading.Timer(0.05, os.kill, (os.getpid(), signum)).start()
            return
        f = f.f_back
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    handlers = {"run": cmd_run, "resume": cmd_resume, "status": cmd_status, "review": cmd_review,
                "report": cmd_report, "verify": cmd_verify}
    try:  # everything, argument parsing included: a Ctrl-C may land on any line
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(sig, _sigterm)
        args = _parser().parse_args(argv)
        return handlers[args.command](args)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    except RunLocked as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_LOCKED
    except (RunDirError, LedgerCorrupt, RatchetError, ContractFailure, StateCorrupt, RunInconsistent) as exc:
        print(f"error: {exc}", file=sys.stderr)  # each message names the file and the repair
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("interrupted; nothing was left half-done (a run directory, if one was made, resumes with "
              "`python -m orchestrator resume RUN_DIR`)", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (json.JSONDecodeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAIL
