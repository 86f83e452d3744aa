"""The builtin explainer's revision: local edits of the current predicate, driven by measured evidence.

Why edits and not a refit: a refit from scratch on train (plus a few short counterexamples) lands on
the same greedy optimum as the first explanation, so the rounds changed nothing. Here each round starts
from the current rule and tries every single edit the evidence suggests —
  widen:  add a token, a lexicon concept or a symbol class the latent fired on (e.g. the concept member
          a concept_without_surface input showed firing, a near-miss variant that still fired);
  narrow: drop an item (its surface_without_concept inputs stayed silent), or require a context
          token seen before the rule's active matches;
  relax:  drop a context item (the token fired without it);
— scores each on train plus every measured adversarial input (counted ``adversarial_weight`` times) with
fit.objective, and applies the best ones that raise it by more than MIN_GAIN, up to ``max_edits`` per
round, never returning to a rule tried before. Per-item precision and weights are then re-estimated on
the same evidence. Which version is kept is decided by the validation split (refine._select), never here.
Deterministic: ties break by edit name.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from engine.features.corpus.lexicon import SYMBOL_CLASSES
from engine.features.schemas import Example
from orchestrator.features.fit import _CATEGORY_WORDS, MIN_GAIN, TokenTable, _candidates, objective
from orchestrator.features.schemas import Predicate

Item = tuple[str, str, np.ndarray]  # (kind, value, match mask)
Rule = tuple[frozenset[str], frozenset[str]]  # (item names, context tokens)


def _items_of(pred: Predicate, table: TokenTable) -> dict[str, Item]:
    """The predicate's items as fit-style candidates (a word list that is no lexicon concept stays one item)."""
    out: dict[str, Item] = {f"token:{t}": ("token", t, table.mask_tokens({t})) for t in pred.tokens}
    words = set(pred.words)
    for cat, vocab in _CATEGORY_WORDS.items():
        if vocab <= words:
            out[f"concept:{cat}"] = ("concept", cat, table.mask_words(vocab))
            words -= vocab
    if words:
        out["words:" + ",".join(sorted(words))[:80]] = ("words", ",".join(sorted(words)), table.mask_words(words))
    if pred.regex:
        classes = [(n, p) for n, p in SYMBOL_CLASSES.items() if f"(?:{p})" in pred.regex]
        if classes and "|".join(f"(?:{p})" for _, p in classes) == pred.regex:
            out.update({f"class:{n}": ("class", p, table.mask_regex(p)) for n, p in classes})
        else:
            out[f"regex:{pred.regex}"] = ("class", pred.regex, table.mask_regex(pred.regex))
    return out


def _context_candidates(table: TokenTable, covered: np.ndarray, window: int, limit: int = 20) -> list[str]:
    """Tokens most often seen within ``window`` before the rule's active matches."""
    before: Counter[str] = Counter()
    for i in np.nonzero(covered & table.y)[0]:
        start = table.starts[table.example_of[i]]
        before.update(set(table.tok[max(start, i - window) : i]))
    return sorted(before, key=lambda t: (-before[t], t))[:limit]


class _Search:
    def __init__(self, table: TokenTable, items: dict[str, Item], window: int) -> None:
        self.table, self.items, self.window = table, items, window
        self._ctx: dict[frozenset[str], np.ndarray] = {}

    def mask(self, rule: Rule) -> np.ndarray:
        names, context = rule
        m = np.zeros(len(self.table.tok), dtype=bool)
        for n in names:
            m |= self.items[n][2]
        if context:
            if context not in self._ctx:
                self._ctx[context] = self.table.context_mask(set(context), self.window)
            m &= self._ctx[context]
        return m

    def score(self, rule: Rule) -> float:
        """Half fit.objective (token F1 + "fires somewhere"), half the balanced accuracy of the detection
        probability the scorer will compute from the recalibrated per-item precision (what held-out
        detection measures: a match of a rarely-firing item alone does not predict activation)."""
        if not rule[0]:
            return 0.0
        fired = self.mask(rule)
        t = self.table
        log_silent = np.zeros(len(t.tok))
        for n in sorted(rule[0]):
            sel = self.items[n][2] & fired
            if sel.any():
                p = (float(t.y[sel].sum()) + 1.0) / (float(sel.sum()) + 2.0)
                log_silent[sel] = np.log1p(-min(p, 1.0 - 1e-9))
        prob = 1.0 - np.exp(np.add.reduceat(log_silent, t.starts[:-1])) if len(log_silent) else log_silent
        pos = t.example_active
        predicted = prob >= 0.5
        tpr = float(predicted[pos].mean()) if pos.any() else 0.0
        tnr = float((~predicted[~pos]).mean()) if (~pos).any() else 1.0
        return 0.5 * objective(t, fired) + 0.25 * (tpr + tnr)

    def edits(self, rule: Rule) -> list[tuple[str, Rule]]:
        names, context = rule
        out = [(f"drop {n}", (names - {n}, context)) for n in sorted(names) if len(names) > 1]
        out += [(f"add {n}", (names | {n}, context)) for n in sorted(self.items) if n not in names]
        out += [(f"unrequire {c!r}", (names, context - {c})) for c in sorted(context)]
        if names:
            for c in _context_candidates(self.table, self.mask((names, frozenset())), self.window):
                if c not in context:
                    out.append((f"require {c!r}", (names, context | {c})))
        return out


