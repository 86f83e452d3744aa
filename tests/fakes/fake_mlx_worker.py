"""A stand-in for engine.generate_worker that misbehaves on purpose (no mlx needed).

Run as ``python fake_mlx_worker.py MODE [TEXT]``; MODE is one of: garbage, crash, hang, badload,
protocol, valid, env. ``valid`` answers with TEXT (the reply after the "{" prefill); ``env`` answers
with its own environment as the ``name`` of a Person-shaped object (so tests can check that no
secret reached the child).
"""

from __future__ import annotations

import json
import os
import sys
import time


def send(payload: dict) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


def main() -> int:
    mode = sys.argv[1]
    if mode == "badload":
        send({"ready": False, "error": "ModelNotFoundError: model 'nope' not found on this machine"})
        return 1
    send({"ready": True, "model": "fake"})
    for line in sys.stdin:
        json.loads(line)
        if mode == "crash":
            sys.stderr.write("Fatal Python error: Aborted (simulated MLX abort)\n")
            sys.stderr.flush()
            os._exit(134)
        if mode == "hang":
            time.sleep(3600)
        if mode == "protocol":
            sys.stdout.write("this is not json\n")
            sys.stdout.flush()
            continue
        text = {"garbage": "lol I am a tiny model and I like turtles",
                "valid": sys.argv[2] if len(sys.argv) > 2 else "}",
                "env": '"name": ' + json.dumps(json.dumps(dict(os.environ))) + ', "age": 1}'}[mode]
        send({"ok": True, "text": text, "prompt_tokens": 100, "completion_tokens": 7, "stopped": "eos"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
