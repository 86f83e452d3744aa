"""Parent side of verification: measure a Claim on the held-out split in a fresh isolated child.

The child (sandbox.verify_entry) runs only trusted code; its answer is still parsed and validated
here like any other child output. Null families already in the run's noise-floor cache
(sandbox.noise_floor, RUN_DIR/state/noise_floor.json) are not measured again: the child measures
the claim and only the families the cache lacks, and the parent adds the new ones to the cache.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from sandbox.contract import load_contract, verify_contract
from sandbox.isolation import isolation_report, model_paths, require_isolation
from sandbox.noise_floor import (
    LOCATION_FREE_MODES,
    NoiseFloorCache,
    NullDraw,
    NullFamily,
    family_key,
    family_seed,
    load_cache,
    location,
    save_cache,
    signature,
    summarise,
    touches,
)
from sandbox.process import interpret, launch_isolated
from sandbox.runner import default_scratch_root
from sandbox.schemas import Claim, ResourceLimits, VerificationResult

NULL_MODES = ("random_components", "shuffled_source", "random_direction")
# Shared families are measured with this many times the per-claim draw count: the draws that touch a
# claim's own components are left out of its test, and enough must remain.
SHARED_DRAW_FACTOR = 2
VERIFY_LIMITS = ResourceLimits(timeout_s=900.0)


class ContractViolation(RuntimeError):
    """The contract failed verification; the claim is not measured against a tampered contract."""


def _needed(mode: str, n_null: int) -> int:
    return n_null * SHARED_DRAW_FACTOR if mode in LOCATION_FREE_MODES else n_null


def _plan(cache: NoiseFloorCache, claim: Claim, modes: Sequence[str], n_null: int) -> tuple[dict[str, str], list[str]]:
    """(family key per requested mode, the modes whose family the cache lacks or holds too few draws of)."""
    keys = {m: family_key(claim, m) for m in modes}
    missing = []
    for m, key in keys.items():
        fam = cache.families.get(key)
        if fam is None or (not fam.note and len(fam.draws) < _needed(m, n_null)):
            missing.append(m)
    return keys, missing


def _new_families(payload: dict, claim: Claim, keys: dict[str, str], measured: list[str], seeds: dict[str, int]
                  ) -> dict[str, NullFamily]:
    """Families the child measured, from its per-draw effects and locations; skipped modes keep the child's note."""
    effects, locations = payload.get("null_effects") or {}, payload.get("null_locations") or {}
    notes = [n for n in payload.get("notes") or [] if " null skipped: " in n]
    out = {}
    for m in measured:
        draws = [NullDraw(location=loc, effects=eff) for loc, eff in zip(locations.get(m, []), effects.get(m, []))]
        note = "" if m in effects else next((n for n in notes if n.startswith(m)), f"{m} null not measured")
        out[keys[m]] = summarise(NullFamily(mode=m, signature=signature(claim, m), seed=seeds[m],  # type: ignore[arg-type]
                                            n_pairs=int(payload.get("n_pairs", 0)),
                                            normaliser=float(payload.get("normaliser", 1.0)), draws=draws, note=note))
    return out


def _assemble(cache: NoiseFloorCache, claim: Claim, keys: dict[str, str], n_pairs: int, normaliser: float,
              measured: Sequence[str]) -> tuple[dict[str, list[list[float]]], list[str]]:
    """The null draws a claim is tested against, and one provenance note per family."""
    own = location(claim.interventions)
    nulls: dict[str, list[list[float]]] = {}
    notes = []
    for m, key in keys.items():
        fam = cache.families[key]
        if fam.note:
            notes.append(fam.note)
            continue
        if fam.n_pairs != n_pairs or abs(fam.normaliser - normaliser) > 1e-6 * max(1.0, abs(normaliser)):
            raise NoiseFloorMismatch(f"noise-floor family {key} was measured on {fam.n_pairs} pairs with normaliser "
                                     f"{fam.normaliser:.6g}, this claim on {n_pairs} with {normaliser:.6g}; delete "
                                     "state/noise_floor.json to re-measure")
        draws = [d.effects for d in fam.draws if m not in LOCATION_FREE_MODES or not touches(d.location, own)]
        nulls[m] = draws
        left = len(fam.draws) - len(draws)
        how = "measured now and cached in" if m in measured else "reused from"
        notes.append(f"noise floor {m}: {len(draws)} draws of family {key}, {how} state/noise_floor.json"
                     + (f" ({left} touching the claim's components left out)" if left else ""))
    return nulls, notes


