"""A trusted, read-only cache of MLX's CPU-compiled kernels for sandboxed children.

MLX compiles fused CPU kernels with a C++ compiler into $TMPDIR/mlx/<version>/cpu and reuses them.
Every child has a private, empty /tmp, so without help each experiment recompiles them (seconds per
experiment). Here a trusted process (unsandboxed, engine code only) fills a cache once per machine;
children get each cached file bind-mounted READ-ONLY into their private /tmp/mlx/<version>/cpu,
whose directory stays writable (tmpfs) for kernels they compile themselves. Nothing a child writes
persists, so agent code can never plant a kernel that a later experiment or the verifier loads.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

STAMP = ".warmed"
SKIP = 3
WARM_TIMEOUT_S = 900.0
WARM = """
import sys
from pathlib import Path
from engine.loading import resolve
gguf = (resolve.embedded_gguf_path() if MODEL.lower() in resolve.EMBEDDED_ALIASES
        else Path(MODEL) if MODEL.endswith(".gguf") else None)
if gguf is not None and not (resolve._converted_dir(gguf) / "config.json").is_file():
    sys.exit(SKIP)  # weights not converted yet: converting is engine.warm's job, not this warm-up's
import engine
from engine.interventions import Ablate, Patch
from sandbox.metric import per_pair
m = engine.load_model(MODEL)
for texts in (["The Eiffel Tower is in the city of"], ["The Eiffel Tower is in the city of"] * 2):
    toks = m.to_tokens(texts)
    ids = [m.token_id(" Paris")] * len(texts)
    _, cache = m.run_with_cache(toks, names=["blocks.0.hook_resid_pre", "blocks.0.attn.hook_z"])
    logits = m.run_with_hooks(toks, [Patch(hook="blocks.0.hook_resid_pre"), Ablate(hook="blocks.0.attn.hook_z",
                              heads=[0])], source=cache, reference=cache)
    per_pair("logit_diff", logits, ids, ids)
    per_pair("prob_correct", m.forward(toks), ids, ids)
"""
_lock = threading.Lock()
_warm_failed: set[str] = set()


class JitWarmError(RuntimeError):
    """The trusted warm-up could not compile the kernels (children then compile their own)."""


def jit_root() -> Path:
    from engine.loading.resolve import cache_root

    return cache_root() / "mlx-jit"


def _kernel_dirs(root: Path) -> list[Path]:
    return [d for d in sorted(root.glob("mlx/*/cpu")) if d.is_dir() and not d.is_symlink()]


def is_warm() -> bool:
    return (jit_root() / STAMP).is_file()


def warm_jit_cache(model: str = "smollm2-135m", timeout_s: float = WARM_TIMEOUT_S) -> Path:
    """Compile the kernels a forward/patch/ablation/metric needs, in a trusted process; idempotent."""
    from engine.blas import blas_env
    from sandbox.isolation import PROJECT_ROOT

    root = jit_root()
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="warm-", dir=root))
    try:
        env = {**os.environ, **blas_env(warn=False), "TMPDIR": str(work)}
        code = f"import sys; sys.path.insert(0, {str(PROJECT_ROOT)!r}); MODEL = {model!r}; SKIP = {SKIP}\n" + WARM
        proc = subprocess.run([sys.executable, "-I", "-c", code], env=env, capture_output=True, text=True,
                              timeout=timeout_s, check=False)
        if proc.returncode == SKIP:
            raise JitWarmError(f"the weights of {model!r} are not converted yet (run `python -m engine.warm`)")
        if proc.returncode != 0:
            raise JitWarmError(f"warming MLX kernels for {model!r} failed: {proc.stderr.strip()[-1500:]}")
        for src_dir in _kernel_dirs(work):
            dest = root / src_dir.relative_to(work)
            dest.mkdir(parents=True, exist_ok=True)
            for f in src_dir.iterdir():
                if f.is_file() and not f.is_symlink():
                    os.replace(f, dest / f.name)  # atomic per file: a child never binds a half-written kernel
        (root / STAMP).write_text(model + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return root


def ensure_warm(model: str) -> None:
    """Warm once per machine (the cache persists); a failure is reported once and never blocks a run."""
    with _lock:
        if is_warm() or model in _warm_failed:
            return
        try:
            warm_jit_cache(model)
        except (JitWarmError, OSError, subprocess.TimeoutExpired) as exc:
            _warm_failed.add(model)
            print(f"sandbox: MLX kernel cache not warmed ({exc}); experiments will compile their own kernels",
                  file=sys.stderr)


def bind_args() -> list[str]:
    """bubblewrap arguments exposing the trusted kernels read-only inside the child's private /tmp."""
    root = jit_root()
    if not (root / STAMP).is_file():
        return []
    args: list[str] = []
    uid = os.geteuid()
    for src_dir in _kernel_dirs(root):
        rel = src_dir.relative_to(root)  # mlx/<version>/cpu
        target = Path("/tmp") / rel
        for part in (target.parents[1], target.parent, target):
            args += ["--perms", "0777", "--dir", str(part)]
        for f in sorted(src_dir.iterdir()):
            st = f.lstat()
            if f.is_file() and not f.is_symlink() and st.st_uid == uid:  # written by a trusted process only
                args += ["--ro-bind", str(f), str(target / f.name)]
    return args
