"""GGUF Q/K rows come back in Hugging Face's rotate-half order (what transformers and TransformerLens
hold), so hook_q/hook_k dimensions mean the same thing in this engine as in theirs."""

from __future__ import annotations

import mlx.core as mx
import numpy as np

from engine.loading.gguf import _rotate_half_rows


def _llama_cpp_permute(w: np.ndarray, n_heads: int) -> np.ndarray:
    """How llama.cpp's converter writes HF Q/K rows into a GGUF (interleaved RoPE pairs)."""
    return w.reshape(n_heads, 2, w.shape[0] // n_heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def test_rows_permuted_for_llama_cpp_are_restored_exactly():
    rng = np.random.default_rng(0)
    for n_heads, d_head in ((9, 64), (3, 64), (2, 8)):
        hf = rng.standard_normal((n_heads * d_head, 12)).astype(np.float32)
        gguf = _llama_cpp_permute(hf, n_heads)
        assert not np.array_equal(gguf, hf)
        assert np.array_equal(np.array(_rotate_half_rows(mx.array(gguf), n_heads)), hf)


def test_interleaved_and_rotate_half_rope_give_the_same_scores():
    """The conversion changes which dimension is which, never q.k: scores agree to float tolerance."""
    rng = np.random.default_rng(1)
    n_heads, d_head, d_model, pos = 2, 8, 16, 5
    hf_q = rng.standard_normal((n_heads * d_head, d_model)).astype(np.float32)
    hf_k = rng.standard_normal((n_heads * d_head, d_model)).astype(np.float32)
    x = mx.array(rng.standard_normal((pos, d_model)).astype(np.float32))

    def scores(wq, wk, traditional):
        q = (x @ mx.array(wq).T).reshape(pos, n_heads, d_head).transpose(1, 0, 2)[None]
        k = (x @ mx.array(wk).T).reshape(pos, n_heads, d_head).transpose(1, 0, 2)[None]
        q = mx.fast.rope(q, d_head, traditional=traditional, base=10000.0, scale=1.0, offset=0)
        k = mx.fast.rope(k, d_head, traditional=traditional, base=10000.0, scale=1.0, offset=0)
        return np.array(q @ k.swapaxes(-1, -2))

    rotate_half = scores(hf_q, hf_k, traditional=False)
    interleaved = scores(_llama_cpp_permute(hf_q, n_heads), _llama_cpp_permute(hf_k, n_heads), traditional=True)
    assert np.abs(rotate_half - interleaved).max() < 1e-4
