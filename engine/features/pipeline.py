"""The whole SAE pipeline on one model and hook: cache -> train -> evaluate -> save -> sample examples.

``python -m engine.features build --out DIR [--tokens N] [--hook H] [--d-sae D] [--k K]`` runs it and
writes DIR/{cache/, sae/ (SAELens layout), metrics.json, latents.json}. Timings of each stage are
recorded because the pipeline's budget (10 minutes on 2 cores for the default) is part of its contract.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from engine.features.schemas import SAEMetrics, TrainConfig


class BuildConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = "smollm2-135m"
    hook: str = "blocks.15.hook_resid_post"
    n_tokens: int = Field(default=150_000, gt=0)
    ctx_len: int = 65
    batch_size: int = 16
    train: TrainConfig = Field(default_factory=TrainConfig)
    n_latents: int = 50  # latents to sample examples for (most frequent first, density-capped)
    latent_order: str = "frequency"
    corpus_seed: int = 0


class BuildReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    config: BuildConfig
    metrics: SAEMetrics
    seconds: dict[str, float]  # wall clock per stage (noisy on a shared machine)
    cpu_seconds: dict[str, float]  # process CPU time per stage (all threads): robust to other load
    n_cached_tokens: int
    latents_with_examples: int  # latents with at least min_activating activating windows (any density)
    sampled_latents: int


def build(cfg: BuildConfig, out_dir: str | Path, *, progress: bool = True, reuse_cache: bool = True) -> BuildReport:
    """Run every stage; an existing cache with the same model/hook/budget is reused."""
    import engine
    from engine.features.caching import MANIFEST, ActivationStore, cache_activations
    from engine.features.evaluate import evaluate_sae
    from engine.features.sae_io import save_sae
    from engine.features.sampling import SampleConfig, latent_stats, sample_latents, sparse_activations
    from engine.hook_names import split_hook

    out = Path(out_dir)
    seconds: dict[str, float] = {}
    cpu: dict[str, float] = {}
    clock = _Clock(seconds, cpu)
    model = engine.load_model(cfg.model)
    clock.lap("load_model")
    cache_dir = out / "cache"
    if not (reuse_cache and _cache_matches(cache_dir / MANIFEST, cfg)):
        cache_activations(model, cfg.hook, cache_dir, n_tokens=cfg.n_tokens, ctx_len=cfg.ctx_len,
                          batch_size=cfg.batch_size, seed=cfg.corpus_seed, progress=progress)
    store = ActivationStore(cache_dir)
    clock.lap("cache")
    layer, _ = split_hook(cfg.hook)
    result = engine.features.train_sae(store, cfg.train, hook_layer=-1 if layer is None else layer, progress=progress)
    clock.lap("train")
    sae_dir = save_sae(result.sae, out / "sae")
    metrics = evaluate_sae(model, result.sae, store, result.eval_contexts, train_tokens=result.train_tokens,
                           train_seconds=result.seconds, steps=result.steps)
    clock.lap("evaluate")
    scfg = SampleConfig(seed=cfg.corpus_seed)
    sparse = sparse_activations(result.sae, store, scfg.window)
    windows, _ = latent_stats(sparse, result.sae.cfg.d_sae, store.manifest.n_usable_tokens)
    latent_set = sample_latents(result.sae, store, model.tokenizer, n=cfg.n_latents, cfg=scfg, sae_path=str(sae_dir),
                                order=cfg.latent_order, sparse=sparse)
    (out / "latents.json").write_text(latent_set.model_dump_json())
    clock.lap("sample")
    report = BuildReport(config=cfg, metrics=metrics, seconds=seconds, cpu_seconds=cpu, n_cached_tokens=store.manifest.n_tokens,
                         latents_with_examples=int((windows >= scfg.min_activating).sum()),
                         sampled_latents=len(latent_set.latents))
    (out / "metrics.json").write_text(report.model_dump_json(indent=2))
    return report


class _Clock:
    """Wall and CPU time per stage."""

    def __init__(self, wall: dict[str, float], cpu: dict[str, float]) -> None:
        self.wall, self.cpu = wall, cpu
        self._w, self._c = time.perf_counter(), time.process_time()

    def lap(self, name: str) -> None:
        w, c = time.perf_counter(), time.process_time()
        self.wall[name], self.cpu[name] = round(w - self._w, 2), round(c - self._c, 2)
        self._w, self._c = w, c


class SampleReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sae: str
    hook: str
    n_cached_tokens: int
    dead_fraction: float
    latents_with_examples: int
    sampled_latents: int
    seconds: dict[str, float]
    cpu_seconds: dict[str, float]


def sample_existing(sae_dir: str | Path, out_dir: str | Path, *, model_name: str = "smollm2-135m",
                    n_tokens: int = 150_000, ctx_len: int = 65, n_latents: int = 50, order: str = "frequency",
                    seed: int = 0, progress: bool = True) -> SampleReport:
    """Examples for an SAE made elsewhere: cache its hook over the corpus (or reuse the cache), then sample."""
    import engine
    from engine.features.caching import MANIFEST, ActivationStore, cache_activations
    from engine.features.sae_io import load_sae
    from engine.features.sampling import SampleConfig, latent_stats, sample_latents, sparse_activations

    out = Path(out_dir)
    seconds: dict[str, float] = {}
    cpu: dict[str, float] = {}
    clock = _Clock(seconds, cpu)
    sae = load_sae(sae_dir)
    if not sae.cfg.hook_name:
        raise ValueError(f"{sae_dir}/cfg.json names no hook_name; the activations to explain cannot be cached")
    model = engine.load_model(model_name)
    clock.lap("load")
    probe = BuildConfig(model=model_name, hook=sae.cfg.hook_name, n_tokens=n_tokens, ctx_len=ctx_len, corpus_seed=seed)
    if not _cache_matches(out / "cache" / MANIFEST, probe):
        cache_activations(model, sae.cfg.hook_name, out / "cache", n_tokens=n_tokens, ctx_len=ctx_len, seed=seed,
                          progress=progress)
    store = ActivationStore(out / "cache")
    clock.lap("cache")
    scfg = SampleConfig(seed=seed)
    sparse = sparse_activations(sae, store, scfg.window)
    windows, _ = latent_stats(sparse, sae.cfg.d_sae, store.manifest.n_usable_tokens)
    latent_set = sample_latents(sae, store, model.tokenizer, n=n_latents, cfg=scfg, sae_path=str(sae_dir),
                                order=order, sparse=sparse)
    (out / "latents.json").write_text(latent_set.model_dump_json())
    clock.lap("sample")
    report = SampleReport(sae=str(sae_dir), hook=sae.cfg.hook_name, n_cached_tokens=store.manifest.n_tokens,
                          dead_fraction=latent_set.dead_fraction,
                          latents_with_examples=int((windows >= scfg.min_activating).sum()),
                          sampled_latents=len(latent_set.latents), seconds=seconds, cpu_seconds=cpu)
    (out / "sample_report.json").write_text(report.model_dump_json(indent=2))
    return report


class PairSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    clean: str
    corrupted: str
    correct: str
    wrong: str


def attribute_and_sample(sae_dir: str | Path, pairs: list[PairSpec], out_dir: str | Path, *,
                         model_name: str = "smollm2-135m", n_tokens: int = 150_000, ctx_len: int = 65,
                         n_latents: int = 10, seed: int = 0, progress: bool = True) -> dict:
    """Rank latents by attribution to the pairs' logit difference, then sample examples of the top ones
    (in attribution order; latents too rare in the corpus to have examples are skipped and reported)."""
    import engine
    from engine.features.attribution import latent_attribution, top_latents
    from engine.features.caching import MANIFEST, ActivationStore, cache_activations
    from engine.features.sae_io import load_sae
    from engine.features.sampling import SampleConfig, sample_latents

    out = Path(out_dir)
    sae = load_sae(sae_dir)
    model = engine.load_model(model_name)
    attr, metric = latent_attribution(model, sae, [(p.clean, p.corrupted, p.correct, p.wrong) for p in pairs])
    candidates = top_latents(attr, 4 * n_latents)
    probe = BuildConfig(model=model_name, hook=sae.cfg.hook_name, n_tokens=n_tokens, ctx_len=ctx_len, corpus_seed=seed)
    if not _cache_matches(out / "cache" / MANIFEST, probe):
        cache_activations(model, sae.cfg.hook_name, out / "cache", n_tokens=n_tokens, ctx_len=ctx_len, seed=seed,
                          progress=progress)
    store = ActivationStore(out / "cache")
    latent_set = sample_latents(sae, store, model.tokenizer, candidates, cfg=SampleConfig(seed=seed), sae_path=str(sae_dir))
    latent_set = latent_set.model_copy(update={"latents": latent_set.latents[:n_latents]})
    (out / "latents.json").write_text(latent_set.model_dump_json())
    sampled = {lat.latent for lat in latent_set.latents}
    report = {"mean_clean_metric": metric, "n_pairs": len(pairs),
              "top": [{"latent": l, "attribution": float(attr[l]), "explained": l in sampled} for l in candidates]}
    (out / "attribution.json").write_text(json.dumps(report, indent=2))
    return report


def _cache_matches(manifest_path: Path, cfg: BuildConfig) -> bool:
    if not manifest_path.is_file():
        return False
    data = json.loads(manifest_path.read_text())
    return data.get("hook") == cfg.hook and \
        data.get("n_contexts") == max(1, cfg.n_tokens // cfg.ctx_len) and data.get("ctx_len") == cfg.ctx_len and \
        data.get("corpus_seed") == cfg.corpus_seed
