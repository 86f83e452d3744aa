"""MLX interpretability engine: hooked forwards with TransformerLens hook names, interventions as data,
metrics and batched methods (patching, attribution, DLA, logit lens, ablations, circuits).

Attributes are imported lazily so that light modules (engine.blas, engine.interventions,
engine.errors) can be used without importing mlx.
"""

from __future__ import annotations

from typing import Any

from engine.lazy import lazy_attribute

_EXPORTS: dict[str, str] = {
    "load_model": "engine.model",
    "HookedModel": "engine.model",
    "ModelConfig": "engine.config",
    "ActivationCache": "engine.activation_cache",
    "Patch": "engine.interventions",
    "Ablate": "engine.interventions",
    "Steer": "engine.interventions",
    "Scale": "engine.interventions",
    "Intervention": "engine.interventions",
    "metrics": "engine.metrics",
    "methods": "engine.methods",
    "circuits": "engine.circuits",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    return lazy_attribute(__name__, _EXPORTS, name)