class NoiseFloorMismatch(RuntimeError):
    """A cached null family does not match the claim's held-out measurement (a bug or a hand-edited cache)."""


Measure = Callable[[dict[str, Any]], "dict[str, Any] | VerificationResult"]
"""Runs a verifier request and returns the child's result payload, or an error VerificationResult."""


def measure_claim(run_dir: Path, claim: Claim, measure: Measure, *, n_null: int = 10,
                  null_modes: Sequence[str] = NULL_MODES) -> VerificationResult:
    """The parent's side of a verification around any ``measure`` (the isolated child in ``verify_claim``;
    tests call sandbox.verify_entry.measure in-process): contract check, noise-floor cache, request,
    validation of the answer, and the null draws the claim is tested against."""
    run_dir = Path(run_dir).resolve()
    check = verify_contract(run_dir)
    if not check.ok:
        raise ContractViolation(f"contract of {run_dir} fails verification: {check.problems}; restore it first")
    contract = load_contract(run_dir)
    cache, stale = load_cache(run_dir, check.digest, contract.seed)
    keys, missing = _plan(cache, claim, list(null_modes), n_null)
    seeds = {m: family_seed(contract.seed, keys[m]) for m in missing}
    request = {"claim": claim.model_dump(mode="json"), "pairs": [p.model_dump() for p in contract.held_out],
               "model": contract.model, "metric": contract.metric, "seed": contract.seed, "n_null": int(n_null),
               "null_modes": missing, "null_counts": {m: _needed(m, n_null) for m in missing},
               "mode_seeds": seeds, "include_own": True}
    answer = measure(request)
    if isinstance(answer, VerificationResult):
        return answer
    payload = dict(answer)
    base = {"seed": contract.seed, "metric": contract.metric}
    try:
        if payload.get("status") == "ok" and missing:
            cache.families.update(_new_families(payload, claim, keys, missing, seeds))
            save_cache(run_dir, cache)
        payload.pop("null_locations", None)
        result = VerificationResult.model_validate(payload)
    except (ValidationError, TypeError) as exc:
        return VerificationResult(status="error", reason=f"verifier output does not validate: {exc}"[:4000], **base)
    if result.status == "ok":
        nulls, provenance = _assemble(cache, claim, keys, result.n_pairs, result.normaliser, missing)
        result.null_effects = nulls
        result.notes = [n for n in result.notes if " null skipped: " not in n] + ([stale] if stale else []) + provenance
    return result


def verify_claim(run_dir: Path, claim: Claim, *, n_null: int = 10, null_modes: Sequence[str] = NULL_MODES,
                 limits: ResourceLimits | None = None, scratch_root: Path | None = None,
                 cancel: threading.Event | None = None) -> VerificationResult:
    """Effects of ``claim`` on every held-out pair plus null draws, measured in a fresh isolated child;
    status 'error' says why it failed. Null families come from the run's noise-floor cache when it
    holds them; the ones it lacks are measured in the same child and added to it."""
    run_dir = Path(run_dir).resolve()
    limits = limits or VERIFY_LIMITS
    start = time.perf_counter()
    report = isolation_report()
    require_isolation(report)
    ready: list[float] = []

    def in_child(request: dict[str, Any]) -> "dict[str, Any] | VerificationResult":
        scratch = Path(tempfile.mkdtemp(prefix="verify-", dir=scratch_root or default_scratch_root()))
        try:
            run = launch_isolated("sandbox.verify_entry", request, scratch, limits, hidden=[run_dir], cancel=cancel,
                                  report=report, extra_readable=model_paths(request["model"]))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        ready.append(run.ready_s or 0.0)
        status, reason, msg = interpret(run, limits)  # timeout/crash/limit handling shared with experiments
        if status != "ok":
            return VerificationResult(status="error", reason=f"verification {status}: {reason}", seed=request["seed"],
                                      metric=request["metric"])
        return msg.get("result") or {}

    result = measure_claim(run_dir, claim, in_child, n_null=n_null, null_modes=null_modes)
    result.isolation = report.layers
    result.durations.startup_s = ready[0] if ready else 0.0
    result.durations.total_s = time.perf_counter() - start
    return result
