"""One adapter per architecture family maps native mlx-lm modules onto TransformerLens hook points."""

from __future__ import annotations

from engine.errors import UnsupportedArchitectureError

LLAMA_FAMILY = frozenset({"llama", "mistral", "qwen2", "smollm", "smollm2"})


def adapter_for(model_type: str):
    if model_type in LLAMA_FAMILY:
        from engine.adapters.llama import LlamaAdapter

        return LlamaAdapter
    raise UnsupportedArchitectureError(
        f"architecture {model_type!r} has no hook adapter yet; supported: {sorted(LLAMA_FAMILY)}"
    )
