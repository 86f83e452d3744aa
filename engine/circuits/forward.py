"""Split-input forwards over the adapter's own weights: every receiver (a head's q, a kv head's k or v,
an MLP, the logits) gets its own residual sum and its own RMSNorm, so single edges can be patched.

Three forwards share the same per-component code:
- ``sender_outputs``: the unpatched run, returning every sender's output (what an edge carries);
- ``probe_logits``: the unpatched run with a zero "probe" added to each receiver input, so that
  the gradient with respect to the probe is the gradient with respect to that receiver's input
  (EAP's backward);
- ``patched_logits``: K circuits at once, each row of the batch a (circuit, prompt) pair. A receiver's
  input is ``ablated_sum + sum_u mask[u, v] * (out_u - ablated_u)`` where ``ablated_sum`` is the
  residual of the ablated (corrupted or mean) run: edges in the circuit carry the current run's
  value, every other edge its ablated value. One batched matmul per layer mixes the sender stack
  with the circuits' masks.
Shapes: K circuits, N prompts, S senders, R receivers, p positions, d d_model, M = N*p*d, h query
heads, g kv heads, e d_head, v vocab. Stacks put senders before prompts ([S, N, p, d], [K, S, M]) so
that per-head projections and the mask mixing are a few large GEMMs.
"""

from __future__ import annotations

from dataclasses import dataclass
from weakref import WeakKeyDictionary

import mlx.core as mx
import mlx.nn as nn

from engine.circuits.graph import CircuitGraph
from engine.errors import UnsupportedArchitectureError
from engine.hookset import EMPTY


def _dense(linear: nn.Module) -> mx.array:
    """A Linear's weight as float [out, in], dequantising a QuantizedLinear."""
    if hasattr(linear, "scales"):
        mode = {"mode": linear.mode} if hasattr(linear, "mode") else {}
        return mx.dequantize(linear.weight, linear.scales, linear.get("biases"), group_size=linear.group_size,
                             bits=linear.bits, **mode).astype(mx.float32)
    return linear.weight


def _bias(linear: nn.Module) -> mx.array | None:
    return linear["bias"] if "bias" in linear else None


@dataclass(frozen=True)
class _Layer:
    wq: mx.array  # [h, d, e], the input norm's weight folded in (rows scaled by ln1.weight)
    wk: mx.array  # [g, d, e], likewise
    wv: mx.array  # [g, d, e], likewise
    wo: mx.array  # [h, e, d]
    bq: mx.array | None  # [h, 1, e]
    bk: mx.array | None  # [g, 1, e]
    bv: mx.array | None  # [g, 1, e]
    ln1: nn.Module
    ln2: nn.Module
    attn: nn.Module
    mlp: nn.Module


