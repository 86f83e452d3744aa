"""Data that crosses the sandbox boundary (task → contract → subprocess → orchestrator).

No mlx here: the orchestrator imports these models.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from engine.interventions import Intervention


class PromptPair(BaseModel):
    """One clean/corrupted prompt pair and the two answer tokens the metric compares."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    clean: str
    corrupted: str
    correct: str = Field(description="answer token for the clean prompt, e.g. ' Paris'")
    wrong: str = Field(description="answer token for the corrupted prompt, e.g. ' Rome'")


MAX_CIRCUIT_EDGES = 20_000


class CircuitClaim(BaseModel):
    """An edge-level circuit (engine.circuits edge names, e.g. ``'a3.h1->m5'``) claimed to reproduce the
    behaviour. The verifier re-measures it on held-out pairs with edge patching (edges outside the circuit
    take their corrupted value, or their mean with ``ablation='mean'``): per-pair faithfulness, random
    circuits of the same size, and CPR/CMD and bootstrap stability of ``method`` recomputed by trusted code
    on the exploration pairs. ``edge_scores`` (optional, same order as ``edges``) are only drawn."""

    model_config = ConfigDict(extra="forbid")

    edges: list[str] = Field(min_length=1, max_length=MAX_CIRCUIT_EDGES)
    edge_scores: list[float] = Field(default_factory=list, max_length=MAX_CIRCUIT_EDGES)
    method: Literal["eap", "eap-ig"] = Field(default="eap-ig", description="the scoring method that selected it")
    ig_steps: int = Field(default=5, ge=1, le=32)
    requested_size: int | None = Field(default=None, ge=1, description="top-k size before pruning, if selected so")
    signed: bool = Field(default=False, description="edges ranked by signed score (the edges whose patching lowers "
                         "the metric, i.e. that support the behaviour, first) rather than by |score|")
    ablation: Literal["counterfactual", "mean"] = "counterfactual"
    min_jaccard: float = Field(default=0.5, ge=0.0, le=1.0, description="bootstrap Jaccard the circuit must reach "
                               "(the verifier never accepts less than its own floor)")

    @model_validator(mode="after")
    def _consistent(self) -> "CircuitClaim":
        if len(set(self.edges)) != len(self.edges):
            raise ValueError("circuit edges must be unique")
        if self.edge_scores and len(self.edge_scores) != len(self.edges):
            raise ValueError(f"{len(self.edge_scores)} edge_scores for {len(self.edges)} edges (give one per edge or none)")
        return self


class Claim(BaseModel):
    """A machine-checkable finding: apply ``interventions`` to the ``target`` run of every pair
    (patch values and resample references come from the ``source`` run) and compare the contract
    metric with the unpatched target run.

    effect per pair = (metric(intervened target) - metric(target)) / mean over pairs of (metric(clean) - metric(corrupted))
    when ``normalise`` (0 = no change, 1 = moved the whole mean clean-corrupted gap), else the raw difference.
    The mean gap, not each pair's own, is the denominator: a pair with a near-zero gap would otherwise turn a
    small change into an unbounded effect.

    A circuit claim sets ``circuit`` instead of ``interventions``: its per-pair effect is the pair's share of
    the held-out faithfulness, (m_i(circuit) - m_i(empty)) / mean over pairs of (m(full) - m(empty)), so the
    mean effect is the faithfulness; ``min_effect`` is the faithfulness it must clear, direction "increase".
    """

    model_config = ConfigDict(extra="forbid")

    statement: str = Field(min_length=1, max_length=2000)
    interventions: list[Intervention] = Field(default_factory=list, max_length=512)
    target: Literal["clean", "corrupted"] = "corrupted"
    source: Literal["clean", "corrupted"] = "clean"
    normalise: bool = True
    expected_direction: Literal["increase", "decrease"]
    min_effect: float = Field(default=0.0, ge=0.0, description="smallest |effect| that counts as the claim holding")
    family: str = Field(default="", description="the prompt family the claim is about (task name)")
    circuit: CircuitClaim | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> "Claim":
        if self.circuit is None and not self.interventions:
            raise ValueError("a claim needs at least one intervention (or a `circuit` for an edge-level circuit claim)")
        if self.circuit is not None:
            if self.interventions:
                raise ValueError("a circuit claim carries its edges in `circuit`; leave `interventions` empty")
            if self.expected_direction != "increase":
                raise ValueError("a circuit claim's faithfulness is expected to be high: use expected_direction 'increase'")
        return self


