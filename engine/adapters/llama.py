"""Hooked forward for the Llama family (Llama, SmolLM, Mistral, Qwen2) over mlx-lm's own modules.

The computation mirrors mlx_lm.models.llama (same fused kernels: rms_norm, rope,
scaled_dot_product_attention) with the projections on packed weights (engine.adapters.packed: q|k|v
and gate|up fused, pre-transposed; faster on the CPU), so the hooked forward with no hooks equals the
plain forward to float32 rounding (summation order). Unfused paths are taken only where a requested
hook needs the intermediate (attention scores/pattern, norm scale).
Shape comments: b batch, p positions, h query heads, g kv heads, e d_head, d d_model, m d_mlp.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from engine.adapters.packed import PackedWeights, linear
from engine.adapters.rope_tables import RopeTables
from engine.hookset import EMPTY, HookSet


class LlamaAdapter:
    def __init__(self, model: nn.Module, cfg) -> None:
        self.model = model
        self.inner = model.model
        self.layers = model.model.layers
        self.cfg = cfg
        self.tied = bool(getattr(model.args, "tie_word_embeddings", True)) and not hasattr(model, "lm_head")
        self._n_rep = cfg.n_heads // cfg.n_kv_heads
        self.packed = PackedWeights(list(self.layers))
        self._unembed_cache: tuple[mx.array, mx.array] | None = None  # (source weight, its [d, v] copy)
        self.rope = RopeTables()  # RoPE from cached cos/sin tables (engine.adapters.rope_tables)

    # ---- projections (packed weights where available, else mlx-lm's modules) ---------------
    def qkv(self, layer: int, x: mx.array) -> tuple[mx.array, mx.array, mx.array]:
        """Queries [..., h, e], keys and values [..., g, e] of ``x`` [..., d] (before RoPE)."""
        cfg, rec = self.cfg, self.packed(layer)
        h, g = cfg.n_heads, cfg.n_kv_heads
        if rec is None:
            attn = self.layers[layer].self_attn
            return (attn.q_proj(x).reshape(*x.shape[:-1], h, -1), attn.k_proj(x).reshape(*x.shape[:-1], g, -1),
                    attn.v_proj(x).reshape(*x.shape[:-1], g, -1))
        y = linear(x, rec.qkv, rec.qkv_bias).reshape(*x.shape[:-1], h + 2 * g, -1)  # [..., h + 2g, e]
        return y[..., :h, :], y[..., h : h + g, :], y[..., h + g :, :]

    def attn_proj(self, layer: int, z: mx.array) -> mx.array:
        """o_proj of flattened head outputs [..., h*e] -> [..., d]."""
        rec = self.packed(layer)
        return self.layers[layer].self_attn.o_proj(z) if rec is None else linear(z, rec.o, rec.o_bias)

    def gate_up(self, layer: int, x: mx.array) -> tuple[mx.array, mx.array]:
        """MLP gate and up projections [..., m] of ``x`` [..., d]."""
        rec = self.packed(layer)
        if rec is None:
            mlp = self.layers[layer].mlp
            return mlp.gate_proj(x), mlp.up_proj(x)
        y = linear(x, rec.gate_up, rec.gate_up_bias)
        m = y.shape[-1] // 2
        return y[..., :m], y[..., m:]

    def mlp_down(self, layer: int, post: mx.array) -> mx.array:
        rec = self.packed(layer)
        return self.layers[layer].mlp.down_proj(post) if rec is None else linear(post, rec.down, rec.down_bias)

    def mlp_out(self, layer: int, normed: mx.array) -> mx.array:
        """The MLP's output for its (already normalised) input, no hooks."""
        return self.mlp_down(layer, silu_mul(*self.gate_up(layer, normed)))

    # ---- pieces -------------------------------------------------------------------------
    def embed(self, tokens: mx.array, hs: HookSet) -> mx.array:
        return hs("hook_embed", self.inner.embed_tokens(tokens))  # [b, p, d]

    def _rms(self, x: mx.array, norm: nn.Module, prefix: str, hs: HookSet) -> mx.array:
        if hs.wants_any(prefix + ".hook_scale", prefix + ".hook_normalized"):
            scale = mx.sqrt(mx.mean(x * x, axis=-1, keepdims=True) + norm.eps)  # [b, p, 1]
            scale = hs(prefix + ".hook_scale", scale)
            return hs(prefix + ".hook_normalized", x / scale) * norm.weight  # [b, p, d]
        return mx.fast.rms_norm(x, norm.weight, norm.eps)

    def _attention(
        self, layer: int, x: mx.array, attn: nn.Module, pre: str, hs: HookSet, offset: int, prefix_kv: tuple | None = None
    ) -> mx.array:
        b, p, _ = x.shape
        q, k, v = self.qkv(layer, x)
        q = hs(pre + "attn.hook_q", q)  # [b, p, h, e]
        k = hs(pre + "attn.hook_k", k)  # [b, p, g, e]
        v = hs(pre + "attn.hook_v", v)  # [b, p, g, e]
        q = self.rope(attn.rope, q, offset, heads_last=True).transpose(0, 2, 1, 3)  # [b, h, p, e]
        k = self.rope(attn.rope, k, offset, heads_last=True).transpose(0, 2, 1, 3)  # [b, g, p, e]
        if hs.wants(pre + "attn.hook_rot_q"):
            q = hs(pre + "attn.hook_rot_q", q.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3)
        if hs.wants(pre + "attn.hook_rot_k"):
            k = hs(pre + "attn.hook_rot_k", k.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3)
        v = v.transpose(0, 2, 1, 3)  # [b, g, p, e]
        if prefix_kv is not None:  # cached post-RoPE keys/values of the positions before ``offset``
            k = mx.concatenate([prefix_kv[0], k], axis=2)  # [b, g, offset + p, e]
            v = mx.concatenate([prefix_kv[1], v], axis=2)
        if hs.wants_any(pre + "attn.hook_attn_scores", pre + "attn.hook_pattern"):
            z = self._explicit_attention(q, k, v, attn.scale, pre, hs)
        else:
            z = mx.fast.scaled_dot_product_attention(q, k, v, scale=attn.scale, mask="causal" if p > 1 else None)
        z = hs(pre + "attn.hook_z", z.transpose(0, 2, 1, 3))  # [b, p, h, e]
        if hs.wants(pre + "attn.hook_result"):
            return self._head_results(layer, z, pre, hs)
        return self.attn_proj(layer, z.reshape(b, p, -1))  # [b, p, d]

    def _head_results(self, layer: int, z: mx.array, pre: str, hs: HookSet) -> mx.array:
        """attn_out as TransformerLens' use_attn_result computes it: every head's write [b, p, h, d]
        (hook_result), summed over heads, plus o_proj's bias. Only when hook_result is requested."""
        rec = self.packed(layer)
        w_o = self.head_output_weights(layer) if rec is None else rec.o.reshape(self.cfg.n_heads, self.cfg.d_head, -1)
        result = hs(pre + "attn.hook_result", mx.einsum("bphe,hed->bphd", z, w_o))  # [b, p, h, d]
        out = result.sum(axis=2)  # [b, p, d]
        bias = self.attn_output_bias(layer)
        return out if bias is None else out + bias

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

    def _mlp(self, layer: int, x: mx.array, pre: str, hs: HookSet) -> mx.array:
        if hs.wants_any(pre + "mlp.hook_pre", pre + "mlp.hook_pre_linear", pre + "mlp.hook_post"):
            gate, up = self.gate_up(layer, x)
            gate = hs(pre + "mlp.hook_pre", gate)  # [b, p, m]
            up = hs(pre + "mlp.hook_pre_linear", up)  # [b, p, m]
            post = hs(pre + "mlp.hook_post", nn.silu(gate) * up)  # [b, p, m]
            return self.mlp_down(layer, post)
        gate, up = self.gate_up(layer, x)
        return self.mlp_down(layer, nn.silu(gate) * up)  # MLX's own silu, as mlx-lm (the sweeps use silu_mul)

    def block(
        self, layer: int, resid: mx.array, hs: HookSet, offset: int = 0, prefix_kv: tuple | None = None
    ) -> mx.array:
        """One transformer block. With ``prefix_kv`` = (keys, values) [b, g, offset, e] (post-RoPE, from a
        cached run), ``resid`` holds only the suffix positions offset.. and attends to prefix + suffix."""
        blk = self.layers[layer]
        pre = f"blocks.{layer}."
        resid = hs(pre + "hook_resid_pre", resid)  # [b, p, d]
        normed = self._rms(resid, blk.input_layernorm, pre + "ln1", hs)
        attn_out = self._attention(layer, normed, blk.self_attn, pre, hs, offset, prefix_kv)
        resid = hs(pre + "hook_resid_mid", resid + hs(pre + "hook_attn_out", attn_out))
        mlp_in = hs(pre + "hook_mlp_in", resid)  # [b, p, d]: what the MLP reads; the residual keeps resid
        mlp_out = self._mlp(layer, self._rms(mlp_in, blk.post_attention_layernorm, pre + "ln2", hs), pre, hs)
        return hs(pre + "hook_resid_post", resid + hs(pre + "hook_mlp_out", mlp_out))

    def final_norm(self, resid: mx.array, hs: HookSet) -> mx.array:
        return self._rms(resid, self.inner.norm, "ln_final", hs)

    def unembed(self, normed: mx.array) -> mx.array:
        w_u = self._packed_unembed()
        if w_u is not None:
            return normed @ w_u  # [b, p, v]
        if self.tied:
            return self.inner.embed_tokens.as_linear(normed)  # [b, p, v]
        return self.model.lm_head(normed)

    def _packed_unembed(self) -> mx.array | None:
        """W_U as a contiguous [d, v] copy (an NN sgemm: ~40% less time than the [v, d] layout here), kept
        while the source weight is the same array; None for quantised or biased unembeddings."""
        if not self.packed.enabled:
            return None
        src = self.inner.embed_tokens if self.tied else self.model.lm_head
        if type(src) not in (nn.Embedding, nn.Linear) or getattr(src, "bias", None) is not None:
            return None
        cached = self._unembed_cache
        if cached is None or cached[0] is not src.weight:
            cached = self._unembed_cache = (src.weight, mx.contiguous(src.weight.T))
            mx.eval(cached[1])
        return cached[1]

    def unembed_matrix(self) -> mx.array:
        """W_U as [d, v] (TransformerLens orientation)."""
        w = self.inner.embed_tokens.weight if self.tied else self.model.lm_head.weight
        return w.T

    def final_norm_weight(self) -> mx.array:
        return self.inner.norm.weight

    # ---- primitives for methods that recompute only part of a forward ----------------------
    def unembed_rows(self, ids: mx.array) -> mx.array:
        """W_U[:, ids].T as [k, d]: a few tokens' unembedding directions without the full unembed."""
        if self.tied:
            return self.inner.embed_tokens(ids)  # tied: the embedding rows (dequantised if quantised)
        return _dense_weight(self.model.lm_head)[ids]

    def head_output_weights(self, layer: int) -> mx.array:
        """W_O per head as [h, e, d]: head h writes z[..., h, :] @ W_O[h] into the residual stream."""
        w = _dense_weight(self.layers[layer].self_attn.o_proj)  # [d, h*e]
        return w.T.reshape(self.cfg.n_heads, self.cfg.d_head, -1)

    def attn_output_bias(self, layer: int) -> mx.array | None:
        """o_proj's bias [d] (the part of attn_out no head owns), or None."""
        return getattr(self.layers[layer].self_attn.o_proj, "bias", None)

    def ragged_block(self, layer: int, x: mx.array, segments: list, last_only: bool = False, mids: list = ()) -> mx.array:
        """block() without hooks over many patched rows whose suffixes differ in length, packed as [t, d].

        ``segments``: (rows, positions, offset, prefix_kv) in packing order; a segment holds ``rows`` rows of
        ``positions`` consecutive positions starting at absolute position ``offset``, attending to
        ``prefix_kv`` = (keys, values) [rows, g, offset, e] (post-RoPE, from a cached run) or None.
        Position-wise work (norms, projections, MLP) runs on all rows at once; attention per segment.
        With ``last_only`` only each row's last position is returned ([sum rows, d]), the rest still
        providing keys and values: all the final layer needs when a metric reads the last position.
        ``mids``: (resid_mid [r, positions, d], positions) of rows joining after the attention (a patch
        to attn_out or a head's output), appended after the packed rows for the MLP (last positions
        only with ``last_only``).
        The MLP uses ``silu_mul`` (MLX's CPU exp is slow enough that SiLU costs as much as a matmul).
        """
        blk = self.layers[layer]
        if x.shape[0]:
            x = self._ragged_attention(layer, x, segments, last_only)
        if mids:
            joined = [m[:, -1] if last_only else m.reshape(-1, m.shape[-1]) for m, _ in mids]
            x = mx.concatenate([x, *joined], axis=0)
        ln2 = blk.post_attention_layernorm
        return x + self.mlp_out(layer, mx.fast.rms_norm(x, ln2.weight, ln2.eps))

    def _ragged_attention(self, layer: int, x: mx.array, segments: list, last_only: bool) -> mx.array:
        """resid_mid of ragged_block's packed rows ([t, d], or [rows, d] with ``last_only``)."""
        blk, attn = self.layers[layer], self.layers[layer].self_attn
        normed = mx.fast.rms_norm(x, blk.input_layernorm.weight, blk.input_layernorm.eps)  # [t, d]
        queries, keys, values = self.qkv(layer, normed)  # [t, h, e], [t, g, e], [t, g, e]
        if last_only:
            ends = np.cumsum([r * p for r, p, _, _ in segments])
            last = mx.array(np.concatenate([np.arange(r) * p + p - 1 + (e - r * p) for (r, p, _, _), e in zip(segments, ends)]))
            x, queries = x[last], queries[last]  # [rows, d], [rows, h, e]
        out, at, aq = [], 0, 0
        for rows, pos, offset, prefix_kv in segments:
            pq = 1 if last_only else pos
            k = keys[at : at + rows * pos].reshape(rows, pos, *keys.shape[1:])  # [r, p, g, e]
            k = self.rope(attn.rope, k, offset, heads_last=True).transpose(0, 2, 1, 3)  # [r, g, p, e]
            v = values[at : at + rows * pos].reshape(rows, pos, *values.shape[1:]).transpose(0, 2, 1, 3)
            if prefix_kv is not None:
                k = mx.concatenate([prefix_kv[0], k], axis=2)  # [r, g, offset + p, e]
                v = mx.concatenate([prefix_kv[1], v], axis=2)
            q = queries[aq : aq + rows * pq].reshape(rows, pq, *queries.shape[1:])  # [r, pq, h, e]
            q = self.rope(attn.rope, q, offset + pos - pq, heads_last=True).transpose(0, 2, 1, 3)  # [r, h, pq, e]
            z = mx.fast.scaled_dot_product_attention(q, k, v, scale=attn.scale, mask="causal" if pq > 1 else None)
            out.append(z.transpose(0, 2, 1, 3).reshape(rows * pq, -1))  # [r*pq, h*e]
            at, aq = at + rows * pos, aq + rows * pq
        return x + self.attn_proj(layer, out[0] if len(out) == 1 else mx.concatenate(out, axis=0))

    def head_z(self, layer: int, head: int, x_q: mx.array, x_k: mx.array, x_v: mx.array) -> mx.array:
        """One head's z [b, p, e] with its query, key and value read from different residual streams
        [b, p, d] (each through ln1): what path patching needs to change one input of one head."""
        blk, cfg = self.layers[layer], self.cfg
        attn, ln1 = blk.self_attn, blk.input_layernorm
        e, kv = cfg.d_head, head // self._n_rep  # grouped-query: query head h reads kv head h // n_rep

        def proj(x: mx.array, linear: nn.Module, index: int) -> mx.array:  # [b, p, d] -> [b, 1, p, e]
            out = linear(mx.fast.rms_norm(x, ln1.weight, ln1.eps))
            return out[..., index * e : (index + 1) * e][:, None]

        q = attn.rope(proj(x_q, attn.q_proj, head), offset=0)
        k = attn.rope(proj(x_k, attn.k_proj, kv), offset=0)
        v = proj(x_v, attn.v_proj, kv)
        z = mx.fast.scaled_dot_product_attention(q, k, v, scale=attn.scale, mask="causal" if q.shape[2] > 1 else None)
        return z[:, 0]  # [b, p, e]

    def mlp_residual(self, layer: int, resid_mid: mx.array) -> mx.array:
        """resid_post of ``layer`` from its resid_mid [..., d]: resid_mid + mlp(ln2(resid_mid)), no hooks."""
        ln2 = self.layers[layer].post_attention_layernorm
        return resid_mid + self.mlp_out(layer, mx.fast.rms_norm(resid_mid, ln2.weight, ln2.eps))

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
        normed = hs("unembed.hook_in", self.final_norm(x, hs))  # [b, p, d]: ln_final's output, weight applied
        return hs("unembed.hook_out", self.unembed(normed))  # [b, p, d_vocab]: the logits


