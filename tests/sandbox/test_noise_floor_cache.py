"""The run's noise floor (RUN_DIR/state/noise_floor.json): measured once per null family, reused after.

In-process measurement (sandbox.verify_entry.measure) behind the parent's real cache logic
(sandbox.verifier.measure_claim); a recording wrapper shows what each verification asked the child for.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.interventions import Steer
from sandbox import verify_entry
from sandbox.noise_floor import NoiseFloorCache, cache_path, location, touches
from sandbox.schemas import Claim
from sandbox.verifier import measure_claim
from tests.orchestrator.analysis.planted import FALSE_CLAIM, TRUE_CLAIM, build_model, make_run, prompt_pairs


class Recorder:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    def __call__(self, request: dict[str, Any]) -> dict[str, Any]:
        self.requests.append(request)
        return verify_entry.measure(request)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model(tmp_path_factory.mktemp("planted") / "model")


@pytest.fixture
def run(tmp_path: Path, model: Path) -> Path:
    pairs = prompt_pairs(20, seed=3)
    return make_run(tmp_path / "run", model, pairs[:10], pairs[10:], seed=11)


def _families(run: Path) -> dict[str, Any]:
    return json.loads(cache_path(run).read_text())["families"]


def test_first_verification_measures_the_floor_and_later_ones_reuse_it(run: Path) -> None:
    rec = Recorder()
    first = measure_claim(run, TRUE_CLAIM, rec, n_null=6)
    assert rec.requests[0]["null_modes"] == ["random_components", "shuffled_source", "random_direction"]
    assert rec.requests[0]["null_counts"]["random_components"] == 12  # shared family: twice the per-claim draws
    fams = _families(run)
    shared = [f for f in fams.values() if f["mode"] == "random_components"]
    assert len(shared) == 1 and len(shared[0]["draws"]) == 12 and shared[0]["signature"]["interventions"][0]["heads"] == 1
    assert all(len(d["effects"]) == first.n_pairs for d in shared[0]["draws"]) and shared[0]["std"] > 0
    assert any("measured now and cached" in n for n in first.notes)

    # Another claim of the same shape (one head, same hook kind): the shared family is reused, only the
    # claim-specific resampled-source family is measured.
    before = {k: v for k, v in _families(run).items() if v["mode"] == "random_components"}
    second = measure_claim(run, FALSE_CLAIM, rec, n_null=6)
    assert rec.requests[1]["null_modes"] == ["shuffled_source", "random_direction"]
    assert {k: v for k, v in _families(run).items() if v["mode"] == "random_components"} == before
    assert any("random_components" in n and "reused from" in n for n in second.notes)

    # Re-verifying (the `verify` command, a resumed run) measures no null at all and gives the same figures.
    again = measure_claim(run, TRUE_CLAIM, rec, n_null=6)
    assert rec.requests[2]["null_modes"] == []
    assert again.effects == first.effects and again.null_effects == first.null_effects


def test_null_draws_on_the_claims_own_components_are_left_out(run: Path) -> None:
    result = measure_claim(run, TRUE_CLAIM, Recorder(), n_null=10)
    fam = next(f for f in _families(run).values() if f["mode"] == "random_components")
    own = location(TRUE_CLAIM.interventions)
    touching = [d for d in fam["draws"] if touches(d["location"], own)]
    kept = [d["effects"] for d in fam["draws"] if not touches(d["location"], own)]
    assert touching, "with 12 head locations, 20 draws should hit a0.h0 at least once (seeded)"
    assert result.null_effects["random_components"] == kept
    assert any(f"({len(touching)} touching the claim's components left out)" in n for n in result.notes)


def test_a_cache_of_another_contract_or_a_damaged_one_is_remeasured(run: Path) -> None:
    rec = Recorder()
    measured = measure_claim(run, TRUE_CLAIM, rec, n_null=4)
    cache = NoiseFloorCache.model_validate_json(cache_path(run).read_bytes())
    cache_path(run).write_text(cache.model_copy(update={"contract_hash": "0" * 64}).model_dump_json())
    again = measure_claim(run, TRUE_CLAIM, rec, n_null=4)
    assert rec.requests[1]["null_modes"] == rec.requests[0]["null_modes"]  # everything measured again
    assert any("belonged to another contract" in n for n in again.notes)
    # The family seeds depend only on the run's seed and the family: a re-measured floor is the same floor.
    assert again.null_effects == measured.null_effects
    assert NoiseFloorCache.model_validate_json(cache_path(run).read_bytes()).contract_hash == cache.contract_hash

    cache_path(run).write_text("{not json")
    third = measure_claim(run, TRUE_CLAIM, rec, n_null=4)
    assert rec.requests[2]["null_modes"] == rec.requests[0]["null_modes"]
    assert any("was not a valid noise-floor cache" in n for n in third.notes)
    assert third.null_effects == measured.null_effects


def test_more_draws_than_cached_remeasures_the_family(run: Path) -> None:
    rec = Recorder()
    measure_claim(run, TRUE_CLAIM, rec, n_null=3)
    measure_claim(run, TRUE_CLAIM, rec, n_null=5)
    assert rec.requests[1]["null_modes"] == ["random_components", "shuffled_source"]
    assert max(len(f["draws"]) for f in _families(run).values()) == 10


def test_steering_claims_get_a_random_direction_of_the_same_norm(run: Path) -> None:
    vector = [0.0] * 64
    vector[16] = 3.0
    claim = Claim(statement="steering S1 moves the answer", expected_direction="increase",
                  interventions=[Steer(hook="blocks.1.hook_resid_pre", positions=[-1], vector=vector)])
    result = measure_claim(run, claim, Recorder(), n_null=4)
    assert result.status == "ok", result.reason
    assert len(result.null_effects["random_direction"]) == 4
    assert "shuffled_source" not in result.null_effects  # a steer uses no source activations
    moved = verify_entry._random_direction(claim, np.random.default_rng(0))[0]
    assert np.isclose(np.linalg.norm(moved.vector), 3.0) and moved.vector != vector and moved.hook == claim.interventions[0].hook
