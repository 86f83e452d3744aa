"""Declarative interventions: identities that must hold and errors that must be clear."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from engine.errors import InterventionError
from engine.interventions import Ablate, Patch, Scale, Steer
from tests.engine.tiny import random_tokens, tiny_model


@pytest.fixture(scope="module")
def tiny():
    return tiny_model(1)


def _maxdiff(a, b) -> float:
    return float(mx.abs(a - b).max().item())


@pytest.mark.parametrize(
    "hook", ["blocks.1.hook_resid_pre", "blocks.0.attn.hook_z", "blocks.2.mlp.hook_post", "blocks.1.attn.hook_pattern"]
)
def test_patching_with_itself_changes_nothing(tiny, hook):
    tokens = random_tokens(tiny, 2, 6)
    base, cache = tiny.run_with_cache(tokens, names=[hook])
    patched = tiny.run_with_hooks(tokens, [Patch(hook=hook)], source=cache)
    assert _maxdiff(base, patched) <= 1e-5


def test_zero_attn_out_equals_zeroing_every_head(tiny):
    tokens = random_tokens(tiny, 2, 6)
    for layer in range(tiny.cfg.n_layers):
        a = tiny.run_with_hooks(tokens, [Ablate(hook=f"blocks.{layer}.hook_attn_out", mode="zero")])
        heads = list(range(tiny.cfg.n_heads))
        b = tiny.run_with_hooks(tokens, [Ablate(hook=f"blocks.{layer}.attn.hook_z", mode="zero", heads=heads)])
        assert _maxdiff(a, b) <= 1e-5


def test_patch_positions_and_heads_only_touch_selection(tiny):
    clean = random_tokens(tiny, 1, 6, seed=2)
    corrupt = random_tokens(tiny, 1, 6, seed=3)
    hook = "blocks.1.attn.hook_z"
    _, src = tiny.run_with_cache(clean, names=[hook])
    seen = {}

    def grab(act, name):
        seen["z"] = act

    tiny.run_with_hooks(corrupt, [Patch(hook=hook, positions=[2, -1], heads=[1])], source=src, fwd_hooks=[(hook, grab)])
    z = np.array(seen["z"])
    ref = np.array(src[hook])
    _, own = tiny.run_with_cache(corrupt, names=[hook])
    own = np.array(own[hook])
    np.testing.assert_allclose(z[0, 2, 1], ref[0, 2, 1], atol=1e-6)
    np.testing.assert_allclose(z[0, 5, 1], ref[0, 5, 1], atol=1e-6)
    np.testing.assert_allclose(z[0, 2, 0], own[0, 2, 0], atol=1e-6)
    np.testing.assert_allclose(z[0, 3, 1], own[0, 3, 1], atol=1e-6)


def test_mean_and_resample_ablation_use_reference(tiny):
    tokens = random_tokens(tiny, 2, 5)
    ref_tokens = random_tokens(tiny, 4, 5, seed=9)
    hook = "blocks.0.hook_mlp_out"
    _, ref = tiny.run_with_cache(ref_tokens, names=[hook])
    seen = {}

    def grab(act, name):
        seen[name] = act

    tiny.run_with_hooks(tokens, [Ablate(hook=hook, mode="mean")], reference=ref, fwd_hooks=[(hook, grab)])
    np.testing.assert_allclose(np.array(seen[hook][0]), np.array(ref[hook]).mean(0), atol=1e-5)
    tiny.run_with_hooks(tokens, [Ablate(hook=hook, mode="resample", seed=3)], reference=ref, fwd_hooks=[(hook, grab)])
    rows = np.array(ref[hook])
    for row in np.array(seen[hook]):
        assert any(np.allclose(row, r, atol=1e-6) for r in rows)


def test_steer_and_scale(tiny):
    tokens = random_tokens(tiny, 1, 4)
    hook = "blocks.1.hook_resid_pre"
    d = tiny.cfg.d_model
    a = tiny.run_with_hooks(tokens, [Steer(hook=hook, vector=[0.0] * d)])
    b = tiny.run_with_hooks(tokens, [Scale(hook=hook, factor=1.0)])
    base = tiny.forward(tokens)
    assert _maxdiff(a, base) <= 1e-5 and _maxdiff(b, base) <= 1e-5
    c = tiny.run_with_hooks(tokens, [Steer(hook=hook, vector=[1.0] * d, coeff=3.0)])
    assert _maxdiff(c, base) > 1e-3


def test_interventions_round_trip_as_json():
    from pydantic import TypeAdapter

    from engine.interventions import Intervention

    ivs = [Patch(hook="blocks.0.hook_resid_pre", positions=[-1]), Ablate(hook="blocks.0.attn.hook_z", heads=[2], mode="mean"),
           Steer(hook="blocks.1.hook_resid_pre", vector=[1.0, 2.0]), Scale(hook="blocks.0.hook_mlp_out", factor=0.5)]
    adapter = TypeAdapter(list[Intervention])
    assert adapter.validate_json(adapter.dump_json(ivs)) == ivs


def test_bad_interventions_explain_the_fix(tiny):
    tokens = random_tokens(tiny, 1, 4)
    with pytest.raises(InterventionError, match="vector has length 3"):
        tiny.run_with_hooks(tokens, [Steer(hook="blocks.1.hook_resid_pre", vector=[1.0, 2.0, 3.0])])
    with pytest.raises(InterventionError, match="no head axis"):
        tiny.run_with_hooks(tokens, [Ablate(hook="blocks.1.hook_resid_pre", heads=[0])])
    with pytest.raises(InterventionError, match="head 9 is out of range"):
        tiny.run_with_hooks(tokens, [Ablate(hook="blocks.1.attn.hook_z", heads=[9])])
    with pytest.raises(InterventionError, match="position 10 is out of range"):
        tiny.run_with_hooks(tokens, [Ablate(hook="blocks.1.hook_resid_pre", positions=[10])])
    with pytest.raises(InterventionError, match="needs a source cache"):
        tiny.run_with_hooks(tokens, [Patch(hook="blocks.1.hook_resid_pre")])
    _, src = tiny.run_with_cache(random_tokens(tiny, 1, 6), names=["blocks.1.hook_resid_pre"])
    with pytest.raises(InterventionError, match="same number of positions"):
        tiny.run_with_hooks(tokens, [Patch(hook="blocks.1.hook_resid_pre")], source=src)
