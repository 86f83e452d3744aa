"""report.html: one self-contained file (inline CSS, PNGs as data URIs, no script, no URL).

Why so strict: the report is opened offline, possibly years later, and it shows text written by
an agent. Everything from the run is escaped, and a Content-Security-Policy forbids any fetch
(images only from data: URIs) as a second line of defence should an escape ever be missed.
"""

from __future__ import annotations

import base64

from orchestrator.report import fmt
from orchestrator.report.assemble import Document, Plot, Table
from orchestrator.report.ledger_figures import DECISION_COLOURS
from orchestrator.report.specs import Example, FeatureCard

h = fmt.h
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
CSS = """
:root{--ink:#1d2530;--muted:#5f6b7a;--line:#dde3ea;--bg:#fbfcfd;--accent:#1f5fa8}
*{box-sizing:border-box}
body{margin:0;font:15px/1.55 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--ink);background:var(--bg)}
header{background:#17324d;color:#fff;padding:22px 32px 14px}
header h1{margin:0 0 4px;font-size:24px}
header .meta{color:#c9d6e3;font-size:13px}
nav{margin-top:10px;font-size:13px}
nav a{color:#fff;margin-right:14px;text-decoration:none;border-bottom:1px dotted #9fb6cc}
main{max-width:1180px;margin:0 auto;padding:8px 32px 48px}
section{margin-top:28px}
h2{font-size:20px;border-bottom:2px solid var(--line);padding-bottom:4px}
h3{font-size:16px;margin:22px 0 6px}
.answer p:first-child{font-size:16px}
.agent{border-left:4px solid var(--accent);background:#eef4fb;padding:8px 14px;margin:8px 0;white-space:pre-wrap}
blockquote{margin:6px 0;padding:6px 12px;border-left:3px solid var(--line);color:#334;white-space:pre-wrap;background:#f4f6f8}
table{border-collapse:collapse;margin:8px 0;font-size:13px}
th,td{border:1px solid var(--line);padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eef1f5}
td.num{font-variant-numeric:tabular-nums;white-space:nowrap;text-align:right}
figure{margin:14px 0;padding:10px;background:#fff;border:1px solid var(--line);border-radius:6px;display:inline-block;max-width:100%}
figure img{max-width:100%;height:auto;display:block}
figcaption{font-size:12px;color:var(--muted);margin-top:4px}
details{font-size:12px;margin-top:4px}
details table{font-size:11px}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;color:#fff;font-size:12px;font-weight:600}
.problem{color:#9a3412;font-size:13px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(460px,1fr));gap:14px}
.card{background:#fff;border:1px solid var(--line);border-radius:6px;padding:10px 14px}
.example{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px;margin:4px 0;line-height:1.9}
.tok{white-space:pre;border-radius:2px;padding:1px 0}
.muted{color:var(--muted)}
"""


def badge(decision: str) -> str:
    colour = DECISION_COLOURS.get(decision, "#555")
    return f'<span class="badge" style="background:{colour}">{h(decision)}</span>'


def _is_num(text: str) -> bool:
    return bool(text) and (text[0] in "+-[" or text[0].isdigit())


def _cell(text: str, header: str) -> str:
    if header == "decision":
        return f"<td>{badge(text)}</td>"
    return f'<td class="num">{h(text)}</td>' if _is_num(text) else f"<td>{h(text)}</td>"


def table(t: Table, cls: str = "") -> str:
    if not t.rows:
        return ""
    head = "".join(f"<th>{h(x)}</th>" for x in t.headers)
    body = ["<tr>" + "".join(_cell(c, t.headers[i] if i < len(t.headers) else "") for i, c in enumerate(row)) + "</tr>"
            for row in t.rows]
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def figure(p: Plot) -> str:
    data = base64.b64encode(p.png).decode("ascii")
    return (f'<figure id="fig-{h(p.key)}"><img src="data:image/png;base64,{data}" alt="{h(p.title)}">'
            f"<figcaption>{h(p.caption)}</figcaption>"
            f'<details><summary>numbers plotted ({len(p.data.rows)} rows, from {h(p.source)})</summary>'
            f'{table(p.data, "plot-data")}</details></figure>')


def example(ex: Example, top: float) -> str:
    if not ex.tokens:
        return f'<div class="example">{h(ex.text)}</div>'
    spans = []
    for tok, act in zip(ex.tokens, ex.activations or [0.0] * len(ex.tokens)):
        alpha = max(0.0, min(1.0, act / top)) if top > 0 else 0.0
        spans.append(f'<span class="tok" style="background:rgba(230,120,20,{alpha:.2f})" title="{act:.4g}">{h(tok)}</span>')
    return f'<div class="example">{"".join(spans)}</div>'


