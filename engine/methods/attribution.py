"""Attribution patching: the first-order (gradient) estimate of every patch in one backward pass.

For a patch copying source activation a_s into the base run at activation a_b, the metric changes by
about (a_s - a_b) . dM/da, with the gradient taken on the base run (mx.value_and_grad through the
hooked forward, adding a zero perturbation at every hook of interest). Same grid, labels and
normalisation as engine.methods.patching.activation_patching.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import mlx.core as mx
import numpy as np

from engine.alignment import Alignment
from engine.hookset import HookSet
from engine.methods.pairs import IdsLike, TokensLike, prepare_pairs
from engine.methods.patch_rows import HOOKS, check_hook
from engine.methods.patching import finish, make_grid
from engine.methods.results import PatchingResult
from engine.methods.scoring import MetricFn, Scorer


def forward_and_gradients(model, base_tokens: mx.array, source_tokens: mx.array | None, names: list[str],
                          scorer: Scorer, pair_index: mx.array):
    """One forward and one backward: the base run's metric [b], its gradient at each hook, and the
    activations at each hook of the base run (and of the source run, batched in when lengths match).

    Returns (scores [b], grads {name: [b, ...]}, base acts {name: [b, ...]}, source acts {name: [b, ...]}
    or None, source final residual at the last position [b, d] or None).
    """
    b, n = base_tokens.shape[0], model.cfg.n_layers
    batched = source_tokens is not None and source_tokens.shape[1] == base_tokens.shape[1]
    tokens = mx.concatenate([base_tokens, source_tokens], axis=0) if batched else base_tokens
    shapes: dict[str, tuple] = {}

    def record(act: mx.array, name: str) -> None:
        shapes[name] = act.shape

    model.adapter.forward(tokens, HookSet([(n_, record) for n_ in names]), stop_layer=n)  # lazy: shapes only
    zeros = {name: mx.zeros(shapes[name]) for name in names}

    def perturbed(eps: dict[str, mx.array]):
        acts: dict[str, mx.array] = {}

        def add(act: mx.array, name: str) -> mx.array:
            acts[name] = act
            return act + eps[name]

        final = model.adapter.forward(tokens, HookSet([(name, add) for name in names]), stop_layer=n)  # [B, P, d]
        scores = scorer(final[:b, -1], pair_index)  # [b]; source rows do not enter the loss
        # rows are independent: d(sum)/d(act of row i) = d(score_i)/d(act of row i)
        return scores.sum(), scores, final[b:, -1], acts

    (_, scores, source_last, acts), grads = mx.value_and_grad(perturbed)(zeros)
    grads = {name: g[:b] for name, g in grads.items()}
    base_acts = {name: a[:b] for name, a in acts.items()}
    source_acts = {name: a[b:] for name, a in acts.items()} if batched else None
    mx.eval(scores, grads, base_acts, source_acts or {}, source_last)
    return scores, grads, base_acts, source_acts, (source_last if batched else None)


def attribution_patching(
    model,
    clean_tokens: TokensLike,
    corrupted_tokens: TokensLike,
    correct_ids: IdsLike,
    wrong_ids: IdsLike,
    *,
    hook: str = "resid_pre",
    direction: str = "denoise",
    metric: str | MetricFn = "logit_diff",
    layers: Sequence[int] | None = None,
    positions: Sequence[int | str] | None = None,
    heads: Sequence[int] | None = None,
    per_position: bool | None = None,
    alignment: Alignment | None = None,
    normalise_per_pair: bool = False,
) -> PatchingResult:
    """Linear estimate of activation_patching(...) with the same arguments: one forward and one backward
    on the base run, one forward on the source run. Values: 0 = corrupted, 1 = clean (estimated)."""
    t0 = time.perf_counter()
    check_hook(hook)
    pairs = prepare_pairs(model, clean_tokens, corrupted_tokens, correct_ids, wrong_ids, alignment)
    grid = make_grid(model, pairs, hook, layers, positions, heads, per_position)
    scorer = Scorer(model, metric, pairs.correct, pairs.wrong)
    n_layers = model.cfg.n_layers
    names = [f"blocks.{l}.{HOOKS[hook]}" for l in grid.layers]
    final_name = f"blocks.{n_layers - 1}.hook_resid_post"
    cells = grid.cells()
    values = np.zeros((pairs.n_pairs, len(cells)))
    clean_scores, corrupt_scores = np.zeros(pairs.n_pairs), np.zeros(pairs.n_pairs)
    if scorer.metric == "kl":  # KL is measured against each pair's clean run: set every reference first
        ref = mx.zeros((pairs.n_pairs, model.cfg.d_model))
        for group in pairs.groups:
            _, cache = model.run_with_cache(group.clean, names=[final_name], logit_positions=[-1])
            ref[mx.array(group.index)] = cache[final_name][:, -1]
        scorer.set_reference(ref)
    for group in pairs.groups:
        base_tokens, base_pos, src_tokens, src_pos = group.oriented(direction)
        idx = mx.array(group.index.astype(np.int32))
        base_scores, grads, base_acts, src_acts, src_last = forward_and_gradients(model, base_tokens, src_tokens, names, scorer, idx)
        if src_acts is None:  # lengths differ: the source run goes on its own
            _, cache = model.run_with_cache(src_tokens, names=[*names, final_name], logit_positions=[-1])
            src_acts, src_last = {name: cache[name] for name in names}, cache[final_name][:, -1]
        src_scores = np.asarray(scorer(src_last, idx))
        base_np = np.asarray(base_scores)
        clean_scores[group.index], corrupt_scores[group.index] = (src_scores, base_np) if direction == "denoise" else (base_np, src_scores)
        rows = np.arange(len(group.index))[:, None]
        for li, name in enumerate(names):
            b_act = np.asarray(base_acts[name])[rows, base_pos]  # [b, K, ...] at each position key
            s_act = np.asarray(src_acts[name])[rows, src_pos]
            g_act = np.asarray(grads[name])[rows, base_pos]
            contrib = ((s_act - b_act) * g_act).sum(axis=-1)  # [b, K] or [b, K, h]
            for c, (L, k, h) in enumerate(cells):
                if L != grid.layers[li]:
                    continue
                per_key = contrib[..., h] if h >= 0 else contrib  # [b, K]
                est = per_key[:, grid.keys].sum(axis=1) if k == -1 else per_key[:, k]
                values[group.index, c] = base_np + est
    return finish(model, "attribution_patching", pairs, grid, hook, direction, scorer.name, values,
                  clean_scores, corrupt_scores, 0, 0, time.perf_counter() - t0, normalise_per_pair)
