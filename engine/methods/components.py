"""Model components as small data objects (heads, MLPs, attention layers) with a compact string form.

String forms: "L12H3" (head 3 of layer 12), "MLP7" (the MLP of layer 7), "ATTN7" (all of layer 7's
attention). Kept free of mlx so the orchestrator can parse and validate claims.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from engine.errors import ComponentError
from engine.interventions import Ablate, Intervention, Patch


class _Component(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    layer: int = Field(ge=0)

    def __str__(self) -> str:
        return self.label


class Head(_Component):
    """One attention head: its output is hook_z at that head."""

    kind: Literal["head"] = "head"
    head: int = Field(ge=0)

    @property
    def label(self) -> str:
        return f"L{self.layer}H{self.head}"

    @property
    def hook(self) -> str:
        return f"blocks.{self.layer}.attn.hook_z"


class MLP(_Component):
    """One layer's MLP: its output is hook_mlp_out."""

    kind: Literal["mlp"] = "mlp"

    @property
    def label(self) -> str:
        return f"MLP{self.layer}"

    @property
    def hook(self) -> str:
        return f"blocks.{self.layer}.hook_mlp_out"


class AttnLayer(_Component):
    """All heads of one layer together: hook_attn_out."""

    kind: Literal["attn"] = "attn"

    @property
    def label(self) -> str:
        return f"ATTN{self.layer}"

    @property
    def hook(self) -> str:
        return f"blocks.{self.layer}.hook_attn_out"


Component = Annotated[Union[Head, MLP, AttnLayer], Field(discriminator="kind")]
ComponentLike = Union[Head, MLP, AttnLayer, str]

_PATTERNS = (
    (re.compile(r"^L(\d+)H(\d+)$"), lambda m: Head(layer=int(m[1]), head=int(m[2]))),
    (re.compile(r"^MLP(\d+)$"), lambda m: MLP(layer=int(m[1]))),
    (re.compile(r"^ATTN(\d+)$"), lambda m: AttnLayer(layer=int(m[1]))),
)


def parse_component(value: ComponentLike) -> Head | MLP | AttnLayer:
    """'L12H3' -> Head(12, 3), 'MLP7' -> MLP(7), 'ATTN7' -> AttnLayer(7); component objects pass through."""
    if isinstance(value, (Head, MLP, AttnLayer)):
        return value
    text = str(value).strip().upper()
    for pattern, build in _PATTERNS:
        match = pattern.match(text)
        if match:
            return build(match)
    raise ComponentError(f"cannot read component {value!r}: write 'L12H3' for a head, 'MLP7' for an MLP, 'ATTN7' for an attention layer")


def parse_components(values: Iterable[ComponentLike], n_layers: int | None = None, n_heads: int | None = None) -> list:
    """Parse and (given the model's sizes) range-check components; duplicates are removed, order kept."""
    out: list = []
    for value in values:
        comp = parse_component(value)
        if n_layers is not None and comp.layer >= n_layers:
            raise ComponentError(f"component {comp.label}: layer {comp.layer} does not exist (layers 0..{n_layers - 1})")
        if n_heads is not None and isinstance(comp, Head) and comp.head >= n_heads:
            raise ComponentError(f"component {comp.label}: head {comp.head} does not exist (heads 0..{n_heads - 1})")
        if comp not in out:
            out.append(comp)
    return out


def all_components(n_layers: int, n_heads: int, *, heads: bool = True, mlps: bool = True) -> list:
    """Every head and MLP, layer by layer (the 'everything else' of a sufficiency check)."""
    out: list = []
    for layer in range(n_layers):
        if heads:
            out.extend(Head(layer=layer, head=h) for h in range(n_heads))
        if mlps:
            out.append(MLP(layer=layer))
    return out


def component_interventions(
    components: Iterable[ComponentLike], mode: str, positions: list[int] | None = None, seed: int = 0
) -> list[Intervention]:
    """Declarative interventions that knock out the components.

    mode: 'zero' | 'mean' | 'resample' (Ablate, needing a reference cache for mean/resample) or 'patch'
    (Patch from a source cache, e.g. the paired corrupted prompts). Heads of one layer are merged into
    one hook_z intervention.
    """
    comps = parse_components(components)
    heads_by_layer: dict[int, list[int]] = {}
    out: list[Intervention] = []

    def make(hook: str, heads: list[int] | None) -> Intervention:
        if mode == "patch":
            return Patch(hook=hook, positions=positions, heads=heads)
        if mode in ("zero", "mean", "resample"):
            return Ablate(hook=hook, positions=positions, heads=heads, mode=mode, seed=seed)
        raise ComponentError(f"unknown ablation mode {mode!r}: use 'zero', 'mean', 'resample' or 'patch'")

    for comp in comps:
        if isinstance(comp, Head):
            heads_by_layer.setdefault(comp.layer, []).append(comp.head)
        else:
            out.append(make(comp.hook, None))
    for layer, heads in sorted(heads_by_layer.items()):
        out.append(make(f"blocks.{layer}.attn.hook_z", sorted(heads)))
    return out
