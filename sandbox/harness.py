"""Trusted entry point of an experiment child: ``python -I -m sandbox.harness REQUEST_JSON RESULT_FD``.

Runs inside the OS sandbox with cwd = scratch. It lowers the rlimits, builds the read-only ctx,
imports the experiment file by path, calls run(ctx) and sends the returned data (plain JSON) to
the parent over the result pipe. The parent validates it and alone writes results/NNNN.json: the
child never sees the run directory. Exit codes: 0 result sent, 1 experiment raised, 2 result is
not JSON data, 3 out of memory, 4 bad invocation.
"""

from __future__ import annotations

import importlib.util
import sys
import time
import traceback
from types import ModuleType
from typing import Any

from sandbox.childlib import Channel, NotJsonData, apply_rlimits, exit_now, read_request, to_jsonable

TRACEBACK_CHARS = 6000


class ExperimentLoadError(Exception):
    """The experiment file cannot be imported or has no run(ctx)."""


def load_experiment(path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location("experiment", path)
    if spec is None or spec.loader is None:
        raise ExperimentLoadError(f"cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not callable(getattr(module, "run", None)):
        raise ExperimentLoadError("the experiment defines no function run(ctx)")
    return module


def _safe_send(channel: Channel, message: dict[str, Any]) -> None:
    try:
        channel.send(message)
    except (OSError, ValueError, MemoryError) as exc:  # parent gone, or no memory left to encode
        print(f"harness: could not send {message.get('type')} message: {exc!r}", file=sys.stderr)


def run_request(request: dict[str, Any], channel: Channel) -> int:
    from sandbox.context import Context

    ctx = Context(request["pairs"], request["model"], request["metric"], request["seed"])
    start = time.perf_counter()
    try:
        module = load_experiment(request["experiment"])
        value = module.run(ctx)
        run_s = time.perf_counter() - start
        payload = to_jsonable(value)
    except NotJsonData as exc:
        _safe_send(channel, {"type": "invalid", "error": str(exc)[:2000]})
        return 2
    except MemoryError:
        _safe_send(channel, {"type": "error", "error_type": "MemoryError",
                             "error": f"out of memory (address-space limit {request['limits']['memory_mb']} MB)"})
        return 3
    except BaseException as exc:  # noqa: BLE001 - any failure of agent code is reported, never raised
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        _safe_send(channel, {"type": "error", "error_type": type(exc).__name__, "error": str(exc)[:2000],
                             "traceback": tb[-TRACEBACK_CHARS:]})
        return 1
    _safe_send(channel, {"type": "result", "result": payload, "run_s": run_s, "model_load_s": ctx.model_load_s})
    return 0


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -I -m sandbox.harness REQUEST_JSON RESULT_FD", file=sys.stderr)
        return 4
    channel = Channel(int(argv[1]))
    request = read_request(argv[0])
    apply_rlimits(request["limits"])
    channel.send({"type": "ready"})
    code = run_request(request, channel)
    channel.close()
    return code


if __name__ == "__main__":
    exit_now(main(sys.argv[1:]))
