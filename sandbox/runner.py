"""Run one experiment file: guard, contract check, isolated harness, classification, result file.

Everything that comes back from the child is untrusted data: it is parsed as JSON (never pickle),
size-capped and validated with pydantic here, in the parent, which alone writes results/NNNN.json.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

from pydantic import ValidationError

from sandbox.contract import contract_digest, load_contract, restore_contract, verify_contract
from sandbox.guard import MAX_SOURCE_BYTES, check_source, format_issues
from sandbox.isolation import IsolationReport, isolation_report, model_paths, require_isolation
from sandbox.process import ProcessRun, interpret, launch_isolated
from sandbox.schemas import Durations, ExperimentOutcome, ExperimentResult, ResourceLimits, Status

REASON_CHARS = 4000


def default_scratch_root() -> Path:
    root = Path(tempfile.gettempdir()) / "interp-sandbox"
    root.mkdir(mode=0o711, exist_ok=True)
    return root


def classify(run: ProcessRun, limits: ResourceLimits) -> tuple[Status, str, ExperimentResult | None, dict]:
    """Status, reason, validated result and the child's (untrusted, informative) timings."""
    status, reason, msg = interpret(run, limits)
    timings = {k: msg[k] for k in ("run_s", "model_load_s") if isinstance(msg.get(k), (int, float))}
    if status != "ok":
        return status, reason, None, timings
    value = msg.get("result")
    if not isinstance(value, dict):
        return "invalid_result", (f"run(ctx) returned {type(value).__name__}; return a dict with 'summary', "
                                  "'measurements' and optionally 'claims'"), None, timings
    try:
        return "ok", "", ExperimentResult.model_validate(value), timings
    except (ValidationError, RecursionError) as exc:
        return "invalid_result", f"the result does not match the ExperimentResult schema: {exc}"[:REASON_CHARS], \
            None, timings


def write_outcome(run_dir: Path, outcome: ExperimentOutcome) -> Path:
    """results/NNNN.json, written atomically by the parent (the child never sees the run directory)."""
    results = Path(run_dir) / "results"
    results.mkdir(exist_ok=True)
    path = results / f"{outcome.number:04d}.json"
    tmp = results / f".{outcome.number:04d}.json.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(outcome.model_dump_json(indent=1))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def _read_source(path: Path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(MAX_SOURCE_BYTES + 1)


def run_experiment(run_dir: Path, experiment: Path, number: int, *, limits: ResourceLimits | None = None,
                   guard: bool = True, scratch_root: Path | None = None, keep_scratch: bool = False,
                   cancel: threading.Event | None = None, write_result: bool = True,
                   isolation: IsolationReport | None = None) -> ExperimentOutcome:
    """Guard, run and classify one experiment.

    ``guard=False`` exists only to test the OS layer alone; ``isolation`` overrides the detected
    layers (tests of the fallbacks pass ``isolation_report("unshare")``).
    """
    limits = limits or ResourceLimits()
    run_dir = Path(run_dir).resolve()
    start = time.perf_counter()
    report = isolation or isolation_report()
    if isolation is None:
        require_isolation(report)
    outcome = ExperimentOutcome(number=number, experiment=Path(experiment).name, status="crashed",
                                guard_enabled=guard, isolation=report.layers)
    dur = Durations()
    source = _read_source(Path(experiment))
    if guard:
        issues = check_source(source, Path(experiment).name)
        dur.guard_s = time.perf_counter() - start
        if issues:
            outcome.status, outcome.guard_issues = "rejected", issues
            outcome.reason = "the guard rejected the experiment:\n" + format_issues(issues)
            return _finish(run_dir, outcome, dur, start, write_result)
    t = time.perf_counter()
    check = verify_contract(run_dir)
    outcome.contract_before = check.digest
    if not check.ok:
        restored = restore_contract(run_dir)
        outcome.contract_after = restored.digest
        outcome.status = "violation"
        outcome.reason = f"the contract was modified before this experiment ran ({check.problems}); restored from git"
        return _finish(run_dir, outcome, dur, start, write_result)
    contract = load_contract(run_dir)
    dur.hashing_s = time.perf_counter() - t
    t = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix=f"exp-{number:04d}-", dir=scratch_root or default_scratch_root()))
    try:
        exp_copy = scratch / "experiment.py"
        exp_copy.write_bytes(source)
        os.chmod(exp_copy, 0o444)
        request = {"experiment": str(exp_copy), "model": contract.model, "seed": contract.seed,
                   "metric": contract.metric, "pairs": [p.model_dump() for p in contract.exploration]}
        dur.setup_s = time.perf_counter() - t
        run = launch_isolated("sandbox.harness", request, scratch, limits, hidden=[run_dir], cancel=cancel,
                              report=report, extra_readable=model_paths(contract.model))
    finally:
        if not keep_scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    status, reason, result, timings = classify(run, limits)
    outcome.status, outcome.reason, outcome.result, outcome.returncode = status, reason, result, run.returncode
    outcome.stdout_tail = run.stdout.decode(errors="replace")
    outcome.stderr_tail = run.stderr.decode(errors="replace")
    outcome.stdout_bytes, outcome.stderr_bytes = run.stdout_bytes, run.stderr_bytes
    dur.startup_s = run.ready_s or 0.0
    if run.last_message_s is not None and run.last_message_s > (run.ready_s or 0.0):
        dur.teardown_s = max(0.0, run.wall_s - run.last_message_s)
    dur.run_s = min(max(float(timings.get("run_s", 0.0)), 0.0), run.wall_s)
    dur.model_load_s = min(max(float(timings.get("model_load_s", 0.0)), 0.0), dur.run_s)
    t = time.perf_counter()
    after = verify_contract(run_dir)
    outcome.contract_after = after.digest
    if not after.ok or after.digest != outcome.contract_before:
        restore_contract(run_dir)
        outcome.status, outcome.result = "violation", None
        outcome.reason = f"the contract changed while the experiment ran ({after.problems}); restored from git"
    dur.hashing_s += time.perf_counter() - t
    return _finish(run_dir, outcome, dur, start, write_result)


def _finish(run_dir: Path, outcome: ExperimentOutcome, dur: Durations, start: float,
            write_result: bool) -> ExperimentOutcome:
    dur.total_s = time.perf_counter() - start
    outcome.durations = dur
    if not outcome.contract_after:
        outcome.contract_after = outcome.contract_before or contract_digest(run_dir)
        outcome.contract_before = outcome.contract_before or outcome.contract_after
    if write_result:
        write_outcome(run_dir, outcome)
    return outcome
