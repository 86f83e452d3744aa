"""Trusted verifier child: ``python -I -m sandbox.verify_entry REQUEST_JSON RESULT_FD``.

Loads NO agent code. Measures a Claim on the held-out pairs with the contract metric, plus null
draws (the same claim structure at random components, or patched from a mismatched pair), and sends
per-pair numbers to the parent. Statistics (CIs, p-values, multiple comparisons) are the analyst's.
"""

from __future__ import annotations

import re
import sys
import time
import traceback
from collections import defaultdict
from typing import Any

from sandbox.childlib import Channel, apply_rlimits, exit_now, read_request
from sandbox.pair_groups import group_by_length
from sandbox.verify_circuit import measure_circuit

GAP_EPS = 1e-6
LAYER_HOOK = re.compile(r"^blocks\.(\d+)\.(.+)$")


def _randomised(claim: Any, cfg: Any, n_pos: int, rng: Any, include_own: bool = False) -> list[Any]:
    """The claim's interventions moved to random layers / heads (or positions when neither applies).

    ``include_own``: draw over every layer, the claim's own included (a family shared by claims at
    different layers; the parent leaves out draws that touch the claim's components)."""
    out = []
    for iv in claim.interventions:
        update: dict[str, Any] = {}
        m = LAYER_HOOK.match(iv.hook)
        if m and cfg.n_layers > 1:
            layer = int(m.group(1))
            choices = [x for x in range(cfg.n_layers) if include_own or x != layer]
            update["hook"] = f"blocks.{int(rng.choice(choices))}.{m.group(2)}"
        if iv.heads:
            n_heads = cfg.n_kv_heads if iv.hook.endswith(("hook_k", "hook_v")) else cfg.n_heads
            update["heads"] = sorted(int(h) for h in rng.choice(n_heads, size=min(len(iv.heads), n_heads),
                                                                 replace=False))
        if not update and iv.positions:
            update["positions"] = sorted(int(p) for p in rng.choice(n_pos, size=min(len(iv.positions), n_pos),
                                                                     replace=False))
        out.append(iv.model_copy(update=update))
    return out


def _random_direction(claim: Any, rng: Any) -> list[Any]:
    """Every steering vector replaced by a random direction of the same norm (other interventions kept)."""
    out = []
    for iv in claim.interventions:
        if iv.kind == "steer":
            v = rng.standard_normal(len(iv.vector))
            norm = sum(x * x for x in iv.vector) ** 0.5
            iv = iv.model_copy(update={"vector": [float(x) for x in v * (norm / float((v @ v) ** 0.5))]})
        out.append(iv)
    return out


def _derangement(n: int, rng: Any) -> list[int]:
    while True:
        perm = [int(x) for x in rng.permutation(n)]
        if all(perm[i] != i for i in range(n)):
            return perm


