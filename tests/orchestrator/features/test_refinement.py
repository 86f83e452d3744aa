"""The refinement loop: rounds, guardrails and the keep rule, with the acceptance scenarios of issue 13:
a deliberately wrong first explanation is driven to a higher held-out score by the adversarial rounds,
and an explanation describing only the top examples' surface tokens is caught by adversarial inputs.
"""

from __future__ import annotations

from engine.features.corpus.lexicon import CATEGORIES
from orchestrator.features.attacks import write_attacks
from orchestrator.features.batch import explain_latents
from orchestrator.features.explainers import BuiltinExplainer
from orchestrator.features.llm_explainer import LLMExplainer
from orchestrator.features.refine import RefineConfig, refine_latent
from orchestrator.features.schemas import AdversarialInput, Explanation, Predicate
from orchestrator.features.scorers import PredicateScorer
from orchestrator.features.scoring import score
from tests.orchestrator.features.scripted_llm import ScriptedLLM
from tests.orchestrator.features.synthetic import RuleMeasurer, animal_rule, latent_set, make_latent, token_rule

ANIMAL_WORDS = sorted(w.lower() for w in CATEGORIES["animal"])
POOL = [(100 + i, Explanation(text=w, predicate=Predicate(tokens=[w])))
        for i, w in enumerate(["the", "of", "in", ",", ".", "red", "and", "a", "to", "paris"])]


def _inputs(*items: tuple[str, str, bool]) -> list[AdversarialInput]:
    return [AdversarialInput(text=t, intent=i, expect_active=e) for t, i, e in items]


def test_wrong_first_explanation_is_driven_to_a_higher_held_out_score_by_adversarial_rounds():
    latent = make_latent(animal_rule(), latent=7)
    measurer = RuleMeasurer({7: animal_rule()})
    hypotheses = [
        Explanation(text="Fires on the word 'the'.", predicate=Predicate(tokens=["the"])),
        Explanation(text="Fires on 'cat' and 'dog'.", predicate=Predicate(tokens=["cat", "dog"])),
        Explanation(text="Fires on animal names.", predicate=Predicate(words=ANIMAL_WORDS)),
    ]
    attacks = [
        _inputs(("The table and the chair.", "surface_without_concept", True),
                ("A horse ran to a barn.", "concept_without_surface", False),
                ("Wolves and a fox.", "concept_without_surface", False),
                ("the end", "near_miss", True)),
        _inputs(("A horse ran to a barn.", "concept_without_surface", False),
                ("A tiger in a zoo.", "concept_without_surface", False),
                ("My cat sleeps.", "edge_case", True)),
        _inputs(("A panda eats bamboo.", "concept_without_surface", True),
                ("The red car.", "surface_without_concept", False),
                ("A lion roared.", "edge_case", True)),
    ]
    llm = ScriptedLLM(hypotheses, attacks)
    outcome = refine_latent(latent, LLMExplainer(llm), PredicateScorer(), measurer, POOL, RefineConfig(), sae="s", hook="h")

    first_val = outcome.rounds[0].val.detection
    assert outcome.rounds[0].falsified and outcome.rounds[1].falsified  # the attacks contradicted both wrong ones
    assert outcome.final.predicate.words == ANIMAL_WORDS
    assert outcome.final_val.detection > first_val + 0.3
    first_test, _ = score(hypotheses[0], latent.test, PredicateScorer(), 1000)
    assert outcome.test.detection > first_test.detection + 0.3  # the held-out score rose, not just val
    assert len(outcome.rounds) >= 3 and outcome.kept
    # everything is recorded: each round's inputs with their measured activations
    assert all(len(r.adversarial) >= 3 for r in outcome.rounds)
    horse = next(m for m in outcome.rounds[0].adversarial if "horse" in m.input.text)
    assert horse.active and horse.contradicts and max(horse.example.acts) == 3.0
    # without contradictions the scripted LLM would never have changed its mind
    assert [role for role, _ in llm.calls].count("feature-revise") == len(outcome.rounds)


def test_surface_token_explanation_is_caught_by_adversarial_inputs():
    rule = animal_rule(strong=frozenset({"cat", "dog"}))
    latent = make_latent(rule, latent=3)
    top = sorted(latent.train.activating, key=lambda e: -e.max_act)[:5]
    assert all({"cat", "dog"} & {t.strip().lower().rstrip("s") for t, a in zip(e.tokens, e.acts) if a > 0}
               for e in top)
    surface = Explanation(text="Fires on 'cat' and 'dog'.", predicate=Predicate(tokens=["cat", "dog"]))

    inputs = write_attacks(surface.predicate, latent.train, round=0, seed=1)
    concept = [i for i in inputs if i.intent == "concept_without_surface"]
    assert concept, "the builtin attacker writes the concept without the surface tokens"
    measurer = RuleMeasurer({3: rule})
    outcome = refine_latent(latent, BuiltinExplainer(seed=1), PredicateScorer(), measurer, POOL, RefineConfig(),
                            initial=surface)
    first = outcome.rounds[0]
    caught = [m for m in first.adversarial if m.input.intent == "concept_without_surface" and m.contradicts]
    assert first.falsified and caught, "other animals fire although the surface explanation predicts silence"
    assert all(m.active and m.predicted < 0.5 for m in caught)
    assert outcome.test.detection > score(surface, latent.test, PredicateScorer(), 1000)[0].detection


def test_guardrails_min_rounds_and_convergence_on_val():
    latent = make_latent(token_rule({"red", "blue", "green"}), latent=1)
    measurer = RuleMeasurer({1: token_rule({"red", "blue", "green"})})
    cfg = RefineConfig(min_rounds=3, max_rounds=6)
    outcome = refine_latent(latent, BuiltinExplainer(), PredicateScorer(), measurer, POOL, cfg)
    assert len(outcome.rounds) >= 3
    if outcome.converged:
        assert outcome.convergence_round >= cfg.min_rounds - 1
    assert outcome.kept and outcome.margins["detection"] >= 3.0
    assert all(r.adversarial for r in outcome.rounds)  # every round attacked its explanation
    assert len(outcome.baselines["detection"].scores) == len(POOL)


def test_unrelated_explanation_is_not_kept():
    latent = make_latent(animal_rule(), latent=2)
    measurer = RuleMeasurer({2: animal_rule()})
    wrong = Explanation(text="commas", predicate=Predicate(tokens=[","]))

    class Stubborn(BuiltinExplainer):  # never revises: the keep rule alone must reject it
        def revise(self, explanation, view, history):
            from orchestrator.agent.base import StepResult
            return StepResult(value=explanation)

    outcome = refine_latent(latent, Stubborn(), PredicateScorer(), measurer, POOL, RefineConfig(), initial=wrong)
    assert not outcome.kept and outcome.margins["detection"] < 3.0


def test_batch_summary_reports_scores_baselines_and_usage():
    rules = {0: animal_rule(), 1: token_rule({"red", "blue", "green", "yellow"}), 2: token_rule({"monday", "friday"}),
             3: token_rule({"paris", "london", "rome"})}
    llm_free = BuiltinExplainer()
    outcomes, summary = explain_latents(latent_set(rules), llm_free, PredicateScorer(), RuleMeasurer(rules),
                                        RefineConfig(n_baseline=3))
    assert summary.n_latents == 4 and summary.usage.calls == 0
    assert summary.mean_test["detection"] > summary.mean_baseline["detection"]
    assert 0 <= summary.fraction_kept <= 1 and summary.latents_per_hour > 0
    assert all(len(o.baselines["detection"].scores) == 3 for o in outcomes)