def revise_predicate(pred: Predicate, train: Sequence[Example], adversarial: Sequence[Example], max_act: float, *,
                     adversarial_weight: int = 3, max_edits: int = 2, tried: Sequence[Predicate] = ()
                     ) -> tuple[Predicate, list[str]]:
    """The revised predicate and the edits made (empty: the evidence supports the current rule)."""
    table = TokenTable([ex for ex in [*train, *list(adversarial) * adversarial_weight] if ex.tokens])
    if not table.y.any():
        return pred, []
    window = pred.context_window
    items = {**_candidates(table), **_items_of(pred, table)}
    search = _Search(table, items, window)
    current: Rule = (frozenset(_items_of(pred, table)), frozenset(pred.context))
    seen = {_key(p) for p in tried} | {_key(pred)}
    best = search.score(current)
    done: list[str] = []
    for _ in range(max_edits):
        scored = sorted(((search.score(r), name, r) for name, r in search.edits(current)), key=lambda s: (-s[0], s[1]))
        choice = next(((s, name, r) for s, name, r in scored if s - best > MIN_GAIN and _rule_key(r, items) not in seen), None)
        if choice is None:
            break
        best, name, current = choice
        done.append(name)
        seen.add(_rule_key(current, items))
    if not done:
        return pred, []
    names = sorted(current[0])
    context = sorted(current[1])
    new = _assemble(names, items, context, window)
    _calibrate(new, table, names, items, search.mask(current), max_act)
    return new, done


def _keys(kind: str, value: str) -> list[str]:
    """The Predicate keys (weights/precision) an item matches under."""
    if kind == "token":
        return [value]
    if kind == "concept":
        return sorted(_CATEGORY_WORDS[value])
    if kind == "words":
        return value.split(",")
    return ["regex"]


def _assemble(names: Sequence[str], items: dict[str, Item], context: Sequence[str], window: int) -> Predicate:
    tokens, words, regexes = [], set(), []
    for n in names:
        kind, value, _ = items[n]
        if kind == "token":
            tokens.append(value)
        elif kind in ("concept", "words"):
            words |= set(_keys(kind, value))
        else:
            regexes.append(value)
    regex = "|".join(f"(?:{r})" for r in regexes) or None
    return Predicate(tokens=tokens, words=sorted(words), regex=regex, context=list(context), context_window=window)


def _calibrate(pred: Predicate, table: TokenTable, names: Sequence[str], items: dict[str, Item], fired: np.ndarray,
               max_act: float) -> None:
    """Per item, mean activation where it fires (0..10 of max_act) and P(active | it fires), Laplace-smoothed."""
    scale = 10.0 / max(max_act, 1e-9)
    for n in names:
        kind, value, mask = items[n]
        sel = mask & fired
        p = round((float(table.y[sel].sum()) + 1.0) / (float(sel.sum()) + 2.0), 3)
        w = round(float(np.clip(table.acts[sel].mean() * scale, 0.5, 10.0)), 2) if sel.any() else None
        for key in _keys(kind, value):
            pred.precision[key] = max(p, pred.precision.get(key, 0.0)) if key == "regex" else pred.precision.get(key, p)
            if w is not None:
                pred.weights[key] = max(w, pred.weights.get(key, 0.0)) if key == "regex" else pred.weights.get(key, w)
    pred.default_precision = round((float(table.y[fired].sum()) + 1.0) / (float(fired.sum()) + 2.0), 3) if fired.any() else 1.0
    pred.default_weight = round(float(np.clip(table.acts[fired].mean() * scale, 0.5, 10.0)), 2) if fired.any() else 5.0


def _key(pred: Predicate) -> tuple:
    return (tuple(sorted(pred.tokens)), tuple(sorted(pred.words)), pred.regex or "", tuple(sorted(pred.context)))


def _rule_key(rule: Rule, items: dict[str, Item]) -> tuple:
    return _key(_assemble(sorted(rule[0]), items, sorted(rule[1]), 8))
