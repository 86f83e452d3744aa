"""Experiment templates of the builtin programme, rendered into the sandbox as ordinary experiment files.

Each file imports only what the guard allows (engine, engine.methods, numpy, math) and defines
run(ctx). Candidate claims are first measured on the exploration split inside the experiment, and
only claims with a notable exploration effect are submitted, each asking for at least half of that
effect on the held-out split: the verifier, not this code, decides what is kept.
"""

from __future__ import annotations

from string import Template
from typing import Any

HEADER = '''"""Builtin experiment: $slug (generated from orchestrator/agent/templates.py)."""
import math

import numpy as np

import engine
from engine import methods
from engine.interventions import Patch

PARAMS = $params
SEED = $seed
NOTABLE = 0.15  # smallest exploration effect worth sending to the verifier


def patch(hook, positions=None, heads=None):
    return Patch(hook=hook, positions=positions, heads=heads)


def measure(ctx, interventions, target="corrupted", source="clean"):
    """Mean change of the metric over the mean clean-corrupted gap on the exploration pairs (as the verifier defines it)."""
    model = ctx.model
    hooks = sorted(set(iv.hook for iv in interventions))
    clean_logits, clean_cache = model.run_with_cache(ctx.clean_tokens, names=hooks, logit_positions=[-1])
    corrupted_logits, corrupted_cache = model.run_with_cache(ctx.corrupted_tokens, names=hooks, logit_positions=[-1])
    src = clean_cache if source == "clean" else corrupted_cache
    base_tokens = ctx.corrupted_tokens if target == "corrupted" else ctx.clean_tokens
    patched = model.run_with_hooks(base_tokens, interventions, source=src, reference=src, logit_positions=[-1])
    clean_m = np.array(ctx.metric(clean_logits))
    corrupted_m = np.array(ctx.metric(corrupted_logits))
    patched_m = np.array(ctx.metric(patched))
    base = corrupted_m if target == "corrupted" else clean_m
    return float(np.mean(patched_m - base) / np.mean(clean_m - corrupted_m))


def claim(statement, interventions, effect, target="corrupted", source="clean"):
    direction = "increase" if effect > 0 else "decrease"
    return {
        "statement": statement,
        "interventions": [iv.model_dump(mode="json") for iv in interventions],
        "target": target,
        "source": source,
        "normalise": True,
        "expected_direction": direction,
        "min_effect": round(max(0.1, 0.5 * abs(effect)), 3),
    }


def heatmap(title, values, x_ticks, y_ticks, x_label="position", y_label="layer"):
    return {"type": "heatmap", "title": title, "values": values, "x_ticks": x_ticks, "y_ticks": y_ticks,
            "x_label": x_label, "y_label": y_label}


def head_code(layer, head):
    return float(layer * 100 + head)


def clean_ticks(result):
    return [t for t in result.clean_str_tokens] or [str(i) for i in range(len(result.labels[-1]))]
'''

BODIES: dict[str, str] = {}

BODIES["logit-lens"] = '''
def run(ctx):
    clean = methods.logit_lens(ctx.model, ctx.clean_tokens, ctx.correct_ids, ctx.wrong_ids)
    corrupted = methods.logit_lens(ctx.model, ctx.corrupted_tokens, ctx.correct_ids, ctx.wrong_ids)
    # The same answer pair read off both prompts: token priors cancel, what remains depends on the prompt.
    grid = np.array(clean.values) - np.array(corrupted.values)  # [layer, position]
    final = grid[:, -1]
    target = float(final[-1])
    crossing = [i for i, v in enumerate(final) if v >= 0.5 * target] if target > 0 else []
    lens_layer = crossing[0] if crossing else -1
    lens_label = clean.labels[0][lens_layer] if lens_layer >= 0 else "never"
    return {
        "summary": clean.summary() + f" Clean minus corrupted lens difference at the final position reaches half of "
                   f"its final value ({target:.3f}) at {lens_label}.",
        "measurements": {
            "k_gap": target,
            "k_lens_layer": float(lens_layer),
            "lens_clean": clean.model_dump(mode="json"),
            "lens_corrupted": corrupted.model_dump(mode="json"),
            "figures": [
                heatmap("Logit lens: clean minus corrupted logit difference by layer and position", grid.tolist(),
                        clean.labels[1], clean.labels[0]),
                {"type": "line", "title": "Logit lens at the final position (clean minus corrupted)", "x_label": "layer",
                 "y_label": "logit difference", "x_ticks": clean.labels[0], "values": [float(v) for v in final]},
            ],
        },
        "claims": [],
    }
'''