class SplitModel:
    """A HookedModel's weights arranged per head for split-input forwards (built once per model)."""

    def __init__(self, model) -> None:
        cfg = model.cfg
        self.model = model
        self.adapter = model.adapter
        self.graph = CircuitGraph.from_config(cfg)
        self.h, self.g, self.e, self.d = cfg.n_heads, cfg.n_kv_heads, cfg.d_head, cfg.d_model
        self.layers: list[_Layer] = []
        for i, blk in enumerate(self.adapter.layers):
            attn = blk.self_attn
            if _bias(attn.o_proj) is not None:
                raise UnsupportedArchitectureError(
                    f"layer {i}: o_proj has a bias, which belongs to no single head; edge-level circuits "
                    "support Llama-family models without an output-projection bias"
                )
            h, g, e, d = self.h, self.g, self.e, self.d

            def per_head(w: mx.array, n: int) -> mx.array:  # rms(x) * ln1.weight @ W = (x @ (ln1.weight * W)) / rms
                return blk.input_layernorm.weight[None, :, None] * w.reshape(n, e, d).transpose(0, 2, 1)  # [n, d, e]

            def head_bias(lin: nn.Module, n: int) -> mx.array | None:
                b = _bias(lin)
                return None if b is None else b.reshape(n, 1, e)

            self.layers.append(
                _Layer(
                    wq=per_head(_dense(attn.q_proj), h),
                    wk=per_head(_dense(attn.k_proj), g),
                    wv=per_head(_dense(attn.v_proj), g),
                    wo=_dense(attn.o_proj).reshape(d, h, e).transpose(1, 2, 0),  # [h, e, d]
                    bq=head_bias(attn.q_proj, h),
                    bk=head_bias(attn.k_proj, g),
                    bv=head_bias(attn.v_proj, g),
                    ln1=blk.input_layernorm,
                    ln2=blk.post_attention_layernorm,
                    attn=attn,
                    mlp=blk.mlp,
                )
            )
        mx.eval([(l.wq, l.wk, l.wv, l.wo) for l in self.layers])

    # ---- components ------------------------------------------------------------------------
    def embed(self, tokens: mx.array) -> mx.array:
        return self.adapter.inner.embed_tokens(tokens)  # [N, p, d]

    def heads(self, layer: int, x: mx.array, n: int, p: int) -> mx.array:
        """Per-head outputs [B, h, n*p, d] from split inputs x [B, h+2g, n*p, d] (or one shared [B, 1, n*p, d]).

        Heads and inputs come first so every per-head GEMM has n*p rows (per-row GEMMs of p rows were
        4-6x slower); a shared input uses the model's own dense projections.
        """
        lw, h, g, e = self.layers[layer], self.h, self.g, self.e
        B = x.shape[0]
        if x.shape[1] == 1:
            flat = mx.fast.rms_norm(x[:, 0], lw.ln1.weight, lw.ln1.eps)  # [B, M, d]

            def split(t: mx.array, k: int) -> mx.array:  # [B, M, k*e] -> [B*n, k, p, e]
                return t.reshape(B * n, p, k, e).transpose(0, 2, 1, 3)

            q, k, v = split(lw.attn.q_proj(flat), h), split(lw.attn.k_proj(flat), g), split(lw.attn.v_proj(flat), g)
        else:

            def split(t: mx.array, k: int) -> mx.array:  # [B, k, M, e] -> [B*n, k, p, e]
                return t.reshape(B, k, n, p, e).transpose(0, 2, 1, 3, 4).reshape(B * n, k, p, e)

            # the norm's weight is folded into the projections: only the per-row scale is computed here,
            # which halves the cost of normalising h+2g copies of the residual
            inv = mx.rsqrt(mx.mean(mx.square(x), axis=-1, keepdims=True) + lw.ln1.eps)  # [B, r, M, 1]
            q = (x[:, :h] @ lw.wq) * inv[:, :h]  # [B, h, M, e]
            k = (x[:, h : h + g] @ lw.wk) * inv[:, h : h + g]  # [B, g, M, e]
            v = (x[:, h + g :] @ lw.wv) * inv[:, h + g :]
            if lw.bq is not None:
                q, k, v = q + lw.bq, k + lw.bk, v + lw.bv
            q, k, v = split(q, h), split(k, g), split(v, g)
        q, k = lw.attn.rope(q), lw.attn.rope(k)
        z = mx.fast.scaled_dot_product_attention(q, k, v, scale=lw.attn.scale, mask="causal" if p > 1 else None)
        z = z.reshape(B, n, h, p, e).transpose(0, 2, 1, 3, 4).reshape(B, h, n * p, e)
        return z @ lw.wo  # [B, h, M, d]

    def mlp(self, layer: int, x: mx.array) -> mx.array:
        lw = self.layers[layer]
        return lw.mlp(mx.fast.rms_norm(x, lw.ln2.weight, lw.ln2.eps))  # [..., d]

    def logits(self, x: mx.array) -> mx.array:
        """Logits [..., v] from final-norm inputs [..., d]."""
        return self.adapter.unembed(self.adapter.final_norm(x, EMPTY))


_SPLIT_CACHE: "WeakKeyDictionary[object, SplitModel]" = WeakKeyDictionary()


def split_model(model) -> SplitModel:
    """The (cached) SplitModel of a HookedModel."""
    sm = _SPLIT_CACHE.get(model)
    if sm is None:
        sm = SplitModel(model)
        _SPLIT_CACHE[model] = sm
    return sm


# ---- unpatched runs ----------------------------------------------------------------------------
def sender_outputs(sm: SplitModel, embeds: mx.array, position: int = -1) -> tuple[mx.array, mx.array]:
    """(stack [S, N, p, d] of every sender's output, logits [N, v] at ``position``) of the plain run."""
    N, p, d = embeds.shape
    resid = embeds  # [N, p, d]
    outs = [embeds[None]]
    for layer in range(len(sm.layers)):
        heads = sm.heads(layer, resid.reshape(1, 1, N * p, d), N, p)[0].reshape(sm.h, N, p, d)
        resid = resid + heads.sum(axis=0)
        mlp = sm.mlp(layer, resid)  # [N, p, d]
        resid = resid + mlp
        outs.extend([heads, mlp[None]])
        mx.eval(resid, heads, mlp)  # bounds the lazy graph's memory on long models
    return mx.concatenate(outs, axis=0), sm.logits(resid[:, position])


