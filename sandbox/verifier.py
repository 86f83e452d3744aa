"""Parent side of verification: measure a Claim on the held-out split in a fresh isolated child.

The child (sandbox.verify_entry) runs only trusted code; its answer is still parsed and validated
here like any other child output.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from sandbox.contract import load_contract, verify_contract
from sandbox.isolation import isolation_report, model_paths, require_isolation
from sandbox.process import interpret, launch_isolated
from sandbox.runner import default_scratch_root
from sandbox.schemas import Claim, ResourceLimits, VerificationResult

NULL_MODES = ("random_components", "shuffled_source")
VERIFY_LIMITS = ResourceLimits(timeout_s=900.0)


class ContractViolation(RuntimeError):
    """The contract failed verification; the claim is not measured against a tampered contract."""


def verify_claim(run_dir: Path, claim: Claim, *, n_null: int = 10, null_modes: Sequence[str] = NULL_MODES,
                 limits: ResourceLimits | None = None, scratch_root: Path | None = None,
                 cancel: threading.Event | None = None) -> VerificationResult:
    """Effects of ``claim`` on every held-out pair plus null draws; status 'error' says why it failed."""
    run_dir = Path(run_dir).resolve()
    limits = limits or VERIFY_LIMITS
    start = time.perf_counter()
    check = verify_contract(run_dir)
    if not check.ok:
        raise ContractViolation(f"contract of {run_dir} fails verification: {check.problems}; restore it first")
    contract = load_contract(run_dir)
    report = isolation_report()
    require_isolation(report)
    request = {"claim": claim.model_dump(mode="json"), "pairs": [p.model_dump() for p in contract.held_out],
               "model": contract.model, "metric": contract.metric, "seed": contract.seed, "n_null": int(n_null),
               "null_modes": list(null_modes)}
    scratch = Path(tempfile.mkdtemp(prefix="verify-", dir=scratch_root or default_scratch_root()))
    try:
        run = launch_isolated("sandbox.verify_entry", request, scratch, limits, hidden=[run_dir], cancel=cancel,
                              report=report, extra_readable=model_paths(contract.model))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    status, reason, msg = interpret(run, limits)  # timeout/crash/limit handling shared with experiments
    base = {"isolation": report.layers, "seed": contract.seed, "metric": contract.metric}
    if status != "ok":
        return VerificationResult(status="error", reason=f"verification {status}: {reason}", **base)
    payload = msg.get("result")
    try:
        result = VerificationResult.model_validate(payload)
    except ValidationError as exc:
        return VerificationResult(status="error", reason=f"verifier output does not validate: {exc}"[:4000], **base)
    result.isolation = report.layers
    result.durations.startup_s = run.ready_s or 0.0
    result.durations.total_s = time.perf_counter() - start
    return result
