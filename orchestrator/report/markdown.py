"""report.md: the document as Markdown, with its plots as PNG files in report_files/.

Why files next to it rather than data URIs: Markdown viewers (GitHub, editors, `less`) show linked
images but many refuse data URIs; report.html is the self-contained rendering.
"""

from __future__ import annotations

from pathlib import Path

from orchestrator.report import fmt
from orchestrator.report.assemble import Document, Plot, Table
from orchestrator.report.specs import FeatureCard

FILES_DIR = "report_files"


def table(t: Table) -> list[str]:
    """A Markdown table; every cell escaped (cells may hold agent text)."""
    if not t.rows:
        return []
    head = [fmt.md_cell(x) or " " for x in t.headers]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(fmt.md_cell(c) for c in row) + " |" for row in t.rows]
    return lines + [""]


def image(p: Plot) -> list[str]:
    alt = fmt.one_line(p.title, 120).replace("[", "(").replace("]", ")").replace("\\", "/")
    return [f"![{fmt.md_cell(alt)}]({FILES_DIR}/{p.key}.png)", "", f"*{fmt.md(p.caption)}*", ""]


def _highlight(tokens: list[str], acts: list[float], top: float) -> str:
    out = []
    for tok, act in zip(tokens, acts):
        core = tok.strip()
        if not core:
            out.append(fmt.md_cell(tok) if tok else "")
            continue
        lead, trail = tok[: len(tok) - len(tok.lstrip())], tok[len(tok.rstrip()):]
        text = fmt.md_cell(core)
        out.append(lead + (f"**{text}**" if top > 0 and act >= 0.5 * top else text) + trail)
    return "".join(out).replace("\n", " ")


def feature_card(card: FeatureCard, attempt: int, decision: str = "") -> list[str]:
    verdict = {"keep": ", kept", "discard": ", not kept"}.get(decision, "")
    lines = [f"### Latent {card.latent} (attempt {attempt:04d}{verdict})", "", f"**Explanation.** {fmt.md(card.explanation) or '(none)'}", ""]
    if card.scores:
        rows = []
        for name, score in sorted(card.scores.items()):
            base = card.baseline.get(name)
            z = card.z_score(name)
            rows.append([name, fmt.plain(score, 3), f"{fmt.plain(base.mean, 3)} ± {fmt.plain(base.std, 3)}" if base else "n/a",
                         f"{z:+.1f}" if z is not None else "n/a"])
        lines += table(Table(["score", "value", "random-explanation baseline", "z"], rows))
    top = max((max(ex.activations, default=0.0) for ex in card.top_examples), default=0.0)
    for i, ex in enumerate(card.top_examples, 1):
        body = _highlight(ex.tokens, ex.activations, top) if ex.tokens else fmt.md(ex.text)
        peak = max(ex.activations, default=0.0)
        lines.append(f"{i}. {body} (max activation {peak:.3g})")
    return lines + [""]


def render(doc: Document) -> str:
    d = doc.data
    out = [f"# Research report: {fmt.md(d.task_name)}", "",
           f"Run `{fmt.one_line(d.run_id).replace('`', '')}` on model `{fmt.one_line(d.model).replace('`', '')}`; "
           f"status **{fmt.md(d.status)}**; generated {doc.generated_at}.", "",
           "## Question", "", fmt.md_block(d.question) if d.question else "(no question in task.yaml)", "",
           "## Answer", ""]
    for i, para in enumerate(doc.answer):
        out += [fmt.md_block(para) if (i == 0 and doc.answer_from_agent) else fmt.md(para), ""]
    out += ["## Verified findings", ""]
    out += table(doc.findings_table) or ["No finding has passed verification.", ""]
    if doc.forest is not None:
        out += image(doc.forest) + table(doc.forest.data)
    if doc.circuits:
        out += ["## Circuit", ""]
        for p in doc.circuits:
            out += image(p) + table(p.data)
    out += ["## Evidence by experiment", ""]
    if not doc.experiments:
        out += ["No experiment has produced a result yet.", ""]
    for sec in doc.experiments:
        e = sec.data.entry
        out += [f"### {e.attempt:04d} {fmt.md(e.slug)} ({fmt.md(e.method)}): {e.decision}", "",
                f"**Hypothesis.** {fmt.md(e.hypothesis) or '(none)'}", "", fmt.md_block(sec.data.summary), ""]
        for p in sec.plots:
            out += image(p)
        out += [f"- {fmt.md(msg)}" for msg in sec.data.problems] + ([""] if sec.data.problems else [])
    if doc.has_features:
        out += ["## Features", ""]
        for x in sorted(d.experiments, key=lambda x: x.entry.decision != "keep"):  # kept explanations first
            for card in x.feature_cards:
                out += feature_card(card, x.entry.attempt, x.entry.decision)
    out += ["## What was tried", ""]
    out += table(doc.attempts_table) or ["No attempt has finished yet.", ""]
    if d.orphan_commits:
        out += [f"**Warning.** Findings commits without a keep line in the ledger: {', '.join(f'{a:04d}' for a in d.orphan_commits)}.", ""]
    out += ["## Budget and stop", ""] + table(doc.budget_table)
    for p in doc.run_plots:
        out += image(p)
    return "\n".join(out).rstrip() + "\n"


def write_files(doc: Document, run_dir: Path) -> Path:
    """Write the plots into report_files/ (replacing an earlier report's) and return the folder."""
    folder = run_dir / FILES_DIR
    folder.mkdir(exist_ok=True)
    keep = {f"{p.key}.png" for p in all_plots(doc)}
    for old in folder.glob("*.png"):
        if old.name not in keep:
            old.unlink()
    for p in all_plots(doc):
        (folder / f"{p.key}.png").write_bytes(p.png)
    return folder


def all_plots(doc: Document) -> list[Plot]:
    plots = [doc.forest] if doc.forest else []
    plots += doc.circuits + [p for s in doc.experiments for p in s.plots] + doc.run_plots
    return plots
