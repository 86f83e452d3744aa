"""Kill campaign: stop the real CLI many times, resume, and compare with an uninterrupted run.

Run: .venv/bin/python -m tests.bench.bench_kill_campaign [--campaigns N] [--kills K] [--seed S] [--points]

Random part: N campaigns on fresh run directories; each stops K sessions of
`python -m orchestrator run TASK --run-dir DIR` at random wall-clock instants (SIGKILL of the whole process
group, SIGTERM or SIGINT), then runs the same command to the end. Exact part (--points): every named crash
point of tests/orchestrator/test_crash.py, reached with SIGTERM and with SIGINT (ORCH_CRASH_SIGNAL), then resumed.
After each: ledger and findings branch consistent, run directory clean, no orphan child, and ledger, commits,
state, records, experiments, results and findings equal to the uninterrupted run's. Prints the counts.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from collections import Counter
from pathlib import Path

from orchestrator.rundir import RunDir
from tests.orchestrator import killing
from tests.orchestrator.helpers import snapshot, write_task
from tests.orchestrator.test_crash import CRASH_POINTS, check_invariants


def _check(run: RunDir, expected: dict) -> str | None:
    try:
        check_invariants(run)
        killing.check_clean(run)
        killing.same_as(expected, run)
    except AssertionError as exc:
        return str(exc).splitlines()[0][:300]
    return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--campaigns", type=int, default=20)
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--points", action="store_true", help="also every named crash point with SIGTERM and SIGINT")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="kill-campaign-"))
    task = write_task(tmp)
    env = killing.cli_env()
    code, out, seconds = killing.run_to_end(task, tmp / "baseline", env)
    assert code == 0, out
    expected = snapshot(RunDir(tmp / "baseline"))
    print(f"uninterrupted run: {seconds:.1f} s")
    rng = random.Random(args.seed)
    stops: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    failures: list[str] = []
    t0 = time.monotonic()
    for i in range(args.campaigns):
        run = RunDir(tmp / f"random-{i:03d}")
        c = killing.campaign(task, run.root, env, rng, args.kills, seconds)
        for s in c.sessions:
            stops[s.signal] += 1
            outcomes["finished before the stop" if s.returncode == 0 else f"exit {s.returncode}"] += 1
        try:
            killing.check_session_output(c)
        except AssertionError as exc:
            failures.append(f"random-{i:03d} output: {str(exc)[:300]}")
        problem = _check(run, expected)
        if problem:
            failures.append(f"random-{i:03d}: {problem} ({killing.dump(c)})")
    print(f"random: {args.campaigns} campaigns, {sum(stops.values())} stopped sessions {dict(stops)}, "
          f"outcomes {dict(outcomes)}, {time.monotonic() - t0:.0f} s")
    if args.points:
        n = 0
        for point in [*CRASH_POINTS, "report-writing:*"]:
            for sig in ("TERM", "INT"):
                n += 1
                run = RunDir(tmp / f"point-{n:03d}")
                first = killing.start(task, run.root, killing.cli_env(ORCH_CRASH_AT=point, ORCH_CRASH_SIGNAL=sig))
                _, err = first.communicate(timeout=300)
                if point != "done:*" and (first.returncode != 130 or "Traceback" in err):
                    failures.append(f"{point} {sig}: exit {first.returncode}: {err[-300:]}")
                code, out, _ = killing.run_to_end(task, run.root, env)
                problem = f"resume exit {code}" if code else _check(run, expected)
                if problem:
                    failures.append(f"{point} {sig}: {problem}")
        print(f"exact points: {n} stops (SIGTERM and SIGINT at {n // 2} points)")
    print(json.dumps({"failures": len(failures)}))
    for f in failures:
        print("FAIL", f)


if __name__ == "__main__":
    main()
