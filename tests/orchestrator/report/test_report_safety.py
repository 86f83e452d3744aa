"""Agent-written text cannot inject markup or URLs; malformed figures are skipped with a reason."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from orchestrator.report import write_report
from orchestrator.report.specs import FigureSpec, parse_feature_cards, parse_figures
from orchestrator.rundir import RunDir
from tests.orchestrator.report import htmlparse
from tests.orchestrator.report.builders import A, C, add_attempts, heatmap, make_run

EVIL = ('<script>alert(1)</script><img src="http://evil.example/x.png" onerror="alert(2)">'
        '![t](https://evil.example/t.png) [click](javascript:alert(3)) <style>@import url(//evil.example/c.css)</style> '
        '$\\frac{1}{0}$ \x1b[2J\x1b]0;pwned\x07 </td></tr></table>')


def assert_no_external_reference(page: str) -> None:
    """Every URL-bearing attribute is a data: URI or an in-page anchor; no url() or @import in CSS."""
    parsed = htmlparse.parse(page)
    for tag, attr, value in parsed.url_attrs:
        assert value.startswith(("data:", "#")), f"<{tag} {attr}={value!r}> would fetch something"
    for style in parsed.styles:
        assert "url(" not in style and "@import" not in style, style
    assert "script" not in parsed.tags and "iframe" not in parsed.tags and "link" not in parsed.tags
    assert all(not a.startswith("on") for tag, a, _ in parsed.url_attrs)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> RunDir:
    run = make_run(tmp_path_factory.mktemp("hostile"))
    bad_figures = [
        heatmap(EVIL, x_ticks=[EVIL[:30]] * 9),
        {"type": "heatmap", "title": "ragged", "values": [[1, 2], [3]]},
        {"type": "pie", "title": "unknown type", "values": [1, 2]},
        {"type": "bar", "title": "text values", "values": ["a", "b"]},
        {"type": "graph", "title": "dangling edge", "nodes": [{"id": "a"}], "edges": [{"source": "a", "target": "zz"}]},
        "not an object",
    ]
    cards = [{"latent": 7, "explanation": EVIL, "scores": {"detection": 0.9},
              "top_examples": [{"text": EVIL, "tokens": ["<b>", EVIL[:20]], "activations": [1.0, 2.0]}]},
             {"latent": "not a number"}]
    add_attempts(run, [A("evil", "custom", "keep", [C(EVIL, 0.5)], figures=bad_figures, feature_cards=cards,
                         summary=EVIL, hypothesis=EVIL, reason=EVIL, answer=EVIL)])
    write_report(run.root)
    return run


def test_hostile_text_is_escaped_in_html(hostile: RunDir) -> None:
    page = (hostile.root / "report.html").read_text()
    assert_no_external_reference(page)
    assert "<script" not in page and "onerror=" not in page.replace("onerror=&quot;", "")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count("<table") == page.count("</table>")


def test_hostile_text_is_escaped_in_markdown(hostile: RunDir) -> None:
    md = (hostile.root / "report.md").read_text()
    assert "<script>" not in md and "<img" not in md and "<style>" not in md
    assert not re.search(r"(?<!\\)\]\((https?:|javascript:)", md) and "![t]" not in md
    images = re.findall(r"!\[[^\]]*\]\(([^)]*)\)", md)
    assert images and all(src.startswith("report_files/") for src in images)
    assert "\x1b" not in md


def test_bad_figures_and_cards_are_named_and_skipped(hostile: RunDir) -> None:
    md = (hostile.root / "report.md").read_text()
    for reason in ("figure 1 (ragged) skipped: heatmap rows must all have the same, non-zero length",
                   "figure 2 (unknown type) skipped: type: Input should be",
                   "figure 3 (text values) skipped: expected a number, got str 'a'",
                   "figure 4 (dangling edge) skipped: edges name unknown nodes",
                   "figure 5 skipped", "feature card 1 skipped: latent"):
        assert reason.replace("_", "\\_") in md or reason in md, reason
    assert md.count("](report_files/") >= 2  # the hostile-titled heatmap still draws, plus the forest plot


def test_default_report_has_no_url_at_all(html_text: str) -> None:
    assert_no_external_reference(html_text)
    text = re.sub(r'src="data:image/png;base64,[A-Za-z0-9+/=]+"', 'src=""', html_text)
    assert not re.search(r"https?:|//[a-z0-9]|url\(|@import", text, re.IGNORECASE), re.search(r"https?:|//|url\(", text)


def test_spec_validation_limits() -> None:
    figs, problems = parse_figures({"figures": [{"type": "heatmap", "values": [[0.0] * 300]}]})
    assert not figs and "at most 256" in problems[0]
    figs, problems = parse_figures({"figures": [{"type": "line", "series": {"a": [1, 2], "b": [1]}}]})
    assert "different lengths" in problems[0]
    figs, problems = parse_figures({"figures": [{"type": "bar", "values": [1, 2], "x_ticks": ["a"]}]})
    assert "1 x_ticks for 2 values" in problems[0]
    figs, _ = parse_figures({"figures": [{"type": "bar", "values": [1, None, float("inf")], "title": "t" * 1000}]})
    assert len(figs[0].title) == 300 and figs[0].values[0] == 1.0
    assert parse_figures({"figures": {"a": 1}})[1] == ['measurements["figures"] is not a list of figure objects']
    assert parse_feature_cards({})[0] == []
    spec = FigureSpec.model_validate({"type": "graph", "nodes": [{"id": "in"}, {"id": "h", "layer": 3}, {"id": "out"}],
                                      "edges": [{"source": "in", "target": "h"}, {"source": "h", "target": "out"}]})
    from orchestrator.report.specs import graph_layers

    assert graph_layers(spec) == {"in": 2.0, "h": 3.0, "out": 4.0}


def test_report_of_a_run_with_a_corrupt_result_file_names_it(tmp_path: Path) -> None:
    from orchestrator.report import ReportError

    run = make_run(tmp_path)
    add_attempts(run, [A("x", figures=[])])
    run.result_path(1).write_text("{not json")
    with pytest.raises(ReportError, match=r"results/0001.json: not valid JSON"):
        write_report(run.root)


@pytest.mark.parametrize("figure", [
    {"type": "heatmap", "values": [[1e308, -1e308], [None, 0.0]]},
    {"type": "heatmap", "values": [[None]]},
    {"type": "bar", "values": [1e308, -1e308], "x_ticks": ["\n", "\t"]},
    {"type": "bar", "series": {str(i): [0.5] * 100 for i in range(8)}},  # 800 bars: drawn as lines
    {"type": "line", "values": [1e308, -1e308, 0.0]},
    {"type": "line", "values": [None, None]},
    {"type": "graph", "nodes": [{"id": "a", "layer": 1e308}, {"id": "b"}], "edges": [{"source": "a", "target": "a", "weight": 1e308}]},
])
def test_extreme_values_render(figure: dict) -> None:
    from orchestrator.report.assemble import spec_table
    from orchestrator.report.figures import render_spec
    from orchestrator.report.terminal import figure_text

    (spec,), problems = parse_figures({"figures": [figure]})
    assert not problems
    assert render_spec(spec)[:8] == b"\x89PNG\r\n\x1a\n"
    assert figure_text(spec) and spec_table(spec).rows
