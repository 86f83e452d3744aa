"""Train TopK and BatchTopK SAEs in MLX on cached activations.

Choices and why:
- inputs scaled so the mean norm is sqrt(d_in) (SAELens 'expected_average_only_in'), and the factor
  folded into the saved weights, so one learning rate suits any layer's activation scale;
- unit-norm decoder rows with the parallel gradient component removed (TopK paper practice);
- AuxK loss (dead latents reconstruct the residual) keeps the dead fraction low on a small budget;
- BatchTopK learns an inference threshold (EMA of the smallest kept activation) and is saved as JumpReLU.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import mlx.core as mx
import mlx.optimizers as optim
import numpy as np

from engine.features.caching import ActivationStore, _progress
from engine.features.sae import SAE, batch_topk_activation, topk_activation
from engine.features.schemas import SAEConfig, TrainConfig


@dataclass
class TrainResult:
    sae: SAE
    eval_contexts: np.ndarray  # contexts held out from training (for metrics)
    train_tokens: int
    steps: int
    seconds: float
    losses: list[float]


def split_contexts(n_contexts: int, eval_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, eval) context indices: a seeded permutation, eval never used for training."""
    order = np.random.default_rng(seed).permutation(n_contexts)
    n_eval = max(1, int(round(n_contexts * eval_fraction)))
    return np.sort(order[n_eval:]), np.sort(order[:n_eval])


def _fvu(err: mx.array, x: mx.array) -> mx.array:
    """Fraction of variance unexplained: scale-free, so loss values compare across layers."""
    centred = x - mx.mean(x, axis=0, keepdims=True)
    return mx.sum(err * err) / mx.maximum(mx.sum(centred * centred), 1e-12)