BODIES["resid-sweep"] = '''
def run(ctx):
    res = methods.activation_patching(ctx.model, ctx.clean_tokens, ctx.corrupted_tokens, ctx.correct_ids,
                                      ctx.wrong_ids, hook="resid_pre", metric=ctx.metric_name)
    grid = np.array(res.values)  # [layer, position], 0 = corrupted, 1 = clean
    n_layers, n_pos = grid.shape
    final = grid[:, -1]
    strong = [l for l in range(n_layers) if final[l] >= 0.8]
    l_final = strong[0] if strong else int(np.argmax(final))
    side = grid[:, :-1].max(axis=1) if n_pos > 1 else np.zeros(n_layers)
    carrying = [l for l in range(n_layers) if side[l] >= 0.2]
    l_side = carrying[-1] if carrying else -1
    claims = []
    ivs = [patch(f"blocks.{l_final}.hook_resid_pre", positions=[-1])]
    effect = measure(ctx, ivs)
    if abs(effect) >= NOTABLE:
        claims.append(claim(f"From layer {l_final} on, the final position's residual stream carries the answer: patching "
                            f"the clean resid_pre at layer {l_final}, final position, into the corrupted run restores "
                            f"at least {max(0.1, 0.5 * abs(effect)):.2f} of the clean-corrupted gap.", ivs, effect))
    if l_side >= 0 and n_pos > 1:
        ivs = [patch(f"blocks.{l_side}.hook_resid_pre", positions=list(range(n_pos - 1)))]
        effect = measure(ctx, ivs)
        if abs(effect) >= NOTABLE:
            claims.append(claim(f"Up to layer {l_side} the answer still lives at the earlier (subject) positions: patching "
                                f"the clean resid_pre at layer {l_side} at every position except the last restores at "
                                f"least {max(0.1, 0.5 * abs(effect)):.2f} of the gap.", ivs, effect))
    return {
        "summary": res.summary() + f" Final position recovers >= 0.8 from layer {l_final}; earlier positions matter up to layer {l_side}.",
        "measurements": {
            "k_final_layer": float(l_final),
            "k_side_layer": float(l_side),
            "patching": res.model_dump(mode="json"),
            "figures": [heatmap("Activation patching, resid_pre (clean into corrupted, normalised)", grid.tolist(),
                                clean_ticks(res), res.labels[0])],
        },
        "claims": claims,
    }
'''

BODIES["attn-mlp-sweep"] = '''
def run(ctx):
    model = ctx.model
    args = (model, ctx.clean_tokens, ctx.corrupted_tokens, ctx.correct_ids, ctx.wrong_ids)
    # Attention output at the final position only (where the resid sweep says the answer arrives), and each
    # MLP layer at every position at once: 2 x n_layers cells instead of two full layer x position grids.
    attn = methods.activation_patching(*args, hook="attn_out", positions=[-1], metric=ctx.metric_name)
    mlp = methods.activation_patching(*args, hook="mlp_out", per_position=False, metric=ctx.metric_name)
    attn_final = np.array(attn.values).reshape(-1)  # [layer]
    mlp_total = np.array(mlp.values).reshape(-1)  # [layer]
    layers = [f"L{l}" for l in range(attn_final.shape[0])]
    attn_layers = [int(l) for l in np.argsort(-attn_final, kind="stable")[:6]]
    # MLP0 at every position acts as an extended token embedding (patching it swaps the subject's identity),
    # so it is reported but left out of the recall claim.
    mlp_layers = [int(l) for l in np.argsort(-mlp_total, kind="stable") if l != 0][:3]
    note = f" MLP0 alone restores {mlp_total[0]:.2f} (extended embedding: it re-encodes the subject tokens)." if mlp_total.shape[0] else ""
    claims = []
    top = sorted(attn_layers[:3])
    ivs = [patch(f"blocks.{l}.hook_attn_out", positions=[-1]) for l in top]
    effect = measure(ctx, ivs)
    if abs(effect) >= NOTABLE:
        claims.append(claim(f"Attention at layers {top} moves the answer to the final position: patching their clean "
                            f"outputs at the final position restores at least {max(0.1, 0.5 * abs(effect)):.2f} of the gap.",
                            ivs, effect))
    ivs = [patch(f"blocks.{l}.hook_mlp_out") for l in sorted(mlp_layers)]
    effect = measure(ctx, ivs)
    if abs(effect) >= NOTABLE:
        claims.append(claim(f"MLP layers {sorted(mlp_layers)} recall the answer: patching their clean outputs at every "
                            f"position restores at least {max(0.1, 0.5 * abs(effect)):.2f} of the gap.", ivs, effect))
    measurements = {"attn_out": attn.model_dump(mode="json"), "mlp_out": mlp.model_dump(mode="json"),
                    "figures": [{"type": "bar", "title": "Activation patching by layer (clean into corrupted, normalised)",
                                 "x_label": "layer", "y_label": "fraction of gap restored", "x_ticks": layers,
                                 "series": {"attn_out at final position": [float(v) for v in attn_final],
                                            "mlp_out at all positions": [float(v) for v in mlp_total]}}]}
    for i, l in enumerate(attn_layers):
        measurements[f"k_attn_layer{i + 1}"] = float(l)
    for i, l in enumerate(mlp_layers):
        measurements[f"k_mlp_layer{i + 1}"] = float(l)
    return {"summary": attn.summary() + " | " + mlp.summary() + note, "measurements": measurements, "claims": claims}
'''

