"""Sandbox overhead benchmark (issue 4): what the sandbox adds to an experiment, beside a bare interpreter.

Run: .venv/bin/python -m tests.bench.bench_sandbox [--reps N]
Overhead = an experiment's wall time minus what its own code took inside the child (import of the
experiment file, model load, compute): i.e. guard + contract hashing + scratch set-up + start-up
(bubblewrap, setpriv, python -I, harness imports) + teardown. Target: <= 0.5 s. Medians over
interleaved repetitions, so machine load drifts hit every variant alike. Also compares model load
(cached weights) and a forward inside and outside the sandbox.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from engine.blas import blas_env
from sandbox.contract import create_contract
from sandbox.isolation import PROJECT_ROOT, isolation_report
from sandbox.runner import run_experiment
from sandbox.schemas import PromptPair, ResourceLimits

TARGET_S = 0.5
NOOP = "def run(ctx):\n    return {'summary': 'noop'}\n"
MODEL = '''
import time
def run(ctx):
    t = time.perf_counter()
    m = ctx.model
    load = time.perf_counter() - t
    t = time.perf_counter()
    ctx.metric(m.forward(ctx.clean_tokens))
    first = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(5):
        ctx.metric(m.forward(ctx.clean_tokens))
    return {"summary": "model", "measurements": {"load_s": load, "first_forward_s": first,
            "forward_s": (time.perf_counter() - t) / 5}}
'''
OUTSIDE = '''
import time, json
t = time.perf_counter()
import engine
from sandbox.metric import per_pair
m = engine.load_model("smollm2-135m")
load = time.perf_counter() - t
toks = m.to_tokens(["The Eiffel Tower is in the city of", "The Colosseum is in the city of"])
ids = [m.token_id(" Paris")] * 2, [m.token_id(" Rome")] * 2
t = time.perf_counter(); per_pair("logit_diff", m.forward(toks), *ids); first = time.perf_counter() - t
t = time.perf_counter()
for _ in range(5):
    per_pair("logit_diff", m.forward(toks), *ids)
print(json.dumps({"load_s": load, "first_forward_s": first, "forward_s": (time.perf_counter() - t) / 5}))
'''


def _wall(argv: list[str], env: dict[str, str] | None = None) -> float:
    t = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, env=env)
    return time.perf_counter() - t


def _run_dir(base: Path) -> Path:
    run_dir = base / "run"
    run_dir.mkdir()
    pairs = [PromptPair(clean="The Eiffel Tower is in the city of", corrupted="The Colosseum is in the city of",
                        correct=" Paris", wrong=" Rome"),
             PromptPair(clean="The Colosseum is in the city of", corrupted="The Eiffel Tower is in the city of",
                        correct=" Rome", wrong=" Paris")]
    held = [PromptPair(clean="The Louvre is in the city of", corrupted="The Kremlin is in the city of",
                       correct=" Paris", wrong=" Moscow")]
    create_contract(run_dir, "smollm2-135m", pairs, held, commit=True)
    for name, code in (("0001-noop.py", NOOP), ("0002-model.py", MODEL)):
        (run_dir / name).write_text(code)
    return run_dir


def med(values: list[float]) -> float:
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--model-reps", type=int, default=3)
    args = parser.parse_args()
    report = isolation_report()
    print(report.summary())
    print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n")
    base = Path(tempfile.mkdtemp(prefix="bench-sandbox-"))
    try:
        run_dir = _run_dir(base)
        limits = ResourceLimits(timeout_s=120)
        boot = f"import sys; sys.path.insert(0, {str(PROJECT_ROOT)!r}); import sandbox.harness, sandbox.context"
        env = {**os.environ, **blas_env(warn=False)}
        rows: dict[str, list[float]] = {k: [] for k in (
            "bare python -I -c pass", "python -I + harness imports (no sandbox)", "guard", "contract hashing",
            "scratch set-up", "start-up to harness ready", "total (no-op experiment)", "experiment's own time",
            "sandbox overhead")}
        run_experiment(run_dir, run_dir / "0001-noop.py", 0, limits=limits, write_result=False)  # warm caches
        for i in range(args.reps):
            rows["bare python -I -c pass"].append(_wall([sys.executable, "-I", "-c", "pass"]))
            rows["python -I + harness imports (no sandbox)"].append(_wall([sys.executable, "-I", "-c", boot], env))
            out = run_experiment(run_dir, run_dir / "0001-noop.py", i + 1, limits=limits, write_result=False)
            assert out.status == "ok", out.reason
            d = out.durations
            for key, value in (("guard", d.guard_s), ("contract hashing", d.hashing_s), ("scratch set-up", d.setup_s),
                               ("start-up to harness ready", d.startup_s), ("total (no-op experiment)", d.total_s),
                               ("experiment's own time", d.run_s), ("sandbox overhead", d.overhead_s)):
                rows[key].append(value)
        print(f"{'phase (median of ' + str(args.reps) + ')':45s} {'seconds':>9s}")
        for key, values in rows.items():
            print(f"{key:45s} {med(values):9.4f}")
        overhead = med(rows["sandbox overhead"])
        bare = med(rows["bare python -I -c pass"])
        print(f"\nsandbox overhead {overhead:.3f} s vs bare interpreter {bare:.3f} s "
              f"(+{overhead - bare:.3f} s); target <= {TARGET_S} s: {'MET' if overhead <= TARGET_S else 'MISSED'}")

        inside: dict[str, list[float]] = {"load_s": [], "first_forward_s": [], "forward_s": []}
        outside: dict[str, list[float]] = {"load_s": [], "first_forward_s": [], "forward_s": []}
        overheads, startups, teardowns = [], [], []
        for i in range(args.model_reps):
            out = run_experiment(run_dir, run_dir / "0002-model.py", 100 + i, limits=limits, write_result=False,
                                 guard=False)  # trusted timing code: it imports time
            assert out.status == "ok", out.reason
            overheads.append(out.durations.overhead_s)
            startups.append(out.durations.startup_s)
            teardowns.append(out.durations.teardown_s)
            for k in inside:
                inside[k].append(out.result.measurements[k])
            proc = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(PROJECT_ROOT)!r})\n"
                                   + OUTSIDE], capture_output=True, text=True, env=env, check=True)
            import json

            for k, v in json.loads(proc.stdout.strip().splitlines()[-1]).items():
                outside[k].append(v)
        print(f"\nembedded model (cached weights), median of {args.model_reps}:  inside sandbox | outside")
        for k in inside:
            print(f"  {k:18s} {med(inside[k]):8.3f} s | {med(outside[k]):8.3f} s")
        print(f"  sandbox overhead of a model-loading experiment: {med(overheads):.3f} s (start-up "
              f"{med(startups):.3f} s, teardown = freeing the child's model memory {med(teardowns):.3f} s)")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
