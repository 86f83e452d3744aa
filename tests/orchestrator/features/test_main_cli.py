"""Feature tasks through the main command and the trust boundary of their keep decision.

`python -m orchestrator run TASK.yaml` routes `kind: explain_sae` to the feature runner (the engine step
is pre-made and measurement is a rule server, so no mlx); running again resumes; the report shows kept
explanations with their scores and baseline; `verify` asks the trusted child again and fails when a
pinned file or a recorded adversarial activation was changed; a lying in-process scorer cannot keep
anything, because the verifier child recomputes the scores.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.features import run as feature_run
from orchestrator.features.run import MEASURE_ENV, run_feature_task
from orchestrator.features.task import parse_feature_task
from orchestrator.features.verify import TrustedVerifier
from orchestrator.ledger import read_ledger
from tests.orchestrator.features.synthetic import RuleMeasurer, latent_set, rules_from_spec

SPEC = {"0": {"animal": []}, "1": {"tokens": ["red", "blue", "green", "yellow"]}, "2": {"tokens": ["monday", "friday"]},
        "3": {"tokens": ["paris", "london", "rome", "berlin"]}}
RULE_SERVER = [sys.executable, str(Path(__file__).with_name("rule_measure_server.py")), json.dumps(SPEC)]
TASK = """kind: explain_sae
name: feat-cli
n_latents: 3
refine: {n_baseline: 3, max_rounds: 4}
"""


def _engine_done(root: Path) -> None:
    """What the engine step leaves (so the test needs no mlx): an SAE and the sampled latents."""
    (root / "engine" / "sae").mkdir(parents=True)
    (root / "engine" / "sae" / "cfg.json").write_text("{}")
    (root / "engine" / "sae" / "sae_weights.safetensors").write_bytes(b"fake")
    (root / "engine" / "latents.json").write_text(latent_set(rules_from_spec(SPEC)).model_dump_json())


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    base = tmp_path_factory.mktemp("cli")
    task_file, root = base / "task.yaml", base / "run"
    task_file.write_text(TASK)
    _engine_done(root)
    mp = pytest.MonkeyPatch()
    mp.setenv(MEASURE_ENV, json.dumps(RULE_SERVER))
    code = main(["run", str(task_file), "--run-dir", str(root), "--quiet"])
    yield task_file, root, code, mp
    mp.undo()


def test_main_run_routes_a_feature_task_and_writes_the_report(finished, capsys):
    task_file, root, code, _ = finished
    assert code == 0
    entries = read_ledger(root / "results.jsonl")
    kept = [e for e in entries if e.decision == "keep"]
    assert len(entries) == 3 and kept
    report = (root / "report.md").read_text()
    assert "## Features" in report and "random-explanation baseline" in report
    first_kept = report.index(f"(attempt {kept[0].attempt:04d}, kept)")
    assert all(first_kept < report.index(f"(attempt {e.attempt:04d}, not kept)") for e in entries if e.decision != "keep")
    assert kept[0].hypothesis in report and (root / "report.html").is_file()
    assert main(["status", str(root)]) == 0 and "finished" in capsys.readouterr().out
    assert main(["review", str(root)]) == 0 and f"{kept[0].attempt:04d}" in capsys.readouterr().out


def test_running_again_resumes_and_a_different_task_is_refused(finished, tmp_path, capsys):
    task_file, root, _, _ = finished
    before = (root / "results.jsonl").read_text()
    assert main(["run", str(task_file), "--run-dir", str(root), "--quiet"]) == 0
    assert main(["resume", str(root), "--quiet"]) == 0
    assert (root / "results.jsonl").read_text() == before, "nothing is explained twice"
    other = tmp_path / "other.yaml"
    other.write_text(TASK.replace("n_latents: 3", "n_latents: 2"))
    assert main(["run", str(other), "--run-dir", str(root)]) == 2
    assert "different task" in capsys.readouterr().err


def test_verify_confirms_a_kept_latent_in_the_trusted_child(finished, capsys):
    _, root, _, _ = finished
    kept = next(e for e in read_ledger(root / "results.jsonl") if e.decision == "keep")
    assert main(["verify", str(root), f"findings/{kept.attempt:04d}-{kept.slug}.md"]) == 0
    out = capsys.readouterr().out
    assert "CONFIRMED" in out and "baseline" in out and "adversarial record" in out and "consistent" in out


def test_verify_fails_when_a_recorded_adversarial_activation_was_edited(finished, capsys):
    _, root, _, _ = finished
    kept = next(e for e in read_ledger(root / "results.jsonl") if e.decision == "keep")
    path = root / "results" / f"{kept.attempt:04d}.json"
    original = path.read_text()
    data = json.loads(original)
    measured = data["result"]["measurements"]["outcome"]["rounds"][0]["adversarial"][0]["example"]
    measured["acts"] = [a + 1.0 for a in measured["acts"]]
    path.write_text(json.dumps(data))
    try:
        assert main(["verify", str(root), str(kept.attempt)]) == 1
        assert "INCONSISTENT" in capsys.readouterr().out
    finally:
        path.write_text(original)


def test_verify_refuses_changed_held_out_examples(finished, capsys):
    _, root, _, _ = finished
    path = root / "engine" / "latents.json"
    original = path.read_text()
    path.write_text(original.replace('"acts":[0.0,', '"acts":[9.0,', 1))
    try:
        assert main(["verify", str(root), "1"]) == 1
        assert "changed since the contract commit" in capsys.readouterr().out
    finally:
        path.write_text(original)


def test_the_loop_process_cannot_keep_what_the_trusted_child_rejects(tmp_path, monkeypatch):
    """Whatever the loop process (where an LLM explainer lives) concludes, the child's verdict is recorded."""
    real = feature_run.refine_latent

    def lying(*args, **kwargs):
        outcome = real(*args, **kwargs)
        return outcome.model_copy(update={"kept": True, "test": outcome.test.model_copy(update={"detection": 1.0})})

    monkeypatch.setattr(feature_run, "refine_latent", lying)
    monkeypatch.setattr(feature_run, "make_explainer", lambda task, factory=None, ledger=None: _Wrong())
    root = tmp_path / "run"
    _engine_done(root)
    task = parse_feature_task({"name": "liar", "n_latents": 2, "refine": {"n_baseline": 3, "max_rounds": 3}})
    verifier = TrustedVerifier(root, measure_command=RULE_SERVER)  # starts on first use, after the contract commit
    try:
        summary = run_feature_task(task, root, measurer=RuleMeasurer(rules_from_spec(SPEC)), verifier=verifier,
                                   log=lambda s: None)
    finally:
        verifier.close()
    assert summary.n_kept == 0 and not list((root / "findings").glob("*.md"))
    outcome = json.loads((root / "results" / "0001.json").read_text())["result"]["measurements"]["outcome"]
    assert outcome["verdict"]["kept"] is False and outcome["test"]["detection"] < 1.0
    assert "overruled by the trusted verifier" in outcome["error"]


class _Wrong:
    """An explainer that always says "fires on 'the'" and never attacks it."""

    name = "wrong"

    def _e(self):
        from orchestrator.agent.base import StepResult
        from orchestrator.features.schemas import Explanation, Predicate
        return StepResult(value=Explanation(text="the word 'the'", predicate=Predicate(tokens=["the"])))

    def explain(self, view):
        return self._e()

    def attack(self, explanation, view, round, history):
        from orchestrator.agent.base import StepResult
        return StepResult(value=[])

    def revise(self, explanation, view, history):
        return self._e()