BODIES["direct-logit-attribution"] = '''
def run(ctx):
    res = methods.direct_logit_attribution(ctx.model, ctx.clean_tokens, ctx.correct_ids, ctx.wrong_ids)
    heads = np.array(res.heads)  # [layer, head]
    order = np.argsort(-heads.ravel(), kind="stable")[:3]
    top = [(int(i // heads.shape[1]), int(i % heads.shape[1])) for i in order]
    claims = []
    by_layer = {}
    for l, h in top:
        by_layer.setdefault(l, []).append(h)
    ivs = [patch(f"blocks.{l}.attn.hook_z", positions=[-1], heads=sorted(hs)) for l, hs in sorted(by_layer.items())]
    effect = measure(ctx, ivs, target="clean", source="corrupted")
    names = ", ".join(f"L{l}H{h}" for l, h in top)
    if abs(effect) >= NOTABLE:
        claims.append(claim(f"Heads {names} (largest direct logit attribution) are needed at the final position: patching "
                            f"their corrupted outputs into the clean run removes at least {max(0.1, 0.5 * abs(effect)):.2f} "
                            f"of the gap.", ivs, effect, target="clean", source="corrupted"))
    measurements = {"dla": res.model_dump(mode="json"),
                    "figures": [heatmap("Direct logit attribution per head (clean prompts)", heads.tolist(),
                                        [f"H{h}" for h in range(heads.shape[1])], [f"L{l}" for l in range(heads.shape[0])],
                                        x_label="head"),
                                {"type": "bar", "title": "Direct logit attribution per layer", "x_label": "layer",
                                 "y_label": "logit difference", "x_ticks": [f"L{l}" for l in range(heads.shape[0])],
                                 "series": {"attention": [float(v) for v in res.attn], "MLP": [float(v) for v in res.mlp]}}]}
    for i, (l, h) in enumerate(top):
        measurements[f"k_dla_head{i + 1}"] = head_code(l, h)
    return {"summary": res.summary(), "measurements": measurements, "claims": claims}
'''

BODIES["head-sweep"] = '''
def run(ctx):
    res = methods.activation_patching(ctx.model, ctx.clean_tokens, ctx.corrupted_tokens, ctx.correct_ids, ctx.wrong_ids,
                                      hook="z", positions=[-1], per_position=False, metric=ctx.metric_name)
    grid = np.array(res.values).reshape(ctx.model.cfg.n_layers, -1)  # [layer, head] at the final position
    order = np.argsort(-grid.ravel(), kind="stable")[:5]
    top = [(int(i // grid.shape[1]), int(i % grid.shape[1])) for i in order]
    claims = []
    by_layer = {}
    for l, h in top[:3]:
        by_layer.setdefault(l, []).append(h)
    ivs = [patch(f"blocks.{l}.attn.hook_z", positions=[-1], heads=sorted(hs)) for l, hs in sorted(by_layer.items())]
    effect = measure(ctx, ivs)
    names = ", ".join(f"L{l}H{h}" for l, h in top[:3])
    if abs(effect) >= NOTABLE:
        claims.append(claim(f"Heads {names} carry the answer into the final position: patching their clean outputs there "
                            f"restores at least {max(0.1, 0.5 * abs(effect)):.2f} of the gap.", ivs, effect))
    measurements = {"heads": res.model_dump(mode="json"),
                    "figures": [heatmap("Per-head patching of hook_z at the final position (normalised)", grid.tolist(),
                                        [f"H{h}" for h in range(grid.shape[1])], [f"L{l}" for l in range(grid.shape[0])],
                                        x_label="head")]}
    for i, (l, h) in enumerate(top):
        measurements[f"k_head{i + 1}"] = head_code(l, h)
    return {"summary": res.summary(), "measurements": measurements, "claims": claims}
'''

