"""The feature task: schema errors are named; a run writes ledger lines, results the report can read,
and one findings commit per kept latent; running again resumes without repeating anything."""

from __future__ import annotations

import json

import git
import pytest

from orchestrator.features.task import FeatureTaskError, load_feature_task, parse_feature_task
from orchestrator.features.run import run_feature_task
from orchestrator.ledger import read_ledger
from orchestrator.report.specs import parse_feature_cards
from tests.orchestrator.features.synthetic import RuleMeasurer, animal_rule, latent_set, token_rule
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
    task = load_feature_task(DEFAULT_TASK.with_name("factual-recall-features.yaml"))
    pairs = task.behaviour.pairs()
    assert task.kind == "behaviour_features" and len(pairs) == 24 and pairs[0]["correct"].startswith(" ")
    with pytest.raises(FeatureTaskError, match="needs `behaviour:`"):
        parse_feature_task({"name": "x", "kind": "behaviour_features"})


def test_run_commits_kept_findings_and_resumes(tmp_path):
    rules = {0: animal_rule(), 1: token_rule({"red", "blue", "green", "yellow"}), 2: token_rule({"monday", "friday"}),
             3: lambda toks: [0.0] * len(toks)}
    rules[3] = token_rule({"paris", "london", "rome", "berlin"})
    root = tmp_path / "run"
    (root / "engine" / "sae").mkdir(parents=True)
    (root / "engine" / "sae" / "cfg.json").write_text("{}")
    (root / "engine" / "sae" / "sae_weights.safetensors").write_bytes(b"fake")
    (root / "engine" / "latents.json").write_text(latent_set(rules).model_dump_json())
    task = parse_feature_task({"name": "feat-test", "n_latents": 4, "refine": {"n_baseline": 3, "max_rounds": 4}})
    measurer = RuleMeasurer(rules)
    summary = run_feature_task(task, root, measurer=measurer, log=lambda s: None)

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

    calls = len(measurer.calls)
    again = run_feature_task(task, root, measurer=measurer, log=lambda s: None)
    assert len(measurer.calls) == calls, "a resumed run repeats no measurement"
    assert len(list(git.Repo(root).iter_commits("findings"))) == len(messages)
    assert again.n_kept == summary.n_kept and len(read_ledger(root / "results.jsonl")) == 4
