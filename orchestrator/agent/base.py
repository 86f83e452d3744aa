"""The protocol every research agent implements, and the per-step accounting it returns."""

from __future__ import annotations

from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel, Field

from orchestrator.agent.schemas import Analysis, ExperimentCode, Plan, ResearchState, Reflection

T = TypeVar("T")


class Usage(BaseModel):
    """Tokens and dollars of one or more LLM calls (all zero for the builtin agent)."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    dollars: float = 0.0

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(
            calls=self.calls + other.calls,
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_creation_input_tokens=self.cache_creation_input_tokens + other.cache_creation_input_tokens,
            cache_read_input_tokens=self.cache_read_input_tokens + other.cache_read_input_tokens,
            dollars=self.dollars + other.dollars,
        )

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens


class StepResult(BaseModel, Generic[T]):
    """A role's output: the validated value, or None with the reason it failed."""

    value: T | None = None
    usage: Usage = Field(default_factory=Usage)
    error: str | None = None


class AgentContext(BaseModel):
    """Stable facts every role sees: the program, the contract description, the engine guide."""

    program: str
    contract_description: str
    engine_guide: str = ""
    model_facts: dict[str, Any] = Field(default_factory=dict)
    seed: int = 0


class ResearchAgent(Protocol):
    name: str

    def plan(self, state: ResearchState, context: AgentContext) -> StepResult[Plan]: ...

    def write_experiment(
        self, plan: Plan, state: ResearchState, context: AgentContext, feedback: str | None
    ) -> StepResult[ExperimentCode]: ...

    def analyse(self, plan: Plan, outcome_summary: dict[str, Any], context: AgentContext) -> StepResult[Analysis]: ...

    def reflect(
        self,
        state: ResearchState,
        plan: Plan,
        analysis: Analysis | None,
        verification: dict[str, Any] | None,
        context: AgentContext,
    ) -> StepResult[Reflection]: ...
