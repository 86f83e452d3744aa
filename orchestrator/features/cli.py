"""Feature tasks under the main command: `python -m orchestrator run|resume|verify` route here when the
task file says ``kind: explain_sae`` or ``kind: behaviour_features``, or the run directory holds
contract/feature_task.json. Same conventions as a research run: runs/<name>-<UTC time> by default,
running again on the same --run-dir (or `resume RUN_DIR`) continues where it stopped, a progress line,
report.md/report.html at the end, and `verify` asks the trusted verifier child again.

mlx-free and cheap to import: orchestrator/cli.py imports it to decide the route.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import yaml

FEATURE_KINDS = frozenset({"explain_sae", "behaviour_features"})
EXIT_OK, EXIT_FAIL, EXIT_INPUT, EXIT_UNAVAILABLE, EXIT_LOCKED, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130
_PARTIAL_OK = {"engine", "logs", "contract", ".lock"}  # what a run killed during its engine step leaves


class FeatureCliError(Exception):
    """One message for the user and the exit code of the main command."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def is_feature_task_file(path: Path) -> bool:
    """True when the YAML file declares a feature kind (an unreadable file is left to the main loader's message)."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and data.get("kind") in FEATURE_KINDS


def is_feature_run(path: Path) -> bool:
    path = Path(path)
    return (path / "contract" / "feature_task.json").is_file() and (path / "task.yaml").is_file() and (path / ".git").exists()


def _is_partial(path: Path) -> bool:
    """A directory left by a feature run stopped before its contract commit (engine step under way)."""
    names = {p.name for p in path.iterdir()}
    return bool(names) and names <= _PARTIAL_OK and (path / "engine").is_dir()


def _load(path: Path):
    from orchestrator.features.task import FeatureTaskError, load_feature_task

    try:
        return load_feature_task(path)
    except FeatureTaskError as exc:
        raise FeatureCliError(str(exc), EXIT_INPUT) from None


def run(task_path: Path, run_dir: Path | None, runs_root: Path, quiet: bool) -> int:
    """`run TASK.yaml` for a feature task: a new run directory, or continue the one in --run-dir."""
    from orchestrator.features.run import default_run_dir

    task = _load(task_path)
    text = Path(task_path).read_text(encoding="utf-8")
    root = run_dir or default_run_dir(task, runs_root)
    if root.exists() and not root.is_dir():
        raise FeatureCliError(f"{root} is not a directory; choose another --run-dir", EXIT_INPUT)
    if root.exists() and is_feature_run(root):
        stored = _load(root / "task.yaml")
        if stored.model_dump() != task.model_dump():
            raise FeatureCliError(f"{root} holds a run of a different task; use `resume {root}` or another --run-dir", EXIT_INPUT)
    elif root.exists() and any(root.iterdir()) and not _is_partial(root):
        raise FeatureCliError(f"{root} already exists and is not a feature run directory; choose another --run-dir", EXIT_INPUT)
    print(f"run directory: {root}", file=sys.stderr)
    return _drive(task, root, text, quiet)


def resume(run_dir: Path, quiet: bool) -> int:
    if not is_feature_run(run_dir):
        raise FeatureCliError(f"{run_dir}: not a feature run directory (no contract commit yet); start it again with "
                              f"`python -m orchestrator run TASK.yaml --run-dir {run_dir}`", EXIT_INPUT)
    task = _load(run_dir / "task.yaml")
    return _drive(task, run_dir, None, quiet)


def _drive(task, root: Path, text: str | None, quiet: bool) -> int:
    from orchestrator.features.measure_client import MeasureError
    from orchestrator.features.run import FeatureRunError, run_feature_task
    from orchestrator.progress import Progress, Snapshot
    from orchestrator.rundir import RunDirError

    progress = Progress(quiet=quiet)
    started = time.monotonic()

    def on_latent(index: int, total: int, latent: int, outcome, state) -> None:
        progress.update(Snapshot(phase="refining" if outcome is None else "verified", attempt=index,
                                 max_experiments=total, completed=state.completed, kept=state.kept,
                                 elapsed_s=time.monotonic() - started, dollars=state.usage.dollars,
                                 tokens=state.usage.total_tokens, slug=f"latent-{latent}"))

    try:
        summary = run_feature_task(task, root, task_text=text, log=progress.message, on_latent=on_latent)
    except RunDirError as exc:
        raise FeatureCliError(str(exc), EXIT_LOCKED) from None
    except KeyboardInterrupt:
        progress.close()
        print(f"interrupted; continue with: python -m orchestrator resume {root}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (FeatureRunError, MeasureError) as exc:
        raise FeatureCliError(f"{root}: {exc}", EXIT_FAIL) from None
    finally:
        progress.close()
    _report(root)
    from orchestrator.state import StateStore

    state = StateStore(root).load()
    print(f"{root}: {state.status} ({state.stop_reason}); {summary.n_latents} latents explained, {summary.n_kept} kept "
          f"(held-out {summary.keep_metric} >= random-explanation baseline + {summary.keep_sigma:g} sigma). "
          f"See: python -m orchestrator review {root}")
    if state.status != "finished":
        print(f"continue after a fix (budget or provider) with: python -m orchestrator resume {root}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    return EXIT_OK


def _report(root: Path) -> None:
    from orchestrator.report import ReportError, write_report

    try:
        paths = write_report(root, html=True)
    except ReportError as exc:
        print(f"warning: the run is intact but its report could not be written: {exc}; "
              f"retry with: python -m orchestrator report {root} --html", file=sys.stderr)
        return
    print("report: " + ", ".join(str(p) for p in paths), file=sys.stderr)


def verify(run_dir: Path, attempt: int) -> tuple[bool, list[str]]:
    """Ask the trusted verifier child about one recorded latent; (still confirmed, printable lines)."""
    from orchestrator.features.measure_client import MeasureError
    from orchestrator.features.run import MEASURE_ENV
    from orchestrator.features.schemas import METRICS, LatentOutcome
    from orchestrator.features.verify import TrustedVerifier, VerifyRequest
    from orchestrator.ledger import read_ledger

    task = _load(run_dir / "task.yaml")
    entry = next((e for e in read_ledger(run_dir / "results.jsonl") if e.attempt == attempt), None)
    if entry is None:
        raise FeatureCliError(f"attempt {attempt} is not in the ledger of {run_dir}", EXIT_INPUT)
    path = run_dir / "results" / f"{attempt:04d}.json"
    if not path.is_file():
        raise FeatureCliError(f"attempt {attempt} has no result file (results/{attempt:04d}.json)", EXIT_INPUT)
    outcome = LatentOutcome.model_validate(json.loads(path.read_text(encoding="utf-8"))["result"]["measurements"]["outcome"])
    command = json.loads(os.environ[MEASURE_ENV]) if os.environ.get(MEASURE_ENV) else None
    try:
        with TrustedVerifier(run_dir, keep_keys=task.scorer.provider != "builtin", measure_command=command) as verifier:
            v = verifier.verify(VerifyRequest.from_outcome(outcome))
    except MeasureError as exc:
        return False, [f"attempt {attempt:04d} {entry.slug}: NOT CONFIRMED — {exc}"]
    m = v.keep_metric
    lines = [f"attempt {attempt:04d} {entry.slug} (recorded decision: {entry.decision}): {outcome.final.text[:120]}"]
    for metric in METRICS:
        b = v.baselines[metric]
        lines.append(f"  {metric:<10} held-out {v.test.get(metric):.3f}  baseline {b.mean:.3f} ± {b.sigma:.3f}  "
                     f"margin {v.margins[metric]:+.2f} sigma" + ("  <- keep rule" if metric == m else ""))
    if v.adversarial_checked:
        lines.append(f"  adversarial record: {v.adversarial_checked} inputs re-measured, max |diff| "
                     f"{v.adversarial_max_diff:.2g}: {'consistent' if v.adversarial_consistent else 'INCONSISTENT'}")
    lines += [f"  problem: {p}" for p in v.problems]
    verdict = "CONFIRMED" if v.kept else "not confirmed"
    lines.append(f"  {verdict}: held-out {m} {'beats' if v.beats_baseline else 'does not beat'} the random-explanation "
                 f"baseline by {v.keep_sigma:g} sigma (n = {v.test.n_activating} activating, {v.test.n_negative} negative)")
    was_kept = entry.decision == "keep"
    return (v.kept or not was_kept), lines
