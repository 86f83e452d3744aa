"""Which SAE latents drive a behaviour: attribution patching onto latents.

For clean/corrupted prompt pairs and the metric m = logit(correct) - logit(wrong) at the last
position of the clean run, the effect of patching latent l from the corrupted run into the clean run is
approximated to first order by  sum_pos (f_corr - f_clean)_l * (W_dec[l] . dm/dx_hook),  averaged over
pairs. Why this estimate: one forward and one backward per batch for every latent at once, the same
approximation the engine's attribution patching uses for components; the top latents are then
explained and, when the loop keeps them, verified like any other finding.
"""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx
import numpy as np

from engine.errors import TokenizationError
from engine.features.caching import capture
from engine.features.sae import SAE
from engine.model import HookedModel


def _metric_grad(model: HookedModel, tokens: mx.array, hook: str, correct: mx.array, wrong: mx.array) -> tuple[mx.array, mx.array]:
    """(metric per row, d metric / d activation at ``hook``) for a batch, via an additive probe at the hook."""
    act = capture(model, tokens, hook)

    def metric(delta: mx.array) -> mx.array:
        logits = model.run_with_hooks(tokens, fwd_hooks=[(hook, lambda a, _n: a + delta)], logit_positions=[-1])[:, -1]
        rows = mx.arange(logits.shape[0])
        return mx.sum(logits[rows, correct] - logits[rows, wrong])

    value, grad = mx.value_and_grad(metric)(mx.zeros_like(act))
    return value, grad


def latent_attribution(model: HookedModel, sae: SAE, pairs: Sequence[tuple[str, str, str, str]], *,
                       hook: str | None = None, batch_size: int = 8, skip: int = 1) -> tuple[np.ndarray, float]:
    """(attribution per latent [d_sae], mean clean metric) over (clean, corrupted, correct, wrong) pairs."""
    hook = hook or sae.cfg.hook_name
    if not pairs:
        raise ValueError("latent attribution needs at least one prompt pair")
    total = np.zeros(sae.cfg.d_sae, dtype=np.float64)
    metric_sum = 0.0
    w_dec = sae.params["W_dec"]
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        clean = model.to_tokens([p[0] for p in chunk])
        corrupted = model.to_tokens([p[1] for p in chunk])
        if clean.shape != corrupted.shape:
            raise TokenizationError("clean and corrupted prompts must have the same token length for latent attribution")
        correct = mx.array([model.token_id(p[2]) for p in chunk])
        wrong = mx.array([model.token_id(p[3]) for p in chunk])
        value, grad = _metric_grad(model, clean, hook, correct, wrong)
        f_clean = sae.encode(capture(model, clean, hook))[:, skip:]
        f_corr = sae.encode(capture(model, corrupted, hook))[:, skip:]
        proj = grad[:, skip:] @ w_dec.T  # [b, p, d_sae]: how each latent's decoder direction moves the metric
        attr = mx.sum((f_corr - f_clean) * proj, axis=(0, 1))
        mx.eval(attr, value)
        total += np.asarray(attr, dtype=np.float64)
        metric_sum += float(value)
    return total / len(pairs), metric_sum / len(pairs)


def top_latents(attribution: np.ndarray, n: int) -> list[int]:
    """Latents with the largest |attribution| (ties by index)."""
    order = np.lexsort((np.arange(attribution.size), -np.abs(attribution)))
    return [int(i) for i in order[:n] if attribution[i] != 0]
