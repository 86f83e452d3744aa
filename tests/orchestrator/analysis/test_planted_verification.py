"""Acceptance of the ratchet's gate on a model whose circuit is known by construction (engine.circuits.planted).

The measurement is the trusted verifier's own (sandbox.verify_entry.measure, run in-process so 20 seeds
stay fast; the isolated child around it is exercised by test_overfit_claim_is_rejected_on_held_out_split
and tests/orchestrator/test_verify_real_run.py), with the parent's noise-floor cache and request
(sandbox.verifier.measure_claim) and the statistics and decision the loop uses (orchestrator.verifier.judge).
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from engine.interventions import Patch
from orchestrator.task import Task
from orchestrator.verifier import SubprocessVerifier, judge
from sandbox import verify_entry
from sandbox.schemas import Claim
from sandbox.verifier import measure_claim
from tests.orchestrator.analysis.planted import (
    FALSE_CLAIM,
    TRUE_CLAIM,
    build_model,
    make_run,
    name_pairs,
    prompt_pairs,
    request,
)

ALPHA = 0.05
N_SEEDS = 20


def test_true_claim_kept_and_false_claim_rejected_over_20_seeds(tmp_path: Path) -> None:
    """Each seed: its own planted model (distractor weights), its own prompt draw, its own held-out split
    and null seeds. Both claims share one run, so the false one is also tested against the cached floor."""
    start = time.perf_counter()
    false_keep = false_reject = 0
    rows = []
    for seed in range(N_SEEDS):
        model = build_model(tmp_path / f"model{seed}", seed=seed)
        pairs = prompt_pairs(24, seed=1000 + seed)
        order = list(range(len(pairs)))
        random.Random(seed).shuffle(order)
        held, explore = [pairs[i] for i in sorted(order[:12])], [pairs[i] for i in sorted(order[12:])]
        run = make_run(tmp_path / f"run{seed}", model, explore, held, seed=seed)
        prior: list[float] = []
        for index, claim in enumerate((TRUE_CLAIM, FALSE_CLAIM)):
            measured = measure_claim(run, claim, verify_entry.measure, n_null=10)
            verdict = judge(claim, measured, request(run, seed, index, prior))
            prior.append(verdict.p_value)
            rows.append((seed, index, verdict.kept, verdict.effect, verdict.ci_low, verdict.ci_high, verdict.p_value))
            if claim is TRUE_CLAIM:
                false_reject += not verdict.kept
            else:
                false_keep += verdict.kept
    elapsed = time.perf_counter() - start
    print(f"\nplanted gate over {N_SEEDS} seeds at alpha {ALPHA}: false keep {false_keep}/{N_SEEDS}, "
          f"false reject {false_reject}/{N_SEEDS}, {elapsed:.1f} s")
    for r in rows:
        print("  seed %2d claim %d kept %-5s effect %+.3f [%+.3f, %+.3f] p %.3g" % r)
    assert false_keep <= 2, f"{false_keep}/{N_SEEDS} false claims kept at alpha {ALPHA}"
    assert false_reject <= 1, f"{false_reject}/{N_SEEDS} true claims rejected"


def _overfit_claim() -> Claim:
    # The matched name's token (position 1) on the exploration split; on the held-out split that position holds
    # the other name, which is the same in the clean and corrupted prompt.
    return Claim(statement="the name at position 1 carries the answer",
                 interventions=[Patch(hook="blocks.0.hook_resid_pre", positions=[1])],
                 expected_direction="increase", min_effect=0.2)


def test_overfit_claim_is_rejected_on_held_out_split(tmp_path: Path) -> None:
    model = build_model(tmp_path / "model")
    explore, held = name_pairs(12, matched_at=1, seed=1), name_pairs(12, matched_at=3, seed=2)
    claim = _overfit_claim()
    # On the exploration split (as if it were held out) the claim holds: it is a real effect there...
    as_if = make_run(tmp_path / "as-if", model, held, explore, seed=5)
    seen = judge(claim, measure_claim(as_if, claim, verify_entry.measure, n_null=10), request(as_if, 5))
    assert seen.kept and seen.effect > 0.8, seen.reason
    # ...but the real verifier, in its isolated child on the held-out split, rejects it.
    run = make_run(tmp_path / "run", model, explore, held, seed=5, commit=True)
    task = Task(name="overfit", question="q", pairs=explore[:4])
    verdict = SubprocessVerifier(task, run).verify(claim, request(run, 5))
    assert not verdict.kept and abs(verdict.effect) < 0.05, verdict.reason
    assert verdict.ci_low < claim.min_effect
