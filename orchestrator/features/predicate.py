"""Evaluate a Predicate on a token sequence, deterministically.

Why word reconstruction: a BPE tokenizer splits rare words ('hippopotamus' -> several tokens), so a
concept stated as words ('animals') must match every token of the word, not only whole-word tokens.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

from orchestrator.features.schemas import Predicate

_ALNUM = re.compile(r"[A-Za-z0-9]")


def norm(token: str) -> str:
    """Stripped, lower-cased token text; whitespace-only tokens keep their whitespace (e.g. '\\n')."""
    stripped = token.strip().lower()
    return stripped or token


def words(tokens: Sequence[str]) -> list[str]:
    """The lower-cased word each token belongs to ('' for punctuation/whitespace tokens)."""
    out: list[str] = [""] * len(tokens)
    start = 0
    for i, tok in enumerate(tokens):
        continues = i > 0 and tok[:1].isalnum() and tokens[i - 1][-1:].isalnum()
        if not continues:
            start = i
        if not _ALNUM.search(tok):
            start = i + 1
            continue
        word = "".join(tokens[start : i + 1]).strip().lower()
        for j in range(start, i + 1):
            out[j] = word
        # later tokens of the same word rewrite the earlier ones with the longer word
    return out


@lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


def match_keys(pred: Predicate, tokens: Sequence[str]) -> list[str | None]:
    """Per token, the rule item that matches it (token, word, or 'regex'), or None."""
    normed = [norm(t) for t in tokens]
    wds = words(tokens)
    token_set, word_set, context_set = set(pred.tokens), set(pred.words), set(pred.context)
    rx = _regex(pred.regex) if pred.regex else None
    out: list[str | None] = [None] * len(tokens)
    for i, t in enumerate(normed):
        key = None
        if t in token_set:
            key = t
        elif wds[i] and wds[i] in word_set:
            key = wds[i]
        elif rx is not None and rx.search(t):
            key = "regex"
        if key is None:
            continue
        if context_set:
            lo = max(0, i - pred.context_window)
            if not any(normed[j] in context_set or (wds[j] and wds[j] in context_set) for j in range(lo, i)):
                continue
        out[i] = key
    return out


def evaluate(pred: Predicate, tokens: Sequence[str]) -> list[float]:
    """Predicted activation per token on a 0..10 scale (0 = the rule does not fire there)."""
    return [0.0 if k is None else float(pred.weights.get(k, pred.default_weight)) for k in match_keys(pred, tokens)]


def detection_probability(pred: Predicate, tokens: Sequence[str]) -> float:
    """P(the latent fires somewhere in the text) if each match fires independently with its precision."""
    silent = 1.0
    for key in match_keys(pred, tokens):
        if key is not None:
            silent *= 1.0 - float(pred.precision.get(key, pred.default_precision))
    return 1.0 - silent


def fires(pred: Predicate, tokens: Sequence[str]) -> bool:
    return any(k is not None for k in match_keys(pred, tokens))
