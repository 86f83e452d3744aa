"""Where a patch enters the residual stream, and the residual a patched row starts from.

Every supported patch is a change to the residual stream at one layer:
  resid_pre (L, p):   resid_pre[L] += source - base at p                      -> the row enters at L
  resid_post (L, p):  resid_post[L] += source - base at p                     -> enters at L + 1
  mlp_out (L, p):     resid_post[L] += source - base at p                     -> enters at L + 1
  attn_out (L, p):    resid_mid[L] += source - base at p                      -> enters L after attention
  z (L, p, h):        as attn_out with (z_source - z_base)[h] @ W_O[h]
A row may patch one position key or every key (per-head patches over all positions). The change
check compares source and base activations: a patch that changes nothing (beyond float32 rounding)
is not run, its value is the base run's.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import numpy as np

from engine.errors import MethodError
from engine.methods.suffix_runs import BaseRun

HOOKS = {"resid_pre": "hook_resid_pre", "resid_post": "hook_resid_post", "attn_out": "hook_attn_out",
         "mlp_out": "hook_mlp_out", "z": "attn.hook_z"}
NO_CHANGE = 1e-5  # relative size of a change below which a patch is treated as a no-op
KIND = {"resid_pre": "resid_pre", "resid_post": "mlp", "attn_out": "attn", "mlp_out": "mlp", "z": "attn"}


def check_hook(hook: str) -> str:
    if hook not in HOOKS:
        raise MethodError(f"cannot sweep hook {hook!r}: use one of {sorted(HOOKS)} ('z' = per head)")
    return hook


def extra_base_names(hook: str, n_layers: int) -> list[str]:
    """Base-run hooks a site needs beyond residuals and K/V."""
    local = [HOOKS[hook]] if hook not in ("resid_pre", "resid_post") else []
    if KIND[hook] == "attn":
        local.append("hook_resid_mid")
    return [f"blocks.{l}.{h}" for l in range(n_layers) for h in local]


def source_names(hook: str, n_layers: int) -> list[str]:
    return [f"blocks.{l}.{HOOKS[hook]}" for l in range(n_layers)]


@dataclass
class Site:
    """Base and source activations of one hook at every layer, for one pair group."""

    hook: str
    base_acts: mx.array  # [n_layers, b, Pb, d] or [n_layers, b, Pb, h, e] for z
    source_acts: mx.array  # [n_layers, b, Ps, ...]
    base_pos: np.ndarray  # [b, K]
    source_pos: np.ndarray  # [b, K]

    @classmethod
    def build(cls, hook, base: BaseRun, source_acts: mx.array, base_pos, source_pos) -> "Site":
        n = base.resid.shape[0] - 1
        if hook == "resid_pre":
            base_acts = base.resid[:n]
        elif hook == "resid_post":
            base_acts = base.resid[1:]
        else:
            base_acts = mx.stack([base.cache[f"blocks.{l}.{HOOKS[hook]}"] for l in range(n)])
        return cls(hook, base_acts, source_acts, np.asarray(base_pos), np.asarray(source_pos))

    def changed(self) -> np.ndarray:
        """[n_layers, b, K] (or [n_layers, b, K, h] for z): does copying the source change anything?

        A copy that moves the activation by no more than float32 rounding (1e-5 of its largest entry:
        the same vector computed in another batch row can differ in the last bits) is not run.
        """
        b_np, s_np = np.asarray(self.base_acts), np.asarray(self.source_acts)
        rows = np.arange(self.base_pos.shape[0])[:, None]
        b_at = b_np[:, rows, self.base_pos]  # [n, b, K, ...]
        s_at = s_np[:, rows, self.source_pos]
        return np.abs(s_at - b_at).max(axis=-1) > NO_CHANGE * np.abs(b_at).max(axis=-1)

    def delta(
        self, model, pair: np.ndarray, layer: np.ndarray, head: np.ndarray, key: np.ndarray, n_pos: int, all_keys: list[int]
    ) -> mx.array:
        """Dense change to the residual stream [c, P, d] of each row (key -1 = every key in ``all_keys``).

        One gather of (source - base) at every key of every row, one batched product through each row's
        head's W_O for z, and one scatter onto positions (a [c, P, K] one-hot product)."""
        keys = np.asarray(all_keys)
        sel = (key[:, None] == keys[None, :]) | (key[:, None] == -1)  # [c, K'] keys each row patches
        bp, sp = self.base_pos[pair][:, keys], self.source_pos[pair][:, keys]  # [c, K']
        li, ii = mx.array(layer)[:, None], mx.array(pair)[:, None]
        diff = self.source_acts[li, ii, mx.array(sp)] - self.base_acts[li, ii, mx.array(bp)]  # [c, K', d] or [c, K', h, e]
        if self.hook == "z":
            diff = self._through_w_o(model, diff, layer, head)  # [c, K', d]
        scatter = (np.arange(n_pos)[None, :, None] == bp[:, None, :]) & sel[:, None, :]  # [c, P, K']
        return mx.array(scatter.astype(np.float32)) @ diff  # [c, P, d]

    @staticmethod
    def _through_w_o(model, diff: mx.array, layer: np.ndarray, head: np.ndarray) -> mx.array:
        """(z_source - z_base) of one head per row [c, K, h, e] -> its write into the residual [c, K, d]."""
        layers = np.unique(layer)
        w_o = mx.stack([model.adapter.head_output_weights(int(L)) for L in layers])  # [u, h, e, d]
        h = mx.array(head)
        z = mx.take_along_axis(diff, h[:, None, None, None], axis=2)[:, :, 0]  # [c, K, e]
        return z @ w_o[mx.array(np.searchsorted(layers, layer)), h]  # [c, K, e] @ [c, e, d]


def _add_rows(out: mx.array, rows: np.ndarray, values: mx.array) -> mx.array:
    if len(rows) == out.shape[0] and np.array_equal(rows, np.arange(len(rows))):
        return out + values
    return out.at[mx.array(rows)].add(values)


def entry_residual(
    model, base: BaseRun, kind: str, pair: np.ndarray, layer: np.ndarray, delta: mx.array, start: int
) -> tuple[np.ndarray, mx.array, bool]:
    """(entry layer [c], residual [c, P - start, d], mid) a patched row starts from. With mid (attn_out and
    per-head patches) the residual is resid_mid of the entry layer: the row joins that layer after its
    attention, so its MLP runs batched with the other rows' (engine.methods.suffix_runs)."""
    i = mx.array(pair)
    delta = delta[:, start:]  # [c, s, d]
    if kind == "resid_pre":
        return layer.copy(), base.resid[mx.array(layer), i, start:] + delta, False
    if kind == "mlp":
        return layer + 1, base.resid[mx.array(layer + 1), i, start:] + delta, False  # base resid_post[L] + patch
    mids = mx.stack([base.cache[f"blocks.{l}.hook_resid_mid"] for l in np.unique(layer)])  # [u, b, P, d]
    slot = np.searchsorted(np.unique(layer), layer)
    return layer.copy(), mids[mx.array(slot), i, start:] + delta, True  # [c, s, d]
