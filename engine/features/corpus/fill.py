"""Template filling: '{animal}' picks an animal, '{Animal}' a capitalised one, '{num}' a number, etc.

Why a tiny template language: every generator stays a list of readable sentences, and the slot
vocabulary (categories in lexicon.py plus the formatted values below) is shared by all of them.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence

from engine.features.corpus.lexicon import CATEGORIES

_SLOT = re.compile(r"\{([A-Za-z_]+)(\d?)\}")
_MONTHS = CATEGORIES["month"]


def _int(r: random.Random) -> str:
    scale = r.choice((10, 100, 1000, 10000, 1000000))
    return str(r.randint(1, scale))


def _commas(r: random.Random) -> str:
    return f"{r.randint(1000, 9_999_999):,}"


def _date(r: random.Random) -> str:
    style = r.randrange(4)
    y, m, d = r.randint(1800, 2030), r.randint(1, 12), r.randint(1, 28)
    if style == 0:
        return f"{_MONTHS[m - 1]} {d}, {y}"
    if style == 1:
        return f"{d} {_MONTHS[m - 1]} {y}"
    if style == 2:
        return f"{y}-{m:02d}-{d:02d}"
    return f"{m:02d}/{d:02d}/{y}"


def _time(r: random.Random) -> str:
    if r.random() < 0.5:
        return f"{r.randint(0, 23):02d}:{r.choice((0, 15, 30, 45)):02d}"
    return f"{r.randint(1, 12)}:{r.choice((0, 15, 30, 45)):02d} {r.choice(('am', 'pm', 'a.m.', 'p.m.'))}"


def _ident(r: random.Random) -> str:
    words = [r.choice(CATEGORIES[c]).lower() for c in r.sample(("animal", "fruit", "computing", "color", "tool"), 2)]
    return "_".join(words) if r.random() < 0.6 else words[0] + words[1].capitalize()


SPECIAL: dict[str, Callable[[random.Random], str]] = {
    "num": _int,
    "small": lambda r: str(r.randint(2, 12)),
    "big": _commas,
    "year": lambda r: str(r.randint(1500, 2030)),
    "decade": lambda r: f"{r.randint(180, 202)}0s",
    "date": _date,
    "time": _time,
    "float": lambda r: f"{r.uniform(0, 100):.{r.randint(1, 3)}f}",
    "pct": lambda r: f"{r.uniform(0, 99):.1f}%",
    "price": lambda r: r.choice(("$", "€", "£")) + f"{r.uniform(1, 999):.2f}",
    "temp": lambda r: f"{r.randint(-20, 40)}°C",
    "ordinal": lambda r: r.choice(("first", "second", "third", "fourth", "fifth", "last", "next")),
    "phone": lambda r: f"+{r.randint(1, 99)} {r.randint(100, 999)} {r.randint(1000, 9999)} {r.randint(100, 999)}",
    "email": lambda r: f"{r.choice(CATEGORIES['first_name']).lower()}.{r.choice(CATEGORIES['surname']).lower()}@"
    f"{r.choice(('example', 'mail', 'corp', 'uni'))}.{r.choice(('com', 'org', 'net', 'edu'))}",
    "url": lambda r: f"https://www.{r.choice(CATEGORIES['animal'])}{r.choice(('news', 'shop', 'lab', 'hub'))}."
    f"{r.choice(('com', 'org', 'io'))}/{r.choice(CATEGORIES['computing'])}/{r.randint(1, 999)}",
    "hex": lambda r: "0x" + "".join(r.choice("0123456789abcdef") for _ in range(r.choice((2, 4, 8)))),
    "var": _ident,
    "full_name": lambda r: f"{r.choice(CATEGORIES['first_name'])} {r.choice(CATEGORIES['surname'])}",
    "team": lambda r: f"{r.choice(CATEGORIES['city'])} {r.choice(('United', 'Rovers', 'City', 'Wanderers', 'Lions', 'Eagles'))}",
    "company": lambda r: f"{r.choice(CATEGORIES['surname'])} {r.choice(('Ltd', 'Inc', 'Group', 'Holdings', 'Partners'))}",
    "score": lambda r: f"{r.randint(0, 5)}-{r.randint(0, 5)}",
}


def fill(template: str, r: random.Random) -> str:
    """Fill every slot; the same slot with the same digit suffix ('{animal1}') repeats its value."""
    memo: dict[str, str] = {}

    def one(match: re.Match[str]) -> str:
        key, tag = match.group(1), match.group(2)
        if tag and key + tag in memo:
            return memo[key + tag]
        value = _value(key, r)
        if tag:
            memo[key + tag] = value
        return value

    return _SLOT.sub(one, template)


def _value(key: str, r: random.Random) -> str:
    if key in SPECIAL:
        return SPECIAL[key](r)
    lower = key.lower()
    if lower in SPECIAL:
        value = SPECIAL[lower](r)
        return value[0].upper() + value[1:]
    if lower in CATEGORIES:
        word = r.choice(CATEGORIES[lower])
        return word[0].upper() + word[1:] if key[0].isupper() else word
    raise KeyError(f"unknown template slot {{{key}}}: use a category from lexicon.CATEGORIES or one of {sorted(SPECIAL)}")


def paragraph(r: random.Random, templates: Sequence[str], n: tuple[int, int] = (3, 7)) -> str:
    """A few filled templates, sampled without replacement, joined into one paragraph."""
    count = min(len(templates), r.randint(*n))
    return " ".join(fill(t, r) for t in r.sample(list(templates), count))
