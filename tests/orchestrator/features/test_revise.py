"""The builtin explainer's revision edits its rule from evidence: narrows a rule that is too broad,
widens one that is too narrow, never proposes a rule it already tried, and is deterministic."""

from __future__ import annotations

from orchestrator.features.revise import revise_predicate
from orchestrator.features.schemas import Predicate
from tests.orchestrator.features.synthetic import animal_rule, make_latent, token_rule

COLOURS = {"red", "blue", "green", "yellow"}


def test_a_too_broad_rule_is_narrowed():
    latent = make_latent(token_rule(COLOURS), latent=1)
    broad = Predicate(tokens=["red", "blue", "green", "yellow", "the"])
    revised, edits = revise_predicate(broad, latent.train.all(), [], latent.max_act)
    assert "drop token:the" in edits and "the" not in revised.tokens
    assert set(revised.tokens) >= {"red", "blue"}
    assert 0.0 <= revised.precision["red"] <= 1.0 and revised.weights["red"] > 0


def test_a_too_narrow_rule_is_widened_to_the_concept():
    latent = make_latent(animal_rule(), latent=2)
    narrow = Predicate(tokens=["cat", "dog"])
    revised, edits = revise_predicate(narrow, latent.train.all(), [], latent.max_act)
    assert any(e.startswith("add ") for e in edits)
    assert "horse" in revised.words or len(revised.tokens) > 2


def test_tried_rules_are_not_proposed_again_and_revision_is_deterministic():
    latent = make_latent(token_rule(COLOURS), latent=1)
    broad = Predicate(tokens=["red", "blue", "green", "yellow", "the"])
    first, _ = revise_predicate(broad, latent.train.all(), [], latent.max_act, max_edits=1)
    again, _ = revise_predicate(broad, latent.train.all(), [], latent.max_act, max_edits=1)
    assert first == again
    other, edits = revise_predicate(broad, latent.train.all(), [], latent.max_act, max_edits=1, tried=[first])
    assert other.tokens != first.tokens or other.context != first.context or not edits


def test_a_rule_the_evidence_supports_is_kept():
    latent = make_latent(token_rule(COLOURS), latent=1)
    exact = Predicate(tokens=sorted(COLOURS))
    revised, edits = revise_predicate(exact, latent.train.all(), [], latent.max_act)
    assert edits == [] and revised == exact
