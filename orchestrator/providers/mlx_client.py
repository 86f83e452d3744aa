"""Local instruct model provider: generation in a child process, JSON extraction, validation, repair.

Why a subprocess: the orchestrator never imports mlx. The child gets a minimal environment (no API
keys or tokens, OpenBLAS preloaded on Linux), its own process group (killed on timeout) and a scratch
working directory. A small model's unusable output is a failed step, never an exception.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections import deque
from typing import Any, TypeVar

import structlog
from pydantic import BaseModel

from orchestrator.agent.base import StepResult, Usage
from orchestrator.providers.base import (
    BudgetExceeded,
    CallRecord,
    ProviderConfigError,
    ProviderStop,
    UsageLedger,
)
from orchestrator.providers.validation import extract_json_object, schema_brief, validate

M = TypeVar("M", bound=BaseModel)
log = structlog.get_logger("orchestrator.providers.mlx")

ENV_KEEP = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "ENGINE_CACHE_DIR", "XDG_CACHE_HOME", "HF_HOME",
            "HF_HUB_CACHE", "ENGINE_OPENBLAS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")
MAX_LINE = 4_000_000


class WorkerError(Exception):
    """The generation child died, timed out or broke the protocol (it is restarted on the next call)."""


class MLXUnavailable(ProviderStop):
    reason = "provider-unavailable"


def worker_env(base: dict[str, str] | None = None, blas_threads: int | None = None) -> dict[str, str]:
    """Only what the child needs: paths, locale, cache locations, BLAS, offline flags. No secrets.

    ``blas_threads=1`` is much faster when the CPU is shared (OpenBLAS threads spin under contention).
    """
    from engine.blas import blas_env

    src = dict(os.environ if base is None else base)
    env = {k: src[k] for k in ENV_KEEP if k in src}
    if blas_threads is not None:
        env["OPENBLAS_NUM_THREADS"] = str(blas_threads)
    env.update(blas_env(src, warn=False))
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                "PYTHONDONTWRITEBYTECODE": "1"})
    return env


class _Worker:
    def __init__(self, model_ref: str, max_prompt_tokens: int, startup_timeout_s: float,
                 command: list[str] | None = None, blas_threads: int | None = None) -> None:
        self.scratch = tempfile.TemporaryDirectory(prefix="mlx-worker-")
        cmd = command or [sys.executable, "-I", "-m", "engine.generate_worker", "--model", model_ref,
                          "--max-prompt-tokens", str(max_prompt_tokens)]
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=worker_env(blas_threads=blas_threads), cwd=self.scratch.name, start_new_session=True,
            text=True, encoding="utf-8", errors="replace",
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stderr_tail: deque[str] = deque(maxlen=40)
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        ready = self.read(startup_timeout_s)
        if not ready.get("ready"):
            self.close()
            raise ProviderConfigError(f"the mlx worker could not load model {model_ref!r}: {ready.get('error')}")
        self.model_name = str(ready.get("model", model_ref))

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in iter(lambda: self.proc.stdout.readline(MAX_LINE), ""):  # type: ignore[union-attr]
            self.lines.put(line)
        self.lines.put(None)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in iter(lambda: self.proc.stderr.readline(10_000), ""):  # type: ignore[union-attr]
            self.stderr_tail.append(line.rstrip())

    def read(self, timeout_s: float) -> dict[str, Any]:
        try:
            line = self.lines.get(timeout=timeout_s)
        except queue.Empty:
            self.close()
            raise WorkerError(f"no answer from the mlx worker within {timeout_s:.0f}s (killed)") from None
        if line is None:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.close()
            tail = " | ".join(list(self.stderr_tail)[-5:])
            raise WorkerError(f"the mlx worker exited (code {self.proc.returncode}): {tail[-800:]}")
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            self.close()
            raise WorkerError(f"the mlx worker broke the protocol: {line[:200]!r}") from None
        if not isinstance(data, dict):
            raise WorkerError("the mlx worker sent a non-object line")
        return data

    def request(self, payload: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(payload) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            self.close()
            raise WorkerError(f"the mlx worker is gone: {exc}") from None
        return self.read(timeout_s)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
        self.scratch.cleanup()


class MLXClient:
    """LLMClient over a local mlx-lm model. Tokens are counted; dollars are zero."""

    name = "mlx"

    def __init__(
        self,
        model_ref: str = "smollm2-135m",
        *,
        ledger: UsageLedger | None = None,
        max_new_tokens: int = 512,
        max_prompt_tokens: int = 6000,
        temperature: float = 0.0,
        request_timeout_s: float = 300.0,
        startup_timeout_s: float = 300.0,
        max_consecutive_failures: int = 3,
        worker_command: list[str] | None = None,
        blas_threads: int | None = None,
    ) -> None:
        self.model = model_ref
        self.worker_command = worker_command  # tests substitute a misbehaving child
        self.blas_threads = blas_threads
        self.ledger = ledger or UsageLedger()
        self.max_new_tokens = max_new_tokens
        self.max_prompt_tokens = max_prompt_tokens
        self.temperature = temperature
        self.request_timeout_s = request_timeout_s
        self.startup_timeout_s = startup_timeout_s
        self.max_consecutive_failures = max_consecutive_failures
        self._failures = 0
        self._worker: _Worker | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> "MLXClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._worker is not None:
            self._worker.close()
            self._worker = None

    @property
    def worker_pid(self) -> int | None:
        return self._worker.proc.pid if self._worker is not None and self._worker.alive() else None

    def _generate(self, messages: list[dict[str, str]]) -> dict[str, Any]:
        if self._worker is None or not self._worker.alive():
            self.close()
            self._worker = _Worker(self.model, self.max_prompt_tokens, self.startup_timeout_s, self.worker_command,
                                   self.blas_threads)
            weakref.finalize(self, self._worker.close)  # a dropped client must not leave its child running
        payload = {"messages": messages, "prefill": "{", "max_tokens": self.max_new_tokens,
                   "temperature": self.temperature, "deadline_s": self.request_timeout_s * 0.8,
                   "stop_at_json_end": True}
        resp = self._worker.request(payload, self.request_timeout_s)
        if not resp.get("ok"):
            raise WorkerError(str(resp.get("error", "unknown worker error")))
        return resp

    def structured(
        self, *, role: str, system: str, cacheable_context: str, prompt: str,
        schema: type[M], max_repairs: int = 2,
    ) -> StepResult[M]:
        with self._lock:  # one child, one request at a time
            return self._structured(role, system, cacheable_context, prompt, schema, max_repairs)

    def _structured(self, role: str, system: str, context: str, prompt: str, schema: type[M],
                    max_repairs: int) -> StepResult[M]:
        instructions = (f"Reply with exactly one JSON object and nothing else. Its fields:\n{schema_brief(schema)}")
        messages = [{"role": "system", "content": "\n\n".join(p for p in (system, context) if p.strip())},
                    {"role": "user", "content": f"{prompt}\n\n{instructions}"}]
        total, error = Usage(), ""
        for repair in range(max_repairs + 1):
            try:
                self.ledger.check_budget()
            except BudgetExceeded as exc:
                raise BudgetExceeded(str(exc), usage=total) from None
            started = time.monotonic()
            try:
                resp = self._generate(messages)
            except WorkerError as exc:
                return self._failed(role, repair, total, str(exc), started)
            self._failures = 0
            usage = Usage(calls=1, input_tokens=int(resp.get("prompt_tokens", 0)),
                          output_tokens=int(resp.get("completion_tokens", 0)))
            total = total + usage
            text = "{" + str(resp.get("text", ""))
            data, error = extract_json_object(text, lenient=True)
            value = None
            if error is None:
                value, error = validate(schema, data)
            if error and resp.get("stopped") in ("max_tokens", "deadline"):
                error += f" (the reply was cut off: {resp.get('stopped')}; keep it shorter)"
            self.ledger.record(CallRecord(
                provider=self.name, model=self.model, role=role, repair=repair, usage=usage,
                duration_s=round(time.monotonic() - started, 3), outcome="ok" if value is not None else "invalid",
                detail=(error or "")[:500]))
            log.info("llm.call", provider=self.name, role=role, repair=repair, ok=value is not None,
                     stopped=resp.get("stopped"), truncated=resp.get("truncated"), **usage.model_dump())
            if value is not None:
                return StepResult(value=value, usage=total)
            messages += [{"role": "assistant", "content": text[:4000]},
                         {"role": "user", "content": f"That reply was rejected: {error}\n{instructions}"}]
        return StepResult(usage=total, error=f"{role}: invalid output after {max_repairs} repair turn(s): {error}")

    def _failed(self, role: str, repair: int, total: Usage, detail: str, started: float) -> StepResult[Any]:
        self._failures += 1
        self.ledger.record(CallRecord(provider=self.name, model=self.model, role=role, repair=repair, usage=Usage(),
                                      outcome="error", detail=detail[:500],
                                      duration_s=round(time.monotonic() - started, 3)))
        log.error("llm.call_failed", provider=self.name, role=role, error=detail, consecutive=self._failures)
        if self._failures >= self.max_consecutive_failures:
            raise MLXUnavailable(f"the mlx worker failed {self._failures} times in a row; last: {detail}", usage=total)
        return StepResult(usage=total, error=f"{role}: mlx generation failed: {detail}")
