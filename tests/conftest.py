"""Shared fixtures. Engine tests need mlx; the embedded model is loaded once per session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def embedded():
    import engine

    return engine.load_model("smollm2-135m")
