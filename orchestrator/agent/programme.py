"""The builtin research programme: an ordered list of steps, each an experiment template whose
parameters come from what earlier steps measured.

Why a fixed order with data-driven parameters: the offline default must be deterministic (same
seed, same run) yet still do research — which layers, heads and MLPs it looks at next depends on
what the previous sweeps found. Steps read earlier results only through the ledger's key figures
(``m.k_*`` scalars the templates return), so a resumed run plans exactly as an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from orchestrator.agent.schemas import AttemptSummary, ResearchState

Figures = dict[str, float]


@dataclass(frozen=True)
class Step:
    slug: str
    method: str
    hypothesis: str
    falsification: str
    rationale: str
    needs: tuple[str, ...] = ()  # slugs whose figures the parameters use
    params: Callable[[dict[str, Figures]], dict] = field(default=lambda figs: {})


def _heads(figs: Figures, prefix: str, n: int) -> list[list[int]]:
    """Decode heads stored as L*100+H scalars under keys like m.k_head1, m.k_head2, ..."""
    heads = []
    for i in range(1, n + 1):
        value = figs.get(f"m.{prefix}{i}")
        if value is not None and value >= 0:
            heads.append([int(value) // 100, int(value) % 100])
    return heads


def _layers(figs: Figures, prefix: str, n: int) -> list[int]:
    return [int(figs[f"m.{prefix}{i}"]) for i in range(1, n + 1) if f"m.{prefix}{i}" in figs and figs[f"m.{prefix}{i}"] >= 0]


STEPS: tuple[Step, ...] = (
    Step(
        slug="logit-lens",
        method="logit_lens",
        hypothesis="The answer becomes linearly decodable from the final position's residual stream only in the later layers.",
        falsification="The logit-lens logit difference at the final position is already at its final level in the first layers.",
        rationale="Baseline behaviour and where along depth the answer appears, before any intervention.",
    ),
    Step(
        slug="resid-sweep",
        method="activation_patching",
        hypothesis="Information that decides the answer sits at the subject tokens in early layers and moves to the final "
        "position in middle layers; patching the clean final-position residual from that layer on restores the behaviour.",
        falsification="No layer's final-position residual patch restores at least half of the clean-corrupted gap on held-out pairs.",
        rationale="Denoising resid_pre over layers × positions localises the behaviour in depth and position.",
    ),
    Step(
        slug="attn-mlp-sweep",
        method="activation_patching",
        hypothesis="A few attention layers move the answer to the final position, and MLP layers at the subject tokens recall it.",
        falsification="Patching the top attention outputs at the final position (or the top MLP outputs) restores less than a "
        "third of the gap on held-out pairs.",
        rationale="Splits the residual-stream effect into attention and MLP contributions per layer and position.",
        needs=("resid-sweep",),
    ),
    Step(
        slug="direct-logit-attribution",
        method="direct_logit_attribution",
        hypothesis="A small number of late attention heads and MLPs write most of the logit difference directly.",
        falsification="The direct contributions are spread evenly over many components, with no head above a few percent.",
        rationale="DLA through the frozen final norm names candidate output components cheaply.",
    ),
    Step(
        slug="head-sweep",
        method="activation_patching",
        hypothesis="A handful of attention heads carry the answer into the final position: patching their clean outputs there "
        "restores a substantial part of the gap.",
        falsification="Patching the top heads' outputs at the final position restores less than a fifth of the gap on held-out pairs.",
        rationale="Per-head hook_z patching at the final position, layer by layer.",
        needs=("attn-mlp-sweep",),
        params=lambda figs: {"layers": _layers(figs.get("attn-mlp-sweep", {}), "k_attn_layer", 6)},
    ),
    Step(
        slug="attribution-check",
        method="attribution_patching",
        hypothesis="Gradient attribution patching approximates the activation-patching grid well enough to screen components.",
        falsification="Attribution and activation patching grids are uncorrelated (Pearson r below 0.5).",
        rationale="Checks the cheap linear estimate against the real sweep before relying on it.",
    ),
    Step(
        slug="path-patching",
        method="path_patching",
        hypothesis="The top head's effect on the answer runs through the heads downstream of it rather than only directly to the logits.",
        falsification="Path patching from the top head to later heads' queries recovers nothing beyond the noise floor.",
        rationale="Separates a head's direct effect from its effect through later heads.",
        needs=("head-sweep",),
        params=lambda figs: {"heads": _heads(figs.get("head-sweep", {}), "k_head", 5)},
    ),
    Step(
        slug="circuit-check",
        method="circuit_check",
        hypothesis="The top heads at the final position together with the top MLP layers form a circuit that is both sufficient "
        "and necessary for the behaviour.",
        falsification="Patching only the candidate circuit restores less than a third of the gap, or patching it out removes "
        "less than a third.",
        rationale="Necessity and sufficiency of the candidate circuit assembled from the sweeps.",
        needs=("head-sweep", "attn-mlp-sweep"),
        params=lambda figs: {
            "heads": _heads(figs.get("head-sweep", {}), "k_head", 5),
            "mlp_layers": _layers(figs.get("attn-mlp-sweep", {}), "k_mlp_layer", 3),
        },
    ),
    Step(
        slug="edge-circuit",
        method="circuit_discovery",
        hypothesis="An edge-level circuit (EAP-IG edge scores over the whole graph of embedding, heads' q/k/v inputs, MLPs "
        "and logits; the top edges grown until they reproduce 80% of the behaviour on the exploration pairs) reproduces "
        "most of the clean-corrupted metric difference on held-out pairs, far beyond random circuits of its size, and "
        "keeps its edges when the prompt pairs are resampled.",
        falsification="On held-out pairs the circuit's faithfulness CI falls below 0.5 or does not clear every random circuit "
        "of the same size, or its bootstrap Jaccard over resampled pairs is below 0.5.",
        rationale="Component-level checks cannot say which paths between components matter; edge attribution patching "
        "(EAP-IG) scores every edge at once, edge patching measures faithfulness, CPR/CMD against random circuits and "
        "bootstrap stability.",
        params=lambda figs: {"target": 0.8, "steps": 5, "min_faithfulness": 0.5},
    ),
    Step(
        slug="synthesis",
        method="summary",
        hypothesis="The verified findings so far answer the research question.",
        falsification="The baseline behaviour itself does not hold on the exploration pairs.",
        rationale="Closes the programme: re-measures the baseline and states the answer from the verified findings.",
    ),
)
FINAL_SLUG = "synthesis"
STEP_BY_SLUG = {s.slug: s for s in STEPS}
MAX_TRIES = 2  # a step that crashed or failed is tried once more, then skipped


def base_slug(slug: str) -> str:
    """'head-sweep-r2' -> 'head-sweep' (retries carry a suffix so experiment files stay unique)."""
    head, _, tail = slug.rpartition("-r")
    return head if head and tail.isdigit() else slug


def figures_by_step(history: list[AttemptSummary]) -> dict[str, Figures]:
    """Key figures of the last successful attempt of each step."""
    figs: dict[str, Figures] = {}
    for h in history:
        if h.decision in ("keep", "discard"):
            figs[base_slug(h.slug)] = dict(h.key_figures)
    return figs


def next_step(state: ResearchState) -> tuple[Step, int] | None:
    """The next step to run and its try number, or None when the programme is complete."""
    tries: dict[str, int] = {}
    done: set[str] = set()
    for h in state.history:
        slug = base_slug(h.slug)
        tries[slug] = tries.get(slug, 0) + 1
        if h.decision in ("keep", "discard"):
            done.add(slug)
    for step in STEPS:
        if step.slug in done or tries.get(step.slug, 0) >= MAX_TRIES:
            continue
        return step, tries.get(step.slug, 0) + 1
    return None


def programme_complete(state: ResearchState) -> bool:
    return next_step(state) is None
