"""`review --show N`: one attempt as a researcher reads it — verified figures, note, code, plots.

Why read the note and code from the findings commit when there is one: that is what the ratchet
vouched for; the working tree may hold a later edit. Discarded attempts can be shown too (from
the working tree), clearly labelled as not being findings.
"""

from __future__ import annotations

from typing import Any

import git

from orchestrator.ledger import read_ledger
from orchestrator.ratchet import Ratchet
from orchestrator.report import fmt
from orchestrator.report.data import claim_stats, experiment_data
from orchestrator.report.terminal import figure_text, safe
from orchestrator.rundir import RunDir


class NoSuchAttempt(LookupError):
    """The attempt is not in the ledger; the message lists the ones that are."""


def _blob(commit: git.Commit | None, path: str) -> str | None:
    if commit is None:
        return None
    try:
        return commit.tree[path].data_stream.read().decode("utf-8", errors="replace")
    except KeyError:
        return None


def _read(run: RunDir, commit: git.Commit | None, rel: str | None) -> str | None:
    if not rel:
        return None
    text = _blob(commit, rel)
    if text is None and (run.root / rel).is_file():
        text = (run.root / rel).read_text(encoding="utf-8", errors="replace")
    return text


def finding_detail(run: RunDir, attempt: int) -> dict[str, Any]:
    """Everything about one attempt: ledger figures, finding note, experiment code, figures."""
    entries = {e.attempt: e for e in read_ledger(run.ledger)}
    entry = entries.get(attempt)
    commits = dict(Ratchet(run.root).findings())
    if entry is None:
        kept = ", ".join(str(a) for a in sorted(commits)) or "none"
        raise NoSuchAttempt(f"attempt {attempt} is not in the ledger ({len(entries)} attempts; findings: {kept})")
    commit = commits.get(attempt)
    note_rel = run.rel(run.finding_path(attempt, entry.slug))
    x = experiment_data(run, entry)
    return {
        "run_dir": str(run.root),
        "attempt": attempt,
        "slug": entry.slug,
        "method": entry.method,
        "decision": entry.decision,
        "reason": entry.reason,
        "hypothesis": entry.hypothesis,
        "is_finding": commit is not None,
        "commit": commit.hexsha[:10] if commit is not None else None,
        "claims": [c.__dict__ for c in claim_stats(entry)],
        "note_path": note_rel,
        "note": _read(run, commit, note_rel),
        "code_path": entry.experiment_file,
        "code": _read(run, commit, entry.experiment_file),
        "result_path": x.source if x else None,
        "summary": x.summary if x else entry.result_summary,
        "figures": [f.model_dump(mode="json") for f in x.figures] if x else [],
        "feature_cards": [c.model_dump(mode="json") for c in x.feature_cards] if x else [],
        "figure_problems": x.problems if x else [],
        "_figure_specs": x.figures if x else [],
    }


def _section(title: str, body: str | None) -> list[str]:
    return [f"──── {title} " + "─" * max(4, 60 - len(title)), safe(body.rstrip()) if body else "(none)", ""]


def format_finding_detail(d: dict[str, Any]) -> str:
    status = f"finding on the findings branch (commit {d['commit']})" if d["is_finding"] else f"not a finding: {d['decision']}"
    lines = [safe(f"attempt {d['attempt']:04d} {d['slug']} ({d['method']}) — {status}"),
             safe(f"hypothesis: {fmt.one_line(d['hypothesis'])}"), safe(f"decision:   {d['decision']} — {fmt.one_line(d['reason'])}"), ""]
    if d["claims"]:
        lines.append("verified on held-out pairs:")
        for c in d["claims"]:
            lines.append(safe(
                f"  claim {c['claim_index']}  {'KEPT    ' if c['kept'] else 'not kept'}  effect {fmt.effect(c['effect'])} "
                f"{fmt.ci(c['ci_low'], c['ci_high'])}  p_adj {fmt.pval(c['adjusted_p'])}  floor {fmt.plain(c['noise_floor'])}  "
                f"n={c['n_pairs']}  {fmt.one_line(c['statement'], 160)}"))
        lines.append("")
    if d["is_finding"]:
        lines += _section(d["note_path"], d["note"])
    lines += _section(d["code_path"] or "experiment", d["code"])
    lines += _section(f"summary ({d['result_path'] or 'no result file'})", d["summary"])
    specs = d["_figure_specs"]
    if specs or d["figure_problems"]:
        body = "\n\n".join(figure_text(s) for s in specs)
        body += "".join(f"\n{p}" for p in d["figure_problems"])
        lines += _section(f"figures ({len(specs)}; as plots: python -m orchestrator report {d['run_dir']} --html)", body)
    if d["feature_cards"]:
        cards = [f"latent {c['latent']}: {fmt.one_line(c['explanation'], 200)}  scores "
                 + ", ".join(f"{k} {fmt.plain(v, 3)}" for k, v in sorted(c["scores"].items())) for c in d["feature_cards"]]
        lines += _section("feature cards", "\n".join(cards))
    return "\n".join(lines).rstrip()


def detail_json(d: dict[str, Any]) -> dict[str, Any]:
    """The detail without in-memory objects (for --json)."""
    return {k: v for k, v in d.items() if not k.startswith("_")}
