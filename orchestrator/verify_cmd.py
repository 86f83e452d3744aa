"""`verify RUN_DIR FINDING`: re-derive a finding's claims with the verifier, on demand.

Why separate from the loop: it reads the recorded result and asks the verifier again without
touching the ledger, state or branch, so it is safe on a finished or a live run.
"""

from __future__ import annotations

import json

from orchestrator.interfaces import Verifier, VerifyRequest
from orchestrator.ledger import LedgerEntry
from orchestrator.rundir import RunDir
from orchestrator.task import Task
from sandbox.schemas import ExperimentResult


def verify_finding(
    run: RunDir, task: Task, attempt: int, verifier: Verifier, entries: list[LedgerEntry]
) -> tuple[bool, list[str]]:
    """(every claim kept when first verified is confirmed again, printable lines)."""
    entry = next((e for e in entries if e.attempt == attempt), None)
    if entry is None:
        raise ValueError(f"attempt {attempt} is not in the ledger of {run.root}")
    path = run.result_path(attempt)
    if not path.is_file():
        raise ValueError(f"attempt {attempt} has no result file ({run.rel(path)}): it never produced claims")
    result = ExperimentResult.model_validate(json.loads(path.read_text(encoding="utf-8"))["result"])
    if not result.claims:
        raise ValueError(f"attempt {attempt} made no claims to verify")
    prior = [float(v["p_value"]) for e in entries if e.attempt < attempt for v in e.statistics if "p_value" in v]
    sig = task.significance
    lines = [f"attempt {attempt:04d} {entry.slug} (recorded decision: {entry.decision})"]
    confirmed = True
    for i, claim in enumerate(result.claims):
        request = VerifyRequest(run_dir=run.root, attempt=attempt, claim_index=i, contract_dir=run.contract,
                                seed=task.seed, alpha=sig.alpha, correction=sig.correction,
                                bootstrap=sig.bootstrap, prior_p_values=prior)
        v = verifier.verify(claim, request)
        prior.append(v.p_value)
        was_kept = i < len(entry.statistics) and bool(entry.statistics[i].get("kept"))
        confirmed &= (v.kept or not was_kept)
        lines.append(
            f"  claim {i}: {'CONFIRMED' if v.kept else 'not confirmed'}  effect {v.effect:+.4f} "
            f"[{v.ci_low:+.4f}, {v.ci_high:+.4f}]  p {v.p_value:.3g}  p_adj {v.adjusted_p:.3g}  "
            f"floor {v.noise_floor:.4f}  n={v.n_pairs}  {claim.statement[:80]}"
        )
    return confirmed, lines
