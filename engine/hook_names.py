"""The hook points a Llama-family model exposes, named as in TransformerLens, with their shapes.

Shapes (b = batch, p = position, h = query heads, g = key/value heads, d = d_model, m = d_mlp,
e = d_head, v = d_vocab):
  hook_embed                         [b, p, d]
  blocks.L.hook_resid_pre            [b, p, d]
  blocks.L.ln1.hook_scale            [b, p, 1]   RMS of the residual
  blocks.L.ln1.hook_normalized       [b, p, d]   resid / scale (before the norm weight, as TL)
  blocks.L.attn.hook_q               [b, p, h, e]  before RoPE
  blocks.L.attn.hook_k / hook_v      [b, p, g, e]  grouped-query: g key/value heads
  blocks.L.attn.hook_rot_q           [b, p, h, e]  after RoPE
  blocks.L.attn.hook_rot_k           [b, p, g, e]
  blocks.L.attn.hook_attn_scores     [b, h, p_q, p_k]  scaled, causally masked
  blocks.L.attn.hook_pattern         [b, h, p_q, p_k]
  blocks.L.attn.hook_z               [b, p, h, e]  per-head output before o_proj
  blocks.L.hook_attn_out             [b, p, d]
  blocks.L.hook_resid_mid            [b, p, d]
  blocks.L.ln2.hook_scale / hook_normalized
  blocks.L.mlp.hook_pre              [b, p, m]   gate projection (pre-activation)
  blocks.L.mlp.hook_pre_linear       [b, p, m]   up projection
  blocks.L.mlp.hook_post             [b, p, m]   silu(gate) * up
  blocks.L.hook_mlp_out              [b, p, d]
  blocks.L.hook_resid_post           [b, p, d]
  ln_final.hook_scale / hook_normalized
Opt-in (TransformerLens has them only behind use_attn_result / use_hook_mlp_in; here they are computed
only when requested by name, and are not in hook_names() nor in run_with_cache(names=None)):
  blocks.L.attn.hook_result          [b, p, h, d]  each head's write z[..., h, :] @ W_O[h]; attn_out is
                                                   their sum (+ o_proj's bias), so a patch here moves attn_out
  blocks.L.hook_mlp_in               [b, p, d]   the MLP's input before ln2 (= resid_mid); a patch changes
                                                 only what the MLP reads, not the residual stream
"""

from __future__ import annotations

import difflib
import re

from engine.errors import UnknownHookError

BLOCK_HOOKS: tuple[str, ...] = (
    "hook_resid_pre",
    "ln1.hook_scale",
    "ln1.hook_normalized",
    "attn.hook_q",
    "attn.hook_k",
    "attn.hook_v",
    "attn.hook_rot_q",
    "attn.hook_rot_k",
    "attn.hook_attn_scores",
    "attn.hook_pattern",
    "attn.hook_z",
    "hook_attn_out",
    "hook_resid_mid",
    "ln2.hook_scale",
    "ln2.hook_normalized",
    "mlp.hook_pre",
    "mlp.hook_pre_linear",
    "mlp.hook_post",
    "hook_mlp_out",
    "hook_resid_post",
)
OPT_IN_BLOCK_HOOKS: tuple[str, ...] = ("attn.hook_result", "hook_mlp_in")
TOP_HOOKS: tuple[str, ...] = ("hook_embed", "ln_final.hook_scale", "ln_final.hook_normalized",
                              "unembed.hook_in", "unembed.hook_out")

# Which axis holds heads, and which holds (query) positions, for each kind of hook.
HEAD_AXIS = {"attn.hook_q": 2, "attn.hook_k": 2, "attn.hook_v": 2, "attn.hook_rot_q": 2, "attn.hook_rot_k": 2,
             "attn.hook_z": 2, "attn.hook_result": 2, "attn.hook_attn_scores": 1, "attn.hook_pattern": 1}
POS_AXIS_PATTERN = 2
_BLOCK_RE = re.compile(r"^blocks\.(\d+)\.(.+)$")


def all_hook_names(n_layers: int) -> list[str]:
    names = ["hook_embed"]
    for layer in range(n_layers):
        names.extend(f"blocks.{layer}.{h}" for h in BLOCK_HOOKS)
    names.extend(["ln_final.hook_scale", "ln_final.hook_normalized", "unembed.hook_in", "unembed.hook_out"])
    return names


def opt_in_hook_names(n_layers: int) -> list[str]:
    """The hooks computed only when asked for (see the module docstring)."""
    return [f"blocks.{layer}.{h}" for layer in range(n_layers) for h in OPT_IN_BLOCK_HOOKS]


def split_hook(name: str) -> tuple[int | None, str]:
    """('blocks.3.attn.hook_z') -> (3, 'attn.hook_z'); top-level hooks -> (None, name)."""
    match = _BLOCK_RE.match(name)
    if match:
        return int(match.group(1)), match.group(2)
    return None, name


def validate_hook(name: str, n_layers: int) -> tuple[int | None, str]:
    """Check a hook name exists for a model with ``n_layers``; raise UnknownHookError with suggestions."""
    layer, local = split_hook(name)
    ok = (layer is None and local in TOP_HOOKS) or (
        layer is not None and 0 <= layer < n_layers and (local in BLOCK_HOOKS or local in OPT_IN_BLOCK_HOOKS)
    )
    if ok:
        return layer, local
    if layer is not None and (local in BLOCK_HOOKS or local in OPT_IN_BLOCK_HOOKS):
        raise UnknownHookError(f"hook {name!r}: layer {layer} does not exist; this model has layers 0..{n_layers - 1}")
    close = difflib.get_close_matches(name, all_hook_names(n_layers) + opt_in_hook_names(n_layers), n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise UnknownHookError(
        f"unknown hook {name!r}.{hint} Hooks are named as in TransformerLens, e.g. 'hook_embed', "
        "'blocks.{L}.hook_resid_pre', 'blocks.{L}.attn.hook_z', 'blocks.{L}.mlp.hook_post', 'ln_final.hook_normalized'."
    )
