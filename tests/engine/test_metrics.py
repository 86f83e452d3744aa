from __future__ import annotations

import mlx.core as mx
import numpy as np

from engine import metrics


def test_logit_diff_and_prob_per_row():
    logits = mx.array(np.random.default_rng(0).standard_normal((3, 2, 10)).astype(np.float32))
    ld = np.array(metrics.logit_diff(logits, [1, 2, 3], [4, 5, 6]))
    last = np.array(logits[:, -1])
    np.testing.assert_allclose(ld, last[[0, 1, 2], [1, 2, 3]] - last[[0, 1, 2], [4, 5, 6]], atol=1e-6)
    p = np.array(metrics.token_prob(logits, 1))
    soft = np.exp(last) / np.exp(last).sum(-1, keepdims=True)
    np.testing.assert_allclose(p, soft[:, 1], atol=1e-6)


def test_kl_is_zero_for_identical_and_positive_otherwise():
    a = mx.array(np.random.default_rng(1).standard_normal((2, 3, 7)).astype(np.float32))
    b = a + mx.array(np.random.default_rng(2).standard_normal((2, 3, 7)).astype(np.float32))
    assert float(mx.abs(metrics.kl_divergence(a, a)).max().item()) < 1e-6
    assert float(mx.min(metrics.kl_divergence(b, a)).item()) > 0
