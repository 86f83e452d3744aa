"""Pure functions from an attempt record to what the run keeps: ledger line, finding note, research state.

Why pure and deterministic: a resumed attempt must produce byte-identical finding notes and commit
messages to an uninterrupted one, so nothing here reads the clock or the environment.
"""

from __future__ import annotations

import json
import math
from typing import Any

from orchestrator.agent.schemas import AttemptSummary, ResearchState
from orchestrator.ledger import LedgerEntry
from orchestrator.state import AttemptRecord
from sandbox.schemas import ExperimentResult


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(float(x))


def best_verification(rec: AttemptRecord) -> dict[str, Any] | None:
    """The kept claim with the largest |effect|, else the claim with the largest |effect|."""
    if not rec.verifications:
        return None
    return max(rec.verifications, key=lambda v: (bool(v.get("kept")), abs(float(v.get("effect", 0.0)))))


def key_figures(rec: AttemptRecord) -> dict[str, float]:
    figures: dict[str, float] = {}
    best = best_verification(rec)
    if best is not None:
        for key in ("effect", "ci_low", "ci_high", "adjusted_p", "noise_floor"):
            if _finite(best.get(key)):
                figures[key] = float(best[key])
        figures["claims_kept"] = float(sum(1 for v in rec.verifications if v.get("kept")))
        figures["claims_tested"] = float(len(rec.verifications))
    if rec.claims_skipped:
        figures["claims_skipped"] = float(rec.claims_skipped)
    measurements = (rec.outcome or {}).get("measurements", {})
    for key in sorted(measurements)[:50]:
        if _finite(measurements[key]) and len(figures) < 16:
            figures[f"m.{key}"] = float(measurements[key])
    return figures


def ledger_entry(rec: AttemptRecord, contract_sha: str, ended_at: str) -> LedgerEntry:
    plan = rec.plan
    reflection = rec.reflection
    return LedgerEntry(
        attempt=rec.attempt,
        slug=rec.slug,
        phase=rec.ended_in or rec.phase,
        method=plan.method if plan else "",
        hypothesis=plan.hypothesis if plan else "",
        plan=plan.model_dump(mode="json") if plan else None,
        experiment_file=rec.experiment_file,
        experiment_sha256=rec.code_sha256,
        contract_sha256=contract_sha,
        repairs=rec.repairs,
        result_summary=str((rec.outcome or {}).get("summary") or (rec.outcome or {}).get("error") or "")[:4000],
        key_figures=key_figures(rec),
        statistics=list(rec.verifications),
        decision=rec.decision or "failed",  # type: ignore[arg-type]
        reason=rec.reason,
        question_answered=bool(reflection and reflection.question_answered),
        answer=reflection.answer if reflection else None,
        belief_updates=list(reflection.belief_updates) if reflection else [],
        next_direction=reflection.next_direction if reflection else "",
        tokens=rec.usage.total_tokens,
        dollars=rec.usage.dollars,
        calls=rec.usage.calls,
        durations_s={k: round(v, 4) for k, v in rec.durations_s.items()},
        started_at=rec.started_at,
        ended_at=ended_at,
    )


def research_state(entries: list[LedgerEntry], question: str, max_experiments: int) -> ResearchState:
    """The roles' shared state, rebuilt from the ledger alone (so a resume sees exactly what was recorded)."""
    beliefs: list[str] = []
    for e in entries:
        beliefs.extend(b for b in e.belief_updates if b not in beliefs)
    last = entries[-1] if entries else None
    return ResearchState(
        question=question,
        beliefs=beliefs[-40:],
        open_hypotheses=[last.next_direction] if last and last.next_direction else [],
        history=[
            AttemptSummary(
                attempt=e.attempt, slug=e.slug, method=e.method, hypothesis=e.hypothesis,
                decision=e.decision, reason=e.reason, key_figures=e.key_figures,
            )
            for e in entries
        ],
        experiments_done=len(entries),
        max_experiments=max_experiments,
    )


def finding_title(rec: AttemptRecord) -> str:
    best = best_verification(rec) or {}
    return f"finding {rec.attempt:04d}: {rec.slug} (effect {float(best.get('effect', 0.0)):+.3f})"


