"""The feature task: schema errors are named; a run writes ledger lines, results the report can read,
and one findings commit per kept latent; running again resumes without repeating anything."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import git
import pytest

from orchestrator.features.task import FeatureTaskError, load_feature_task, parse_feature_task
from orchestrator.features.run import run_feature_task
from orchestrator.ledger import read_ledger
from orchestrator.report.specs import parse_feature_cards
from orchestrator.features.verify import TrustedVerifier
from tests.orchestrator.features.synthetic import RuleMeasurer, latent_set, rules_from_spec
from orchestrator.features.__main__ import DEFAULT_TASK


def test_default_task_parses_and_bad_fields_are_named(tmp_path):
    task = load_feature_task(DEFAULT_TASK)
    assert task.model == "smollm2-135m" and task.refine.min_rounds >= 3 and task.explainer.provider == "builtin"
    with pytest.raises(FeatureTaskError, match="n_latentz"):
        parse_feature_task({"name": "x", "n_latentz": 3})
    with pytest.raises(FeatureTaskError, match="provider"):
        parse_feature_task({"name": "x", "explainer": {"provider": "openai"}})
    (tmp_path / "t.yaml").write_text("name: [unclosed")
    with pytest.raises(FeatureTaskError, match="not valid YAML"):
        load_feature_task(tmp_path / "t.yaml")


def test_behaviour_task_parses_with_its_pairs():
    task = load_feature_task(DEFAULT_TASK.with_name("behaviour_features.yaml"))
    pairs = task.behaviour.pairs()
    assert task.kind == "behaviour_features" and len(pairs) == 24 and pairs[0]["correct"].startswith(" ")
    with pytest.raises(FeatureTaskError, match="needs `behaviour:`"):
        parse_feature_task({"name": "x", "kind": "behaviour_features"})


SPEC = {"0": {"animal": []}, "1": {"tokens": ["red", "blue", "green", "yellow"]}, "2": {"tokens": ["monday", "friday"]},
        "3": {"tokens": ["paris", "london", "rome", "berlin"]}}
RULE_SERVER = [sys.executable, str(Path(__file__).with_name("rule_measure_server.py")), json.dumps(SPEC)]


def _synthetic_run(root: Path, rules) -> None:
    (root / "engine" / "sae").mkdir(parents=True)
    (root / "engine" / "sae" / "cfg.json").write_text("{}")
    (root / "engine" / "sae" / "sae_weights.safetensors").write_bytes(b"fake")
    (root / "engine" / "latents.json").write_text(latent_set(rules).model_dump_json())


def test_run_commits_kept_findings_and_resumes(tmp_path):
    rules = rules_from_spec(SPEC)
    root = tmp_path / "run"
    _synthetic_run(root, rules)
    task = parse_feature_task({"name": "feat-test", "n_latents": 4, "refine": {"n_baseline": 3, "max_rounds": 4}})
    measurer = RuleMeasurer(rules)
    verifier = TrustedVerifier(root, measure_command=RULE_SERVER)
    summary = run_feature_task(task, root, measurer=measurer, verifier=verifier, log=lambda s: None)
    verifier.close()

    entries = read_ledger(root / "results.jsonl")
    assert [e.attempt for e in entries] == [1, 2, 3, 4] and summary.n_latents == 4
    kept = [e for e in entries if e.decision == "keep"]
    assert kept and summary.n_kept == len(kept)
    repo = git.Repo(root)
    messages = [c.message for c in repo.iter_commits("findings")]
    assert len(messages) == 1 + len(kept) and all(f"Attempt: {e.attempt}" in "".join(messages) for e in kept)
    assert len(list(repo.iter_commits("findings", paths="contract"))) == 1
    tracked = repo.git.ls_files().split()
    assert not any(p.startswith("engine/") for p in tracked), "the cache and SAE stay out of git"
    for e in kept:
        assert (root / "findings" / f"{e.attempt:04d}-{e.slug}.md").is_file()
    result = json.loads((root / "results" / "0001.json").read_text())["result"]
    cards, problems = parse_feature_cards(result["measurements"])
    assert not problems and cards[0].latent == 0 and set(cards[0].scores) >= {"detection", "fuzzing", "simulation"}
    note = (root / "findings" / f"{kept[0].attempt:04d}-{kept[0].slug}.md").read_text()
    assert "## Rounds" in note and "measured max" in note and "baseline" in note
    for e in entries:  # every decision is the trusted verifier's, with the adversarial record re-measured when kept
        outcome = json.loads((root / "results" / f"{e.attempt:04d}.json").read_text())["result"]["measurements"]["outcome"]
        assert outcome["verdict"]["kept"] == (e.decision == "keep") == outcome["kept"]
        if e.decision == "keep":
            assert outcome["verdict"]["adversarial_checked"] > 0 and outcome["verdict"]["adversarial_max_diff"] == 0.0

    calls = len(measurer.calls)
    again = run_feature_task(task, root, measurer=measurer, verifier=verifier, log=lambda s: None)
    assert len(measurer.calls) == calls, "a resumed run repeats no measurement"
    assert len(list(git.Repo(root).iter_commits("findings"))) == len(messages)
    assert again.n_kept == summary.n_kept and len(read_ledger(root / "results.jsonl")) == 4
