"""Optimised BLAS for MLX on Linux.

MLX's Linux CPU wheel links a reference BLAS that is ~30x slower than OpenBLAS on a matmul.
The library is chosen by the dynamic linker at process start, so it cannot be fixed from inside
a running process: whoever starts an MLX process passes the environment built here.
This module must not import mlx (the orchestrator process imports it).
"""

from __future__ import annotations

import os
import platform
import warnings
from pathlib import Path

OPENBLAS_CANDIDATES: tuple[str, ...] = (
    "/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3",
    "/usr/lib/aarch64-linux-gnu/openblas-pthread/libblas.so.3",
    "/usr/lib64/libopenblas.so.0",
    "/usr/lib/libopenblas.so.0",
)


class SlowBlasWarning(RuntimeWarning):
    """No optimised BLAS found on Linux: MLX compute will be much slower."""


def find_openblas() -> Path | None:
    """The first OpenBLAS shared library present on this machine, or None."""
    override = os.environ.get("ENGINE_OPENBLAS")
    candidates = (override,) if override else OPENBLAS_CANDIDATES
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def blas_env(base: dict[str, str] | None = None, *, warn: bool = True) -> dict[str, str]:
    """Environment variables an MLX subprocess needs on this OS (empty on macOS).

    Returns only the variables to add; ``base`` (defaults to os.environ) is consulted so an
    existing LD_PRELOAD is extended rather than replaced.
    """
    if platform.system() != "Linux":
        return {}
    lib = find_openblas()
    if lib is None:
        if warn:
            warnings.warn(
                "No OpenBLAS found: MLX will use its reference BLAS (about 30x slower). "
                "On Debian/Ubuntu install it with `apt-get install libopenblas0-pthread`.",
                SlowBlasWarning,
                stacklevel=2,
            )
        return {}
    env = os.environ if base is None else base
    existing = [p for p in env.get("LD_PRELOAD", "").split(":") if p]
    if str(lib) in existing:
        return {"LD_PRELOAD": ":".join(existing)}
    return {"LD_PRELOAD": ":".join([str(lib), *existing])}


def blas_active() -> bool:
    """Whether this process was started with OpenBLAS preloaded (Linux) or needs none (macOS)."""
    if platform.system() != "Linux":
        return True
    lib = find_openblas()
    return lib is not None and str(lib) in os.environ.get("LD_PRELOAD", "")
