"""The circuit keep rule: faithful on held-out pairs (CI above a floored threshold), clearly above every
random circuit, and stable under resampling; each condition alone can reject."""

from __future__ import annotations

import numpy as np

from orchestrator.analysis.circuit import MIN_FAITHFULNESS, MIN_JACCARD, decide_circuit

RNG = np.random.default_rng(0)
GOOD = (0.85 + 0.05 * RNG.standard_normal(16)).tolist()
RANDOM = [(0.02 * RNG.standard_normal(16)).tolist() for _ in range(10)]


def run(effects=GOOD, randoms=RANDOM, jaccard=0.7, min_effect=0.6, min_jaccard=0.5, prior=()):
    return decide_circuit(effects, randoms, jaccard_mean=jaccard, min_effect=min_effect, min_jaccard=min_jaccard,
                          alpha=0.05, prior_p_values=list(prior), correction="holm", seed=1, n_bootstrap=2000)


def test_a_faithful_stable_circuit_is_kept():
    v = run()
    assert v.kept and v.beats_random and v.stable and v.reason.startswith("kept")
    assert v.verdict.effect == np.mean(GOOD) and v.threshold == 0.6


def test_the_threshold_is_never_below_the_floor():
    weak = (0.4 + 0.02 * RNG.standard_normal(16)).tolist()
    v = run(effects=weak, min_effect=0.05)
    assert v.threshold == MIN_FAITHFULNESS and not v.kept and "not cleared" in v.reason


def test_a_circuit_no_better_than_a_random_one_is_not_kept():
    randoms = [*RANDOM[:9], (0.8 + 0.02 * RNG.standard_normal(16)).tolist()]  # one random circuit is as faithful
    v = run(randoms=randoms)
    assert not v.beats_random and not v.kept and "does not exceed" in v.reason


def test_an_unstable_circuit_is_not_kept_and_the_claim_may_ask_for_more():
    assert not run(jaccard=MIN_JACCARD - 0.01).kept
    v = run(jaccard=0.7, min_jaccard=0.8)
    assert v.min_jaccard == 0.8 and not v.stable and not v.kept
    assert run(jaccard=0.7, min_jaccard=0.1).min_jaccard == MIN_JACCARD


def test_multiplicity_counts_earlier_claims():
    v = run(prior=[0.01] * 30)
    assert v.verdict.n_tests == 31 and v.verdict.adjusted_p >= v.verdict.p_value
