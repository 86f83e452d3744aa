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
Shapes: K circuits, N prompts, b = K*N rows, S senders, R receivers, p positions, d d_model,
h query heads, g kv heads, e d_head, v vocab; stacks are [rows, S, p, d] (sender axis before positions).
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
        return mx.dequantize(linear.weight, linear.scales, linear.get("biases"), linear.group_size, linear.bits)
    return linear.weight


def _bias(linear: nn.Module) -> mx.array | None:
    return linear["bias"] if "bias" in linear else None


@dataclass(frozen=True)
class _Layer:
    wq: mx.array  # [h, d, e]
    wk: mx.array  # [g, d, e]
    wv: mx.array  # [g, d, e]
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

            def per_head(w: mx.array, n: int) -> mx.array:
                return w.reshape(n, e, d).transpose(0, 2, 1)  # [n, d, e]

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
        return self.adapter.inner.embed_tokens(tokens)  # [b, p, d]

    def heads(self, layer: int, x: mx.array) -> mx.array:
        """Per-head outputs [b, h, p, d] from split inputs x [b, h+2g, p, d] (or one shared [b, 1, p, d])."""
        lw, h, g = self.layers[layer], self.h, self.g
        xn = mx.fast.rms_norm(x, lw.ln1.weight, lw.ln1.eps)  # [b, r, p, d]
        shared = xn.shape[1] == 1
        q = (xn if shared else xn[:, :h]) @ lw.wq  # [b, h, p, e]
        k = (xn if shared else xn[:, h : h + g]) @ lw.wk  # [b, g, p, e]
        v = (xn if shared else xn[:, h + g :]) @ lw.wv  # [b, g, p, e]
        if lw.bq is not None:
            q, k, v = q + lw.bq, k + lw.bk, v + lw.bv
        q, k = lw.attn.rope(q), lw.attn.rope(k)
        p = x.shape[2]
        z = mx.fast.scaled_dot_product_attention(q, k, v, scale=lw.attn.scale, mask="causal" if p > 1 else None)
        return z @ lw.wo  # [b, h, p, d]

    def mlp(self, layer: int, x: mx.array) -> mx.array:
        lw = self.layers[layer]
        return lw.mlp(mx.fast.rms_norm(x, lw.ln2.weight, lw.ln2.eps))  # [..., p, d]

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
    """(stack [b, S, p, d] of every sender's output, logits [b, v] at ``position``) of the plain run."""
    resid = embeds  # [b, p, d]
    outs = [embeds[:, None]]
    for layer in range(len(sm.layers)):
        heads = sm.heads(layer, resid[:, None])  # [b, h, p, d]
        resid = resid + heads.sum(axis=1)
        mlp = sm.mlp(layer, resid)  # [b, p, d]
        resid = resid + mlp
        outs.extend([heads, mlp[:, None]])
        mx.eval(resid, heads, mlp)  # bounds the lazy graph's memory on long models
    return mx.concatenate(outs, axis=1), sm.logits(resid[:, position])


def probe_shapes(sm: SplitModel, rows: int, pos: int) -> list[tuple[int, ...]]:
    """Shapes of the probes ``probe_logits`` takes: per layer [b, h+2g, p, d] and [b, p, d]; then [b, d]."""
    shapes: list[tuple[int, ...]] = []
    for _ in sm.layers:
        shapes.extend([(rows, sm.graph.attn_receivers, pos, sm.d), (rows, pos, sm.d)])
    shapes.append((rows, sm.d))
    return shapes


def probe_logits(sm: SplitModel, embeds: mx.array, probes: list[mx.array], position: int = -1) -> mx.array:
    """Logits [b, v] of the unpatched run with ``probes`` added to each receiver's input.

    With zero probes this is the plain forward; d(metric)/d(probe) is EAP's gradient at each input.
    """
    resid = embeds  # [b, p, d]
    for layer in range(len(sm.layers)):
        heads = sm.heads(layer, resid[:, None] + probes[2 * layer])  # [b, h, p, d]
        resid = resid + heads.sum(axis=1)
        resid = resid + sm.mlp(layer, resid + probes[2 * layer + 1])
    return sm.logits(resid[:, position] + probes[-1])


# ---- patched runs ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Ablated:
    """Sender outputs of the ablated run (corrupted prompts, or a mean) and its residual sums.

    ``stack`` is [n, S, p, d] with n = N prompts (counterfactual) or 1 (mean, broadcast over prompts).
    """

    stack: mx.array  # [n, S, p, d]
    pre: list[mx.array]  # per layer [n, p, d]: residual before the layer's attention
    mid: list[mx.array]  # per layer [n, p, d]: residual before the layer's MLP
    final: mx.array  # [n, p, d]

    @classmethod
    def from_stack(cls, graph: CircuitGraph, stack: mx.array) -> "Ablated":
        cum = mx.cumsum(stack, axis=1)  # [n, S, p, d]
        pre = [cum[:, graph.attn_up(layer) - 1] for layer in range(graph.n_layers)]
        mid = [cum[:, graph.mlp_up(layer) - 1] for layer in range(graph.n_layers)]
        out = cls(stack, pre, mid, cum[:, -1])
        mx.eval(out.pre, out.mid, out.final)
        return out


