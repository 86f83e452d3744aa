"""Circuit claims: the schema, the trusted verifier child on a planted-circuit model, and the keep decision.

The planted model's circuit is known by construction, so the verifier must keep it and must not keep
a same-sized set of distractor edges.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from engine.interventions import Patch
from orchestrator.interfaces import VerifyRequest
from orchestrator.verify_circuit import judge_circuit
from sandbox.schemas import Claim, ResourceLimits
from sandbox.verify_circuit import verify_circuit_claim
from tests.sandbox.planted_runs import planted_run_dir

LIMITS = ResourceLimits(timeout_s=120.0, memory_mb=4096)
# six edges of the same graph that skip the planted mover/copier/lookup (distractor heads and MLPs)
DISTRACTORS = ["input->a0.h2<q>", "a0.h2->m0", "m0->a1.h0<q>", "a1.h0->m1", "m1->logits", "a0.h3->logits"]


def circuit_claim(edges: list[str], **circuit) -> Claim:
    return Claim(statement=f"{len(edges)} edges carry the lookup", expected_direction="increase", min_effect=0.6,
                 circuit={"edges": edges, "method": "eap-ig", "ig_steps": 4, "requested_size": len(edges), **circuit})


@pytest.fixture(scope="module")
def planted_run():
    with planted_run_dir("planted-verify-", n_pairs=80, seed=0, n_exploration=16, n_held_out=16) as built_and_run:
        yield built_and_run


def request(run_dir: Path, index: int = 0) -> VerifyRequest:
    return VerifyRequest(run_dir=run_dir, attempt=1, claim_index=index, contract_dir=run_dir / "contract", seed=0,
                         alpha=0.05, correction="holm", bootstrap=1000)


def test_claim_is_interventions_or_a_circuit() -> None:
    with pytest.raises(ValidationError, match="at least one intervention"):
        Claim(statement="s", expected_direction="increase")
    with pytest.raises(ValidationError, match="leave `interventions` empty"):
        Claim(statement="s", expected_direction="increase", interventions=[Patch(hook="blocks.0.hook_resid_pre")],
              circuit={"edges": ["input->logits"]})
    with pytest.raises(ValidationError, match="expected_direction 'increase'"):
        Claim(statement="s", expected_direction="decrease", circuit={"edges": ["input->logits"]})
    with pytest.raises(ValidationError, match="unique"):
        Claim(statement="s", expected_direction="increase", circuit={"edges": ["input->logits", "input->logits"]})
    with pytest.raises(ValidationError, match="edge_scores"):
        Claim(statement="s", expected_direction="increase", circuit={"edges": ["input->logits"], "edge_scores": [1, 2]})


def test_planted_circuit_is_verified_and_kept(planted_run) -> None:
    built, run_dir = planted_run
    claim = circuit_claim(list(built.planted_edges))
    measured = verify_circuit_claim(run_dir, claim, n_null=6, limits=LIMITS)
    assert measured.status == "ok", measured.reason
    c = measured.circuit
    assert c is not None and c.n_edges == 6 and measured.n_pairs == 16 == c.held_out_pairs
    assert sum(measured.effects) / len(measured.effects) == pytest.approx(c.faithfulness)
    assert c.faithfulness >= 0.9
    assert len(c.random_faithfulness) == 6 and max(c.random_faithfulness) < 0.2
    assert c.cpr > c.random_cpr and c.cmd < c.random_cmd
    assert c.jaccard_resamples == 100 and c.jaccard_mean >= 0.8 and c.agreement == 1.0
    verdict = judge_circuit(claim, measured, request(run_dir))
    assert verdict.kept, verdict.reason
    assert verdict.effect == pytest.approx(c.faithfulness) and verdict.ci_low > 0.6
    assert verdict.details["circuit"]["threshold"] == 0.6 and verdict.details["circuit"]["beats_random"]


def test_distractor_edges_are_not_kept(planted_run) -> None:
    _, run_dir = planted_run
    claim = circuit_claim(DISTRACTORS)
    measured = verify_circuit_claim(run_dir, claim, n_null=4, limits=LIMITS)
    assert measured.status == "ok", measured.reason
    assert measured.circuit.faithfulness < 0.3 and measured.circuit.agreement < 0.5
    verdict = judge_circuit(claim, measured, request(run_dir))
    assert not verdict.kept and "not cleared" in verdict.reason


def test_unknown_edges_fail_with_the_reason(planted_run) -> None:
    _, run_dir = planted_run
    measured = verify_circuit_claim(run_dir, circuit_claim(["a7.h0->logits"]), n_null=2, limits=LIMITS)
    assert measured.status == "error" and "does not fit" in measured.reason and "a7.h0->logits" in measured.reason
    verdict = judge_circuit(circuit_claim(["a7.h0->logits"]), measured, request(run_dir))
    assert not verdict.kept and verdict.p_value == 1.0
