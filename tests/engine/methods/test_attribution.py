"""Attribution patching equals an explicit linearisation (mx.jvp per patch) and finite differences."""

from __future__ import annotations

import numpy as np
import pytest

from engine.methods import activation_patching, attribution_patching
from tests.engine.methods.reference import linearised_patching


@pytest.mark.parametrize("hook,per_position", [("resid_pre", None), ("attn_out", None), ("mlp_out", None),
                                               ("z", None), ("z", True)])
@pytest.mark.parametrize("direction", ["denoise", "noise"])
def test_equals_jvp_linearisation(tiny, tiny_pairs, hook, per_position, direction):
    clean, corrupted, correct, wrong = tiny_pairs
    fast = attribution_patching(tiny, clean, corrupted, correct, wrong, hook=hook, direction=direction, per_position=per_position)
    ref = linearised_patching(tiny, clean, corrupted, correct, wrong, hook=hook, direction=direction, per_position=per_position)
    np.testing.assert_allclose(fast.grid(), ref, atol=1e-4)
    assert fast.method == "attribution_patching"


def test_agrees_with_finite_differences(tiny, tiny_pairs):
    clean, corrupted, correct, wrong = tiny_pairs
    fast = attribution_patching(tiny, clean, corrupted, correct, wrong, hook="attn_out")
    fd = linearised_patching(tiny, clean, corrupted, correct, wrong, hook="attn_out", finite_difference=1e-2)
    np.testing.assert_allclose(fast.grid(), fd, atol=2e-3)


def test_exact_where_the_metric_is_linear_in_the_patch(tiny, tiny_pairs):
    """Patching the final residual changes logit_diff only through the final norm; at the last layer's
    MLP output the estimate and the real patch agree to first order in a small patch."""
    clean, corrupted, correct, wrong = tiny_pairs
    est = attribution_patching(tiny, clean, corrupted, correct, wrong, hook="resid_pre", layers=[0], positions=[0])
    act = activation_patching(tiny, clean, corrupted, correct, wrong, hook="resid_pre", layers=[0], positions=[0])
    np.testing.assert_allclose(est.grid(), act.grid(), atol=1e-6)  # identical tokens: both exactly 0


@pytest.mark.embedded
def test_embedded_correlates_with_activation_patching(embedded, eiffel):
    attr = attribution_patching(embedded, *eiffel)
    act = activation_patching(embedded, *eiffel)
    r = float(np.corrcoef(attr.grid().ravel(), act.grid().ravel())[0, 1])
    print(f"Pearson r (resid_pre, 30x9): {r:.3f}")
    assert attr.grid().shape == (30, 9) and r > 0.3


@pytest.mark.embedded
def test_embedded_cells_equal_jvp(embedded, eiffel):
    """A few cells of the embedded grid against an explicit jvp along (clean - corrupted) at that cell."""
    import mlx.core as mx

    from engine import metrics
    from engine.hookset import HookSet

    clean, corrupted, correct, wrong = eiffel
    attr = attribution_patching(embedded, clean, corrupted, correct, wrong, layers=[2, 17], positions=[2, 8])
    c = float(metrics.logit_diff(embedded.forward(clean, logit_positions=[-1]), correct, wrong).item())
    b = float(metrics.logit_diff(embedded.forward(corrupted, logit_positions=[-1]), correct, wrong).item())
    for i, layer in enumerate([2, 17]):
        name = f"blocks.{layer}.hook_resid_pre"
        _, src = embedded.run_with_cache(clean, names=[name])
        _, base = embedded.run_with_cache(corrupted, names=[name])
        for j, pos in enumerate([2, 8]):
            diff = np.zeros(base[name].shape, dtype=np.float32)
            diff[:, pos] = np.asarray(src[name] - base[name])[:, pos]

            def f(eps, name=name):
                hs = HookSet([(name, lambda act, _n: act + eps)])
                return metrics.logit_diff(embedded.adapter.forward(corrupted, hs, logit_positions=[-1]), correct, wrong)

            _, (d,) = mx.jvp(f, [mx.zeros(diff.shape)], [mx.array(diff)])
            assert abs(attr.grid()[i, j] - float(d.item()) / (c - b)) < 1e-4


def test_compiled_gradient_follows_replaced_weights(tiny_pairs):
    """The compiled logit_diff gradient holds weights as constants: replacing them must recompile."""
    from mlx.utils import tree_flatten, tree_unflatten

    from tests.engine.tiny import tiny_model

    clean, corrupted, correct, wrong = tiny_pairs
    m, other = tiny_model(0), tiny_model(2)
    attribution_patching(m, clean, corrupted, correct, wrong)  # compiles with seed-0 weights
    m.model.update(tree_unflatten(tree_flatten(other.model.parameters())))
    after = attribution_patching(m, clean, corrupted, correct, wrong)
    np.testing.assert_allclose(after.grid(), attribution_patching(other, clean, corrupted, correct, wrong).grid(), atol=1e-5)


def test_compiled_and_plain_gradients_agree(tiny, tiny_pairs):
    """logit_diff takes the compiled path; the same metric as a function takes the plain one (full unembed)."""
    import mlx.core as mx

    clean, corrupted, correct, wrong = tiny_pairs

    def logit_diff_fn(logits, c, w):
        rows = mx.arange(logits.shape[0])
        return logits[rows, c] - logits[rows, w]

    for hook in ("z", "resid_pre"):
        fast = attribution_patching(tiny, clean, corrupted, correct, wrong, hook=hook)
        plain = attribution_patching(tiny, clean, corrupted, correct, wrong, hook=hook, metric=logit_diff_fn)
        np.testing.assert_allclose(fast.grid(), plain.grid(), atol=1e-5)
