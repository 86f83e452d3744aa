"""SAE quality figures: L0, explained variance, MSE, dead fraction, and CE-loss recovered.

CE-loss recovered = (CE_zero - CE_spliced) / (CE_zero - CE_clean), with the SAE's reconstruction
spliced into the forward pass at its hook (positions >= skip; position 0 is an attention sink the
SAE was not trained on) and, for the floor, the hook's activation zero-ablated at the same positions.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np

from engine.features.caching import ActivationStore
from engine.features.sae import SAE
from engine.features.schemas import SAEMetrics
from engine.hook_names import split_hook
from engine.model import HookedModel


def reconstruction_stats(sae: SAE, x: np.ndarray, batch: int = 4096) -> dict[str, float]:
    """L0, explained variance (1 - SSE / total variance) and per-token MSE over rows of ``x``."""
    sse = l0 = 0.0
    mean = x.mean(axis=0)
    total = float(((x - mean) ** 2).sum())
    for i in range(0, len(x), batch):
        xb = mx.array(x[i : i + batch])
        acts = sae.encode(xb)
        rec = sae.decode(acts) if sae.cfg.normalize_activations == "none" else sae.reconstruct(xb)
        err = rec - xb
        part_sse, part_l0 = mx.sum(err * err), mx.sum(acts > 0)
        mx.eval(part_sse, part_l0)
        sse += float(part_sse)
        l0 += float(part_l0)
    return {"l0": l0 / len(x), "explained_variance": 1.0 - sse / max(total, 1e-12), "mse": sse / len(x) / x.shape[1]}


def fire_counts(sae: SAE, store: ActivationStore, batch: int = 8192) -> tuple[np.ndarray, int]:
    """(number of tokens each latent fired on, tokens seen) over every usable cached token."""
    counts = np.zeros(sae.cfg.d_sae, dtype=np.int64)
    seen = 0
    for _, block in store.iter_shards():
        flat = block[:, store.skip :].reshape(-1, block.shape[-1])
        for i in range(0, len(flat), batch):
            fired = mx.sum(sae.encode(mx.array(flat[i : i + batch])) > 0, axis=0)
            counts += np.asarray(fired).astype(np.int64)
        seen += len(flat)
    return counts, seen


def _next_token_ce(logits: mx.array, tokens: mx.array, skip: int) -> mx.array:
    """Summed CE of predicting token p+1 from positions skip..end-1, and the count, as a [2] array."""
    lg = logits[:, skip:-1].astype(mx.float32)
    target = tokens[:, skip + 1 :]
    logz = mx.logsumexp(lg, axis=-1)
    picked = mx.take_along_axis(lg, target[..., None], axis=-1)[..., 0]
    return mx.stack([mx.sum(logz - picked), mx.array(float(target.size))])


def _kl(clean: mx.array, other: mx.array, skip: int) -> mx.array:
    """Summed KL(clean || other) of the next-token distributions at positions skip..end-1."""
    lp = clean[:, skip:-1].astype(mx.float32)
    lq = other[:, skip:-1].astype(mx.float32)
    lp = lp - mx.logsumexp(lp, axis=-1, keepdims=True)
    lq = lq - mx.logsumexp(lq, axis=-1, keepdims=True)
    return mx.sum(mx.exp(lp) * (lp - lq))


def ce_losses(model: HookedModel, sae: SAE, tokens: np.ndarray, hook: str, *, skip: int = 1,
              batch_size: int = 8) -> tuple[float, float, float]:
    """(clean, SAE-spliced, zero-ablated) mean next-token CE over the contexts in ``tokens``."""
    m = splice_metrics(model, sae, tokens, hook, skip=skip, batch_size=batch_size)
    return m["ce_clean"], m["ce_spliced"], m["ce_zero_ablated"]


def splice_metrics(model: HookedModel, sae: SAE, tokens: np.ndarray, hook: str, *, skip: int = 1,
                   batch_size: int = 8) -> dict[str, float]:
    """Mean next-token CE of the clean, SAE-spliced and zero-ablated runs, and the mean per-token
    KL(clean || spliced) and KL(clean || zero-ablated).

    For a ``blocks.L.hook_resid_post`` hook the layers up to L run once and only the rest is run
    three times (the prefix is identical in all three forwards).
    """
    layer, local = split_hook(hook)
    totals = np.zeros((3, 2))
    kl = np.zeros(2)
    for i in range(0, len(tokens), batch_size):
        tok = mx.array(tokens[i : i + batch_size])
        if layer is not None and local == "hook_resid_post":
            from engine.hookset import EMPTY

            resid = model.adapter.forward(tok, EMPTY, stop_layer=layer + 1)
            variants = [resid, _splice(resid, sae.reconstruct(resid[:, skip:]), skip),
                        _splice(resid, mx.zeros_like(resid[:, skip:]), skip)]
            outs = [model.adapter.forward(None, EMPTY, start_layer=layer + 1, resid=v) for v in variants]
        else:
            outs = [
                model.forward(tok),
                model.run_with_hooks(tok, fwd_hooks=[(hook, lambda a, _n: _splice(a, sae.reconstruct(a[:, skip:]), skip))]),
                model.run_with_hooks(tok, fwd_hooks=[(hook, lambda a, _n: _splice(a, mx.zeros_like(a[:, skip:]), skip))]),
            ]
        parts = [_next_token_ce(o, tok, skip) for o in outs]
        kls = [_kl(outs[0], outs[1], skip), _kl(outs[0], outs[2], skip)]
        mx.eval(*parts, *kls)
        totals += np.stack([np.asarray(p) for p in parts])
        kl += np.array([float(k) for k in kls])
    ce = totals[:, 0] / totals[:, 1]
    return {"ce_clean": float(ce[0]), "ce_spliced": float(ce[1]), "ce_zero_ablated": float(ce[2]),
            "kl_spliced": float(kl[0] / totals[0, 1]), "kl_zero_ablated": float(kl[1] / totals[0, 1])}


def _splice(act: mx.array, replacement: mx.array, skip: int) -> mx.array:
    return mx.concatenate([act[:, :skip], replacement.astype(act.dtype)], axis=1) if skip else replacement.astype(act.dtype)


def evaluate_sae(model: HookedModel | None, sae: SAE, store: ActivationStore, eval_contexts: np.ndarray, *,
                 ce_contexts: int = 64, train_tokens: int = 0, train_seconds: float = 0.0, steps: int = 0) -> SAEMetrics:
    """All figures on the held-out contexts; CE only when a model is given; dead fraction over the whole cache."""
    x = store.flat(eval_contexts)
    stats = reconstruction_stats(sae, x)
    counts, seen = fire_counts(sae, store)
    ce_clean = ce_spliced = ce_zero = recovered = kl_spliced = kl_zero = None
    if model is not None:
        toks = store.tokens[np.asarray(eval_contexts)[:ce_contexts]]
        m = splice_metrics(model, sae, toks, store.manifest.hook, skip=store.skip)
        ce_clean, ce_spliced, ce_zero = m["ce_clean"], m["ce_spliced"], m["ce_zero_ablated"]
        kl_spliced, kl_zero = m["kl_spliced"], m["kl_zero_ablated"]
        recovered = (ce_zero - ce_spliced) / (ce_zero - ce_clean) if ce_zero != ce_clean else None
    return SAEMetrics(
        l0=stats["l0"], explained_variance=stats["explained_variance"], mse=stats["mse"],
        ce_clean=ce_clean, ce_spliced=ce_spliced, ce_zero_ablated=ce_zero, ce_loss_recovered=recovered,
        kl_spliced=kl_spliced, kl_zero_ablated=kl_zero,
        dead_fraction=float((counts == 0).mean()), dead_over_tokens=seen, n_eval_tokens=len(x),
        n_train_tokens=train_tokens, train_seconds=train_seconds, steps=steps,
    )
