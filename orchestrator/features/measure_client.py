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


class LineChild:
    """A trusted child speaking one JSON line in, one JSON line out, after a ready banner.

    Started with ``python -I`` in its own session; API keys are removed from its environment unless
    ``keep_keys`` (an LLM scorer in the trusted verifier needs its provider's key). Reads are bounded
    by a deadline and a line size, so a dead or silent child is an error, never a hang.
    """

    what = "child process"

    def __init__(self, command: list[str], *, start_timeout: float = 300.0, timeout: float = 300.0,
                 cwd: str | Path | None = None, keep_keys: bool = False) -> None:
        self.command, self.start_timeout, self.timeout = command, start_timeout, timeout
        self.cwd = str(cwd) if cwd else None
        self.keep_keys = keep_keys
        self._proc: subprocess.Popen[bytes] | None = None
        self._buffer = b""
        self.banner: dict = {}

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> dict:
        if self._proc is not None:
            return self.banner
        env = dict(os.environ) if self.keep_keys else {
            k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_TOKEN", "_SECRET"))}
        env.update(blas_env(env))
        self._proc = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      env=env, cwd=self.cwd, start_new_session=True)
        try:
            banner = json.loads(self._readline(self.start_timeout, "starting"))
        except json.JSONDecodeError as exc:
            self.close(kill=True)
            raise MeasureError(f"{self.what} wrote a banner that is not JSON: {exc}") from None
        if not isinstance(banner, dict) or not banner.get("ready"):
            self.close()
            raise MeasureError(f"{self.what} did not start: {banner.get('error', banner) if isinstance(banner, dict) else banner}")
        self.banner = banner
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
                    raise MeasureError(f"{self.what} silent for {timeout:.0f}s while {doing}; it was stopped")
                if not sel.select(timeout=min(left, 1.0)):
                    continue
                chunk = os.read(self._proc.stdout.fileno(), 1 << 20)
                if not chunk:
                    err = self._stderr_tail()
                    self.close()
                    raise MeasureError(f"{self.what} exited while {doing}: {err or 'no error output'}")
                self._buffer += chunk
                if len(self._buffer) > MAX_LINE:
                    self.close(kill=True)
                    raise MeasureError(f"{self.what} sent an oversized line; it was stopped")
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

    def request(self, payload: bytes, doing: str) -> bytes:
        """Send one line, return the answer line."""
        self.start()
        assert self._proc is not None and self._proc.stdin is not None
        try:
            self._proc.stdin.write(payload + b"\n")
            self._proc.stdin.flush()
        except BrokenPipeError as exc:
            err = self._stderr_tail()
            self.close()
            raise MeasureError(f"{self.what} is gone: {err}") from exc
        return self._readline(self.timeout, doing)

    def close(self, kill: bool = False) -> None:
        """End the child: close its stdin and wait (it exits on EOF), or kill its process group at once."""
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


class SubprocessMeasurer(LineChild):
    """``measure(latent, texts)`` via ``python -m engine.features.server``; use as a context manager."""

    what = "measurement server"

    def __init__(self, sae_dir: str | Path, model: str = "smollm2-135m", *, hook: str | None = None,
                 python: str = sys.executable, start_timeout: float = 300.0, timeout: float = 300.0,
                 cwd: str | Path | None = None, command: list[str] | None = None) -> None:
        self.sae_dir, self.model, self.hook, self.python = str(sae_dir), model, hook, python
        cmd = [python, "-I", "-m", "engine.features.server", "--model", model, "--sae", self.sae_dir]
        if hook:
            cmd += ["--hook", hook]
        # ``command`` replaces the server command line (tests use a fake server)
        super().__init__(command or cmd, start_timeout=start_timeout, timeout=timeout, cwd=cwd)
        self.calls = 0
        self.texts = 0

    def measure_many(self, latents: Sequence[int], texts: Sequence[str]) -> MeasureResponse:
        request = MeasureRequest(texts=list(texts), latents=list(latents))
        line = self.request(request.model_dump_json().encode(), f"measuring {len(texts)} texts")
        response = MeasureResponse.model_validate_json(line)
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
