"""The builtin programme's circuit step: placed before the synthesis, and its template (engine.circuits in
experiment code) passes the guard and runs in the sandbox, proposing the planted circuit as a claim."""

from __future__ import annotations

import pytest

from orchestrator.agent.programme import FINAL_SLUG, STEPS
from orchestrator.agent.templates import render
from sandbox.guard import check_source
from sandbox.runner import run_experiment
from sandbox.schemas import ResourceLimits
from tests.sandbox.planted_runs import planted_run_dir


def test_circuit_step_runs_just_before_the_synthesis():
    slugs = [s.slug for s in STEPS]
    assert slugs[-2:] == ["edge-circuit", FINAL_SLUG]
    assert STEPS[-2].params({}) == {"target": 0.8, "steps": 5, "min_faithfulness": 0.5}


def test_guard_allows_engine_circuits_but_not_its_internals_or_file_writers():
    assert check_source("from engine.circuits import eap_ig, CircuitTask\ndef run(ctx):\n    return {}\n") == []
    bad = check_source("from engine.circuits.forward import split_model\ndef run(ctx):\n    return {}\n")
    assert bad and "engine.circuits.forward" in bad[0].message
    bad = check_source("from engine import circuits\ndef run(ctx):\n    circuits.build_planted_model('x')\n")
    assert bad and "build_planted_model" in bad[0].message


@pytest.fixture(scope="module")
def planted_run():
    with planted_run_dir("planted-step-", n_pairs=60, seed=1, n_exploration=24, n_held_out=12) as built_and_run:
        yield built_and_run


def test_template_proposes_the_planted_circuit_in_the_sandbox(planted_run):
    built, run_dir = planted_run
    path = run_dir / "experiments" / "0001-edge-circuit.py"
    path.parent.mkdir(exist_ok=True)
    path.write_text(render("edge-circuit", STEPS[-2].params({}), seed=0))
    out = run_experiment(run_dir, path, 1, limits=ResourceLimits(timeout_s=120.0, memory_mb=4096))
    assert out.status == "ok", (out.reason, out.stderr_tail[-2000:])
    m = out.result.measurements
    assert m["k_faithfulness"] >= 0.8 and m["k_cpr"] > m["k_random_cpr"] and m["k_cmd"] < m["k_random_cmd"]
    assert 0 <= m["k_jaccard"] <= 1 and m["figures"][0]["type"] == "line"
    (claim,) = out.result.claims
    assert claim.circuit is not None and claim.circuit.signed and claim.min_effect == 0.5
    assert set(built.planted_edges) <= set(claim.circuit.edges)
    assert len(claim.circuit.edge_scores) == len(claim.circuit.edges) == m["k_circuit_edges"]


def test_guide_circuit_example_runs_in_the_sandbox(planted_run):
    """The engine guide's worked circuit example, as an agent would submit it, on the planted model."""
    from orchestrator.agent.engine_guide import CIRCUIT_EXAMPLES, EXAMPLES_DIR

    built, run_dir = planted_run
    path = run_dir / "experiments" / "0002-circuit-example.py"
    path.parent.mkdir(exist_ok=True)
    path.write_text((EXAMPLES_DIR / CIRCUIT_EXAMPLES[0]).read_text())
    out = run_experiment(run_dir, path, 2, limits=ResourceLimits(timeout_s=120.0, memory_mb=4096))
    assert out.status == "ok", (out.reason, out.stderr_tail[-2000:])
    assert out.result.measurements["faithfulness"] >= 0.8
    (claim,) = out.result.claims
    assert set(built.planted_edges) <= set(claim.circuit.edges)