def measure(request: dict[str, Any]) -> dict[str, Any]:
    import mlx.core as mx
    import numpy as np

    import engine
    from engine.interventions import needs_reference, needs_source
    from sandbox.metric import per_pair
    from sandbox.noise_floor import location
    from sandbox.schemas import Claim, PromptPair

    claim = Claim.model_validate(request["claim"])
    pairs = [PromptPair.model_validate(p) for p in request["pairs"]]
    metric, seed, n_null = request["metric"], int(request["seed"]), int(request["n_null"])
    t = time.perf_counter()
    model = engine.load_model(request["model"])
    load_s = time.perf_counter() - t
    groups, excluded, notes = group_by_length(model, pairs)
    # One generator per null mode (seeded by the parent per null family), so a family's draws do not
    # depend on which other modes are measured in the same call.
    seeds = request.get("mode_seeds") or {}
    rngs = {m: np.random.default_rng(int(seeds.get(m, seed))) for m in request["null_modes"]}
    counts = {m: int((request.get("null_counts") or {}).get(m, n_null)) for m in request["null_modes"]}
    include_own = bool(request.get("include_own", False))
    modes = [m for m in request["null_modes"] if m in ("random_components", "shuffled_source", "random_direction")]
    if "shuffled_source" in modes and not (needs_source(claim.interventions) or needs_reference(claim.interventions)):
        modes.remove("shuffled_source")
        notes.append("shuffled_source null skipped: the claim uses no source or reference activations")
    if "shuffled_source" in modes and any(len(ix) < 2 for ix in groups.values()):
        modes.remove("shuffled_source")
        notes.append("shuffled_source null skipped: some token-length group has a single pair")
    if "random_direction" in modes and not any(iv.kind == "steer" for iv in claim.interventions):
        modes.remove("random_direction")
        notes.append("random_direction null skipped: the claim steers along no vector")
    rows: dict[str, list[float]] = defaultdict(list)
    null: dict[str, list[list[float]]] = {m: [[] for _ in range(counts[m])] for m in modes}
    # Location-moving draws are fixed before the groups, so draw k is one location on every pair.
    min_pos = min(groups) if groups else 1
    moved = {m: [(_randomised(claim, model.cfg, min_pos, rngs[m], include_own) if m == "random_components"
                  else _random_direction(claim, rngs[m])) for _ in range(counts[m])]
             for m in modes if m in ("random_components", "random_direction")}
    locations = {m: [location(d) for d in draws] for m, draws in moved.items()}
    if "shuffled_source" in modes:
        locations["shuffled_source"] = [location(claim.interventions)] * counts["shuffled_source"]
    used: list[int] = []
    for n_pos, idx in sorted(groups.items()):
        group = [pairs[i] for i in idx]
        clean = model.to_tokens([p.clean for p in group])
        corr = model.to_tokens([p.corrupted for p in group])
        correct = [model.token_id(p.correct) for p in group]
        wrong = [model.token_id(p.wrong) for p in group]
        src_tok = clean if claim.source == "clean" else corr
        tgt_tok = corr if claim.target == "corrupted" else clean

        # One source forward per group caches every hook any run below reads (the claim's and each null
        # draw's), instead of one source forward per run: half the forwards of a verification.
        sourced = [ivs for ivs in [claim.interventions, *(d for draws in moved.values() for d in draws)]
                   if needs_source(ivs) or needs_reference(ivs)]
        source_cache: dict[str, Any] = {}
        if sourced:
            names = sorted({iv.hook for ivs in sourced for iv in ivs})
            _, cached = model.run_with_cache(src_tok, names=names, logit_positions=[-1])
            source_cache = {h: cached[h] for h in names}

        def run(interventions: list[Any], perm: list[int] | None = None) -> list[float]:
            src = None
            if needs_source(interventions) or needs_reference(interventions):
                hooks = sorted({iv.hook for iv in interventions})
                src = {h: (source_cache[h][mx.array(perm)] if perm is not None else source_cache[h]) for h in hooks}
            logits = model.run_with_hooks(tgt_tok, interventions, source=src, reference=src, logit_positions=[-1])
            return per_pair(metric, logits, correct, wrong)

        m_clean = per_pair(metric, model.forward(clean, logit_positions=[-1]), correct, wrong)
        m_corr = per_pair(metric, model.forward(corr, logit_positions=[-1]), correct, wrong)
        m_tgt = m_corr if claim.target == "corrupted" else m_clean
        m_int = run(claim.interventions)
        keep = list(range(len(idx)))

        def delta(values: list[float]) -> list[float]:
            return [values[j] - m_tgt[j] for j in keep]

        for name, vals in (("clean", m_clean), ("corrupted", m_corr), ("target", m_tgt), ("intervened", m_int)):
            rows[name] += [vals[j] for j in keep]
        rows["deltas"] += delta(m_int)
        used += [idx[j] for j in keep]
        for m, draws in moved.items():
            for k, interventions in enumerate(draws):
                null[m][k] += delta(run(interventions))
        if "shuffled_source" in null:
            for k in range(counts["shuffled_source"]):
                null["shuffled_source"][k] += delta(run(claim.interventions, _derangement(len(idx), rngs["shuffled_source"])))
    # Normalise by the mean clean-corrupted gap over all held-out pairs, not each pair's own gap:
    # a pair whose gap is near zero would otherwise turn a small change into an unbounded effect.
    scale = 1.0
    if claim.normalise:
        gaps = [c - k for c, k in zip(rows["clean"], rows["corrupted"])]
        mean_gap = sum(gaps) / len(gaps) if gaps else 0.0
        if abs(mean_gap) <= GAP_EPS:
            return {"status": "error", "reason": "the clean and corrupted prompts give the same mean metric on the "
                    "held-out pairs, so a normalised effect is undefined", "notes": notes,
                    "durations": {"model_load_s": load_s}}
        scale = mean_gap
    rows["effects"] = [d / scale for d in rows["deltas"]]
    null = {m: [[d / scale for d in draw] for draw in draws] for m, draws in null.items()}
    return {"status": "ok", "metric": metric, "n_pairs": len(used), "effects": rows["effects"],
            "target_metric": rows["target"], "intervened_metric": rows["intervened"],
            "clean_metric": rows["clean"], "corrupted_metric": rows["corrupted"], "null_effects": null,
            "null_locations": locations,
            "excluded_pairs": sorted(excluded), "notes": notes, "seed": seed, "normaliser": scale,
            "durations": {"model_load_s": load_s}}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -I -m sandbox.verify_entry REQUEST_JSON RESULT_FD", file=sys.stderr)
        return 4
    channel = Channel(int(argv[1]))
    request = read_request(argv[0])
    apply_rlimits(request["limits"])
    channel.send({"type": "ready"})
    start = time.perf_counter()
    try:
        circuit = bool((request.get("claim") or {}).get("circuit"))
        result = measure_circuit(request) if circuit else measure(request)
    except Exception as exc:  # noqa: BLE001 - reported to the parent as a failed verification
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-4000:]
        channel.send({"type": "error", "error_type": type(exc).__name__, "error": str(exc)[:2000],
                      "traceback": tb})
        return 1
    result["durations"]["run_s"] = time.perf_counter() - start
    try:
        channel.send({"type": "result", "result": result})
    except ValueError as exc:  # NaN/inf effects (e.g. a steering vector that overflowed the logits)
        channel.send({"type": "error", "error_type": "NonFiniteEffect",
                      "error": f"the claim produced non-finite metric values ({exc}); it cannot be verified"})
        return 1
    channel.close()
    return 0


if __name__ == "__main__":
    exit_now(main(sys.argv[1:]))
