"""Typed, JSON-serialisable results of the engine's methods, each with summary() and top(k).

Plain lists of floats only (no arrays), so a result can cross the sandbox boundary as JSON and be
validated there without mlx. ``grid()`` gives the values back as a numpy array for analysis.
"""

from __future__ import annotations

from typing import Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

Nested = Union[list[float], list[list[float]], list[list[list[float]]]]

NORMALISATION = (
    "normalised = (mean_pairs(patched) - mean_pairs(corrupted)) / (mean_pairs(clean) - mean_pairs(corrupted)): "
    "0 = corrupted behaviour, 1 = clean behaviour (the mean over pairs is normalised, not each pair)"
)

PER_PAIR = (
    "normalised = mean_pairs((patched - corrupted) / (clean - corrupted)): 0 = corrupted, 1 = clean "
    "(each pair normalised by its own gap, then averaged)"
)


class MethodResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: str

    def to_json(self) -> str:
        return self.model_dump_json()

    def summary(self) -> str:  # pragma: no cover - overridden
        return self.method

    def top(self, k: int = 10) -> list[tuple[str, float]]:  # pragma: no cover - overridden
        return []


def _fmt(x: float) -> str:
    return f"{x:+.3f}"


class GridResult(MethodResult):
    """Values over named axes (e.g. layer x position, layer x head) with a label per index."""

    metric: str
    axes: list[str]
    labels: list[list[str]] = Field(description="tick labels, one list per axis")
    values: Nested

    def grid(self) -> np.ndarray:
        return np.asarray(self.values, dtype=np.float64)

    def cell_label(self, index: tuple[int, ...]) -> str:
        parts = [self.labels[a][i] for a, i in enumerate(index)]
        if "layer" in self.axes and "head" in self.axes:  # "L3" + "H2" -> "L3H2", the component form
            li, hi = self.axes.index("layer"), self.axes.index("head")
            parts[li] = parts[li] + parts[hi]
            parts.pop(hi)
        return " ".join(parts)

    def top(self, k: int = 10, *, absolute: bool = True) -> list[tuple[str, float]]:
        """The k cells with the largest (absolute, by default) values, as (label, value)."""
        arr = self.grid()
        flat = np.abs(arr).ravel() if absolute else arr.ravel()
        order = np.argsort(-flat, kind="stable")[:k]
        return [(self.cell_label(np.unravel_index(i, arr.shape)), float(arr.ravel()[i])) for i in order]

    def _top_text(self, k: int = 5) -> str:
        return ", ".join(f"{label} {_fmt(v)}" for label, v in self.top(k))


class PatchingResult(GridResult):
    """Activation or attribution patching over a grid; ``values`` are normalised, ``raw`` are mean metrics."""

    hook: str
    direction: str
    normalisation: str = NORMALISATION
    raw: Nested
    clean_value: float
    corrupted_value: float
    clean_values: list[float]
    corrupted_values: list[float]
    n_pairs: int
    clean_str_tokens: list[str] = Field(default_factory=list, description="the first clean prompt")
    corrupted_str_tokens: list[str] = Field(default_factory=list, description="the first corrupted prompt")
    rows_computed: int = 0
    rows_skipped: int = Field(default=0, description="patches that change nothing (source == base), not run")
    seconds: float = 0.0

    def summary(self) -> str:
        shape = "x".join(str(len(x)) for x in self.labels)
        return (
            f"{self.method} ({self.direction}) at {self.hook}, {self.metric}, {' x '.join(self.axes)} = {shape}, "
            f"{self.n_pairs} pair(s): clean {self.clean_value:.3f}, corrupted {self.corrupted_value:.3f}; "
            f"top: {self._top_text()}"
        )


class LogitLensResult(GridResult):
    """Logit difference read off the residual stream after each layer, through the final norm and unembed."""

    top_tokens: list[list[str]] = Field(description="the first prompt's top-1 token per [layer][i], at top_token_positions[i]")
    top_token_positions: list[int] = Field(default_factory=list)
    n_pairs: int

    def summary(self) -> str:
        last = self.grid()[:, -1]
        first = next((i for i, v in enumerate(last) if v > 0), None)
        where = self.labels[0][first] if first is not None else "never"
        return (
            f"logit lens ({self.metric}) over {len(self.labels[0])} layers x {len(self.labels[1])} positions, "
            f"{self.n_pairs} pair(s): final-position value {last[-1]:.3f}, first positive at {where}"
        )


