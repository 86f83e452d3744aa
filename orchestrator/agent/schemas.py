"""Typed outputs of the four roles and the shared research state they read.

Every LLM output is validated against these models; invalid output is repaired or recorded
as a failed step, never trusted.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Plan(BaseModel):
    """Planner output: the next hypothesis and how to test it."""

    model_config = ConfigDict(extra="forbid")

    hypothesis: str = Field(min_length=1, max_length=2000)
    rationale: str = Field(default="", max_length=4000)
    method: str = Field(
        min_length=1,
        max_length=80,
        description="engine method to use, e.g. 'activation_patching', 'attribution_patching', "
        "'direct_logit_attribution', 'logit_lens', 'ablation', 'path_patching', 'circuit_check', or 'custom'",
    )
    parameters: dict[str, Any] = Field(default_factory=dict)
    falsification: str = Field(min_length=1, max_length=2000, description="the observation that would falsify it")
    slug: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,47}$", description="short kebab-case name for files")


class ExperimentCode(BaseModel):
    """Executor output: one experiment module defining run(ctx)."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=1, max_length=60_000)
    notes: str = Field(default="", max_length=2000)


class Analysis(BaseModel):
    """Analyst output: a reading of the deterministic statistics (which are computed, not written by it)."""

    model_config = ConfigDict(extra="forbid")

    interpretation: str = Field(min_length=1, max_length=4000)
    supports_hypothesis: bool | None = None
    caveats: list[str] = Field(default_factory=list, max_length=20)


class Reflection(BaseModel):
    """Reflector output: keep or discard (keep is honoured only for verified claims), beliefs, direction."""

    model_config = ConfigDict(extra="forbid")

    decision: Literal["keep", "discard"]
    reason: str = Field(min_length=1, max_length=2000)
    belief_updates: list[str] = Field(default_factory=list, max_length=20)
    next_direction: str = Field(default="", max_length=2000)
    question_answered: bool = False
    answer: str | None = Field(default=None, max_length=4000)


class AttemptSummary(BaseModel):
    """One line of history the planner and reflector see (kept, discarded, crashed alike)."""

    attempt: int
    slug: str
    method: str
    hypothesis: str
    decision: Literal["keep", "discard", "crash", "violation", "rejected", "failed"]
    reason: str
    key_figures: dict[str, float] = Field(default_factory=dict)


class ResearchState(BaseModel):
    """The typed state the roles share; rebuilt from the ledger on resume."""

    question: str
    beliefs: list[str] = Field(default_factory=list)
    open_hypotheses: list[str] = Field(default_factory=list)
    history: list[AttemptSummary] = Field(default_factory=list)
    experiments_done: int = 0
    max_experiments: int = 0
