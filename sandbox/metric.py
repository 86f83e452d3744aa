"""The trusted implementation of the contract metrics (runs only inside sandboxed children).

contract/metrics.py names the metric; the computation lives here, in code the agent cannot edit.
Imports mlx (through engine.metrics) only when called.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

CONTRACT_METRICS = ("logit_diff", "prob_correct")


def per_pair(name: str, logits: Any, correct_ids: Sequence[int], wrong_ids: Sequence[int]) -> list[float]:
    """The contract metric for each row of ``logits`` [batch, pos, vocab] at the last position."""
    import mlx.core as mx
    import numpy as np

    from engine import metrics

    if not isinstance(logits, mx.array):
        logits = mx.array(np.asarray(logits, dtype=np.float32))
    if name == "logit_diff":
        values = metrics.logit_diff(logits, list(correct_ids), list(wrong_ids))
    elif name == "prob_correct":
        values = metrics.token_prob(logits, list(correct_ids))
    else:
        raise ValueError(f"unknown contract metric {name!r}; the contract allows {CONTRACT_METRICS}")
    return [float(v) for v in np.array(values.astype(mx.float32)).reshape(-1)]