class ExperimentResult(BaseModel):
    """What an experiment returns; validated by the trusted harness before it leaves the subprocess."""

    model_config = ConfigDict(extra="forbid")

    summary: str = Field(max_length=20_000)
    measurements: dict[str, Any] = Field(default_factory=dict, description="JSON-able numbers, lists and tables")
    claims: list[Claim] = Field(default_factory=list, max_length=64)


# ---- sandbox run-time data (parent side; the child harness never imports pydantic) ----------------

Status = Literal[
    "ok", "rejected", "crashed", "timeout", "resource_limit", "violation", "invalid_result", "cancelled"
]


class ResourceLimits(BaseModel):
    """Per-experiment limits. The defaults suit a real experiment on the embedded model;
    tests use much smaller ones."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout_s: float = Field(default=600.0, gt=0, description="wall clock; the whole process tree is killed after it")
    memory_mb: int = Field(default=8192, ge=64, description="RLIMIT_AS of the experiment process")
    cpu_s: int | None = Field(default=None, ge=1, description="RLIMIT_CPU; None = 2 x timeout_s")
    file_size_mb: int = Field(default=512, ge=1, description="RLIMIT_FSIZE: largest single file it may write")
    open_files: int = Field(default=256, ge=16, description="RLIMIT_NOFILE")
    processes: int = Field(default=64, ge=4, description="RLIMIT_NPROC (non-root uid) and pids cgroup max")
    output_cap_bytes: int = Field(default=8_000_000, ge=1024, description="stdout/stderr beyond this kills the run")
    tail_bytes: int = Field(default=16_000, ge=256, description="how much of stdout/stderr the outcome keeps")
    result_cap_bytes: int = Field(default=8_000_000, ge=1024, description="largest result message accepted")
    tmp_size_mb: int = Field(default=256, ge=1, description="size of the private /tmp (bubblewrap tmpfs)")
    scratch_size_mb: int = Field(default=1024, ge=1, description="size of the working directory (bubblewrap tmpfs)")

    def cpu_seconds(self) -> int:
        return self.cpu_s if self.cpu_s is not None else int(2 * self.timeout_s) + 1


class GuardIssue(BaseModel):
    """One reason the static guard rejected an experiment file, phrased for the author to act on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    line: int
    col: int = 0
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


class Durations(BaseModel):
    """Seconds spent in each phase; ``overhead_s`` is what the sandbox adds to the experiment's own work."""

    model_config = ConfigDict(extra="forbid")

    guard_s: float = 0.0
    hashing_s: float = 0.0
    setup_s: float = 0.0
    startup_s: float = 0.0
    model_load_s: float = 0.0
    run_s: float = 0.0
    teardown_s: float = Field(default=0.0, description="result received -> child reaped (freeing its memory)")
    total_s: float = 0.0

    @property
    def overhead_s(self) -> float:
        return max(0.0, self.total_s - self.run_s)


class ExperimentOutcome(BaseModel):
    """What the runner reports for one attempt; written by the parent to results/NNNN.json."""

    model_config = ConfigDict(extra="forbid")

    number: int
    experiment: str
    status: Status
    reason: str = ""
    result: ExperimentResult | None = None
    guard_enabled: bool = True
    guard_issues: list[GuardIssue] = Field(default_factory=list)
    returncode: int | None = None
    stdout_tail: str = ""
    stderr_tail: str = ""
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    durations: Durations = Field(default_factory=Durations)
    isolation: list[str] = Field(default_factory=list)
    contract_before: str = ""
    contract_after: str = ""