def train_sae(
    data: ActivationStore | np.ndarray,
    cfg: TrainConfig,
    *,
    hook_name: str = "",
    hook_layer: int = -1,
    model_name: str = "",
    context_size: int | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train on an ActivationStore (eval contexts held out) or on a plain [n, d_in] array (all used)."""
    if isinstance(data, ActivationStore):
        train_ctx, eval_ctx = split_contexts(data.manifest.n_contexts, cfg.eval_fraction, cfg.seed)
        x_np = data.flat(train_ctx)
        hook_name = hook_name or data.manifest.hook
        model_name = model_name or data.manifest.model
        context_size = context_size or data.manifest.ctx_len
    else:
        x_np, eval_ctx = np.asarray(data, dtype=np.float32), np.zeros(0, dtype=np.int64)
    n, d_in = x_np.shape
    scale = float(math.sqrt(d_in) / np.mean(np.linalg.norm(x_np[: min(n, 20000)], axis=-1)))
    x_all = mx.array(x_np) * scale
    inference_arch = "topk" if cfg.architecture == "topk" else "jumprelu"
    sae_cfg = SAEConfig(architecture=inference_arch, d_in=d_in, d_sae=cfg.d_sae,
                        k=cfg.k if inference_arch == "topk" else None, hook_name=hook_name,
                        hook_layer=hook_layer, model_name=model_name, context_size=context_size)
    b_dec = np.asarray(mx.mean(x_all, axis=0))
    sae = SAE.init(sae_cfg, seed=cfg.seed, b_dec=b_dec)
    params = {k: v for k, v in sae.params.items() if k != "threshold"}
    k_aux_max = cfg.aux_k or d_in // 2
    batch = min(cfg.batch_size, n)
    steps = max(1, int(cfg.epochs * n / batch))
    dead_after_steps = max(1, cfg.dead_after_tokens // batch)

    def loss_fn(p: dict[str, mx.array], x: mx.array, dead: mx.array | None, k_aux: int):
        pre = sae.hidden_pre(x, p)
        if cfg.architecture == "topk":
            acts, kth = topk_activation(pre, cfg.k), mx.array(0.0)
        else:
            acts, kth = batch_topk_activation(pre, cfg.k)
        recon = acts @ p["W_dec"] + p["b_dec"]
        err = recon - x
        loss = _fvu(err, x)
        if dead is not None and k_aux > 0:
            # only the dead latents' columns: cheap while few latents are dead
            aux_acts = topk_activation(mx.take(pre, dead, axis=1), k_aux)
            aux_recon = aux_acts @ mx.take(p["W_dec"], dead, axis=0)
            residual = mx.stop_gradient(x - recon)
            scale_aux = min(1.0, k_aux / k_aux_max)
            loss = loss + cfg.aux_coef * scale_aux * _fvu(aux_recon - residual, residual)
        return loss, (acts, kth)

    grad_fn = mx.value_and_grad(loss_fn)
    schedule = _schedule(cfg.lr, steps)
    opt = optim.Adam(learning_rate=schedule)
    last_fired = np.zeros(cfg.d_sae, dtype=np.int64)
    threshold = 0.0
    rng = np.random.default_rng(cfg.seed)
    perm = rng.permutation(n)
    cursor = 0
    losses: list[float] = []
    started = time.perf_counter()
    with _progress(progress, steps * batch, f"training {inference_arch} SAE d_sae={cfg.d_sae}") as advance:
        for step in range(steps):
            if cursor + batch > n:
                perm, cursor = rng.permutation(n), 0
            idx = mx.array(perm[cursor : cursor + batch])
            cursor += batch
            x = x_all[idx]
            dead_idx = np.nonzero((step - last_fired) >= dead_after_steps)[0]
            k_aux = int(min(k_aux_max, dead_idx.size))
            dead = mx.array(dead_idx.astype(np.int32)) if k_aux > 0 else None
            (loss, (acts, kth)), grads = grad_fn(params, x, dead, k_aux)
            grads["W_dec"] = _remove_parallel(grads["W_dec"], params["W_dec"])
            params = opt.apply_gradients(grads, params)
            params["W_dec"] = params["W_dec"] / mx.linalg.norm(params["W_dec"], axis=1, keepdims=True)
            fired = mx.any(acts > 0, axis=0)
            mx.eval(params, loss, fired, kth, opt.state)
            last_fired[np.asarray(fired)] = step
            if cfg.architecture == "batchtopk":
                threshold = (1 - cfg.threshold_lr) * threshold + cfg.threshold_lr * float(kth) if step else float(kth)
            losses.append(float(loss))
            advance(batch)
    seconds = time.perf_counter() - started
    final = _fold_scale(params, scale)
    if inference_arch == "jumprelu":
        final["threshold"] = mx.full((cfg.d_sae,), threshold, dtype=mx.float32)
    return TrainResult(SAE(sae_cfg, final), eval_ctx, n, steps, seconds, losses)


def _schedule(lr: float, steps: int):
    """Linear warm-up over 5% of steps, constant, linear decay to zero over the last 20%."""
    warm = max(1, steps // 20)
    decay_from = int(steps * 0.8)

    def at(step: mx.array) -> mx.array:
        s = step.astype(mx.float32)
        up = mx.minimum(1.0, (s + 1) / warm)
        down = mx.clip((steps - s) / max(1, steps - decay_from), 0.0, 1.0)
        return lr * up * mx.minimum(1.0, down)

    return at


def _remove_parallel(grad: mx.array, w_dec: mx.array) -> mx.array:
    """Drop the gradient component that would change decoder row norms (kept at 1 anyway)."""
    return grad - mx.sum(grad * w_dec, axis=1, keepdims=True) * w_dec


def _fold_scale(params: dict[str, mx.array], scale: float) -> dict[str, mx.array]:
    """Weights that read unscaled activations: x*s in, out/s — so the saved SAE needs no factor."""
    return {
        "W_enc": params["W_enc"] * scale,
        "b_enc": params["b_enc"],
        "W_dec": params["W_dec"] / scale,
        "b_dec": params["b_dec"] / scale,
    }
