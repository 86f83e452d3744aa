"""The engine guide: generated without importing mlx, complete, and its examples are valid experiments."""

from __future__ import annotations

import runpy
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from orchestrator.agent.engine_guide import (
    CIRCUIT_EXAMPLES,
    EXAMPLE_FILES,
    EXAMPLES_DIR,
    api_reference,
    build_engine_guide,
    exports,
)
from sandbox.schemas import ExperimentResult

ROOT = Path(__file__).resolve().parents[3]


def test_guide_is_generated_without_importing_mlx() -> None:
    code = ("import sys\nfrom orchestrator.agent.engine_guide import build_engine_guide\n"
            "g = build_engine_guide()\nassert len(g) > 2000\n"
            "bad = [m for m in sys.modules if m == 'mlx' or m.startswith(('mlx.', 'mlx_lm'))]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=120)


def test_every_exported_name_is_documented() -> None:
    names = exports()
    assert {"load_model", "HookedModel", "Patch", "metrics"} <= set(names)
    reference, missing = api_reference()
    assert missing == []
    for name in names:
        assert f"engine.{name}" in reference
    guide = build_engine_guide()
    for needle in ("run_with_hooks", "run_with_cache", "logit_diff", "blocks.L.hook_resid_pre", "def run(ctx)",
                   "expected_direction", "hook: str"):
        assert needle in guide
    assert len(guide) < 24_000  # concise: it is in every executor prompt (20k before engine.circuits joined)


def test_circuits_api_and_circuit_claims_are_documented() -> None:
    guide = build_engine_guide()
    for needle in ("### `engine.circuits`", "circuits.eap_ig(model, task: CircuitTask, steps: int=5", "circuits.compare_methods(",
                   "circuits.topk_mask(", "circuits.bootstrap_jaccard(", "circuits.CircuitTask", "a{L}.kv{g}<k>",
                   '"circuit": {', "circuit_eap_ig.py", "from engine import circuits"):
        assert needle in guide, needle
    assert "(not documented" not in guide


def test_examples_pass_the_static_guard() -> None:
    guard = pytest.importorskip("sandbox.guard")
    for name in (*EXAMPLE_FILES, *CIRCUIT_EXAMPLES):
        issues = guard.check_source((EXAMPLES_DIR / name).read_text())
        assert issues == [], guard.format_issues(issues)


class _Cfg:
    n_layers = 4


class _FakeModel:
    """Numpy stand-in for engine.HookedModel: the metric rises with the patched/ablated layer."""

    cfg = _Cfg()

    def _logits(self, rows: int, shift: float) -> np.ndarray:
        logits = np.zeros((rows, 3, 5), dtype=np.float32)
        logits[:, -1, 0] = shift
        return logits

    def forward(self, tokens: Any, logit_positions: Any = None) -> np.ndarray:
        return self._logits(len(tokens), 1.0 if tokens == "clean" else -1.0)

    def run_with_cache(self, tokens: Any, names: Any = None) -> tuple[np.ndarray, dict[str, Any]]:
        return self.forward(tokens), {n: None for n in names or []}

    def run_with_hooks(self, tokens: Any, interventions: Any, source: Any = None, logit_positions: Any = None) -> np.ndarray:
        layer = int(interventions[0].hook.split(".")[1])
        base = 1.0 if tokens == "clean" else -1.0
        return self._logits(len(tokens), base + (layer / 4 if interventions[0].kind == "patch" else -layer / 4))


class _FakeCtx:
    model = _FakeModel()
    clean_tokens = "clean"
    corrupted_tokens = "corrupted"
    seed = 0

    @staticmethod
    def metric(logits: np.ndarray) -> list[float]:
        return [float(x) for x in logits[:, -1, 0] - logits[:, -1, 1]]


class _Tokens(str):
    def __len__(self) -> int:  # a "batch" of 2 pairs
        return 2


@pytest.mark.parametrize("name", EXAMPLE_FILES)
def test_examples_follow_the_contract_on_a_fake_model(name: str) -> None:
    ctx = _FakeCtx()
    ctx.clean_tokens, ctx.corrupted_tokens = _Tokens("clean"), _Tokens("corrupted")
    run = runpy.run_path(str(EXAMPLES_DIR / name))["run"]
    result = ExperimentResult.model_validate(run(ctx))
    assert result.claims and result.summary


@pytest.mark.embedded
@pytest.mark.slow
@pytest.mark.parametrize("name", EXAMPLE_FILES)
def test_examples_run_in_the_sandbox(name: str, tmp_path: Path) -> None:
    """Each worked example through the real sandbox (guard, isolated child) on the embedded model."""
    runner = pytest.importorskip("sandbox.runner", reason="sandbox not built yet")
    from orchestrator.rundir import create_run_dir
    from orchestrator.task import load_task

    task_path = tmp_path / "task.yaml"
    task_path.write_text("name: guide-example\nquestion: Which layer carries the city?\n"
                         "generator: {family: factual_recall, n: 8, seed: 1}\nseed: 3\n")
    task = load_task(task_path)
    run = create_run_dir(tmp_path / "run", task, task_path.read_text())
    path = run.experiments / f"0001-{name}"
    path.write_text((EXAMPLES_DIR / name).read_text())
    outcome = runner.run_experiment(run.root, path, 1, write_result=False)
    assert outcome.status == "ok", f"{outcome.reason}\n{outcome.stderr_tail}"
    result = ExperimentResult.model_validate(outcome.result.model_dump(mode="json"))
    assert result.claims and result.measurements
