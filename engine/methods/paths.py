"""Path patching: does a sender head matter *through* particular receiver heads' query/key/value?

Denoising (the default): the run is the corrupted prompt. The sender head's output difference
delta = (z_clean - z_corrupted)[sender] @ W_O[sender] (every position) is added to the residual
stream that the receivers' chosen input reads (the receiver's ln1 and projection recomputed on
resid + delta), and only there: every other head and MLP reads the unmodified stream, so the sender
acts through the direct sender -> receiver edge alone. Downstream of the receivers everything is
recomputed. 'noise' swaps the roles of the prompts. Values are normalised like activation patching.
"""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx
import numpy as np

from engine.errors import MethodError
from engine.hookset import HookSet
from engine.methods.components import ComponentLike, Head, parse_component
from engine.methods.pairs import IdsLike, TokensLike, prepare_pairs
from engine.methods.results import PathPatchingResult
from engine.methods.scoring import MetricFn, Scorer, normalise

INPUTS = ("q", "k", "v")


def _head(value: ComponentLike | tuple[int, int], n_layers: int, n_heads: int, what: str) -> Head:
    comp = Head(layer=value[0], head=value[1]) if isinstance(value, tuple) else parse_component(value)
    if not isinstance(comp, Head):
        raise MethodError(f"{what} must be a head ('L3H1' or (3, 1)), not {comp.label}")
    if comp.layer >= n_layers or comp.head >= n_heads:
        raise MethodError(f"{what} {comp.label} does not exist: layers 0..{n_layers - 1}, heads 0..{n_heads - 1}")
    return comp


def path_patching(
    model,
    clean_tokens: TokensLike,
    corrupted_tokens: TokensLike,
    sender: ComponentLike | tuple[int, int],
    receivers: Sequence[ComponentLike | tuple[int, int]],
    correct_ids: IdsLike,
    wrong_ids: IdsLike,
    *,
    receiver_input: str | Sequence[str] = "q",
    direction: str = "denoise",
    metric: str | MetricFn = "logit_diff",
) -> PathPatchingResult:
    """Effect of sender -> receivers (receiver_input: 'q', 'k', 'v' or several, e.g. ['k', 'v']), all
    receivers together (``value``) and each alone (``per_receiver``). Prompt pairs of equal length."""
    cfg = model.cfg
    snd = _head(sender, cfg.n_layers, cfg.n_heads, "sender")
    rcv = [_head(r, cfg.n_layers, cfg.n_heads, "receiver") for r in receivers]
    if not rcv:
        raise MethodError("give at least one receiver head")
    late = [r.label for r in rcv if r.layer <= snd.layer]
    if late:
        raise MethodError(f"receivers {late} are not after the sender {snd.label}: a head only reads heads of earlier layers")
    inputs = [receiver_input] if isinstance(receiver_input, str) else list(receiver_input)
    if not inputs or any(i not in INPUTS for i in inputs):
        raise MethodError(f"receiver_input must be among {list(INPUTS)} (or a list of them), not {receiver_input!r}")
    pairs = prepare_pairs(model, clean_tokens, corrupted_tokens, correct_ids, wrong_ids)
    if len(pairs.groups) != 1:
        raise MethodError("path patching needs clean and corrupted prompts of one shared token length")
    group = pairs.groups[0]
    base_tokens, _, src_tokens, _ = group.oriented(direction)
    b = base_tokens.shape[0]
    z_name = f"blocks.{snd.layer}.attn.hook_z"
    both = mx.concatenate([base_tokens, src_tokens], axis=0)
    logits, cache = model.run_with_cache(both, names=[z_name], logit_positions=[-1])
    w_o = model.adapter.head_output_weights(snd.layer)[snd.head]  # [e, d]
    delta = (cache[z_name][b:, :, snd.head] - cache[z_name][:b, :, snd.head]) @ w_o  # [b, P, d]
    scorer = Scorer(model, metric, pairs.correct, pairs.wrong)
    idx = mx.array(group.index.astype(np.int32))
    clean_logits, corrupt_logits = (logits[b:], logits[:b]) if direction == "denoise" else (logits[:b], logits[b:])
    if scorer.metric == "kl":
        scorer.reference = clean_logits[:, -1]
    clean = float(np.mean(np.asarray(scorer.on_logits(clean_logits, idx))))
    corrupt = float(np.mean(np.asarray(scorer.on_logits(corrupt_logits, idx))))
    normalise(clean, clean, corrupt)  # raises if the prompts do not differ

    def run(heads: list[Head]) -> float:
        resid: dict[int, mx.array] = {}
        hooks = []
        for layer in sorted({h.layer for h in heads}):
            def keep(act, name, layer=layer):
                resid[layer] = act  # the residual this layer actually reads in this run

            def replace(z, name, layer=layer):
                x = resid[layer]  # [b, P, d]
                moved = x + delta
                for h in (h for h in heads if h.layer == layer):
                    pick = {i: (moved if i in inputs else x) for i in INPUTS}
                    z = z.at[:, :, h.head].add(model.adapter.head_z(layer, h.head, pick["q"], pick["k"], pick["v"]) - z[:, :, h.head])
                return z

            hooks += [(f"blocks.{layer}.hook_resid_pre", keep), (f"blocks.{layer}.attn.hook_z", replace)]
        out = model.adapter.forward(base_tokens, HookSet(hooks), logit_positions=[-1])
        return float(np.mean(np.asarray(scorer.on_logits(out, idx))))

    joint = run(rcv)
    each = [run([r]) for r in rcv] if len(rcv) > 1 else [joint]
    return PathPatchingResult(
        method="path_patching", metric=scorer.name, sender=snd.label, receivers=[r.label for r in rcv],
        receiver_input="+".join(inputs), direction=direction, value=normalise(joint, clean, corrupt), raw=joint,
        per_receiver=[normalise(v, clean, corrupt) for v in each], clean_value=clean, corrupted_value=corrupt,
    )
