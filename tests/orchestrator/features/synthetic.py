"""Synthetic latents for mlx-free tests: a regex tokenizer, rule-defined 'latents' over the generated
corpus, delphi-style splits, and a measurer that applies the same rule to any text.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence

from engine.features.corpus import documents
from engine.features.corpus.lexicon import CATEGORIES
from engine.features.schemas import Example, ExampleSplit, LatentExamples, LatentSet

Rule = Callable[[list[str]], list[float]]
_TOKEN = re.compile(r"\s*[A-Za-z]+|\s*\d|\s*[^\sA-Za-z\d]|\s+")
ANIMALS = {w.lower() for w in CATEGORIES["animal"]}


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text)


def animal_rule(strong: frozenset[str] = frozenset()) -> Rule:
    """Fires on every animal word (concept); 10 on words in ``strong``, 3 on the others."""
    def rule(tokens: list[str]) -> list[float]:
        out = []
        for t in tokens:
            w = t.strip().lower().rstrip("s") if t.strip().lower() not in ANIMALS else t.strip().lower()
            out.append((10.0 if w in strong else 3.0) if w in ANIMALS else 0.0)
        return out
    return rule


def windows(n: int, size: int = 24, seed: int = 0) -> list[list[str]]:
    out: list[list[str]] = []
    for doc in documents(seed):
        toks = tokenize(doc)
        for i in range(0, len(toks) - size + 1, size):
            out.append(toks[i : i + size])
        if len(out) >= n:
            return out[:n]
    return out


def make_latent(rule: Rule, latent: int = 0, n_windows: int = 3000, seed: int = 0,
                sizes: Sequence[tuple[int, int, int]] = ((30, 15, 10), (30, 15, 15), (40, 20, 20))) -> LatentExamples:
    """Split rule-labelled corpus windows as engine.features.sampling does (deciles, random, hard negatives)."""
    rng = random.Random(seed + latent)
    wins = windows(n_windows, seed=seed)
    exs = [Example(tokens=w, acts=rule(w), kind="random") for w in wins]
    active = sorted([e for e in exs if e.max_act > 0], key=lambda e: -e.max_act)
    silent = [e for e in exs if e.max_act == 0]
    top_tokens = {t.strip().lower() for e in active[:20] for t, a in zip(e.tokens, e.acts) if a > 0}
    hard = [e for e in silent if any(t.strip().lower() in top_tokens for t in e.tokens)]
    rand = [e for e in silent if e not in hard]
    rng.shuffle(hard)
    rng.shuffle(rand)
    deciles = [active[i::10] for i in range(10)]  # interleaved ranks keep every decile non-empty
    share = min(1.0, len(active) / sum(n for n, _, _ in sizes))
    acts_by_split: list[list[Example]] = [[] for _ in sizes]
    for q, members in enumerate(deciles):
        cursor = 0
        for s, (n_act, _, _) in enumerate(sizes):
            take = int(round(n_act * share / 10))
            acts_by_split[s] += [m.model_copy(update={"kind": "activating", "quantile": q})
                                 for m in members[cursor : cursor + take]]
            cursor += take
    splits = []
    for s, (_, n_rand, n_hard) in enumerate(sizes):
        splits.append(ExampleSplit(
            activating=acts_by_split[s],
            random=[m.model_copy(update={"kind": "random"}) for m in rand[s * n_rand : (s + 1) * n_rand]],
            hard_negative=[m.model_copy(update={"kind": "hard_negative"}) for m in hard[s * n_hard : (s + 1) * n_hard]],
        ))
    return LatentExamples(latent=latent, max_act=max(e.max_act for e in active), density=0.01,
                          n_activating_windows=len(active), train=splits[0], val=splits[1], test=splits[2])


def token_rule(words: set[str], value: float = 5.0) -> Rule:
    return lambda tokens: [value if t.strip().lower() in words else 0.0 for t in tokens]


def latent_set(rules: dict[int, Rule]) -> LatentSet:
    return LatentSet(sae_path="synthetic", model="synthetic", hook="synthetic", window=24, dead_fraction=0.0,
                     latents=[make_latent(rule, latent) for latent, rule in rules.items()])


class RuleMeasurer:
    """Measures 'latents' by applying their rules to the regex tokenisation of a text."""

    def __init__(self, rules: dict[int, Rule]) -> None:
        self.rules = rules
        self.calls: list[tuple[int, list[str]]] = []

    def measure(self, latent: int, texts: Sequence[str]) -> list[Example]:
        self.calls.append((latent, list(texts)))
        return [Example(tokens=(t := tokenize(x)), acts=self.rules[latent](t), kind="adversarial") for x in texts]


def rules_from_spec(spec: dict) -> dict[int, Rule]:
    """Rules from a JSON-able spec (for a measurement server in another process):
    {"0": {"animal": []}, "1": {"tokens": ["red", "blue"], "value": 5.0}} (animal: the strong words)."""
    out: dict[int, Rule] = {}
    for key, item in spec.items():
        if "animal" in item:
            out[int(key)] = animal_rule(frozenset(item["animal"]))
        else:
            out[int(key)] = token_rule(set(item["tokens"]), float(item.get("value", 5.0)))
    return out