def finding_note(rec: AttemptRecord, result: ExperimentResult) -> str:
    """findings/NNNN-slug.md: the claim, the evidence and the verifier's figures."""
    plan = rec.plan
    lines = [f"# Finding {rec.attempt:04d}: {rec.slug}", ""]
    if plan is not None:
        lines += [f"**Hypothesis.** {plan.hypothesis}", "", f"**Method.** {plan.method}", "",
                  f"**Would be falsified by.** {plan.falsification}", ""]
    lines += ["## Verified claims (held-out pairs)", "",
              "| # | kept | effect | 95% CI | p | adjusted p | noise floor | n |", "|---|---|---|---|---|---|---|---|"]
    for v in rec.verifications:
        lines.append(
            f"| {v.get('claim_index', 0)} | {'yes' if v.get('kept') else 'no'} | {v.get('effect', 0):+.4f} | "
            f"[{v.get('ci_low', 0):+.4f}, {v.get('ci_high', 0):+.4f}] | {v.get('p_value', 1):.3g} | "
            f"{v.get('adjusted_p', 1):.3g} | {v.get('noise_floor', 0):.4f} | {v.get('n_pairs', 0)} |"
        )
    lines += circuit_lines(rec.verifications)
    lines += ["", "## Claims as tested", ""]
    for i, claim in enumerate(result.claims):
        data = claim.model_dump(mode="json")
        extra: list[str] = []
        if claim.circuit is not None:  # thousands of edges: the full list stays in the result file
            top = sorted(zip(claim.circuit.edges, claim.circuit.edge_scores or [math.nan] * len(claim.circuit.edges)),
                         key=lambda e: -abs(e[1]) if math.isfinite(e[1]) else 0.0)[:20]
            data["circuit"] |= {"edges": f"{len(claim.circuit.edges)} edges (results/{rec.attempt:04d}.json)",
                                "edge_scores": "omitted"}
            extra = ["Top edges by |score|: " + ", ".join(f"`{e}` {v:+.3g}" for e, v in top), ""]
        lines += [f"{i}. {claim.statement}", "", "```json", json.dumps(data, indent=1, sort_keys=True), "```", "", *extra]
    lines += ["## Evidence (exploration pairs)", "", result.summary.strip() or "(no summary)", ""]
    if rec.analysis is not None:
        lines += ["## Analysis", "", rec.analysis.interpretation, ""]
        lines += [f"- caveat: {c}" for c in rec.analysis.caveats]
    if rec.reflection is not None:
        lines += ["", "## Why kept", "", rec.reflection.reason, ""]
    return "\n".join(lines).rstrip() + "\n"


def circuit_lines(verifications: list[dict[str, Any]]) -> list[str]:
    """The held-out figures of circuit claims (orchestrator.verify_circuit), for the finding note."""
    rows = []
    for v in verifications:
        c = (v.get("details") or {}).get("circuit")
        if not isinstance(c, dict):
            continue
        randoms = [float(x) for x in c.get("random_faithfulness", [])]
        best = max(randoms) if randoms else math.nan
        mean = sum(randoms) / len(randoms) if randoms else math.nan
        rows.append(
            f"| {v.get('claim_index', 0)} | {'yes' if v.get('kept') else 'no'} | {c['n_edges']} | "
            f"{len([n for n in c.get('nodes', []) if n not in ('input', 'logits')])} | {c['faithfulness']:.3f} "
            f"[{v.get('ci_low', 0):.3f}, {v.get('ci_high', 0):.3f}] | {c.get('threshold', math.nan):.2f} | "
            f"{best:.3f} / {mean:.3f} | {c['cpr']:.3f} / {c['random_cpr']:.3f} | {c['cmd']:.3f} / {c['random_cmd']:.3f} | "
            f"{c['jaccard_mean']:.3f} [{c['jaccard_p05']:.3f}, {c['jaccard_p95']:.3f}] (min {c.get('min_jaccard', math.nan):.2f}) | "
            f"{c['agreement']:.3f} | {c['held_out_pairs']} |")
    if not rows:
        return []
    c0 = next((v.get("details") or {}).get("circuit") for v in verifications if (v.get("details") or {}).get("circuit"))
    return ["", "## Circuit verification (held-out pairs)", "",
            f"Re-measured by the trusted verifier with edge patching ({c0['ablation']} ablation): faithfulness per "
            "held-out pair with a bootstrap CI; random circuits of the same edge count grown from the logits; CPR and CMD "
            f"of {c0['method']} recomputed on the {c0['exploration_pairs']} exploration pairs and evaluated on the held-out "
            f"pairs beside random circuits (MIB); bootstrap Jaccard over {c0['jaccard_resamples']} resamples of the "
            "exploration pairs; agreement = Jaccard of the claimed edges with the method's own circuit of that size. "
            "Kept only if the CI clears the threshold, beats every random circuit clearly, and the Jaccard reaches its "
            "minimum (orchestrator/analysis/circuit.py).", "",
            "| # | kept | edges | heads/MLPs | faithfulness [95% CI] | threshold | random circuits (best / mean) | "
            "CPR (method / random) | CMD (method / random) | Jaccard [5-95%] | agreement | n |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|", *rows]


def finding_body(rec: AttemptRecord) -> str:
    best = best_verification(rec) or {}
    hyp = rec.plan.hypothesis if rec.plan else ""
    return (
        f"{hyp[:500]}\n\nVerified on {best.get('n_pairs', 0)} held-out pairs: effect {float(best.get('effect', 0)):+.4f} "
        f"CI [{float(best.get('ci_low', 0)):+.4f}, {float(best.get('ci_high', 0)):+.4f}], "
        f"adjusted p {float(best.get('adjusted_p', 1)):.3g}, noise floor {float(best.get('noise_floor', 0)):.4f}."
    )
