"""A small tokenizer facade over `tokenizers` (fast, no transformers import) or transformers as a fallback."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from engine.errors import TokenizationError


class Tokenizer(Protocol):
    def encode(self, text: str) -> list[int]: ...
    def decode(self, ids: list[int]) -> str: ...
    def id_to_str(self, token_id: int) -> str: ...
    @property
    def vocab_size(self) -> int: ...


class FastTokenizer:
    """Wraps a `tokenizers.Tokenizer`; encodes prompts exactly as HF's `tokenizer(text)` would."""

    def __init__(self, path: Path) -> None:
        from tokenizers import Tokenizer as HFTokenizer

        self._tok = HFTokenizer.from_file(str(path))

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
        return FastTokenizer(directory / "tokenizer.json")
    try:
        return TransformersTokenizer(directory)
    except (OSError, ValueError) as exc:
        raise TokenizationError(
            f"no usable tokenizer in {directory}: add tokenizer.json (or the files AutoTokenizer needs)"
        ) from exc
