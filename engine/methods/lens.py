"""Logit lens: read the residual stream after every layer through the final norm and the unembedding.

Each layer's residual gets the final RMS norm with its own scale (as if the model stopped there), then
the metric: logit[correct] - logit[wrong] when both answers are given, else the log-probability of
``correct`` (default: the model's own top-1 answer at the last position). Rows: 'embed' (the
residual before layer 0) and L0..L{n-1} (after each layer; the last row is the model's output).
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np

from engine.errors import MethodError
from engine.hookset import EMPTY
from engine.methods.dla import group_by_length
from engine.methods.pairs import IdsLike, TokensLike, as_ids, as_token_rows
from engine.methods.results import LogitLensResult, nested


def logit_lens(
    model, tokens: TokensLike, correct_ids: IdsLike | None = None, wrong_ids: IdsLike | None = None,
    *, top_tokens: str = "last",
) -> LogitLensResult:
    """Metric per layer x position (mean over prompts of equal length), and the first prompt's top-1
    token per layer at the last position (top_tokens='last'), at every position ('all': a full
    unembed per layer and position), or nowhere (None)."""
    rows = as_token_rows(model, tokens, "prompt")
    lengths = {len(r) for r in rows}
    if len(lengths) != 1 or 0 in lengths:
        raise MethodError(f"logit_lens needs prompts of one (non-zero) token length to share a position axis; got {sorted(lengths)}")
    n, cfg, adapter = len(rows), model.cfg, model.adapter
    L_ = cfg.n_layers
    toks = mx.array(rows, dtype=mx.int32)  # [n, P]
    names = ["blocks.0.hook_resid_pre"] + [f"blocks.{l}.hook_resid_post" for l in range(L_)]
    logits, cache = model.run_with_cache(toks, names=names, logit_positions=[-1])
    if correct_ids is None:
        correct = [int(i) for i in np.asarray(mx.argmax(logits[:, -1], axis=-1))]
    else:
        correct = as_ids(model, correct_ids, n, "correct_ids")
    stack = mx.stack([cache[name] for name in names])  # [L+1, n, P, d]
    normed = adapter.final_norm(stack, EMPTY)  # each residual with its own norm scale
    u_c = adapter.unembed_rows(mx.array(correct))  # [n, d]
    if wrong_ids is not None:
        u_w = adapter.unembed_rows(mx.array(as_ids(model, wrong_ids, n, "wrong_ids")))
        values = mx.einsum("lnpd,nd->lnp", normed, u_c - u_w)  # [L+1, n, P]
        metric = "logit_diff"
    else:
        full = adapter.unembed(normed)  # [L+1, n, P, v]
        values = mx.take_along_axis(full, mx.array(correct)[None, :, None, None], -1)[..., 0] - mx.logsumexp(full, axis=-1)
        metric = "logprob_correct"
    if top_tokens not in ("last", "all", None):
        raise MethodError(f"top_tokens must be 'last', 'all' or None, not {top_tokens!r}")
    P = toks.shape[1]
    top_positions = [] if top_tokens is None else ([P - 1] if top_tokens == "last" else list(range(P)))
    top = np.zeros((L_ + 1, 0), dtype=np.int64)
    if top_positions:
        first = adapter.unembed(normed[:, 0, mx.array(top_positions)])  # [L+1, p, v] of the first prompt
        top = np.asarray(mx.argmax(first, axis=-1))  # [L+1, p]
    tok = model.tokenizer
    str_tokens = [tok.id_to_str(t) for t in rows[0]]
    return LogitLensResult(
        method="logit_lens", metric=metric, axes=["layer", "position"],
        labels=[["embed"] + [f"L{l}" for l in range(L_)], [f"{p}:{t!r}" for p, t in enumerate(str_tokens)]],
        values=nested(np.asarray(values).mean(axis=1)),
        top_tokens=[[tok.id_to_str(int(t)) for t in row] for row in top], top_token_positions=top_positions, n_pairs=n,
    )
