"""Position alignment for prompt pairs whose clean and corrupted prompts differ in token length.

A patch copies an activation from one prompt into the other at "the same position"; when lengths
differ, the caller says which positions correspond: always the final token, plus named positions
marked by substrings (e.g. ``subject_last`` = the last token of "Eiffel Tower" in the clean prompt and
of "Colosseum" in the corrupted one). Anything ambiguous raises AlignmentError naming the pair.
Mark names ending in ``_first`` take the first token of the substring; all others take the last.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field

from engine.errors import AlignmentError

MarkSpec = tuple[str, str]  # (substring in the clean prompt, substring in the corrupted prompt)


class Alignment(BaseModel):
    """Corresponding positions: ``clean[i][k]`` and ``corrupted[i][k]`` are position ``names[k]`` of pair i."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    names: list[str]
    clean: list[list[int]] = Field(description="[pair][name] -> position in the clean prompt (>= 0)")
    corrupted: list[list[int]] = Field(description="[pair][name] -> position in the corrupted prompt (>= 0)")

    @property
    def n_pairs(self) -> int:
        return len(self.clean)


class AlignedPairs(BaseModel):
    """Tokens of each prompt (lists of different lengths allowed) and their alignment."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    clean_tokens: list[list[int]]
    corrupted_tokens: list[list[int]]
    alignment: Alignment


def token_ends(tokenizer, ids: list[int], text: str, where: str) -> list[int]:
    """Character offset just past each token, from decoding growing prefixes of the ids."""
    ends = [len(tokenizer.decode(ids[: i + 1])) for i in range(len(ids))]
    if tokenizer.decode(ids) != text:
        raise AlignmentError(
            f"{where}: the tokenizer does not reproduce the text exactly, so substrings cannot be mapped to "
            "tokens; give positions directly with Alignment(names=..., clean=..., corrupted=...)"
        )
    return ends


def locate(text: str, sub: str, ends: list[int], which: str, where: str) -> int:
    """Token position of the first/last character of the unique occurrence of ``sub`` in ``text``."""
    count = text.count(sub) if sub else 0
    if count != 1:
        why = "is empty" if not sub else ("does not occur" if count == 0 else f"occurs {count} times")
        raise AlignmentError(f"{where}: marker {sub!r} {why} in {text!r}; mark a substring that occurs exactly once")
    start = text.index(sub)
    char = start if which == "first" else start + len(sub) - 1
    return next(i for i, end in enumerate(ends) if end > char)


def check_alignment(alignment: Alignment, clean_lengths: Sequence[int], corrupted_lengths: Sequence[int]) -> None:
    """Positions in range, no two names on one token on one side only, the same order on both sides."""
    names = alignment.names
    if len(set(names)) != len(names):
        raise AlignmentError(f"alignment names repeat: {names}; give each position a distinct name")
    for i, (cp, bp) in enumerate(zip(alignment.clean, alignment.corrupted)):
        where = f"pair {i}"
        if len(cp) != len(names) or len(bp) != len(names):
            raise AlignmentError(f"{where}: expected {len(names)} positions per prompt ({names}), got {len(cp)} and {len(bp)}")
        for side, pos, n in (("clean", cp, clean_lengths[i]), ("corrupted", bp, corrupted_lengths[i])):
            bad = [f"{names[k]}={p}" for k, p in enumerate(pos) if not 0 <= p < n]
            if bad:
                raise AlignmentError(f"{where}: {side} positions {bad} are outside 0..{n - 1}")
        for a in range(len(names)):
            for b in range(a + 1, len(names)):
                if (cp[a] == cp[b]) != (bp[a] == bp[b]):
                    raise AlignmentError(
                        f"{where}: ambiguous: {names[a]!r} and {names[b]!r} are clean positions {cp[a]}, {cp[b]} but "
                        f"corrupted positions {bp[a]}, {bp[b]}; one token cannot stand for two different ones"
                    )
                if (cp[a] - cp[b]) * (bp[a] - bp[b]) < 0:
                    raise AlignmentError(
                        f"{where}: {names[a]!r} and {names[b]!r} come in a different order in the clean and the "
                        "corrupted prompt; marks must appear in the same order in both"
                    )


def align_pairs(
    model,
    clean_texts: Sequence[str],
    corrupted_texts: Sequence[str],
    marks: Mapping[str, MarkSpec | Sequence[MarkSpec]] | None = None,
    *,
    final: bool = True,
) -> AlignedPairs:
    """Tokenise pairs and align them on named substrings (and the final token).

    ``marks`` maps a position name to (clean substring, corrupted substring), either one tuple for
    every pair or a list with one tuple per pair, e.g. ``{"subject_last": [("Eiffel Tower", "Colosseum")]}``.
    """
    if len(clean_texts) != len(corrupted_texts):
        raise AlignmentError(f"{len(clean_texts)} clean prompts but {len(corrupted_texts)} corrupted; give one per pair")
    tok = model.tokenizer
    marks = dict(marks or {})
    n = len(clean_texts)
    per_pair: dict[str, list[MarkSpec]] = {}
    for name, spec in marks.items():
        if isinstance(spec, tuple) and len(spec) == 2 and all(isinstance(s, str) for s in spec):
            per_pair[name] = [spec] * n
        else:
            specs = [tuple(s) for s in spec]
            if len(specs) != n:
                raise AlignmentError(f"mark {name!r} has {len(specs)} (clean, corrupted) substrings for {n} pairs")
            per_pair[name] = specs
    names = list(per_pair) + (["final"] if final else [])
    if not names:
        raise AlignmentError("nothing to align on: pass marks and/or final=True")
    clean_ids, corrupt_ids, clean_pos, corrupt_pos = [], [], [], []
    for i, (ct, bt) in enumerate(zip(clean_texts, corrupted_texts)):
        c_ids, b_ids = tok.encode(ct), tok.encode(bt)
        if not c_ids or not b_ids:
            raise AlignmentError(f"pair {i}: an empty prompt has no positions to align")
        cp, bp = [], []
        if per_pair:
            c_ends = token_ends(tok, c_ids, ct, f"pair {i} (clean)")
            b_ends = token_ends(tok, b_ids, bt, f"pair {i} (corrupted)")
            for name, specs in per_pair.items():
                which = "first" if name.endswith("_first") else "last"
                c_sub, b_sub = specs[i]
                cp.append(locate(ct, c_sub, c_ends, which, f"pair {i} (clean), mark {name!r}"))
                bp.append(locate(bt, b_sub, b_ends, which, f"pair {i} (corrupted), mark {name!r}"))
        if final:
            cp.append(len(c_ids) - 1)
            bp.append(len(b_ids) - 1)
        clean_ids.append(c_ids)
        corrupt_ids.append(b_ids)
        clean_pos.append(cp)
        corrupt_pos.append(bp)
    alignment = Alignment(names=names, clean=clean_pos, corrupted=corrupt_pos)
    check_alignment(alignment, [len(c) for c in clean_ids], [len(b) for b in corrupt_ids])
    return AlignedPairs(clean_tokens=clean_ids, corrupted_tokens=corrupt_ids, alignment=alignment)
