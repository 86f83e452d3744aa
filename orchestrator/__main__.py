"""Entry point: python -m orchestrator ...

The stop signals are routed to KeyboardInterrupt before the (slow) imports, so a Ctrl-C or SIGTERM
that lands while the program is still loading ends it with one line, not an import traceback.
"""

import signal
import sys


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


for _sig in (signal.SIGTERM, signal.SIGHUP):
    signal.signal(_sig, _stop)
try:
    from orchestrator.cli import main
except KeyboardInterrupt:
    print("interrupted while starting; nothing was created or changed", file=sys.stderr)
    raise SystemExit(130) from None

code = main()
for _sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # the work is done: a late signal must not turn
    signal.signal(_sig, signal.SIG_IGN)  # a finished run's exit into a KeyboardInterrupt during shutdown
raise SystemExit(code)
