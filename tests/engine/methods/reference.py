"""Slow, obviously-correct references: one hooked forward per patch, built from engine.interventions.

Also the plain batched sweep (every patched run a full forward, many per batch) for the benchmark.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np

from engine import metrics
from engine.interventions import Patch

HOOKS = {"resid_pre": "hook_resid_pre", "resid_post": "hook_resid_post", "attn_out": "hook_attn_out", "mlp_out": "hook_mlp_out", "z": "attn.hook_z"}


def metric_value(logits: mx.array, correct: int, wrong: int, metric: str, clean_logits: mx.array | None = None) -> float:
    last = logits[:, -1]
    if metric == "logit_diff":
        return float(metrics.logit_diff(last, [correct], [wrong]).item())
    if metric == "prob_correct":
        return float(metrics.token_prob(last, [correct]).item())
    if metric == "logprob_correct":
        return float(metrics.logprob(last, [correct]).item())
    if metric == "kl":
        return float(metrics.kl_divergence(last, clean_logits[:, -1]).item())
    raise ValueError(metric)


def reference_patching(model, clean, corrupted, correct, wrong, *, hook="resid_pre", direction="denoise",
                       metric="logit_diff", layers=None, positions=None, heads=None, per_position=None,
                       clean_pos=None, corrupted_pos=None, per_pair=False):
    """Grid of normalised values (and raw means), one run_with_hooks per (pair, cell).

    clean/corrupted: lists of token lists. clean_pos/corrupted_pos: [pair][key] positions (identity if None).
    """
    n = len(clean)
    n_layers = model.cfg.n_layers
    if clean_pos is None:
        clean_pos = [list(range(len(c))) for c in clean]
        corrupted_pos = [list(range(len(b))) for b in corrupted]
    n_keys = len(clean_pos[0])
    layers = list(range(n_layers)) if layers is None else layers
    keys = list(range(n_keys)) if positions is None else positions
    per_position = (hook != "z") if per_position is None else per_position
    head_list = (list(range(model.cfg.n_heads)) if heads is None else heads) if hook == "z" else [None]
    key_axis = keys if per_position else [None]
    shape = [len(layers)] + ([len(keys)] if per_position else []) + ([len(head_list)] if hook == "z" else [])
    raw = np.zeros([n] + [len(layers) * len(key_axis) * len(head_list)])
    clean_v, corrupt_v = np.zeros(n), np.zeros(n)
    for i in range(n):
        ct, bt = mx.array([clean[i]]), mx.array([corrupted[i]])
        clean_logits = model.forward(ct, logit_positions=[-1])
        clean_v[i] = metric_value(clean_logits, correct[i], wrong[i], metric, clean_logits)
        corrupt_v[i] = metric_value(model.forward(bt, logit_positions=[-1]), correct[i], wrong[i], metric, clean_logits)
        if direction == "denoise":
            base_t, src_t, base_p, src_p = bt, ct, corrupted_pos[i], clean_pos[i]
        else:
            base_t, src_t, base_p, src_p = ct, bt, clean_pos[i], corrupted_pos[i]
        names = [f"blocks.{l}.{HOOKS[hook]}" for l in layers]
        _, src = model.run_with_cache(src_t, names=names, logit_positions=[-1])
        c = 0
        for L in layers:
            name = f"blocks.{L}.{HOOKS[hook]}"
            for k in key_axis:
                ks = keys if k is None else [k]
                for h in head_list:
                    if all(base_p[kk] == src_p[kk] for kk in ks):
                        ivs = [Patch(hook=name, positions=[base_p[kk] for kk in ks], heads=None if h is None else [h])]
                        logits = model.run_with_hooks(base_t, ivs, source=src, logit_positions=[-1])
                    else:  # aligned positions differ: copy source position sp into base position bp
                        logits = model.run_with_hooks(base_t, fwd_hooks=[(name, _copier(src[name], base_p, src_p, ks, h))],
                                                      logit_positions=[-1])
                    raw[i, c] = metric_value(logits, correct[i], wrong[i], metric, clean_logits)
                    c += 1
    mean = raw.mean(0).reshape(shape)
    cm, bm = clean_v.mean(), corrupt_v.mean()
    if per_pair:
        norm = ((raw - corrupt_v[:, None]) / (clean_v - corrupt_v)[:, None]).mean(0).reshape(shape)
        return norm, mean, clean_v, corrupt_v
    return (mean - bm) / (cm - bm), mean, clean_v, corrupt_v


def _copier(src_act, base_p, src_p, ks, h):
    def fn(act, name):
        out = np.array(act)
        s = np.array(src_act)
        for kk in ks:
            if h is None:
                out[:, base_p[kk]] = s[:, src_p[kk]]
            else:
                out[:, base_p[kk], h] = s[:, src_p[kk], h]
        return mx.array(out)

    return fn


def plain_batched_resid_pre(model, clean_tokens, corrupted_tokens, correct, wrong, rows_per_batch=64):
    """Every (layer, position) patch as a row of a full forward; chunks of ``rows_per_batch`` rows."""
    n_layers, P = model.cfg.n_layers, clean_tokens.shape[1]
    names = [f"blocks.{l}.hook_resid_pre" for l in range(n_layers)]
    _, src = model.run_with_cache(clean_tokens[:1], names=names)
    cells = [(l, p) for l in range(n_layers) for p in range(P)]
    out = []
    for lo in range(0, len(cells), rows_per_batch):
        chunk = cells[lo : lo + rows_per_batch]
        tokens = mx.broadcast_to(corrupted_tokens[:1], (len(chunk), P))
        hooks = []
        for L in range(n_layers):
            rows = [r for r, (l, _) in enumerate(chunk) if l == L]
            if not rows:
                continue
            mask = np.zeros((len(chunk), P, 1), dtype=bool)
            for r in rows:
                mask[r, chunk[r][1]] = True
            m = mx.array(mask)
            s = src[f"blocks.{L}.hook_resid_pre"]

            def fn(act, name, m=m, s=s):
                return mx.where(m, s, act)

            hooks.append((f"blocks.{L}.hook_resid_pre", fn))
        logits = model.run_with_hooks(tokens, fwd_hooks=hooks, logit_positions=[-1])
        out.append(metrics.logit_diff(logits, correct, wrong))
    vals = mx.concatenate(out)
    mx.eval(vals)
    return np.asarray(vals).reshape(n_layers, P)


def linearised_patching(model, clean, corrupted, correct, wrong, *, hook="resid_pre", direction="denoise",
                        metric="logit_diff", per_position=None, finite_difference: float | None = None):
    """Explicit linearisation of each patch: base metric + the directional derivative (mx.jvp) of the
    metric along (source - base) at the patched activation, one jvp per (pair, cell). With
    ``finite_difference=h`` the derivative is the central difference (f(+h) - f(-h)) / 2h instead."""
    from engine.hookset import HookSet

    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    per_position = (hook != "z") if per_position is None else per_position
    P = len(clean[0])
    key_axis = list(range(P)) if per_position else [None]
    head_list = list(range(n_heads)) if hook == "z" else [None]
    shape = [n_layers] + ([P] if per_position else []) + ([n_heads] if hook == "z" else [])
    raw = np.zeros((len(clean), int(np.prod(shape))))
    clean_v, corrupt_v = np.zeros(len(clean)), np.zeros(len(clean))
    for i in range(len(clean)):
        ct, bt = mx.array([clean[i]]), mx.array([corrupted[i]])
        clean_v[i] = metric_value(model.forward(ct), correct[i], wrong[i], metric)
        corrupt_v[i] = metric_value(model.forward(bt), correct[i], wrong[i], metric)
        base_t, src_t = (bt, ct) if direction == "denoise" else (ct, bt)
        names = [f"blocks.{l}.{HOOKS[hook]}" for l in range(n_layers)]
        _, src = model.run_with_cache(src_t, names=names)
        _, base = model.run_with_cache(base_t, names=names)
        c = 0
        for L in range(n_layers):
            name = names[L]

            def f(eps, name=name):
                logits = model.adapter.forward(base_t, HookSet([(name, lambda act, _n: act + eps)]))
                return metrics.logit_diff(logits, [correct[i]], [wrong[i]])

            full = np.array(src[name] - base[name])
            for k in key_axis:
                for h in head_list:
                    tangent = np.zeros_like(full)
                    sel = (slice(None), slice(None) if k is None else k) + (() if h is None else (h,))
                    tangent[sel] = full[sel]
                    t = mx.array(tangent)
                    if finite_difference is None:
                        _, (d,) = mx.jvp(f, [mx.zeros_like(t)], [t])
                        deriv = float(d.item())
                    else:
                        hh = finite_difference
                        deriv = float(((f(hh * t) - f(-hh * t)) / (2 * hh)).item())
                    raw[i, c] = corrupt_v[i] + deriv if direction == "denoise" else clean_v[i] + deriv
                    c += 1
    mean = raw.mean(0).reshape(shape)
    cm, bm = clean_v.mean(), corrupt_v.mean()
    return (mean - bm) / (cm - bm)
