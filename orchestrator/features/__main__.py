"""``python -m orchestrator.features run TASK.yaml [--run-dir DIR]`` / ``resume RUN_DIR``: a feature task.

The main command does the same with its run-directory conventions, progress line and report
(``python -m orchestrator run tasks/explain_sae.yaml``); this entry point prints the run's summary as
JSON. The default offline task is tasks/explain_sae.yaml (embedded model, builtin explainer and
scorer). Exit 2 with one message on a bad task file or run directory.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from orchestrator.features.task import FeatureTaskError, load_feature_task

DEFAULT_TASK = Path(__file__).resolve().parents[2] / "tasks" / "explain_sae.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.features")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a feature task (default: the embedded-model task)")
    run.add_argument("task", nargs="?", default=str(DEFAULT_TASK))
    run.add_argument("--run-dir", default=None)
    resume = sub.add_parser("resume", help="continue a feature run where it stopped")
    resume.add_argument("run_dir")
    args = parser.parse_args(argv)
    from orchestrator.features.run import FeatureRunError, default_run_dir, run_feature_task

    try:
        if args.command == "run":
            task = load_feature_task(args.task)
            root = Path(args.run_dir) if args.run_dir else default_run_dir(task)
            if root.exists() and any(root.iterdir()):
                raise FeatureRunError(f"{root} exists and is not empty; use `resume {root}` or another --run-dir")
            text = Path(args.task).read_text(encoding="utf-8")
        else:
            root = Path(args.run_dir)
            if not (root / "task.yaml").is_file():
                raise FeatureRunError(f"{root}: no task.yaml; not a feature run directory")
            task = load_feature_task(root / "task.yaml")
            text = None
        summary = run_feature_task(task, root, task_text=text)
    except (FeatureTaskError, FeatureRunError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary.model_dump_json(indent=2))
    print(f"run directory: {root}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
