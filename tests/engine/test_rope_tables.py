"""engine.adapters.rope_tables: RoPE from cached tables equals the model's own RoPE module."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

from engine.adapters.rope_tables import RopeTables


@pytest.mark.parametrize("traditional", [True, False])
@pytest.mark.parametrize("base,scale", [(100000.0, 1.0), (10000.0, 0.5)])
@pytest.mark.parametrize("offset,length", [(0, 9), (5, 3), (0, 1)])
def test_tables_equal_module(traditional, base, scale, offset, length):
    rope = nn.RoPE(16, traditional=traditional, base=base, scale=scale)
    tables = RopeTables()
    x = mx.random.normal((2, 3, length, 16), key=mx.random.key(length + offset))  # [b, h, p, e]
    want = np.asarray(rope(x, offset=offset))
    got = np.asarray(tables(rope, x, offset))
    got_heads_last = np.asarray(tables(rope, x.transpose(0, 2, 1, 3), offset, heads_last=True).transpose(0, 2, 1, 3))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    np.testing.assert_allclose(got_heads_last, want, rtol=0, atol=1e-6)


def test_tables_cached_per_offset_and_length():
    rope, tables = nn.RoPE(8, traditional=True), RopeTables()
    x = mx.ones((1, 1, 4, 8))
    tables(rope, x, 0), tables(rope, x, 0), tables(rope, x, 2)
    assert len(tables._tables) == 2


class _ScaledRope(nn.RoPE):
    """Not a plain rotation (scales its output): must go through the module."""

    def __call__(self, x, offset=0):
        return 2.0 * super().__call__(x, offset=offset)


@pytest.mark.parametrize("rope", [_ScaledRope(8, traditional=True), nn.RoPE(4, traditional=False)])
def test_other_ropes_use_the_module(rope):
    """A RoPE subclass, or one rotating only part of the head (dims 4 of 8), is applied by the module itself."""
    tables = RopeTables()
    x = mx.random.normal((1, 2, 5, 8), key=mx.random.key(3))
    np.testing.assert_array_equal(np.asarray(tables(rope, x, 1)), np.asarray(rope(x, offset=1)))
    got = tables(rope, x.transpose(0, 2, 1, 3), 1, heads_last=True).transpose(0, 2, 1, 3)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(rope(x, offset=1)))
    assert not tables._tables
