"""The real verifier: measure a claim on held-out pairs in a fresh sandbox child, then decide with statistics.

Why two steps: the child (sandbox.verify_entry, trusted code only) produces per-pair effects and null
draws; the decision (bootstrap CI, permutation test against the nulls, multiplicity correction over
every claim tested in the run) is orchestrator.analysis.decide, deterministic given the seed.
"""

from __future__ import annotations

from pathlib import Path

from orchestrator.analysis import AnalysisError, decide
from orchestrator.contract import restore_contract
from orchestrator.interfaces import VerificationResult, VerifyRequest
from orchestrator.task import Task
from orchestrator.verify_circuit import verify_circuit
from sandbox import verifier as sandbox_verifier
from sandbox.schemas import Claim, ResourceLimits
from sandbox.schemas import VerificationResult as MeasuredClaim


def _not_kept(reason: str, n_pairs: int = 0) -> VerificationResult:
    # p = 1 still enters the run's multiplicity family: a failed verification is a test that found nothing.
    return VerificationResult(kept=False, effect=0.0, ci_low=0.0, ci_high=0.0, p_value=1.0, adjusted_p=1.0,
                              noise_floor=0.0, n_pairs=n_pairs, reason=reason)


class SubprocessVerifier:
    """Verifier protocol over sandbox.verifier.verify_claim + orchestrator.analysis.decide."""

    def __init__(self, task: Task, run_root: Path, n_null: int = 10) -> None:
        self.task = task
        self.run_root = run_root
        self.n_null = n_null
        self.limits = ResourceLimits(timeout_s=max(120.0, 3 * task.sandbox.timeout_s),
                                     memory_mb=max(64, int(task.sandbox.memory_gb * 1024)))

    def _measure(self, claim: Claim, run_dir: Path) -> MeasuredClaim:
        try:
            return sandbox_verifier.verify_claim(run_dir, claim, n_null=self.n_null, limits=self.limits)
        except sandbox_verifier.ContractViolation:
            restore_contract(run_dir)  # checked by the loop after each experiment; restore once and retry
            return sandbox_verifier.verify_claim(run_dir, claim, n_null=self.n_null, limits=self.limits)

    def verify(self, claim: Claim, attempt: VerifyRequest) -> VerificationResult:
        if claim.circuit is not None:  # an edge-level circuit: its own figures and keep rule
            return verify_circuit(claim, attempt, n_null=self.n_null, limits=self.limits)
        try:
            measured = self._measure(claim, attempt.run_dir)
        except sandbox_verifier.NoiseFloorMismatch as exc:  # recorded as a failed verification, never kept
            return _not_kept(f"verification failed: {exc}")
        return judge(claim, measured, attempt)


def judge(claim: Claim, measured: MeasuredClaim, attempt: VerifyRequest) -> VerificationResult:
    """The decision on a measured claim: bootstrap CI, permutation test against its null draws (the cached
    noise floor of its family), multiplicity correction over the run's claims. Deterministic given the
    request's seed, attempt and claim index, so `verify` reproduces the loop's figures."""
    if measured.status != "ok":
        return _not_kept(f"verification failed: {measured.reason}")
    nulls = [x for draws in measured.null_effects.values() for draw in draws for x in draw]
    try:
        verdict = decide(
            measured.effects, nulls, claim_direction=claim.expected_direction, min_effect=claim.min_effect,
            alpha=attempt.alpha, prior_p_values=attempt.prior_p_values, correction=attempt.correction,
            seed=attempt.seed * 1000 + attempt.attempt * 10 + attempt.claim_index,
            n_bootstrap=attempt.bootstrap,
        )
    except AnalysisError as exc:
        return _not_kept(f"statistics could not be computed: {exc}", measured.n_pairs)
    # The figure the decision compares against: the mean effect of null interventions of the same shape
    # (its spread is in details.verdict.noise_floor_std).
    floor = verdict.noise_floor_mean
    return VerificationResult(
        kept=verdict.kept, effect=verdict.effect, ci_low=verdict.ci_low, ci_high=verdict.ci_high,
        p_value=verdict.p_value, adjusted_p=verdict.adjusted_p, noise_floor=floor, n_pairs=verdict.n_pairs,
        reason=verdict.reason, statement=claim.statement,
        details={"verdict": verdict.model_dump(mode="json"), "excluded_pairs": measured.excluded_pairs,
                 "notes": measured.notes, "n_null": verdict.n_null,
                 "null_draws": {m: len(d) for m, d in measured.null_effects.items()}},
    )
