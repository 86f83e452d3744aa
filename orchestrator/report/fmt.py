"""Number and text formatting shared by report.md, report.html and the terminal views.

Why one place: tests parse the printed effects and CIs back and compare them with the ledger, so
every rendering must print a number the same way; and agent-written text must be escaped the same
way everywhere it lands.
"""

from __future__ import annotations

import html
import math
import re

EFFECT_DIGITS = 4
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def clean(text: object) -> str:
    """Text with control, terminal-escape and bidi-override characters removed (newlines and tabs kept)."""
    return _CONTROL.sub("", str(text))


def is_num(x: float | None) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def effect(x: float | None) -> str:
    """A verified effect: signed, four decimals (the finding notes use the same)."""
    return f"{x:+.{EFFECT_DIGITS}f}" if is_num(x) else "n/a"


def ci(lo: float | None, hi: float | None) -> str:
    return f"[{effect(lo)}, {effect(hi)}]"


def pval(p: float | None) -> str:
    return f"{p:.3g}" if is_num(p) else "n/a"


def plain(x: float | None, digits: int = 4) -> str:
    return f"{x:.{digits}f}" if is_num(x) else "n/a"


def cell(x: float | None) -> str:
    """A plotted value in a data table: six significant digits, blank for a gap."""
    return f"{x:.6g}" if is_num(x) else ""


def dollars(x: float) -> str:
    return f"${x:.2f}" if x < 100 else f"${x:,.0f}"


def hms(seconds: float) -> str:
    m, s = divmod(int(max(0.0, seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h:d}:{m:02d}:{s:02d}"


def one_line(text: str, limit: int = 0) -> str:
    """Collapse whitespace (agent text in a table cell must not break the table)."""
    out = " ".join(clean(text).split())
    return out if not limit or len(out) <= limit else out[: limit - 1] + "…"


_MD_SPECIAL = re.compile(r"([\\`|*_])|(!\[)|(\]\()")  # code, emphasis, table breaks, images, links
_MD_LEADING = re.compile(r"^(\s*)([#>+=-]|\d+[.)])")  # headings, quotes, lists when a line starts with them


def _md_escape(text: str) -> str:
    def sub(m: re.Match[str]) -> str:
        return "\\" + m.group(1) if m.group(1) else ("!\\[" if m.group(2) else "\\](")

    return _MD_SPECIAL.sub(sub, html.escape(text, quote=False))


def md_cell(text: str, limit: int = 0) -> str:
    """Text for a markdown table cell: one line, HTML and table syntax escaped."""
    return _md_escape(one_line(text, limit))


def _md_line(line: str) -> str:
    escaped = _md_escape(line)

    def neutralise(m: re.Match[str]) -> str:
        mark = m.group(2)
        return m.group(1) + (mark[:-1] + "\\" + mark[-1] if mark[0].isdigit() else "\\" + mark)

    return _MD_LEADING.sub(neutralise, escaped)


def md(text: str) -> str:
    """Agent text for report.md, on one line: no HTML (escaped), no links, images or table breaks."""
    return _md_line(one_line(text))


def md_block(text: str) -> str:
    """Multi-line agent text for report.md, as a blockquote (lines kept, same escaping as ``md``)."""
    lines = [line.rstrip() for line in clean(text).strip().splitlines()]
    return "\n".join("> " + _md_line(line) if line else ">" for line in lines) or "> (none)"


def h(text: object) -> str:
    """Anything from the run, escaped for HTML text or a quoted attribute."""
    return html.escape(clean(text), quote=True)


def slugify(text: str, limit: int = 40) -> str:
    out = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return out[:limit].strip("-") or "figure"


def show_token(token: str) -> str:
    """A prompt token as a tick label: whitespace made visible, control characters escaped."""
    out = token.replace("\n", "\\n").replace("\t", "\\t")
    out = "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in out)
    return out if out.strip() else repr(token)
