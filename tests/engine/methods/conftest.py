"""Fixtures for the methods' tests: a tiny GQA model with prompt pairs, and the embedded model's Eiffel pair."""

from __future__ import annotations

import numpy as np
import pytest

from tests.engine.tiny import random_tokens, tiny_model


@pytest.fixture(scope="session")
def tiny():
    return tiny_model(0)  # 3 layers, 4 query heads sharing 2 key/value heads


@pytest.fixture(scope="session")
def tiny_pairs(tiny):
    """Three equal-length pairs (6 tokens) that differ at positions 2 and 4; answers per pair."""
    clean = np.array(random_tokens(tiny, 3, 6, seed=1))
    corrupted = clean.copy()
    corrupted[:, 2] = (corrupted[:, 2] + 5) % tiny.cfg.d_vocab
    corrupted[:, 4] = (corrupted[:, 4] + 11) % tiny.cfg.d_vocab
    return clean.tolist(), corrupted.tolist(), [1, 2, 3], [4, 5, 6]


@pytest.fixture(scope="session")
def eiffel(embedded):
    m = embedded
    return (m.to_tokens("The Eiffel Tower is in the city of"), m.to_tokens("The Colosseum is in the city of"),
            m.token_id(" Paris"), m.token_id(" Rome"))
