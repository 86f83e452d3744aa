"""Helpers for the trusted code at the start of a sandboxed child (harness, verifier entry).

Kept light (no pydantic, no mlx) so the child starts fast; everything it sends is re-validated
by the parent, which treats it as untrusted data.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import resource
import sys
from typing import Any

MAX_DEPTH = 32
MAX_ITEMS = 2_000_000


class NotJsonData(TypeError):
    """A returned value that is not plain data (numbers, strings, lists, dicts, arrays)."""


def apply_rlimits(limits: dict[str, Any]) -> None:
    """Lower this process's limits before any untrusted code runs (lowering is always permitted)."""
    mb = 1 << 20
    wanted = {
        resource.RLIMIT_AS: int(limits["memory_mb"]) * mb,
        resource.RLIMIT_CPU: int(limits["cpu_s"]),
        resource.RLIMIT_FSIZE: int(limits["file_size_mb"]) * mb,
        resource.RLIMIT_NOFILE: int(limits["open_files"]),
        resource.RLIMIT_NPROC: int(limits["processes"]),
        resource.RLIMIT_CORE: 0,
    }
    if sys.platform == "darwin":  # macOS does not enforce RLIMIT_AS (and may refuse to set it)
        del wanted[resource.RLIMIT_AS]
    for which, value in wanted.items():
        soft, hard = resource.getrlimit(which)
        cap = value if hard == resource.RLIM_INFINITY else min(value, hard)
        if which == resource.RLIMIT_CPU:  # SIGXCPU first, SIGKILL one second later
            resource.setrlimit(which, (cap, cap + 1 if hard == resource.RLIM_INFINITY else min(cap + 1, hard)))
        else:
            resource.setrlimit(which, (cap, cap))


class Channel:
    """Newline-delimited JSON messages to the parent over an inherited pipe fd."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def send(self, message: dict[str, Any]) -> None:
        data = (json.dumps(message, allow_nan=False, separators=(",", ":")) + "\n").encode()
        view = memoryview(data)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            return


def to_jsonable(value: Any, path: str = "result", _depth: int = 0, _count: list[int] | None = None) -> Any:
    """Plain JSON data from a returned value: numpy/mlx arrays become lists, NaN/inf become None.

    Anything else (objects, bytes, functions, pickles) is refused with the path of the bad value.
    """
    count = _count if _count is not None else [0]
    count[0] += 1
    if count[0] > MAX_ITEMS:
        raise NotJsonData(f"the result has more than {MAX_ITEMS} values; summarise before returning")
    if _depth > MAX_DEPTH:
        raise NotJsonData(f"{path} is nested more than {MAX_DEPTH} levels deep; flatten it")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        if abs(value) > 2**63:
            raise NotJsonData(f"{path} is an integer too large for JSON data")
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise NotJsonData(f"{path} has a key of type {type(k).__name__}; dictionary keys must be strings")
            out[k] = to_jsonable(v, f"{path}[{k!r}]", _depth + 1, count)
        return out
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v, f"{path}[{i}]", _depth + 1, count) for i, v in enumerate(value)]
    module = type(value).__module__ or ""
    if module.startswith(("numpy", "mlx")) and hasattr(value, "tolist"):
        size = getattr(value, "size", 1)
        if isinstance(size, int) and size > MAX_ITEMS:
            raise NotJsonData(f"{path} is an array of {size} values; summarise it before returning")
        return to_jsonable(value.tolist(), path, _depth, count)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(dataclasses.asdict(value), path, _depth, count)
    if module.startswith(("engine.", "sandbox.")) and hasattr(value, "model_dump"):
        return to_jsonable(value.model_dump(mode="json"), path, _depth, count)
    raise NotJsonData(f"{path} is of type {type(value).__name__}; return only numbers, strings, booleans, None, "
                      f"lists, dicts with string keys, dataclasses, numpy/mlx arrays or engine interventions")


def read_request(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def exit_now(code: int) -> None:
    """Leave without joining the experiment's threads or running its atexit handlers."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            continue
    os._exit(code)
