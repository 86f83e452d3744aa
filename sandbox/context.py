"""The ``ctx`` object an experiment's run(ctx) receives: read-only, model loaded lazily.

An experiment that never touches ctx.model never pays for (or imports) the model, which keeps
sandbox tests fast. Runs only in the sandboxed child.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sandbox import metric as _metric


@dataclass(frozen=True)
class Pair:
    """One exploration prompt pair (same fields as sandbox.schemas.PromptPair, without pydantic)."""

    clean: str
    corrupted: str
    correct: str
    wrong: str


class Context:
    """What an experiment may use: model, exploration pairs, tokens, answer ids, the contract metric, seed."""

    __slots__ = ("_pairs", "_model_ref", "_metric_name", "_seed", "_state")

    def __init__(self, pairs: Sequence[dict[str, str]], model_ref: str, metric_name: str, seed: int) -> None:
        object.__setattr__(self, "_pairs", tuple(Pair(**p) for p in pairs))
        object.__setattr__(self, "_model_ref", model_ref)
        object.__setattr__(self, "_metric_name", metric_name)
        object.__setattr__(self, "_seed", int(seed))
        object.__setattr__(self, "_state", {"model_load_s": 0.0})

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"ctx is read-only (tried to set ctx.{name}); keep your own state in local variables")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"ctx is read-only (tried to delete ctx.{name})")

    @property
    def model(self) -> Any:
        """The contract's model (engine.HookedModel), loaded from the cached weights on first use."""
        state = self._state
        if "model" not in state:
            import engine

            start = time.perf_counter()
            state["model"] = engine.load_model(self._model_ref)
            state["model_load_s"] = time.perf_counter() - start
        return state["model"]

    @property
    def model_load_s(self) -> float:
        return float(self._state["model_load_s"])

    @property
    def pairs(self) -> list[Pair]:
        return list(self._pairs)

    @property
    def seed(self) -> int:
        return self._seed

    @property
    def metric_name(self) -> str:
        return self._metric_name

    def _tokens(self, key: str) -> Any:
        state = self._state
        if key not in state:
            state[key] = self.model.to_tokens([getattr(p, key) for p in self._pairs])
        return state[key]

    @property
    def clean_tokens(self) -> Any:
        return self._tokens("clean")

    @property
    def corrupted_tokens(self) -> Any:
        return self._tokens("corrupted")

    @property
    def correct_ids(self) -> list[int]:
        return [self.model.token_id(p.correct) for p in self._pairs]

    @property
    def wrong_ids(self) -> list[int]:
        return [self.model.token_id(p.wrong) for p in self._pairs]

    def metric(self, logits: Any, correct_ids: Sequence[int] | None = None,
               wrong_ids: Sequence[int] | None = None) -> list[float]:
        """The contract metric per row of ``logits`` (defaults: this context's answer ids, one per pair)."""
        return _metric.per_pair(self._metric_name, logits,
                                self.correct_ids if correct_ids is None else correct_ids,
                                self.wrong_ids if wrong_ids is None else wrong_ids)

    def __repr__(self) -> str:
        return f"<ctx: {len(self._pairs)} exploration pairs, model {self._model_ref!r}, metric {self._metric_name}>"
