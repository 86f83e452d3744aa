"""Activations captured by run_with_cache: a read-only mapping from hook name to array."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import mlx.core as mx
import numpy as np


class ActivationCache(Mapping[str, mx.array]):
    def __init__(self, store: dict[str, mx.array]) -> None:
        self._store = store

    def __getitem__(self, name: str) -> mx.array:
        try:
            return self._store[name]
        except KeyError:
            raise KeyError(
                f"{name!r} was not cached; cached hooks: {sorted(self._store)[:8]}"
                f"{' ...' if len(self._store) > 8 else ''}. Pass it in names= to run_with_cache."
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._store)

    def __len__(self) -> int:
        return len(self._store)

    def numpy(self, name: str) -> np.ndarray:
        return np.array(self[name])

    def __repr__(self) -> str:
        return f"ActivationCache({len(self)} hooks)"
