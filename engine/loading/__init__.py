"""Model loading: the embedded GGUF default, mlx-lm directories and local HF snapshots."""

from engine.loading.resolve import load_native, resolve_model

__all__ = ["load_native", "resolve_model"]
