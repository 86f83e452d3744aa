"""Measure SAE latents on arbitrary texts (the adversarial inputs of the refinement loop).

Position 0 is masked to zero as in the cached corpus: the SAE was not trained on the attention sink,
so its latents there are meaningless, and masking keeps written inputs comparable with corpus windows.
"""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx
import numpy as np

from engine.errors import TokenizationError
from engine.features.caching import capture
from engine.features.sae import SAE
from engine.features.schemas import MeasuredText
from engine.model import HookedModel


class LatentMeasurer:
    """Runs texts through the model up to the SAE's hook and encodes them."""

    def __init__(self, model: HookedModel, sae: SAE, hook: str | None = None, skip: int = 1) -> None:
        self.model, self.sae, self.skip = model, sae, skip
        self.hook = hook or sae.cfg.hook_name
        if not self.hook:
            raise ValueError("the SAE's cfg.json has no hook_name; pass hook= explicitly (e.g. 'blocks.15.hook_resid_post')")
        if sae.cfg.d_in != model.cfg.d_model and "resid" in self.hook:
            raise ValueError(f"SAE d_in={sae.cfg.d_in} does not match the model's d_model={model.cfg.d_model}")

    def measure(self, texts: Sequence[str], latents: Sequence[int], batch_size: int = 32) -> list[MeasuredText]:
        """Per-token activations of ``latents`` on each text. Texts run as right-padded batches: under
        causal attention the padding after a text cannot change its positions, so results are exact."""
        bad = [l for l in latents if not 0 <= l < self.sae.cfg.d_sae]
        if bad:
            raise ValueError(f"latents {bad[:5]} out of range: this SAE has latents 0..{self.sae.cfg.d_sae - 1}")
        cols = mx.array(list(latents))
        encoded = [self.model.tokenizer.encode(t) for t in texts]
        for text, ids in zip(texts, encoded):
            if not ids:
                raise TokenizationError(f"text {text!r} has no tokens; adversarial inputs must be non-empty")
        order = sorted(range(len(texts)), key=lambda i: len(encoded[i]))  # similar lengths share a batch
        acts_of: dict[int, np.ndarray] = {}
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            width = max(len(encoded[i]) for i in idx)
            rows = [encoded[i] + [encoded[i][-1]] * (width - len(encoded[i])) for i in idx]
            act = capture(self.model, mx.array(rows, dtype=mx.int32), self.hook)  # [b, width, d]
            chosen = np.asarray(mx.take(self.sae.encode(act), cols, axis=-1))  # [b, width, n_latents]
            for row, i in enumerate(idx):
                acts_of[i] = chosen[row, : len(encoded[i])]
        out = []
        for i, text in enumerate(texts):
            acts = acts_of[i].copy()
            acts[: self.skip] = 0.0
            out.append(MeasuredText(
                text=text, tokens=[self.model.tokenizer.id_to_str(t) for t in encoded[i]],
                acts={int(l): [round(float(a), 4) for a in acts[:, j]] for j, l in enumerate(latents)},
            ))
        return out
