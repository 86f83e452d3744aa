"""The per-forward table of hook functions. A hook point costs one dict lookup when unused."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import mlx.core as mx

HookFn = Callable[[mx.array, str], "mx.array | None"]


class HookSet:
    """Maps hook names to the functions to call there, in order; a function may return a replacement."""

    __slots__ = ("_fns",)

    def __init__(self, pairs: Iterable[tuple[str, HookFn]] = ()) -> None:
        self._fns: dict[str, list[HookFn]] = {}
        for name, fn in pairs:
            self.add(name, fn)

    def add(self, name: str, fn: HookFn) -> None:
        self._fns.setdefault(name, []).append(fn)

    def wants(self, name: str) -> bool:
        return name in self._fns

    def wants_any(self, *names: str) -> bool:
        fns = self._fns
        return any(n in fns for n in names)

    def __bool__(self) -> bool:
        return bool(self._fns)

    def names(self) -> list[str]:
        return list(self._fns)

    def __call__(self, name: str, x: mx.array) -> mx.array:
        fns = self._fns.get(name)
        if fns is None:
            return x
        for fn in fns:
            out = fn(x, name)
            if out is not None:
                if out.shape != x.shape:
                    from engine.errors import InterventionError

                    raise InterventionError(
                        f"hook function at {name!r} returned shape {tuple(out.shape)}, expected {tuple(x.shape)}: "
                        "a hook must return an array of the activation's shape (or None to leave it unchanged)"
                    )
                x = out
        return x


EMPTY = HookSet()
