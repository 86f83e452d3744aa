"""Optimised BLAS for MLX on Linux.

MLX's Linux CPU wheel links a reference BLAS that is ~30x slower than OpenBLAS on a matmul.
The library is chosen by the dynamic linker at process start, so it cannot be fixed from inside
a running process: whoever starts an MLX process passes the environment built here.
This module must not import mlx (the orchestrator process imports it).

Preferred: the OpenBLAS 0.3.33 (DYNAMIC_ARCH) of the pinned ``ngsolve-openblas`` wheel. Measured here
(AMD EPYC Zen 3, 2 cores, float32 sgemm through MLX): Debian's 0.3.21 runs the shapes of a few-token
forward (M = 9..72 rows against the model's weights) on one thread or splits them badly, 38 GFLOP/s
at M = 9 and 65 at M = 72 against 55-75 and 160 with 0.3.33; large M is ~180 with both. A 9-token
forward of the embedded model: 0.12 s -> 0.088 s. The system OpenBLAS remains the fallback.
"""

from __future__ import annotations

import importlib.util
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


PIP_OPENBLAS = "ngsolve_openblas"  # package of the pinned ngsolve-openblas wheel (a bare libopenblasp-r*.so)
FORTRAN_RUNTIME = ("libgfortran.so.5",)  # the wheel's only non-libc dependency (Debian: libgfortran5)
FORTRAN_DIRS = ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/lib64", "/usr/lib")


class SlowBlasWarning(RuntimeWarning):
    """No optimised BLAS found on Linux: MLX compute will be much slower."""


def pip_openblas() -> Path | None:
    """The pip-installed OpenBLAS (``ngsolve-openblas``) when it and its Fortran runtime are present.

    Located without importing the package (its import loads the library into the calling process)."""
    spec = importlib.util.find_spec(PIP_OPENBLAS)
    if spec is None or not spec.submodule_search_locations:
        return None
    libs = sorted(p for d in spec.submodule_search_locations for p in Path(d).glob("libopenblas*.so*") if p.is_file())
    runtime = any(Path(d, name).exists() for d in FORTRAN_DIRS for name in FORTRAN_RUNTIME)
    return libs[-1] if libs and runtime else None


def find_openblas() -> Path | None:
    """The OpenBLAS to preload: $ENGINE_OPENBLAS if set, else the pip wheel's, else the system's; or None."""
    override = os.environ.get("ENGINE_OPENBLAS")
    candidates = (override,) if override else (pip_openblas(), *OPENBLAS_CANDIDATES)
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
    """Whether this process was started with an OpenBLAS preloaded (Linux) or needs none (macOS)."""
    if platform.system() != "Linux":
        return True
    preloaded = [p for p in os.environ.get("LD_PRELOAD", "").split(":") if p]
    known = {str(p) for p in (find_openblas(), pip_openblas(), *OPENBLAS_CANDIDATES) if p}
    return any(p in known for p in preloaded)
