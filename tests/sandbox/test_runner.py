"""Runner, harness and backend behaviour with tiny experiments that never load the model."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from sandbox.backend import ExperimentBackend, ExperimentRequest, LocalSubprocessBackend
from sandbox.isolation import child_env, isolation_report
from sandbox.runner import run_experiment
from sandbox.schemas import ExperimentOutcome
from tests.sandbox.conftest import EXPLORATION, FAST

GOOD = '''
import math
from collections import Counter

def run(ctx):
    words = Counter(w for p in ctx.pairs for w in p.clean.split())
    return {"summary": "counted words", "measurements": {"n_pairs": len(ctx.pairs), "seed": ctx.seed,
            "metric": ctx.metric_name, "top": words.most_common(1)[0][0], "root2": math.sqrt(2),
            "nan": float("nan")},
            "claims": [{"statement": "patching the last position restores the answer",
                        "interventions": [{"kind": "patch", "hook": "blocks.3.hook_resid_pre", "positions": [-1]}],
                        "expected_direction": "increase"}]}
'''


def write(run_dir: Path, name: str, code: str) -> Path:
    path = run_dir / "experiments" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(code)
    return path


def test_good_experiment_returns_validated_result(run_dir: Path, scratch_root: Path) -> None:
    out = run_experiment(run_dir, write(run_dir, "0003-good.py", GOOD), 3, limits=FAST, scratch_root=scratch_root)
    assert out.status == "ok", out.reason
    m = out.result.measurements
    assert m["n_pairs"] == len(EXPLORATION) and m["seed"] == 7 and m["metric"] == "logit_diff"
    assert m["nan"] is None  # NaN/inf become null: results are standard JSON
    assert out.result.claims[0].interventions[0].hook == "blocks.3.hook_resid_pre"
    saved = ExperimentOutcome.model_validate_json((run_dir / "results" / "0003.json").read_text())
    assert saved == out and out.isolation == isolation_report().layers
    assert out.durations.total_s > out.durations.startup_s > 0 and out.durations.model_load_s == 0.0
    assert list(scratch_root.iterdir()) == []


def test_held_out_split_never_reaches_the_child(run_dir: Path, scratch_root: Path) -> None:
    code = "def run(ctx):\n    return {'summary': repr([p.clean for p in ctx.pairs])}\n"
    out = run_experiment(run_dir, write(run_dir, "0001-a.py", code), 1, limits=FAST, scratch_root=scratch_root,
                         keep_scratch=True)
    assert out.status == "ok" and "Louvre" not in out.result.summary
    request = json.loads(next(scratch_root.iterdir()).joinpath("request.json").read_text())
    assert "Louvre" not in json.dumps(request) and "Brandenburg" not in json.dumps(request)


def test_crash_reports_traceback_with_experiment_line(run_dir: Path, scratch_root: Path) -> None:
    code = "def run(ctx):\n    x = 1\n    return {'summary': str(1 / (x - 1))}\n"
    out = run_experiment(run_dir, write(run_dir, "0001-a.py", code), 1, limits=FAST, scratch_root=scratch_root)
    assert out.status == "crashed"
    assert "ZeroDivisionError" in out.reason and "experiment.py\", line 3" in out.reason


def test_ctx_is_read_only(run_dir: Path, scratch_root: Path) -> None:
    code = "def run(ctx):\n    ctx.seed = 3\n    return {'summary': 'x'}\n"
    out = run_experiment(run_dir, write(run_dir, "0001-a.py", code), 1, limits=FAST, scratch_root=scratch_root)
    assert out.status == "crashed" and "ctx is read-only" in out.reason


def test_guard_rejection_is_actionable_and_spawns_nothing(run_dir: Path, scratch_root: Path) -> None:
    code = "import os\n\ndef run(ctx):\n    return {'summary': os.getcwd()}\n"
    out = run_experiment(run_dir, write(run_dir, "0001-a.py", code), 1, limits=FAST, scratch_root=scratch_root)
    assert out.status == "rejected" and out.guard_issues[0].line == 1
    assert "line 1: import of 'os' is not allowed" in out.reason
    assert out.durations.startup_s == 0.0 and list(scratch_root.iterdir()) == []


def test_child_environment_is_an_allow_list(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-secret")
    monkeypatch.setenv("MY_TOKEN", "t")
    env = child_env(tmp_path)
    assert env["HOME"] == str(tmp_path) and "ENGINE_CACHE_DIR" in env
    assert not any(k for k in env if "KEY" in k or "TOKEN" in k)


def test_isolation_report_names_active_layers() -> None:
    report = isolation_report()
    print(report.summary())
    assert report.layers[0] == report.mode and "rlimits" in report.layers
    if report.mode == "bwrap":
        assert report.network_isolated and report.pid_namespace and report.readonly_root
        assert "errno 101" in report.network_probe


def test_backend_runs_in_parallel_and_cancels(run_dir: Path, scratch_root: Path) -> None:
    backend = LocalSubprocessBackend(max_parallel=2, scratch_root=scratch_root)
    assert isinstance(backend, ExperimentBackend)
    slow = write(run_dir, "0001-slow.py", "def run(ctx):\n    while True:\n        pass\n")
    good = write(run_dir, "0002-good.py", GOOD)
    try:
        h1 = backend.submit(ExperimentRequest(run_dir=run_dir, experiment=slow, number=1, limits=FAST))
        h2 = backend.submit(ExperimentRequest(run_dir=run_dir, experiment=good, number=2, limits=FAST))
        assert backend.wait(h2, timeout=30).status == "ok"
        start = time.perf_counter()
        backend.cancel(h1)
        out = backend.wait(h1, timeout=30)
        assert out.status == "cancelled" and time.perf_counter() - start < 3
    finally:
        backend.shutdown()
    assert {p.name for p in (run_dir / "results").iterdir()} == {"0001.json", "0002.json"}


def test_runner_can_be_cancelled_from_another_thread(run_dir: Path, scratch_root: Path) -> None:
    cancel = threading.Event()
    timer = threading.Timer(0.5, cancel.set)
    timer.start()
    out = run_experiment(run_dir, write(run_dir, "0001-a.py", "def run(ctx):\n    while True:\n        pass\n"), 1,
                         limits=FAST, scratch_root=scratch_root, cancel=cancel)
    assert out.status == "cancelled" and out.durations.total_s < 3


@pytest.mark.parametrize("where,subdir", [(str(Path.home()), ""), ("/tmp", "deeper/model")],
                         ids=["under-a-hidden-home", "under-a-0700-dir-in-tmp"])
def test_model_given_as_a_path_is_readable_inside(where: str, subdir: str, tmp_path: Path, scratch_root: Path) -> None:
    """The model directory is bound in read-only; inside the private /tmp, the directories made on the way to it
    must be traversable by the child's uid although the host's (pytest's, mkdtemp's) are 0700."""
    import shutil
    import tempfile

    from sandbox.contract import create_contract
    from tests.sandbox.conftest import HELD_OUT

    outer = Path(tempfile.mkdtemp(prefix="sandbox-test-model-", dir=where))  # 0700
    try:
        model_dir = outer / subdir
        model_dir.mkdir(parents=True, exist_ok=True)
        for d in [model_dir, *(outer / p for p in model_dir.relative_to(outer).parents if p != Path("."))]:
            d.chmod(0o755)  # the model and the dirs below the 0700 one are world-readable, as a user's would be
        (model_dir / "config.json").write_text('{"model_type": "llama"}')
        (model_dir / "config.json").chmod(0o644)
        run_dir = tmp_path / "run"
        run_dir.mkdir()
        create_contract(run_dir, str(model_dir), EXPLORATION, HELD_OUT, commit=True)
        code = f"def run(ctx):\n    return {{'summary': open({str(model_dir / 'config.json')!r}).read()}}\n"
        out = run_experiment(run_dir, write(run_dir, "0001-a.py", code), 1, limits=FAST, guard=False,
                             scratch_root=scratch_root)
        assert out.status == "ok" and "llama" in out.result.summary, out.reason
    finally:
        shutil.rmtree(outer)


def test_project_under_tmp_is_re_exposed_inside_the_private_tmp(tmp_path: Path) -> None:
    """A clone under /tmp (as CI may make) must stay readable after bubblewrap's private /tmp, while the
    run directory inside it stays hidden."""
    from sandbox.isolation import _bwrap_args

    project = Path("/tmp/some-clone")
    venv = project / ".venv"
    run_dir = project / "runs" / "r1"
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    args = _bwrap_args(scratch, [run_dir], [project, venv], {}, 64, 64, uid_drop=False)
    tmpfs_tmp = max(i for i, a in enumerate(args) if a == "/tmp" and args[i - 1] == "--tmpfs")
    bind = next(i for i in range(len(args) - 2) if args[i] == "--ro-bind" and args[i + 1] == str(project))
    hide = next(i for i in range(len(args) - 1) if args[i] == "--tmpfs" and args[i + 1] == str(run_dir))
    assert tmpfs_tmp < bind < hide
