"""Hooked forward for the Llama family (Llama, SmolLM, Mistral, Qwen2) over mlx-lm's own modules.

The computation mirrors mlx_lm.models.llama exactly when no hook is set (same fused kernels:
rms_norm, rope, scaled_dot_product_attention, the MLP module), so the hooked forward with no hooks
equals the plain forward. Unfused paths are taken only where a requested hook needs the
intermediate (attention scores/pattern, norm scale, MLP pre-activations).
Shape comments: b batch, p positions, h query heads, g kv heads, e d_head, d d_model, m d_mlp.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from engine.hookset import HookSet


class LlamaAdapter:
    def __init__(self, model: nn.Module, cfg) -> None:
        self.model = model
        self.inner = model.model
        self.layers = model.model.layers
        self.cfg = cfg
        self.tied = bool(getattr(model.args, "tie_word_embeddings", True)) and not hasattr(model, "lm_head")
        self._n_rep = cfg.n_heads // cfg.n_kv_heads

    # ---- pieces -------------------------------------------------------------------------
    def embed(self, tokens: mx.array, hs: HookSet) -> mx.array:
        return hs("hook_embed", self.inner.embed_tokens(tokens))  # [b, p, d]

    def _rms(self, x: mx.array, norm: nn.Module, prefix: str, hs: HookSet) -> mx.array:
        if hs.wants_any(prefix + ".hook_scale", prefix + ".hook_normalized"):
            scale = mx.sqrt(mx.mean(x * x, axis=-1, keepdims=True) + norm.eps)  # [b, p, 1]
            scale = hs(prefix + ".hook_scale", scale)
            return hs(prefix + ".hook_normalized", x / scale) * norm.weight  # [b, p, d]
        return mx.fast.rms_norm(x, norm.weight, norm.eps)

    def _attention(self, x: mx.array, attn: nn.Module, pre: str, hs: HookSet, offset: int) -> mx.array:
        b, p, _ = x.shape
        cfg = self.cfg
        q = hs(pre + "attn.hook_q", attn.q_proj(x).reshape(b, p, cfg.n_heads, -1))  # [b, p, h, e]
        k = hs(pre + "attn.hook_k", attn.k_proj(x).reshape(b, p, cfg.n_kv_heads, -1))  # [b, p, g, e]
        v = hs(pre + "attn.hook_v", attn.v_proj(x).reshape(b, p, cfg.n_kv_heads, -1))  # [b, p, g, e]
        q = attn.rope(q.transpose(0, 2, 1, 3), offset=offset)  # [b, h, p, e]
        k = attn.rope(k.transpose(0, 2, 1, 3), offset=offset)  # [b, g, p, e]
        if hs.wants(pre + "attn.hook_rot_q"):
            q = hs(pre + "attn.hook_rot_q", q.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3)
        if hs.wants(pre + "attn.hook_rot_k"):
            k = hs(pre + "attn.hook_rot_k", k.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3)
        v = v.transpose(0, 2, 1, 3)  # [b, g, p, e]
        if hs.wants_any(pre + "attn.hook_attn_scores", pre + "attn.hook_pattern"):
            z = self._explicit_attention(q, k, v, attn.scale, pre, hs)
        else:
            z = mx.fast.scaled_dot_product_attention(q, k, v, scale=attn.scale, mask="causal" if p > 1 else None)
        z = hs(pre + "attn.hook_z", z.transpose(0, 2, 1, 3))  # [b, p, h, e]
        return attn.o_proj(z.reshape(b, p, -1))  # [b, p, d]

    def _explicit_attention(self, q, k, v, scale: float, pre: str, hs: HookSet) -> mx.array:
        if self._n_rep > 1:
            k = mx.repeat(k, self._n_rep, axis=1)  # [b, h, p, e]: query head i reads kv head i // n_rep
            v = mx.repeat(v, self._n_rep, axis=1)
        p_q, p_k = q.shape[2], k.shape[2]
        scores = (q * scale) @ k.transpose(0, 1, 3, 2)  # [b, h, p_q, p_k]
        causal = mx.arange(p_k)[None, :] <= (mx.arange(p_q)[:, None] + (p_k - p_q))
        scores = mx.where(causal, scores, mx.array(-mx.inf, dtype=scores.dtype))
        scores = hs(pre + "attn.hook_attn_scores", scores)
        pattern = hs(pre + "attn.hook_pattern", mx.softmax(scores, axis=-1, precise=True))
        return pattern @ v  # [b, h, p, e]

    def _mlp(self, x: mx.array, mlp: nn.Module, pre: str, hs: HookSet) -> mx.array:
        if hs.wants_any(pre + "mlp.hook_pre", pre + "mlp.hook_pre_linear", pre + "mlp.hook_post"):
            gate = hs(pre + "mlp.hook_pre", mlp.gate_proj(x))  # [b, p, m]
            up = hs(pre + "mlp.hook_pre_linear", mlp.up_proj(x))  # [b, p, m]
            post = hs(pre + "mlp.hook_post", nn.silu(gate) * up)  # [b, p, m]
            return mlp.down_proj(post)
        return mlp(x)

    def block(self, layer: int, resid: mx.array, hs: HookSet, offset: int = 0) -> mx.array:
        blk = self.layers[layer]
        pre = f"blocks.{layer}."
        resid = hs(pre + "hook_resid_pre", resid)  # [b, p, d]
        attn_out = self._attention(self._rms(resid, blk.input_layernorm, pre + "ln1", hs), blk.self_attn, pre, hs, offset)
        resid = hs(pre + "hook_resid_mid", resid + hs(pre + "hook_attn_out", attn_out))
        mlp_out = self._mlp(self._rms(resid, blk.post_attention_layernorm, pre + "ln2", hs), blk.mlp, pre, hs)
        return hs(pre + "hook_resid_post", resid + hs(pre + "hook_mlp_out", mlp_out))

    def final_norm(self, resid: mx.array, hs: HookSet) -> mx.array:
        return self._rms(resid, self.inner.norm, "ln_final", hs)

    def unembed(self, normed: mx.array) -> mx.array:
        if self.tied:
            return self.inner.embed_tokens.as_linear(normed)  # [b, p, v]
        return self.model.lm_head(normed)

    def unembed_matrix(self) -> mx.array:
        """W_U as [d, v] (TransformerLens orientation)."""
        w = self.inner.embed_tokens.weight if self.tied else self.model.lm_head.weight
        return w.T

    def final_norm_weight(self) -> mx.array:
        return self.inner.norm.weight

    # ---- whole forward ------------------------------------------------------------------
    def forward(
        self,
        tokens: mx.array | None,
        hs: HookSet,
        *,
        start_layer: int = 0,
        stop_layer: int | None = None,
        resid: mx.array | None = None,
        logit_positions: list[int] | None = None,
        offset: int = 0,
    ) -> mx.array:
        """Logits, or the residual stream when ``stop_layer`` is given (resid_pre of that layer).

        ``resid`` + ``start_layer`` resume from a cached residual; ``offset`` is the absolute
        position of the first row of positions (for RoPE) when only a suffix is recomputed.
        """
        x = self.embed(tokens, hs) if resid is None else resid
        stop = self.cfg.n_layers if stop_layer is None else stop_layer
        for layer in range(start_layer, stop):
            x = self.block(layer, x, hs, offset)
        if stop_layer is not None:
            return x
        if logit_positions is not None:
            x = x[:, mx.array(logit_positions)]
        return self.unembed(self.final_norm(x, hs))
