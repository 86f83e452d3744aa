"""Built-in prompt-pair families (factual recall, indirect object identification).

Why here and mlx-free: the task loader expands a ``generator:`` spec into explicit pairs before
anything runs, so the contract always holds a concrete, reviewable list of pairs. Every prompt in a
family has the same SmolLM2 token length and every answer is one token (checked by tests).
"""

from __future__ import annotations

import random
from typing import Callable

from sandbox.schemas import PromptPair

# Famous landmarks whose city is not named in the landmark itself (recall, not copying), chosen so
# that SmolLM2-135M's top-1 completion of "<landmark> is in the city of" is the city for every one.
# Each prompt is 9 SmolLM2 tokens; each " <city>" is one token.
LANDMARKS: tuple[tuple[str, str], ...] = (
    ("The Eiffel Tower", "Paris"),
    ("The Colosseum", "Rome"),
    ("The Brandenburg Gate", "Berlin"),
    ("The Parthenon", "Athens"),
    ("The Hagia Sophia", "Istanbul"),
    ("The Prado Museum", "Madrid"),
    ("The Trevi Fountain", "Rome"),
    ("The Reichstag", "Berlin"),
    ("The Kremlin Palace", "Moscow"),
    ("The Louvre Pyramid", "Paris"),
    ("The Louvre Museum", "Paris"),
    ("The Galata Tower", "Istanbul"),
    ("Wenceslas Square", "Prague"),
    ("The Acropolis Museum", "Athens"),
    ("The Sistine Chapel", "Rome"),
    ("The Moulin Rouge", "Paris"),
    ("The Oriental Pearl Tower", "Shanghai"),
    ("The Palace of Westminster", "London"),
    ("The Lenin Mausoleum", "Moscow"),
    ("The Houses of Parliament", "London"),
    ("Kensington Palace", "London"),
    ("The Park Guell", "Barcelona"),
    ("The Van Gogh Museum", "Amsterdam"),
    ("The Royal Albert Hall", "London"),
    ("The Palais Royal", "Paris"),
    ("The Kremlin walls", "Moscow"),
    ("The Acropolis Hill", "Athens"),
    ("The Louvre Palace", "Paris"),
)
RECALL_TEMPLATE = "{landmark} is in the city of"

# One-token names, places and objects; every IOI prompt below is 14 tokens.
IOI_NAMES: tuple[str, ...] = (
    "Mary", "John", "Tom", "James", "Sarah", "Alice", "Michael", "David", "Emma", "Anna", "Paul", "Mark",
    "Peter", "Laura", "Kate", "Daniel", "Susan", "Robert", "Lisa", "Andrew", "Rachel", "George", "Henry", "Lucy",
)
IOI_PLACES: tuple[str, ...] = ("store", "park", "school", "office", "beach", "library", "station", "market", "garden")
IOI_OBJECTS: tuple[str, ...] = ("drink", "book", "ball", "pen", "gift", "bag", "letter", "ring", "key", "flower", "cup")
IOI_TEMPLATE = "When {a} and {b} went to the {place}, {s} gave a {obj} to"


def factual_recall_pairs(n: int, seed: int = 0) -> list[PromptPair]:
    """Landmark → city pairs: the corrupted prompt names a landmark in a different city."""
    if n > len(LANDMARKS):
        # repeating a landmark would put the same clean prompt in both splits
        raise ValueError(f"factual_recall has {len(LANDMARKS)} landmarks; use n <= {len(LANDMARKS)}")
    order = list(LANDMARKS)
    random.Random(seed).shuffle(order)
    pairs: list[PromptPair] = []
    for i, (landmark, city) in enumerate(order[:n]):
        # the next landmark in the shuffled order whose city differs is the corruption
        other = next(o for o in order[i + 1 :] + order[:i] if o[1] != city)
        pairs.append(
            PromptPair(
                clean=RECALL_TEMPLATE.format(landmark=landmark),
                corrupted=RECALL_TEMPLATE.format(landmark=other[0]),
                correct=f" {city}",
                wrong=f" {other[1]}",
            )
        )
    return pairs


def ioi_pairs(n: int, seed: int = 0) -> list[PromptPair]:
    """IOI pairs: the corrupted prompt swaps which name is repeated, so the indirect object flips."""
    if n > 5000:
        raise ValueError("ioi generates at most 5000 distinct pairs; use n <= 5000")
    rng = random.Random(seed)
    pairs: list[PromptPair] = []
    seen: set[str] = set()
    while len(pairs) < n:
        a, b = rng.sample(IOI_NAMES, 2)
        place, obj = rng.choice(IOI_PLACES), rng.choice(IOI_OBJECTS)
        clean = IOI_TEMPLATE.format(a=a, b=b, place=place, s=b, obj=obj)
        if clean in seen:
            continue
        seen.add(clean)
        corrupted = IOI_TEMPLATE.format(a=a, b=b, place=place, s=a, obj=obj)
        pairs.append(PromptPair(clean=clean, corrupted=corrupted, correct=f" {a}", wrong=f" {b}"))
    return pairs


FAMILIES: dict[str, Callable[[int, int], list[PromptPair]]] = {
    "factual_recall": factual_recall_pairs,
    "ioi": ioi_pairs,
}