def _dense_weight(linear: nn.Module) -> mx.array:
    """A Linear's weight [out, in] in float, dequantised if the layer is quantised."""
    if isinstance(linear, nn.QuantizedLinear):
        return mx.dequantize(
            linear.weight, linear.scales, getattr(linear, "biases", None), linear.group_size, linear.bits,
            mode=getattr(linear, "mode", "affine"),
        ).astype(mx.float32)
    return linear.weight


def _tanh(x: mx.array) -> mx.array:
    """tanh as a clamped 13/6 rational polynomial (Eigen's float tanh): mul/add/div only, so it fuses."""
    x = mx.clip(x, -7.90531110763549805, 7.90531110763549805)
    x2 = x * x
    p = x2 * -2.76076847742355e-16 + 2.00018790482477e-13
    for c in (-8.60467152213735e-11, 5.12229709037114e-08, 1.48572235717979e-05, 6.37261928875436e-04, 4.89352455891786e-03):
        p = x2 * p + c
    q = x2 * 1.19825839466702e-06 + 1.18534705686654e-04
    q = x2 * q + 2.26843463243900e-03
    q = x2 * q + 4.89352518554385e-03
    return x * p / q


@mx.compile
def _silu_mul_f32(gate: mx.array, up: mx.array) -> mx.array:
    half = 0.5 * gate
    return half * (1 + _tanh(half)) * up  # silu(g) = g * sigmoid(g) = (g / 2) * (1 + tanh(g / 2))


def silu_mul(gate: mx.array, up: mx.array) -> mx.array:
    """silu(gate) * up: one fused kernel on the CPU (float32, abs error < 3e-6), MLX's own ops on the GPU."""
    if mx.default_device() == mx.gpu:
        return nn.silu(gate) * up
    dtype = gate.dtype
    return _silu_mul_f32(gate.astype(mx.float32), up.astype(mx.float32)).astype(dtype)