def probe_shapes(sm: SplitModel, n: int, p: int) -> list[tuple[int, ...]]:
    """Shapes of the probes ``probe_logits`` takes: per layer [h+2g, n*p, d] and [n, p, d]; then [n, d]."""
    shapes: list[tuple[int, ...]] = []
    for _ in sm.layers:
        shapes.extend([(sm.graph.attn_receivers, n * p, sm.d), (n, p, sm.d)])
    shapes.append((n, sm.d))
    return shapes


def probe_logits(sm: SplitModel, embeds: mx.array, probes: list[mx.array], position: int = -1) -> mx.array:
    """Logits [n, v] of the unpatched run with ``probes`` added to each receiver's input.

    With zero probes this is the plain forward; d(metric)/d(probe) is EAP's gradient at each input.
    """
    n, p, d = embeds.shape
    resid = embeds  # [n, p, d]
    for layer in range(len(sm.layers)):
        x = resid.reshape(1, 1, n * p, d) + probes[2 * layer][None]  # [1, r, n*p, d]
        heads = sm.heads(layer, x, n, p)[0]  # [h, n*p, d]
        resid = resid + heads.sum(axis=0).reshape(n, p, d)
        resid = resid + sm.mlp(layer, resid + probes[2 * layer + 1])
    return sm.logits(resid[:, position] + probes[-1])


# ---- patched runs ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Ablated:
    """Sender outputs of the ablated run (corrupted prompts, or a mean) and its residual sums.

    ``stack`` is [S, n, p, d] with n = N prompts (counterfactual) or 1 (mean, broadcast over prompts).
    """

    stack: mx.array  # [S, n, p, d]
    pre: list[mx.array]  # per layer [n, p, d]: residual before the layer's attention
    mid: list[mx.array]  # per layer [n, p, d]: residual before the layer's MLP
    final: mx.array  # [n, p, d]

    @classmethod
    def from_stack(cls, graph: CircuitGraph, stack: mx.array) -> "Ablated":
        cum = mx.cumsum(stack, axis=0)  # [S, n, p, d]
        pre = [cum[graph.attn_up(layer) - 1] for layer in range(graph.n_layers)]
        mid = [cum[graph.mlp_up(layer) - 1] for layer in range(graph.n_layers)]
        out = cls(stack, pre, mid, cum[-1])
        mx.eval(out.pre, out.mid, out.final)
        return out

    def rows(self, x: mx.array, n: int) -> mx.array:
        """[..., n_ablated, p, d] -> [..., n*p*d], broadcasting a mean over the n prompts."""
        shape = (*x.shape[:-3], n, *x.shape[-2:])
        return mx.broadcast_to(x, shape).reshape(*x.shape[:-3], -1)