def patched_logits(
    sm: SplitModel,
    masks: mx.array,
    clean_embeds: mx.array,
    ablated: Ablated,
    *,
    position: int = -1,
    start_layer: int = 0,
    prefix: list[mx.array] | None = None,
) -> mx.array:
    """Logits [K, N, v] at ``position`` of K circuits on N prompts; ``masks`` [K, S, R] (1 = edge kept).

    ``prefix`` (chunks [K or 1, N, c, p*d] of sender differences for layers < ``start_layer``) lets a
    caller that knows those layers are unpatched skip recomputing them (ACDC does).
    """
    graph = sm.graph
    K = masks.shape[0]
    N, p, d = clean_embeds.shape
    pd = p * d
    h = sm.h
    C = ablated.stack.reshape(ablated.stack.shape[0], graph.n_senders, pd)  # [n, S, pd]
    if prefix is None:
        start_layer = 0
        d_in = (clean_embeds.reshape(N, 1, pd) - C[:, :1])[None]  # [1, N, 1, pd]
        chunks = [mx.broadcast_to(d_in, (K, N, 1, pd))]
    else:
        chunks = [mx.broadcast_to(c, (K, *c.shape[1:])) for c in prefix]
    P = graph.per_layer_receivers
    for layer in range(start_layer, graph.n_layers):
        stack = mx.concatenate(chunks, axis=2) if len(chunks) > 1 else chunks[0]  # [K, N, n_up, pd]
        n_up = stack.shape[2]
        base = graph.attn_receiver_base(layer)
        mt = masks[:, :n_up, base : base + P].transpose(0, 2, 1)[:, None]  # [K, 1, r+1, n_up]
        mixed = mt @ stack  # [K, N, r+1, pd]
        x = ablated.pre[layer].reshape(-1, 1, pd)[None] + mixed[:, :, : P - 1]  # [K, N, r, pd]
        heads = sm.heads(layer, x.reshape(K * N, P - 1, p, d)).reshape(K, N, h, pd)
        first = graph.head_sender(layer, 0)
        d_heads = heads - C[None, :, first : first + h]  # [K, N, h, pd]
        m_heads = masks[:, first : first + h, base + P - 1][:, None, None]  # [K, 1, 1, h]
        x_mlp = ablated.mid[layer].reshape(-1, pd)[None] + mixed[:, :, P - 1] + (m_heads @ d_heads)[:, :, 0]
        mlp = sm.mlp(layer, x_mlp.reshape(K * N, p, d)).reshape(K, N, 1, pd)
        d_mlp = mlp - C[None, :, first + h : first + h + 1]  # [K, N, 1, pd]
        chunks.append(mx.concatenate([d_heads, d_mlp], axis=2))
        mx.eval(chunks[-1])
    last = [c.reshape(*c.shape[:3], p, d)[:, :, :, position] for c in chunks]  # [K, N, c, d]
    stack_last = mx.concatenate(last, axis=2)  # [K, N, S, d]
    m_logits = masks[:, :, graph.logits_receiver][:, None, None]  # [K, 1, 1, S]
    x_final = ablated.final[:, position][None] + (m_logits @ stack_last)[:, :, 0]  # [K, N, d]
    return sm.logits(x_final)


def clean_prefix(sm: SplitModel, clean_stack: mx.array, ablated: Ablated, start_layer: int) -> list[mx.array]:
    """Sender-difference chunks [1, N, c, p*d] of the unpatched run for layers < ``start_layer``."""
    graph = sm.graph
    N = clean_stack.shape[0]
    diff = (clean_stack - ablated.stack).reshape(N, graph.n_senders, -1)[None]  # [1, N, S, pd]
    chunks = [diff[:, :, :1]]
    for layer in range(start_layer):
        first = graph.head_sender(layer, 0)
        chunks.append(diff[:, :, first : first + sm.h + 1])
    return chunks


# ---- the runs every method starts from ---------------------------------------------------------
@dataclass(frozen=True)
class Runs:
    """Clean embeddings and sender outputs, and the ablated run, for one task."""

    clean_embeds: mx.array  # [N, p, d]
    clean_stack: mx.array  # [N, S, p, d]
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
    return mx.concatenate(stacks, axis=0), mx.concatenate(logits, axis=0)


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
        stack = stack.mean(axis=0, keepdims=True)  # [1, S, p, d]: the mean sender output per position
    mx.eval(stack)
    return Runs(clean_embeds, clean_stack, clean_logits, Ablated.from_stack(sm.graph, stack),
                task.n + int(source.shape[0]))
