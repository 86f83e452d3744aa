"""Engine methods benchmark (issue 3): the resid_pre patching grid on the embedded model, side by side.

Eiffel Tower -> Colosseum, 30 layers x 9 positions (270 patches), denoising, logit difference:
  per-patch loop      one run_with_hooks(Patch) per patch (the obviously-correct reference)
  plain batched       all 270 patched runs as rows of full forwards (chunks of 135 rows)
  reuse sweep         engine.methods.activation_patching (recomputes only what each patch changes)
  attribution         engine.methods.attribution_patching (one forward + one backward)
  per-head sweep      activation_patching(hook="z"), 30 layers x 9 heads
plus peak memory, Pearson r between attribution and activation patching, agreement between the
implementations, DLA and logit lens times. Medians over interleaved repetitions; wall and CPU seconds.

Run:  .venv/bin/python -m tests.bench.bench_engine_methods   (re-executes itself with engine.blas.blas_env()
      when no OpenBLAS is preloaded: LD_PRELOAD only takes effect at process start)
The machine may be shared: the load average is printed, compare ratios measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time

import mlx.core as mx
import numpy as np

CLEAN, CORRUPTED = "The Eiffel Tower is in the city of", "The Colosseum is in the city of"
QUOTED = {"plain torch batched": 2.96, "TransformerLens patching": 51.4}  # DESIGN.md section 7, a quiet machine


def timed(fn) -> tuple[float, float, object]:
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w0, time.process_time() - c0, out


def per_patch_loop(m, clean, corrupted, correct, wrong) -> np.ndarray:
    from engine import metrics
    from engine.interventions import Patch

    n, P = m.cfg.n_layers, clean.shape[1]
    names = [f"blocks.{l}.hook_resid_pre" for l in range(n)]
    _, src = m.run_with_cache(clean, names=names, logit_positions=[-1])
    out = np.zeros((n, P))
    for layer in range(n):
        for p in range(P):
            logits = m.run_with_hooks(corrupted, [Patch(hook=names[layer], positions=[p])], source=src, logit_positions=[-1])
            out[layer, p] = float(metrics.logit_diff(logits, correct, wrong).item())
    return out


def _with_openblas() -> None:
    """Re-execute this script with OpenBLAS preloaded (engine.blas) unless it already is."""
    import sys

    from engine.blas import blas_active, blas_env

    extra = blas_env(warn=True)
    if not blas_active() and extra:
        os.execve(sys.executable, [sys.executable, "-m", "tests.bench.bench_engine_methods", *sys.argv[1:]],
                  {**os.environ, **extra})


def main() -> None:
    _with_openblas()
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3, help="repetitions of each fast method (median reported)")
    ap.add_argument("--loop-repeats", type=int, default=1, help="repetitions of the slow per-patch loop")
    args = ap.parse_args()

    import engine
    from engine.blas import blas_active
    from engine.methods import activation_patching, attribution_patching, direct_logit_attribution, logit_lens
    from tests.engine.methods.reference import plain_batched_resid_pre

    print(f"load average at start: {os.getloadavg()}; OpenBLAS preloaded: {blas_active()}; cores: {os.cpu_count()}")
    m = engine.load_model("smollm2-135m")
    clean, corrupted = m.to_tokens(CLEAN), m.to_tokens(CORRUPTED)
    correct, wrong = m.token_id(" Paris"), m.token_id(" Rome")
    activation_patching(m, clean, corrupted, correct, wrong)  # warm-up (kernel compilation)
    attribution_patching(m, clean, corrupted, correct, wrong)

    t = {k: [] for k in ("reuse", "batched", "attr", "heads", "dla_lens")}
    cpu = {k: [] for k in t}
    peak = 0
    for _ in range(args.repeats):  # interleaved, so a busy neighbour hits every method alike
        mx.reset_peak_memory()
        w, c, reuse = timed(lambda: activation_patching(m, clean, corrupted, correct, wrong))
        peak = max(peak, mx.get_peak_memory())
        t["reuse"].append(w), cpu["reuse"].append(c)
        w, c, batched = timed(lambda: plain_batched_resid_pre(m, clean, corrupted, correct, wrong, rows_per_batch=135))
        t["batched"].append(w), cpu["batched"].append(c)
        w, c, attr = timed(lambda: attribution_patching(m, clean, corrupted, correct, wrong))
        t["attr"].append(w), cpu["attr"].append(c)
        w, c, heads = timed(lambda: activation_patching(m, clean, corrupted, correct, wrong, hook="z"))
        t["heads"].append(w), cpu["heads"].append(c)
        w, c, _ = timed(lambda: (direct_logit_attribution(m, clean, correct, wrong), logit_lens(m, clean, correct, wrong)))
        t["dla_lens"].append(w), cpu["dla_lens"].append(c)
    loop_times, loop_cpu = [], []
    for _ in range(args.loop_repeats):
        w, c, loop = timed(lambda: per_patch_loop(m, clean, corrupted, correct, wrong))
        loop_times.append(w), loop_cpu.append(c)
    med = {k: statistics.median(v) for k, v in t.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    med["loop"], med_cpu["loop"] = statistics.median(loop_times), statistics.median(loop_cpu)

    raw = np.asarray(reuse.raw)
    heads_attr = attribution_patching(m, clean, corrupted, correct, wrong, hook="z")
    r_resid = float(np.corrcoef(attr.grid().ravel(), reuse.grid().ravel())[0, 1])
    r_heads = float(np.corrcoef(heads_attr.grid().ravel(), heads.grid().ravel())[0, 1])
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB -> GiB on Linux

    def row(name: str, key: str, note: str = "") -> None:
        print(f"  {name:<34} {med[key]:8.3f} s wall {med_cpu[key]:8.3f} s cpu  {note}")

    print(f"\nresid_pre grid 30 x 9 (270 patches), medians of {args.repeats} (loop: {args.loop_repeats}):")
    row("per-patch loop (270 forwards)", "loop")
    row("plain batched (270 rows, full)", "batched")
    row("reuse sweep (engine.methods)", "reuse", f"rows run {reuse.rows_computed}, skipped {reuse.rows_skipped}")
    row("attribution patching", "attr")
    row("per-head sweep (z, 30 x 9 heads)", "heads")
    row("DLA + logit lens", "dla_lens")
    print("\nratios (same run):")
    checks = [
        ("reuse vs per-patch loop", med["loop"] / med["reuse"], 5.0),
        ("reuse vs plain batched", med["batched"] / med["reuse"], None),
        # issue 3's target is against "the batched sweep" (patched runs as rows of one forward): the plain
        # batched one; the reuse sweep (issue 12) came later and is itself ~5x faster. Both are judged.
        ("attribution vs reuse sweep", med["reuse"] / med["attr"], 10.0),
        ("attribution vs plain batched", med["batched"] / med["attr"], 10.0),
    ]
    notes = {"attribution vs reuse sweep": "(vs engine.methods.activation_patching, the faster sweep)",
             "attribution vs plain batched": "(vs issue 3's batched sweep: patched runs as rows of full forwards)"}
    for name, ratio, target in checks:
        verdict = "" if target is None else (f"target >= {target:g}x: " + ("PASS" if ratio >= target else "MISS"))
        print(f"  {name:<34} {ratio:7.1f}x   {verdict} {notes.get(name, '')}".rstrip())
    for peer, secs in QUOTED.items():
        print(f"  reuse vs {peer + ' (quoted)':<25} {secs / med['reuse']:7.1f}x   ({secs} s measured on a quiet machine, not here)")
    gib = peak / 1024**3
    print(f"\npeak MLX memory of the reuse sweep: {gib:.3f} GiB (target < 4 GiB: {'PASS' if gib < 4 else 'MISS'}); "
          f"process max RSS {rss:.2f} GiB")
    print(f"Pearson r, attribution vs activation patching: resid_pre {r_resid:.3f}, per head (z) {r_heads:.3f}")
    g = reuse.grid()
    print(f"recovery: final position at the last layer (resid_pre) {g[-1, -1]:.3f}, layer 0 position 0 {g[0, 0]:.3f}")
    print(f"agreement (raw logit diff, max abs): reuse vs per-patch loop {np.abs(raw - loop).max():.2e}, "
          f"reuse vs plain batched {np.abs(raw - batched).max():.2e}")
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
