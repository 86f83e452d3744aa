"""Adversarial inputs the builtin explainer writes against its own explanation.

Four intents, each a way the explanation could be wrong:
- near_miss: an activating snippet with the firing token changed slightly (case, spacing, suffix,
  a sibling punctuation mark or digit): is the rule too narrow or too broad at its edge?
- concept_without_surface: the firing token swapped for another member of the same concept (lexicon
  category) that the explanation's surface tokens do not list: is the latent about the concept?
- surface_without_concept: the explanation's tokens dropped into unrelated text: do they fire
  without the context they came from?
- edge_case: the unmodified snippet (a control: does the short context still fire?) and, when the
  rule has a context condition, the context without the token.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from engine.features.corpus import KINDS, document
from engine.features.corpus.lexicon import CATEGORIES
from engine.features.schemas import Example, ExampleSplit
from orchestrator.features.fit import concept_of
from orchestrator.features.predicate import evaluate, norm
from orchestrator.features.schemas import AdversarialInput, Intent, Predicate

_SIBLINGS = {",": ";", ";": ",", ".": "!", "!": ".", "?": ".", ":": ";", "(": "[", ")": "]", "-": "+", "+": "-"}
LEFT, RIGHT = 12, 3  # snippet context around the anchor token


def _anchors(pred: Predicate, split: ExampleSplit) -> list[tuple[Example, int]]:
    """(example, position) where the rule fires and the latent is active, strongest first."""
    found = []
    for ex in split.activating:
        sim = evaluate(pred, ex.tokens)
        found.extend((ex.acts[i], ex.source, i, ex) for i in range(len(ex.tokens)) if sim[i] > 0 and ex.acts[i] > 0)
    found.sort(key=lambda t: (-t[0], t[1], t[2]))
    return [(ex, i) for _, _, i, ex in found]


def _missed(pred: Predicate, split: ExampleSplit) -> list[tuple[Example, int]]:
    """Active positions the rule does not cover (what the explanation leaves out)."""
    out = []
    for ex in split.activating:
        sim = evaluate(pred, ex.tokens)
        out.extend((ex, i) for i in range(len(ex.tokens)) if ex.acts[i] > 0 and sim[i] == 0)
    return out


def _snippet(ex: Example, i: int, replacement: str | None = None) -> str:
    toks = list(ex.tokens[max(0, i - LEFT) : i + RIGHT + 1])
    j = min(i, LEFT)
    if replacement is not None:
        toks[j] = replacement
    return "".join(toks).strip("\n") or "".join(toks)


def _variants(tok: str) -> list[str]:
    """Small surface changes of a token (keeping it recognisably the same)."""
    lead = tok[: len(tok) - len(tok.lstrip())]
    core = tok.strip()
    out = []
    if core in _SIBLINGS:
        out.append(lead + _SIBLINGS[core])
    if core.isdigit():
        out.append(lead + str((int(core) + 3) % 10 ** len(core)).zfill(len(core)))
    if core[:1].isalpha():
        out.append(lead + (core.lower() if core[:1].isupper() else core.capitalize()))
        out.append(lead + core + "s")
    if core:
        out.append(core if lead else " " + core)
    return [v for v in out if v != tok]


def _concept_members(pred: Predicate, cat: str) -> list[str]:
    used = set(pred.tokens)
    return [w for w in CATEGORIES[cat] if w.lower() not in used]


def _frames(rng: random.Random, n: int) -> list[str]:
    """Unrelated sentences from the corpus generator (first sentence of random documents)."""
    out = []
    for _ in range(n):
        text = document(rng.choice(KINDS), rng)
        first = re.split(r"(?<=[.!?\n])\s", text.strip(), maxsplit=1)[0]
        out.append(first[:160])
    return out


def _insert(frame: str, token: str, rng: random.Random) -> str:
    parts = frame.split(" ")
    at = rng.randint(1, max(1, len(parts)))
    word = token if token.startswith(" ") or not token.strip()[:1].isalnum() else " " + token
    return " ".join(parts[:at]) + word + (" " + " ".join(parts[at:]) if parts[at:] else "")


def write_attacks(pred: Predicate, train: ExampleSplit, *, round: int, seed: int, per_intent: int = 4,
                  seen: set[str] | None = None) -> list[AdversarialInput]:
    """Up to ``per_intent`` inputs per intent, new in this round (texts in ``seen`` are skipped)."""
    rng = random.Random(seed * 1009 + round)
    seen = set(seen or ())
    out: list[AdversarialInput] = []

    def add(text: str, intent: Intent, expect: bool, why: str) -> bool:
        text = text.strip() or text
        if not text or text in seen or len(text) > 600:
            return False
        seen.add(text)
        out.append(AdversarialInput(text=text, intent=intent, expect_active=expect, rationale=why))
        return True

    anchors = _anchors(pred, train)
    pool = anchors[: max(per_intent * 4, 16)]
    rng.shuffle(pool)
    controls = 0
    for ex, i in pool:
        if controls < max(1, per_intent // 2) and add(_snippet(ex, i), "edge_case", True, f"control: {ex.tokens[i]!r} in its own context"):
            controls += 1
    made = 0
    for ex, i in pool:
        for variant in _variants(ex.tokens[i]):
            expect = evaluate(pred, [variant])[0] > 0 or (norm(variant) in pred.context)
            if made < per_intent and add(_snippet(ex, i, variant), "near_miss", expect,
                                          f"{ex.tokens[i]!r} -> {variant!r}"):
                made += 1
                break
    cat = concept_of(pred)
    made = 0
    if cat:
        members = _concept_members(pred, cat)
        rng.shuffle(members)
        for (ex, i), word in zip(pool * 3, members):
            lead = " " if ex.tokens[i].startswith(" ") else ""
            if made < per_intent and add(_snippet(ex, i, lead + word), "concept_without_surface", True,
                                          f"{cat}: {word!r} instead of {ex.tokens[i]!r}"):
                made += 1
    else:
        used: set[int] = set()
        for ex, i in _missed(pred, train):
            if made >= per_intent:
                break
            if id(ex) in used:  # one snippet per example: neighbours would repeat the same text
                continue
            if add(_snippet(ex, i), "concept_without_surface", False, f"active at {ex.tokens[i]!r}, which the rule does not name"):
                used.add(id(ex))
                made += 1
    surface = _surface_tokens(pred, anchors)
    made = 0
    for frame, tok in zip(_frames(rng, per_intent * 2), surface * (per_intent * 2)):
        if made < per_intent and add(_insert(frame, tok, rng), "surface_without_concept", not pred.context,
                                      f"{tok!r} in unrelated text"):
            made += 1
    if pred.context:
        for frame, ctx in zip(_frames(rng, per_intent), pred.context * per_intent):
            add(_insert(frame, ctx, rng), "edge_case", False, f"context {ctx!r} without the token")
    return out


def _surface_tokens(pred: Predicate, anchors: Sequence[tuple[Example, int]]) -> list[str]:
    """The rule's strongest tokens as they appeared in the examples (original spacing and case)."""
    seen: list[str] = []
    for ex, i in anchors:
        tok = ex.tokens[i]
        if tok not in seen:
            seen.append(tok)
        if len(seen) >= 4:
            break
    return seen or [" " + t for t in pred.tokens[:4]] or ["the"]
