"""report.md and report.html of the default task: every number matches the ledger or the result files."""

from __future__ import annotations

import base64
import json
import math
import re
import struct
from collections import Counter
from pathlib import Path

import pytest

from orchestrator import cli
from orchestrator.ledger import read_ledger
from orchestrator.report import ReportError, write_report
from orchestrator.rundir import RunDir
from tests.orchestrator.report import htmlparse
from tests.orchestrator.report.builders import A, C, add_attempts, make_run

SECTIONS = ["question", "answer", "findings", "circuit", "evidence", "tried", "budget"]
MD_HEADINGS = ["## Question", "## Answer", "## Verified findings", "## Circuit", "## Evidence by experiment",
               "## What was tried", "## Budget and stop"]


def _kept_claims(run: RunDir) -> list[dict]:
    return [v for e in read_ledger(run.ledger) if e.decision == "keep" for v in e.statistics if v["kept"]]


def _num(text: str) -> float:
    return float(text.replace("+", ""))


def _ci(text: str) -> tuple[float, float]:
    lo, hi = text.strip("[]").split(", ")
    return _num(lo), _num(hi)


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


def test_both_files_have_every_section(default_run: RunDir, md_text: str, html_text: str) -> None:
    positions = [md_text.index(h) for h in MD_HEADINGS]
    assert positions == sorted(positions)
    parsed = htmlparse.parse(html_text)
    assert parsed.section_ids == SECTIONS
    assert len(parsed.images) >= 10 and all(img["src"].startswith("data:image/png;base64,") for img in parsed.images)
    for img in parsed.images:
        w, h = _png_size(base64.b64decode(img["src"].split(",", 1)[1]))
        assert w > 200 and h > 150
    for ref in re.findall(r"\]\((report_files/[^)]+\.png)\)", md_text):
        assert (default_run.root / ref).is_file(), ref


def test_findings_tables_match_the_ledger(default_run: RunDir, md_text: str, html_text: str) -> None:
    expected = [(f"{v['claim_index']}", v["statement"], v["effect"], v["ci_low"], v["ci_high"], v["adjusted_p"])
                for v in _kept_claims(default_run)]
    md_rows = htmlparse.md_table_after(md_text, "## Verified findings")
    html_rows = htmlparse.table(htmlparse.parse(html_text), "findings")
    assert len(md_rows) == len(html_rows) == len(expected) == 5
    for rows in (md_rows, html_rows):
        for row, (_, statement, effect, lo, hi, adj) in zip(rows, expected):
            assert row[1].replace("\\_", "_") == statement
            assert _num(row[2]) == pytest.approx(effect, abs=5e-5)
            assert _ci(row[3]) == pytest.approx((lo, hi), abs=5e-5)
            assert float(row[4]) == pytest.approx(adj, rel=5e-3)


def test_forest_plot_numbers_are_the_ledger_claims(default_run: RunDir, html_text: str) -> None:
    every = [(e.attempt, v) for e in read_ledger(default_run.ledger) for v in e.statistics]
    rows = htmlparse.figure_table(htmlparse.parse(html_text), "fig-00-forest")[1:]
    assert len(rows) == len(every) == 7
    for row, (attempt, v) in zip(rows, every):
        assert row[0].startswith(f"{attempt:04d}.{v['claim_index']}")
        assert row[1] == ("yes" if v["kept"] else "no")
        assert _num(row[2]) == pytest.approx(v["effect"], abs=5e-5)
        assert _ci(row[3]) == pytest.approx((v["ci_low"], v["ci_high"]), abs=5e-5)


def test_result_figures_match_the_result_files(default_run: RunDir, html_text: str) -> None:
    parsed = htmlparse.parse(html_text)
    figure_ids = [t.figure for t in parsed.tables if t.figure and not t.figure.startswith(("fig-00", "fig-9"))]
    drawn = 0
    for path in sorted(default_run.results.glob("*.json")):
        attempt = int(path.stem)
        for spec in json.loads(path.read_text())["result"]["measurements"]["figures"]:
            fid = next(f for f in figure_ids if f"-{attempt:04d}-" in f and f.endswith(_slug(spec["title"])))
            rows = htmlparse.figure_table(parsed, fid)
            drawn += 1
            if spec["type"] == "heatmap":
                assert rows[0][1:] == spec["x_ticks"] or [t.strip() for t in rows[0][1:]] == [t.strip() for t in spec["x_ticks"]]
                values = [float(c) for row in rows[1:] for c in row[1:]]
                assert values == pytest.approx([v for row in spec["values"] for v in row], rel=1e-5)
            elif spec["type"] in ("bar", "line"):
                groups = [spec["values"]] if "values" in spec else list(spec["series"].values())
                for g, col in enumerate(groups):
                    assert [float(r[1 + g]) for r in rows[1:]] == pytest.approx(col, rel=1e-5)
            else:
                assert [(r[0], r[1], float(r[2])) for r in rows[1:]] == [
                    (_label(spec, e["source"]), _label(spec, e["target"]), pytest.approx(e["weight"])) for e in spec["edges"]]
    assert drawn == 9


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:40].strip("-")


def _label(spec: dict, node_id: str) -> str:
    return next(n.get("label") or n["id"] for n in spec["nodes"] if n["id"] == node_id)


