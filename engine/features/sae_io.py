"""Save and load SAEs in the SAELens layout: ``cfg.json`` + ``sae_weights.safetensors``.

Why both directions matter: SAEs trained here open in SAELens (and Neuronpedia tooling), and any
SAELens-layout SAE trained elsewhere (standard/ReLU, TopK, JumpReLU) can be explained here.
Weights are read with MLX (handles bfloat16 files) and held as float32.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlx.core as mx
from pydantic import ValidationError

from engine.features.sae import SAE, SAEShapeError
from engine.features.schemas import SAEConfig

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"
_WEIGHT_NAMES = ("W_enc", "b_enc", "W_dec", "b_dec", "threshold")


class SAELoadError(ValueError):
    """A directory that is not a loadable SAELens-layout SAE; the message says what is missing."""


def save_sae(sae: SAE, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write ``cfg.json`` (SAELens fields, top level and under ``meta``) and float32 weights."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    cfg = sae.cfg.model_dump()
    cfg.update({
        "dtype": "float32",
        "device": "cpu",
        "activation_fn_str": {"topk": "topk", "standard": "relu", "jumprelu": "relu"}[sae.cfg.architecture],
        "activation_fn_kwargs": {"k": sae.cfg.k} if sae.cfg.architecture == "topk" else {},
        "meta": {
            "model_name": sae.cfg.model_name,
            "hook_name": sae.cfg.hook_name,
            "hook_layer": sae.cfg.hook_layer,
            "hook_head_index": None,
            "context_size": sae.cfg.context_size,
            "prepend_bos": False,
            "dataset_path": "engine.features.corpus (generated)",
        },
    })
    if sae.cfg.architecture != "topk":
        cfg.pop("k", None)
    if extra:
        cfg.update(extra)
    weights = {k: v.astype(mx.float32) for k, v in sae.params.items() if k in _WEIGHT_NAMES}
    mx.save_safetensors(str(out / WEIGHTS_FILE), weights, metadata={"format": "pt"})
    (out / CFG_FILE).write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    return out


def read_cfg(path: str | Path) -> SAEConfig:
    """The validated config of an SAE directory (no weights loaded)."""
    cfg_path = Path(path) / CFG_FILE
    if not cfg_path.is_file():
        raise SAELoadError(f"{path}: no {CFG_FILE}; an SAELens-layout SAE is a directory with {CFG_FILE} and {WEIGHTS_FILE}")
    try:
        raw = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as exc:
        raise SAELoadError(f"{cfg_path}: not valid JSON ({exc})") from exc
    try:
        return SAEConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'cfg'}: {e['msg']}" for e in exc.errors(include_url=False))
        raise SAELoadError(f"{cfg_path}: unsupported SAE config ({problems})") from None


def load_sae(path: str | Path) -> SAE:
    """Load an SAELens-layout SAE directory as float32."""
    cfg = read_cfg(path)
    weights_path = Path(path) / WEIGHTS_FILE
    if not weights_path.is_file():
        raise SAELoadError(f"{path}: no {WEIGHTS_FILE} next to {CFG_FILE}")
    raw = mx.load(str(weights_path))
    params = {k: v.astype(mx.float32) for k, v in raw.items() if k in _WEIGHT_NAMES}
    if cfg.architecture == "jumprelu" and "threshold" not in params and "log_threshold" in raw:
        params["threshold"] = mx.exp(raw["log_threshold"].astype(mx.float32))
    if cfg.architecture != "jumprelu":
        params.pop("threshold", None)
    try:
        return SAE(cfg, params)
    except SAEShapeError as exc:
        raise SAELoadError(f"{weights_path}: {exc}") from None
