"""HookedModel: the engine's entry point — tokenise, forward, cache, intervene."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import mlx.core as mx
import mlx.nn as nn

from engine.activation_cache import ActivationCache
from engine.adapters import adapter_for
from engine.applying import compile_interventions
from engine.config import ModelConfig
from engine.errors import TokenizationError
from engine.hook_names import all_hook_names, opt_in_hook_names, validate_hook
from engine.hookset import EMPTY, HookFn, HookSet
from engine.interventions import Intervention
from engine.tokenizer import Tokenizer, encode_with_bos

NamesFilter = str | Iterable[str] | Callable[[str], bool] | None


class HookedModel:
    """An mlx-lm model with TransformerLens hook points.

    ``forward`` with no hooks equals the plain mlx-lm forward; hooks cost nothing where unused.
    Tokens: ``to_tokens(text)`` gives Hugging Face's ids (no BOS for the embedded model, as transformers
    and nnsight run it); ``to_tokens(text, prepend_bos=True)`` gives TransformerLens' default (BOS first).
    """

    def __init__(self, model: nn.Module, tokenizer: Tokenizer, config: dict, name: str) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.cfg = ModelConfig.from_mlx_lm(name, config)
        self.adapter = adapter_for(self.cfg.architecture)(model, self.cfg)
        self._hook_names = all_hook_names(self.cfg.n_layers)

    # ---- tokens -------------------------------------------------------------------------
    # Convention: by default the ids are exactly what Hugging Face's ``tokenizer(text)`` gives (as
    # transformers and nnsight run a prompt); for the embedded SmolLM2 that means no BOS.
    # TransformerLens prepends BOS by default: pass ``prepend_bos=True`` to tokenise as TL's
    # ``to_tokens(text)`` does (the tokenizer's BOS id in front, once). Results differ with and without it.
    def to_tokens(self, text: str | Sequence[str], *, prepend_bos: bool = False) -> mx.array:
        """[1, pos] for a string, [batch, pos] for a list of texts of equal token length.

        ``prepend_bos``: put the tokenizer's BOS id first (TransformerLens' default; not added twice when
        the tokenizer adds it itself); a TokenizationError when the tokenizer declares no BOS.
        """
        texts = [text] if isinstance(text, str) else list(text)
        rows = [self._encode(t, prepend_bos) for t in texts]
        lengths = {len(r) for r in rows}
        if len(lengths) != 1:
            detail = ", ".join(f"{t!r}: {len(r)}" for t, r in zip(texts, rows))
            raise TokenizationError(
                f"prompts have different token lengths ({detail}); batch prompts of equal length, "
                "or give an alignment (see engine.alignment)"
            )
        if 0 in lengths:
            raise TokenizationError("an empty prompt has no tokens to run")
        return mx.array(rows, dtype=mx.int32)

    def to_str_tokens(self, text: str, *, prepend_bos: bool = False) -> list[str]:
        """The tokens of ``text`` as strings, with the same ``prepend_bos`` convention as ``to_tokens``."""
        return [self.tokenizer.id_to_str(i) for i in self._encode(text, prepend_bos)]

    def _encode(self, text: str, prepend_bos: bool) -> list[int]:
        return encode_with_bos(self.tokenizer, text) if prepend_bos else self.tokenizer.encode(text)

    def token_id(self, text: str) -> int:
        """The single token id of ``text`` (e.g. ' Paris'); raises if it is not exactly one token."""
        ids = self.tokenizer.encode(text)
        if len(ids) != 1:
            pieces = [self.tokenizer.id_to_str(i) for i in ids]
            raise TokenizationError(
                f"answer {text!r} is {len(ids)} tokens {pieces}, not one; choose an answer that is a single "
                "token (usually with its leading space, e.g. ' Paris')"
            )
        return ids[0]

    # ---- hooks --------------------------------------------------------------------------
    def hook_names(self) -> list[str]:
        return list(self._hook_names)

    def _select(self, names: NamesFilter) -> list[str]:
        if names is None:
            return list(self._hook_names)
        if callable(names):  # a filter sees the opt-in hooks too (attn.hook_result, hook_mlp_in)
            return [n for n in [*self._hook_names, *opt_in_hook_names(self.cfg.n_layers)] if names(n)]
        selected = [names] if isinstance(names, str) else list(names)
        for name in selected:
            validate_hook(name, self.cfg.n_layers)
        return selected

    # ---- forwards -----------------------------------------------------------------------
    def forward(self, tokens: mx.array, *, logit_positions: list[int] | None = None) -> mx.array:
        """Logits [batch, pos, vocab] (or only ``logit_positions``)."""
        return self.adapter.forward(_as_tokens(tokens), EMPTY, logit_positions=logit_positions)

    __call__ = forward

    def run_with_hooks(
        self,
        tokens: mx.array,
        interventions: Sequence[Intervention] = (),
        *,
        source: Mapping[str, mx.array] | None = None,
        reference: Mapping[str, mx.array] | None = None,
        fwd_hooks: Sequence[tuple[str, HookFn]] = (),
        logit_positions: list[int] | None = None,
    ) -> mx.array:
        """Logits with declarative interventions and/or raw hook functions ``fn(act, name) -> act | None``."""
        pairs = compile_interventions(list(interventions), self.cfg.n_layers, source, reference)
        for name, _ in fwd_hooks:
            validate_hook(name, self.cfg.n_layers)
        hs = HookSet([*pairs, *fwd_hooks])
        return self.adapter.forward(_as_tokens(tokens), hs, logit_positions=logit_positions)

    def run_with_cache(
        self,
        tokens: mx.array,
        names: NamesFilter = None,
        *,
        interventions: Sequence[Intervention] = (),
        source: Mapping[str, mx.array] | None = None,
        reference: Mapping[str, mx.array] | None = None,
        logit_positions: list[int] | None = None,
    ) -> tuple[mx.array, ActivationCache]:
        """Logits and the requested activations only: every hook of ``hook_names()`` when ``names`` is None
        (TransformerLens' default set); the opt-in attn.hook_result / hook_mlp_in only when named or
        selected by a callable filter (see engine.hook_names)."""
        store: dict[str, mx.array] = {}

        def save(act: mx.array, name: str) -> None:
            store[name] = act

        pairs = compile_interventions(list(interventions), self.cfg.n_layers, source, reference)
        hs = HookSet([*pairs, *((n, save) for n in self._select(names))])
        logits = self.adapter.forward(_as_tokens(tokens), hs, logit_positions=logit_positions)
        mx.eval(logits, *store.values())
        return logits, ActivationCache(store)

    def __repr__(self) -> str:
        c = self.cfg
        return f"HookedModel({c.name}: {c.n_layers} layers, d_model {c.d_model}, {c.n_heads} heads / {c.n_kv_heads} kv)"


def _as_tokens(tokens) -> mx.array:
    arr = tokens if isinstance(tokens, mx.array) else mx.array(tokens, dtype=mx.int32)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise TokenizationError(f"tokens must be [batch, pos] (or [pos]); got shape {tuple(arr.shape)}")
    return arr


def load_model(name: str = "smollm2-135m") -> HookedModel:
    """Load a model by reference (embedded alias, mlx-lm directory, HF snapshot, llama GGUF); no downloads."""
    from engine.loading.resolve import load_native

    model, tokenizer, config, resolved = load_native(name)
    model.eval()
    return HookedModel(model, tokenizer, config, resolved.name)


def from_module(model: nn.Module, tokenizer: Tokenizer, config: dict, name: str = "custom") -> HookedModel:
    """Wrap an already-built mlx-lm module (tests build tiny random models this way)."""
    return HookedModel(model, tokenizer, config, name)
