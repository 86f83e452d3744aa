"""Held-out pairs grouped by token length: a batch needs equal lengths, and a pair whose clean and
corrupted prompts differ in length cannot be patched position by position (left out, with the reason)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any


def group_by_length(model: Any, pairs: list[Any]) -> tuple[dict[int, list[int]], list[int], list[str]]:
    """({token length: pair indices}, indices left out, one note per left-out pair)."""
    groups: dict[int, list[int]] = defaultdict(list)
    left_out, notes = [], []
    for i, p in enumerate(pairs):
        n_clean, n_corr = len(model.to_str_tokens(p.clean)), len(model.to_str_tokens(p.corrupted))
        if n_clean != n_corr:
            left_out.append(i)
            notes.append(f"pair {i}: clean has {n_clean} tokens, corrupted {n_corr}; left out")
            continue
        groups[n_clean].append(i)
    return dict(groups), left_out, notes
