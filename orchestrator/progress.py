"""The live progress line: phase, experiment n/max, kept, elapsed, spend.

Why two modes: on a terminal a single rich line that updates in place; when piped (CI, nohup)
plain lines on each phase change, so logs stay readable.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, replace
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from rich.text import Text


@dataclass
class Snapshot:
    phase: str
    attempt: int
    max_experiments: int
    completed: int
    kept: int
    elapsed_s: float
    dollars: float
    tokens: int
    slug: str = ""


def render(s: Snapshot) -> str:
    m, sec = divmod(int(s.elapsed_s), 60)
    h, m = divmod(m, 60)
    slug = f" {s.slug}" if s.slug else ""
    return (
        f"[{s.phase:<10}] experiment {s.attempt}/{s.max_experiments}{slug} | done {s.completed} | kept {s.kept} | "
        f"{h:d}:{m:02d}:{sec:02d} | ${s.dollars:.2f} | {s.tokens} tok"
    )


class _LiveLine:
    """Rendered by rich at each refresh, so the clock keeps ticking during a long experiment."""

    def __init__(self) -> None:
        self.snap: Snapshot | None = None
        self.at = time.monotonic()

    def __rich__(self) -> "Text":
        from rich.text import Text

        if self.snap is None:
            return Text("starting…")
        ticking = replace(self.snap, elapsed_s=self.snap.elapsed_s + time.monotonic() - self.at)
        return Text(render(ticking))  # Text, not a str: "[planning]" must not be read as markup


class Progress:
    """Rich live line on a TTY, plain lines otherwise; ``quiet`` prints nothing."""

    def __init__(self, stream: IO[str] | None = None, quiet: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self._live = None
        self._last = ""
        if not quiet and self.stream.isatty():
            from rich.console import Console
            from rich.live import Live

            self._line = _LiveLine()
            self._live = Live(self._line, console=Console(file=self.stream), refresh_per_second=2, transient=False)
            self._live.start()

    def update(self, snap: Snapshot) -> None:
        if self.quiet:
            return
        line = render(snap)
        if self._live is not None:
            self._line.snap, self._line.at = snap, time.monotonic()
        elif line.split("|")[0] != self._last.split("|")[0]:  # plain mode: one line per phase change
            print(line, file=self.stream, flush=True)
        self._last = line

    def message(self, text: str) -> None:
        if self.quiet:
            return
        if self._live is not None:
            self._live.console.print(text)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
