"""A small tokenizer facade over `tokenizers` (fast, no transformers import) or transformers as a fallback.

``encode`` gives exactly what Hugging Face's ``tokenizer(text)`` gives (for the embedded model: no BOS).
The BOS id is read from the model's own files (``bos_token_id``) so that ``HookedModel.to_tokens(...,
prepend_bos=True)`` can match TransformerLens, which prepends BOS by default.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

from engine.errors import TokenizationError


class Tokenizer(Protocol):
    """What the engine needs of a tokenizer. ``bos_token_id`` (int or None) is optional: a tokenizer
    without the attribute is treated as having no BOS."""

    def encode(self, text: str) -> list[int]: ...
    def decode(self, ids: list[int]) -> str: ...
    def id_to_str(self, token_id: int) -> str: ...
    @property
    def vocab_size(self) -> int: ...


class FastTokenizer:
    """Wraps a `tokenizers.Tokenizer`; encodes prompts exactly as HF's `tokenizer(text)` would."""

    def __init__(self, path: Path, bos_token_id: int | None = None) -> None:
        from tokenizers import Tokenizer as HFTokenizer

        self._tok = HFTokenizer.from_file(str(path))
        self.bos_token_id = bos_token_id

    def token_to_id(self, token: str) -> int | None:
        return self._tok.token_to_id(token)

    def encode(self, text: str) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=True).ids)

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=False)

    def id_to_str(self, token_id: int) -> str:
        return self._tok.decode([int(token_id)], skip_special_tokens=False)

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)


class TransformersTokenizer:
    """Fallback for model directories that ship no tokenizer.json."""

    def __init__(self, directory: Path) -> None:
        from transformers import AutoTokenizer

        self._tok = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
        self.bos_token_id: int | None = self._tok.bos_token_id

    def encode(self, text: str) -> list[int]:
        return list(self._tok(text)["input_ids"])

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode(list(ids))

    def id_to_str(self, token_id: int) -> str:
        return self._tok.decode([int(token_id)])

    @property
    def vocab_size(self) -> int:
        return len(self._tok)


def load_tokenizer(directory: Path) -> Tokenizer:
    if (directory / "tokenizer.json").is_file():
        tok = FastTokenizer(directory / "tokenizer.json")
        tok.bos_token_id = bos_token_id_from_files(directory, tok.token_to_id)
        return tok
    try:
        return TransformersTokenizer(directory)
    except (OSError, ValueError) as exc:
        raise TokenizationError(
            f"no usable tokenizer in {directory}: add tokenizer.json (or the files AutoTokenizer needs)"
        ) from exc


def bos_token_id_from_files(directory: Path, token_to_id) -> int | None:
    """The BOS id a model directory declares, looked up where Hugging Face would find it.

    In order: ``engine_tokenizer.json`` (written when converting a GGUF: its tokenizer.ggml.bos_token_id),
    ``tokenizer_config.json`` / ``special_tokens_map.json`` (``bos_token``, what AutoTokenizer reports;
    an explicit null means none), then ``config.json``'s ``bos_token_id``. None when nothing declares one.
    """
    converted = _read_json(directory / "engine_tokenizer.json")
    if "bos_token_id" in converted:
        found = converted["bos_token_id"]
        return int(found) if found is not None and int(found) >= 0 else None
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        data = _read_json(directory / name)
        if "bos_token" in data:
            token = data["bos_token"]
            if isinstance(token, dict):
                token = token.get("content")
            if token is None:
                return None
            found = token_to_id(str(token))
            if found is None:
                raise TokenizationError(f"{directory / name} names BOS {token!r}, which is not in the vocabulary")
            return int(found)
    found = _read_json(directory / "config.json").get("bos_token_id")
    return int(found) if isinstance(found, int) and found >= 0 else None


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    return data if isinstance(data, dict) else {}


def bos_id(tokenizer: Tokenizer) -> int:
    """The tokenizer's BOS id, or a TokenizationError saying there is none."""
    found = getattr(tokenizer, "bos_token_id", None)
    if found is None:
        raise TokenizationError(
            "prepend_bos=True, but this model's tokenizer declares no BOS token (no bos_token_id in "
            "engine_tokenizer.json / tokenizer_config.json / config.json); tokenise without prepend_bos, "
            "or put the start token you want in the text"
        )
    return int(found)


def encode_with_bos(tokenizer: Tokenizer, text: str) -> list[int]:
    """``text`` with exactly TransformerLens' BOS rule: one BOS id in front, unless the tokenizer already
    adds one itself (then its own encoding); a literal BOS string in ``text`` is kept, as TL does."""
    bos = bos_id(tokenizer)
    ids = tokenizer.encode(text)
    if tokenizer.encode("")[:1] == [bos]:  # the tokenizer prepends BOS on its own (Llama-2 style)
        return ids
    return [bos, *ids]
