"""Circuit check: is a set of components necessary (knock it out: how much behaviour is lost) and
sufficient (knock out every other head and MLP: how much remains)?

Both run on the clean prompts; knocked-out components take their corrupted-run values (mode 'patch',
row i of the corrupted prompts into clean prompt i), or a mean / resample over the corrupted prompts,
or zero. Fractions use the patching normalisation (0 = corrupted, 1 = clean):
  necessity = 1 - normalised(metric with the circuit knocked out)
  sufficiency = normalised(metric with everything else knocked out)
Token embeddings are never knocked out, so an empty circuit's sufficiency need not be 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx
import numpy as np

from engine.errors import MethodError
from engine.methods.components import AttnLayer, ComponentLike, Head, all_components, component_interventions, parse_components
from engine.methods.pairs import IdsLike, TokensLike, prepare_pairs
from engine.methods.results import CircuitResult
from engine.methods.scoring import MetricFn, Scorer, normalise

MODES = ("patch", "mean", "resample", "zero")


def complement(components: list, n_layers: int, n_heads: int) -> list:
    """Every head and MLP not in (or inside an attention layer of) the circuit."""
    whole = {c.layer for c in components if isinstance(c, AttnLayer)}
    return [c for c in all_components(n_layers, n_heads) if c not in components and not (isinstance(c, Head) and c.layer in whole)]


def circuit_check(
    model,
    clean_tokens: TokensLike,
    corrupted_tokens: TokensLike,
    components: Sequence[ComponentLike],
    correct_ids: IdsLike,
    wrong_ids: IdsLike,
    *,
    mode: str = "patch",
    metric: str | MetricFn = "logit_diff",
    seed: int = 0,
) -> CircuitResult:
    """Necessity and sufficiency of ``components`` ('L9H6', 'MLP7', 'ATTN3' or Head/MLP/AttnLayer)."""
    if mode not in MODES:
        raise MethodError(f"unknown mode {mode!r}: use one of {list(MODES)}")
    cfg = model.cfg
    comps = parse_components(components, cfg.n_layers, cfg.n_heads)
    rest = complement(comps, cfg.n_layers, cfg.n_heads)
    pairs = prepare_pairs(model, clean_tokens, corrupted_tokens, correct_ids, wrong_ids)
    if len(pairs.groups) != 1:
        raise MethodError("circuit_check needs clean and corrupted prompts of one shared token length")
    group = pairs.groups[0]
    clean, corrupted = group.clean, group.corrupted
    hooks = sorted({iv.hook for iv in component_interventions(all_components(cfg.n_layers, cfg.n_heads), "zero")}
                   | {iv.hook for iv in component_interventions(comps, "zero")})
    logits, cache = model.run_with_cache(mx.concatenate([clean, corrupted], axis=0), names=hooks, logit_positions=[-1])
    b = clean.shape[0]
    corrupt_cache = {name: act[b:] for name, act in cache.items()}
    scorer = Scorer(model, metric, pairs.correct, pairs.wrong)
    idx = mx.array(group.index.astype(np.int32))
    if scorer.metric == "kl":
        scorer.reference = logits[:b, -1]
    clean_v = float(np.mean(np.asarray(scorer.on_logits(logits[:b], idx))))
    corrupt_v = float(np.mean(np.asarray(scorer.on_logits(logits[b:], idx))))
    normalise(clean_v, clean_v, corrupt_v)  # raises if the prompts do not differ

    def knocked_out(knock: list) -> float:
        if not knock:
            return clean_v
        ivs = component_interventions(knock, mode, seed=seed)
        out = model.run_with_hooks(clean, ivs, source=corrupt_cache if mode == "patch" else None,
                                   reference=corrupt_cache if mode in ("mean", "resample") else None, logit_positions=[-1])
        return float(np.mean(np.asarray(scorer.on_logits(out, idx))))

    without = knocked_out(comps)
    only = knocked_out(rest)
    return CircuitResult(
        method="circuit_check", metric=scorer.name, components=[c.label for c in comps], mode=mode,
        necessity=1.0 - normalise(without, clean_v, corrupt_v), sufficiency=normalise(only, clean_v, corrupt_v),
        clean_value=clean_v, corrupted_value=corrupt_v, without_circuit=without, circuit_only=only, n_complement=len(rest),
    )
