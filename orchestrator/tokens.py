"""Token counting for task validation, without mlx.

Why: equal token lengths and one-token answers can only be checked with the model's tokenizer,
and the orchestrator must not import mlx. The engine writes ``tokenizer.json`` next to the
converted weights (``python -m engine.warm``); this module finds it and loads it with the
``tokenizers`` library. If the cache is cold it runs the warm step as a subprocess once.
"""

from __future__ import annotations

import os
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

from engine.loading.resolve import EMBEDDED_ALIASES, EMBEDDED_FILE, cache_root

WARM_TIMEOUT_S = 900


class TokenizerUnavailable(RuntimeError):
    """No tokenizer.json could be found or produced for a model reference."""


class TokenCounter:
    """Encodes text exactly as the engine does (no BOS added; the GGUF tokenizer adds none)."""

    def __init__(self, path: Path) -> None:
        from tokenizers import Tokenizer

        self.path = path
        self._tok = Tokenizer.from_file(str(path))

    def ids(self, text: str) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=True).ids)

    def count(self, text: str) -> int:
        return len(self.ids(text))


def is_embedded(ref: str) -> bool:
    return ref.strip().lower() in EMBEDDED_ALIASES


def _cached_tokenizer(ref: str) -> Path | None:
    """tokenizer.json for ``ref`` if it is already on disk."""
    models = cache_root() / "models"
    if is_embedded(ref) or ref.endswith(".gguf"):
        stem = Path(EMBEDDED_FILE).stem if is_embedded(ref) else Path(ref).stem
        if not models.is_dir():
            return None
        # conversions are renamed into place whole, so any match is complete
        found = sorted(models.glob(f"{stem}-*/tokenizer.json"))
        return found[0] if found else None
    direct = Path(ref).expanduser() / "tokenizer.json"
    return direct if direct.is_file() else None


def _warm(ref: str) -> str:
    """Run ``python -m engine.warm REF`` (trusted, may import mlx in the child); return its stderr tail."""
    from engine.blas import blas_env

    env = dict(os.environ)
    env.update(blas_env(env))
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "engine.warm", ref],
            env=env,
            capture_output=True,
            text=True,
            timeout=WARM_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"engine.warm timed out after {WARM_TIMEOUT_S} s"
    return "" if proc.returncode == 0 else (proc.stderr or proc.stdout).strip()[-600:]


@lru_cache(maxsize=8)
def token_counter(ref: str, warm: bool = True) -> TokenCounter:
    """The tokenizer of model ``ref``; warms the engine cache once if needed."""
    path = _cached_tokenizer(ref)
    detail = ""
    if path is None and warm:
        detail = _warm(ref)
        path = _cached_tokenizer(ref)
    if path is None:
        raise TokenizerUnavailable(
            f"no tokenizer.json for model {ref!r} under {cache_root() / 'models'}"
            + (f" (engine.warm said: {detail})" if detail else "")
            + f"; run `python -m engine.warm {ref}` once, then retry"
        )
    return TokenCounter(path)
