"""Interventions as data: serialisable pydantic models, applied by engine.hooking.

Kept free of mlx imports so the orchestrator can validate claims without loading MLX.
Positions and heads are optional restrictions; ``None`` means every position / head.
Negative positions count from the end, as in Python.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    hook: str = Field(description="TransformerLens hook name, e.g. 'blocks.3.hook_resid_pre'")
    positions: list[int] | None = Field(default=None, description="token positions to touch; None = all")
    heads: list[int] | None = Field(default=None, description="head indices (per-head hooks only); None = all")

    @field_validator("heads")
    @classmethod
    def _heads_non_negative(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and any(h < 0 for h in v):
            raise ValueError("head indices must be >= 0")
        return v


class Patch(_Base):
    """Replace the activation with the same hook's activation from a source run (row by row)."""

    kind: Literal["patch"] = "patch"


class Ablate(_Base):
    """Zero the activation, replace it by its mean over a reference set, or by a resampled reference row."""

    kind: Literal["ablate"] = "ablate"
    mode: Literal["zero", "mean", "resample"] = "zero"
    seed: int = 0


class Steer(_Base):
    """Add ``coeff * vector`` along the last axis (d_model for residual hooks, d_head for per-head hooks)."""

    kind: Literal["steer"] = "steer"
    vector: list[float]
    coeff: float = 1.0


class Scale(_Base):
    """Multiply the activation by ``factor``."""

    kind: Literal["scale"] = "scale"
    factor: float


Intervention = Annotated[Union[Patch, Ablate, Steer, Scale], Field(discriminator="kind")]


def needs_source(interventions: list[Intervention]) -> bool:
    return any(isinstance(i, Patch) for i in interventions)


def needs_reference(interventions: list[Intervention]) -> bool:
    return any(isinstance(i, Ablate) and i.mode in ("mean", "resample") for i in interventions)
