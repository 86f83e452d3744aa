"""Entry point: python -m orchestrator ...

The stop signals are routed to KeyboardInterrupt before the (slow) imports, so a Ctrl-C or SIGTERM
that lands while the program is still loading ends it with one line, not an import traceback.
"""

import os
import signal
import sys


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


for _sig in (signal.SIGTERM, signal.SIGHUP):
    signal.signal(_sig, _stop)


def _exit_interrupted() -> None:
    """Exit 130 without interpreter finalisation: after a KeyboardInterrupt, CPython sometimes ends a
    SystemExit(130) as death by SIGINT (-2) (seen in the kill campaign); the run's state is on disk already."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    threading = sys.modules.get("threading")
    for t in threading.enumerate() if threading else ():  # e.g. a sandbox worker killing its cancelled child
        if t is not threading.current_thread() and not t.daemon:
            t.join(timeout=5)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(130)


try:
    from orchestrator.cli import main
except KeyboardInterrupt:
    print("interrupted while starting; nothing was created or changed", file=sys.stderr)
    _exit_interrupted()

_LATE = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
try:
    code = main()
    for _sig in _LATE:  # the work is done: a late signal must not turn a finished run's exit into a
        signal.signal(_sig, signal.SIG_IGN)  # KeyboardInterrupt during interpreter shutdown
except KeyboardInterrupt:  # landed between main's own handlers and its return
    print("interrupted; resume with `python -m orchestrator resume RUN_DIR` if a run directory was made", file=sys.stderr)
    code = 130
for _sig in _LATE:
    signal.signal(_sig, signal.SIG_IGN)
if code == 130:
    _exit_interrupted()
raise SystemExit(code)
