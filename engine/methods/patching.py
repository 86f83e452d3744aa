"""Batched activation patching over layers x positions (x heads), reusing the base run.

Rows are (pair, grid cell); each runs only the layers and positions its patch can change
(engine.methods.suffix_runs). Values are normalised means over pairs (results.NORMALISATION).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import mlx.core as mx
import numpy as np

from engine.alignment import Alignment
from engine.errors import MethodError
from engine.methods.pairs import IdsLike, Pairs, TokensLike, prepare_pairs
from engine.methods.patch_rows import KIND, Site, check_hook, entry_residual, extra_base_names, source_names
from engine.methods.results import NORMALISATION, PER_PAIR, PatchingResult, nested
from engine.methods.scoring import MetricFn, Scorer, normalise
from engine.methods.suffix_runs import Segment, capture_base, positions_per_chunk, run_segments


@dataclass
class Grid:
    """The cells of a sweep: layer x key (x head); key -1 = all selected keys at once."""

    layers: list[int]
    keys: list[int]  # selected position keys
    key_axis: list[int]  # [-1] when patching every selected key together
    heads: list[int] | None

    def cells(self) -> list[tuple[int, int, int]]:
        hs = self.heads if self.heads is not None else [-1]
        return [(l, k, h) for l in self.layers for k in self.key_axis for h in hs]

    def shape(self) -> tuple[int, ...]:
        dims = [len(self.layers)]
        if self.key_axis != [-1]:
            dims.append(len(self.keys))
        if self.heads is not None:
            dims.append(len(self.heads))
        return tuple(dims)


def pick(values: Sequence | None, n: int, what: str, names: list[str] | None = None) -> list[int]:
    """Resolve user indices (negative from the end, or names) against range(n)."""
    if values is None:
        return list(range(n))
    out = []
    for v in values:
        if isinstance(v, str) and names is not None:
            if v not in names:
                raise MethodError(f"unknown {what} {v!r}: known are {names}")
            out.append(names.index(v))
            continue
        v = int(v)
        if not -n <= v < n:
            raise MethodError(f"{what} {v} is out of range: there are {n}")
        out.append(v % n)
    return list(dict.fromkeys(out))


def make_grid(model, pairs: Pairs, hook: str, layers, positions, heads, per_position: bool | None) -> Grid:
    cfg = model.cfg
    layer_list = pick(layers, cfg.n_layers, "layer")
    keys = pick(positions, len(pairs.position_labels), "position", pairs.position_labels)
    if per_position is None:
        per_position = hook != "z"
    if heads is not None and hook != "z":
        raise MethodError(f"heads only apply to hook='z' (per-head patching), not {hook!r}")
    head_list = pick(heads, cfg.n_heads, "head") if hook == "z" else None
    return Grid(layer_list, keys, keys if per_position else [-1], head_list)


def axes_and_labels(grid: Grid, pairs: Pairs) -> tuple[list[str], list[list[str]]]:
    axes, labels = ["layer"], [[f"L{l}" for l in grid.layers]]
    if grid.key_axis != [-1]:
        axes.append("position")
        labels.append([pairs.position_labels[k] for k in grid.keys])
    if grid.heads is not None:
        axes.append("head")
        labels.append([f"H{h}" for h in grid.heads])
    return axes, labels


def sweep_group(model, scorer: Scorer, group, base, site: Site, grid: Grid, hook: str, budget_gb: float,
                values: np.ndarray, base_scores: np.ndarray) -> tuple[int, int]:
    """Fill values[pair, cell] for one pair group; returns (rows run, rows skipped)."""
    changed = site.changed()  # [n_layers, b, K(, h)]
    cells = grid.cells()
    b, n_pos = group.index.shape[0], base.tokens.shape[1]
    rows = []  # (pair, cell, layer, head, key, start)
    skipped = 0
    for c, (L, k, h) in enumerate(cells):
        for i in range(b):
            ks = grid.keys if k == -1 else [k]
            hit = [kk for kk in ks if (changed[L, i, kk, h] if h >= 0 else changed[L, i, kk])]
            if not hit:
                values[group.index[i], c] = base_scores[group.index[i]]
                skipped += 1
                continue
            rows.append((i, c, L, h, k, min(int(site.base_pos[i, kk]) for kk in hit)))
    if not rows:
        return 0, skipped
    arr = np.array(rows, dtype=np.int64)
    entry_of = arr[:, 2] + (0 if KIND[hook] == "resid_pre" else 1)
    arr = arr[np.lexsort((entry_of, arr[:, 5]))]  # by start, then entry layer
    budget = positions_per_chunk(model.cfg, n_pos, budget_gb)
    for chunk in chunk_rows(arr, n_pos, budget):
        segments, cuts = [], []
        for start in np.unique(chunk[:, 5]):
            ch = chunk[chunk[:, 5] == start]
            pair, cell, layer, head, key = (ch[:, j] for j in range(5))
            delta = site.delta(model, pair, layer, head, key, n_pos, grid.keys)
            entry_layer, entry, mid = entry_residual(model, base, KIND[hook], pair, layer, delta, int(start))
            segments.append(Segment(int(start), pair, entry_layer, entry, mid))
            cuts.append((pair, cell))
        for (pair, cell), last in zip(cuts, run_segments(model, base, segments)):
            scores = scorer(last, mx.array(group.index[pair].astype(np.int32)))
            values[group.index[pair], cell] = np.asarray(scores)
    return len(arr), skipped


def chunk_rows(rows: np.ndarray, n_pos: int, budget_positions: int) -> list[np.ndarray]:
    """Consecutive slices of the sorted rows, each recomputing at most ``budget_positions`` positions."""
    cost = n_pos - rows[:, 5]  # positions each row recomputes
    chunks, lo, used = [], 0, 0
    for i, c in enumerate(cost):
        if used + c > budget_positions and i > lo:
            chunks.append(rows[lo:i])
            lo, used = i, 0
        used += c
    chunks.append(rows[lo:])
    return chunks


def activation_patching(
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
    memory_budget_gb: float = 2.0,
    normalise_per_pair: bool = False,
) -> PatchingResult:
    """Patch each (layer, position[, head]) from the source run into the base run and score it.

    hook: 'resid_pre' | 'resid_post' | 'attn_out' | 'mlp_out' | 'z' (per head). direction: 'denoise' copies clean
    activations into the corrupted run, 'noise' corrupted into clean. For 'z' the default grid is
    layer x head with every position patched at once (per_position=True adds the position axis).
    positions are indices (or alignment names); layers/heads indices. Values: 0 = corrupted, 1 = clean,
    normalising the mean over pairs (normalise_per_pair=True: the mean of each pair's normalised value).
    """
    t0 = time.perf_counter()
    check_hook(hook)
    pairs = prepare_pairs(model, clean_tokens, corrupted_tokens, correct_ids, wrong_ids, alignment)
    grid = make_grid(model, pairs, hook, layers, positions, heads, per_position)
    scorer = Scorer(model, metric, pairs.correct, pairs.wrong)
    n_layers = model.cfg.n_layers
    cells = grid.cells()
    values = np.zeros((pairs.n_pairs, len(cells)))
    clean_scores, corrupt_scores = np.zeros(pairs.n_pairs), np.zeros(pairs.n_pairs)
    runs = []
    for group in pairs.groups:
        base_tokens, base_pos, src_tokens, src_pos = group.oriented(direction)
        src_names = source_names(hook, n_layers)
        base, src_cache = capture_base(model, base_tokens, extra_base_names(hook, n_layers), src_tokens, src_names)
        src_last = src_cache["final"][:, -1]  # [b, d]
        clean_last, corrupt_last = (src_last, base.last_resid) if direction == "denoise" else (base.last_resid, src_last)
        runs.append((group, base, src_cache, base_pos, src_pos, clean_last, corrupt_last))
    if scorer.metric == "kl":  # KL is measured against each pair's clean run: set every reference first
        ref = mx.zeros((pairs.n_pairs, model.cfg.d_model))
        for group, *_rest, clean_last, _ in runs:
            ref[mx.array(group.index)] = clean_last
        scorer.set_reference(ref)
    computed = skipped = 0
    for group, base, src_cache, base_pos, src_pos, clean_last, corrupt_last in runs:
        idx = mx.array(group.index.astype(np.int32))
        clean_scores[group.index] = np.asarray(scorer(clean_last, idx))
        corrupt_scores[group.index] = np.asarray(scorer(corrupt_last, idx))
        base_scores = corrupt_scores if direction == "denoise" else clean_scores
        src_acts = mx.stack([src_cache[name] for name in source_names(hook, n_layers)])
        site = Site.build(hook, base, src_acts, base_pos, src_pos)
        ran, skip = sweep_group(model, scorer, group, base, site, grid, hook, memory_budget_gb, values, base_scores)
        computed, skipped = computed + ran, skipped + skip
    return finish(model, "activation_patching", pairs, grid, hook, direction, scorer.name, values,
                  clean_scores, corrupt_scores, computed, skipped, time.perf_counter() - t0, normalise_per_pair)


def finish(model, method, pairs: Pairs, grid: Grid, hook, direction, metric_name, values, clean_scores,
           corrupt_scores, computed, skipped, seconds, per_pair: bool = False) -> PatchingResult:
    raw = values.mean(axis=0).reshape(grid.shape())  # mean over pairs
    clean, corrupt = float(clean_scores.mean()), float(corrupt_scores.mean())
    normalise(clean, clean, corrupt)  # raises a clear error when the pairs do not differ
    if per_pair:
        for c, b in zip(clean_scores, corrupt_scores):
            normalise(c, c, b)
        gaps = (clean_scores - corrupt_scores)[:, None]
        norm = ((values - corrupt_scores[:, None]) / gaps).mean(axis=0).reshape(grid.shape())
    else:
        norm = (raw - corrupt) / (clean - corrupt)
    axes, labels = axes_and_labels(grid, pairs)
    return PatchingResult(
        method=method, metric=metric_name, axes=axes, labels=labels, values=nested(norm), raw=nested(raw),
        hook=hook, direction=direction, clean_value=clean, corrupted_value=corrupt,
        clean_values=clean_scores.tolist(), corrupted_values=corrupt_scores.tolist(), n_pairs=pairs.n_pairs,
        clean_str_tokens=pairs.clean_str_tokens, corrupted_str_tokens=pairs.corrupted_str_tokens,
        rows_computed=computed, rows_skipped=skipped, seconds=seconds,
        normalisation=PER_PAIR if per_pair else NORMALISATION,
    )
