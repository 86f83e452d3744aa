"""The measurement server on the embedded model answers exactly what the in-process measurer computes."""

from __future__ import annotations

import numpy as np
import pytest

from engine.features.measure import LatentMeasurer
from engine.features.sae import SAE
from engine.features.sae_io import save_sae
from engine.features.schemas import SAEConfig
from orchestrator.features.measure_client import MeasureError, SubprocessMeasurer

pytestmark = pytest.mark.embedded


def test_server_matches_in_process_measurement(embedded, tmp_path):
    cfg = SAEConfig(architecture="topk", d_in=embedded.cfg.d_model, d_sae=256, k=8, hook_name="blocks.3.hook_resid_post",
                    hook_layer=3, model_name="smollm2-135m")
    sae = SAE.init(cfg, seed=1)
    save_sae(sae, tmp_path / "sae")
    texts = ["The Eiffel Tower is in the city of Paris.", "def f(x):\n    return x + 1"]
    local = LatentMeasurer(embedded, sae).measure(texts, [3, 200])
    with SubprocessMeasurer(tmp_path / "sae") as remote:
        got = remote.measure_many([3, 200], texts).results
        with pytest.raises(MeasureError, match="out of range"):
            remote.measure(999, ["x"])
    for a, b in zip(local, got):
        assert a.tokens == b.tokens == embedded.to_str_tokens(a.text)
        for latent in (3, 200):
            np.testing.assert_allclose(a.acts[latent], b.acts[latent], atol=1e-3)
            assert b.acts[latent][0] == 0.0
