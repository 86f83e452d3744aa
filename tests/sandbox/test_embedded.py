"""The embedded model through the sandbox: a good experiment and the verifier, with cached weights."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.interventions import Patch
from sandbox.contract import create_contract
from sandbox.runner import run_experiment
from sandbox.schemas import Claim, PromptPair, ResourceLimits
from sandbox.verifier import verify_claim

pytestmark = pytest.mark.embedded


def P(clean: str, corrupted: str, correct: str, wrong: str) -> PromptPair:
    return PromptPair(clean=clean, corrupted=corrupted, correct=correct, wrong=wrong)


EXPLORATION = [P("The Eiffel Tower is in the city of", "The Colosseum is in the city of", " Paris", " Rome"),
               P("The Colosseum is in the city of", "The Eiffel Tower is in the city of", " Rome", " Paris")]
HELD_OUT = [P("The Louvre is in the city of", "The Kremlin is in the city of", " Paris", " Moscow"),
            P("The Kremlin is in the city of", "The Louvre is in the city of", " Moscow", " Paris"),
            P("The Pantheon is in the city of", "The Louvre is in the city of", " Rome", " Paris"),
            P("The Brandenburg Gate is in the city of", "The Parthenon is in the city of", " Berlin", " Athens"),
            P("The Parthenon is in the city of", "The Brandenburg Gate is in the city of", " Athens", " Berlin")]
LIMITS = ResourceLimits(timeout_s=120.0, memory_mb=6144)

EXPERIMENT = '''
import numpy as np

def run(ctx):
    clean = ctx.metric(ctx.model.forward(ctx.clean_tokens))
    corrupted = ctx.metric(ctx.model.forward(ctx.corrupted_tokens))
    _, cache = ctx.model.run_with_cache(ctx.clean_tokens, names=["blocks.10.hook_resid_pre"])
    patched = ctx.metric(ctx.model.run_with_hooks(ctx.corrupted_tokens,
                         [{"kind": "patch", "hook": "blocks.10.hook_resid_pre", "positions": [-1]}],
                         source=cache))
    return {"summary": "logit diff clean vs corrupted", "measurements": {
                "clean": clean, "corrupted": corrupted, "patched": patched, "mean_gap": float(np.mean(clean) - np.mean(corrupted))},
            "claims": [{"statement": "the residual stream before layer 10 carries the answer",
                        "interventions": [{"kind": "patch", "hook": "blocks.10.hook_resid_pre"}],
                        "expected_direction": "increase", "min_effect": 0.5}]}
'''


@pytest.fixture(scope="module")
def model_run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("embedded") / "run"
    run_dir.mkdir()
    create_contract(run_dir, "smollm2-135m", EXPLORATION, HELD_OUT, seed=3, family="capitals", commit=True)
    return run_dir


def test_good_experiment_on_embedded_model(model_run_dir: Path, tmp_path: Path) -> None:
    path = model_run_dir / "experiments" / "0001-logit-diff.py"
    path.parent.mkdir(exist_ok=True)
    path.write_text(EXPERIMENT.replace('[{"kind": "patch", "hook": "blocks.10.hook_resid_pre", "positions": [-1]}]',
                                       '[engine.Patch(hook="blocks.10.hook_resid_pre", positions=[-1])]')
                    .replace("import numpy as np", "import numpy as np\nimport engine"))
    out = run_experiment(model_run_dir, path, 1, limits=LIMITS, scratch_root=tmp_path)
    assert out.status == "ok", (out.reason, out.stderr_tail[-2000:])
    m = out.result.measurements
    assert all(v > 0 for v in m["clean"]) and all(v < 0 for v in m["corrupted"])  # Paris beats Rome on Eiffel
    assert out.result.claims[0].interventions[0].hook == "blocks.10.hook_resid_pre"
    d = out.durations
    print(f"embedded experiment: model load {d.model_load_s:.2f} s (cached weights), run {d.run_s:.2f} s, "
          f"sandbox overhead {d.overhead_s:.3f} s (startup {d.startup_s:.3f} s)")
    assert 0 < d.model_load_s < 10  # converted weights are read from the cache (the child cannot write it)


def test_verifier_reproduces_a_full_patch_exactly(model_run_dir: Path, tmp_path: Path) -> None:
    claim = Claim(statement="patching every position of the first residual stream restores the clean run",
                  interventions=[Patch(hook="blocks.0.hook_resid_pre")], expected_direction="increase")
    result = verify_claim(model_run_dir, claim, n_null=2, limits=LIMITS, scratch_root=tmp_path)
    assert result.status == "ok", result.reason
    assert result.n_pairs == len(HELD_OUT) and result.excluded_pairs == []
    # Effects are normalised by the mean clean-corrupted gap: patching everything moves each pair by its own
    # gap, so each effect is gap_i / mean gap and their mean is exactly 1.
    gaps = [c - k for c, k in zip(result.clean_metric, result.corrupted_metric)]
    assert abs(result.normaliser - sum(gaps) / len(gaps)) < 1e-6
    assert all(abs(e - g / result.normaliser) < 1e-4 for e, g in zip(result.effects, gaps)), result.effects
    assert abs(sum(result.effects) / len(result.effects) - 1.0) < 1e-4
    assert set(result.null_effects) == {"random_components", "shuffled_source"}
    assert all(len(draw) == len(HELD_OUT) for draws in result.null_effects.values() for draw in draws)
    assert "net-namespace" in result.isolation or result.isolation[0] != "bwrap"
