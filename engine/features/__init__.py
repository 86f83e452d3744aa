"""Feature-level engine: activation caching, SAEs (train, evaluate, SAELens IO), example sampling,
latent measurement. Attributes load lazily so mlx-free parts (schemas, corpus) import without mlx.
"""

from __future__ import annotations

from typing import Any

from engine.lazy import lazy_attribute

_EXPORTS: dict[str, str] = {
    "cache_activations": "engine.features.caching",
    "ActivationStore": "engine.features.caching",
    "SAE": "engine.features.sae",
    "save_sae": "engine.features.sae_io",
    "load_sae": "engine.features.sae_io",
    "train_sae": "engine.features.train",
    "evaluate_sae": "engine.features.evaluate",
    "sample_latents": "engine.features.sampling",
    "SampleConfig": "engine.features.sampling",
    "LatentMeasurer": "engine.features.measure",
    "TrainConfig": "engine.features.schemas",
    "SAEConfig": "engine.features.schemas",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    return lazy_attribute(__name__, _EXPORTS, name)
