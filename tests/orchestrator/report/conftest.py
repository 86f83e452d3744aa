"""Shared synthetic runs: the default task's report is built once per session (rendering takes seconds); tests only read it."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.report import write_report
from orchestrator.rundir import RunDir
from tests.orchestrator.report.builders import add_attempts, default_task_attempts, make_run


@pytest.fixture(scope="session")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> RunDir:
    """A finished run of tasks/factual_recall.yaml shaped like the builtin programme's, with its report written."""
    run = make_run(tmp_path_factory.mktemp("default"))
    add_attempts(run, default_task_attempts())
    write_report(run.root, html=True)
    return run


@pytest.fixture
def html_text(default_run: RunDir) -> str:
    return (default_run.root / "report.html").read_text(encoding="utf-8")


@pytest.fixture
def md_text(default_run: RunDir) -> str:
    return (default_run.root / "report.md").read_text(encoding="utf-8")


def report_paths(run: RunDir) -> tuple[Path, Path]:
    return run.root / "report.md", run.root / "report.html"
