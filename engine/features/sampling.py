"""Per-latent examples sampled as delphi does: activating windows across activation deciles, random
non-activating windows, and hard negatives (windows holding the latent's usual tokens where it stays
silent), split into train (the explainer's), val (convergence) and test (final score, keep rule).

Why token-overlap hard negatives: they are the cheapest contexts that look like an activating example
on the surface, which is exactly what a surface-token explanation gets wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import numpy as np
from pydantic import BaseModel, ConfigDict

from engine.features.caching import ActivationStore
from engine.features.sae import SAE
from engine.features.schemas import Example, ExampleSplit, LatentExamples, LatentSet
from engine.tokenizer import Tokenizer


class SampleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    window: int = 32
    n_quantiles: int = 10
    train: tuple[int, int, int] = (40, 20, 10)  # activating, random, hard negatives
    val: tuple[int, int, int] = (30, 15, 15)
    test: tuple[int, int, int] = (50, 25, 25)
    min_activating: int = 24
    max_density: float = 0.05  # denser latents are skipped by select_latents
    n_hard_tokens: int = 8  # most frequent activating tokens used to find hard negatives
    seed: int = 0


@dataclass
class SparseActs:
    """Every nonzero latent activation in the cache as (latent, window, position-in-context, value), sorted."""

    latent: np.ndarray
    window: np.ndarray
    pos: np.ndarray
    value: np.ndarray
    starts: np.ndarray  # latent l occupies rows starts[l]:starts[l+1]
    n_windows: int
    windows_per_ctx: int

    def rows(self, latent: int) -> slice:
        return slice(int(self.starts[latent]), int(self.starts[latent + 1]))


def sparse_activations(sae: SAE, store: ActivationStore, window: int, batch: int = 4096) -> SparseActs:
    """Encode every usable cached token once and keep the nonzeros (memory ~ tokens x L0)."""
    ctx_len, skip = store.manifest.ctx_len, store.skip
    per_ctx = (ctx_len - skip) // window
    if per_ctx < 1:
        raise ValueError(f"window {window} is longer than the usable context ({ctx_len - skip} tokens)")
    used = per_ctx * window
    lat, win, pos, val = [], [], [], []
    for start, block in store.iter_shards():
        flat = block[:, skip : skip + used].reshape(-1, block.shape[-1])
        for i in range(0, len(flat), batch):
            acts = np.asarray(sae.encode(mx.array(flat[i : i + batch])))
            r, c = np.nonzero(acts)
            g = r + i  # row within this shard's usable positions
            ctx, p = start + g // used, g % used
            lat.append(c.astype(np.int32))
            win.append((ctx * per_ctx + p // window).astype(np.int64))
            pos.append((p + skip).astype(np.int32))
            val.append(acts[r, c].astype(np.float32))
    latent, window_id, position, value = (np.concatenate(a) for a in (lat, win, pos, val))
    order = np.lexsort((position, window_id, latent))
    latent, window_id, position, value = latent[order], window_id[order], position[order], value[order]
    starts = np.searchsorted(latent, np.arange(sae.cfg.d_sae + 1))
    return SparseActs(latent, window_id, position, value, starts, store.manifest.n_contexts * per_ctx, per_ctx)


def latent_stats(sp: SparseActs, d_sae: int, n_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """(activating windows per latent, density = active tokens / usable tokens)."""
    counts = np.diff(sp.starts)
    windows = np.zeros(d_sae, dtype=np.int64)
    for latent in np.nonzero(counts)[0]:
        windows[latent] = np.unique(sp.window[sp.rows(latent)]).size
    return windows, counts / max(1, n_tokens)


def select_latents(sp: SparseActs, d_sae: int, n_tokens: int, n: int, cfg: SampleConfig,
                   order: str = "frequency") -> list[int]:
    """The latents to explain: enough activating windows, not denser than ``max_density``;
    'frequency' = most activating windows first, 'random' = a seeded sample."""
    windows, density = latent_stats(sp, d_sae, n_tokens)
    eligible = np.nonzero((windows >= cfg.min_activating) & (density <= cfg.max_density))[0]
    if order == "random":
        chosen = np.random.default_rng(cfg.seed).permutation(eligible)[:n]
    else:
        chosen = eligible[np.argsort(-windows[eligible], kind="stable")][:n]
    return [int(x) for x in chosen]


class ExampleSampler:
    """Builds LatentExamples for chosen latents from the sparse activations and the cached tokens."""

    def __init__(self, store: ActivationStore, sp: SparseActs, tokenizer: Tokenizer, cfg: SampleConfig) -> None:
        self.store, self.sp, self.cfg = store, sp, cfg
        self.tokenizer = tokenizer
        self._strs: dict[int, str] = {}
        skip, w = store.skip, cfg.window
        self.window_tokens = np.stack([
            store.tokens[:, skip + i * w : skip + (i + 1) * w] for i in range(sp.windows_per_ctx)
        ], axis=1).reshape(-1, w)  # [n_windows, window]
        flat = self.window_tokens.reshape(-1)
        order = np.argsort(flat, kind="stable")
        self._tok_sorted, self._tok_windows = flat[order], order // w

    def _str(self, token_id: int) -> str:
        if token_id not in self._strs:
            self._strs[token_id] = self.tokenizer.id_to_str(int(token_id))
        return self._strs[token_id]

    def _windows_with_tokens(self, token_ids: np.ndarray) -> np.ndarray:
        lo = np.searchsorted(self._tok_sorted, token_ids, side="left")
        hi = np.searchsorted(self._tok_sorted, token_ids, side="right")
        parts = [self._tok_windows[a:b] for a, b in zip(lo, hi)]
        return np.unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)

    def _example(self, latent_rows: slice, window: int, kind: str, quantile: int | None) -> Example:
        sp, w = self.sp, self.cfg.window
        ids = self.window_tokens[window]
        acts = np.zeros(w, dtype=np.float32)
        lo = np.searchsorted(sp.window[latent_rows], window, side="left")
        hi = np.searchsorted(sp.window[latent_rows], window, side="right")
        if hi > lo:
            base = latent_rows.start
            first = (window % sp.windows_per_ctx) * w + self.store.skip
            acts[sp.pos[base + lo : base + hi] - first] = sp.value[base + lo : base + hi]
        ctx, part = divmod(window, sp.windows_per_ctx)
        return Example(tokens=[self._str(t) for t in ids], acts=[round(float(a), 4) for a in acts], kind=kind,
                       quantile=quantile, source=f"{ctx}:{part}")

    def latent(self, latent: int) -> LatentExamples | None:
        """Examples of one latent, or None if it has fewer activating windows than ``min_activating``."""
        cfg, sp = self.cfg, self.sp
        rows = sp.rows(latent)
        win, val = sp.window[rows], sp.value[rows]
        if win.size == 0:
            return None
        uniq, first = np.unique(win, return_index=True)
        max_per_window = np.maximum.reduceat(val, first)
        if uniq.size < cfg.min_activating:
            return None
        rng = np.random.default_rng(cfg.seed * 1_000_003 + latent)
        ranked = uniq[np.argsort(-max_per_window, kind="stable")]
        deciles = np.array_split(ranked, cfg.n_quantiles)
        wanted = [cfg.train[0], cfg.val[0], cfg.test[0]]
        share = min(1.0, uniq.size / sum(wanted))
        act_splits: list[list[tuple[int, int]]] = [[], [], []]
        for q, members in enumerate(deciles):
            members = rng.permutation(members)
            cursor = 0
            for s, n in enumerate(wanted):
                take = int(round(n * share / cfg.n_quantiles))
                act_splits[s].extend((int(m), q) for m in members[cursor : cursor + take])
                cursor += take
        active_ids = self.window_tokens[uniq][self._active_mask(rows, uniq)]
        tokens, freq = np.unique(active_ids, return_counts=True)
        top = tokens[np.argsort(-freq, kind="stable")][: cfg.n_hard_tokens]
        hard_pool = np.setdiff1d(self._windows_with_tokens(top), uniq)
        rand_pool = np.setdiff1d(rng.choice(sp.n_windows, size=min(sp.n_windows, 4 * (uniq.size + 200)), replace=False), uniq)
        hard_pool, rand_pool = rng.permutation(hard_pool), rng.permutation(np.setdiff1d(rand_pool, hard_pool))
        # negatives are dealt test first, then val, then train: when a dense latent leaves few silent
        # windows, the held-out scores keep theirs and the explainer gets fewer
        negatives: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        h_cur = r_cur = 0
        for s in (2, 1, 0):
            sizes = (cfg.train, cfg.val, cfg.test)[s]
            hard = hard_pool[h_cur : h_cur + sizes[2]]
            rand = rand_pool[r_cur : r_cur + sizes[1]]
            h_cur, r_cur = h_cur + len(hard), r_cur + len(rand)
            negatives[s] = (rand, hard)
        splits = [ExampleSplit(
            activating=[self._example(rows, w, "activating", q) for w, q in act_splits[s]],
            random=[self._example(rows, int(w), "random", None) for w in negatives[s][0]],
            hard_negative=[self._example(rows, int(w), "hard_negative", None) for w in negatives[s][1]],
        ) for s in range(3)]
        freq_sorted = np.argsort(-freq, kind="stable")[:10]
        return LatentExamples(
            latent=latent, max_act=float(max_per_window.max()),
            density=float(rows.stop - rows.start) / max(1, self.store.manifest.n_usable_tokens),
            n_activating_windows=int(uniq.size),
            top_tokens=[(self._str(int(tokens[i])), int(freq[i])) for i in freq_sorted],
            train=splits[0], val=splits[1], test=splits[2],
        )

    def _active_mask(self, rows: slice, windows: np.ndarray) -> np.ndarray:
        """[len(windows), window] booleans: where the latent is active inside each of its windows."""
        sp, w = self.sp, self.cfg.window
        mask = np.zeros((len(windows), w), dtype=bool)
        idx = np.searchsorted(windows, sp.window[rows])
        offset = sp.pos[rows] - ((sp.window[rows] % sp.windows_per_ctx) * w + self.store.skip)
        mask[idx, offset] = True
        return mask


def sample_latents(sae: SAE, store: ActivationStore, tokenizer: Tokenizer, latents: list[int] | None = None, *,
                   n: int = 50, cfg: SampleConfig | None = None, sae_path: str = "", order: str = "frequency",
                   sparse: SparseActs | None = None) -> LatentSet:
    """Examples for ``latents`` (or the ``n`` selected by ``select_latents``) as one LatentSet."""
    cfg = cfg or SampleConfig()
    sp = sparse or sparse_activations(sae, store, cfg.window)
    n_tokens = store.manifest.n_contexts * sp.windows_per_ctx * cfg.window
    if latents is None:
        latents = select_latents(sp, sae.cfg.d_sae, n_tokens, n, cfg, order)
    sampler = ExampleSampler(store, sp, tokenizer, cfg)
    out = [ex for ex in (sampler.latent(l) for l in latents) if ex is not None]
    dead = float((np.diff(sp.starts) == 0).mean())
    return LatentSet(sae_path=sae_path, model=store.manifest.model, hook=store.manifest.hook, window=cfg.window,
                     dead_fraction=dead, latents=out)
