"""The engine's research methods: patching, attribution, DLA, logit lens, ablations, paths, circuits.

Every method takes the model and prompt tokens and returns a typed, JSON-serialisable result with
summary() and top(k). Entry points are imported lazily (results and components are mlx-free).
"""

from __future__ import annotations

from typing import Any

from engine.lazy import lazy_attribute

_EXPORTS: dict[str, str] = {
    "activation_patching": "engine.methods.patching",
    "attribution_patching": "engine.methods.attribution",
    "direct_logit_attribution": "engine.methods.dla",
    "logit_lens": "engine.methods.lens",
    "ablate": "engine.methods.ablation",
    "ablation_sweep": "engine.methods.ablation",
    "path_patching": "engine.methods.paths",
    "circuit_check": "engine.methods.circuit",
    "Head": "engine.methods.components",
    "MLP": "engine.methods.components",
    "AttnLayer": "engine.methods.components",
    "parse_component": "engine.methods.components",
    "parse_components": "engine.methods.components",
    "all_components": "engine.methods.components",
    "component_interventions": "engine.methods.components",
    "PatchingResult": "engine.methods.results",
    "DLAResult": "engine.methods.results",
    "LogitLensResult": "engine.methods.results",
    "AblationResult": "engine.methods.results",
    "AblationSweepResult": "engine.methods.results",
    "PathPatchingResult": "engine.methods.results",
    "CircuitResult": "engine.methods.results",
    "align_pairs": "engine.alignment",
    "Alignment": "engine.alignment",
    "AlignedPairs": "engine.alignment",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    return lazy_attribute(__name__, _EXPORTS, name)
