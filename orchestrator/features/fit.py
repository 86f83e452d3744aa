"""Fit a Predicate to token-level activation data: the builtin explainer's statistics.

Greedy selection of the items (single tokens, lexicon concepts, symbol classes) that most raise the
token-level F1 of "predicate fires" vs "latent active", then an optional context condition, then
weights = mean activation where each item matches (what a simulator should predict there).
Deterministic: ties break by item name.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

from engine.features.corpus.lexicon import CATEGORIES, SYMBOL_CLASSES
from engine.features.schemas import Example
from orchestrator.features.predicate import norm, words
from orchestrator.features.schemas import Predicate

MAX_ITEMS = 12
MIN_GAIN = 0.005
MIN_EXAMPLES = 2  # an item must be active in at least this many distinct examples (no one-off tokens)
_CATEGORY_WORDS = {c: frozenset(w.lower() for w in ws) | frozenset(w.lower() + "s" for w in ws) for c, ws in CATEGORIES.items()}


class TokenTable:
    """Flattened positions of many examples: normalised token, word, activation, example index."""

    def __init__(self, examples: Sequence[Example]) -> None:
        self.examples = list(examples)
        self.tok: list[str] = []
        self.word: list[str] = []
        acts: list[float] = []
        starts = [0]
        for ex in self.examples:
            self.tok.extend(norm(t) for t in ex.tokens)
            self.word.extend(words(ex.tokens))
            acts.extend(ex.acts)
            starts.append(len(self.tok))
        self.acts = np.asarray(acts, dtype=float)
        self.y = self.acts > 0
        self.starts = np.asarray(starts)
        self.example_of = np.repeat(np.arange(len(self.examples)), np.diff(self.starts))
        self.pos_in_example = np.arange(len(self.tok)) - self.starts[self.example_of]
        self.example_active = np.maximum.reduceat(self.y, self.starts[:-1]) if len(self.y) else self.y

    def mask_tokens(self, items: set[str]) -> np.ndarray:
        return np.fromiter((t in items for t in self.tok), dtype=bool, count=len(self.tok))

    def mask_words(self, items: frozenset[str] | set[str]) -> np.ndarray:
        return np.fromiter((bool(w) and w in items for w in self.word), dtype=bool, count=len(self.word))

    def mask_regex(self, pattern: str) -> np.ndarray:
        rx = re.compile(pattern, re.IGNORECASE)
        return np.fromiter((bool(rx.search(t)) for t in self.tok), dtype=bool, count=len(self.tok))

    def context_mask(self, items: set[str], window: int) -> np.ndarray:
        """True where one of ``items`` (token or word) occurs within ``window`` earlier positions of the same example."""
        hit = np.fromiter((t in items or (bool(w) and w in items) for t, w in zip(self.tok, self.word)), dtype=bool,
                          count=len(self.tok))
        out = np.zeros(len(self.tok), dtype=bool)
        for lag in range(1, window + 1):
            shifted = np.zeros_like(hit)
            shifted[lag:] = hit[:-lag]
            out |= shifted & (self.pos_in_example >= lag)
        return out


def f1(pred: np.ndarray, y: np.ndarray) -> float:
    tp = float(np.sum(pred & y))
    return 2 * tp / (float(pred.sum()) + float(y.sum())) if tp else 0.0


def objective(table: "TokenTable", pred: np.ndarray) -> float:
    """Half token-level F1 (what simulation and fuzzing reward), half example-level balanced accuracy
    of "fires somewhere" (what detection rewards)."""
    fired = np.maximum.reduceat(pred, table.starts[:-1]) if len(pred) else pred
    pos = table.example_active
    tpr = float(fired[pos].mean()) if pos.any() else 0.0
    tnr = float((~fired[~pos]).mean()) if (~pos).any() else 1.0
    return 0.5 * f1(pred, table.y) + 0.25 * (tpr + tnr)


def _candidates(table: TokenTable) -> dict[str, tuple[str, str, np.ndarray]]:
    """name -> (kind, value, match mask) for tokens seen active, concepts with >=2 active words, symbol classes."""
    cands: dict[str, tuple[str, str, np.ndarray]] = {}
    support: dict[str, set[int]] = {}
    for i in np.nonzero(table.y)[0]:
        support.setdefault(table.tok[i], set()).add(int(table.example_of[i]))
    frequent = sorted((t for t, ex in support.items() if len(ex) >= MIN_EXAMPLES), key=lambda t: (-len(support[t]), t))
    for tok in frequent[:150]:
        cands[f"token:{tok}"] = ("token", tok, table.mask_tokens({tok}))
    active_words = {w for w, y in zip(table.word, table.y) if y and w}
    for cat, vocab in _CATEGORY_WORDS.items():
        if len(active_words & vocab) >= 2:
            cands[f"concept:{cat}"] = ("concept", cat, table.mask_words(vocab))
    for name, pattern in SYMBOL_CLASSES.items():
        mask = table.mask_regex(pattern)
        if np.unique(table.example_of[mask & table.y]).size >= MIN_EXAMPLES:
            cands[f"class:{name}"] = ("class", pattern, mask)
    return cands


def fit_predicate(examples: Sequence[Example], max_act: float, context_window: int = 8) -> tuple[Predicate, float]:
    """The best greedy predicate for these examples and its objective (see ``objective``) on them."""
    table = TokenTable([ex for ex in examples if ex.tokens])
    if not table.y.any():
        return Predicate(), 0.0
    cands = _candidates(table)
    chosen: list[str] = []
    current = np.zeros(len(table.tok), dtype=bool)
    best = objective(table, current)
    while len(chosen) < MAX_ITEMS:
        scored = sorted(((objective(table, current | m), name) for name, (_, _, m) in cands.items() if name not in chosen),
                        key=lambda s: (-s[0], s[1]))
        if not scored or scored[0][0] - best < MIN_GAIN:
            break
        best, name = scored[0]
        chosen.append(name)
        current |= cands[name][2]
    context, current_ctx, best = _fit_context(table, current, best, context_window)
    pred = _assemble(chosen, cands, context, context_window)
    pred.weights, pred.default_weight = _weights(table, chosen, cands, current_ctx, max_act)
    pred.precision, pred.default_precision = _precision(table, chosen, cands, current_ctx)
    return pred, best


def _fit_context(table: TokenTable, current: np.ndarray, best: float, window: int) -> tuple[list[str], np.ndarray, float]:
    """Greedily add context items (OR-ed) when requiring them raises F1 by more than 0.01."""
    if not current.any():
        return [], current, best
    before = Counter()
    for i in np.nonzero(current & table.y)[0]:
        ex_start = table.starts[table.example_of[i]]
        before.update(set(table.tok[max(ex_start, i - window) : i]))
    context: list[str] = []
    masked = current
    for _ in range(5):
        trials = []
        for item, _ in before.most_common(40):
            if item in context:
                continue
            mask = current & table.context_mask(set(context) | {item}, window)
            trials.append((objective(table, mask), item, mask))
        if not trials:
            break
        score, item, mask = max(trials, key=lambda t: (t[0], t[1]))
        if score - best <= 0.01:
            break
        best, masked = score, mask
        context.append(item)
    return context, masked, best


def _assemble(chosen: list[str], cands: dict, context: list[str], window: int) -> Predicate:
    tokens, word_list, regexes = [], [], []
    for name in chosen:
        kind, value, _ = cands[name]
        if kind == "token":
            tokens.append(value)
        elif kind == "concept":
            word_list.extend(sorted(_CATEGORY_WORDS[value]))
        else:
            regexes.append(value)
    regex = "|".join(f"(?:{r})" for r in regexes) or None
    return Predicate(tokens=tokens, words=sorted(set(word_list)), regex=regex, context=context, context_window=window)


def _weights(table: TokenTable, chosen: list[str], cands: dict, fired: np.ndarray, max_act: float
             ) -> tuple[dict[str, float], float]:
    """Mean activation (0..10 of max_act) where each item fires: the simulator's best constant guess."""
    scale = 10.0 / max(max_act, 1e-9)
    weights: dict[str, float] = {}
    for name in chosen:
        kind, value, mask = cands[name]
        sel = mask & fired
        if not sel.any():
            continue
        w = float(np.clip(table.acts[sel].mean() * scale, 0.5, 10.0))
        if kind == "token":
            weights[value] = round(w, 2)
        elif kind == "concept":
            for word in _CATEGORY_WORDS[value]:
                weights.setdefault(word, round(w, 2))
        else:
            weights["regex"] = round(max(w, weights.get("regex", 0.0)), 2)
    default = float(np.clip(table.acts[fired].mean() * scale, 0.5, 10.0)) if fired.any() else 5.0
    return weights, round(default, 2)