def test_counts_spend_and_answer_match_the_ledger(default_run: RunDir, md_text: str, html_text: str) -> None:
    entries = read_ledger(default_run.ledger)
    counts = Counter(e.decision for e in entries)
    budget = dict((r[0], r[1]) for r in htmlparse.table(htmlparse.parse(html_text), "budget"))
    assert budget["experiments"] == f"{len(entries)} of 12"
    assert budget["outcomes"] == f"{counts['keep']} keep, {counts['discard']} discard, {counts['crash']} crash"
    assert budget["findings"] == str(counts["keep"])
    assert budget["dollars"] == f"${sum(e.dollars for e in entries):.2f}"
    assert budget["stop reason"] == "max_experiments" and budget["elapsed"] == "0:12:34 of 0.25 h"
    attempts = htmlparse.table(htmlparse.parse(html_text), "attempts")
    assert [(int(r[0]), r[3]) for r in attempts] == [(e.attempt, e.decision) for e in entries]
    answer = next(e.answer for e in entries if e.question_answered)
    assert answer in html_text and "effect +0.7100 with 95% CI [+0.6100, +0.8600]" in md_text


def test_circuit_graph_of_the_kept_experiment_is_in_the_circuit_section(html_text: str) -> None:
    circuit = html_text.split('<section id="circuit">', 1)[1].split("</section>", 1)[0]
    assert circuit.count("<img ") == 1 and "Candidate circuit" in circuit


def test_cli_report_prints_the_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = make_run(tmp_path)
    add_attempts(run, [A("one", decision="keep", claims=[C("one", 0.4)])])
    assert cli.main(["report", str(run.root)]) == 0
    assert capsys.readouterr().out.split() == [str(run.root / "report.md")] and not (run.root / "report.html").exists()
    assert cli.main(["report", str(run.root), "--html"]) == 0
    assert capsys.readouterr().out.split() == [str(run.root / "report.md"), str(run.root / "report.html")]
    assert sorted(p.name for p in (run.root / "report_files").iterdir()) == ["00-forest.png", "90-timeline.png", "91-time.png"]


def test_write_report_refuses_a_non_run_directory(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="not a run directory"):
        write_report(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_empty_run_and_feature_cards(tmp_path: Path) -> None:
    run = make_run(tmp_path, "empty")
    md_path, html_path = write_report(run.root)
    md = md_path.read_text()
    assert "No finding has passed verification." in md and "No experiment has produced a result yet." in md
    assert "## Circuit" not in md and "## Features" not in md
    assert htmlparse.parse(html_path.read_text()).section_ids == ["question", "answer", "findings", "evidence", "tried", "budget"]
    from tests.orchestrator.report.builders import feature_cards

    add_attempts(run, [A("latent-1234", "feature_explanation", "keep", [C("latent 1234 detects landmarks", 0.3)],
                         feature_cards=feature_cards(), dollars=0.25, tokens=4000)])
    md_path, html_path = write_report(run.root)
    md, page = md_path.read_text(), html_path.read_text()
    assert "### Latent 1234" in md and "**Tower**" in md and "| detection | 0.810 | 0.520 ± 0.040 | +7.3 |" in md
    parsed = htmlparse.parse(page)
    assert "features" in parsed.section_ids
    alphas = [float(m) for m in re.findall(r"rgba\(230,120,20,([0-9.]+)\)", page)]
    assert max(alphas) == 1.0 and min(alphas) == 0.0
    assert any(t.figure == "fig-92-spend" for t in parsed.tables)  # dollars were spent: the spend plot is drawn


def test_nan_and_infinite_values_are_gaps_not_errors(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    grid = {"type": "heatmap", "title": "gaps", "values": [[1.0, None], [float("nan"), -2.0]]}
    add_attempts(run, [A("gaps", figures=[grid, {"type": "line", "title": "l", "values": [1, None, 3]}])])
    md = write_report(run.root)[0].read_text()
    assert "gaps" in md and math.isfinite(1.0)


def test_feature_run_as_the_feature_task_writes_it(tmp_path: Path) -> None:
    """Kept latents carry no claim statistics; scores may be None; examples may be long."""
    run = make_run(tmp_path)
    toks = [f" t{i}" for i in range(300)]
    acts = [0.0] * 300
    acts[250] = 5.0
    card = {"latent": 99, "explanation": "the token t250", "scores": {"detection": 0.9, "simulation": None},
            "baseline": {"detection": {"mean": 0.5, "std": 0.1}},
            "top_examples": [{"text": "".join(toks), "tokens": toks, "activations": acts}]}
    add_attempts(run, [A("latent-99", "explain-latent", "keep", feature_cards=[card], summary="test detection 0.900 vs 0.500")])
    md_path, html_path = write_report(run.root)
    md = md_path.read_text()
    (row,) = htmlparse.md_table_after(md, "## Verified findings")
    assert row[0] == "0001" and row[2] == "n/a" and "latent-99 hypothesis" in row[1]
    assert "| simulation | n/a | n/a | n/a |" in md and "| detection | 0.900 | 0.500 ± 0.100 | +4.0 |" in md
    assert "**t250**" in md and " t100" not in md  # the 128-token window around the peak
    assert "kept by the run's keep rule" in md
