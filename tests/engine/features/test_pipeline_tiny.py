"""Caching, evaluation, example sampling and measurement on a tiny random Llama (fast, no files)."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from engine.features.caching import ActivationStore, CacheError, cache_activations
from engine.features.evaluate import ce_losses, evaluate_sae, reconstruction_stats
from engine.features.measure import LatentMeasurer
from engine.features.sae import SAE
from engine.features.sampling import SampleConfig, sample_latents, sparse_activations
from engine.features.schemas import SAEConfig, TrainConfig
from engine.features.train import train_sae
from tests.engine.tiny import tiny_model

HOOK = "blocks.1.hook_resid_post"


def texts(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(f"w{int(i)}" for i in rng.integers(0, 64, size=rng.integers(5, 30))) for _ in range(n)]


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=0)


@pytest.fixture(scope="module")
def cache(model, tmp_path_factory):
    out = tmp_path_factory.mktemp("cache")
    cache_activations(model, HOOK, out, n_tokens=17 * 120, ctx_len=17, batch_size=8, shard_contexts=50,
                      texts=texts(400), progress=False)
    return ActivationStore(out)


@pytest.fixture(scope="module")
def trained(cache):
    return train_sae(cache, TrainConfig(d_sae=128, k=4, batch_size=256, epochs=4, lr=3e-3, eval_fraction=0.1), progress=False)


def perfect_sae(d: int, hook: str) -> SAE:
    """ReLU SAE with W_enc = [I, -I]: reconstructs any input exactly."""
    eye = np.eye(d, dtype=np.float32)
    cfg = SAEConfig(architecture="standard", d_in=d, d_sae=2 * d, hook_name=hook, apply_b_dec_to_input=False)
    return SAE(cfg, {"W_enc": mx.array(np.concatenate([eye, -eye], axis=1)), "b_enc": mx.zeros((2 * d,)),
                     "W_dec": mx.array(np.concatenate([eye, -eye], axis=0)), "b_dec": mx.zeros((d,))})


def test_cache_holds_the_hook_activations_of_the_budget(model, cache):
    m = cache.manifest
    assert m.n_contexts == 120 and m.ctx_len == 17 and m.hook == HOOK and len(m.shards) == 3
    assert m.d_in == model.cfg.d_model and cache.tokens.shape == (120, 17)
    _, ref = model.run_with_cache(mx.array(cache.tokens[:4]), names=[HOOK])
    _, first = next(cache.iter_shards())
    np.testing.assert_allclose(first[:4], np.array(ref[HOOK]), rtol=1e-5, atol=1e-5)
    flat = cache.flat(np.array([0, 1]))
    assert flat.shape == (2 * 16, model.cfg.d_model)  # position 0 (the attention sink) left out
    np.testing.assert_allclose(flat[:16], first[0, 1:], rtol=1e-6)


def test_cache_errors_are_actionable(tmp_path, model):
    with pytest.raises(CacheError, match="no manifest.json"):
        ActivationStore(tmp_path)
    with pytest.raises(CacheError, match="fewer than"):
        cache_activations(model, HOOK, tmp_path / "c", n_tokens=10_000, ctx_len=17, texts=texts(3), progress=False)


def test_metrics_of_a_perfect_sae(model, cache):
    sae = perfect_sae(model.cfg.d_model, HOOK)
    metrics = evaluate_sae(model, sae, cache, np.arange(10), ce_contexts=6)
    assert metrics.explained_variance > 0.9999 and metrics.ce_loss_recovered == pytest.approx(1.0, abs=1e-4)
    assert metrics.ce_zero_ablated > metrics.ce_clean
    assert metrics.kl_spliced == pytest.approx(0.0, abs=1e-4) and metrics.kl_zero_ablated > 0.01
    # the generic (hooked) path agrees with the resumed-prefix path for a non-resid hook
    clean, spliced, zero = ce_losses(model, perfect_sae(model.cfg.d_model, "blocks.1.hook_mlp_out"), cache.tokens[:4],
                                     "blocks.1.hook_mlp_out")
    assert spliced == pytest.approx(clean, abs=1e-4) and zero != clean


def test_trained_sae_metrics(model, cache, trained):
    metrics = evaluate_sae(model, trained.sae, cache, trained.eval_contexts, ce_contexts=8)
    assert metrics.l0 == pytest.approx(4.0, abs=0.01)
    assert metrics.explained_variance > 0.3 and 0 <= metrics.dead_fraction < 0.5
    assert metrics.ce_loss_recovered is not None and metrics.ce_loss_recovered > 0.3
    stats = reconstruction_stats(trained.sae, cache.flat(trained.eval_contexts))
    assert stats["l0"] == metrics.l0


def test_examples_are_sampled_as_delphi_does(model, cache, trained):
    cfg = SampleConfig(window=8, train=(10, 5, 5), val=(6, 4, 4), test=(10, 5, 5), min_activating=12, max_density=1.0)
    sp = sparse_activations(trained.sae, cache, cfg.window)
    ls = sample_latents(trained.sae, cache, model.tokenizer, n=5, cfg=cfg, sparse=sp)
    assert ls.latents and ls.window == 8
    for lat in ls.latents:
        splits = (lat.train, lat.val, lat.test)
        sources = [ex.source for s in splits for ex in s.all()]
        assert len(sources) == len(set(sources)), "train, val and test share no window"
        for s in splits:
            assert all(ex.max_act > 0 for ex in s.activating) and all(ex.max_act == 0 for ex in s.negatives())
            assert all(len(ex.tokens) == 8 for ex in s.all())
        quantiles = {ex.quantile for ex in lat.train.activating}
        assert len(quantiles) >= 5, "activating examples span the activation deciles"
        top = {tok for tok, _ in lat.top_tokens[: cfg.n_hard_tokens]}
        assert all(top & set(ex.tokens) for s in splits for ex in s.hard_negative)
        # activations in the examples are the SAE's, at the right positions
        ex = lat.test.activating[0]
        ctx, part = map(int, ex.source.split(":"))
        start = 1 + part * 8
        acts = np.array(trained.sae.encode(mx.array(cache.flat(np.array([ctx]))[start - 1 : start - 1 + 8])))[:, lat.latent]
        np.testing.assert_allclose(ex.acts, acts, atol=1e-3)


def test_measurer_matches_the_sae_on_the_hook(model, trained):
    sae = trained.sae
    sae.cfg.hook_name = HOOK
    measurer = LatentMeasurer(model, sae)
    (out,) = measurer.measure(["w1 w2 w3 w4 w5"], [0, 5])
    _, cache = model.run_with_cache(model.to_tokens("w1 w2 w3 w4 w5"), names=[HOOK])
    expect = np.array(sae.encode(cache[HOOK][0]))
    assert out.tokens == ["w1", "w2", "w3", "w4", "w5"] and out.acts[5][0] == 0.0
    np.testing.assert_allclose(out.acts[5][1:], expect[1:, 5], atol=1e-3)
    with pytest.raises(ValueError, match="out of range"):
        measurer.measure(["w1"], [10_000])
    # texts of different lengths batched with right padding give what each text gives alone
    texts = ["w3 w9", "w1 w2 w3 w4 w5 w6 w7", "w8 w8 w8 w1"]
    together = measurer.measure(texts, [5, 7], batch_size=8)
    for text, got in zip(texts, together):
        (alone,) = measurer.measure([text], [5, 7], batch_size=1)
        assert got.tokens == alone.tokens
        np.testing.assert_allclose(got.acts[5], alone.acts[5], atol=1e-4)
        np.testing.assert_allclose(got.acts[7], alone.acts[7], atol=1e-4)


def test_latent_attribution_matches_finite_differences(model, trained):
    """The first-order estimate agrees with actually patching a latent's contribution, for the top latent."""
    from engine.features.attribution import latent_attribution, top_latents

    sae = trained.sae
    sae.cfg.hook_name = HOOK
    pairs = [("w1 w2 w3 w4 w5 w6", "w1 w9 w3 w4 w8 w6", "w7", "w11"), ("w2 w2 w5 w4 w1 w3", "w2 w6 w5 w4 w9 w3", "w7", "w11")]
    attr, metric = latent_attribution(model, sae, pairs, batch_size=1)
    assert attr.shape == (sae.cfg.d_sae,) and np.isfinite(metric)
    top = top_latents(attr, 3)
    assert len(top) == 3 and abs(attr[top[0]]) >= abs(attr[top[-1]])

    def patched_metric(latent: int, scale: float) -> float:
        total = 0.0
        for clean, corrupted, good, bad in pairs:
            _, cc = model.run_with_cache(model.to_tokens(corrupted), names=[HOOK])
            f_corr = sae.encode(cc[HOOK])[..., latent]

            def hook(a, _n):
                f_clean = sae.encode(a)[..., latent]
                delta = scale * (f_corr - f_clean)[..., None] * sae.params["W_dec"][latent]
                return mx.concatenate([a[:, :1], a[:, 1:] + delta[:, 1:]], axis=1)

            logits = model.run_with_hooks(model.to_tokens(clean), fwd_hooks=[(HOOK, hook)])[0, -1]
            total += float(logits[model.token_id(good)] - logits[model.token_id(bad)])
        return total / len(pairs)

    eps = 1e-2
    finite = (patched_metric(top[0], eps) - patched_metric(top[0], 0.0)) / eps
    assert finite == pytest.approx(attr[top[0]], rel=0.05, abs=1e-3)
