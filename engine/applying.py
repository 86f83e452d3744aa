"""Turn declarative interventions into hook functions, checking every shape up front."""

from __future__ import annotations

from collections.abc import Mapping

import mlx.core as mx
import numpy as np

from engine.errors import InterventionError
from engine.hook_names import HEAD_AXIS, POS_AXIS_PATTERN, validate_hook
from engine.hookset import HookFn
from engine.interventions import Ablate, Intervention, Patch, Scale, Steer


def _axes(local: str) -> tuple[int, int | None]:
    """(position axis, head axis or None) of an activation at a local hook name."""
    head_axis = HEAD_AXIS.get(local)
    pos_axis = POS_AXIS_PATTERN if local in ("attn.hook_attn_scores", "attn.hook_pattern") else 1
    return pos_axis, head_axis


def _index_mask(shape: tuple[int, ...], pos_axis: int, head_axis: int | None, iv: Intervention) -> mx.array | None:
    """Boolean mask broadcastable to ``shape`` selecting the intervention's positions and heads (None = all)."""
    if iv.positions is None and iv.heads is None:
        return None
    mask_shape = [1] * len(shape)
    mask = None
    if iv.positions is not None:
        n_pos = shape[pos_axis]
        sel = np.zeros(n_pos, dtype=bool)
        for p in iv.positions:
            if not -n_pos <= p < n_pos:
                raise InterventionError(
                    f"{iv.kind} at {iv.hook!r}: position {p} is out of range for {n_pos} positions"
                )
            sel[p] = True
        ms = list(mask_shape)
        ms[pos_axis] = n_pos
        mask = mx.array(sel.reshape(ms))
    if iv.heads is not None:
        if head_axis is None:
            raise InterventionError(
                f"{iv.kind} at {iv.hook!r}: this hook has no head axis; use a per-head hook such as "
                "'blocks.L.attn.hook_z' to select heads, or drop 'heads'"
            )
        n_heads = shape[head_axis]
        sel = np.zeros(n_heads, dtype=bool)
        for h in iv.heads:
            if h >= n_heads:
                raise InterventionError(f"{iv.kind} at {iv.hook!r}: head {h} is out of range for {n_heads} heads")
            sel[h] = True
        ms = list(mask_shape)
        ms[head_axis] = n_heads
        head_mask = mx.array(sel.reshape(ms))
        mask = head_mask if mask is None else mx.logical_and(mask, head_mask)
    return mask


def _fit_batch(value: mx.array, act: mx.array, what: str, iv: Intervention) -> mx.array:
    if tuple(value.shape[1:]) != tuple(act.shape[1:]):
        raise InterventionError(
            f"{iv.kind} at {iv.hook!r}: {what} has shape {tuple(value.shape)} but the activation has shape "
            f"{tuple(act.shape)}; the source/reference prompts must have the same number of positions"
        )
    if value.shape[0] not in (1, act.shape[0]):
        raise InterventionError(
            f"{iv.kind} at {iv.hook!r}: {what} has batch {value.shape[0]} but the run has batch {act.shape[0]}; "
            "use batch 1 (broadcast) or one source row per prompt"
        )
    return value


def _replacement(iv: Intervention, act: mx.array, source: Mapping | None, reference: Mapping | None) -> mx.array:
    if isinstance(iv, Patch):
        if source is None or iv.hook not in source:
            raise InterventionError(
                f"patch at {iv.hook!r} needs a source cache holding that hook: pass source=cache from "
                "run_with_cache(source_tokens, names=[...]) including this hook"
            )
        return _fit_batch(source[iv.hook], act, "the source activation", iv)
    if isinstance(iv, Ablate):
        if iv.mode == "zero":
            return mx.zeros_like(act)
        if reference is None or iv.hook not in reference:
            raise InterventionError(
                f"{iv.mode} ablation at {iv.hook!r} needs a reference cache holding that hook "
                "(activations of the reference prompts): pass reference=cache"
            )
        ref = reference[iv.hook]
        if iv.mode == "mean":
            return _fit_batch(mx.mean(ref, axis=0, keepdims=True), act, "the reference mean", iv)
        rows = np.random.default_rng(iv.seed).integers(0, ref.shape[0], size=act.shape[0])
        return _fit_batch(ref[mx.array(rows)], act, "the resampled reference", iv)
    if isinstance(iv, Steer):
        vec = mx.array(np.asarray(iv.vector, dtype=np.float32))
        if vec.shape[0] != act.shape[-1]:
            raise InterventionError(
                f"steer at {iv.hook!r}: vector has length {vec.shape[0]} but the activation's last axis is "
                f"{act.shape[-1]} (shape {tuple(act.shape)})"
            )
        return act + iv.coeff * vec
    if isinstance(iv, Scale):
        return act * iv.factor
    raise InterventionError(f"unknown intervention kind {getattr(iv, 'kind', type(iv).__name__)!r}")


def make_hook_fn(iv: Intervention, source: Mapping | None, reference: Mapping | None) -> HookFn:
    def fn(act: mx.array, name: str) -> mx.array:
        pos_axis, head_axis = _axes(name.split(".", 2)[2] if name.startswith("blocks.") else name)
        mask = _index_mask(tuple(act.shape), pos_axis, head_axis, iv)
        new = _replacement(iv, act, source, reference).astype(act.dtype)
        return mx.broadcast_to(new, act.shape) if mask is None else mx.where(mask, new, act)

    return fn


def compile_interventions(
    interventions: list[Intervention], n_layers: int, source: Mapping | None, reference: Mapping | None
) -> list[tuple[str, HookFn]]:
    """Validate hook names eagerly (before any compute) and build (name, fn) pairs."""
    pairs = []
    for iv in interventions:
        validate_hook(iv.hook, n_layers)
        if isinstance(iv, Patch) and (source is None or iv.hook not in source):
            _replacement(iv, mx.zeros((1,)), source, reference)  # raises the actionable error
        pairs.append((iv.hook, make_hook_fn(iv, source, reference)))
    return pairs
