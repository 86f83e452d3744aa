"""The report as a document: sections, tables and rendered plots, before any markup.

Why a document model between the data and the markup: report.md and report.html then show the
same tables, the same sentences and the same pictures (rendered once), and each plot carries the
table of the numbers it draws, which is what lets a test check a figure against the ledger.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

from orchestrator.report import fmt, ledger_figures
from orchestrator.report.data import ClaimStat, ExperimentData, ReportData
from orchestrator.report.figures import render_spec
from orchestrator.report.fmt import show_token
from orchestrator.report.specs import FigureSpec

STOP_REASONS = {
    "question_answered": "the research question was declared answered",
    "max_experiments": "the experiment budget was used up",
    "wall_clock": "the wall-clock budget ran out",
    "max_dollars": "the dollar budget ran out",
    "max_tokens": "the token budget ran out",
}


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]


@dataclass
class Plot:
    key: str  # unique file stem
    title: str
    caption: str
    png: bytes
    source: str  # "ledger" or the result file it was drawn from
    data: Table


@dataclass
class ExperimentSection:
    data: ExperimentData
    plots: list[Plot]


@dataclass
class Document:
    data: ReportData
    generated_at: str
    answer: list[str]  # sentences/paragraphs; the first may be the agent's answer (untrusted text)
    answer_from_agent: bool
    findings_table: Table
    forest: Plot | None
    circuits: list[Plot]
    experiments: list[ExperimentSection]
    attempts_table: Table
    budget_table: Table
    run_plots: list[Plot] = field(default_factory=list)

    @property
    def has_features(self) -> bool:
        return any(x.feature_cards for x in self.data.experiments)


def stop_text(d: ReportData) -> str:
    if d.stop_reason:
        return STOP_REASONS.get(d.stop_reason, fmt.one_line(d.stop_reason, 300))
    return {"running": "it is still running", "created": "it has not started"}.get(d.status, f"its status is {d.status}")


def counts_text(d: ReportData) -> str:
    return ", ".join(f"{n} {k}" for k, n in d.counts.items()) or "none"


def strongest(claims: list[ClaimStat]) -> ClaimStat | None:
    finite = [c for c in claims if fmt.is_num(c.effect)]
    return max(finite, key=lambda c: abs(c.effect)) if finite else None


def answer_sentences(d: ReportData) -> list[str]:
    """The answer in a few sentences, every number taken from the ledger."""
    out = [f"The run made {len(d.entries)} attempt(s) ({counts_text(d)}) and stopped because {stop_text(d)}."
           if d.stop_reason else f"So far {len(d.entries)} attempt(s) ({counts_text(d)}); {stop_text(d)}."]
    n = len(d.findings)
    best = strongest(d.kept_claims)
    if n and best is not None:
        out.append(
            f"{n} finding(s) passed verification on held-out pairs. The strongest verified claim (attempt {best.attempt:04d}): "
            f"\u201c{fmt.one_line(best.statement, 300)}\u201d, effect {fmt.effect(best.effect)} with 95% CI "
            f"{fmt.ci(best.ci_low, best.ci_high)} (adjusted p {fmt.pval(best.adjusted_p)}, noise floor "
            f"{fmt.plain(best.noise_floor)}, {best.n_pairs} pairs).")
    elif n:
        out.append(f"{n} finding(s) were kept by the run's keep rule; the ledger holds no claim statistics for them "
                   "(see each finding's evidence below).")
    else:
        out.append("No claim passed verification on held-out pairs, so the run supports no finding yet; "
                   "see what was tried below.")
    if not d.answer:
        out.append("No answer to the question was declared.")
    return out


def findings_table(d: ReportData) -> Table:
    rows = []
    for f in d.findings:
        commit = f.commit[:10] if f.commit else "not committed yet"
        for c in f.claims or []:
            rows.append([f"{c.attempt:04d}", fmt.one_line(c.statement, 400), fmt.effect(c.effect), fmt.ci(c.ci_low, c.ci_high),
                         fmt.pval(c.adjusted_p), fmt.plain(c.noise_floor), str(c.n_pairs), commit])
        if not f.claims:  # e.g. a feature explanation: its evidence is the result summary and its card
            text = " — ".join(t for t in (f.entry.hypothesis, f.entry.result_summary) if t)
            rows.append([f"{f.attempt:04d}", fmt.one_line(text, 400), "n/a", "n/a", "n/a", "n/a", "", commit])
    return Table(["finding", "claim", "effect", "95% CI", "adjusted p", "noise floor", "n", "commit"], rows)


def spec_table(spec: FigureSpec) -> Table:
    """The numbers a figure draws, as a table (rows as on the plot)."""
    if spec.type == "heatmap":
        width = len(spec.values[0]) if spec.values else 0
        xs = [show_token(t) for t in spec.x_ticks] or [str(i) for i in range(width)]
        ys = [show_token(t) for t in spec.y_ticks] or [str(i) for i in range(len(spec.values or []))]
        return Table([spec.y_label or "row", *xs], [[y, *(fmt.cell(v) for v in row)] for y, row in zip(ys, spec.values or [])])
    if spec.type == "graph":
        labels = {n.id: n.label or n.id for n in spec.nodes}
        return Table(["source", "target", "weight"],
                     [[labels[e.source], labels[e.target], fmt.cell(e.weight)] for e in spec.edges])
    groups = spec.groups()
    n = len(next(iter(groups.values())))
    xs = [show_token(t) for t in spec.x_ticks] or [str(i) for i in range(n)]
    return Table([spec.x_label or "x", *groups], [[x, *(fmt.cell(g[i]) for g in groups.values())] for i, x in enumerate(xs)])


def experiment_plots(x: ExperimentData, start: int) -> list[Plot]:
    plots = []
    for i, spec in enumerate(x.figures):
        key = f"{start + i:02d}-{x.entry.attempt:04d}-{fmt.slugify(spec.title or spec.type)}"
        caption = f"{spec.type} from attempt {x.entry.attempt:04d} ({x.entry.slug}), {x.source}"
        plots.append(Plot(key, spec.title or f"{spec.type} {i}", caption, render_spec(spec), x.source, spec_table(spec)))
    return plots


def forest_plot(d: ReportData) -> Plot | None:
    if not d.claims:
        return None
    rows = ledger_figures.forest_claims(d.claims)
    table = Table(["claim", "kept", "effect", "95% CI", "noise floor"],
                  [[c.label, "yes" if c.kept else "no", fmt.effect(c.effect), fmt.ci(c.ci_low, c.ci_high), fmt.plain(c.noise_floor)]
                   for c in rows])
    return Plot("00-forest", "Verified effects", "every claim the verifier re-measured on held-out pairs (from results.jsonl)",
                ledger_figures.forest(d.claims), "ledger", table)


def run_plots(d: ReportData) -> list[Plot]:
    if not d.entries:
        return []
    attempts = [f"{e.attempt:04d}" for e in d.entries]
    counts = ledger_figures.cumulative_decisions(d.entries)
    plots = [Plot("90-timeline", "Kept, discarded and crashed over the run", "from results.jsonl",
                  ledger_figures.timeline(d.entries), "ledger",
                  Table(["attempt", *counts], [[a, *(str(v[i]) for v in counts.values())] for i, a in enumerate(attempts)]))]
    phases = ledger_figures.phase_seconds(d.entries)
    if phases:
        plots.append(Plot("91-time", "Time per attempt", "seconds per phase, from results.jsonl",
                          ledger_figures.durations(d.entries), "ledger",
                          Table(["attempt", *phases], [[a, *(f"{v[i]:.2f}" for v in phases.values())] for i, a in enumerate(attempts)])))
    if d.dollars > 0 or d.tokens > 0:
        dollars, tokens = ledger_figures.cumulative_spend(d.entries)
        plots.append(Plot("92-spend", "Spend", "accumulated dollars and tokens, from results.jsonl",
                          ledger_figures.spend(d.entries), "ledger",
                          Table(["attempt", "dollars", "tokens"], [[a, f"{dollars[i]:.4f}", str(tokens[i])] for i, a in enumerate(attempts)])))
    return plots


def attempts_table(d: ReportData) -> Table:
    rows = []
    for e in d.entries:
        stats = [c for c in d.claims if c.attempt == e.attempt]
        best = strongest(stats)
        shown = f"{fmt.effect(best.effect)} {fmt.ci(best.ci_low, best.ci_high)}" if best else ""
        rows.append([f"{e.attempt:04d}", e.slug, e.method, e.decision, shown, fmt.one_line(e.reason, 300)])
    return Table(["attempt", "slug", "method", "decision", "best claim effect (95% CI)", "reason"], rows)


def budget_table(d: ReportData) -> Table:
    of = lambda limit, unit="": f" of {limit}{unit}" if limit is not None else ""  # noqa: E731
    rows = [
        ["experiments", f"{len(d.entries)}{of(d.max_experiments)}"],
        ["outcomes", counts_text(d)],
        ["findings", str(len(d.findings))],
        ["elapsed", f"{fmt.hms(d.elapsed_s)}{of(d.wall_clock_hours, ' h')}"],
        ["sessions", str(d.sessions)],
        ["LLM calls", str(d.calls)],
        ["tokens", f"{d.tokens}{of(d.max_tokens)}"],
        ["dollars", f"{fmt.dollars(d.dollars)}{of(fmt.dollars(d.max_dollars) if d.max_dollars is not None else None)}"],
        ["status", d.status],
        ["stop reason", d.stop_reason or "(none yet)"],
    ]
    return Table(["", "value"], rows)


def build_document(d: ReportData) -> Document:
    """Render every plot once and lay out the sections both renderings share."""
    sections, circuits, n = [], [], 1
    for x in d.experiments:
        plots = experiment_plots(x, n)
        n += len(plots)
        if x.entry.decision == "keep":
            circuits += [p for p, s in zip(plots, x.figures) if s.type == "graph"]
            plots = [p for p, s in zip(plots, x.figures) if s.type != "graph"]
        sections.append(ExperimentSection(x, plots))
    from orchestrator.report.circuits import circuit_plots  # imports this module's Plot and Table

    circuits = circuit_plots(d) + circuits
    answer = answer_sentences(d)
    return Document(
        data=d, generated_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        answer=([d.answer] if d.answer else []) + answer, answer_from_agent=bool(d.answer),
        findings_table=findings_table(d), forest=forest_plot(d), circuits=circuits, experiments=sections,
        attempts_table=attempts_table(d), budget_table=budget_table(d), run_plots=run_plots(d),
    )
