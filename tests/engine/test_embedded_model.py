"""The embedded SmolLM2-135M-Instruct: sanity prompts and hooked-forward parity (DESIGN.md section 3)."""

from __future__ import annotations

import mlx.core as mx
import pytest

pytestmark = pytest.mark.embedded

SANITY = [
    ("The Eiffel Tower is in the city of", [" Paris", " Rome"]),
    ("The Colosseum is in the city of", [" Rome"]),
    ("When Mary and John went to the store, John gave a drink to", [" Mary"]),
]


@pytest.mark.parametrize("prompt,expected", SANITY)
def test_sanity_prompts_top_tokens(embedded, prompt, expected):
    logits = embedded.forward(embedded.to_tokens(prompt))[0, -1]
    top = [embedded.tokenizer.id_to_str(i) for i in mx.argsort(-logits)[: len(expected)].tolist()]
    assert top == expected


def test_reference_logits_of_the_gguf(embedded):
    """Hugging Face transformers on the same GGUF gives Paris 13.686, Rome 10.829 (DESIGN.md)."""
    logits = embedded.forward(embedded.to_tokens("The Eiffel Tower is in the city of"))[0, -1]
    assert abs(logits[embedded.token_id(" Paris")].item() - 13.686) < 5e-3
    assert abs(logits[embedded.token_id(" Rome")].item() - 10.829) < 5e-3


def test_hooked_forward_equals_plain_mlx_lm(embedded):
    tokens = embedded.to_tokens(["The Eiffel Tower is in the city of", "The Colosseum is in the city of"])
    plain = embedded.model(tokens)
    assert float(mx.abs(embedded.forward(tokens) - plain).max().item()) <= 1e-4
    logits, cache = embedded.run_with_cache(tokens)
    assert float(mx.abs(logits - plain).max().item()) <= 1e-4
    assert len(cache) == len(embedded.hook_names())


def test_model_facts(embedded):
    c = embedded.cfg
    assert (c.n_layers, c.d_model, c.n_heads, c.n_kv_heads, c.d_vocab) == (30, 576, 9, 3, 49152)
    assert embedded.to_tokens("The Eiffel Tower is in the city of").shape == (1, 9)  # no BOS added
