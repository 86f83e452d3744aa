"""Prompt pairs as methods receive them: tokens, answer ids and a position map, grouped by length.

Equal-length pairs with no alignment use the identity map (position key k = position k). With an
engine.alignment.Alignment the position keys are its names and pairs may differ in length; pairs
of the same (clean, corrupted) lengths form one batched group.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import mlx.core as mx
import numpy as np

from engine.alignment import Alignment, check_alignment
from engine.errors import AlignmentError, MethodError

TokensLike = mx.array | np.ndarray | Sequence[Sequence[int]] | Sequence[int] | str | Sequence[str]
IdsLike = int | str | Sequence[int | str]


@dataclass
class PairGroup:
    """Pairs sharing clean and corrupted lengths, batched."""

    index: np.ndarray  # [b] positions of these pairs in the caller's list
    clean: mx.array  # [b, Pc]
    corrupted: mx.array  # [b, Pb]
    clean_pos: np.ndarray  # [b, K] clean position of each position key
    corrupted_pos: np.ndarray  # [b, K]

    def oriented(self, direction: str) -> tuple[mx.array, np.ndarray, mx.array, np.ndarray]:
        """(base tokens, base positions, source tokens, source positions) for a patching direction."""
        if direction == "denoise":  # run corrupted, copy clean activations in
            return self.corrupted, self.corrupted_pos, self.clean, self.clean_pos
        if direction == "noise":  # run clean, copy corrupted activations in
            return self.clean, self.clean_pos, self.corrupted, self.corrupted_pos
        raise MethodError(f"unknown direction {direction!r}: use 'denoise' (clean into corrupted) or 'noise' (corrupted into clean)")


@dataclass
class Pairs:
    groups: list[PairGroup]
    n_pairs: int
    correct: list[int]
    wrong: list[int]
    position_labels: list[str]  # K labels for the position axis
    clean_str_tokens: list[str]  # of the first pair
    corrupted_str_tokens: list[str]


def as_token_rows(model, tokens: TokensLike, what: str) -> list[list[int]]:
    """Token rows from an mx/numpy array [n, p] or [p], nested lists, or text(s)."""
    if isinstance(tokens, str):
        return [model.tokenizer.encode(tokens)]
    if isinstance(tokens, (mx.array, np.ndarray)):
        arr = np.asarray(tokens)
        if arr.ndim == 1:
            arr = arr[None]
        if arr.ndim != 2:
            raise MethodError(f"{what} tokens must be [n_pairs, pos]; got shape {arr.shape}")
        return [[int(t) for t in row] for row in arr]
    rows = list(tokens)
    if rows and all(isinstance(r, str) for r in rows):
        return [model.tokenizer.encode(r) for r in rows]
    if rows and all(isinstance(t, (int, np.integer)) for t in rows):
        return [[int(t) for t in rows]]
    return [[int(t) for t in row] for row in rows]


def as_ids(model, ids: IdsLike, n: int, what: str) -> list[int]:
    """One answer token id per pair from an int, a token string (' Paris') or a list of either."""
    def one(x) -> int:
        return model.token_id(x) if isinstance(x, str) else int(x)

    if isinstance(ids, (int, np.integer, str)):
        return [one(ids)] * n
    if isinstance(ids, mx.array):
        ids = ids.tolist()
    out = [one(x) for x in ids]
    if len(out) == 1:
        return out * n
    if len(out) != n:
        raise MethodError(f"{what}: got {len(out)} token ids for {n} pairs; give one id, or one per pair")
    return out


def prepare_pairs(
    model,
    clean_tokens: TokensLike,
    corrupted_tokens: TokensLike,
    correct_ids: IdsLike,
    wrong_ids: IdsLike,
    alignment: Alignment | None = None,
) -> Pairs:
    clean = as_token_rows(model, clean_tokens, "clean")
    corrupt = as_token_rows(model, corrupted_tokens, "corrupted")
    n = len(clean)
    if len(corrupt) != n:
        raise MethodError(f"{n} clean prompts but {len(corrupt)} corrupted ones: give one corrupted prompt per clean prompt")
    if n == 0 or any(len(r) == 0 for r in clean + corrupt):
        raise MethodError("every prompt needs at least one token")
    vocab = model.cfg.d_vocab
    if any(not 0 <= t < vocab for r in clean + corrupt for t in r):
        raise MethodError(f"token ids must be in 0..{vocab - 1}")
    correct = as_ids(model, correct_ids, n, "correct_ids")
    wrong = as_ids(model, wrong_ids, n, "wrong_ids")
    tok = model.tokenizer
    c_str = [tok.id_to_str(t) for t in clean[0]]
    b_str = [tok.id_to_str(t) for t in corrupt[0]]
    if alignment is None:
        lengths = {len(r) for r in clean + corrupt}
        if len(lengths) != 1:
            detail = next(
                (f"pair {i}: clean {len(c)} tokens, corrupted {len(b)}" for i, (c, b) in enumerate(zip(clean, corrupt)) if len(c) != len(b)),
                f"pairs have lengths {sorted(lengths)}",
            )
            raise AlignmentError(
                f"prompts differ in token length ({detail}) and no alignment was given: pass "
                "alignment=engine.alignment.align_pairs(model, clean_texts, corrupted_texts, marks=...).alignment"
            )
        P = lengths.pop()
        pos = np.tile(np.arange(P), (n, 1))
        alignment = Alignment(names=[str(p) for p in range(P)], clean=pos.tolist(), corrupted=pos.tolist())
        labels = [f"{p}:{c!r}" if c == b else f"{p}:{c!r}/{b!r}" for p, (c, b) in enumerate(zip(c_str, b_str))]
    else:
        if alignment.n_pairs != n:
            raise AlignmentError(f"the alignment covers {alignment.n_pairs} pairs but {n} were given")
        check_alignment(alignment, [len(r) for r in clean], [len(r) for r in corrupt])
        labels = list(alignment.names)
    groups: dict[tuple[int, int], list[int]] = {}
    for i in range(n):
        groups.setdefault((len(clean[i]), len(corrupt[i])), []).append(i)
    built = []
    cpos, bpos = np.asarray(alignment.clean), np.asarray(alignment.corrupted)
    for idx in groups.values():
        built.append(PairGroup(
            index=np.asarray(idx),
            clean=mx.array([clean[i] for i in idx], dtype=mx.int32),
            corrupted=mx.array([corrupt[i] for i in idx], dtype=mx.int32),
            clean_pos=cpos[idx],
            corrupted_pos=bpos[idx],
        ))
    return Pairs(built, n, correct, wrong, labels, c_str, b_str)
