"""Sparse autoencoders in MLX with SAELens semantics (standard/ReLU, TopK, JumpReLU).

Why SAELens semantics exactly: SAEs trained here must behave the same when loaded by SAELens, and
SAELens SAEs trained elsewhere must behave the same here (encode = activation((x - b_dec) @ W_enc + b_enc)).
BatchTopK SAEs are trained with a batch-level top-k and saved as JumpReLU with the learned threshold,
as SAELens does.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np

from engine.features.schemas import SAEConfig


class SAEShapeError(ValueError):
    """Weights whose shapes do not match the config (or an input with the wrong width)."""


class SAE:
    """Inference-time SAE; parameters live in ``params`` (a dict of mx.arrays, SAELens names)."""

    def __init__(self, cfg: SAEConfig, params: dict[str, mx.array]) -> None:
        self.cfg = cfg
        self.params = params
        self._check()

    # ---- construction ----------------------------------------------------------------------------
    @classmethod
    def init(cls, cfg: SAEConfig, seed: int = 0, b_dec: np.ndarray | None = None) -> "SAE":
        """Random unit-norm decoder rows, encoder = decoder transposed (the usual TopK initialisation)."""
        rng = np.random.default_rng(seed)
        w_dec = rng.standard_normal((cfg.d_sae, cfg.d_in)).astype(np.float32)
        w_dec /= np.linalg.norm(w_dec, axis=1, keepdims=True)
        params = {
            "W_enc": mx.array(w_dec.T.copy()),
            "b_enc": mx.zeros((cfg.d_sae,), dtype=mx.float32),
            "W_dec": mx.array(w_dec),
            "b_dec": mx.array(b_dec.astype(np.float32)) if b_dec is not None else mx.zeros((cfg.d_in,), dtype=mx.float32),
        }
        if cfg.architecture == "jumprelu":
            params["threshold"] = mx.zeros((cfg.d_sae,), dtype=mx.float32)
        return cls(cfg, params)

    def _check(self) -> None:
        c, p = self.cfg, self.params
        want = {"W_enc": (c.d_in, c.d_sae), "b_enc": (c.d_sae,), "W_dec": (c.d_sae, c.d_in), "b_dec": (c.d_in,)}
        if c.architecture == "jumprelu":
            want["threshold"] = (c.d_sae,)
        for name, shape in want.items():
            if name not in p:
                raise SAEShapeError(f"SAE weights lack {name!r} (a {c.architecture} SAE needs {sorted(want)})")
            if tuple(p[name].shape) != shape:
                raise SAEShapeError(f"{name} has shape {tuple(p[name].shape)}, expected {shape} for d_in={c.d_in}, d_sae={c.d_sae}")

    # ---- forward ---------------------------------------------------------------------------------
    def _normalise(self, x: mx.array) -> tuple[mx.array, tuple[mx.array, mx.array] | None]:
        mode = self.cfg.normalize_activations
        if mode == "constant_norm_rescale":
            coeff = (self.cfg.d_in ** 0.5) / mx.linalg.norm(x, axis=-1, keepdims=True)
            return x * coeff, (coeff, mx.zeros_like(coeff))
        if mode == "layer_norm":
            mu = mx.mean(x, axis=-1, keepdims=True)
            xc = x - mu
            std = mx.sqrt(mx.sum(xc * xc, axis=-1, keepdims=True) / (x.shape[-1] - 1))  # torch std is unbiased
            return xc / (std + 1e-5), (std, mu)
        return x, None

    def hidden_pre(self, x: mx.array, params: dict[str, mx.array] | None = None) -> mx.array:
        """Pre-activations [..., d_sae] of already-normalised input."""
        p = self.params if params is None else params
        if x.shape[-1] != self.cfg.d_in:
            raise SAEShapeError(f"input has width {x.shape[-1]}, this SAE reads d_in={self.cfg.d_in} ({self.cfg.hook_name})")
        sae_in = x - p["b_dec"] if self.cfg.apply_b_dec_to_input else x
        return sae_in @ p["W_enc"] + p["b_enc"]

    def activate(self, pre: mx.array, params: dict[str, mx.array] | None = None) -> mx.array:
        p = self.params if params is None else params
        arch = self.cfg.architecture
        if arch == "topk":
            return topk_activation(pre, int(self.cfg.k or 0))
        if arch == "jumprelu":
            return mx.maximum(pre, 0.0) * (pre > p["threshold"])
        return mx.maximum(pre, 0.0)

    def encode(self, x: mx.array) -> mx.array:
        """Latent activations [..., d_sae] of raw hook activations [..., d_in]."""
        x, _ = self._normalise(x.astype(mx.float32))
        return self.activate(self.hidden_pre(x))

    def decode(self, acts: mx.array) -> mx.array:
        """Reconstruction in the normalised space (equal to the hook space when normalize_activations='none')."""
        return acts @ self.params["W_dec"] + self.params["b_dec"]

    def reconstruct(self, x: mx.array) -> mx.array:
        """encode then decode, undoing any run-time input normalisation."""
        xn, stats = self._normalise(x.astype(mx.float32))
        out = self.decode(self.activate(self.hidden_pre(xn)))
        if stats is not None:
            scale, shift = stats
            out = out * scale + shift if self.cfg.normalize_activations == "layer_norm" else out / scale
        return out

    __call__ = reconstruct

    def numpy_params(self) -> dict[str, np.ndarray]:
        return {k: np.array(v) for k, v in self.params.items()}

    def __repr__(self) -> str:
        c = self.cfg
        extra = f", k={c.k}" if c.k else ""
        return f"SAE({c.architecture}, d_in={c.d_in}, d_sae={c.d_sae}{extra}, hook={c.hook_name!r})"


def topk_activation(pre: mx.array, k: int) -> mx.array:
    """Keep the k largest pre-activations per row (then ReLU), zero the rest; gradients flow to kept ones."""
    kth = mx.min(mx.topk(pre, k, axis=-1), axis=-1, keepdims=True)
    keep = mx.stop_gradient(pre >= kth)
    return mx.maximum(pre, 0.0) * keep


def batch_topk_activation(pre: mx.array, k: int) -> tuple[mx.array, mx.array]:
    """Keep the k * batch largest ReLU'd pre-activations across the whole batch; returns (acts, threshold used)."""
    relu = mx.maximum(pre, 0.0)
    n_keep = min(k * pre.shape[0], relu.size)
    kth = mx.min(mx.topk(relu.reshape(-1), n_keep))
    keep = mx.stop_gradient(relu >= kth) * mx.stop_gradient(relu > 0)
    return relu * keep, mx.stop_gradient(kth)