class VerificationResult(BaseModel):
    """The verifier's measurement of one claim on the held-out split (statistics are the analyst's job).

    ``effects[i]`` is the claim's effect on the i-th held-out pair that was not excluded (see
    ``excluded_pairs``: pairs whose prompts differ in token length), divided by ``normaliser`` (the mean
    clean-corrupted gap over the held-out pairs, or 1 when the claim is not normalised);
    ``null_effects[mode][k][i]`` is the same measurement for null draw k of that mode:
    ``random_components`` moves every intervention to random layers/heads/positions of the same count,
    ``shuffled_source`` patches from a different pair of the same family (derangement of the source rows).
    """

    model_config = ConfigDict(extra="forbid")

    status: Literal["ok", "error"]
    reason: str = ""
    metric: str = ""
    n_pairs: int = 0
    effects: list[float] = Field(default_factory=list)
    target_metric: list[float] = Field(default_factory=list)
    intervened_metric: list[float] = Field(default_factory=list)
    clean_metric: list[float] = Field(default_factory=list)
    corrupted_metric: list[float] = Field(default_factory=list)
    null_effects: dict[str, list[list[float]]] = Field(default_factory=dict)
    excluded_pairs: list[int] = Field(default_factory=list, description="held-out pairs left out (index)")
    notes: list[str] = Field(default_factory=list, description="why pairs or null modes were left out")
    normaliser: float = 1.0
    seed: int = 0
    durations: Durations = Field(default_factory=Durations)
    isolation: list[str] = Field(default_factory=list)
    circuit: "CircuitFigures | None" = Field(default=None, description="a circuit claim's held-out figures")


class CircuitFigures(BaseModel):
    """What the trusted verifier measured for a circuit claim (sandbox/verify_circuit.py).

    ``effects`` of the VerificationResult are the per-pair faithfulness shares (their mean is
    ``faithfulness``); ``null_effects['random_circuits']`` the same for random circuits of the same edge
    count grown from the logits. CPR (area under the faithfulness curve, higher is better) and CMD (area
    under |1 - f|, lower is better) follow MIB, for ``method`` recomputed on the exploration pairs and for
    random circuits, both evaluated on the held-out pairs; stability is the bootstrap Jaccard (over the
    exploration pairs) of the method's circuit of ``stability_size`` edges.
    """

    model_config = ConfigDict(extra="forbid")

    n_layers: int
    n_heads: int
    n_kv_heads: int
    n_edges: int
    nodes: list[str]
    method: str
    ig_steps: int
    ablation: str
    held_out_pairs: int
    exploration_pairs: int
    m_full: float
    m_empty: float
    faithfulness: float
    random_faithfulness: list[float]
    random_edges: list[int] = Field(description="edges left in each random circuit after pruning")
    cpr: float
    cmd: float
    random_cpr: float
    random_cmd: float
    curve_percentages: list[float]
    curve: list[float] = Field(description="faithfulness of the method's top circuits (|score|) at each size")
    random_curve: list[float]
    signed_curve: list[float] = Field(default_factory=list, description="the same with edges in signed order (CPR's)")
    signed: bool = Field(default=False, description="stability and agreement use the signed ranking")
    stability_size: int
    jaccard_mean: float
    jaccard_std: float
    jaccard_p05: float
    jaccard_p95: float
    jaccard_resamples: int
    agreement: float = Field(description="Jaccard of the claimed edges with the trusted method's own circuit of "
                                         "the same size (1 = the claim is what the method selects)")
    runtime_s: dict[str, float] = Field(default_factory=dict)


VerificationResult.model_rebuild()
