"""Convert a llama-architecture GGUF file into an mlx-lm model directory (float32 safetensors).

Why a conversion: on the CPU, MLX's quantised matmul is slow and dequantising at every load
costs seconds, so the file is dequantised once (scales and biases cast to float32 first, which
matches Hugging Face's dequantisation bit for bit) and cached as an ordinary mlx-lm directory.
GGUF stores Llama Q/K rows permuted for llama.cpp's interleaved RoPE; the conversion puts them back
in Hugging Face's rotate-half order (``rope_traditional=False``), as transformers' GGUF reader does, so
``hook_q``/``hook_k``/``hook_rot_q``/``hook_rot_k`` hold the same numbers per head dimension as
TransformerLens and transformers (the attention scores are the same either way; single dimensions
of q and k are not).
"""

from __future__ import annotations

import json
from pathlib import Path

import mlx.core as mx
import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from tokenizers import AddedToken

from engine.errors import ModelNotFoundError, UnsupportedArchitectureError

GROUP_SIZE = 32
_LAYER_NAMES = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}
_TOP_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}


def _scalar(meta: dict, key: str, default=None):
    if key not in meta:
        if default is None:
            raise UnsupportedArchitectureError(f"GGUF metadata lacks {key!r}; cannot build the model config")
        return default
    value = meta[key]
    if isinstance(value, mx.array):
        return value.item()
    return value


def _hf_name(gguf_name: str) -> str:
    stem, _, suffix = gguf_name.rpartition(".")
    if stem.startswith("blk."):
        _, layer, part = stem.split(".", 2)
        if part not in _LAYER_NAMES:
            raise UnsupportedArchitectureError(f"unexpected GGUF tensor {gguf_name!r}")
        return f"model.layers.{layer}.{_LAYER_NAMES[part]}.{suffix}"
    if stem not in _TOP_NAMES:
        raise UnsupportedArchitectureError(f"unexpected GGUF tensor {gguf_name!r}")
    return f"{_TOP_NAMES[stem]}.{suffix}"


def _dequantise(weights: dict[str, mx.array]) -> dict[str, mx.array]:
    out: dict[str, mx.array] = {}
    for name, value in weights.items():
        if name.endswith((".scales", ".biases")):
            continue
        base = name[: -len(".weight")] if name.endswith(".weight") else None
        if base is not None and f"{base}.scales" in weights:
            scales = weights[f"{base}.scales"].astype(mx.float32)
            biases = weights[f"{base}.biases"].astype(mx.float32)
            bits = (value.shape[-1] * 32) // (scales.shape[-1] * GROUP_SIZE)
            value = mx.dequantize(value, scales, biases, group_size=GROUP_SIZE, bits=bits)
        out[_hf_name(name)] = value.astype(mx.float32)
    return out


def _config(meta: dict) -> dict:
    arch = meta.get("general.architecture")
    if arch != "llama":
        raise UnsupportedArchitectureError(
            f"GGUF architecture {arch!r} is not supported; only 'llama' GGUF files convert "
            "(load other models as an mlx-lm directory instead)"
        )
    n_heads = int(_scalar(meta, "llama.attention.head_count"))
    d_model = int(_scalar(meta, "llama.embedding_length"))
    return {
        "model_type": "llama",
        "hidden_size": d_model,
        "num_hidden_layers": int(_scalar(meta, "llama.block_count")),
        "intermediate_size": int(_scalar(meta, "llama.feed_forward_length")),
        "num_attention_heads": n_heads,
        "num_key_value_heads": int(_scalar(meta, "llama.attention.head_count_kv", n_heads)),
        "head_dim": int(_scalar(meta, "llama.rope.dimension_count", d_model // n_heads)),
        "rms_norm_eps": float(_scalar(meta, "llama.attention.layer_norm_rms_epsilon")),
        "vocab_size": int(_scalar(meta, "llama.vocab_size", len(meta["tokenizer.ggml.tokens"]))),
        "rope_theta": float(_scalar(meta, "llama.rope.freq_base", 10000.0)),
        "max_position_embeddings": int(_scalar(meta, "llama.context_length", 2048)),
        "rope_traditional": False,  # Q/K rows un-permuted to rotate-half order by _rotate_half_rows
        "tie_word_embeddings": True,
    }


def _rotate_half_rows(weight: mx.array, n_heads: int) -> mx.array:
    """Undo llama.cpp's Q/K row permutation: within each head, rows (2i, 2i+1) of the interleaved
    layout become rows i and i + d_head/2 of the rotate-half layout."""
    out_dim = weight.shape[0]
    half = out_dim // n_heads // 2
    w = weight.reshape(n_heads, half, 2, *weight.shape[1:])
    return w.swapaxes(1, 2).reshape(weight.shape)


def _tokenizer(meta: dict) -> Tokenizer:
    if meta.get("tokenizer.ggml.model") != "gpt2":
        raise UnsupportedArchitectureError(
            f"GGUF tokenizer model {meta.get('tokenizer.ggml.model')!r} is not supported (byte-level BPE only)"
        )
    tokens: list[str] = list(meta["tokenizer.ggml.tokens"])
    vocab = {tok: i for i, tok in enumerate(tokens)}
    merges = [tuple(m.split(" ", 1)) for m in meta["tokenizer.ggml.merges"]]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    types = np.array(meta["tokenizer.ggml.token_type"]) if "tokenizer.ggml.token_type" in meta else None
    if types is not None:
        special = [AddedToken(tokens[i], special=True, normalized=False) for i in np.nonzero(types == 3)[0]]
        tok.add_special_tokens(special)
    return tok


def convert_gguf(gguf_path: Path, out_dir: Path) -> None:
    """Write ``config.json``, ``model.safetensors`` and ``tokenizer.json`` for ``gguf_path``."""
    if not gguf_path.is_file():
        raise ModelNotFoundError(f"GGUF file {gguf_path} does not exist")
    weights, meta = mx.load(str(gguf_path), return_metadata=True)
    config = _config(meta)
    tensors = _dequantise(weights)
    for name in list(tensors):
        if name.endswith(("self_attn.q_proj.weight", "self_attn.k_proj.weight")):
            heads = config["num_attention_heads"] if ".q_proj." in name else config["num_key_value_heads"]
            tensors[name] = _rotate_half_rows(tensors[name], heads)
    if "lm_head.weight" in tensors:
        config["tie_word_embeddings"] = False
    chat_template = meta.get("tokenizer.chat_template")
    special = {
        "bos_token_id": int(_scalar(meta, "tokenizer.ggml.bos_token_id", -1)),
        "eos_token_id": int(_scalar(meta, "tokenizer.ggml.eos_token_id", -1)),
        "add_bos_token": bool(_scalar(meta, "tokenizer.ggml.add_bos_token", False)),
        "chat_template": chat_template,
        "source": str(gguf_path),
        "name": str(meta.get("general.name", gguf_path.stem)),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    # out_dir is a private temporary directory renamed into place by the caller.
    mx.save_safetensors(str(out_dir / "model.safetensors"), tensors)
    _tokenizer(meta).save(str(out_dir / "tokenizer.json"))
    (out_dir / "engine_tokenizer.json").write_text(json.dumps(special, indent=1))
    # config.json last: its presence marks a complete conversion.
    (out_dir / "config.json").write_text(json.dumps(config, indent=1))
