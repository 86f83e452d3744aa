"""Cache one hook's activations over a token budget of the generated corpus, in safetensors shards.

Why only the asked-for hook and budget: at 2 cores a mid-layer forward runs ~10^3 tokens/s, so the
budget is the dominant cost of the whole SAE pipeline. MLX is lazy: evaluating only the captured
activation computes only the layers up to the hook, not the rest of the model.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import mlx.core as mx
import numpy as np

from engine.features.corpus import documents
from engine.features.schemas import CacheManifest, ShardInfo
from engine.model import HookedModel

MANIFEST = "manifest.json"


class CacheError(ValueError):
    """A cache directory that is missing, incomplete or inconsistent with what was asked."""


def pack_tokens(model: HookedModel, texts: Iterable[str], n_contexts: int, ctx_len: int) -> np.ndarray:
    """Tokenise documents (each followed by a blank line) into one stream cut into [n_contexts, ctx_len]."""
    need = n_contexts * ctx_len
    stream: list[int] = []
    for text in texts:
        stream.extend(model.tokenizer.encode(text + "\n\n"))
        if len(stream) >= need:
            break
    if len(stream) < need:
        raise CacheError(f"the corpus gave {len(stream)} tokens, fewer than the {need} asked for; give more texts")
    return np.asarray(stream[:need], dtype=np.int32).reshape(n_contexts, ctx_len)


def capture(model: HookedModel, tokens: mx.array, hook: str) -> mx.array:
    """The activation at ``hook`` [batch, pos, d] (evaluated), computing nothing after it."""
    store: dict[str, mx.array] = {}

    def save(act: mx.array, name: str) -> None:
        store[name] = act

    model.run_with_hooks(tokens, fwd_hooks=[(hook, save)])  # logits stay unevaluated (lazy)
    act = store[hook]
    mx.eval(act)
    return act


def cache_activations(
    model: HookedModel,
    hook: str,
    out_dir: str | Path,
    *,
    n_tokens: int,
    ctx_len: int = 65,
    batch_size: int = 16,
    shard_contexts: int = 512,
    texts: Iterable[str] | None = None,
    seed: int = 0,
    dtype: str = "float32",
    progress: bool = True,
) -> CacheManifest:
    """Run ``n_tokens`` corpus tokens (``n_tokens // ctx_len`` contexts) and write shards + manifest.

    Position 0 of each context (an attention sink with a norm ~100x the rest) is kept on disk but
    marked ``skip_positions=1`` so training and example sampling leave it out.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n_contexts = max(1, n_tokens // ctx_len)
    source = texts if texts is not None else documents(seed)
    tokens = pack_tokens(model, source, n_contexts, ctx_len)
    mx.save_safetensors(str(out / "tokens.safetensors"), {"tokens": mx.array(tokens)})
    np_dtype = np.float16 if dtype == "float16" else np.float32
    shards: list[ShardInfo] = []
    started = time.perf_counter()
    d_in = 0
    with _progress(progress, n_contexts * ctx_len, f"caching {hook}") as advance:
        for start in range(0, n_contexts, shard_contexts):
            stop = min(n_contexts, start + shard_contexts)
            parts = []
            for b in range(start, stop, batch_size):
                rows = tokens[b : min(stop, b + batch_size)]
                act = capture(model, mx.array(rows), hook)
                parts.append(np.array(act).astype(np_dtype))
                advance(rows.size)
            block = np.concatenate(parts, axis=0)
            d_in = block.shape[-1]
            name = f"shard_{len(shards):04d}.safetensors"
            mx.save_safetensors(str(out / name), {"acts": mx.array(block)})
            shards.append(ShardInfo(file=name, start=start, n_contexts=stop - start))
    manifest = CacheManifest(
        model=model.cfg.name, hook=hook, d_in=d_in, ctx_len=ctx_len, n_contexts=n_contexts, dtype=dtype,
        corpus="generated" if texts is None else "given", corpus_seed=seed, shards=shards,
        seconds=time.perf_counter() - started,
    )
    (out / MANIFEST).write_text(manifest.model_dump_json(indent=2))
    return manifest


class ActivationStore:
    """Read access to a cache directory: the token contexts and the activations, skipping position 0."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)
        path = self.dir / MANIFEST
        if not path.is_file():
            raise CacheError(f"{self.dir}: no {MANIFEST}; create the cache with engine.features.caching.cache_activations")
        self.manifest = CacheManifest.model_validate(json.loads(path.read_text()))
        for shard in self.manifest.shards:
            if not (self.dir / shard.file).is_file():
                raise CacheError(f"{self.dir}: shard {shard.file} is missing; the cache is incomplete, rebuild it")
        self.tokens = np.array(mx.load(str(self.dir / self.manifest.tokens_file))["tokens"])

    @property
    def skip(self) -> int:
        return self.manifest.skip_positions

    def iter_shards(self) -> Iterator[tuple[int, np.ndarray]]:
        """(first context index, activations [n, ctx_len, d_in] float32) per shard, in order."""
        for shard in self.manifest.shards:
            acts = mx.load(str(self.dir / shard.file))["acts"]
            yield shard.start, np.array(acts.astype(mx.float32))

    def flat(self, contexts: np.ndarray | None = None) -> np.ndarray:
        """Activations [n_tokens, d_in] of the chosen contexts (all by default), positions >= skip only."""
        chosen = np.arange(self.manifest.n_contexts) if contexts is None else np.asarray(contexts)
        parts = []
        for start, block in self.iter_shards():
            local = chosen[(chosen >= start) & (chosen < start + block.shape[0])] - start
            if local.size:
                parts.append(block[local, self.skip :].reshape(-1, block.shape[-1]))
        if not parts:
            raise CacheError(f"{self.dir}: no contexts selected")
        return np.concatenate(parts, axis=0)


class _progress:
    """A rich progress bar on stderr (or nothing), used as ``with _progress(...) as advance``."""

    def __init__(self, enabled: bool, total: int, label: str) -> None:
        self.enabled, self.total, self.label = enabled, total, label
        self._bar = None

    def __enter__(self):
        if not self.enabled:
            return lambda n: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TextColumn("tokens"), TimeRemainingColumn(), transient=False)
        self._bar.start()
        task = self._bar.add_task(self.label, total=self.total)
        return lambda n: self._bar.advance(task, n)

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()