def _precision(table: TokenTable, chosen: list[str], cands: dict, fired: np.ndarray) -> tuple[dict[str, float], float]:
    """P(active | the item matches), Laplace-smoothed: what detection multiplies over a text's matches."""
    out: dict[str, float] = {}
    for name in chosen:
        kind, value, mask = cands[name]
        sel = mask & fired
        p = round((float(table.y[sel].sum()) + 1.0) / (float(sel.sum()) + 2.0), 3)
        if kind == "token":
            out[value] = p
        elif kind == "concept":
            for word in _CATEGORY_WORDS[value]:
                out.setdefault(word, p)
        else:
            out["regex"] = max(p, out.get("regex", 0.0))
    default = round((float(table.y[fired].sum()) + 1.0) / (float(fired.sum()) + 2.0), 3) if fired.any() else 1.0
    return out, default


def concept_of(pred: Predicate) -> str | None:
    """The lexicon category most of the predicate's tokens/words belong to, if any."""
    votes = Counter()
    for item in [*pred.tokens, *pred.words]:
        for cat, vocab in _CATEGORY_WORDS.items():
            if item in vocab:
                votes[cat] += 1
    if not votes:
        return None
    cat, n = votes.most_common(1)[0]
    return cat if n >= 1 else None


def _with_rate(pred: Predicate, token: str) -> str:
    rate = pred.precision.get(token)
    return repr(token) + (f" ({rate:.0%} of the time)" if rate is not None and rate < 0.9 else "")


