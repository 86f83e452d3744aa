"""Synthetic run directories for report/review/status tests (no engine, no loop).

A run is made with the real create_run_dir, then attempts are written as the loop writes them:
experiment file, results/NNNN.json, a ledger line, and for a kept attempt a finding note and a
findings commit through the real Ratchet.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.ledger import Ledger, LedgerEntry
from orchestrator.ratchet import Ratchet
from orchestrator.rundir import RunDir, create_run_dir
from orchestrator.state import StateStore
from orchestrator.task import load_task

REPO = Path(__file__).resolve().parents[3]
DEFAULT_TASK = REPO / "tasks" / "factual_recall.yaml"
TOKENS = ["The", " E", "iff", "el", " Tower", " is", " in", " the", " city", " of"][:9]
N_LAYERS, N_HEADS = 30, 9


@dataclass
class C:
    """A claim as the verifier reports it."""

    statement: str
    effect: float
    half_width: float = 0.1
    kept: bool = True
    noise_floor: float = 0.05
    p_value: float = 0.001

    def stats(self, index: int, n_before: int) -> dict[str, Any]:
        return {"claim_index": index, "statement": self.statement, "kept": self.kept, "effect": self.effect,
                "ci_low": self.effect - self.half_width, "ci_high": self.effect + self.half_width * 1.5,
                "p_value": self.p_value, "adjusted_p": min(1.0, self.p_value * (n_before + 1)),
                "noise_floor": self.noise_floor, "n_pairs": 14,
                "reason": "beats the noise floor" if self.kept else "within the noise floor"}


@dataclass
class A:
    """One attempt to write into a run."""

    slug: str
    method: str = "activation_patching"
    decision: str = "discard"
    claims: list[C] = field(default_factory=list)
    figures: list[dict[str, Any]] = field(default_factory=list)
    feature_cards: list[dict[str, Any]] | None = None
    summary: str = ""
    hypothesis: str = ""
    reason: str = ""
    answer: str | None = None
    dollars: float = 0.0
    tokens: int = 0


FIXTURE_HOURS = 0.25  # the runs built here pin their wall-clock budget: tests expect figures derived from it


def make_run(tmp: Path, name: str = "run", task_path: Path = DEFAULT_TASK) -> RunDir:
    text = re.sub(r"wall_clock_hours: [0-9.]+", f"wall_clock_hours: {FIXTURE_HOURS}",
                  task_path.read_text(encoding="utf-8"))
    pinned = tmp / f".{name}-task.yaml"
    pinned.write_text(text, encoding="utf-8")
    task = load_task(pinned, check_tokenizer=False)
    return create_run_dir(tmp / name, task, text)


def add_attempts(run: RunDir, attempts: list[A], *, finish: str | None = "max_experiments", elapsed_s: float = 754.0) -> None:
    """Write ``attempts`` (numbered from the next free attempt) and update state.json as the loop would."""
    ledger = Ledger(run.ledger)
    ratchet = Ratchet(run.root)
    store = StateStore(run.root)
    state = store.load()
    n_before = sum(len(e.statistics) for e in ledger.entries())
    for a in attempts:
        n = state.next_attempt
        exp = run.experiment_path(n, a.slug)
        exp.write_text(f"def run(ctx):\n    return {{'summary': {a.slug!r}}}\n")
        stats = [c.stats(i, n_before + i) for i, c in enumerate(a.claims)]
        n_before += len(stats)
        if a.decision not in ("crash", "rejected", "failed"):
            measurements: dict[str, Any] = {"figures": a.figures}
            if a.feature_cards is not None:
                measurements["feature_cards"] = a.feature_cards
            result = {"summary": a.summary or f"{a.slug} summary", "measurements": measurements,
                      "claims": [{"statement": c.statement, "expected_direction": "increase",
                                  "interventions": [{"kind": "patch", "hook": "blocks.3.hook_resid_pre"}]} for c in a.claims]}
            run.result_path(n).write_text(json.dumps({"attempt": n, "experiment_sha256": "0" * 64, "result": result}, indent=1))
        entry = LedgerEntry(
            attempt=n, slug=a.slug, phase="committing", method=a.method, hypothesis=a.hypothesis or f"{a.slug} hypothesis",
            experiment_file=run.rel(exp), contract_sha256="c" * 64, result_summary=a.summary, statistics=stats,
            decision=a.decision, reason=a.reason or f"{a.slug}: {a.decision}", question_answered=a.answer is not None,
            answer=a.answer, tokens=a.tokens, dollars=a.dollars, calls=4 if a.tokens else 0,
            durations_s={"planning": 0.01, "running": 20.0 + n, "verifying": 12.0 if stats else 0.0},
            started_at="2025-01-01T00:00:00+00:00", ended_at="2025-01-01T00:01:00+00:00",
        )
        ledger.append(entry)
        if a.decision == "keep":
            note = run.finding_path(n, a.slug)
            note.write_text(f"# Finding {n:04d}: {a.slug}\n\n{a.hypothesis}\n")
            paths = [run.rel(exp), run.rel(run.result_path(n)), run.rel(note), run.rel(run.ledger)]
            best = max((c.effect for c in a.claims), key=abs, default=0.0)
            ratchet.commit_finding(n, paths, f"finding {n:04d}: {a.slug} (effect {best:+.3f})", a.hypothesis or a.slug)
        state.next_attempt = n + 1
        state.completed += 1
        state.kept += int(a.decision == "keep")
        state.usage.dollars += a.dollars
        state.usage.input_tokens += a.tokens
        if a.answer:
            state.answer = a.answer
    state.elapsed_s = elapsed_s
    state.sessions = max(1, state.sessions)
    state.status = "finished" if finish else "running"
    state.stop_reason = finish
    store.save(state)


# ---------------------------------------------------------------- figure fixtures

def _grid(rows: int, cols: int, peak: tuple[int, int], scale: float = 1.0) -> list[list[float]]:
    return [[round(scale * math.exp(-((r - peak[0]) ** 2) / 18 - ((c - peak[1]) ** 2) / 2) - 0.03 * math.sin(r + c), 4)
             for c in range(cols)] for r in range(rows)]


def heatmap(title: str, peak: tuple[int, int] = (12, 8), rows: int = N_LAYERS, x_ticks: list[str] | None = None,
            x_label: str = "position", y_label: str = "layer") -> dict[str, Any]:
    ticks = TOKENS if x_ticks is None else x_ticks
    return {"type": "heatmap", "title": title, "x_label": x_label, "y_label": y_label, "x_ticks": ticks,
            "y_ticks": [str(i) for i in range(rows)], "values": _grid(rows, len(ticks), peak)}


def dla_bar() -> dict[str, Any]:
    names = ["L29 MLP", "L28 H3", "L27 MLP", "L26 H7", "L25 H1", "L24 MLP", "L22 H0", "L21 H5", "embed", "L19 MLP"]
    values = [1.92, 1.41, 0.88, 0.63, -0.52, 0.41, 0.33, -0.28, 0.21, 0.12]
    return {"type": "bar", "title": "Direct logit attribution (top components)", "x_label": "component",
            "y_label": "logit difference", "x_ticks": names, "values": values}


def logit_lens() -> dict[str, Any]:
    values = [round(-0.1 + 6.0 / (1 + math.exp(-(layer - 20) / 2.0)), 4) for layer in range(N_LAYERS)]
    return {"type": "line", "title": "Logit lens: logit difference at the final position", "x_label": "layer",
            "y_label": "logit difference", "x_ticks": [str(i) for i in range(N_LAYERS)], "values": values}


def attribution_lines() -> dict[str, Any]:
    act = [round(math.exp(-((layer - 14) ** 2) / 20), 4) for layer in range(N_LAYERS)]
    attr = [round(0.9 * a + 0.05 * math.cos(i), 4) for i, a in enumerate(act)]
    return {"type": "line", "title": "Attribution vs activation patching (final position)", "x_label": "layer",
            "y_label": "restored fraction", "x_ticks": [str(i) for i in range(N_LAYERS)],
            "series": {"activation patching": act, "attribution patching": attr}}


def circuit_graph() -> dict[str, Any]:
    nodes = [{"id": "subj", "label": "subject tokens", "layer": 0}, {"id": "m3", "label": "MLP 3", "layer": 3},
             {"id": "m5", "label": "MLP 5", "layer": 5}, {"id": "h14", "label": "L14 H2", "layer": 14},
             {"id": "h17", "label": "L17 H6", "layer": 17}, {"id": "h21", "label": "L21 H0", "layer": 21},
             {"id": "logits", "label": "logits"}]
    edges = [{"source": "subj", "target": "m3", "weight": 0.6}, {"source": "subj", "target": "m5", "weight": 0.4},
             {"source": "m3", "target": "h14", "weight": 0.5}, {"source": "m5", "target": "h17", "weight": 0.35},
             {"source": "h14", "target": "h21", "weight": 0.3}, {"source": "h17", "target": "logits", "weight": 0.45},
             {"source": "h21", "target": "logits", "weight": 0.7}, {"source": "m5", "target": "h21", "weight": -0.15}]
    return {"type": "graph", "title": "Candidate circuit (necessary and sufficient)", "nodes": nodes, "edges": edges}


def feature_cards() -> list[dict[str, Any]]:
    toks = ["The", " Eiffel", " Tower", " is", " in", " Paris"]
    return [{"latent": 1234, "explanation": "famous landmarks in European capitals",
             "scores": {"detection": 0.81, "fuzzing": 0.74}, "baseline": {"detection": {"mean": 0.52, "std": 0.04},
                                                                          "fuzzing": {"mean": 0.5, "std": 0.05}},
             "top_examples": [{"text": "".join(toks), "tokens": toks, "activations": [0.0, 3.1, 4.2, 0.3, 0.1, 1.0]}]}]


def default_task_attempts() -> list[A]:
    """What the builtin programme's run of the default task looks like (numbers invented, shapes real)."""
    return [
        A("logit-lens", "logit_lens", "discard", figures=[logit_lens()],
          summary="The answer becomes decodable after layer 18; final logit difference 5.9."),
        A("resid-sweep", "activation_patching", "keep", [C("clean resid_pre at layer 14, final position, restores the answer", 0.62)],
          figures=[heatmap("Activation patching: resid_pre (layers x positions)", (14, 8))],
          summary="Subject tokens carry the answer until layer 12, the final position from layer 16."),
        A("attn-mlp-sweep", "activation_patching", "keep",
          [C("attention output of layers 14-21 at the final position restores a third of the gap", 0.36),
           C("MLP outputs of layers 3-5 at the subject tokens matter", 0.05, kept=False, p_value=0.4)],
          figures=[heatmap("Patching attn_out", (17, 8)), heatmap("Patching mlp_out", (4, 4))]),
        A("direct-logit-attribution", "direct_logit_attribution", "discard", figures=[dla_bar()]),
        A("head-sweep", "activation_patching", "crash", reason="experiment timeout: 240 s"),
        A("head-sweep-r2", "activation_patching", "keep", [C("heads L14H2, L17H6, L21H0 carry the city", 0.41)],
          figures=[heatmap("Per-head patching (layers x heads)", (17, 6), x_ticks=[f"H{i}" for i in range(N_HEADS)],
                           x_label="head")]),
        A("attribution-check", "attribution_patching", "discard", figures=[attribution_lines()]),
        A("path-patching", "path_patching", "discard", [C("L14H2 acts through L21H0", 0.03, kept=False, p_value=0.3)]),
        A("circuit-check", "circuit_check", "keep", [C("the circuit is sufficient", 0.71), C("the circuit is necessary", -0.55)],
          figures=[circuit_graph(), {"type": "bar", "title": "Circuit check", "x_ticks": ["sufficiency", "necessity"],
                                     "values": [0.71, -0.55]}]),
        A("synthesis", "summary", "discard", answer="The city is recalled by MLPs 3-5 at the subject tokens and moved to the "
          "final position by heads L14H2, L17H6 and L21H0 (layers 14-21)."),
    ]
