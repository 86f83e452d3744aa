"""Pydantic models for everything the feature pipeline writes to disk or sends across a process.

mlx-free on purpose: the orchestrator reads latent examples and talks to the measurement server
with these same models, and the orchestrator process never imports mlx.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ExampleKind = Literal["activating", "random", "hard_negative", "adversarial"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---- activation cache ---------------------------------------------------------------------------
class ShardInfo(_Strict):
    file: str
    start: int  # first context index in this shard
    n_contexts: int


class CacheManifest(_Strict):
    """What was cached: one hook, a fixed number of fixed-length token contexts, in shards."""

    version: int = 1
    model: str
    hook: str
    d_in: int
    ctx_len: int
    n_contexts: int
    skip_positions: int = 1  # leading positions of each context left out of training and examples
    dtype: Literal["float32", "float16"] = "float32"
    corpus: str = "generated"
    corpus_seed: int = 0
    shards: list[ShardInfo]
    tokens_file: str = "tokens.safetensors"
    seconds: float = 0.0

    @property
    def n_tokens(self) -> int:
        return self.n_contexts * self.ctx_len

    @property
    def n_usable_tokens(self) -> int:
        return self.n_contexts * (self.ctx_len - self.skip_positions)


# ---- SAE configuration (SAELens cfg.json) -------------------------------------------------------
class SAEConfig(BaseModel):
    """The fields of a SAELens cfg.json this engine uses; unknown fields are kept and written back."""

    model_config = ConfigDict(extra="allow")

    architecture: Literal["standard", "topk", "jumprelu"]
    d_in: int = Field(gt=0)
    d_sae: int = Field(gt=0)
    k: int | None = Field(default=None, gt=0)
    hook_name: str = ""
    hook_layer: int = -1
    dtype: str = "float32"
    apply_b_dec_to_input: bool = True
    normalize_activations: Literal["none", "constant_norm_rescale", "layer_norm"] = "none"
    model_name: str = ""
    context_size: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_saelens(cls, data: Any) -> Any:
        """Accept SAELens v3-v6 spellings: fields under ``meta``, k under ``activation_fn_kwargs``."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        meta = data.get("meta") or {}
        for key in ("hook_name", "hook_layer", "model_name", "context_size"):
            if data.get(key) is None and meta.get(key) is not None:
                data[key] = meta[key]
        if data.get("k") is None and isinstance(data.get("activation_fn_kwargs"), dict):
            data["k"] = data["activation_fn_kwargs"].get("k")
        if data.get("hook_layer") is None:
            data["hook_layer"] = -1
        if data.get("architecture") is None:
            data["architecture"] = "topk" if data.get("activation_fn_str") == "topk" else "standard"
        if data.get("normalize_activations") == "expected_average_only_in":
            raise ValueError(
                "normalize_activations='expected_average_only_in' needs the dataset scaling factor, which cfg.json "
                "does not hold: fold it into the weights first (SAELens: sae.fold_activation_norm_scaling_factor(f)) "
                "and set normalize_activations to 'none'"
            )
        return data

    @model_validator(mode="after")
    def _k_for_topk(self) -> "SAEConfig":
        if self.architecture == "topk" and self.k is None:
            raise ValueError("a topk SAE needs k in cfg.json (top level, or activation_fn_kwargs.k)")
        return self


# ---- training and evaluation --------------------------------------------------------------------
class TrainConfig(_Strict):
    architecture: Literal["topk", "batchtopk"] = "topk"
    d_sae: int = Field(default=4096, gt=0)
    k: int = Field(default=32, gt=0)
    lr: float = Field(default=1e-3, gt=0)
    batch_size: int = Field(default=4096, gt=0)
    epochs: float = Field(default=3.0, gt=0)
    aux_k: int | None = None  # dead latents used by the AuxK loss (default d_in // 2)
    aux_coef: float = 1 / 32
    dead_after_tokens: int = 50_000  # a latent is "dead" for AuxK after this many tokens without firing
    threshold_lr: float = 0.01  # BatchTopK: EMA rate of the inference threshold
    eval_fraction: float = Field(default=0.05, gt=0, lt=0.5)
    seed: int = 0


class SAEMetrics(_Strict):
    l0: float
    explained_variance: float
    mse: float
    ce_clean: float | None = None
    ce_spliced: float | None = None
    ce_zero_ablated: float | None = None
    ce_loss_recovered: float | None = None
    kl_spliced: float | None = None  # mean per-token KL(clean || SAE spliced): 0 = the splice changes nothing
    kl_zero_ablated: float | None = None
    dead_fraction: float
    dead_over_tokens: int
    n_eval_tokens: int
    n_train_tokens: int = 0
    train_seconds: float = 0.0
    steps: int = 0


# ---- examples -------------------------------------------------------------------------------------
class Example(_Strict):
    """A window of tokens with the latent's activation at each token."""

    tokens: list[str]
    acts: list[float]
    kind: ExampleKind
    quantile: int | None = None  # 0 = top decile of activating windows ... 9 = lowest
    source: str = ""  # "ctx:start" for corpus windows, "adversarial:round:i" for written inputs

    @field_validator("acts")
    @classmethod
    def _finite(cls, acts: list[float]) -> list[float]:
        if any(a != a for a in acts):
            raise ValueError("activations must be finite numbers")
        return acts

    @model_validator(mode="after")
    def _aligned(self) -> "Example":
        if len(self.tokens) != len(self.acts):
            raise ValueError(f"{len(self.tokens)} tokens but {len(self.acts)} activations")
        return self

    @property
    def max_act(self) -> float:
        return max(self.acts, default=0.0)

    @property
    def text(self) -> str:
        return "".join(self.tokens)


class ExampleSplit(_Strict):
    activating: list[Example] = Field(default_factory=list)
    random: list[Example] = Field(default_factory=list)
    hard_negative: list[Example] = Field(default_factory=list)

    def all(self) -> list[Example]:
        return [*self.activating, *self.random, *self.hard_negative]

    def negatives(self) -> list[Example]:
        return [*self.random, *self.hard_negative]


class LatentExamples(_Strict):
    """One latent's examples: ``train`` is what the explainer sees; ``val`` and ``test`` it never sees."""

    latent: int
    max_act: float
    density: float  # fraction of (usable) corpus tokens where the latent is active
    n_activating_windows: int
    top_tokens: list[tuple[str, int]] = Field(default_factory=list)  # most frequent tokens at active positions
    train: ExampleSplit
    val: ExampleSplit
    test: ExampleSplit


class LatentSet(_Strict):
    """Examples of many latents of one SAE, as written by ``engine.features.sampling``."""

    sae_path: str
    model: str
    hook: str
    window: int
    dead_fraction: float
    latents: list[LatentExamples]


# ---- measurement server ------------------------------------------------------------------------
class MeasureRequest(_Strict):
    texts: list[str] = Field(min_length=1, max_length=256)
    latents: list[int] = Field(min_length=1, max_length=4096)


class MeasuredText(_Strict):
    text: str
    tokens: list[str]
    acts: dict[int, list[float]]  # latent -> activation per token (position 0 masked to 0)


class MeasureResponse(_Strict):
    results: list[MeasuredText] | None = None
    error: str | None = None
