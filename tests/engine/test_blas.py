"""engine.blas: which OpenBLAS an MLX subprocess preloads."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from engine import blas

LINUX = platform.system() == "Linux"


def _fake_wheel(tmp_path, monkeypatch, *, runtime: bool):
    """A package named like the pip OpenBLAS wheel on sys.path, and (optionally) a Fortran runtime dir."""
    pkg = tmp_path / "site" / blas.PIP_OPENBLAS
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('importing the package must not happen')\n")
    lib = pkg / "libopenblasp-r0.3.99.so"
    lib.write_bytes(b"")
    fortran = tmp_path / "fortran"
    fortran.mkdir()
    if runtime:
        (fortran / blas.FORTRAN_RUNTIME[0]).write_bytes(b"")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setattr(blas, "FORTRAN_DIRS", (str(fortran),))
    monkeypatch.delenv("ENGINE_OPENBLAS", raising=False)
    return lib


def test_pip_openblas_preferred_over_system(tmp_path, monkeypatch):
    lib = _fake_wheel(tmp_path, monkeypatch, runtime=True)
    assert blas.pip_openblas() == lib
    assert blas.find_openblas() == lib
    if LINUX:
        env = blas.blas_env({"LD_PRELOAD": "/x/other.so"}, warn=False)
        assert env["LD_PRELOAD"] == f"{lib}:/x/other.so"


def test_pip_openblas_needs_its_fortran_runtime(tmp_path, monkeypatch):
    _fake_wheel(tmp_path, monkeypatch, runtime=False)
    assert blas.pip_openblas() is None
    monkeypatch.setattr(blas, "OPENBLAS_CANDIDATES", (str(tmp_path / "system-libblas.so.3"),))
    (tmp_path / "system-libblas.so.3").write_bytes(b"")
    assert blas.find_openblas() == tmp_path / "system-libblas.so.3"


def test_override_wins(tmp_path, monkeypatch):
    _fake_wheel(tmp_path, monkeypatch, runtime=True)
    other = tmp_path / "mine.so"
    other.write_bytes(b"")
    monkeypatch.setenv("ENGINE_OPENBLAS", str(other))
    assert blas.find_openblas() == other


@pytest.mark.skipif(not LINUX, reason="LD_PRELOAD is Linux-only")
def test_blas_active_accepts_the_system_library_when_the_wheel_is_preferred(tmp_path, monkeypatch):
    lib = _fake_wheel(tmp_path, monkeypatch, runtime=True)
    system = tmp_path / "system-libblas.so.3"
    system.write_bytes(b"")
    monkeypatch.setattr(blas, "OPENBLAS_CANDIDATES", (str(system),))
    monkeypatch.setenv("LD_PRELOAD", str(system))
    assert blas.blas_active()
    monkeypatch.setenv("LD_PRELOAD", str(lib))
    assert blas.blas_active()
    monkeypatch.setenv("LD_PRELOAD", str(tmp_path / "unrelated.so"))
    assert not blas.blas_active()


@pytest.mark.skipif(not (LINUX and platform.machine() == "x86_64"), reason="the pinned wheel is for Linux x86-64")
def test_installed_wheel_is_what_mlx_runs_on(monkeypatch):
    """With the project installed, a subprocess started with blas_env() runs MLX matmuls on OpenBLAS 0.3.33."""
    monkeypatch.delenv("ENGINE_OPENBLAS", raising=False)
    lib = blas.pip_openblas()
    assert lib is not None, "ngsolve-openblas is a dependency on Linux x86-64: reinstall the project (pip install -e .)"
    code = (
        "import ctypes, mlx.core as mx\n"
        "a = mx.ones((64, 64)); assert float((a @ a)[0, 0]) == 64.0\n"
        f"l = ctypes.CDLL({str(lib)!r}); l.openblas_get_config.restype = ctypes.c_char_p\n"
        "addr = lambda f: ctypes.cast(f, ctypes.c_void_p).value\n"
        "assert addr(ctypes.CDLL(None).cblas_sgemm) == addr(l.cblas_sgemm), 'cblas_sgemm resolves elsewhere'\n"
        "print(l.openblas_get_config().decode())\n"
    )
    env = {"PATH": "/usr/bin:/bin", **blas.blas_env({}, warn=False)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "OpenBLAS 0.3.33" in out.stdout and "DYNAMIC_ARCH" in out.stdout
