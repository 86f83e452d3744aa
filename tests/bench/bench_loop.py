"""The research loop's own overhead per experiment (issue 5): everything except the experiment itself.

Run: .venv/bin/python -m tests.bench.bench_loop [N_ATTEMPTS]
The agent, backend and verifier answer instantly (the backend executes the scripted experiment in
this process), so what is timed is the loop: phase records and state.json (atomic, fsynced), the
ledger append, the ratchet commit for kept findings, the run log, and resume. A second pass with a
real subprocess per experiment (the fake backend) shows what one process spawn adds.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
import types
from collections import defaultdict
from pathlib import Path
from typing import Any

from orchestrator.interfaces import AcceptAllGuard, ExperimentOutcome, ExperimentRequest
from orchestrator.logging import RunLog
from orchestrator.loop import Components, Loop
from orchestrator.rundir import RunDir, create_run_dir
from orchestrator.task import load_task
from sandbox.schemas import ExperimentResult
from tests.orchestrator.fakes import FakeBackend, FakeVerifier, ScriptedAgent

TASK = """\
name: bench
question: overhead
generator: {family: factual_recall, n: 24, seed: 0}
budgets: {max_experiments: %d, wall_clock_hours: 10}
"""


class InProcessBackend:
    """Executes the (trusted, scripted) experiment module in this process: no spawn cost."""

    def submit(self, request: ExperimentRequest) -> ExperimentOutcome:
        namespace: dict[str, Any] = {}
        t0 = time.perf_counter()
        try:
            exec(compile(request.experiment_file.read_text(), str(request.experiment_file), "exec"), namespace)
            result = ExperimentResult.model_validate(namespace["run"](types.SimpleNamespace(seed=request.seed)))
        except ZeroDivisionError as exc:
            return ExperimentOutcome(status="error", error=repr(exc))
        return ExperimentOutcome(status="ok", result=result, duration_s=time.perf_counter() - t0)

    def wait(self, handle: ExperimentOutcome, timeout: float | None = None) -> ExperimentOutcome:
        return handle

    def cancel(self, handle: ExperimentOutcome) -> None:
        return None


def _run(tmp: Path, name: str, n: int, backend: Any) -> tuple[RunDir, float]:
    task_path = tmp / f"{name}.yaml"
    task_path.write_text(TASK % n)
    task = load_task(task_path, check_tokenizer=False)
    run = create_run_dir(tmp / name, task, task_path.read_text())
    log = RunLog(run.logs / "run.jsonl")
    components = Components(agent=ScriptedAgent(), backend=backend, guard=AcceptAllGuard(), verifier=FakeVerifier())
    t0 = time.perf_counter()
    Loop(run, task, components, log=log).run_until_stopped()
    elapsed = time.perf_counter() - t0
    log.close()
    return run, elapsed


def _phase_table(run: RunDir) -> dict[str, list[float]]:
    """Seconds per phase from the attempt records (they include the committing phase)."""
    phases: dict[str, list[float]] = defaultdict(list)
    for path in sorted((run.root / "state").glob("attempt-*.json")):
        record = json.loads(path.read_text())
        for phase, seconds in record["durations_s"].items():
            key = f"{phase} ({record['decision']})" if phase == "committing" else phase
            phases[key].append(seconds)
    return phases


def _fsync_cost(tmp: Path) -> float:
    from orchestrator.fsutil import atomic_write_text

    t0 = time.perf_counter()
    for _ in range(20):
        atomic_write_text(tmp / "probe.json", "x" * 2000)
    return (time.perf_counter() - t0) / 20


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        run, elapsed = _run(tmp, "inproc", n, InProcessBackend())
        phases = _phase_table(run)
        t0 = time.perf_counter()
        Loop(run, load_task(tmp / "inproc.yaml", check_tokenizer=False),
             Components(agent=ScriptedAgent(), backend=InProcessBackend(), guard=AcceptAllGuard(),
                        verifier=FakeVerifier())).run_until_stopped()
        resume_s = time.perf_counter() - t0
        _, spawn_elapsed = _run(tmp, "spawn", max(8, n // 4), FakeBackend())
        write_s = _fsync_cost(tmp)
    print(f"loop overhead, {n} attempts (instant agent/verifier, experiment executed in-process):")
    print(f"  total {elapsed:.3f} s  ->  {1000 * elapsed / n:.1f} ms per experiment (includes repairs: 1 in 2 attempts)")
    print("  median per phase (ms):")
    for phase in sorted(phases, key=lambda p: -statistics.median(phases[p])):
        values = phases[phase]
        print(f"    {phase:<22} {1000 * statistics.median(values):7.2f}   (n={len(values)})")
    in_phases = sum(sum(v) for v in phases.values())
    print(f"  between phases (phase records + state.json, each an fsynced atomic write): "
          f"{1000 * (elapsed - in_phases) / n:.1f} ms per experiment; one atomic write here costs {1000 * write_s:.1f} ms")
    print(f"  resume of a finished {n}-attempt run (open, repair check, stop): {1000 * resume_s:.1f} ms")
    m = max(8, n // 4)
    print(f"with one `python -I` subprocess per experiment (fake backend), {m} attempts: "
          f"{1000 * spawn_elapsed / m:.1f} ms per experiment")


if __name__ == "__main__":
    main()
