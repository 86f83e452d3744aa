"""Everything a report shows, read once from a run directory into plain typed records.

Why one loader shared by report.md, report.html and `review --show`: every number must come from
the ledger (effects, CIs, counts, spend) or from the experiments' result files (figures), and
reading them in one place is what keeps the two renderings and the ledger in agreement.
Read-only and lock-free, so it works on a live run too.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from orchestrator.ledger import LedgerCorrupt, LedgerEntry, read_ledger
from orchestrator.ratchet import Ratchet, RatchetError
from orchestrator.report.specs import FeatureCard, FigureSpec, parse_feature_cards, parse_figures
from orchestrator.rundir import RunDir, RunDirError, open_run_dir

DECISION_ORDER = ("keep", "discard", "crash", "violation", "rejected", "failed")


class ReportError(RuntimeError):
    """The run directory cannot be reported on; the message names what is missing or broken."""


@dataclass(frozen=True)
class ClaimStat:
    """One claim as the verifier measured it on held-out pairs (a ledger ``statistics`` item)."""

    attempt: int
    slug: str
    claim_index: int
    statement: str
    kept: bool
    effect: float
    ci_low: float
    ci_high: float
    p_value: float
    adjusted_p: float
    noise_floor: float
    n_pairs: int
    reason: str = ""

    @property
    def label(self) -> str:
        return f"{self.attempt:04d}.{self.claim_index} {self.slug}"


@dataclass
class Finding:
    """A kept attempt: its ledger line, its kept claims and (once committed) its findings commit."""

    entry: LedgerEntry
    claims: list[ClaimStat]
    commit: str | None

    @property
    def attempt(self) -> int:
        return self.entry.attempt

    @property
    def best(self) -> ClaimStat | None:
        return max(self.claims, key=lambda c: abs(c.effect)) if self.claims else None


@dataclass
class ExperimentData:
    """What one attempt's result file holds for the report (figures, feature cards, summary)."""

    entry: LedgerEntry
    source: str  # results/NNNN.json, relative to the run
    summary: str
    figures: list[FigureSpec]
    feature_cards: list[FeatureCard]
    problems: list[str]


@dataclass
class ReportData:
    run_dir: Path
    run_id: str
    task_name: str
    model: str
    question: str
    status: str
    stop_reason: str | None
    answer: str | None
    elapsed_s: float
    sessions: int
    max_experiments: int | None
    wall_clock_hours: float | None
    max_dollars: float | None
    max_tokens: int | None
    entries: list[LedgerEntry]
    findings: list[Finding]
    claims: list[ClaimStat]
    experiments: list[ExperimentData]
    orphan_commits: list[int] = field(default_factory=list)  # findings commits without a keep line

    @property
    def counts(self) -> dict[str, int]:
        c = Counter(e.decision for e in self.entries)
        return {d: c[d] for d in DECISION_ORDER if c[d]}

    @property
    def dollars(self) -> float:
        return sum(e.dollars for e in self.entries)

    @property
    def tokens(self) -> int:
        return sum(e.tokens for e in self.entries)

    @property
    def calls(self) -> int:
        return sum(e.calls for e in self.entries)

    @property
    def kept_claims(self) -> list[ClaimStat]:
        return [c for f in self.findings for c in f.claims]


def _float(value: Any, default: float = math.nan) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return default
    return x


def claim_stats(entry: LedgerEntry) -> list[ClaimStat]:
    """The ledger's verification figures of one attempt, in claim order."""
    out = []
    for i, v in enumerate(entry.statistics):
        out.append(ClaimStat(
            attempt=entry.attempt, slug=entry.slug, claim_index=int(v.get("claim_index", i)),
            statement=str(v.get("statement", "")), kept=bool(v.get("kept")),
            effect=_float(v.get("effect")), ci_low=_float(v.get("ci_low")), ci_high=_float(v.get("ci_high")),
            p_value=_float(v.get("p_value")), adjusted_p=_float(v.get("adjusted_p")),
            noise_floor=_float(v.get("noise_floor")), n_pairs=int(_float(v.get("n_pairs"), 0.0)),
            reason=str(v.get("reason", "")),
        ))
    return out


