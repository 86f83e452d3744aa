"""Child process for the mlx provider: loads a local instruct model and generates text on request.

Why a separate process: the orchestrator never imports mlx (an MLX abort or OOM must not take the
loop down). Run as ``python -I -m engine.generate_worker --model REF``; speaks JSON lines:
stdout first carries {"ready": true, ...} (or {"ready": false, "error": ...}), then one response per
request line on stdin: {"messages": [{"role", "content"}], "prefill": "{", "max_tokens": N,
"deadline_s": T, "stop_at_json_end": true} -> {"ok": true, "text", "prompt_tokens", "completion_tokens",
"stopped", "truncated"} or {"ok": false, "error"}. Anything else the libraries print goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import IO, Any

MAX_REQUEST_BYTES = 2_000_000
CHATML_STOP = ("<|im_end|>", "<|endoftext|>")


class JsonEnd:
    """Tracks brace depth outside JSON strings, to stop generating when the object closes."""

    def __init__(self, prefill: str) -> None:
        self.depth, self.in_string, self.escape = 0, False, False
        self.feed(prefill)

    def feed(self, text: str) -> bool:
        for ch in text:
            if self.in_string:
                if self.escape:
                    self.escape = False
                elif ch == "\\":
                    self.escape = True
                elif ch == '"':
                    self.in_string = False
            elif ch == '"':
                self.in_string = True
            elif ch == "{":
                self.depth += 1
            elif ch == "}":
                self.depth -= 1
                if self.depth <= 0:
                    return True
        return False


def chatml(messages: list[dict[str, str]]) -> str:
    """SmolLM2's template (ChatML), used when the model directory ships none."""
    out = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return out + "<|im_start|>assistant\n"


class Generator:
    def __init__(self, ref: str, max_prompt_tokens: int) -> None:
        from engine.loading.resolve import load_native

        self.model, self.tokenizer, _config, resolved = load_native(ref)
        self.name = resolved.name
        self.max_prompt_tokens = max_prompt_tokens
        self.hf_tokenizer = None
        config = resolved.directory / "tokenizer_config.json"
        if config.is_file() and "chat_template" in json.loads(config.read_text(encoding="utf-8")):
            from transformers import AutoTokenizer

            self.hf_tokenizer = AutoTokenizer.from_pretrained(str(resolved.directory), local_files_only=True)
        self.stop_ids = set()
        for text in CHATML_STOP:
            ids = self.tokenizer.encode(text)
            if len(ids) == 1:
                self.stop_ids.add(ids[0])
        eos = getattr(self.hf_tokenizer, "eos_token_id", None)
        if isinstance(eos, int):
            self.stop_ids.add(eos)

    def render(self, messages: list[dict[str, str]]) -> str:
        if self.hf_tokenizer is not None:
            return str(self.hf_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
        return chatml(messages)

    def generate(self, req: dict[str, Any]) -> dict[str, Any]:
        import mlx.core as mx
        from mlx_lm.generate import generate_step
        from mlx_lm.sample_utils import make_logits_processors, make_sampler

        prefill = str(req.get("prefill", ""))
        ids = self.tokenizer.encode(self.render(list(req["messages"])) + prefill)
        truncated = len(ids) > self.max_prompt_tokens
        if truncated:  # keep the start (instructions) and the end (the question and the prefill)
            head = self.max_prompt_tokens // 3
            ids = ids[:head] + ids[-(self.max_prompt_tokens - head):]
        max_tokens = max(1, min(int(req.get("max_tokens", 256)), 4096))
        deadline = time.monotonic() + float(req.get("deadline_s", 60.0))
        tracker = JsonEnd(prefill) if req.get("stop_at_json_end") else None
        sampler = make_sampler(float(req.get("temperature", 0.0)))
        processors = make_logits_processors(repetition_penalty=float(req.get("repetition_penalty", 1.1)))
        out: list[int] = []
        stopped = "max_tokens"
        for token, _ in generate_step(mx.array(ids), self.model, max_tokens=max_tokens, sampler=sampler,
                                      logits_processors=processors):
            tok = int(token)
            if tok in self.stop_ids:
                stopped = "eos"
                break
            out.append(tok)
            if tracker is not None and tracker.feed(self.tokenizer.id_to_str(tok)):
                stopped = "json_end"
                break
            if time.monotonic() > deadline:
                stopped = "deadline"
                break
        return {"ok": True, "text": self.tokenizer.decode(out), "prompt_tokens": len(ids),
                "completion_tokens": len(out), "stopped": stopped, "truncated": truncated}


def _send(stream: IO[str], payload: dict[str, Any]) -> None:
    stream.write(json.dumps(payload) + "\n")
    stream.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--max-prompt-tokens", type=int, default=6000)
    args = parser.parse_args(argv)
    proto = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)  # stray prints from libraries must not corrupt the protocol
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        gen = Generator(args.model, args.max_prompt_tokens)
    except Exception as exc:  # report any load failure to the parent, which turns it into a clear error
        _send(proto, {"ready": False, "error": f"{type(exc).__name__}: {exc}"[:2000]})
        return 1
    _send(proto, {"ready": True, "model": gen.name, "chat_template": gen.hf_tokenizer is not None})
    while True:
        line = sys.stdin.readline(MAX_REQUEST_BYTES)
        if not line:
            return 0
        try:
            req = json.loads(line)
            if not isinstance(req, dict) or not isinstance(req.get("messages"), list):
                raise ValueError("request must be an object with a messages list")
            resp = gen.generate(req)
        except Exception as exc:  # one bad request must not kill the worker; the parent records it
            resp = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:2000]}
        _send(proto, resp)


if __name__ == "__main__":
    sys.exit(main())
