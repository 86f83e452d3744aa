"""Explain many latents of one SAE: first explanations for all (they double as the random-explanation
pool), then the refinement loop per latent, then a summary with the figures the issue asks for.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict

from engine.features.schemas import LatentSet
from orchestrator.agent.base import Usage
from orchestrator.features.explainers import Explainer, ExplainerView
from orchestrator.features.refine import Measurer, RefineConfig, refine_latent
from orchestrator.features.schemas import METRICS, Explanation, LatentOutcome
from orchestrator.features.scorers import Scorer
from orchestrator.features.scoring import score


class FeatureSummary(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n_latents: int
    n_kept: int
    fraction_kept: float
    keep_metric: str
    keep_sigma: float
    mean_test: dict[str, float]  # final explanations on the test split
    mean_first_test: dict[str, float] | None = None  # first explanations on the test split (before any attack)
    mean_baseline: dict[str, float]  # mean of per-latent baseline means
    mean_baseline_sigma: dict[str, float]  # mean of per-latent baseline sigmas (std floored, as used by the rule)
    mean_baseline_std: dict[str, float]  # mean of the raw per-latent std of random explanations
    fraction_beating: dict[str, float]  # per metric: fraction of latents beating the baseline by keep_sigma
    mean_rounds: float
    fraction_converged: float
    fraction_rounds_falsified: float
    adversarial_inputs_per_latent: float
    seconds: float
    latents_per_hour: float
    usage: Usage
    calls_per_latent: float
    tokens_per_latent: float


def first_explanations(latent_set: LatentSet, explainer: Explainer) -> tuple[dict[int, Explanation], Usage, dict[int, str]]:
    """The first explanation of every latent (explainer sees train only); failures are reported, not raised."""
    out: dict[int, Explanation] = {}
    errors: dict[int, str] = {}
    usage = Usage()
    for lat in latent_set.latents:
        res = explainer.explain(ExplainerView(latent=lat.latent, max_act=lat.max_act, train=lat.train))
        usage = usage + res.usage
        if res.value is None:
            errors[lat.latent] = res.error or "no explanation"
        else:
            out[lat.latent] = res.value
    return out, usage, errors


def explain_latents(latent_set: LatentSet, explainer: Explainer, scorer: Scorer, measurer: Measurer,
                    cfg: RefineConfig | None = None, *, limit: int | None = None, compare_first: bool = True,
                    on_outcome: Callable[[LatentOutcome], None] | None = None) -> tuple[list[LatentOutcome], FeatureSummary]:
    """Run the loop on the first ``limit`` latents of the set; ``on_outcome`` sees each result as it lands.

    ``compare_first`` also scores each first explanation on the test split (for the report only: the
    choice of the final explanation never looks at test).
    """
    cfg = cfg or RefineConfig()
    started = time.perf_counter()
    chosen = latent_set.latents[:limit] if limit else latent_set.latents
    # the random-explanation pool needs n_baseline latents besides each one: explain extra latents if needed
    n_pool = max(len(chosen), min(len(latent_set.latents), cfg.n_baseline + 1))
    subset = latent_set.model_copy(update={"latents": latent_set.latents[:n_pool]})
    firsts, usage, errors = first_explanations(subset, explainer)
    rng = random.Random(cfg.seed)
    outcomes: list[LatentOutcome] = []
    first_test: dict[int, dict[str, float]] = {}
    for lat in chosen:
        if lat.latent not in firsts:
            continue
        others = [(lid, e) for lid, e in firsts.items() if lid != lat.latent]
        rng.shuffle(others)
        outcome = refine_latent(lat, explainer, scorer, measurer, others[: cfg.n_baseline], cfg,
                                initial=firsts[lat.latent], sae=latent_set.sae_path, hook=latent_set.hook)
        if compare_first:
            scores, used = score(firsts[lat.latent], lat.test, scorer, cfg.seed + 1000)
            usage = usage + used
            first_test[lat.latent] = {m: scores.get(m) for m in METRICS}
        outcomes.append(outcome)
        if on_outcome is not None:
            on_outcome(outcome)
    seconds = time.perf_counter() - started
    return outcomes, summarise(outcomes, usage, seconds, cfg, first_test or None)


def summarise(outcomes: Sequence[LatentOutcome], extra_usage: Usage, seconds: float, cfg: RefineConfig,
              first_test: dict[int, dict[str, float]] | None = None) -> FeatureSummary:
    n = len(outcomes)
    usage = extra_usage
    for o in outcomes:
        usage = usage + o.usage

    def mean(values: list[float]) -> float:
        return float(np.mean(values)) if values else float("nan")

    rounds = [r for o in outcomes for r in o.rounds]
    return FeatureSummary(
        n_latents=n, n_kept=sum(o.kept for o in outcomes), fraction_kept=mean([float(o.kept) for o in outcomes]),
        keep_metric=cfg.keep_metric, keep_sigma=cfg.keep_sigma,
        mean_test={m: mean([o.test.get(m) for o in outcomes]) for m in METRICS},
        mean_first_test={m: mean([v[m] for v in first_test.values()]) for m in METRICS} if first_test else None,
        mean_baseline={m: mean([o.baselines[m].mean for o in outcomes]) for m in METRICS},
        mean_baseline_sigma={m: mean([o.baselines[m].sigma for o in outcomes]) for m in METRICS},
        mean_baseline_std={m: mean([o.baselines[m].std for o in outcomes]) for m in METRICS},
        fraction_beating={m: mean([float(o.test.get(m) >= o.baselines[m].mean + cfg.keep_sigma * o.baselines[m].sigma)
                                   for o in outcomes]) for m in METRICS},
        mean_rounds=mean([len(o.rounds) for o in outcomes]),
        fraction_converged=mean([float(o.converged) for o in outcomes]),
        fraction_rounds_falsified=mean([float(r.falsified) for r in rounds]),
        adversarial_inputs_per_latent=len([m for r in rounds for m in r.adversarial]) / max(1, n),
        seconds=seconds, latents_per_hour=3600.0 * n / seconds if seconds > 0 else float("nan"),
        usage=usage, calls_per_latent=usage.calls / max(1, n), tokens_per_latent=usage.total_tokens / max(1, n),
    )