def feature_card(card: FeatureCard, attempt: int, decision: str = "") -> str:
    rows = []
    for name, score in sorted(card.scores.items()):
        base = card.baseline.get(name)
        z = card.z_score(name)
        rows.append([name, fmt.plain(score, 3), f"{fmt.plain(base.mean, 3)} ± {fmt.plain(base.std, 3)}" if base else "n/a",
                     f"{z:+.1f}" if z is not None else "n/a"])
    top = max((max(ex.activations, default=0.0) for ex in card.top_examples), default=0.0)
    examples = "".join(example(ex, top) for ex in card.top_examples) or '<p class="muted">no examples</p>'
    return (f'<div class="card"><h3>Latent {card.latent} <span class="muted">attempt {attempt:04d}</span> '
            f'{badge(decision) if decision else ""}</h3>'
            f"<p><b>Explanation.</b> {h(card.explanation) or '(none)'}</p>"
            f'{table(Table(["score", "value", "random-explanation baseline", "z"], rows))}'
            f"<p class=\"muted\">Top examples (colour: activation, hover for the value)</p>{examples}</div>")


def _section(sid: str, title: str, body: str) -> str:
    return f'<section id="{sid}"><h2>{h(title)}</h2>{body}</section>'


def render(doc: Document) -> str:
    d = doc.data
    nav = [("question", "Question"), ("answer", "Answer"), ("findings", "Findings")]
    nav += [("circuit", "Circuit")] if doc.circuits else []
    nav += [("evidence", "Evidence")] + ([("features", "Features")] if doc.has_features else [])
    nav += [("tried", "What was tried"), ("budget", "Budget")]
    links = "".join(f'<a href="#{sid}">{title}</a>' for sid, title in nav)
    parts = [
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Research report: {h(d.task_name)}</title><style>{CSS}</style></head><body>",
        f"<header><h1>Research report: {h(d.task_name)}</h1>"
        f'<div class="meta">run {h(d.run_id)} · model {h(d.model)} · status {h(d.status)}'
        f"{' · stopped by ' + h(d.stop_reason) if d.stop_reason else ''} · generated {h(doc.generated_at)}</div>"
        f"<nav>{links}</nav></header><main>",
        _section("question", "Question", f"<blockquote>{h(d.question) or '(no question in task.yaml)'}</blockquote>"),
    ]
    answer = "".join(f'<div class="agent">{h(p)}</div>' if (i == 0 and doc.answer_from_agent) else f"<p>{h(p)}</p>"
                     for i, p in enumerate(doc.answer))
    parts.append(_section("answer", "Answer", f'<div class="answer">{answer}</div>'))
    findings = table(doc.findings_table, "findings") or "<p>No finding has passed verification.</p>"
    parts.append(_section("findings", "Verified findings", findings + (figure(doc.forest) if doc.forest else "")))
    if doc.circuits:
        parts.append(_section("circuit", "Circuit", "".join(figure(p) for p in doc.circuits)))
    evidence = []
    for sec in doc.experiments:
        e = sec.data.entry
        evidence.append(
            f'<h3 id="attempt-{e.attempt:04d}">{e.attempt:04d} {h(e.slug)} <span class="muted">{h(e.method)}</span> {badge(e.decision)}</h3>'
            f"<p><b>Hypothesis.</b> {h(e.hypothesis) or '(none)'}</p><blockquote>{h(sec.data.summary.strip()) or '(no summary)'}</blockquote>"
            + "".join(figure(p) for p in sec.plots)
            + "".join(f'<p class="problem">{h(m)}</p>' for m in sec.data.problems))
    parts.append(_section("evidence", "Evidence by experiment", "".join(evidence) or "<p>No experiment has produced a result yet.</p>"))
    if doc.has_features:
        ordered = sorted(d.experiments, key=lambda x: x.entry.decision != "keep")  # kept explanations first
        cards = "".join(feature_card(c, x.entry.attempt, x.entry.decision) for x in ordered for c in x.feature_cards)
        parts.append(_section("features", "Features", f'<div class="cards">{cards}</div>'))
    tried = table(doc.attempts_table, "attempts") or "<p>No attempt has finished yet.</p>"
    if d.orphan_commits:
        tried += f'<p class="problem">Findings commits without a keep line in the ledger: {h(", ".join(f"{a:04d}" for a in d.orphan_commits))}</p>'
    parts.append(_section("tried", "What was tried", tried))
    parts.append(_section("budget", "Budget and stop", table(doc.budget_table, "budget") + "".join(figure(p) for p in doc.run_plots)))
    parts.append("</main></body></html>")
    return "\n".join(parts) + "\n"
