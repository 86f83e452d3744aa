"""Acceptance on the embedded model, at a small budget: cache blocks.15.hook_resid_post over the generated
corpus, train a TopK SAE, report L0 / explained variance / CE-loss recovered / dead fraction, and reload
it from the SAELens layout with identical activations. (The full-budget run is tests/bench/bench_features.py.)"""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from engine.features.caching import ActivationStore, cache_activations
from engine.features.evaluate import evaluate_sae
from engine.features.sae_io import load_sae, save_sae
from engine.features.schemas import TrainConfig
from engine.features.train import train_sae

pytestmark = [pytest.mark.embedded, pytest.mark.slow]
HOOK = "blocks.15.hook_resid_post"


def test_embedded_sae_trains_reports_and_reloads_identically(embedded, tmp_path):
    cache_activations(embedded, HOOK, tmp_path / "cache", n_tokens=65 * 96, progress=False)
    store = ActivationStore(tmp_path / "cache")
    res = train_sae(store, TrainConfig(d_sae=512, k=16, epochs=4, batch_size=1024, lr=2e-3, eval_fraction=0.1),
                    hook_layer=15, progress=False)
    metrics = evaluate_sae(embedded, res.sae, store, res.eval_contexts, ce_contexts=8)
    assert metrics.l0 == pytest.approx(16.0, abs=0.01)
    assert 0.3 < metrics.explained_variance < 1.0
    assert metrics.ce_loss_recovered is not None and metrics.ce_loss_recovered > 0.5
    assert metrics.ce_clean < metrics.ce_spliced < metrics.ce_zero_ablated
    assert 0.0 <= metrics.dead_fraction < 0.5
    path = save_sae(res.sae, tmp_path / "sae")
    again = load_sae(path)
    assert again.cfg.hook_name == HOOK and again.cfg.hook_layer == 15 and again.cfg.model_name == embedded.cfg.name
    x = mx.array(store.flat(res.eval_contexts))
    assert np.array_equal(np.array(res.sae.encode(x)), np.array(again.encode(x)))
