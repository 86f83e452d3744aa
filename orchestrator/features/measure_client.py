"""Measure latents through the engine's measurement server in a child process (the orchestrator never
imports mlx). The child is started with ``python -I`` and OpenBLAS preloaded; every response is
validated; a dead or silent child is an error naming the cause, never a hang.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from engine.blas import blas_env
from engine.features.schemas import Example, MeasureRequest, MeasureResponse

MAX_LINE = 64 * 1024 * 1024


class MeasureError(RuntimeError):
    """The measurement server failed to start, answered with an error, or went silent."""


class SubprocessMeasurer:
    """``measure(latent, texts)`` via ``python -m engine.features.server``; use as a context manager."""

    def __init__(self, sae_dir: str | Path, model: str = "smollm2-135m", *, hook: str | None = None,
                 python: str = sys.executable, start_timeout: float = 300.0, timeout: float = 300.0,
                 cwd: str | Path | None = None, command: list[str] | None = None) -> None:
        self.sae_dir, self.model, self.hook = str(sae_dir), model, hook
        self.command = command  # replaces the server command line (tests use a fake server)
        self.python, self.start_timeout, self.timeout = python, start_timeout, timeout
        self.cwd = str(cwd) if cwd else None
        self._proc: subprocess.Popen[bytes] | None = None
        self._buffer = b""
        self.calls = 0
        self.texts = 0

    def __enter__(self) -> "SubprocessMeasurer":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> dict:
        if self._proc is not None:
            return {}
        cmd = [self.python, "-I", "-m", "engine.features.server", "--model", self.model, "--sae", self.sae_dir]
        if self.hook:
            cmd += ["--hook", self.hook]
        cmd = self.command or cmd
        env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_TOKEN", "_SECRET"))}
        env.update(blas_env(env))
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      env=env, cwd=self.cwd, start_new_session=True)
        banner = json.loads(self._readline(self.start_timeout, "starting"))
        if not banner.get("ready"):
            self.close()
            raise MeasureError(f"measurement server did not start: {banner.get('error', banner)}")
        return banner

    def _readline(self, timeout: float, doing: str) -> bytes:
        assert self._proc is not None and self._proc.stdout is not None
        deadline = time.monotonic() + timeout
        sel = selectors.DefaultSelector()
        sel.register(self._proc.stdout, selectors.EVENT_READ)
        try:
            while b"\n" not in self._buffer:
                left = deadline - time.monotonic()
                if left <= 0:
                    self.close(kill=True)
                    raise MeasureError(f"measurement server silent for {timeout:.0f}s while {doing}; it was stopped")
                if not sel.select(timeout=min(left, 1.0)):
                    continue
                chunk = os.read(self._proc.stdout.fileno(), 1 << 20)
                if not chunk:
                    err = self._stderr_tail()
                    self.close()
                    raise MeasureError(f"measurement server exited while {doing}: {err or 'no error output'}")
                self._buffer += chunk
                if len(self._buffer) > MAX_LINE:
                    self.close(kill=True)
                    raise MeasureError("measurement server sent an oversized line; it was stopped")
        finally:
            sel.close()
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line

    def _stderr_tail(self) -> str:
        if self._proc is None or self._proc.stderr is None:
            return ""
        try:
            self._proc.wait(timeout=5)
            return self._proc.stderr.read()[-2000:].decode(errors="replace").strip()
        except subprocess.TimeoutExpired:
            return ""

    def measure_many(self, latents: Sequence[int], texts: Sequence[str]) -> MeasureResponse:
        self.start()
        assert self._proc is not None and self._proc.stdin is not None
        request = MeasureRequest(texts=list(texts), latents=list(latents))
        try:
            self._proc.stdin.write(request.model_dump_json().encode() + b"\n")
            self._proc.stdin.flush()
        except BrokenPipeError as exc:
            err = self._stderr_tail()
            self.close()
            raise MeasureError(f"measurement server is gone: {err}") from exc
        response = MeasureResponse.model_validate_json(self._readline(self.timeout, f"measuring {len(texts)} texts"))
        if response.error or response.results is None:
            raise MeasureError(f"measurement server error: {response.error}")
        self.calls += 1
        self.texts += len(texts)
        return response

    def measure(self, latent: int, texts: Sequence[str]) -> list[Example]:
        out: list[Example] = []
        for start in range(0, len(texts), 128):
            response = self.measure_many([latent], texts[start : start + 128])
            for item in response.results or []:
                out.append(Example(tokens=item.tokens, acts=item.acts[latent], kind="adversarial"))
        return out

    def close(self, kill: bool = False) -> None:
        """End the server: close its stdin and wait (it exits on EOF), or kill its process group at once."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if not kill:
            try:
                if proc.stdin:
                    proc.stdin.close()
                proc.wait(timeout=10)
                return
            except (subprocess.TimeoutExpired, BrokenPipeError, OSError):
                pass  # fall through to killing the group
        try:
            os.killpg(proc.pid, 9)
        except ProcessLookupError:
            pass  # already gone
        proc.wait(timeout=10)
