"""Predicates evaluate deterministically; metrics, fuzzing construction and the baseline behave as specified."""

from __future__ import annotations

import math

import pytest

from engine.features.schemas import Example, ExampleSplit
from engine.features.scoring import auroc, balanced_accuracy, baseline_stats, beats_baseline, chance_sigma, pearson
from orchestrator.features.predicate import evaluate, words
from orchestrator.features.schemas import Explanation, Predicate
from orchestrator.features.scorers import PredicateScorer, ScorerUnavailable
from orchestrator.features.scoring import baseline, fuzz_items, score
from tests.orchestrator.features.synthetic import animal_rule, make_latent, token_rule


def test_words_join_subword_tokens():
    assert words([" hippo", "pot", "amus", " ran", ",", " 1", "998"]) == ["hippopotamus"] * 3 + ["ran", "", "1998", "1998"]


def test_predicate_tokens_words_regex_and_context():
    toks = [" The", " cat", " sat", " at", " 10", ":", "30", " Q", ":", " dog"]
    assert evaluate(Predicate(tokens=["cat"]), toks)[1] == 10.0
    assert [v > 0 for v in evaluate(Predicate(regex=r"^\d+$"), toks)] == [False] * 4 + [True, False, True] + [False] * 3
    only_after_q = Predicate(tokens=[":"], context=["q"], context_window=1)
    assert [i for i, v in enumerate(evaluate(only_after_q, toks)) if v] == [8]
    weighted = Predicate(words=["dog", "cat"], weights={"dog": 2.5})
    sim = evaluate(weighted, toks)
    assert sim[9] == 2.5 and sim[1] == 10.0


def test_bad_regex_is_rejected_with_its_error():
    with pytest.raises(ValueError, match="does not compile"):
        Predicate(regex="(unclosed")


def test_metrics():
    assert balanced_accuracy([1, 1, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0]) == 0.75
    assert auroc([1, 1, 0, 0], [0.9, 0.5, 0.5, 0.1]) == 0.875
    assert auroc([1, 1], [0.2, 0.3]) is None
    assert pearson([0, 0, 0], [1, 2, 3]) == 0.0
    assert math.isclose(chance_sigma("detection", 50, 50), 0.05)


def test_sigma_floor_keeps_a_zero_spread_baseline_honest():
    flat = baseline_stats("detection", [0.5] * 8, sigma_floor=chance_sigma("detection", 50, 50))
    assert flat.std == 0.0 and flat.sigma == 0.05
    assert not beats_baseline(0.6, flat) and beats_baseline(0.66, flat)


def test_fuzz_items_mark_true_or_random_tokens():
    lat = make_latent(token_rule({"cat", "dog"}))
    items, labels = fuzz_items(lat.test, seed=3)
    n_act = len(lat.test.activating)
    assert len(items) == len(lat.test.all()) and not any(labels[n_act:])
    for (toks, marks), ex, label in zip(items[:n_act], lat.test.activating, labels[:n_act]):
        active = [a > 0 for a in ex.acts]
        assert (marks == active) == label
        assert sum(marks) == sum(active)
    assert fuzz_items(lat.test, seed=3) == (items, labels)  # deterministic


def test_exact_predicate_scores_perfectly_and_baseline_is_measured():
    rule_words = {"red", "blue", "green", "yellow"}
    lat = make_latent(token_rule(rule_words, 5.0))
    right = Explanation(text="colours", predicate=Predicate(tokens=sorted(rule_words)))
    s, usage = score(right, lat.test, PredicateScorer())
    assert s.n_activating >= 20
    assert s.detection == 1.0 and s.fuzzing == 1.0 and s.simulation > 0.99 and usage.calls == 0
    others = [Explanation(text=w, predicate=Predicate(tokens=[w])) for w in ("the", "in", "of", "and", "a")]
    stats, _ = baseline(others, lat.test, PredicateScorer())
    assert stats["detection"].mean < 0.75 and len(stats["detection"].scores) == 5
    assert beats_baseline(s.detection, stats["detection"])


def test_builtin_scorer_refuses_prose_only_explanations():
    lat = make_latent(animal_rule())
    with pytest.raises(ScorerUnavailable, match="predicate"):
        score(Explanation(text="animals"), lat.test, PredicateScorer())


def test_example_split_negatives():
    ex = Example(tokens=["a"], acts=[0.0], kind="random")
    split = ExampleSplit(random=[ex], hard_negative=[ex.model_copy(update={"kind": "hard_negative"})])
    assert [e.kind for e in split.negatives()] == ["random", "hard_negative"]


def test_a_predicate_serialises_to_the_same_bytes_whatever_order_its_maps_were_built_in():
    """Explainers build weights/precision from sets (order varies with the hash seed); notes must not."""
    from orchestrator.features.schemas import Predicate

    a = Predicate(words=["cat", "dog"], weights={"dog": 9.0, "cat": 8.0}, precision={"dog": 0.5, "cat": 0.4})
    b = Predicate(words=["cat", "dog"]).model_copy(update={"weights": {"cat": 8.0, "dog": 9.0},
                                                           "precision": {"cat": 0.4, "dog": 0.5}})
    c = Predicate(words=["cat", "dog"]).model_copy(update={"weights": {"dog": 9.0, "cat": 8.0},
                                                           "precision": {"dog": 0.5, "cat": 0.4}})
    assert a.model_dump_json() == b.model_dump_json() == c.model_dump_json()
