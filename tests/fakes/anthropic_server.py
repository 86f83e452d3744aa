"""A local, scriptable fake of the Anthropic Messages API (POST /v1/messages) for tests.

It speaks the wire format the real `anthropic` SDK expects, so tests drive the real SDK against it:
scripted replies (tool_use, text, error statuses with headers, delays, dropped connections, hangs,
raw bodies), request checks the real API also makes (auth header, anthropic-version, tool_use /
tool_result pairing, tool_choice naming a tool, at most 4 cache_control blocks, non-empty text
blocks), a record of every request, and the sum of the usage it actually delivered.
Loopback only, daemon threads, bounded request size and record count.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import socket
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator

MAX_BODY_BYTES = 4_000_000
MAX_RECORDS = 10_000
USAGE_KEYS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


@dataclass
class Reply:
    """One scripted server action. Build it with the helpers below rather than by hand."""

    kind: str  # "message" | "error" | "drop" | "hang" | "raw"
    status: int = 200
    content: list[dict[str, Any]] | None = None
    stop_reason: str = "tool_use"
    usage: dict[str, int] | None = None
    error_type: str = ""
    message: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    body: bytes = b""


def tool_use(
    input: Any, *, name: str | None = None, usage: dict[str, int] | None = None,
    stop_reason: str = "tool_use", delay: float = 0.0, text_before: str | None = None,
) -> Reply:
    """A tool_use reply; ``name`` defaults to the tool the request forces via tool_choice."""
    block: dict[str, Any] = {"type": "tool_use", "name": name, "input": input}
    content = ([{"type": "text", "text": text_before}] if text_before else []) + [block]
    return Reply("message", content=content, stop_reason=stop_reason, usage=usage, delay=delay)


def text(text: str, *, stop_reason: str = "end_turn", usage: dict[str, int] | None = None, delay: float = 0.0) -> Reply:
    return Reply("message", content=[{"type": "text", "text": text}], stop_reason=stop_reason, usage=usage, delay=delay)


def error(status: int, error_type: str, message: str = "scripted error", *,
          headers: dict[str, str] | None = None, delay: float = 0.0) -> Reply:
    return Reply("error", status=status, error_type=error_type, message=message, headers=dict(headers or {}), delay=delay)


def rate_limited(retry_after: float = 1, **kw: Any) -> Reply:
    return error(429, "rate_limit_error", "Number of request tokens has exceeded your rate limit.",
                 headers={"retry-after": f"{retry_after:g}"}, **kw)


def server_error(**kw: Any) -> Reply:
    return error(500, "api_error", "Internal server error", **kw)


def overloaded(**kw: Any) -> Reply:
    return error(529, "overloaded_error", "Overloaded", **kw)


def drop(delay: float = 0.0) -> Reply:
    """Read the request, then close the connection without any response."""
    return Reply("drop", delay=delay)


def hang(seconds: float) -> Reply:
    """Wait (past the client's timeout), then close without a response: nothing is billed."""
    return Reply("hang", delay=seconds)


def raw(status: int, body: bytes, *, content_type: str = "application/json", delay: float = 0.0) -> Reply:
    """Send exactly ``body`` (e.g. truncated JSON)."""
    return Reply("raw", status=status, body=body, headers={"content-type": content_type}, delay=delay)


@dataclass
class RecordedRequest:
    """What the server saw and what it did about it."""

    index: int
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: dict[str, Any] | None
    reply_kind: str = ""
    status: int = 0
    usage: dict[str, int] | None = None
    delivered: bool = False

    @property
    def forced_tool(self) -> str | None:
        choice = (self.body or {}).get("tool_choice") or {}
        return choice.get("name") if choice.get("type") == "tool" else None


class InvalidRequest(Exception):
    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error_type, self.message = status, error_type, message


def _estimate(obj: Any) -> int:
    return max(1, len(json.dumps(obj, sort_keys=True)) // 4) if obj else 0


def check_request(headers: dict[str, str], body: Any, expected_key: str | None) -> None:
    """Reject what the real API rejects (the subset our client could get wrong)."""
    auth = headers.get("x-api-key") or ""
    if not auth and headers.get("authorization", "").startswith("Bearer "):
        auth = headers["authorization"][len("Bearer "):]
    if not auth:
        raise InvalidRequest(401, "authentication_error", "x-api-key header is required")
    if expected_key is not None and auth != expected_key:
        raise InvalidRequest(401, "authentication_error", "invalid x-api-key")
    if not headers.get("anthropic-version"):
        raise InvalidRequest(400, "invalid_request_error", "anthropic-version header is required")
    if not isinstance(body, dict):
        raise InvalidRequest(400, "invalid_request_error", "body must be a JSON object")
    for key, typ in (("model", str), ("max_tokens", int), ("messages", list)):
        if not isinstance(body.get(key), typ):
            raise InvalidRequest(400, "invalid_request_error", f"{key}: Field required")
    if body["max_tokens"] < 1 or not body["messages"]:
        raise InvalidRequest(400, "invalid_request_error", "max_tokens must be >= 1 and messages non-empty")
    system = body.get("system")
    blocks = [system] if isinstance(system, str) else list(system or [])
    for b in blocks:
        if isinstance(b, dict) and (b.get("type") != "text" or not b.get("text")):
            raise InvalidRequest(400, "invalid_request_error", "system: text content blocks must be non-empty")
    tools = {t.get("name"): t for t in body.get("tools") or []}
    for name, tool in tools.items():
        if not isinstance(name, str) or not (0 < len(name) <= 64) or (tool.get("input_schema") or {}).get("type") != "object":
            raise InvalidRequest(400, "invalid_request_error", f"tools: invalid tool {name!r}")
    choice = body.get("tool_choice")
    if choice and choice.get("type") == "tool" and choice.get("name") not in tools:
        raise InvalidRequest(400, "invalid_request_error", f"tool_choice names unknown tool {choice.get('name')!r}")
    _check_messages(body["messages"])
    n_cache = sum(1 for b in _all_blocks(body) if isinstance(b, dict) and "cache_control" in b)
    if n_cache > 4:
        raise InvalidRequest(400, "invalid_request_error", f"A maximum of 4 blocks with cache_control may be provided. Found {n_cache}.")


def _all_blocks(body: dict[str, Any]) -> Iterator[Any]:
    system = body.get("system")
    if isinstance(system, list):
        yield from system
    yield from body.get("tools") or []
    for m in body["messages"]:
        if isinstance(m.get("content"), list):
            yield from m["content"]


def _check_messages(messages: list[Any]) -> None:
    if messages[0].get("role") != "user":
        raise InvalidRequest(400, "invalid_request_error", "messages: first message must use the user role")
    pending: set[str] = set()
    for i, m in enumerate(messages):
        role, content = m.get("role"), m.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else list(content or [])
        if role not in ("user", "assistant") or not blocks:
            raise InvalidRequest(400, "invalid_request_error", f"messages.{i}: bad role or empty content")
        results = [b.get("tool_use_id") for b in blocks if b.get("type") == "tool_result"]
        if role == "user":
            if set(results) != pending:
                raise InvalidRequest(400, "invalid_request_error",
                                     f"messages.{i}: tool_use ids {sorted(pending)} need tool_result blocks immediately after")
            if results and any(b.get("type") != "tool_result" for b in blocks[: len(results)]):
                raise InvalidRequest(400, "invalid_request_error", f"messages.{i}: tool_result blocks must come first")
            pending = set()
        else:
            if pending:
                raise InvalidRequest(400, "invalid_request_error", f"messages.{i}: unanswered tool_use before assistant turn")
            pending = {b.get("id") for b in blocks if b.get("type") == "tool_use"}
        for b in blocks:
            if b.get("type") == "text" and not b.get("text"):
                raise InvalidRequest(400, "invalid_request_error", f"messages.{i}: text content blocks must be non-empty")


class FakeAnthropic:
    """The server. Use as a context manager; ``base_url`` goes to ``anthropic.Anthropic(base_url=...)``."""

    def __init__(self, *, expected_key: str | None = None, responder: Callable[[RecordedRequest], Reply] | None = None) -> None:
        self.expected_key = expected_key
        self.responder = responder
        self.requests: list[RecordedRequest] = []
        self._queue: deque[Reply] = deque()
        self._by_tool: dict[str, deque[Reply]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ids = itertools.count(1)
        self._cache_seen: set[str] = set()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- scripting -------------------------------------------------------------------------
    def push(self, *replies: Reply) -> None:
        with self._lock:
            self._queue.extend(replies)

    def push_for(self, tool_name: str, *replies: Reply) -> None:
        """Replies used when a request forces ``tool_name`` (before the global queue)."""
        with self._lock:
            self._by_tool.setdefault(tool_name, deque()).extend(replies)

    def pending(self) -> int:
        with self._lock:
            return len(self._queue) + sum(len(q) for q in self._by_tool.values())

    def usage_totals(self) -> dict[str, int]:
        """Sum of the usage fields in responses the server delivered."""
        totals = dict.fromkeys(USAGE_KEYS, 0)
        with self._lock:
            for r in self.requests:
                if r.delivered and r.usage:
                    for k in USAGE_KEYS:
                        totals[k] += int(r.usage.get(k) or 0)
        return totals

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "FakeAnthropic":
        server = self

        class Handler(_Handler):
            fake = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fake-anthropic", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "FakeAnthropic":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- behaviour -------------------------------------------------------------------------
    def _next_reply(self, rec: RecordedRequest) -> Reply:
        with self._lock:
            queue = self._by_tool.get(rec.forced_tool or "")
            if queue:
                return queue.popleft()
            if self._queue:
                return self._queue.popleft()
        if self.responder is not None:
            return self.responder(rec)
        return error(400, "invalid_request_error", "fake server: script exhausted (no reply queued)")

    def _usage_for(self, body: dict[str, Any], content: list[dict[str, Any]], given: dict[str, int] | None) -> dict[str, int]:
        """Given usage, or an estimate that mimics caching: the prefix up to the last cache_control
        block is written to the cache the first time it is seen and read from it afterwards."""
        if given is not None:
            return {k: int(given.get(k, 0)) for k in USAGE_KEYS}
        prefix: list[Any] = list(body.get("tools") or [])
        rest: list[Any] = list(body["messages"])
        system = body.get("system")
        sys_blocks = [{"type": "text", "text": system}] if isinstance(system, str) else list(system or [])
        marks = [i for i, b in enumerate(sys_blocks) if "cache_control" in b]
        if marks:
            prefix += sys_blocks[: marks[-1] + 1]
            rest += sys_blocks[marks[-1] + 1:]
        else:
            rest += sys_blocks
            prefix = []
        n_prefix = _estimate(prefix)
        key = hashlib.sha256(json.dumps(prefix, sort_keys=True).encode()).hexdigest()
        with self._lock:
            hit = key in self._cache_seen
            self._cache_seen.add(key)
        return {
            "input_tokens": _estimate(rest),
            "output_tokens": _estimate(content),
            "cache_creation_input_tokens": 0 if hit or not n_prefix else n_prefix,
            "cache_read_input_tokens": n_prefix if hit else 0,
        }

    def _message(self, body: dict[str, Any], reply: Reply) -> tuple[dict[str, Any], dict[str, int]]:
        forced = ((body.get("tool_choice") or {}).get("name")) or next(iter(t["name"] for t in body.get("tools") or []), "tool")
        content = []
        for block in reply.content or []:
            block = dict(block)
            if block["type"] == "tool_use":
                block["name"] = block["name"] or forced
                block["id"] = f"toolu_fake{next(self._ids):06d}"
            content.append(block)
        usage = self._usage_for(body, content, reply.usage)
        msg = {"id": f"msg_fake{next(self._ids):06d}", "type": "message", "role": "assistant", "model": body["model"],
               "content": content, "stop_reason": reply.stop_reason, "stop_sequence": None, "usage": usage}
        return msg, usage


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake: FakeAnthropic

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        return

    def do_GET(self) -> None:
        self._send_json(404, {"type": "error", "error": {"type": "not_found_error", "message": "not found"}})

    def do_POST(self) -> None:
        fake = self.fake
        length = int(self.headers.get("content-length") or 0)
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            self._send_json(413, {"type": "error", "error": {"type": "request_too_large", "message": "too large"}})
            return
        raw_body = self.rfile.read(length)
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            body = json.loads(raw_body) if raw_body else None
        except json.JSONDecodeError:
            body = None
        rec = RecordedRequest(index=len(fake.requests), method="POST", path=self.path, headers=headers, body=body)
        with fake._lock:
            if len(fake.requests) >= MAX_RECORDS:
                raise RuntimeError("fake server: too many requests recorded (runaway client?)")
            fake.requests.append(rec)
        if self.path.split("?")[0] != "/v1/messages":
            self._finish(rec, "error", 404, {"type": "error", "error": {"type": "not_found_error", "message": self.path}})
            return
        try:
            check_request(headers, body, fake.expected_key)
        except InvalidRequest as exc:
            self._finish(rec, "invalid", exc.status, {"type": "error", "error": {"type": exc.error_type, "message": exc.message}})
            return
        reply = fake._next_reply(rec)
        rec.reply_kind = reply.kind
        if reply.delay and fake._stop.wait(reply.delay):
            return
        if reply.kind in ("drop", "hang"):
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if reply.kind == "raw":
            self._finish(rec, "raw", reply.status, reply.body, headers=reply.headers)
        elif reply.kind == "error":
            payload = {"type": "error", "error": {"type": reply.error_type, "message": reply.message}}
            self._finish(rec, "error", reply.status, payload, headers=reply.headers)
        else:
            assert body is not None
            msg, usage = fake._message(body, reply)
            rec.usage = usage
            self._finish(rec, "message", 200, msg)

    def _finish(self, rec: RecordedRequest, kind: str, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        rec.reply_kind, rec.status = kind, status
        rec.delivered = True  # before writing: the client may act on the reply before this thread resumes
        if not self._send_json(status, payload, headers):
            rec.delivered = False

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> bool:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        try:
            self.send_response(status)
            sent = {k.lower() for k in (headers or {})}
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            if "content-type" not in sent:
                self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.send_header("request-id", f"req_fake{next(self.fake._ids):06d}")
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
            return True
        except OSError:  # the client went away: nothing was delivered
            self.close_connection = True
            return False