def describe(pred: Predicate) -> str:
    """Human-readable text of a predicate (what an explanation's ``text`` says)."""
    if pred.is_empty():
        return "No consistent pattern: the rule fires nowhere."
    parts = []
    if pred.tokens:
        ranked = sorted(pred.tokens, key=lambda t: -pred.weights.get(t, pred.default_weight))
        shown = ", ".join(_with_rate(pred, t) for t in ranked[:8]) + (" ..." if len(ranked) > 8 else "")
        parts.append(f"the tokens {shown}")
    if pred.words:
        cats = sorted({c for c, v in _CATEGORY_WORDS.items() if set(pred.words) & v and len(set(pred.words) & v) > 3})
        base = [w for w in pred.words if not (w.endswith("s") and w[:-1] in pred.words)]
        parts.append(f"words of the concept(s) {', '.join(cats) or 'given'} (e.g. {', '.join(base[:4])})")
    if pred.regex:
        names = [n for n, p in SYMBOL_CLASSES.items() if p in pred.regex]
        parts.append(f"{' or '.join(names) or 'pattern'} tokens")
    text = "Fires on " + "; ".join(parts)
    if pred.context:
        text += f", only when {', '.join(repr(c) for c in pred.context[:5])} occurs within the {pred.context_window} tokens before"
    return text + "."
