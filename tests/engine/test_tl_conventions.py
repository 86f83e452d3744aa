"""TransformerLens' conventions for what a hook holds, checked from the cache alone on the tiny model
(tests/bench/peers/cache_parity.py checks the same numbers against TransformerLens itself)."""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest

from tests.engine.tiny import random_tokens, tiny_model


@pytest.fixture(scope="module")
def cached():
    tiny = tiny_model(seed=5)
    _, cache = tiny.run_with_cache(random_tokens(tiny, 2, 6, seed=5))
    return tiny, {name: np.array(value) for name, value in cache.items()}


def test_attn_scores_are_scaled_dot_products_minus_inf_above_the_diagonal(cached):
    """TL: scores = rot_q . rot_k / sqrt(d_head), masked with -inf (not a large negative); query head h
    reads key/value head h // (n_heads / n_kv_heads) (TL's repeat_interleave of grouped heads)."""
    tiny, c = cached
    n_rep = tiny.cfg.n_heads // tiny.cfg.n_kv_heads
    q, k = c["blocks.1.attn.hook_rot_q"], c["blocks.1.attn.hook_rot_k"]  # [b, p, h, e], [b, p, g, e]
    k = np.repeat(k, n_rep, axis=2)
    expected = np.einsum("bqhe,bkhe->bhqk", q, k) / math.sqrt(tiny.cfg.d_head)
    scores = c["blocks.1.attn.hook_attn_scores"]
    above = np.triu(np.ones(scores.shape[-2:], dtype=bool), k=1)
    assert np.all(np.isneginf(scores[..., above]))
    np.testing.assert_allclose(scores[..., ~above], expected[..., ~above], rtol=1e-4, atol=1e-5)
    assert np.all(c["blocks.1.attn.hook_pattern"][..., above] == 0.0)


def test_z_is_the_pattern_times_values_per_head(cached):
    tiny, c = cached
    n_rep = tiny.cfg.n_heads // tiny.cfg.n_kv_heads
    v = np.repeat(c["blocks.2.attn.hook_v"], n_rep, axis=2)  # [b, p, h, e]
    expected = np.einsum("bhqk,bkhe->bqhe", c["blocks.2.attn.hook_pattern"], v)
    np.testing.assert_allclose(c["blocks.2.attn.hook_z"], expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("norm,source", [("blocks.0.ln1", "blocks.0.hook_resid_pre"),
                                         ("blocks.1.ln2", "blocks.1.hook_resid_mid"),
                                         ("ln_final", "blocks.2.hook_resid_post")])
def test_rms_hook_scale_and_normalized(cached, norm, source):
    """TL's RMSNorm: hook_scale = sqrt(mean(x^2) + eps) [b, p, 1]; hook_normalized = x / scale, before the weight."""
    tiny, c = cached
    x = c[source].astype(np.float64)
    scale = np.sqrt((x * x).mean(-1, keepdims=True) + tiny.cfg.rms_norm_eps)
    np.testing.assert_allclose(c[norm + ".hook_scale"], scale, rtol=1e-5)
    np.testing.assert_allclose(c[norm + ".hook_normalized"], x / scale, rtol=1e-4, atol=1e-6)


def test_unembed_hook_in_is_the_weighted_final_norm(cached):
    tiny, c = cached
    w = np.array(tiny.adapter.final_norm_weight())
    np.testing.assert_allclose(c["unembed.hook_in"], c["ln_final.hook_normalized"] * w, rtol=1e-5, atol=1e-6)
    logits = np.array(tiny.adapter.unembed(mx.array(c["unembed.hook_in"])))
    np.testing.assert_allclose(c["unembed.hook_out"], logits, rtol=1e-5, atol=1e-5)