def patched_logits(
    sm: SplitModel,
    masks: mx.array,
    clean_embeds: mx.array,
    ablated: Ablated,
    *,
    position: int = -1,
    start_layer: int = 0,
    prefix: mx.array | None = None,
) -> mx.array:
    """Logits [K, N, v] at ``position`` of K circuits on N prompts; ``masks`` [K, S, R] (1 = edge kept).

    ``prefix`` ([1, s0, N*p*d] sender differences of the unpatched run for every sender before layer
    ``start_layer``) lets a caller that knows those layers are unpatched skip recomputing them (ACDC).
    """
    graph = sm.graph
    K = masks.shape[0]
    N, p, d = clean_embeds.shape
    M, h = N * p * d, sm.h
    # The sender-difference stack lives in one preallocated buffer updated in place (MLX donates the
    # buffer to the slice update): concatenating a growing stack per layer copied it 30 times. Row 0
    # holds the ablated residual of the current layer with a mask column of ones, so one GEMM per layer
    # gives every receiver's input.
    S = graph.n_senders
    buf = mx.zeros((K, 1 + S, M), dtype=clean_embeds.dtype)  # [K, 1+S, N*p*d]
    if prefix is None:
        start_layer = 0
        buf[:, 1] = clean_embeds.reshape(M) - ablated.rows(ablated.stack[0], N)
    else:
        buf[:, 1 : 1 + prefix.shape[1]] = prefix
    ext = mx.concatenate([mx.ones((K, 1, masks.shape[2]), dtype=masks.dtype), masks], axis=1)  # [K, 1+S, R]
    P = graph.per_layer_receivers
    for layer in range(start_layer, graph.n_layers):
        n_up, base, first = graph.attn_up(layer), graph.attn_receiver_base(layer), graph.head_sender(layer, 0)
        buf[:, 0] = ablated.rows(ablated.pre[layer], N)
        mt = ext[:, : 1 + n_up, base : base + P].transpose(0, 2, 1)  # [K, r+1, 1+n_up]
        mixed = mt @ buf[:, : 1 + n_up]  # [K, r+1, M]: every input of the layer (the MLP's still lacks its heads)
        heads = sm.heads(layer, mixed[:, : P - 1].reshape(K, P - 1, N * p, d), N, p).reshape(K, h, M)
        d_heads = heads - ablated.rows(ablated.stack[first : first + h], N)[None]  # [K, h, M]
        m_heads = masks[:, first : first + h, base + P - 1][:, None]  # [K, 1, h]
        heads_ablated = ablated.rows(ablated.mid[layer] - ablated.pre[layer], N)  # [M]
        x_mlp = mixed[:, P - 1] + heads_ablated + (m_heads @ d_heads)[:, 0]  # [K, M]
        mlp = sm.mlp(layer, x_mlp.reshape(K, N, p, d)).reshape(K, M)
        d_mlp = mlp - ablated.rows(ablated.stack[first + h], N)[None]  # [K, M]
        mx.eval(d_heads, d_mlp)
        buf[:, 1 + first : 1 + first + h] = d_heads
        buf[:, 1 + first + h] = d_mlp
        mx.eval(buf)
    buf = buf[:, 1:]
    last = buf.reshape(K, graph.n_senders, N, p, d)[:, :, :, position].reshape(K, graph.n_senders, N * d)
    m_logits = masks[:, None, :, graph.logits_receiver]  # [K, 1, S]
    x_final = ablated.final[:, position] + (m_logits @ last).reshape(K, N, d)  # [K, N, d]
    return sm.logits(x_final)


def clean_prefix(sm: SplitModel, clean_stack: mx.array, ablated: Ablated, start_layer: int) -> mx.array:
    """[1, s0, N*p*d]: sender differences of the unpatched run for the senders before ``start_layer``."""
    s0 = sm.graph.attn_up(start_layer)
    N = clean_stack.shape[1]
    return (clean_stack[:s0] - ablated.stack[:s0]).reshape(1, s0, N * clean_stack[0, 0].size)


# ---- the runs every method starts from ---------------------------------------------------------
@dataclass(frozen=True)
class Runs:
    """Clean embeddings and sender outputs, and the ablated run, for one task."""

    clean_embeds: mx.array  # [N, p, d]
    clean_stack: mx.array  # [S, N, p, d]
    clean_logits: mx.array  # [N, v]
    ablated: Ablated
    forwards: int


def _stack_in_chunks(sm: SplitModel, embeds: mx.array, position: int, max_rows: int) -> tuple[mx.array, mx.array]:
    stacks, logits = [], []
    for start in range(0, embeds.shape[0], max_rows):
        s, lg = sender_outputs(sm, embeds[start : start + max_rows], position)
        mx.eval(s, lg)
        stacks.append(s)
        logits.append(lg)
    return mx.concatenate(stacks, axis=1), mx.concatenate(logits, axis=0)


def prepare_runs(sm: SplitModel, task, max_rows: int = 64) -> Runs:
    """Run the clean prompts and the ablation source (corrupted prompts, or the mean over a reference)."""
    clean_embeds = sm.embed(task.clean)
    clean_stack, clean_logits = _stack_in_chunks(sm, clean_embeds, task.position, max_rows)
    if task.ablation == "counterfactual":
        source = task.corrupted
        stack, _ = _stack_in_chunks(sm, sm.embed(source), task.position, max_rows)
    else:
        source = task.reference if task.reference is not None else task.corrupted
        stack, _ = _stack_in_chunks(sm, sm.embed(source), task.position, max_rows)
        stack = stack.mean(axis=1, keepdims=True)  # [S, 1, p, d]: the mean sender output per position
    mx.eval(stack)
    return Runs(clean_embeds, clean_stack, clean_logits, Ablated.from_stack(sm.graph, stack),
                task.n + int(source.shape[0]))
