"""MLX interpretability engine: hooked forwards with TransformerLens hook names, interventions as data,
metrics and batched methods (patching, attribution, DLA, logit lens, ablations, circuits).

Attributes are imported lazily so that light modules (engine.blas, engine.interventions,
engine.errors) can be used without importing mlx.
"""

from __future__ import annotations

import importlib
from typing import Any

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
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    module = importlib.import_module(module_name)
    return module if module_name.endswith("." + name) else getattr(module, name)
