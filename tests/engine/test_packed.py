"""Packed (fused, pre-transposed) projection weights: equal results, never stale, optional."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten, tree_unflatten

from engine.adapters import packed
from tests.engine.tiny import random_tokens, tiny_model


def _maxdiff(a: mx.array, b: mx.array) -> float:
    return float(mx.abs(a - b).max().item())


def test_packed_forward_equals_module_forward():
    m = tiny_model(0)
    tokens = random_tokens(m, 2, 6)
    assert m.adapter.packed(0) is not None  # the tiny model's dense layers are packed
    fast = m.forward(tokens)
    m.adapter.packed.enabled = False  # every projection through mlx-lm's modules
    slow = m.forward(tokens)
    assert _maxdiff(fast, slow) <= 1e-5


def test_replaced_weights_are_repacked():
    """module.update after wrapping (as the planted-circuit models do) must reach the packed copies."""
    m, fresh = tiny_model(0), tiny_model(1)
    tokens = random_tokens(m, 1, 5)
    m.forward(tokens)  # pack with seed-0 weights
    m.model.update(tree_unflatten(tree_flatten(fresh.model.parameters())))
    assert _maxdiff(m.forward(tokens), fresh.forward(tokens)) <= 1e-5


def test_biases_are_packed():
    """Qwen2-style q/k/v biases (and an o_proj bias) are fused with their weights."""
    m = tiny_model(0)
    rng = np.random.default_rng(0)
    for blk in m.adapter.layers:
        attn = blk.self_attn
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            old = getattr(attn, name)
            lin = nn.Linear(old.weight.shape[1], old.weight.shape[0], bias=True)
            lin.weight = old.weight
            lin.bias = mx.array(rng.standard_normal(old.weight.shape[0]).astype(np.float32))
            setattr(attn, name, lin)
    tokens = random_tokens(m, 2, 5)
    fast = m.forward(tokens)
    assert m.adapter.packed(0).qkv_bias is not None
    assert _maxdiff(fast, m.model(tokens)) <= 1e-4


def test_quantised_and_oversized_models_use_the_modules(monkeypatch):
    m = tiny_model(0)
    monkeypatch.setattr(packed, "PACK_LIMIT_BYTES", 10)
    assert not packed.packable(list(m.adapter.layers))
    m2 = tiny_model(0)
    nn.quantize(m2.model, group_size=32, bits=8)
    assert packed.PackedWeights(list(m2.adapter.layers))(0) is None
    assert m2.adapter.packed(0) is None  # quantised after wrapping: the modules again
    tokens = random_tokens(m2, 1, 4)
    assert _maxdiff(m2.forward(tokens), m2.model(tokens)) <= 1e-4


def test_packed_unembedding_follows_replaced_embedding():
    m, fresh = tiny_model(0), tiny_model(3)
    tokens = random_tokens(m, 1, 5)
    assert _maxdiff(m.forward(tokens), m.model(tokens)) <= 1e-4
    m.model.update(tree_unflatten(tree_flatten(fresh.model.parameters())))
    assert _maxdiff(m.forward(tokens), fresh.model(tokens)) <= 1e-4
