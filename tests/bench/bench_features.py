"""Feature-level benchmark (issue 13).

  LD_PRELOAD=<openblas> .venv/bin/python -m tests.bench.bench_features --out runs/bench-features [--reuse]

A. SAE on the embedded model (default: blocks.15.hook_resid_post, 150k tokens, TopK d_sae 4096, k 32):
   L0, explained variance, CE-loss recovered, dead fraction, wall and CPU time per stage; the saved
   SAELens-layout SAE reloaded gives identical activations.
B. Builtin explainer + builtin scorer on the top 50 latents (most frequent with density <= 5%), measured
   through the engine's measurement server (as a run does): fraction beating the random-explanation
   baseline by 3 sigma, mean detection / fuzzing / simulation vs the baseline's, latents per hour.
C. LLM cost per latent: the LLM explainer and scorer through the real AnthropicClient against the
   local fake Messages API (no network): calls, input/output/cache tokens and dollars per latent.
Timings are noisy on a shared machine: CPU seconds are reported beside wall seconds.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import mlx.core as mx
import numpy as np


def stage_sae(out: Path, tokens: int, reuse: bool) -> dict:
    from engine.features.pipeline import BuildConfig, BuildReport, build
    from engine.features.schemas import TrainConfig

    report_path = out / "metrics.json"
    if reuse and report_path.is_file():
        report = BuildReport.model_validate_json(report_path.read_text())
    else:
        cfg = BuildConfig(n_tokens=tokens, n_latents=50, train=TrainConfig(d_sae=4096, k=32, epochs=3.0))
        report = build(cfg, out, progress=True)
    return json.loads(report.model_dump_json())


def reload_identical(out: Path) -> bool:
    """Encode cached activations with the saved SAE, save again, reload: activations must match bit for bit."""
    from engine.features.caching import ActivationStore
    from engine.features.sae_io import load_sae, save_sae

    store = ActivationStore(out / "cache")
    x = mx.array(store.flat(np.arange(8)))
    first = load_sae(out / "sae")
    save_sae(first, out / "sae-resaved")
    again = load_sae(out / "sae-resaved")
    return bool(np.array_equal(np.array(first.encode(x)), np.array(again.encode(x))))


def stage_builtin(out: Path, n: int) -> dict:
    from engine.features.schemas import LatentSet
    from orchestrator.features.batch import explain_latents
    from orchestrator.features.explainers import BuiltinExplainer
    from orchestrator.features.measure_client import SubprocessMeasurer
    from orchestrator.features.refine import RefineConfig
    from orchestrator.features.scorers import PredicateScorer

    latent_set = LatentSet.model_validate_json((out / "latents.json").read_text())
    cpu = time.process_time()
    with SubprocessMeasurer(out / "sae") as measurer:
        started = time.perf_counter()
        outcomes, summary = explain_latents(latent_set, BuiltinExplainer(), PredicateScorer(), measurer,
                                            RefineConfig(), limit=n)
        wall = time.perf_counter() - started
    (out / "builtin_outcomes.json").write_text(json.dumps([json.loads(o.model_dump_json()) for o in outcomes]))
    return {"summary": json.loads(summary.model_dump_json()), "rounds": rounds_effect(latent_set, outcomes),
            "wall_s": wall, "orchestrator_cpu_s": time.process_time() - cpu,
            "measure_calls": measurer.calls, "measured_texts": measurer.texts,
            "examples": [{"latent": o.latent, "kept": o.kept, "explanation": o.final.text[:160],
                          "test": {m: round(o.test.get(m), 3) for m in ("detection", "fuzzing", "simulation")},
                          "margin_detection": o.margins["detection"], "rounds": len(o.rounds)} for o in outcomes]}


def rounds_effect(latent_set, outcomes) -> dict:
    """What the adversarial rounds changed: latents whose kept explanation is a revision (chosen on val),
    and how its held-out test score compares with the first explanation's on the same split."""
    from orchestrator.features.scorers import PredicateScorer
    from orchestrator.features.scoring import score

    by_id = {lat.latent: lat for lat in latent_set.latents}
    gains = []
    for o in outcomes:
        if o.final_round > 0:
            first, _ = score(o.rounds[0].explanation, by_id[o.latent].test, PredicateScorer(), 1000)
            gains.append({m: o.test.get(m) - first.get(m) for m in ("detection", "fuzzing", "simulation")})
    return {"n_latents": len(outcomes), "n_final_is_revision": len(gains),
            "n_test_detection_improved": sum(g["detection"] > 0 for g in gains),
            "n_test_detection_worse": sum(g["detection"] < 0 for g in gains),
            "mean_test_gain_of_revised": {m: float(np.mean([g[m] for g in gains])) if gains else 0.0
                                          for m in ("detection", "fuzzing", "simulation")}}


