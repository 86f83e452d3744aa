"""How a latent's outcome is written down: a finding note (markdown, every round and every adversarial
input with its measured activation) and a feature card for results/NNNN.json (the report reads it).
"""

from __future__ import annotations

from typing import Any

from engine.features.schemas import Example, LatentExamples
from orchestrator.features.schemas import METRICS, LatentOutcome


def _marked(ex: Example, limit: int = 240) -> str:
    text = "".join(f"«{t}»" if a > 0 else t for t, a in zip(ex.tokens, ex.acts)).replace("\n", "⏎")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def feature_card(outcome: LatentOutcome, latent: LatentExamples | None = None, n_examples: int = 5) -> dict[str, Any]:
    """The report's FeatureCard: scores on the test split and the baseline (std = the sigma the keep rule used)."""
    scores = {m: outcome.test.get(m) for m in METRICS}
    for m in ("detection_auroc", "fuzzing_auroc"):
        value = getattr(outcome.test, m)
        if value is not None:
            scores[m] = value
    top = sorted(latent.train.activating, key=lambda e: -e.max_act)[:n_examples] if latent else []
    return {
        "latent": outcome.latent,
        "explanation": outcome.final.text,
        "scores": scores,
        "baseline": {m: {"mean": b.mean, "std": b.sigma} for m, b in outcome.baselines.items()},
        "top_examples": [{"text": ex.text, "tokens": ex.tokens, "activations": ex.acts} for ex in top],
    }


def finding_markdown(outcome: LatentOutcome) -> str:
    o = outcome
    verdict = "KEPT" if o.kept else "not kept"
    lines = [
        f"# Latent {o.latent}: {o.final.text}",
        "",
        f"- SAE: `{o.sae}` at `{o.hook}`; explainer `{o.explainer}`, scorer `{o.scorer}`",
        f"- Verdict: **{verdict}** — held-out {o.keep_metric} {o.test.get(o.keep_metric):.3f} vs random-explanation "
        f"baseline {o.baselines[o.keep_metric].mean:.3f} ± {o.baselines[o.keep_metric].sigma:.3f} "
        f"({o.margins[o.keep_metric]:+.2f} σ; rule: ≥ {o.keep_sigma:g} σ)",
        f"- Rounds: {len(o.rounds)}; converged: {o.converged}"
        + (f" (at round {o.convergence_round}, on the validation split)" if o.converged else "")
        + f"; final explanation = version {o.final_round}",
        "",
        "## Held-out test scores",
        "",
        "| metric | score | baseline mean | baseline std (raw) | sigma used | margin (σ) |",
        "|---|---|---|---|---|---|",
    ]
    for m in METRICS:
        b = o.baselines[m]
        lines.append(f"| {m} | {o.test.get(m):.3f} | {b.mean:.3f} | {b.std:.3f} | {b.sigma:.3f} | {o.margins[m]:+.2f} |")
    auc = [f"{n} {v:.3f}" for n, v in (("detection AUROC", o.test.detection_auroc), ("fuzzing AUROC", o.test.fuzzing_auroc)) if v is not None]
    if auc:
        lines += ["", "AUROC: " + ", ".join(auc) + f" (n = {o.test.n_activating} activating, {o.test.n_negative} negative)"]
    if o.final.predicate is not None:
        lines += ["", "Predicate: `" + o.final.predicate.model_dump_json(exclude_defaults=True) + "`"]
    lines += ["", "## Rounds", ""]
    for r in o.rounds:
        lines += [
            f"### Round {r.round}: {r.explanation.text}",
            "",
            f"Validation: detection {r.val.detection:.3f}, fuzzing {r.val.fuzzing:.3f}, simulation {r.val.simulation:.3f}. "
            f"Adversarial accuracy {r.adversarial_accuracy:.2f}{' — FALSIFIED' if r.falsified else ''}."
            + (f" Error: {r.error}" if r.error else ""),
            "",
            "| intent | expected | measured max | predicted | contradicts | input (« » = active tokens) |",
            "|---|---|---|---|---|---|",
        ]
        for m in r.adversarial:
            lines.append(f"| {m.input.intent} | {'fires' if m.input.expect_active else 'silent'} | {m.example.max_act:.2f} | "
                         f"{m.predicted:.2f} | {'yes' if m.contradicts else 'no'} | {_marked(m.example).replace('|', '¦')} |")
        if r.revised_to is not None:
            lines += ["", f"Revised to: {r.revised_to.text}"]
        lines.append("")
    lines += [f"Usage: {o.usage.calls} LLM calls, {o.usage.total_tokens} tokens, ${o.usage.dollars:.4f}; {o.seconds:.1f} s."]
    return "\n".join(lines) + "\n"
