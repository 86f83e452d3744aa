"""Verification of a circuit claim: measured by trusted code in a sandbox child, judged here.

Why apart from orchestrator/verifier.py: a circuit's figures (held-out faithfulness, random circuits,
CPR/CMD, stability) and its keep rule (orchestrator.analysis.circuit) differ from an intervention
claim's; the ledger records them under ``details["circuit"]`` for the finding note and the report.
"""

from __future__ import annotations

from pathlib import Path

from orchestrator.analysis import AnalysisError
from orchestrator.analysis.circuit import decide_circuit
from orchestrator.contract import restore_contract
from orchestrator.interfaces import VerificationResult, VerifyRequest
from sandbox import verifier as sandbox_verifier
from sandbox.schemas import Claim, ResourceLimits
from sandbox.schemas import VerificationResult as Measured
from sandbox.verify_circuit import verify_circuit_claim


def _not_kept(reason: str, n_pairs: int = 0, details: dict | None = None) -> VerificationResult:
    return VerificationResult(kept=False, effect=0.0, ci_low=0.0, ci_high=0.0, p_value=1.0, adjusted_p=1.0,
                              noise_floor=0.0, n_pairs=n_pairs, reason=reason, details=details or {})


def measure(claim: Claim, run_dir: Path, n_null: int, limits: ResourceLimits) -> Measured:
    try:
        return verify_circuit_claim(run_dir, claim, n_null=n_null, limits=limits)
    except sandbox_verifier.ContractViolation:
        restore_contract(run_dir)  # checked by the loop after each experiment; restore once and retry
        return verify_circuit_claim(run_dir, claim, n_null=n_null, limits=limits)


def judge_circuit(claim: Claim, measured: Measured, attempt: VerifyRequest) -> VerificationResult:
    """The keep decision on a measured circuit claim; effect = held-out faithfulness, noise floor = the mean
    faithfulness of the random circuits. Deterministic given the request's seed, attempt and claim index."""
    if claim.circuit is None:
        raise ValueError("judge_circuit needs a circuit claim")
    if measured.status != "ok" or measured.circuit is None:
        return _not_kept(f"verification failed: {measured.reason or 'no circuit figures'}")
    figures = measured.circuit
    randoms = measured.null_effects.get("random_circuits", [])
    try:
        cv = decide_circuit(
            measured.effects, randoms, jaccard_mean=figures.jaccard_mean, min_effect=claim.min_effect,
            min_jaccard=claim.circuit.min_jaccard, alpha=attempt.alpha, prior_p_values=attempt.prior_p_values,
            correction=attempt.correction, seed=attempt.seed * 1000 + attempt.attempt * 10 + attempt.claim_index,
            n_bootstrap=attempt.bootstrap,
        )
    except AnalysisError as exc:
        return _not_kept(f"statistics could not be computed: {exc}", measured.n_pairs,
                         {"circuit": figures.model_dump(mode="json")})
    v = cv.verdict
    circuit = figures.model_dump(mode="json") | {
        "threshold": cv.threshold, "best_random": cv.best_random, "beats_random": cv.beats_random,
        "min_jaccard": cv.min_jaccard, "stable": cv.stable,
    }
    return VerificationResult(
        kept=cv.kept, effect=v.effect, ci_low=v.ci_low, ci_high=v.ci_high, p_value=v.p_value,
        adjusted_p=v.adjusted_p, noise_floor=v.noise_floor_mean, n_pairs=v.n_pairs, reason=cv.reason,
        statement=claim.statement,
        details={"kind": "circuit", "verdict": v.model_dump(mode="json"), "circuit": circuit,
                 "excluded_pairs": measured.excluded_pairs, "notes": measured.notes, "n_null": v.n_null},
    )


def verify_circuit(claim: Claim, attempt: VerifyRequest, *, n_null: int, limits: ResourceLimits) -> VerificationResult:
    return judge_circuit(claim, measure(claim, attempt.run_dir, n_null, limits), attempt)
