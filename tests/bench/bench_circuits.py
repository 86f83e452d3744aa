"""Circuit-discovery benchmark (issue 11), one run:

  LD_PRELOAD=/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3 \
      .venv/bin/python -m tests.bench.bench_circuits [--out runs/bench-circuits] [--quick]

A. Planted-circuit model: EAP-IG (at the planted size) and ACDC recovery, faithfulness, runtimes; EAP too.
B. Embedded SmolLM2-135M, IOI and factual recall: scores on a discovery half, faithfulness curves on
   the held-out half (MIB sizes), CPR and CMD for EAP, EAP-IG and random circuits side by side,
   bootstrap Jaccard (100 resamples) at several sizes, and an EAP-IG circuit grown to f >= 0.8.
C. Speed on the embedded model: EAP-IG on the full graph vs ACDC on a budget-limited subset (the
   inputs of a mid-depth layer, so each trial recomputes about half the model, the full graph's
   average): seconds per edge scored and their ratio; the time of one whole faithfulness curve;
   a plain forward of the same pairs as the unit; peak memory.
The machine is shared: CPU seconds are printed beside wall seconds, and ratios to a plain forward
measured in the same run are the comparable figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

import mlx.core as mx
import numpy as np

import engine
from engine.circuits import (
    CircuitTask, MIB_PERCENTAGES, acdc, bootstrap_jaccard, build_planted_model, circuit_metrics, compare_methods, eap,
    eap_ig, faithfulness, graph_of, grow_to_faithfulness, select_circuit,
)
from engine.circuits.forward import prepare_runs, split_model
from engine.circuits.selection import topk_masks
from orchestrator.families import factual_recall_pairs, ioi_pairs


def timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # ru_maxrss is KiB on Linux


def recovery(edges: list[str], planted: tuple[str, ...]) -> tuple[float, float]:
    got, truth = set(edges), set(planted)
    return len(got & truth) / len(truth), len(got - truth) / max(1, len(got))


def section_planted(steps: int) -> dict:
    print("\n== A. planted-circuit model (colour lookup, 3 layers x 4 heads / 2 kv heads) ==")
    with tempfile.TemporaryDirectory() as tmp:
        built = build_planted_model(Path(tmp) / "planted")
        model = engine.load_model(str(built.path))
        task = CircuitTask.from_pairs(model, built.pairs(48))
        g = graph_of(model)
        print(f"{g.summary()}; planted edges ({len(built.planted_edges)}): {', '.join(built.planted_edges)}")
        rows = {}
        for name, run in (("eap-ig", lambda: eap_ig(model, task, steps=steps)), ("eap", lambda: eap(model, task))):
            scores, wall, cpu = timed(run)
            c = select_circuit(scores, size=len(built.planted_edges))
            rec, false = recovery(c.edges, built.planted_edges)
            f = float(faithfulness(model, task, c.mask()[None])[0])
            rows[name] = dict(recall=rec, false=false, faithfulness=f, wall_s=wall, cpu_s=cpu)
        for loss, thr in (("metric", 0.3), ("kl", 0.05)):
            res, wall, cpu = timed(lambda: acdc(model, task, threshold=thr, loss=loss))
            rec, false = recovery(res.circuit.edges, built.planted_edges)
            f = float(faithfulness(model, task, res.circuit.mask()[None])[0])
            rows[f"acdc-{loss}@{thr:g}"] = dict(recall=rec, false=false, faithfulness=f, wall_s=wall, cpu_s=cpu,
                                                edges_considered=res.edges_considered)
        stab_ig = select_circuit(eap_ig(model, task, steps=steps), size=len(built.planted_edges)).stability
        stab_acdc, wall, _ = timed(lambda: acdc(model, task, threshold=0.3, loss="metric", bootstrap=100).circuit.stability)
    print(f"{'method':<18}{'recall':>8}{'false':>8}{'faithful':>10}{'wall s':>9}{'cpu s':>8}")
    for name, r in rows.items():
        print(f"{name:<18}{r['recall']:>8.2f}{r['false']:>8.2f}{r['faithfulness']:>10.3f}{r['wall_s']:>9.2f}{r['cpu_s']:>8.2f}")
    print(f"stability: EAP-IG {stab_ig.summary()}")
    print(f"stability: ACDC (metric@0.3, rerun per resample, {wall:.0f} s) {stab_acdc.summary()}")
    rows["stability"] = dict(eap_ig=stab_ig.model_dump(), acdc=stab_acdc.model_dump())
    return rows


def section_family(model, name: str, pairs, steps: int, sizes_for_jaccard: tuple[float, ...]) -> dict:
    print(f"\n== B. {name}: {len(pairs)} pairs, scores on half, curves on the held-out half ==")
    task, held = CircuitTask.from_pairs(model, pairs).split(0.5, seed=0)
    sm = split_model(model)
    runs = prepare_runs(sm, task)
    s_eap, w_eap, c_eap = timed(lambda: eap(model, task, runs=runs))
    s_ig, w_ig, c_ig = timed(lambda: eap_ig(model, task, steps=steps, runs=runs))
    print(f"EAP {w_eap:.1f} s wall / {c_eap:.1f} s cpu; EAP-IG ({steps} steps) {w_ig:.1f} s wall / {c_ig:.1f} s cpu "
          f"on {task.n} pairs")
    held_runs = prepare_runs(sm, held)
    cmp, w_cmp, c_cmp = timed(lambda: compare_methods(model, held, {"eap": s_eap, "eap-ig": s_ig}, runs=held_runs))
    print(f"m(full) {cmp.m_full:.3f}, m(empty) {cmp.m_empty:.3f}; {cmp.circuits_evaluated} circuits x {held.n} "
          f"held-out pairs in {w_cmp:.1f} s wall / {c_cmp:.1f} s cpu")
    header = "".join(f"{p * 100:>7g}%" for p in MIB_PERCENTAGES)
    print(f"{'faithfulness at':<22}{header}")
    for m in cmp.methods:
        for label, curve in (("signed", m.signed), ("|score|", m.absolute)):
            if m.method == "random" and label == "signed":
                continue
            print(f"{m.method + ' ' + label:<22}" + "".join(f"{f:>8.3f}" for f in curve.faithfulness))
    print(f"{'method':<10}{'CPR (higher better)':>22}{'CMD (lower better)':>22}")
    for m in cmp.methods:
        print(f"{m.method:<10}{m.cpr:>22.3f}{m.cmd:>22.3f}")
    g = graph_of(model)
    jac = {}
    print("bootstrap Jaccard (100 resamples, |score| top-k, pruned): " + ", ".join(f"{p * 100:g}%" for p in sizes_for_jaccard))
    for label, s in (("eap", s_eap), ("eap-ig", s_ig)):
        vals = [bootstrap_jaccard(s, int(p * g.n_edges), n_resamples=100, seed=0) for p in sizes_for_jaccard]
        jac[label] = [v.model_dump() for v in vals]
        print(f"  {label:<8}" + "  ".join(f"{v.jaccard_mean:.3f} [{v.jaccard_p05:.2f}-{v.jaccard_p95:.2f}]" for v in vals))
    grown, w_g, c_g = timed(lambda: grow_to_faithfulness(model, task, s_ig, target=0.8, ladder=8, rounds=2, runs=runs))
    held_f = float(faithfulness(model, held, grown.mask()[None], runs=held_runs)[0])
    stab = grown.stability  # 100 seeded resamples, attached by grow_to_faithfulness
    n_nodes = len([n for n in grown.nodes() if n not in ("input", "logits")])
    print(f"EAP-IG circuit grown to f>=0.8: {grown.n_edges} edges ({grown.requested_size} requested), {n_nodes} "
          f"heads/MLPs, faithfulness {grown.faithfulness:.3f}, held-out {held_f:.3f}; {stab.summary()} "
          f"({w_g:.1f} s wall)")
    print("  top edges: " + ", ".join(f"{e} {v:+.3f}" for e, v in grown.top(8)))
    return dict(comparison=json.loads(cmp.model_dump_json()), eap_s=w_eap, eap_ig_s=w_ig, compare_s=w_cmp,
                jaccard=jac, grown=dict(edges=grown.n_edges, faithfulness=grown.faithfulness, held_out=held_f,
                                        jaccard=stab.model_dump(), wall_s=w_g),
                scores_pairs=task.n, held_pairs=held.n)


def section_speed(model, pairs, steps: int, acdc_budget: int, acdc_layer: int) -> dict:
    print("\n== C. speed on the embedded model (IOI) ==")
    task = CircuitTask.from_pairs(model, pairs)
    g = graph_of(model)
    sm = split_model(model)
    plain = []
    for _ in range(3):
        _, w, _ = timed(lambda: mx.eval(model.forward(task.clean, logit_positions=[-1])))
        plain.append(w)
    unit = statistics.median(plain)
    runs = prepare_runs(sm, task)
    s_ig, w_ig, c_ig = timed(lambda: eap_ig(model, task, steps=steps, runs=runs))
    receivers = [n for n in g.receiver_names if n.startswith((f"a{acdc_layer}.", f"m{acdc_layer}"))
                 and (n == f"m{acdc_layer}" or "<" in n)]
    res, w_acdc, c_acdc = timed(lambda: acdc(model, task, threshold=0.01, loss="kl", max_edges=acdc_budget,
                                              receivers=receivers))
    ig_per_edge = w_ig / g.n_edges
    acdc_per_edge = w_acdc / max(1, res.edges_considered)
    masks = topk_masks(g, s_ig.array(), [int(p * g.n_edges) for p in MIB_PERCENTAGES], absolute=True)
    _, w_curve, c_curve = timed(lambda: circuit_metrics(model, task, masks, runs=runs))
    rows = len(MIB_PERCENTAGES) * task.n
    print(f"plain forward of the {task.n} pairs (the unit): {unit:.2f} s (median of 3)")
    print(f"EAP-IG ({steps} steps, full graph, {g.n_edges} edges): {w_ig:.1f} s wall / {c_ig:.1f} s cpu = "
          f"{ig_per_edge * 1e3:.3f} ms per edge ({w_ig / unit:.1f} plain forwards)")
    print(f"ACDC (KL, inputs of layer {acdc_layer}, budget {acdc_budget} edges): {res.edges_considered} edges in "
          f"{w_acdc:.1f} s wall / {c_acdc:.1f} s cpu = {acdc_per_edge * 1e3:.1f} ms per edge")
    print(f"ratio ACDC / EAP-IG per edge scored: {acdc_per_edge / ig_per_edge:.0f}x; ACDC on the full graph would "
          f"take about {acdc_per_edge * g.n_edges / 3600:.1f} h at this rate (EAP-IG: {w_ig:.0f} s)")
    print(f"one faithfulness curve ({len(MIB_PERCENTAGES)} circuits x {task.n} pairs = {rows} patched rows): "
          f"{w_curve:.1f} s wall / {c_curve:.1f} s cpu = {w_curve / unit:.1f} plain forwards of the pairs "
          f"({w_curve / unit / len(MIB_PERCENTAGES):.2f} per circuit)")
    return dict(plain_forward_s=unit, eap_ig_s=w_ig, eap_ig_ms_per_edge=ig_per_edge * 1e3, acdc_s=w_acdc,
                acdc_edges=res.edges_considered, acdc_ms_per_edge=acdc_per_edge * 1e3,
                ratio=acdc_per_edge / ig_per_edge, curve_s=w_curve, curve_rows=rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="runs/bench-circuits", help="directory for results.json")
    ap.add_argument("--quick", action="store_true", help="fewer pairs and steps (a smoke run)")
    ap.add_argument("--steps", type=int, default=5, help="EAP-IG interpolation steps")
    ap.add_argument("--acdc-budget", type=int, default=40)
    args = ap.parse_args()
    n_ioi, n_recall, steps = (8, 8, 2) if args.quick else (32, 28, args.steps)
    t0 = time.perf_counter()
    print(f"cores: {os.cpu_count()}, OpenBLAS preloaded: {'openblas' in os.environ.get('LD_PRELOAD', '')}")
    results = {"planted": section_planted(steps=8)}
    model = engine.load_model("smollm2-135m")
    print(f"\nembedded model: {graph_of(model).summary()}")
    results["ioi"] = section_family(model, "IOI", ioi_pairs(n_ioi, seed=0), steps, (0.005, 0.01, 0.05))
    results["factual_recall"] = section_family(model, "factual recall", factual_recall_pairs(n_recall, seed=0), steps,
                                               (0.005, 0.01, 0.05))
    results["speed"] = section_speed(model, ioi_pairs(8 if not args.quick else 4, seed=1), steps,
                                     args.acdc_budget if not args.quick else 10, acdc_layer=14)
    results["peak_gib"] = peak_gib()
    results["wall_s"] = time.perf_counter() - t0
    print(f"\npeak memory {results['peak_gib']:.2f} GiB (limit 4 GiB); whole benchmark {results['wall_s']:.0f} s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(f"results in {out / 'results.json'}")


if __name__ == "__main__":
    main()
