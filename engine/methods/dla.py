"""Direct logit attribution: how much each component writes the logit difference directly.

The final residual at the last position is a sum of parts (embedding, each layer's attention and MLP
output; attention splits into heads through W_O). With the final RMS norm's scale frozen at its value
on the real run, logit_diff = sum over parts of part . (w_norm * (W_U[:, correct] - W_U[:, wrong])) / scale,
so the parts add up to the model's own logit difference (``residual`` reports how closely).
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np

from engine.errors import MethodError
from engine.hookset import EMPTY
from engine.methods.pairs import IdsLike, TokensLike, as_ids, as_token_rows
from engine.methods.results import DLAResult


def group_by_length(rows: list[list[int]]) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = {}
    for i, row in enumerate(rows):
        groups.setdefault(len(row), []).append(i)
    return groups


def direct_logit_attribution(model, tokens: TokensLike, correct_ids: IdsLike, wrong_ids: IdsLike) -> DLAResult:
    """Per layer attention and MLP, per head, and embedding contributions to logit[correct] - logit[wrong]
    at the last position, averaged over prompts (prompts may differ in length)."""
    rows = as_token_rows(model, tokens, "prompt")
    if not rows or any(len(r) == 0 for r in rows):
        raise MethodError("direct_logit_attribution needs at least one non-empty prompt")
    n, cfg, adapter = len(rows), model.cfg, model.adapter
    correct, wrong = as_ids(model, correct_ids, n, "correct_ids"), as_ids(model, wrong_ids, n, "wrong_ids")
    L_, H = cfg.n_layers, cfg.n_heads
    names = ["hook_embed"] + [f"blocks.{l}.{h}" for l in range(L_) for h in ("hook_attn_out", "hook_mlp_out", "attn.hook_z")]
    final_name = f"blocks.{L_ - 1}.hook_resid_post"
    embed, attn, mlp, bias, total = np.zeros(n), np.zeros((n, L_)), np.zeros((n, L_)), np.zeros((n, L_)), np.zeros(n)
    heads = np.zeros((n, L_, H))
    w_o = [adapter.head_output_weights(l) for l in range(L_)]  # [h, e, d] each
    for idx in group_by_length(rows).values():
        toks = mx.array([rows[i] for i in idx], dtype=mx.int32)
        logits, cache = model.run_with_cache(toks, names=[*names, final_name], logit_positions=[-1])
        final = cache[final_name][:, -1]  # [b, d]
        norm = adapter.inner.norm
        scale = mx.sqrt(mx.mean(final * final, axis=-1, keepdims=True) + norm.eps)  # [b, 1] frozen
        ids_c, ids_w = mx.array([correct[i] for i in idx]), mx.array([wrong[i] for i in idx])
        direction = adapter.final_norm_weight() * (adapter.unembed_rows(ids_c) - adapter.unembed_rows(ids_w)) / scale  # [b, d]

        def along(x: mx.array) -> np.ndarray:  # [b, d] -> [b]
            return np.asarray(mx.sum(x * direction, axis=-1))

        sel = np.asarray(idx)
        embed[sel] = along(cache["hook_embed"][:, -1])
        for l in range(L_):
            a = cache[f"blocks.{l}.hook_attn_out"][:, -1]  # [b, d]
            z = cache[f"blocks.{l}.attn.hook_z"][:, -1]  # [b, h, e]
            attn[sel, l] = along(a)
            mlp[sel, l] = along(cache[f"blocks.{l}.hook_mlp_out"][:, -1])
            per_head = mx.einsum("bhe,hed,bd->bh", z, w_o[l], direction)  # [b, h]
            heads[sel, l] = np.asarray(per_head)
            b_o = adapter.attn_output_bias(l)
            bias[sel, l] = along(mx.broadcast_to(b_o, a.shape)) if b_o is not None else 0.0
        last = logits[:, -1]  # [b, v]
        total[sel] = np.asarray(mx.take_along_axis(last, ids_c[:, None], -1)[:, 0] - mx.take_along_axis(last, ids_w[:, None], -1)[:, 0])
    parts = embed + attn.sum(1) + mlp.sum(1)  # per prompt
    return DLAResult(
        method="direct_logit_attribution",
        embed=float(embed.mean()), attn=attn.mean(0).tolist(), mlp=mlp.mean(0).tolist(), heads=heads.mean(0).tolist(),
        attn_bias=bias.mean(0).tolist(), total=float(total.mean()), sum_of_parts=float(parts.mean()),
        residual=float(total.mean() - parts.mean()), per_pair_total=total.tolist(), n_pairs=n,
    )
