"""The opt-in TransformerLens hooks attn.hook_result and hook_mlp_in (TL: use_attn_result, use_hook_mlp_in)."""

from __future__ import annotations

import mlx.core as mx
import pytest

from engine.errors import UnknownHookError
from engine.interventions import Ablate
from tests.engine.tiny import random_tokens, tiny_model


@pytest.fixture(scope="module")
def tiny():
    return tiny_model(seed=3)


def _maxdiff(a: mx.array, b: mx.array) -> float:
    return float(mx.abs(a - b).max().item())


def test_opt_in_hooks_are_not_in_the_default_set_but_can_be_named(tiny):
    assert not any(n.endswith(("attn.hook_result", "hook_mlp_in")) for n in tiny.hook_names())
    tokens = random_tokens(tiny, 2, 5)
    _, default = tiny.run_with_cache(tokens)
    assert "blocks.0.attn.hook_result" not in default
    _, cache = tiny.run_with_cache(tokens, names=["blocks.1.attn.hook_result", "blocks.1.hook_mlp_in"])
    assert tuple(cache["blocks.1.attn.hook_result"].shape) == (2, 5, tiny.cfg.n_heads, tiny.cfg.d_model)
    assert tuple(cache["blocks.1.hook_mlp_in"].shape) == (2, 5, tiny.cfg.d_model)
    _, filtered = tiny.run_with_cache(tokens, names=lambda n: n.endswith("hook_result"))
    assert sorted(filtered) == [f"blocks.{i}.attn.hook_result" for i in range(tiny.cfg.n_layers)]
    with pytest.raises(UnknownHookError, match="layer 7 does not exist"):
        tiny.run_with_cache(tokens, names=["blocks.7.attn.hook_result"])


@pytest.mark.parametrize("packed", [True, False])
def test_hook_result_is_each_heads_write_and_sums_to_attn_out(tiny, packed, monkeypatch):
    monkeypatch.setattr(tiny.adapter.packed, "enabled", packed)
    tokens = random_tokens(tiny, 2, 6, seed=1)
    plain_logits = tiny.forward(tokens)
    names = [f"blocks.{L}.{h}" for L in range(tiny.cfg.n_layers)
             for h in ("attn.hook_result", "attn.hook_z", "hook_attn_out")]
    logits, cache = tiny.run_with_cache(tokens, names=names)
    assert _maxdiff(logits, plain_logits) < 1e-4  # asking for hook_result does not change the forward
    for L in range(tiny.cfg.n_layers):
        result, z = cache[f"blocks.{L}.attn.hook_result"], cache[f"blocks.{L}.attn.hook_z"]
        assert _maxdiff(result.sum(axis=2), cache[f"blocks.{L}.hook_attn_out"]) < 1e-5
        w_o = tiny.adapter.head_output_weights(L)  # [h, e, d]
        for h in range(tiny.cfg.n_heads):
            assert _maxdiff(result[:, :, h], z[:, :, h] @ w_o[h]) < 1e-5


def test_a_patch_at_hook_result_moves_attn_out_like_the_same_patch_at_hook_z(tiny):
    tokens = random_tokens(tiny, 1, 6, seed=2)
    via_result = tiny.run_with_hooks(tokens, [Ablate(hook="blocks.1.attn.hook_result", heads=[2])])
    via_z = tiny.run_with_hooks(tokens, [Ablate(hook="blocks.1.attn.hook_z", heads=[2])])
    assert _maxdiff(via_result, tiny.forward(tokens)) > 1e-3
    assert _maxdiff(via_result, via_z) < 1e-4


def test_hook_mlp_in_changes_only_what_the_mlp_reads(tiny):
    tokens = random_tokens(tiny, 1, 5, seed=4)
    names = ["blocks.1.hook_resid_mid", "blocks.1.hook_mlp_out", "blocks.1.hook_resid_post", "blocks.1.hook_mlp_in"]
    _, base = tiny.run_with_cache(tokens, names=names)
    assert _maxdiff(base["blocks.1.hook_mlp_in"], base["blocks.1.hook_resid_mid"]) == 0.0

    store = {}

    def save(act, name):
        store[name] = act

    def shift(act, name):  # not a rescaling: ln2 would undo that
        return act + mx.arange(act.shape[-1], dtype=act.dtype) / act.shape[-1]

    tiny.run_with_hooks(tokens, fwd_hooks=[("blocks.1.hook_mlp_in", shift),
                                           *((n, save) for n in names if n != "blocks.1.hook_mlp_in")])
    assert _maxdiff(store["blocks.1.hook_resid_mid"], base["blocks.1.hook_resid_mid"]) == 0.0
    assert _maxdiff(store["blocks.1.hook_mlp_out"], base["blocks.1.hook_mlp_out"]) > 1e-3
    # the residual stream keeps resid_mid: resid_post = resid_mid + the new MLP output
    assert _maxdiff(store["blocks.1.hook_resid_post"],
                    base["blocks.1.hook_resid_mid"] + store["blocks.1.hook_mlp_out"]) < 1e-5
