"""A run directory whose contract names a planted-circuit model, for tests that run the real sandbox on it."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from engine.circuits import build_planted_model
from sandbox.contract import create_contract
from sandbox.schemas import PromptPair


@contextlib.contextmanager
def planted_run_dir(prefix: str, n_pairs: int, seed: int, n_exploration: int,
                    n_held_out: int) -> Iterator[tuple[Any, Path]]:
    """(the planted model, a run dir with its contract); deduplicated prompts split exploration | held-out.

    The sandboxed child runs as another uid: the model directory is made world-readable, under $HOME."""
    root = Path(tempfile.mkdtemp(prefix=prefix, dir=Path.home()))
    try:
        root.chmod(0o755)
        built = build_planted_model(root / "planted")
        for path in [built.path, *built.path.iterdir()]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        pairs, seen = [], set()
        for p in built.pairs(n_pairs, seed=seed):
            if p.clean not in seen:
                seen.add(p.clean)
                pairs.append(PromptPair(clean=p.clean, corrupted=p.corrupted, correct=p.correct, wrong=p.wrong))
        run_dir = root / "run"
        run_dir.mkdir()
        create_contract(run_dir, str(built.path), pairs[:n_exploration],
                        pairs[n_exploration:n_exploration + n_held_out], seed=0, family="planted", commit=True)
        yield built, run_dir
    finally:
        shutil.rmtree(root, ignore_errors=True)
