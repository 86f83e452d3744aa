"""Per-layer weights laid out for the CPU's BLAS: fused and pre-transposed.

mlx-lm's Linear computes x @ W.T with W [out, in]. On the CPU that is an "NT" sgemm, and a block
makes seven of them. Measured here (OpenBLAS, float32, SmolLM2-135M): one "NN" sgemm against a
contiguous [in, out] matrix that fuses q|k|v (and gate|up) costs ~40% less for a 9-token forward
(weight-bandwidth bound: fewer, larger calls, no transposed packing) and ~20% less for a 270-row
sweep batch. The copies double the memory of the layer weights, so packing is skipped above
``PACK_LIMIT_BYTES``; quantised layers are never packed (their modules are used as they are).

A packed layer remembers the module weights it was built from and is rebuilt when any of them is
replaced (``module.update`` / ``load_weights``), so it can never go stale.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn

PACK_LIMIT_BYTES = 1024**3  # packed copies of at most this many bytes of layer weights (they double it;
# experiments run under a memory cap, 4 GiB by default)


@dataclass
class PackedLayer:
    sources: tuple  # the module Linear weights (and biases) it was built from, compared by identity
    qkv: mx.array  # [d, (h + 2g) e]
    o: mx.array  # [h e, d]
    gate_up: mx.array  # [d, 2 m]
    down: mx.array  # [m, d]
    qkv_bias: mx.array | None
    o_bias: mx.array | None
    gate_up_bias: mx.array | None
    down_bias: mx.array | None

    def matches(self, sources: tuple) -> bool:
        return len(sources) == len(self.sources) and all(a is b for a, b in zip(sources, self.sources))


def _linears(block: nn.Module) -> tuple[nn.Module, ...]:
    a, m = block.self_attn, block.mlp
    return a.q_proj, a.k_proj, a.v_proj, a.o_proj, m.gate_proj, m.up_proj, m.down_proj


def _sources(linears: tuple[nn.Module, ...]) -> tuple:
    return tuple(x for lin in linears for x in (lin.weight, getattr(lin, "bias", None)))


def packable(blocks: list[nn.Module]) -> bool:
    """Dense (unquantised) Linear layers whose copies fit under PACK_LIMIT_BYTES."""
    total = 0
    for blk in blocks:
        for lin in _linears(blk):
            if type(lin) is not nn.Linear:
                return False
            total += lin.weight.nbytes
    return total <= PACK_LIMIT_BYTES


def _bias(*linears: nn.Module) -> mx.array | None:
    biases = [getattr(lin, "bias", None) for lin in linears]
    if all(b is None for b in biases):
        return None
    return mx.concatenate([b if b is not None else mx.zeros((lin.weight.shape[0],), lin.weight.dtype)
                           for b, lin in zip(biases, linears)])


def pack(block: nn.Module) -> PackedLayer:
    q, k, v, o, gate, up, down = linears = _linears(block)

    def t(*ws: nn.Module) -> mx.array:
        w = ws[0].weight if len(ws) == 1 else mx.concatenate([x.weight for x in ws], axis=0)
        return mx.contiguous(w.T)

    out = PackedLayer(_sources(linears), t(q, k, v), t(o), t(gate, up), t(down),
                      _bias(q, k, v), _bias(o), _bias(gate, up), _bias(down))
    mx.eval(out.qkv, out.o, out.gate_up, out.down)
    return out


class PackedWeights:
    """Lazily built, identity-checked packed layers of a model (None where packing does not apply)."""

    def __init__(self, blocks: list[nn.Module]) -> None:
        self.blocks = blocks
        self.enabled = packable(blocks)
        self._layers: dict[int, PackedLayer] = {}

    def __call__(self, layer: int) -> PackedLayer | None:
        if not self.enabled:
            return None
        blk = self.blocks[layer]
        rec = self._layers.get(layer)
        if rec is None or not rec.matches(_sources(_linears(blk))):
            if any(type(lin) is not nn.Linear for lin in _linears(blk)):  # quantised since: use the modules
                return None
            rec = self._layers[layer] = pack(blk)
        return rec


def linear(x: mx.array, w: mx.array, b: mx.array | None) -> mx.array:
    """x @ w (+ b) with w [in, out]."""
    return x @ w if b is None else mx.addmm(b, x, w)
