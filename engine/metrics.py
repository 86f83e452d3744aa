"""Metrics on logits. Each returns one value per batch row, at the last position unless told otherwise."""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx

from engine.errors import EngineError


def _at(logits: mx.array, position: int) -> mx.array:
    if logits.ndim == 2:  # already [b, v]
        return logits
    if logits.ndim != 3:
        raise EngineError(f"metrics expect logits of shape [batch, pos, vocab] or [batch, vocab], got {logits.shape}")
    return logits[:, position, :]


def _ids(ids: int | Sequence[int] | mx.array, batch: int) -> mx.array:
    arr = mx.array([ids] * batch if isinstance(ids, int) else ids, dtype=mx.int32).reshape(-1)
    if arr.shape[0] not in (1, batch):
        raise EngineError(f"got {arr.shape[0]} token ids for a batch of {batch}: give one id or one per row")
    return mx.broadcast_to(arr, (batch,))


def _gather(last: mx.array, ids: mx.array) -> mx.array:
    return mx.take_along_axis(last, ids[:, None], axis=-1)[:, 0]


def logit_diff(logits: mx.array, correct_ids, wrong_ids, position: int = -1) -> mx.array:
    """logit[correct] - logit[wrong] per row: the standard patching metric."""
    last = _at(logits, position)
    b = last.shape[0]
    return _gather(last, _ids(correct_ids, b)) - _gather(last, _ids(wrong_ids, b))


def logprob(logits: mx.array, token_ids, position: int = -1) -> mx.array:
    last = _at(logits, position).astype(mx.float32)
    return _gather(last - mx.logsumexp(last, axis=-1, keepdims=True), _ids(token_ids, last.shape[0]))


def token_prob(logits: mx.array, token_ids, position: int = -1) -> mx.array:
    """Probability of a token per row."""
    return mx.exp(logprob(logits, token_ids, position))


def kl_divergence(logits: mx.array, reference_logits: mx.array, position: int = -1) -> mx.array:
    """KL(reference || logits) per row, in nats: how far an intervention moved the distribution."""
    p = _at(reference_logits, position).astype(mx.float32)
    q = _at(logits, position).astype(mx.float32)
    logp = p - mx.logsumexp(p, axis=-1, keepdims=True)
    logq = q - mx.logsumexp(q, axis=-1, keepdims=True)
    return mx.sum(mx.exp(logp) * (logp - logq), axis=-1)


METRICS = {"logit_diff": logit_diff, "prob_correct": token_prob, "kl": kl_divergence}