def stage_llm_cost(out: Path, n: int, n_baseline: int) -> dict:
    """Calls and tokens per latent of the LLM explainer + LLM scorer through the real AnthropicClient,
    against the local fake Messages API (tokens = the fake's estimate, JSON characters / 4, with its
    prompt-cache simulation). The fake answers from each latent's most frequent active tokens."""
    import logging
    import os

    import structlog

    from engine.features.schemas import LatentSet
    from orchestrator.features.batch import explain_latents
    from orchestrator.features.llm_explainer import LLMExplainer
    from orchestrator.features.refine import RefineConfig
    from orchestrator.features.scorers import LLMScorer
    from orchestrator.providers.anthropic_client import AnthropicClient
    from tests.fakes.anthropic_server import FakeAnthropic
    from tests.orchestrator.features.anthropic_oracle import Oracle, answer_counts

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    os.environ.setdefault("ANTHROPIC_API_KEY", "sk-ant-bench-fake")
    latent_set = LatentSet.model_validate_json((out / "latents.json").read_text())
    words = {t.strip().lower() for lat in latent_set.latents[:n] for t, _ in lat.top_tokens[:3] if t.strip()}
    oracle = Oracle(words or {"the"}, inputs_per_round=12)

    class Measure:  # the engine's measurements are not what is counted here
        def measure(self, latent, texts):
            from engine.features.schemas import Example
            return [Example(tokens=t.split(" "), acts=[0.0] * len(t.split(" ")), kind="adversarial") for t in texts]

    with FakeAnthropic(responder=oracle) as server:
        client = AnthropicClient("claude-sonnet-4-6", base_url=server.base_url, timeout_s=10.0, max_retries=2)
        _, summary = explain_latents(latent_set, LLMExplainer(client), LLMScorer(client), Measure(),
                                     RefineConfig(n_baseline=n_baseline), limit=n, compare_first=False)
    per = {k: round(v / max(1, summary.n_latents), 1) for k, v in summary.usage.model_dump().items()}
    return {"latents": summary.n_latents, "mean_rounds": summary.mean_rounds, "n_baseline": n_baseline,
            "per_latent": per, "calls_by_tool_per_latent": {k: v / summary.n_latents for k, v in answer_counts(oracle).items()}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="runs/bench-features")
    parser.add_argument("--tokens", type=int, default=150_000)
    parser.add_argument("--latents", type=int, default=50)
    parser.add_argument("--llm-latents", type=int, default=3)
    parser.add_argument("--reuse", action="store_true", help="reuse an SAE already built in --out")
    parser.add_argument("--skip", default="", help="comma list of stages to skip: sae,builtin,llm")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    skip = set(filter(None, args.skip.split(",")))
    target = out / "bench_features.json"
    results: dict = json.loads(target.read_text()) if target.is_file() else {}  # stages not rerun keep their figures
    if "sae" not in skip:
        results["sae"] = stage_sae(out, args.tokens, args.reuse)
        results["sae"]["reload_identical"] = reload_identical(out)
        print(json.dumps(results["sae"], indent=2), flush=True)
    if "builtin" not in skip:
        results["builtin"] = stage_builtin(out, args.latents)
        print(json.dumps({k: results["builtin"][k] for k in ("summary", "rounds")}, indent=2), flush=True)
    if "llm" not in skip:
        results["llm"] = {str(nb): stage_llm_cost(out, args.llm_latents, nb) for nb in (5, 10)}
        print(json.dumps(results["llm"], indent=2), flush=True)
    target.write_text(json.dumps(results, indent=2))
    print(f"written {target}")


if __name__ == "__main__":
    main()
