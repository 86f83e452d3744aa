"""The feature task: "explain the top N latents of this SAE" as a task file the loop can run.

Why its own schema (not a field of orchestrator.task.Task): a feature task has no prompt pairs or
contract metric; its contract is the SAE, the corpus budget and the held-out example splits. The
loop owner can route ``kind: explain_sae`` here (see ``run_feature_task`` in orchestrator/features/run.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from engine.features.pipeline import BuildConfig
from engine.features.schemas import TrainConfig
from orchestrator.features.refine import RefineConfig


class FeatureTaskError(ValueError):
    """A feature task file that cannot be run; the message names the field and the fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProviderSpec(_Strict):
    provider: Literal["builtin", "anthropic", "mlx"] = "builtin"
    model: str | None = None


class TrainSpec(_Strict):
    """How to train the SAE when the task names none (defaults fit 10 minutes on 2 cores)."""

    hook: str = "blocks.15.hook_resid_post"
    n_tokens: int = Field(default=150_000, ge=1000)
    architecture: Literal["topk", "batchtopk"] = "topk"
    d_sae: int = Field(default=4096, ge=16)
    k: int = Field(default=32, ge=1)
    epochs: float = Field(default=3.0, gt=0)


class BehaviourSpec(_Strict):
    """The behaviour whose driving latents are explained: a built-in prompt-pair family."""

    family: Literal["factual_recall", "ioi"] = "factual_recall"
    n: int = Field(default=24, ge=1, le=2000)
    seed: int = 0

    def pairs(self) -> list[dict[str, str]]:
        from orchestrator.families import FAMILIES

        return [p.model_dump() for p in FAMILIES[self.family](self.n, self.seed)]


class FeatureTask(_Strict):
    # explain_sae: "explain the top N latents of this SAE";
    # behaviour_features: "find the features that drive this behaviour" (attribution to the pairs' logit diff)
    kind: Literal["explain_sae", "behaviour_features"] = "explain_sae"
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    question: str = Field(default="What do the top latents of this SAE respond to?", min_length=1, max_length=4000)
    model: str = "smollm2-135m"
    sae: str | None = None  # an SAELens-layout directory; None = train one (``train``)
    train: TrainSpec = Field(default_factory=TrainSpec)
    corpus_tokens: int = Field(default=150_000, ge=1000)  # tokens cached to sample examples of a given SAE
    behaviour: BehaviourSpec | None = None  # required for kind behaviour_features
    n_latents: int = Field(default=10, ge=1, le=5000)
    latent_order: Literal["frequency", "random"] = "frequency"
    explainer: ProviderSpec = Field(default_factory=ProviderSpec)
    scorer: ProviderSpec = Field(default_factory=ProviderSpec)
    refine: RefineConfig = Field(default_factory=RefineConfig)
    # budgets of the whole run, across resumes: LLM tokens and dollars of the explainer, the scorer and the
    # trusted verifier's scoring calls together; wall-clock hours of refinement (checked between latents)
    max_tokens: int | None = Field(default=None, ge=0)
    max_dollars: float | None = Field(default=None, ge=0.0)
    wall_clock_hours: float | None = Field(default=None, gt=0.0)
    seed: int = 0

    @model_validator(mode="after")
    def _behaviour_needs_pairs(self) -> "FeatureTask":
        if self.kind == "behaviour_features" and self.behaviour is None:
            raise ValueError("kind behaviour_features needs `behaviour:` (family: factual_recall|ioi, n, seed)")
        return self

    def build_config(self) -> BuildConfig:
        t = self.train
        return BuildConfig(model=self.model, hook=t.hook, n_tokens=t.n_tokens, n_latents=self.n_latents,
                           latent_order=self.latent_order, corpus_seed=self.seed,
                           train=TrainConfig(architecture=t.architecture, d_sae=t.d_sae, k=t.k, epochs=t.epochs, seed=self.seed))


def parse_feature_task(data: Any, source: str = "task") -> FeatureTask:
    if not isinstance(data, dict):
        raise FeatureTaskError(f"{source}: a feature task is a YAML mapping (kind: explain_sae, name:, ...)")
    try:
        return FeatureTask.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors(include_url=False):
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            fix = "remove it" if err["type"] == "extra_forbidden" else "fix the value"
            lines.append(f"{where}: {err['msg']} (got {err.get('input')!r}); {fix}")
        raise FeatureTaskError(f"{source}: invalid feature task:\n  " + "\n  ".join(lines)) from None


def load_feature_task(path: str | Path) -> FeatureTask:
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise FeatureTaskError(f"{p}: cannot read the task file ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise FeatureTaskError(f"{p}: not valid YAML ({exc})") from None
    return parse_feature_task(data, str(p))


def make_explainer(task: FeatureTask, client_factory=None, ledger=None):
    """The explainer the task asks for (LLM clients through orchestrator.providers.make_client)."""
    from orchestrator.features.explainers import BuiltinExplainer
    from orchestrator.features.llm_explainer import LLMExplainer

    if task.explainer.provider == "builtin":
        return BuiltinExplainer(seed=task.seed)
    return LLMExplainer(_client(task, task.explainer, client_factory, ledger))


def make_scorer(task: FeatureTask, client_factory=None, ledger=None):
    from orchestrator.features.scorers import LLMScorer, PredicateScorer

    if task.scorer.provider == "builtin":
        return PredicateScorer()
    return LLMScorer(_client(task, task.scorer, client_factory, ledger))


def _client(task: FeatureTask, spec: ProviderSpec, factory, ledger):
    """One LLM client; with ``ledger`` (the run's), every client of the run spends one budget."""
    from orchestrator.providers.base import Budget, UsageLedger

    ledger = ledger or UsageLedger(Budget(max_tokens=task.max_tokens, max_dollars=task.max_dollars))
    if factory is not None:
        return factory(spec.provider, spec.model, ledger)
    from orchestrator.providers import make_client

    return make_client(spec.provider, spec.model, ledger=ledger)
