"""Direct logit attribution and logit lens against numpy references built from cached activations."""

from __future__ import annotations

import json

import mlx.core as mx
import numpy as np
import pytest

from engine.errors import MethodError
from engine.methods import DLAResult, direct_logit_attribution, logit_lens
from tests.engine.tiny import random_tokens


def _np(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def test_dla_parts_sum_to_total_and_match_numpy(tiny):
    tokens = random_tokens(tiny, 3, 7, seed=4)
    correct, wrong = [1, 2, 3], [4, 5, 6]
    res = direct_logit_attribution(tiny, tokens, correct, wrong)
    assert abs(res.residual) < 1e-4 and abs(res.total - res.sum_of_parts) < 1e-4
    np.testing.assert_allclose(np.sum(res.heads, axis=1), res.attn, atol=1e-5)  # heads add up to their layer
    # numpy reference: contribution = part . (w_norm * (W_U[:, c] - W_U[:, w])) / rms(final)
    logits, cache = tiny.run_with_cache(tokens)
    w_u = _np(tiny.adapter.unembed_matrix())  # [d, v]
    w_n = _np(tiny.adapter.final_norm_weight())
    final = _np(cache[f"blocks.{tiny.cfg.n_layers - 1}.hook_resid_post"])[:, -1]
    scale = np.sqrt((final**2).mean(-1, keepdims=True) + tiny.cfg.rms_norm_eps)
    direction = w_n * (w_u[:, correct].T - w_u[:, wrong].T) / scale  # [n, d]
    mlp1 = (_np(cache["blocks.1.hook_mlp_out"])[:, -1] * direction).sum(-1).mean()
    embed = (_np(cache["hook_embed"])[:, -1] * direction).sum(-1).mean()
    assert abs(res.mlp[1] - mlp1) < 1e-5 and abs(res.embed - embed) < 1e-5
    w_o = _np(tiny.model.model.layers[2].self_attn.o_proj.weight)  # [d, h*e]
    z = _np(cache["blocks.2.attn.hook_z"])[:, -1]  # [n, h, e]
    e = tiny.cfg.d_head
    head3 = np.einsum("ne,de,nd->n", z[:, 3], w_o[:, 3 * e : 4 * e], direction).mean()
    assert abs(res.heads[2][3] - head3) < 1e-5
    total = (_np(logits)[np.arange(3), -1, correct] - _np(logits)[np.arange(3), -1, wrong]).mean()
    assert abs(res.total - total) < 1e-5


def test_dla_prompts_of_different_lengths_and_json(tiny):
    rows = [[1, 2, 3, 4], [5, 6, 7, 8, 9, 10]]
    res = direct_logit_attribution(tiny, rows, 11, 12)
    assert res.n_pairs == 2 and abs(res.residual) < 1e-4
    assert DLAResult.model_validate(json.loads(res.to_json())) == res
    labels = [label for label, _ in res.top(50)]
    assert "EMBED" in labels and any(label.startswith("MLP") for label in labels)
    assert "DLA" in res.summary()


def test_logit_lens_matches_model_and_manual_norm(tiny):
    tokens = random_tokens(tiny, 2, 5, seed=5)
    res = logit_lens(tiny, tokens, [1, 2], [3, 4])
    grid = res.grid()
    assert grid.shape == (tiny.cfg.n_layers + 1, 5) and res.labels[0][0] == "embed"
    logits = _np(tiny.forward(tokens))
    model_diff = (logits[0, :, 1] - logits[0, :, 3] + logits[1, :, 2] - logits[1, :, 4]) / 2
    np.testing.assert_allclose(grid[-1], model_diff, atol=1e-4)  # the last row is the model's own output
    _, cache = tiny.run_with_cache(tokens, names=["blocks.0.hook_resid_post"])
    x = _np(cache["blocks.0.hook_resid_post"])  # [2, 5, d]
    normed = x / np.sqrt((x**2).mean(-1, keepdims=True) + tiny.cfg.rms_norm_eps) * _np(tiny.adapter.final_norm_weight())
    w_u = _np(tiny.adapter.unembed_matrix())
    manual = ((normed[0] @ w_u)[:, 1] - (normed[0] @ w_u)[:, 3] + (normed[1] @ w_u)[:, 2] - (normed[1] @ w_u)[:, 4]) / 2
    np.testing.assert_allclose(grid[1], manual, atol=1e-4)
    assert res.top_tokens[-1][0] == f"w{int(np.argmax(logits[0, -1]))}"


def test_logit_lens_without_answers_uses_the_models_top_token(tiny):
    tokens = random_tokens(tiny, 1, 4, seed=6)
    res = logit_lens(tiny, tokens, top_tokens="all")
    assert res.metric == "logprob_correct" and len(res.top_tokens[0]) == 4
    logits = _np(tiny.forward(tokens))[0, -1]
    top = int(np.argmax(logits))
    logprob = logits[top] - np.log(np.exp(logits - logits.max()).sum()) - logits.max()
    assert abs(res.grid()[-1, -1] - logprob) < 1e-4
    with pytest.raises(MethodError, match="one \\(non-zero\\) token length"):
        logit_lens(tiny, [[1, 2], [3, 4, 5]])


@pytest.mark.embedded
def test_embedded_dla_sums_to_total(embedded, eiffel):
    clean, _, correct, wrong = eiffel
    res = direct_logit_attribution(embedded, clean, correct, wrong)
    assert abs(res.total - 2.857) < 5e-3  # Paris 13.686 - Rome 10.829
    assert abs(res.residual) < 1e-3
    lens = logit_lens(embedded, clean, correct, wrong)
    assert lens.top_tokens[-1][-1] == " Paris" and abs(lens.grid()[-1, -1] - res.total) < 1e-3
