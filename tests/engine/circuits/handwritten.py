"""A deliberately naive per-head forward of a Llama-family model, written independently of
engine.circuits.forward, with one receiver's input optionally shifted: the reference the edge-patched
forward is checked against. Loops over heads, explicit softmax attention, weights sliced from the
mlx-lm modules directly."""

from __future__ import annotations

import mlx.core as mx


def _rms(x: mx.array, norm) -> mx.array:
    return x / mx.sqrt(mx.mean(x * x, axis=-1, keepdims=True) + norm.eps) * norm.weight


def handwritten_forward(model, tokens: mx.array, shift: tuple[str, mx.array] | None = None):
    """(last-position logits [b, v], {sender name: output [b, p, d]}).

    ``shift = (receiver name, delta)`` subtracts ``delta`` [b, p, d] from that receiver's input only.
    """
    cfg = model.cfg
    H, G, e = cfg.n_heads, cfg.n_kv_heads, cfg.d_head
    rep = H // G
    inner = model.model.model

    def read(name: str, resid: mx.array) -> mx.array:
        return resid - shift[1] if shift is not None and shift[0] == name else resid

    x = inner.embed_tokens(tokens)  # [b, p, d]
    outs = {"input": x}
    p = x.shape[1]
    causal = mx.arange(p)[None, :] <= mx.arange(p)[:, None]  # [p_q, p_k]
    for layer, blk in enumerate(inner.layers):
        attn = blk.self_attn
        wq, wk, wv, wo = attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight, attn.o_proj.weight
        total = mx.zeros_like(x)
        for h in range(H):
            g = h // rep
            xq = _rms(read(f"a{layer}.h{h}<q>", x), blk.input_layernorm)
            xk = _rms(read(f"a{layer}.kv{g}<k>", x), blk.input_layernorm)
            xv = _rms(read(f"a{layer}.kv{g}<v>", x), blk.input_layernorm)
            q = attn.rope((xq @ wq[h * e : (h + 1) * e].T)[:, None])[:, 0]  # [b, p, e]
            k = attn.rope((xk @ wk[g * e : (g + 1) * e].T)[:, None])[:, 0]
            v = xv @ wv[g * e : (g + 1) * e].T
            scores = (q @ k.transpose(0, 2, 1)) * attn.scale  # [b, p_q, p_k]
            scores = mx.where(causal, scores, -mx.inf)
            z = mx.softmax(scores, axis=-1) @ v  # [b, p, e]
            out = z @ wo[:, h * e : (h + 1) * e].T  # [b, p, d]
            outs[f"a{layer}.h{h}"] = out
            total = total + out
        x = x + total
        mlp_out = blk.mlp(_rms(read(f"m{layer}", x), blk.post_attention_layernorm))
        outs[f"m{layer}"] = mlp_out
        x = x + mlp_out
        mx.eval(x, *outs.values())  # keep the lazy graph per layer (270 heads on the embedded model)
    final = _rms(read("logits", x), inner.norm)[:, -1]
    return inner.embed_tokens.as_linear(final), outs
