"""Engine core benchmark (issue 2): hook overhead as ratios to the plain mlx-lm forward, and load times.

Run: .venv/bin/python -m tests.bench.bench_engine_core   (OpenBLAS must be preloaded on Linux:
`python -m tests ...` does it for pytest; for this script use the same LD_PRELOAD, see README).
Everything is measured side by side in one run; medians over interleaved repetitions.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import mlx.core as mx

PROMPT = "The Eiffel Tower is in the city of"


def _median_time(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        mx.eval(fn())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _load_time(cache_dir: str) -> float:
    code = "import time; t=time.perf_counter(); import engine; engine.load_model('smollm2-135m'); print(time.perf_counter()-t)"
    env = {**os.environ, "ENGINE_CACHE_DIR": cache_dir}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    import engine
    from engine.blas import blas_active

    print(f"OpenBLAS preloaded: {blas_active()}")
    model = engine.load_model("smollm2-135m")
    tokens = model.to_tokens(PROMPT)
    variants = {
        "plain mlx-lm forward": lambda: model.model(tokens),
        "hooked, no hooks": lambda: model.forward(tokens),
        "hooked, caching every hook": lambda: model.run_with_cache(tokens)[0],
        "hooked, last-position logits only": lambda: model.forward(tokens, logit_positions=[-1]),
    }
    for fn in variants.values():  # warm-up
        mx.eval(fn())
    rounds = {name: [] for name in variants}
    for _ in range(7):  # interleave so drift hits every variant alike
        for name, fn in variants.items():
            rounds[name].append(_median_time(fn, 5))
    base = statistics.median(rounds["plain mlx-lm forward"])
    print(f"\n{'variant':38s} {'median s':>9s} {'ratio':>7s}")
    for name, ts in rounds.items():
        med = statistics.median(ts)
        print(f"{name:38s} {med:9.4f} {med / base:7.3f}x")
    print("targets: no hooks <= 1.05x, full cache <= 1.5x")

    cold_dir = tempfile.mkdtemp(prefix="engine-cold-")
    try:
        cold = _load_time(cold_dir)
        cached = statistics.median(_load_time(cold_dir) for _ in range(3))
    finally:
        shutil.rmtree(cold_dir, ignore_errors=True)
    print(f"\nmodel load: cold (GGUF -> float32 cache) {cold:.2f} s, cached {cached:.2f} s (target <= 2 s)")


if __name__ == "__main__":
    main()
