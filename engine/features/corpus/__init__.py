"""A varied English corpus generated deterministically (no downloads): prose, code, data, numbers.

``documents(seed)`` is an endless, reproducible stream; callers take what their token budget needs.
The mix weights below favour prose (about two thirds) with code and structured data for the rest.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from itertools import islice

from engine.features.corpus.data import DATA_GENERATORS
from engine.features.corpus.lexicon import CATEGORIES, SYMBOL_CLASSES, categories_of, word_index
from engine.features.corpus.prose import PROSE_GENERATORS, prose

__all__ = ["CATEGORIES", "SYMBOL_CLASSES", "categories_of", "word_index", "documents", "corpus", "KINDS"]

_PROSE_WEIGHT = 3.0
KINDS: tuple[str, ...] = tuple(PROSE_GENERATORS) + tuple(DATA_GENERATORS)
_WEIGHTS: tuple[float, ...] = tuple([_PROSE_WEIGHT] * len(PROSE_GENERATORS) + [2.0] * len(DATA_GENERATORS))


def document(kind: str, r: random.Random) -> str:
    """One document of a named kind (see KINDS)."""
    if kind in PROSE_GENERATORS:
        return prose(kind, r)
    if kind in DATA_GENERATORS:
        return DATA_GENERATORS[kind](r)
    raise KeyError(f"unknown document kind {kind!r}; choose from {', '.join(KINDS)}")


def documents(seed: int = 0) -> Iterator[str]:
    """An endless deterministic stream of documents of mixed kinds."""
    r = random.Random(seed)
    while True:
        yield document(r.choices(KINDS, weights=_WEIGHTS)[0], r)


def corpus(n_docs: int, seed: int = 0) -> list[str]:
    """The first ``n_docs`` documents of ``documents(seed)``."""
    return list(islice(documents(seed), n_docs))
