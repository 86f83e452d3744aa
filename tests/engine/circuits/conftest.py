"""Shared tiny-model fixtures for the circuit tests."""

from __future__ import annotations

import pytest

from engine.circuits import CircuitTask
from tests.engine.tiny import random_tokens, tiny_model


@pytest.fixture(scope="package")
def tiny():
    return tiny_model(0)


@pytest.fixture(scope="package")
def tiny_task(tiny):
    clean = random_tokens(tiny, 4, 6, seed=1)
    corrupted = random_tokens(tiny, 4, 6, seed=2)
    return CircuitTask.from_tokens(clean, corrupted, [1, 2, 3, 4], [5, 6, 7, 8])
