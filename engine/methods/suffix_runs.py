"""Patched runs that recompute only what a patch changes.

A patch at layer L, position p leaves every layer before L and every position before p exactly as in
the base run (causal attention). So the base run is computed once, keeping each layer's resid_pre
and post-RoPE keys/values; a patched row then enters at layer L with only positions p..P-1, and at
every later layer its suffix attends to the cached base keys/values of positions < p (RoPE offset p).
Rows sharing a start position run as one batch that grows layer by layer: a row joins at its
entry layer. Only the final residual at the last position is kept (metrics read nothing else).
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import numpy as np

from engine.activation_cache import ActivationCache

GIB = 1024**3


@dataclass
class BaseRun:
    """What every patched row of one pair group reuses from its unpatched base run."""

    tokens: mx.array  # [b, P]
    resid: mx.array  # [n_layers + 1, b, P, d]: resid_pre of each layer, then the final residual
    keys: list[mx.array]  # n_layers x [b, g, P, e], after RoPE
    values: list[mx.array]  # n_layers x [b, g, P, e]
    cache: ActivationCache  # any extra hooks asked for

    @property
    def last_resid(self) -> mx.array:
        return self.resid[-1][:, -1]  # [b, d]


def cached_forward(model, tokens: mx.array, names: list[str]) -> tuple[mx.array, dict[str, mx.array]]:
    """The final residual [b, P, d] (no unembedding: metrics need only the last position) and the
    activations at ``names``."""
    from engine.hookset import HookSet

    store: dict[str, mx.array] = {}

    def save(act: mx.array, name: str) -> None:
        store[name] = act

    final = model.adapter.forward(tokens, HookSet([(name, save) for name in names]), stop_layer=model.cfg.n_layers)
    return final, store


def capture_base(
    model, tokens: mx.array, extra_names: list[str] = (), source_tokens: mx.array | None = None, source_names: list[str] = ()
) -> tuple[BaseRun, dict[str, mx.array]]:
    """One hooked forward of the base prompts [b, P], caching residuals, K/V and ``extra_names``; the
    source prompts ride in the same batch when their length matches (their ``source_names`` returned,
    plus their final residual under 'final')."""
    n = model.cfg.n_layers
    resid_names = [f"blocks.{l}.hook_resid_pre" for l in range(n)]
    kv_names = [f"blocks.{l}.attn.hook_{w}" for l in range(n) for w in ("rot_k", "v")]
    names = list(dict.fromkeys([*resid_names, *kv_names, *extra_names]))
    b = tokens.shape[0]
    batched = source_tokens is not None and source_tokens.shape[1] == tokens.shape[1]
    run = mx.concatenate([tokens, source_tokens], axis=0) if batched else tokens
    final, cache = cached_forward(model, run, list(dict.fromkeys([*names, *source_names])))
    if batched:
        source = {name: cache[name][b:] for name in source_names} | {"final": final[b:]}
    elif source_tokens is not None:
        src_final, src_cache = cached_forward(model, source_tokens, list(source_names))
        source = dict(src_cache) | {"final": src_final}
    else:
        source = {}
    resid = mx.stack([cache[name][:b] for name in resid_names] + [final[:b]])  # [n + 1, b, P, d]
    keys = [cache[f"blocks.{l}.attn.hook_rot_k"][:b].transpose(0, 2, 1, 3) for l in range(n)]  # [b, g, P, e]
    values = [cache[f"blocks.{l}.attn.hook_v"][:b].transpose(0, 2, 1, 3) for l in range(n)]
    extra = {name: cache[name][:b] for name in extra_names}
    mx.eval(resid, *keys, *values, extra, source)
    return BaseRun(tokens, resid, keys, values, ActivationCache(extra)), source


@dataclass
class Segment:
    """Patched rows sharing a start position: each enters the stack at its own layer."""

    start: int  # first recomputed position; earlier positions come from the base run's K/V
    pair: np.ndarray  # [r] base row each patched row belongs to
    entry_layer: np.ndarray  # [r], ascending: the first layer the row runs (n_layers = straight to the final norm)
    entry: mx.array  # [r, P - start, d] the row's residual at its entry layer
    mid: bool = False  # rows enter their entry layer after its attention (entry = resid_mid)


def bytes_per_position(cfg, n_pos: int) -> int:
    """Rough float32 working set of one recomputed position through one layer (activations, MLP
    hidden, its share of K/V with the prefix, attention scores), doubled for temporaries."""
    per_pos = 6 * cfg.d_model + 3 * cfg.d_mlp + 2 * cfg.n_heads * cfg.d_head
    kv_and_scores = 4 * cfg.n_kv_heads * cfg.d_head + 2 * cfg.n_heads * n_pos
    return 4 * 2 * (per_pos + kv_and_scores)


def positions_per_chunk(cfg, n_pos: int, memory_budget_gb: float) -> int:
    return max(n_pos, int(memory_budget_gb * GIB // bytes_per_position(cfg, n_pos)))


def run_segments(model, base: BaseRun, segments: list[Segment]) -> list[mx.array]:
    """Final residual at the last position, [r, d] per segment, of rows entering the stack mid-way.

    At every layer the live rows of all segments go through one ragged block (position-wise work
    batched across segments, attention per segment); rows of ``mid`` segments joining at that layer
    enter after the attention and share the block's MLP.
    """
    adapter, n, d = model.adapter, model.cfg.n_layers, model.cfg.d_model
    joined = [np.searchsorted(seg.entry_layer, np.arange(-1, n + 1), side="right") for seg in segments]  # [l + 1]: rows with entry <= l
    pair_idx = [mx.array(seg.pair.astype(np.int32)) for seg in segments]
    xs: list[mx.array | None] = [None] * len(segments)  # [active, P - start, d]
    active = [0] * len(segments)
    finals: list[mx.array | None] = [None] * len(segments)
    last_layer = n - 1
    for layer in range(n):
        live, specs, mids = [], [], []  # mids: (segment, rows joining after attention)
        for j, seg in enumerate(segments):
            ready = int(joined[j][layer]) if seg.mid else int(joined[j][layer + 1])  # rows running the whole block
            if ready > active[j]:
                new = seg.entry[active[j] : ready]
                xs[j] = new if xs[j] is None else mx.concatenate([xs[j], new], axis=0)
                active[j] = ready
            if seg.mid and joined[j][layer + 1] > ready:
                mids.append((j, int(joined[j][layer + 1]) - ready))
            if active[j] == 0:
                continue
            prefix = None
            if seg.start > 0:
                idx = pair_idx[j][: active[j]]
                prefix = (base.keys[layer][idx, :, : seg.start], base.values[layer][idx, :, : seg.start])  # [a, g, start, e]
            live.append(j)
            specs.append((active[j], xs[j].shape[1], seg.start, prefix))
        if not live and not mids:
            continue
        pieces = [xs[j].reshape(-1, d) for j in live]
        packed = (pieces[0] if len(pieces) == 1 else mx.concatenate(pieces, axis=0)) if pieces else mx.zeros((0, d))
        mid_rows = [(segments[j].entry[active[j] : active[j] + r], segments[j].entry.shape[1]) for j, r in mids]
        last = layer == last_layer
        out = adapter.ragged_block(layer, packed, specs, last_only=last, mids=mid_rows)  # [t (+ mid), d] or [rows, d]
        at = 0
        for j, (rows, pos, _, _) in zip(live, specs):
            take = rows if last else rows * pos
            part = out[at : at + take]
            at += take
            if last:
                finals[j] = part
            else:
                xs[j] = part.reshape(rows, pos, d)
        for (j, r), (_, pos) in zip(mids, mid_rows):  # mid joiners follow the rows already running
            take = r if last else r * pos
            part = out[at : at + take]
            at += take
            if last:
                finals[j] = part if finals[j] is None else mx.concatenate([finals[j], part], axis=0)
            else:
                part = part.reshape(r, pos, d)
                xs[j] = part if xs[j] is None else mx.concatenate([xs[j], part], axis=0)
            active[j] += r
    results = []
    for j, seg in enumerate(segments):
        rest = seg.entry[active[j] :, -1]  # rows entering after the last layer
        results.append(rest if finals[j] is None else mx.concatenate([finals[j], rest], axis=0))
    return results
