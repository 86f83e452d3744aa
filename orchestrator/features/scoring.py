"""Score an explanation on a held-out split (detection, fuzzing, simulation), and measure the
random-explanation baseline (explanations of other latents scored on the same split by the same scorer).

Fuzzing follows delphi: each activating example is shown either with its truly active tokens marked
or with as many non-active tokens marked at random (a seeded coin decides); negative examples are
shown with random marks. Only a correctly marked activating example is a positive.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from engine.features.schemas import Example, ExampleSplit
from engine.features.scoring import BaselineStats, auroc, balanced_accuracy, baseline_stats, chance_sigma, pearson
from orchestrator.agent.base import Usage
from orchestrator.features.schemas import METRICS, Explanation, ScoreSet
from orchestrator.features.scorers import Scorer


class ScoringError(RuntimeError):
    """The scorer failed (e.g. an LLM answer that never validated); the message carries its error."""


def fuzz_items(split: ExampleSplit, seed: int) -> tuple[list[tuple[list[str], list[bool]]], list[bool]]:
    """(tokens, marks) per example and the label (marks are the true active tokens) per example."""
    rng = random.Random(seed)
    items: list[tuple[list[str], list[bool]]] = []
    labels: list[bool] = []
    counts = [max(1, sum(a > 0 for a in ex.acts)) for ex in split.activating] or [1]
    for ex in split.activating:
        active = [a > 0 for a in ex.acts]
        if rng.random() < 0.5:
            items.append((ex.tokens, active))
            labels.append(True)
        else:
            items.append((ex.tokens, _random_marks(rng, len(ex.tokens), sum(active) or 1, exclude=active)))
            labels.append(False)
    for ex in split.negatives():
        items.append((ex.tokens, _random_marks(rng, len(ex.tokens), rng.choice(counts), exclude=None)))
        labels.append(False)
    return items, labels


def _random_marks(rng: random.Random, n: int, k: int, exclude: list[bool] | None) -> list[bool]:
    pool = [i for i in range(n) if not (exclude and exclude[i])] or list(range(n))
    chosen = set(rng.sample(pool, min(k, len(pool))))
    return [i in chosen for i in range(n)]


def score(explanation: Explanation, split: ExampleSplit, scorer: Scorer, seed: int = 0) -> tuple[ScoreSet, Usage]:
    """Detection, fuzzing and simulation of one explanation on one split."""
    examples: list[Example] = [*split.activating, *split.negatives()]
    labels = [True] * len(split.activating) + [False] * len(split.negatives())
    tokens = [ex.tokens for ex in examples]
    usage = Usage()
    det = scorer.detect(explanation, tokens)
    usage = usage + det.usage
    items, fuzz_labels = fuzz_items(split, seed)
    fz = scorer.fuzz(explanation, items)
    usage = usage + fz.usage
    sim = scorer.simulate(explanation, tokens)
    usage = usage + sim.usage
    for name, res in (("detection", det), ("fuzzing", fz), ("simulation", sim)):
        if res.value is None:
            raise ScoringError(f"{scorer.name} {name} scorer failed: {res.error}")
    predicted = [v for row in sim.value for v in row]
    actual = [a for ex in examples for a in ex.acts]
    return ScoreSet(
        detection=balanced_accuracy(labels, det.value), detection_auroc=auroc(labels, det.value),
        fuzzing=balanced_accuracy(fuzz_labels, fz.value), fuzzing_auroc=auroc(fuzz_labels, fz.value),
        simulation=pearson(predicted, actual), n_activating=len(split.activating), n_negative=len(split.negatives()),
    ), usage


def baseline(others: Sequence[Explanation], split: ExampleSplit, scorer: Scorer, seed: int = 0
             ) -> tuple[dict[str, BaselineStats], Usage]:
    """Each metric's baseline from explanations of other latents on this latent's split."""
    if not others:
        raise ScoringError("the random-explanation baseline needs explanations of other latents; none were given")
    usage = Usage()
    per_metric: dict[str, list[float]] = {m: [] for m in METRICS}
    for other in others:
        scores, used = score(other, split, scorer, seed)
        usage = usage + used
        for m in METRICS:
            per_metric[m].append(scores.get(m))
    n_pos, n_neg = len(split.activating), len(split.negatives())
    return {m: baseline_stats(m, per_metric[m], chance_sigma(m, n_pos, n_neg, n_pos + n_neg)) for m in METRICS}, usage
