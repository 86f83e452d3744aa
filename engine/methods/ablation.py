"""Ablations: knock components out (zero, mean over a reference set, resample from reference prompts).

``ablate`` knocks a set out together through declarative engine interventions (so the same claim can
be re-run by the verifier). ``ablation_sweep`` knocks out every head, MLP, attention layer or
(layer, position) of the residual stream one at a time, batched with the same reuse of the unablated
run as activation patching (an ablation is a patch whose source is the ablation value).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import mlx.core as mx
import numpy as np

from engine.errors import MethodError
from engine.methods.components import ComponentLike, component_interventions, parse_components
from engine.methods.pairs import IdsLike, TokensLike, as_token_rows, prepare_pairs
from engine.methods.patch_rows import Site, extra_base_names, source_names
from engine.methods.patching import Grid, axes_and_labels, pick, sweep_group
from engine.methods.results import AblationResult, AblationSweepResult, nested
from engine.methods.scoring import MetricFn, Scorer
from engine.methods.suffix_runs import cached_forward, capture_base

MODES = ("zero", "mean", "resample")
SWEEPS = {"heads": "z", "mlps": "mlp_out", "attn": "attn_out", "positions": "resid_pre"}


def _tokens(model, tokens: TokensLike, what: str) -> mx.array:
    rows = as_token_rows(model, tokens, what)
    if len({len(r) for r in rows}) != 1 or not rows[0]:
        raise MethodError(f"{what} prompts must share one (non-zero) token length to be batched")
    return mx.array(rows, dtype=mx.int32)


def _check_mode(mode: str, reference_tokens, allow_patch: bool = False) -> None:
    modes = MODES + (("patch",) if allow_patch else ())
    if mode not in modes:
        raise MethodError(f"unknown ablation mode {mode!r}: use one of {list(modes)}")
    if mode != "zero" and reference_tokens is None:
        raise MethodError(f"{mode} ablation needs reference_tokens (e.g. the corrupted prompts), of the same length")


def ablate(
    model,
    tokens: TokensLike,
    components: Sequence[ComponentLike],
    mode: str = "zero",
    reference_tokens: TokensLike | None = None,
    *,
    correct_ids: IdsLike,
    wrong_ids: IdsLike,
    positions: Sequence[int] | None = None,
    metric: str | MetricFn = "logit_diff",
    seed: int = 0,
) -> AblationResult:
    """The metric with ``components`` ('L12H3', 'MLP7', 'ATTN7' or Head/MLP/AttnLayer) knocked out together.

    mode: 'zero'; 'mean' (per-position mean over reference_tokens); 'resample' (a random reference row
    per prompt, seeded); 'patch' (row i of reference_tokens into prompt i). positions: restrict to these.
    """
    _check_mode(mode, reference_tokens, allow_patch=True)
    toks = _tokens(model, tokens, "ablated")
    comps = parse_components(components, model.cfg.n_layers, model.cfg.n_heads)
    n = toks.shape[0]
    pairs = prepare_pairs(model, toks, toks, correct_ids, wrong_ids)
    scorer = Scorer(model, metric, pairs.correct, pairs.wrong)
    ivs = component_interventions(comps, mode, list(positions) if positions is not None else None, seed)
    ref = None
    if reference_tokens is not None and mode != "zero":
        ref_toks = _tokens(model, reference_tokens, "reference")
        if mode == "patch" and ref_toks.shape[0] != n:
            raise MethodError(f"patch ablation pairs reference row i with prompt i: got {ref_toks.shape[0]} reference rows for {n} prompts")
        _, ref = model.run_with_cache(ref_toks, names=sorted({iv.hook for iv in ivs}), logit_positions=[-1])
    base_logits = model.forward(toks, logit_positions=[-1])
    idx = mx.arange(n)
    if scorer.metric == "kl":
        scorer.reference = base_logits[:, -1]
    logits = model.run_with_hooks(toks, ivs, source=ref if mode == "patch" else None,
                                  reference=ref if mode in ("mean", "resample") else None, logit_positions=[-1])
    base = np.asarray(scorer.on_logits(base_logits, idx), dtype=np.float64)
    abl = np.asarray(scorer.on_logits(logits, idx), dtype=np.float64)
    b, a = float(base.mean()), float(abl.mean())
    return AblationResult(
        method="ablate", metric=scorer.name, components=[c.label for c in comps], mode=mode,
        positions=list(positions) if positions is not None else None, baseline=b, ablated=a, effect=a - b,
        fraction_remaining=(a / b) if abs(b) > 1e-12 else None, baseline_values=base.tolist(),
        ablated_values=abl.tolist(), interventions=[iv.model_dump() for iv in ivs],
    )


def ablation_values(model, hook: str, base_acts: mx.array, mode: str, reference_tokens, seed: int) -> mx.array:
    """What each activation [n_layers, b, P, ...] is replaced by under an ablation mode."""
    if mode == "zero":
        return mx.zeros_like(base_acts)
    ref_toks = _tokens(model, reference_tokens, "reference")
    if ref_toks.shape[1] != base_acts.shape[2]:
        raise MethodError(f"reference prompts have {ref_toks.shape[1]} tokens but the ablated prompts {base_acts.shape[2]}: use equal lengths")
    names = source_names(hook, model.cfg.n_layers)
    _, cache = cached_forward(model, ref_toks, names)
    ref = mx.stack([cache[name] for name in names])  # [n_layers, r, P, ...]
    if mode == "mean":
        return mx.broadcast_to(mx.mean(ref, axis=1, keepdims=True), base_acts.shape)
    rows = np.random.default_rng(seed).integers(0, ref.shape[1], size=base_acts.shape[1])  # as engine Ablate(resample)
    return ref[:, mx.array(rows)]


def ablation_sweep(
    model,
    tokens: TokensLike,
    correct_ids: IdsLike,
    wrong_ids: IdsLike,
    *,
    over: str = "heads",
    mode: str = "zero",
    reference_tokens: TokensLike | None = None,
    layers: Sequence[int] | None = None,
    positions: Sequence[int] | None = None,
    metric: str | MetricFn = "logit_diff",
    seed: int = 0,
    memory_budget_gb: float = 2.0,
) -> AblationSweepResult:
    """Knock out each component on its own: over='heads' (layer x head), 'mlps', 'attn' (layer), or
    'positions' (layer x position of resid_pre; layers default to [0], i.e. the token embeddings).
    Heads/MLPs/attn are ablated at every position in ``positions`` (default all) at once."""
    t0 = time.perf_counter()
    if over not in SWEEPS:
        raise MethodError(f"cannot sweep over {over!r}: use one of {sorted(SWEEPS)}")
    _check_mode(mode, reference_tokens)
    hook = SWEEPS[over]
    toks = _tokens(model, tokens, "ablated")
    pairs = prepare_pairs(model, toks, toks, correct_ids, wrong_ids)
    scorer = Scorer(model, metric, pairs.correct, pairs.wrong)
    group = pairs.groups[0]
    base, _ = capture_base(model, toks, extra_base_names(hook, model.cfg.n_layers))
    idx = mx.array(group.index.astype(np.int32))
    if scorer.metric == "kl":
        scorer.set_reference(base.last_resid)
    base_scores = np.asarray(scorer(base.last_resid, idx), dtype=np.float64)
    probe = Site.build(hook, base, mx.zeros((1,)), group.corrupted_pos, group.corrupted_pos)
    site = Site(hook, probe.base_acts, ablation_values(model, hook, probe.base_acts, mode, reference_tokens, seed),
                group.corrupted_pos, group.corrupted_pos)
    if over == "positions":
        layer_list = pick([0] if layers is None else layers, model.cfg.n_layers, "layer")
        keys = pick(positions, len(pairs.position_labels), "position")
        grid = Grid(layer_list, keys, keys, None)
    else:
        keys = pick(positions, len(pairs.position_labels), "position")
        grid = Grid(pick(layers, model.cfg.n_layers, "layer"), keys, [-1],
                    list(range(model.cfg.n_heads)) if over == "heads" else None)
    values = np.zeros((pairs.n_pairs, len(grid.cells())))
    ran, skipped = sweep_group(model, scorer, group, base, site, grid, hook, memory_budget_gb, values, base_scores)
    raw = values.mean(axis=0).reshape(grid.shape())
    axes, labels = axes_and_labels(grid, pairs)
    if over in ("mlps", "attn"):
        labels[0] = [("MLP" if over == "mlps" else "ATTN") + lab[1:] for lab in labels[0]]
    return AblationSweepResult(
        method="ablation_sweep", metric=scorer.name, axes=axes, labels=labels, values=nested(raw - base_scores.mean()),
        raw=nested(raw), mode=mode, over=over, baseline=float(base_scores.mean()), baseline_values=base_scores.tolist(),
        n_prompts=pairs.n_pairs, rows_computed=ran, rows_skipped=skipped, seconds=time.perf_counter() - t0,
    )
