"""Hooked forward: parity with the plain mlx-lm forward, caching, hook names and shapes."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from engine.errors import UnknownHookError
from tests.engine.tiny import random_tokens, tiny_model


@pytest.fixture(scope="module")
def tiny():
    return tiny_model(0)


def _maxdiff(a: mx.array, b: mx.array) -> float:
    return float(mx.abs(a - b).max().item())


def test_no_hooks_equals_plain_forward_tiny(tiny):
    tokens = random_tokens(tiny, 3, 7)
    assert _maxdiff(tiny.forward(tokens), tiny.model(tokens)) <= 1e-4


def test_full_cache_does_not_change_logits_tiny(tiny):
    tokens = random_tokens(tiny, 2, 6, seed=1)
    logits, cache = tiny.run_with_cache(tokens)
    assert _maxdiff(logits, tiny.model(tokens)) <= 1e-4
    assert set(cache) == set(tiny.hook_names())


def test_cache_returns_only_requested(tiny):
    tokens = random_tokens(tiny, 1, 5)
    _, cache = tiny.run_with_cache(tokens, names=["blocks.1.hook_resid_pre", "blocks.0.attn.hook_z"])
    assert sorted(cache) == ["blocks.0.attn.hook_z", "blocks.1.hook_resid_pre"]


def test_hook_shapes_follow_transformerlens(tiny):
    c = tiny.cfg
    tokens = random_tokens(tiny, 2, 5)
    _, cache = tiny.run_with_cache(tokens)
    b, p = 2, 5
    expected = {
        "hook_embed": (b, p, c.d_model),
        "blocks.0.hook_resid_pre": (b, p, c.d_model),
        "blocks.0.ln1.hook_scale": (b, p, 1),
        "blocks.0.attn.hook_q": (b, p, c.n_heads, c.d_head),
        "blocks.0.attn.hook_k": (b, p, c.n_kv_heads, c.d_head),
        "blocks.0.attn.hook_v": (b, p, c.n_kv_heads, c.d_head),
        "blocks.0.attn.hook_pattern": (b, c.n_heads, p, p),
        "blocks.0.attn.hook_z": (b, p, c.n_heads, c.d_head),
        "blocks.0.hook_attn_out": (b, p, c.d_model),
        "blocks.0.mlp.hook_post": (b, p, c.d_mlp),
        "blocks.2.hook_resid_post": (b, p, c.d_model),
        "ln_final.hook_normalized": (b, p, c.d_model),
    }
    for name, shape in expected.items():
        assert tuple(cache[name].shape) == shape, name


def test_residual_stream_decomposes(tiny):
    """resid_post = resid_pre + attn_out + mlp_out, and resid_pre[L+1] = resid_post[L]."""
    tokens = random_tokens(tiny, 1, 6)
    _, cache = tiny.run_with_cache(tokens)
    for layer in range(tiny.cfg.n_layers):
        pre = f"blocks.{layer}."
        total = cache[pre + "hook_resid_pre"] + cache[pre + "hook_attn_out"] + cache[pre + "hook_mlp_out"]
        assert _maxdiff(total, cache[pre + "hook_resid_post"]) < 1e-4
        if layer + 1 < tiny.cfg.n_layers:
            assert _maxdiff(cache[pre + "hook_resid_post"], cache[f"blocks.{layer + 1}.hook_resid_pre"]) == 0.0


def test_pattern_is_causal_and_normalised(tiny):
    tokens = random_tokens(tiny, 1, 6)
    _, cache = tiny.run_with_cache(tokens, names=["blocks.1.attn.hook_pattern"])
    pattern = np.array(cache["blocks.1.attn.hook_pattern"])
    np.testing.assert_allclose(pattern.sum(-1), 1.0, atol=1e-5)
    assert np.all(np.triu(pattern[0, 0], k=1) == 0)


def test_explicit_attention_equals_fused(tiny):
    """z computed through the explicit pattern (GQA repeat) equals the fused kernel's z."""
    tokens = random_tokens(tiny, 2, 7)
    _, fused = tiny.run_with_cache(tokens, names=["blocks.2.attn.hook_z"])
    _, explicit = tiny.run_with_cache(tokens, names=["blocks.2.attn.hook_z", "blocks.2.attn.hook_pattern"])
    assert _maxdiff(fused["blocks.2.attn.hook_z"], explicit["blocks.2.attn.hook_z"]) < 1e-5


def test_unknown_hook_names_suggest_a_fix(tiny):
    with pytest.raises(UnknownHookError, match="Did you mean 'blocks.1.hook_resid_pre'"):
        tiny.run_with_cache(random_tokens(tiny, 1, 3), names=["blocks.1.hook_resid_pr"])
    with pytest.raises(UnknownHookError, match="layer 7 does not exist"):
        tiny.run_with_cache(random_tokens(tiny, 1, 3), names=["blocks.7.hook_resid_pre"])


def test_raw_hook_function_can_edit(tiny):
    tokens = random_tokens(tiny, 1, 4)

    def zero(act, name):
        return mx.zeros_like(act)

    a = tiny.run_with_hooks(tokens, fwd_hooks=[("blocks.0.hook_attn_out", zero)])
    b = tiny.run_with_hooks(tokens)
    assert _maxdiff(a, b) > 1e-3


def test_logit_positions_match_full_logits(tiny):
    tokens = random_tokens(tiny, 2, 6)
    full = tiny.forward(tokens)
    last = tiny.forward(tokens, logit_positions=[-1])
    assert _maxdiff(full[:, -1:], last) < 1e-5


def test_unembed_hooks_follow_transformerlens(tiny):
    """unembed.hook_in is ln_final's output (weight applied), unembed.hook_out the logits, as in TL."""
    tokens = random_tokens(tiny, 2, 5)
    logits, cache = tiny.run_with_cache(tokens, names=["unembed.hook_in", "unembed.hook_out", "ln_final.hook_normalized"])
    assert tuple(cache["unembed.hook_in"].shape) == (2, 5, tiny.cfg.d_model)
    assert _maxdiff(cache["unembed.hook_out"], logits) == 0.0
    w = tiny.adapter.final_norm_weight()
    assert _maxdiff(cache["unembed.hook_in"], cache["ln_final.hook_normalized"] * w) < 1e-5