BODIES["attribution-check"] = '''
def pearson(a, b):
    a, b = np.array(a).ravel(), np.array(b).ravel()
    return float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else 0.0


def run(ctx):
    args = (ctx.model, ctx.clean_tokens, ctx.corrupted_tokens, ctx.correct_ids, ctx.wrong_ids)
    # Activation patching only where it is cheap (the final position: one recomputed position per row);
    # attribution patching gives the whole grid from one backward pass.
    att = methods.attribution_patching(*args, hook="resid_pre", metric=ctx.metric_name)
    act_final = methods.activation_patching(*args, hook="resid_pre", positions=[-1], metric=ctx.metric_name)
    att_heads = methods.attribution_patching(*args, hook="z", positions=[-1], per_position=False, metric=ctx.metric_name)
    act_heads = methods.activation_patching(*args, hook="z", positions=[-1], per_position=False, metric=ctx.metric_name)
    r_resid = pearson(np.array(att.values)[:, -1], act_final.values)
    r_heads = pearson(att_heads.values, act_heads.values)
    return {
        "summary": f"Attribution vs activation patching: Pearson r = {r_resid:.3f} on resid_pre at the final position "
                   f"({len(act_final.labels[0])} layers), r = {r_heads:.3f} on per-head outputs at the final position. "
                   + att.summary(),
        "measurements": {"k_pearson_r": r_resid, "k_pearson_r_heads": r_heads,
                         "attribution": att.model_dump(mode="json"),
                         "figures": [heatmap("Attribution patching, resid_pre (linear estimate, normalised)",
                                             np.array(att.values).tolist(), clean_ticks(att), att.labels[0]),
                                     {"type": "line", "title": "resid_pre at the final position: attribution vs activation",
                                      "x_label": "layer", "y_label": "fraction of gap", "x_ticks": act_final.labels[0],
                                      "series": {"attribution": [float(v) for v in np.array(att.values)[:, -1]],
                                                 "activation": [float(v) for v in np.array(act_final.values).ravel()]}}]},
        "claims": [],
    }
'''

BODIES["path-patching"] = '''
def run(ctx):
    heads = [tuple(h) for h in PARAMS.get("heads", [])]
    if len(heads) < 2:
        return {"summary": "Path patching skipped: fewer than two candidate heads from the head sweep.",
                "measurements": {}, "claims": []}
    sender = min(heads)  # the earliest candidate head sends; later candidates receive
    receivers = [h for h in heads if h[0] > sender[0]]
    if not receivers:
        return {"summary": f"Path patching skipped: all candidate heads sit in layer {sender[0]}.",
                "measurements": {}, "claims": []}
    results = {}
    for inp in ("q", "k", "v"):
        res = methods.path_patching(ctx.model, ctx.clean_tokens, ctx.corrupted_tokens,
                                    sender=methods.Head(layer=sender[0], head=sender[1]),
                                    receivers=[methods.Head(layer=l, head=h) for l, h in receivers],
                                    correct_ids=ctx.correct_ids, wrong_ids=ctx.wrong_ids,
                                    receiver_input=inp, metric=ctx.metric_name)
        results[inp] = res
    best = max(results, key=lambda k: abs(results[k].value))
    return {
        "summary": " | ".join(r.summary() for r in results.values()),
        "measurements": {"k_path_value": float(results[best].value),
                         "paths": {k: r.model_dump(mode="json") for k, r in results.items()},
                         "figures": [{"type": "bar", "title": f"Path patching from L{sender[0]}H{sender[1]} by receiver input",
                                      "x_label": "receiver input", "y_label": "fraction of gap",
                                      "x_ticks": list(results), "values": [float(r.value) for r in results.values()]}]},
        "claims": [],
    }
'''

