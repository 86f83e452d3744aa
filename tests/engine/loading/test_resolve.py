"""Model references resolve locally or fail with a message that says what was tried."""

from __future__ import annotations

import json

import pytest

from engine.errors import ModelNotFoundError
from engine.loading.resolve import resolve_model


def test_unknown_name_lists_what_was_tried(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ModelNotFoundError) as err:
        resolve_model("meta-llama/Llama-9-405B")
    msg = str(err.value)
    assert "not found on this machine" in msg and "no downloads" in msg and "Hugging Face cache" in msg


def test_directory_without_config_is_explained(tmp_path):
    with pytest.raises(ModelNotFoundError, match="has no config.json"):
        resolve_model(str(tmp_path))


def test_local_hf_cache_snapshot_resolves(tmp_path, monkeypatch):
    snap = tmp_path / "hub" / "models--org--tiny" / "snapshots" / "abc"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text(json.dumps({"model_type": "llama"}))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert resolve_model("org/tiny").directory == snap


def test_mlx_lm_directory_loads(tmp_path):
    """A saved mlx-lm directory (config.json + safetensors + tokenizer.json) loads through load_model."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from tokenizers import Tokenizer, models, pre_tokenizers

    import engine
    from tests.engine.tiny import TINY_CONFIG, tiny_model

    tiny = tiny_model(4)
    mx.save_safetensors(str(tmp_path / "model.safetensors"), dict(tree_flatten(tiny.model.parameters())))
    (tmp_path / "config.json").write_text(json.dumps(TINY_CONFIG))
    vocab = {f"w{i}": i for i in range(TINY_CONFIG["vocab_size"])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.save(str(tmp_path / "tokenizer.json"))
    loaded = engine.load_model(str(tmp_path))
    tokens = loaded.to_tokens("w1 w2 w3")
    assert tokens.tolist() == [[1, 2, 3]]
    assert float(mx.abs(loaded.forward(tokens) - tiny.forward(tokens)).max().item()) < 1e-5
