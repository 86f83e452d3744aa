"""SAE training recovers known features; SAELens-layout save/load is exact; SAELens SAEs made elsewhere load."""

from __future__ import annotations

import json

import mlx.core as mx
import numpy as np
import pytest

from engine.features.sae import SAE
from engine.features.sae_io import SAELoadError, load_sae, save_sae
from engine.features.schemas import SAEConfig, TrainConfig
from engine.features.train import train_sae


def synthetic(n: int = 8000, d: int = 32, n_features: int = 48, active: int = 3, seed: int = 0):
    """Activations that are sparse sums of known unit directions plus an offset."""
    rng = np.random.default_rng(seed)
    feats = rng.standard_normal((n_features, d))
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    codes = np.zeros((n, n_features), np.float32)
    for i in range(n):
        codes[i, rng.choice(n_features, active, replace=False)] = rng.uniform(1, 3, active)
    return (codes @ feats + 0.3).astype(np.float32), feats


@pytest.mark.parametrize("arch", ["topk", "batchtopk"])
def test_training_recovers_known_features(arch):
    x, feats = synthetic()
    res = train_sae(x, TrainConfig(architecture=arch, d_sae=96, k=3, batch_size=512, epochs=12, lr=3e-3), progress=False)
    w = np.array(res.sae.params["W_dec"])
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    best = (feats @ w.T).max(axis=1)
    assert (best > 0.9).mean() >= 0.9, f"recovered {np.sort(best)[:5]}"
    acts = np.array(res.sae.encode(mx.array(x[:1000])))
    l0 = (acts > 0).sum(axis=1).mean()
    assert 2.0 <= l0 <= 4.5
    assert res.sae.cfg.architecture == ("topk" if arch == "topk" else "jumprelu")


def test_save_load_roundtrip_gives_identical_activations(tmp_path):
    x, _ = synthetic(n=3000)
    for arch in ("topk", "batchtopk"):
        sae = train_sae(x, TrainConfig(architecture=arch, d_sae=64, k=3, batch_size=512, epochs=1), hook_name="blocks.1.hook_resid_post",
                        hook_layer=1, progress=False).sae
        path = save_sae(sae, tmp_path / arch)
        cfg = json.loads((path / "cfg.json").read_text())
        assert {"d_in", "d_sae", "architecture", "hook_name", "hook_layer", "dtype", "apply_b_dec_to_input",
                "normalize_activations"} <= set(cfg)
        assert cfg["meta"]["hook_name"] == "blocks.1.hook_resid_post"
        again = load_sae(path)
        xs = mx.array(x[:500])
        assert np.array_equal(np.array(sae.encode(xs)), np.array(again.encode(xs)))
        assert np.array_equal(np.array(sae.reconstruct(xs)), np.array(again.reconstruct(xs)))


def _write_saelens(path, cfg: dict, weights: dict[str, np.ndarray], dtype=mx.float32) -> None:
    path.mkdir(parents=True)
    (path / "cfg.json").write_text(json.dumps(cfg))
    mx.save_safetensors(str(path / "sae_weights.safetensors"), {k: mx.array(v).astype(dtype) for k, v in weights.items()})


def _weights(d_in=16, d_sae=40, seed=1):
    rng = np.random.default_rng(seed)
    return {"W_enc": rng.standard_normal((d_in, d_sae)).astype(np.float32), "b_enc": rng.standard_normal(d_sae).astype(np.float32) * 0.1,
            "W_dec": rng.standard_normal((d_sae, d_in)).astype(np.float32), "b_dec": rng.standard_normal(d_in).astype(np.float32)}


def test_saelens_standard_sae_from_elsewhere_loads(tmp_path):
    w = _weights()
    cfg = {"architecture": "standard", "d_in": 16, "d_sae": 40, "dtype": "torch.float32", "hook_name": "blocks.8.hook_resid_pre",
           "hook_layer": 8, "activation_fn_str": "relu", "apply_b_dec_to_input": True, "normalize_activations": "none",
           "model_name": "gpt2-small", "sae_lens_training_version": "3.0.0", "context_size": 128, "device": "cuda"}
    _write_saelens(tmp_path / "std", cfg, w)
    sae = load_sae(tmp_path / "std")
    x = np.random.default_rng(2).standard_normal((7, 16)).astype(np.float32)
    expect = np.maximum((x - w["b_dec"]) @ w["W_enc"] + w["b_enc"], 0)
    np.testing.assert_allclose(np.array(sae.encode(mx.array(x))), expect, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.array(sae.reconstruct(mx.array(x))), expect @ w["W_dec"] + w["b_dec"], rtol=1e-4, atol=1e-4)
    assert sae.cfg.hook_name == "blocks.8.hook_resid_pre"


def test_saelens_v6_topk_and_bf16_jumprelu_load(tmp_path):
    w = _weights()
    _write_saelens(tmp_path / "topk", {"architecture": "topk", "d_in": 16, "d_sae": 40, "k": 5,
                                       "meta": {"hook_name": "blocks.2.hook_resid_post", "hook_layer": 2}}, w)
    sae = load_sae(tmp_path / "topk")
    acts = np.array(sae.encode(mx.array(np.ones((3, 16), np.float32))))
    assert ((acts > 0).sum(axis=1) <= 5).all() and sae.cfg.hook_layer == 2
    _write_saelens(tmp_path / "jr", {"architecture": "jumprelu", "d_in": 16, "d_sae": 40, "apply_b_dec_to_input": False,
                                     "hook_name": "blocks.2.hook_resid_post"},
                   {**w, "threshold": np.full(40, 0.5, np.float32)}, dtype=mx.bfloat16)
    jr = load_sae(tmp_path / "jr")
    x = mx.array(np.random.default_rng(3).standard_normal((4, 16)).astype(np.float32))
    pre = np.array(x @ jr.params["W_enc"] + jr.params["b_enc"])
    np.testing.assert_allclose(np.array(jr.encode(x)), np.where(pre > 0.5, pre, 0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cfg,problem", [
    ({"architecture": "topk", "d_in": 16, "d_sae": 40}, "needs k"),
    ({"architecture": "standard", "d_in": 16, "d_sae": 40, "normalize_activations": "expected_average_only_in"}, "fold"),
    ({"architecture": "gated", "d_in": 16, "d_sae": 40}, "architecture"),
])
def test_unsupported_configs_are_named(tmp_path, cfg, problem):
    _write_saelens(tmp_path / "bad", cfg, _weights())
    with pytest.raises(SAELoadError, match=problem):
        load_sae(tmp_path / "bad")


def test_missing_files_and_wrong_shapes_are_named(tmp_path):
    with pytest.raises(SAELoadError, match="no cfg.json"):
        load_sae(tmp_path)
    _write_saelens(tmp_path / "shape", {"architecture": "standard", "d_in": 16, "d_sae": 41}, _weights())
    with pytest.raises(SAELoadError, match="W_enc has shape"):
        load_sae(tmp_path / "shape")
    sae = SAE.init(SAEConfig(architecture="standard", d_in=16, d_sae=8))
    with pytest.raises(ValueError, match="d_in=16"):
        sae.encode(mx.zeros((2, 15)))