class DLAResult(MethodResult):
    """Direct logit attribution of the logit difference at the last position (final-norm scale frozen)."""

    embed: float
    attn: list[float] = Field(description="per layer, all heads together")
    mlp: list[float]
    heads: list[list[float]] = Field(description="[layer][head]")
    attn_bias: list[float] = Field(description="per layer, the part of attn not owned by a head (o_proj bias)")
    total: float = Field(description="the model's own mean logit difference")
    sum_of_parts: float
    residual: float = Field(description="total - sum_of_parts; ~0 up to float error")
    per_pair_total: list[float]
    n_pairs: int

    def parts(self) -> list[tuple[str, float]]:
        """A partition of the total: embed, every head, every MLP (and o_proj biases when present)."""
        out = [("EMBED", self.embed)]
        for layer, row in enumerate(self.heads):
            out.extend((f"L{layer}H{h}", v) for h, v in enumerate(row))
            if self.attn_bias[layer]:
                out.append((f"ATTN{layer}_bias", self.attn_bias[layer]))
            out.append((f"MLP{layer}", self.mlp[layer]))
        return out

    def top(self, k: int = 10) -> list[tuple[str, float]]:
        return sorted(self.parts(), key=lambda kv: -abs(kv[1]))[:k]

    def summary(self) -> str:
        top = ", ".join(f"{n} {_fmt(v)}" for n, v in self.top(5))
        return (
            f"DLA of the logit difference, {self.n_pairs} pair(s): total {self.total:.3f}, parts sum to "
            f"{self.sum_of_parts:.3f} (residual {self.residual:.1e}); top: {top}"
        )


class AblationResult(MethodResult):
    """The metric with a set of components knocked out, against the unablated run."""

    metric: str
    components: list[str]
    mode: str
    positions: list[int] | None
    baseline: float
    ablated: float
    effect: float = Field(description="ablated - baseline (mean over prompts)")
    fraction_remaining: float | None = Field(description="ablated / baseline when baseline != 0")
    baseline_values: list[float]
    ablated_values: list[float]
    interventions: list[dict] = Field(default_factory=list, description="the engine interventions applied (JSON)")

    def top(self, k: int = 10) -> list[tuple[str, float]]:
        return [("+".join(self.components) or "(none)", self.effect)][:k]

    def summary(self) -> str:
        return (
            f"{self.mode}-ablating {', '.join(self.components) or 'nothing'}: {self.metric} {self.baseline:.3f} -> "
            f"{self.ablated:.3f} (effect {_fmt(self.effect)})"
        )


class PathPatchingResult(MethodResult):
    """Effect of a sender head's clean output reaching receivers' query/key/value inputs only."""

    metric: str
    sender: str
    receivers: list[str]
    receiver_input: str
    direction: str
    value: float = Field(description="normalised effect with every receiver patched together")
    raw: float
    per_receiver: list[float] = Field(description="normalised effect of each receiver alone")
    clean_value: float
    corrupted_value: float
    normalisation: str = NORMALISATION

    def top(self, k: int = 10) -> list[tuple[str, float]]:
        pairs = list(zip(self.receivers, self.per_receiver))
        return sorted(pairs, key=lambda kv: -abs(kv[1]))[:k]

    def summary(self) -> str:
        return (
            f"path {self.sender} -> {', '.join(self.receivers)} ({self.receiver_input}, {self.direction}): "
            f"{self.value:.3f} of the clean-corrupted gap; each: "
            + ", ".join(f"{r} {_fmt(v)}" for r, v in self.top(5))
        )


class CircuitResult(MethodResult):
    """Necessity (ablate the circuit: fraction of behaviour lost) and sufficiency (ablate the rest: kept)."""

    metric: str
    components: list[str]
    mode: str
    necessity: float = Field(description="1 - normalised metric with the components ablated")
    sufficiency: float = Field(description="normalised metric with every other head and MLP ablated")
    clean_value: float
    corrupted_value: float
    without_circuit: float = Field(description="mean metric with the components ablated")
    circuit_only: float = Field(description="mean metric with everything else ablated")
    n_complement: int = Field(description="how many components were ablated for sufficiency")
    normalisation: str = NORMALISATION

    def top(self, k: int = 10) -> list[tuple[str, float]]:
        return [("necessity", self.necessity), ("sufficiency", self.sufficiency)][:k]

    def summary(self) -> str:
        return (
            f"circuit of {len(self.components)} component(s) ({self.mode}): necessity {self.necessity:.3f}, "
            f"sufficiency {self.sufficiency:.3f} (clean {self.clean_value:.3f}, corrupted {self.corrupted_value:.3f})"
        )


def nested(arr: np.ndarray) -> list:
    """numpy -> nested plain lists of Python floats."""
    return np.asarray(arr, dtype=np.float64).tolist()


class AblationSweepResult(GridResult):
    """Each component ablated on its own: ``values`` = ablated - baseline (mean over prompts)."""

    mode: str
    over: str
    raw: Nested = Field(description="mean metric with the component ablated")
    baseline: float = Field(description="mean metric of the unablated run")
    baseline_values: list[float]
    n_prompts: int
    rows_computed: int = 0
    rows_skipped: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        return (
            f"{self.mode}-ablation of each {self.over[:-1] if self.over.endswith('s') else self.over} "
            f"({self.metric}, baseline {self.baseline:.3f}, {self.n_prompts} prompt(s)); largest effects: {self._top_text()}"
        )