def read_task_meta(run: RunDir) -> dict[str, Any]:
    """task.yaml as a dict (not re-validated: the run was created from it, and the schema may have moved on)."""
    try:
        data = yaml.safe_load(run.task_yaml.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ReportError(f"{run.task_yaml}: not readable YAML ({exc}); restore it from git (`git show findings:task.yaml`)") from None
    return data if isinstance(data, dict) else {}


def read_result(run: RunDir, attempt: int) -> dict[str, Any] | None:
    """results/NNNN.json's ``result`` object, or None when the attempt produced none."""
    path = run.result_path(attempt)
    if not path.is_file():
        return None
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ReportError(f"{path}: not valid JSON ({exc}); the trusted harness writes it atomically, so it was edited") from None
    result = payload.get("result") if isinstance(payload, dict) else None
    return result if isinstance(result, dict) else None


def experiment_data(run: RunDir, entry: LedgerEntry) -> ExperimentData | None:
    result = read_result(run, entry.attempt)
    if result is None:
        return None
    measurements = result.get("measurements") if isinstance(result.get("measurements"), dict) else {}
    figures, fig_problems = parse_figures(measurements)
    cards, card_problems = parse_feature_cards(measurements)
    return ExperimentData(entry=entry, source=run.rel(run.result_path(entry.attempt)),
                          summary=str(result.get("summary", "")), figures=figures, feature_cards=cards,
                          problems=fig_problems + card_problems)


def _budgets(meta: dict[str, Any]) -> dict[str, Any]:
    b = meta.get("budgets")
    return b if isinstance(b, dict) else {}


def _opt_float(value: Any) -> float | None:
    x = _float(value)
    return None if math.isnan(x) else x


def load_report_data(run_dir: Path) -> ReportData:
    """Read task, state, ledger, findings branch and result files of ``run_dir``."""
    from orchestrator.features.cli import is_feature_run

    try:  # a feature run (contract/feature_task.json, no prompt-pair contract) reads the same way
        run = RunDir(Path(run_dir)) if is_feature_run(Path(run_dir)) else open_run_dir(Path(run_dir))
    except RunDirError as exc:
        raise ReportError(str(exc)) from None
    meta = read_task_meta(run)
    try:
        state = json.loads((run.root / "state.json").read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ReportError(f"{run.root / 'state.json'}: not valid JSON ({exc})") from None
    try:
        entries = read_ledger(run.ledger)
    except LedgerCorrupt as exc:
        raise ReportError(str(exc)) from None
    try:
        commits = {a: c.hexsha for a, c in Ratchet(run.root).findings()}
    except RatchetError as exc:
        raise ReportError(str(exc)) from None
    findings = [Finding(entry=e, claims=[c for c in claim_stats(e) if c.kept], commit=commits.get(e.attempt))
                for e in entries if e.decision == "keep"]
    kept_attempts = {f.attempt for f in findings}
    budgets = _budgets(meta)
    answered = [e for e in entries if e.question_answered and e.answer]
    experiments = [x for x in (experiment_data(run, e) for e in entries) if x is not None]
    max_tokens = budgets.get("max_tokens")
    return ReportData(
        run_dir=run.root, run_id=str(state.get("run_id") or run.root.name),
        task_name=str(state.get("task_name") or meta.get("name", "")), model=str(meta.get("model", "")),
        question=str(meta.get("question", "")).strip(), status=str(state.get("status", "unknown")),
        stop_reason=state.get("stop_reason"),
        answer=answered[-1].answer if answered else (state.get("answer") or None),
        elapsed_s=_float(state.get("elapsed_s"), 0.0), sessions=int(state.get("sessions", 0) or 0),
        max_experiments=int(budgets["max_experiments"]) if isinstance(budgets.get("max_experiments"), int) else None,
        wall_clock_hours=_opt_float(budgets.get("wall_clock_hours")),
        max_dollars=_opt_float(budgets.get("max_dollars")),
        max_tokens=int(max_tokens) if isinstance(max_tokens, int) else None,
        entries=entries, findings=findings, claims=[c for e in entries for c in claim_stats(e)],
        experiments=experiments, orphan_commits=sorted(a for a in commits if a not in kept_attempts),
    )