BODIES["circuit-check"] = '''
def run(ctx):
    heads = [tuple(h) for h in PARAMS.get("heads", [])]
    mlps = list(PARAMS.get("mlp_layers", []))
    components = [methods.Head(layer=l, head=h) for l, h in heads] + [methods.MLP(layer=l) for l in mlps]
    if not components:
        return {"summary": "Circuit check skipped: no candidate components.", "measurements": {}, "claims": []}
    res = methods.circuit_check(ctx.model, ctx.clean_tokens, ctx.corrupted_tokens, components=components,
                                correct_ids=ctx.correct_ids, wrong_ids=ctx.wrong_ids, metric=ctx.metric_name)
    by_layer = {}
    for l, h in heads:
        by_layer.setdefault(l, []).append(h)
    ivs = [patch(f"blocks.{l}.attn.hook_z", heads=sorted(hs)) for l, hs in sorted(by_layer.items())]
    ivs += [patch(f"blocks.{l}.hook_mlp_out") for l in sorted(mlps)]
    names = ", ".join(str(c) for c in components)
    claims = []
    effect = measure(ctx, ivs)
    if abs(effect) >= NOTABLE:
        claims.append(claim(f"The candidate circuit ({names}) is sufficient: patching only its clean outputs into the "
                            f"corrupted run restores at least {max(0.1, 0.5 * abs(effect)):.2f} of the gap.", ivs, effect))
    effect_n = measure(ctx, ivs, target="clean", source="corrupted")
    if abs(effect_n) >= NOTABLE:
        claims.append(claim(f"The candidate circuit ({names}) is necessary: patching its corrupted outputs into the clean "
                            f"run removes at least {max(0.1, 0.5 * abs(effect_n)):.2f} of the gap.", ivs, effect_n,
                            target="clean", source="corrupted"))
    nodes = [{"id": str(c), "label": str(c), "layer": c.layer} for c in components] + [{"id": "logits", "label": "logits", "layer": ctx.model.cfg.n_layers}]
    edges = [{"source": str(c), "target": "logits", "weight": 1.0} for c in components]
    return {
        "summary": res.summary() + f" Patching the circuit: sufficiency effect {effect:.3f}, necessity effect {effect_n:.3f}.",
        "measurements": {"k_necessity": float(res.necessity), "k_sufficiency": float(res.sufficiency),
                         "circuit": res.model_dump(mode="json"),
                         "figures": [{"type": "graph", "title": "Candidate circuit", "nodes": nodes, "edges": edges}]},
        "claims": claims,
    }
'''

