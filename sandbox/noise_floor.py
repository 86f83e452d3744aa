"""The run's noise floor: effects of null interventions on the held-out split, measured once and cached.

Why a cache keyed by null family: the p-value is only valid against nulls of the claim's own shape
(patching one head is compared with patching one other head, not with patching a whole layer), so
one run-wide number cannot serve every claim. Claims of the same shape share one family, measured
the first time such a claim is verified and reused by every later claim, by `verify` and by a
resumed run. Families:

* ``random_components``: the claim's interventions moved to random layers/heads (positions when
  neither applies), drawn over *every* location, the claim's own included, so the draws do not
  depend on which claim came first. Each draw records its location; a claim is tested against the
  draws that do not touch its own components.
* ``shuffled_source`` (resampled same-family source) and ``random_direction`` (steering vectors
  replaced by random directions of the same norm): they keep the claim's own components, so their
  family is the claim itself; cached too, so re-verifying a claim does not re-measure them.

The file (RUN_DIR/state/noise_floor.json) belongs to one contract: a cache written for another
contract (hash mismatch) is ignored and re-measured. Nothing here imports mlx.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sandbox.schemas import Claim

CACHE_RELPATH = Path("state") / "noise_floor.json"
NullMode = Literal["random_components", "shuffled_source", "random_direction"]
NULL_MODES: tuple[str, ...] = ("random_components", "shuffled_source", "random_direction")
LOCATION_FREE_MODES = ("random_components",)  # families shared by claims at different components
_LAYER_HOOK = re.compile(r"^blocks\.(\d+)\.(.+)$")


class NullDraw(BaseModel):
    """One null intervention: where it was applied and its normalised effect on each held-out pair."""

    model_config = ConfigDict(extra="forbid")

    location: list[dict[str, Any]] = Field(description="per intervention: hook, heads, positions")
    effects: list[float]


class NullFamily(BaseModel):
    """Every draw of one null family, with the figures a reader wants without recomputing them."""

    model_config = ConfigDict(extra="forbid")

    mode: NullMode
    signature: dict[str, Any] = Field(description="what claims sharing this family have in common")
    seed: int
    n_pairs: int
    normaliser: float
    draws: list[NullDraw] = Field(default_factory=list)
    note: str = Field(default="", description="why the family has no draws (the mode does not apply)")
    mean: float = 0.0
    std: float = 0.0
    p05: float = 0.0
    p95: float = 0.0


class NoiseFloorCache(BaseModel):
    """RUN_DIR/state/noise_floor.json: null families of one contract, on its held-out split."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = 1
    contract_hash: str
    contract_seed: int
    split: Literal["held_out"] = "held_out"
    families: dict[str, NullFamily] = Field(default_factory=dict)


def _layer_free(hook: str) -> str:
    m = _LAYER_HOOK.match(hook)
    return f"blocks.*.{m.group(2)}" if m else hook


def _shape(iv: Any) -> dict[str, Any]:
    """An intervention with its location replaced by sizes (what random_components keeps)."""
    data = iv.model_dump(mode="json")
    moved_layer = bool(_LAYER_HOOK.match(iv.hook))
    data["hook"] = _layer_free(iv.hook)
    if iv.heads is not None:
        data["heads"] = len(iv.heads)
    if iv.positions is not None and not moved_layer and iv.heads is None:
        data["positions"] = len(iv.positions)
    return data


def signature(claim: Claim, mode: str) -> dict[str, Any]:
    """What every claim of one null family shares (mode-dependent: see the module docstring)."""
    base = {"mode": mode, "target": claim.target, "source": claim.source, "normalise": claim.normalise}
    if mode in LOCATION_FREE_MODES:
        return {**base, "interventions": [_shape(iv) for iv in claim.interventions]}
    return {**base, "interventions": [iv.model_dump(mode="json") for iv in claim.interventions]}


def family_key(claim: Claim, mode: str) -> str:
    return mode + ":" + hashlib.sha256(json.dumps(signature(claim, mode), sort_keys=True).encode()).hexdigest()[:24]


def family_seed(contract_seed: int, key: str) -> int:
    """A seed that depends only on the run's seed and the family, so a re-measurement is identical."""
    digest = hashlib.sha256(f"{int(contract_seed)}|{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def location(interventions: list[Any]) -> list[dict[str, Any]]:
    """Where a list of interventions acts (compared to exclude null draws on the claim's components)."""
    return [{"hook": iv.hook, "heads": None if iv.heads is None else sorted(iv.heads),
             "positions": None if iv.positions is None else list(iv.positions)} for iv in interventions]


def _overlap(a: list[int] | None, b: list[int] | None) -> bool:
    return a is None or b is None or bool(set(a) & set(b))


def touches(draw: list[dict[str, Any]], claim_location: list[dict[str, Any]]) -> bool:
    """True if any null intervention acts on a component any of the claim's interventions acts on (a draw that
    merely permutes the claim's own components is the claim itself, not a null)."""
    return any(d["hook"] == c["hook"] and _overlap(d["heads"], c["heads"]) and _overlap(d["positions"], c["positions"])
               for d in draw for c in claim_location)


def summarise(family: NullFamily) -> NullFamily:
    """Fill the family's mean, spread and 5/95 percentiles over all its per-pair null effects."""
    values = sorted(x for d in family.draws for x in d.effects)
    if not values:
        return family
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((x - mean) ** 2 for x in values) / (n - 1)) if n > 1 else 0.0

    def pct(q: float) -> float:
        pos = q * (n - 1)
        lo, hi = math.floor(pos), math.ceil(pos)
        return values[lo] + (values[hi] - values[lo]) * (pos - lo)

    return family.model_copy(update={"mean": mean, "std": std, "p05": pct(0.05), "p95": pct(0.95)})


def cache_path(run_dir: Path) -> Path:
    return Path(run_dir) / CACHE_RELPATH


def load_cache(run_dir: Path, contract_hash: str, contract_seed: int) -> tuple[NoiseFloorCache, str]:
    """(the run's cache, "") if it belongs to this contract; otherwise (an empty cache, why the file was not used).

    A cache written for another contract (hash or seed mismatch), or one that does not validate
    (hand-edited), is not trusted: its families are re-measured and the file is replaced.
    """
    path = cache_path(run_dir)
    empty = NoiseFloorCache(contract_hash=contract_hash, contract_seed=int(contract_seed))
    if not path.is_file():
        return empty, ""
    try:
        cache = NoiseFloorCache.model_validate_json(path.read_bytes())
    except (OSError, ValidationError) as exc:
        return empty, f"{CACHE_RELPATH} was not a valid noise-floor cache ({str(exc)[:200]}); re-measured"
    if cache.contract_hash != contract_hash or cache.contract_seed != int(contract_seed):
        return empty, f"{CACHE_RELPATH} belonged to another contract ({cache.contract_hash[:12]}); re-measured"
    return cache, ""


def save_cache(run_dir: Path, cache: NoiseFloorCache) -> Path:
    """Atomic write (tmp + fsync + rename): a crash leaves the old cache or the new one, never a torn file."""
    path = cache_path(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    data = cache.model_dump_json(indent=1).encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return path
