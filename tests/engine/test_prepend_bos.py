"""prepend_bos on to_tokens / to_str_tokens: TransformerLens' BOS convention, opt-in (default = HF's ids)."""

from __future__ import annotations

import json

import pytest
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import models

from engine.errors import TokenizationError
from engine.model import from_module
from engine.tokenizer import bos_token_id_from_files, load_tokenizer
from tests.engine.tiny import TINY_CONFIG, WordTokenizer, tiny_model


class BosWordTokenizer(WordTokenizer):
    """WordTokenizer with a BOS id (w1), optionally adding it itself like Llama-2's tokenizer."""

    def __init__(self, vocab_size: int, adds_bos: bool = False) -> None:
        super().__init__(vocab_size)
        self.bos_token_id = 1
        self._adds = adds_bos

    def encode(self, text: str) -> list[int]:
        ids = super().encode(text)
        return [1, *ids] if self._adds else ids


def _with_tokenizer(tok) -> object:
    tiny = tiny_model()
    return from_module(tiny.model, tok, TINY_CONFIG, name="tiny")


def test_default_is_unchanged_and_prepend_bos_puts_one_bos_first():
    m = _with_tokenizer(BosWordTokenizer(64))
    assert m.to_tokens("w5 w6").tolist() == [[5, 6]]
    assert m.to_tokens("w5 w6", prepend_bos=True).tolist() == [[1, 5, 6]]
    assert m.to_tokens(["w5 w6", "w7 w8"], prepend_bos=True).tolist() == [[1, 5, 6], [1, 7, 8]]
    assert m.to_str_tokens("w5 w6") == ["w5", "w6"]
    assert m.to_str_tokens("w5 w6", prepend_bos=True) == ["w1", "w5", "w6"]
    # as TL: a literal BOS in the text is kept, and the empty prompt becomes [BOS]
    assert m.to_tokens("w1 w5", prepend_bos=True).tolist() == [[1, 1, 5]]
    assert m.to_tokens("", prepend_bos=True).tolist() == [[1]]


def test_prepend_bos_is_keyword_only():
    m = _with_tokenizer(BosWordTokenizer(64))
    with pytest.raises(TypeError):
        m.to_tokens("w5", True)


def test_a_tokenizer_that_adds_bos_itself_does_not_get_a_second_one():
    m = _with_tokenizer(BosWordTokenizer(64, adds_bos=True))
    assert m.to_tokens("w5 w6", prepend_bos=True).tolist() == [[1, 5, 6]]
    assert m.to_tokens("w5 w6").tolist() == [[1, 5, 6]]  # default: the tokenizer's own ids, as HF


def test_no_bos_token_is_a_clear_error():
    m = tiny_model()  # WordTokenizer has no bos_token_id
    with pytest.raises(TokenizationError, match="declares no BOS"):
        m.to_tokens("w5", prepend_bos=True)
    with pytest.raises(TokenizationError, match="declares no BOS"):
        m.to_str_tokens("w5", prepend_bos=True)


def _tokenizer_dir(tmp_path, **files):
    vocab = {"<s>": 0, "<bos>": 1, "a": 2, "b": 3}
    tok = HFTokenizer(models.WordLevel(vocab=vocab, unk_token="<s>"))
    tok.save(str(tmp_path / "tokenizer.json"))
    for name, content in files.items():
        (tmp_path / name.replace("__", ".")).write_text(json.dumps(content))
    return tmp_path


@pytest.mark.parametrize("files,expected", [
    ({"engine_tokenizer__json": {"bos_token_id": 1}}, 1),
    ({"engine_tokenizer__json": {"bos_token_id": -1}, "config__json": {"bos_token_id": 0}}, None),
    ({"tokenizer_config__json": {"bos_token": "<bos>"}, "config__json": {"bos_token_id": 0}}, 1),
    ({"tokenizer_config__json": {"bos_token": {"content": "<bos>", "special": True}}}, 1),
    ({"tokenizer_config__json": {"bos_token": None}, "config__json": {"bos_token_id": 0}}, None),
    ({"special_tokens_map__json": {"bos_token": "<bos>"}}, 1),
    ({"config__json": {"bos_token_id": 0}}, 0),
    ({}, None),
])
def test_bos_id_is_read_from_the_model_files(tmp_path, files, expected):
    directory = _tokenizer_dir(tmp_path, **files)
    assert load_tokenizer(directory).bos_token_id == expected


def test_a_bos_token_missing_from_the_vocabulary_is_an_error(tmp_path):
    directory = _tokenizer_dir(tmp_path, tokenizer_config__json={"bos_token": "<nope>"})
    with pytest.raises(TokenizationError, match="not in the vocabulary"):
        bos_token_id_from_files(directory, load_tokenizer(directory).token_to_id)


@pytest.mark.embedded
def test_embedded_model_bos_is_im_start_as_transformers_reports(embedded):
    """The GGUF declares BOS id 1 (<|im_start|>); transformers' AutoTokenizer(gguf_file=...) says the same."""
    text = "The Eiffel Tower is in the city of"
    plain = embedded.to_tokens(text)[0].tolist()
    assert embedded.to_tokens(text, prepend_bos=True)[0].tolist() == [1, *plain]
    assert embedded.to_str_tokens(text, prepend_bos=True)[0] == "<|im_start|>"
    assert embedded.to_str_tokens(text)[0] == "The"