BODIES["edge-circuit"] = """
from engine import circuits

TARGET = PARAMS.get("target", 0.8)  # exploration faithfulness the circuit is grown to
STEPS = PARAMS.get("steps", 5)  # EAP-IG interpolation steps
MIN_FAITHFULNESS = PARAMS.get("min_faithfulness", 0.5)  # held-out faithfulness the claim asks the verifier for
MAX_EDGES = 20000  # the largest circuit a claim may name
REFINE = 8  # sizes tried between the two ladder points that bracket the target
METRICS = {"logit_diff": "logit_diff", "prob_correct": "prob"}


def grow(model, task, graph, arr, curve):
    # The smallest top-k circuit reaching TARGET, edges in signed order (those whose patching lowers the metric,
    # i.e. that support the clean answer, first; then pruned to input->logits paths): bracketed on the MIB ladder
    # the comparison measured, then REFINE sizes in between are tried in one batched patched forward.
    sizes, fs = curve.requested_edges, curve.faithfulness
    hi = next((i for i, f in enumerate(fs) if f >= TARGET), len(fs) - 1)
    lo_k, hi_k = (sizes[hi - 1] if hi > 0 else 0), sizes[hi]
    ks = sorted(set(int(round(lo_k + (hi_k - lo_k) * (i + 1) / (REFINE + 1))) for i in range(REFINE)) - {0})
    masks = [circuits.topk_mask(graph, arr, k, absolute=False) for k in ks]
    f_ks = [float(v) for v in circuits.faithfulness(model, task, np.stack(masks))] if ks else []
    best = next(((k, f) for k, f in zip(ks, f_ks) if f >= TARGET), (hi_k, float(fs[hi])))
    return best[0], best[1], [[k, f] for k, f in zip(ks, f_ks)]


def run(ctx):
    model = ctx.model
    task = circuits.CircuitTask.from_tokens(ctx.clean_tokens, ctx.corrupted_tokens, ctx.correct_ids, ctx.wrong_ids,
                                            metric=METRICS.get(ctx.metric_name, "logit_diff"))
    graph = circuits.graph_of(model)
    scores = circuits.eap_ig(model, task, steps=STEPS)
    arr = scores.array()
    cmp = circuits.compare_methods(model, task, {"eap-ig": scores}, seed=SEED)
    ig, rnd = cmp.get("eap-ig"), cmp.get("random")
    k, f, tried = grow(model, task, graph, arr, ig.signed)
    circuit = circuits.circuit_from_mask(graph, circuits.topk_mask(graph, arr, k, absolute=False), model=model.cfg.name,
                                         method=f"eap-ig signed top-k grown to f>={TARGET:g}", scores=arr,
                                         requested_size=k)
    stab = circuits.bootstrap_jaccard(scores, k, absolute=False, seed=SEED)
    nodes = [n for n in circuit.nodes() if n not in ("input", "logits")]
    claims = []
    if f >= TARGET and circuit.n_edges <= MAX_EDGES:
        claims.append({
            "statement": f"An edge-level circuit of {circuit.n_edges} edges ({len(nodes)} heads/MLPs; the {k} edges with "
                         f"the most negative EAP-IG scores, {STEPS} steps, pruned to input->logits paths) reproduces at "
                         f"least {MIN_FAITHFULNESS:.2f} of the model's clean-corrupted metric difference on held-out "
                         f"pairs (faithfulness {f:.2f} on the exploration pairs), clearly more than random circuits of "
                         f"its size, and keeps its edges when the pairs are resampled.",
            "circuit": {"edges": circuit.edges, "edge_scores": circuit.edge_scores, "method": "eap-ig",
                        "ig_steps": STEPS, "requested_size": k, "signed": True},
            "expected_direction": "increase",
            "min_effect": MIN_FAITHFULNESS,
        })
    pct = [f"{p * 100:g}%" for p in ig.signed.percentages]
    curves = {"EAP-IG (signed)": ig.signed.faithfulness, "EAP-IG (|score|)": ig.absolute.faithfulness,
              "random": rnd.absolute.faithfulness}
    return {
        "summary": f"{scores.summary()} {cmp.summary()} Circuit: the {k} edges whose patching lowers the metric most "
                   f"(signed EAP-IG score), pruned to {circuit.n_edges} edges on input->logits paths, faithfulness "
                   f"{f:.3f} on the exploration pairs; {stab.summary()}. Nodes: {', '.join(nodes[:20])}"
                   f"{' ...' if len(nodes) > 20 else ''}.",
        "measurements": {
            "k_circuit_edges": float(circuit.n_edges), "k_faithfulness": f, "k_cpr": ig.cpr, "k_cmd": ig.cmd,
            "k_random_cpr": rnd.cpr, "k_random_cmd": rnd.cmd, "k_jaccard": stab.jaccard_mean,
            "comparison": cmp.model_dump(mode="json"), "stability": stab.model_dump(mode="json"),
            "growth": tried, "top_edges": [[e, v] for e, v in scores.top(20)],
            "figures": [{"type": "line", "title": "Faithfulness of top-k circuits on the exploration pairs (MIB sizes)",
                         "x_label": "circuit size (share of edges)", "y_label": "faithfulness", "x_ticks": pct,
                         "series": curves}],
        },
        "claims": claims,
    }
"""


BODIES["synthesis"] = '''
def run(ctx):
    clean_m = np.array(ctx.metric(ctx.model.forward(ctx.clean_tokens, logit_positions=[-1])))
    corrupted_m = np.array(ctx.metric(ctx.model.forward(ctx.corrupted_tokens, logit_positions=[-1])))
    correct = float(np.mean(clean_m > 0))
    return {"summary": f"Baseline re-measured: clean {clean_m.mean():.3f}, corrupted {corrupted_m.mean():.3f}; the clean "
                       f"answer beats the wrong one on {correct:.0%} of exploration pairs.",
            "measurements": {"k_clean_correct_fraction": correct}, "claims": []}
'''


class UnknownTemplateError(KeyError):
    """The programme asked for a template that does not exist."""


def render(slug: str, params: dict[str, Any], *, seed: int) -> str:
    if slug not in BODIES:
        raise UnknownTemplateError(f"no builtin template for step {slug!r}; known: {sorted(BODIES)}")
    header = Template(HEADER).substitute(slug=slug, params=repr(params), seed=int(seed))
    return header + BODIES[slug]
