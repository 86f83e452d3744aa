"""Tiny random Llama-architecture models for fast engine tests (no files, no downloads)."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
from mlx_lm.models import llama

from engine.model import HookedModel, from_module

TINY_CONFIG = {
    "model_type": "llama",
    "hidden_size": 64,
    "num_hidden_layers": 3,
    "intermediate_size": 96,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "rms_norm_eps": 1e-5,
    "vocab_size": 64,
    "rope_traditional": True,
    "rope_theta": 10000.0,
    "tie_word_embeddings": True,
}


class WordTokenizer:
    """Whitespace 'tokenizer' over a fixed vocabulary of words w0..wN (ids are the numbers)."""

    def __init__(self, vocab_size: int) -> None:
        self._n = vocab_size

    def encode(self, text: str) -> list[int]:
        return [int(w[1:]) % self._n for w in text.split()]

    def decode(self, ids: list[int]) -> str:
        return " ".join(f"w{i}" for i in ids)

    def id_to_str(self, token_id: int) -> str:
        return f"w{int(token_id)}"

    @property
    def vocab_size(self) -> int:
        return self._n


def tiny_model(seed: int = 0, **overrides) -> HookedModel:
    config = {**TINY_CONFIG, **overrides}
    mx.random.seed(seed)
    module = llama.Model(llama.ModelArgs.from_dict(config))
    # Larger-than-default weights so attention patterns and MLPs do something measurable.
    rng = np.random.default_rng(seed)
    params = {}
    from mlx.utils import tree_flatten, tree_unflatten

    for name, value in tree_flatten(module.parameters()):
        if name.endswith("norm.weight") or "layernorm" in name:
            params[name] = mx.array(1.0 + 0.1 * rng.standard_normal(value.shape).astype(np.float32))
        else:
            params[name] = mx.array(rng.standard_normal(value.shape).astype(np.float32) / np.sqrt(value.shape[-1]))
    module.update(tree_unflatten(list(params.items())))
    mx.eval(module.parameters())
    return from_module(module, WordTokenizer(config["vocab_size"]), config, name="tiny")


def random_tokens(model: HookedModel, batch: int, pos: int, seed: int = 0) -> mx.array:
    rng = np.random.default_rng(seed)
    return mx.array(rng.integers(0, model.cfg.d_vocab, size=(batch, pos)), dtype=mx.int32)
