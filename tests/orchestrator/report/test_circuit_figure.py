"""A kept circuit finding is drawn in the report as a layered graph from its verified edges, with the
verifier's held-out figures beside it; a circuit that was not kept is not drawn."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from orchestrator.report import write_report
from orchestrator.report.circuits import drawn_subset, graph_spec, node_label
from tests.orchestrator.report.builders import A, C, add_attempts, make_run

EDGES = ["input->a0.h1<q>", "input->a0.kv0<k>", "a0.h1->m0", "m0->a2.kv1<v>", "a2.h4->m2", "m2->logits",
         "a2.h4->logits", "input->m0"]
SCORES = [-1.2, -0.8, -0.9, -0.7, -0.6, -1.5, 0.3, -0.2]


def figures(kept: bool) -> dict[str, Any]:
    return {"n_layers": 3, "n_heads": 9, "n_kv_heads": 3, "n_edges": len(EDGES),
            "nodes": ["input", "a0.h1", "m0", "a2.h4", "m2", "logits"], "method": "eap-ig", "ig_steps": 5,
            "ablation": "counterfactual", "held_out_pairs": 14, "exploration_pairs": 14, "m_full": 5.0, "m_empty": -5.0,
            "faithfulness": 0.83 if kept else 0.2, "random_faithfulness": [0.01, -0.02, 0.03], "random_edges": [8, 6, 7],
            "cpr": 1.04, "cmd": 0.07, "random_cpr": 0.24, "random_cmd": 0.76, "curve_percentages": [0.01, 0.1, 1.0],
            "curve": [0.5, 0.8, 1.0], "random_curve": [0.0, 0.0, 1.0], "signed_curve": [0.7, 1.05, 1.0],
            "signed": True, "stability_size": 8, "jaccard_mean": 0.61, "jaccard_std": 0.05, "jaccard_p05": 0.52,
            "jaccard_p95": 0.7, "jaccard_resamples": 100, "agreement": 1.0, "threshold": 0.5, "best_random": 0.03,
            "beats_random": kept, "min_jaccard": 0.5, "stable": True}


@dataclass
class CircuitC(C):
    def stats(self, index: int, n_before: int) -> dict[str, Any]:
        return super().stats(index, n_before) | {"details": {"kind": "circuit", "circuit": figures(self.kept)}}


def write_circuit_claim(run, attempt: int) -> None:
    path = run.result_path(attempt)
    payload = json.loads(path.read_text())
    payload["result"]["claims"] = [{"statement": "an 8-edge circuit", "expected_direction": "increase", "min_effect": 0.5,
                                    "circuit": {"edges": EDGES, "edge_scores": SCORES, "signed": True}}]
    path.write_text(json.dumps(payload))


def test_kept_circuit_is_drawn_from_its_verified_edges(tmp_path):
    run = make_run(tmp_path)
    add_attempts(run, [A("edge-circuit", "circuit_discovery", "keep", [CircuitC("an 8-edge circuit", 0.83)]),
                       A("edge-circuit-r2", "circuit_discovery", "discard", [CircuitC("weak", 0.2, kept=False)])])
    write_circuit_claim(run, 1)
    write_circuit_claim(run, 2)
    write_report(run.root, html=True)
    files = sorted(p.name for p in (run.root / "report_files").glob("c*.png"))
    assert files == ["c00-0001-0-circuit.png", "c00-0001-0-curves.png"]  # the discarded circuit is not drawn
    md = (run.root / "report.md").read_text()
    assert "## Circuit" in md and "report_files/c00-0001-0-circuit.png" in md
    for needle in ("held-out faithfulness (95% CI)", "1.040 / 0.240", "0.610 [0.520, 0.700]"):
        assert needle in md, needle
    html = (run.root / "report.html").read_text()
    assert "Verified circuit, finding 0001" in html


def test_large_circuits_are_drawn_by_their_heaviest_edges():
    edges = [f"a{layer}.h{h}->logits" for layer in range(30) for h in range(9)]
    scores = [float(-(i % 17)) for i in range(len(edges))]
    shown, shown_scores = drawn_subset(edges, scores)
    assert len({e.split("->")[0] for e in shown}) <= 40 and len(shown) <= 150
    assert min(abs(s) for s in shown_scores) >= max(abs(s) for e, s in zip(edges, scores) if e not in shown)
    assert [node_label(n) for n in ("input", "a12.h3", "m5", "logits")] == ["embed", "L12H3", "MLP5", "logits"]


def test_graph_is_layered_with_labels_and_inputs():
    spec = graph_spec({"edges": EDGES, "edge_scores": SCORES}, figures(True), "t")
    layers = {n.label: n.layer for n in spec.nodes}
    assert layers == {"embed": None, "L0H1": 0.0, "MLP0": 0.5, "L2H4": 2.0, "MLP2": 2.5, "logits": None}
    by_edge = {(e.source, e.target, e.input) for e in spec.edges}
    assert ("input", "a0.h1", "q") in by_edge and ("m0", "a2.h4", "v") in by_edge  # a kv input drawn into its head
    assert ("input", "a0.h1", "k") in by_edge
    assert {e.weight for e in spec.edges if e.source == "m2"} == {-1.5}


def test_finding_note_records_the_circuit_figures():
    from orchestrator.records import circuit_lines

    v = CircuitC("an 8-edge circuit", 0.83).stats(0, 0)
    text = "\n".join(circuit_lines([v]))
    assert "## Circuit verification (held-out pairs)" in text
    for needle in ("| 0 | yes | 8 | 4 | 0.830 [0.730, 0.980] | 0.50 |", "0.030 / 0.007", "1.040 / 0.240", "0.070 / 0.760",
                   "0.610 [0.520, 0.700] (min 0.50)", "| 1.000 | 14 |"):
        assert needle in text, needle
    assert circuit_lines([C("plain claim", 0.5).stats(0, 0)]) == []
