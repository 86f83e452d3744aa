"""`python -m engine.warm [MODEL]`: convert and cache a model's weights once, then report load times.

Run by the set-up script and by the orchestrator before any sandboxed work: sandboxed children
read the cache read-only and cannot convert.
"""

from __future__ import annotations

import sys
import time


def main(argv: list[str]) -> int:
    from engine.errors import EngineError
    from engine.loading.resolve import resolve_model

    ref = argv[0] if argv else "smollm2-135m"
    start = time.perf_counter()
    try:
        resolved = resolve_model(ref)
    except EngineError as exc:
        print(f"engine.warm: {exc}", file=sys.stderr)
        return 2
    print(f"engine.warm: {ref} ready at {resolved.directory} ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
