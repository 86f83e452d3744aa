"""Data that crosses the sandbox boundary (task → contract → subprocess → orchestrator).

No mlx here: the orchestrator imports these models.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from engine.interventions import Intervention


class PromptPair(BaseModel):
    """One clean/corrupted prompt pair and the two answer tokens the metric compares."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    clean: str
    corrupted: str
    correct: str = Field(description="answer token for the clean prompt, e.g. ' Paris'")
    wrong: str = Field(description="answer token for the corrupted prompt, e.g. ' Rome'")


class Claim(BaseModel):
    """A machine-checkable finding: apply ``interventions`` to the ``target`` run of every pair
    (patch values and resample references come from the ``source`` run) and compare the contract
    metric with the unpatched target run.

    effect per pair = (metric(intervened target) - metric(target)) / (metric(clean) - metric(corrupted))
    when ``normalise`` (0 = no change, 1 = moved the whole clean-corrupted gap), else the raw difference.
    """

    model_config = ConfigDict(extra="forbid")

    statement: str = Field(min_length=1, max_length=2000)
    interventions: list[Intervention] = Field(min_length=1, max_length=512)
    target: Literal["clean", "corrupted"] = "corrupted"
    source: Literal["clean", "corrupted"] = "clean"
    normalise: bool = True
    expected_direction: Literal["increase", "decrease"]
    min_effect: float = Field(default=0.0, ge=0.0, description="smallest |effect| that counts as the claim holding")
    family: str = Field(default="", description="the prompt family the claim is about (task name)")


class ExperimentResult(BaseModel):
    """What an experiment returns; validated by the trusted harness before it leaves the subprocess."""

    model_config = ConfigDict(extra="forbid")

    summary: str = Field(max_length=20_000)
    measurements: dict[str, Any] = Field(default_factory=dict, description="JSON-able numbers, lists and tables")
    claims: list[Claim] = Field(default_factory=list, max_length=64)
