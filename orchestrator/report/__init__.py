"""The run report: report.md (+ report_files/*.png) and a self-contained report.html.

The loop calls ``write_report(run_dir)`` at the end of a run; ``python -m orchestrator report
RUN_DIR [--html]`` calls it on demand. Both only read the run (ledger, state, findings branch,
result files) and write the report files, so it is safe on a live run as well.
Matplotlib is imported only when a report is built, so `status` and `review` stay quick.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.report.data import ReportData, ReportError, load_report_data

if TYPE_CHECKING:
    from orchestrator.report.assemble import Document

__all__ = ["ReportData", "ReportError", "build_report", "load_report_data", "write_report"]


def _replace(path: Path, text: str) -> None:
    """Readers (a browser, a test) see the old report or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # two writers (loop, CLI) never share a temp file
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def build_report(run_dir: Path) -> "Document":
    """The report's document model (data + rendered plots) without writing anything."""
    from orchestrator.report.assemble import build_document

    return build_document(load_report_data(Path(run_dir)))


def write_report(run_dir: Path, html: bool = True) -> list[Path]:
    """Write report.md (its plots into report_files/) and, if ``html``, report.html; return their paths.

    Raises ReportError when ``run_dir`` is not a readable run directory.
    """
    from orchestrator.report import html as html_render
    from orchestrator.report import markdown

    run_dir = Path(run_dir)
    doc = build_report(run_dir)
    markdown.write_files(doc, run_dir)
    md_path = run_dir / "report.md"
    _replace(md_path, markdown.render(doc))
    paths = [md_path]
    if html:
        html_path = run_dir / "report.html"
        _replace(html_path, html_render.render(doc))
        paths.append(html_path)
    return paths
