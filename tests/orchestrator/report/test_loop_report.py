"""The report of a run the real loop wrote (in-process stand-ins for agent, backend and verifier; no engine).

Why: the other report tests build run directories by hand; this one catches drift between what
the loop actually writes (ledger lines, result payloads, findings commits) and what the report reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orchestrator.agent.base import AgentContext, StepResult, Usage
from orchestrator.agent.schemas import Analysis, ExperimentCode, Plan, Reflection, ResearchState
from orchestrator.interfaces import AcceptAllGuard, ExperimentOutcome, ExperimentRequest, VerificationResult, VerifyRequest
from orchestrator.ledger import read_ledger
from orchestrator.loop import Components, Loop
from orchestrator.report import write_report
from orchestrator.review import review_data
from orchestrator.task import load_task
from sandbox.schemas import Claim, ExperimentResult
from tests.orchestrator.report import htmlparse
from tests.orchestrator.report.builders import DEFAULT_TASK, heatmap, make_run

USAGE = Usage(calls=1, input_tokens=300, output_tokens=50, dollars=0.01)


class Agent:
    name = "report-test"

    def plan(self, state: ResearchState, context: AgentContext) -> StepResult[Plan]:
        n = state.experiments_done + 1
        return StepResult(value=Plan(hypothesis=f"layer {n} carries the city", method="activation_patching",
                                     parameters={"n": n}, falsification="no effect", slug=f"layer-{n}"), usage=USAGE)

    def write_experiment(self, plan: Plan, state: ResearchState, context: AgentContext, feedback: str | None) -> StepResult[ExperimentCode]:
        return StepResult(value=ExperimentCode(code=f"def run(ctx):\n    return {plan.parameters['n']}\n"), usage=USAGE)

    def analyse(self, plan: Plan, outcome_summary: dict[str, Any], context: AgentContext) -> StepResult[Analysis]:
        return StepResult(value=Analysis(interpretation="read"), usage=USAGE)

    def reflect(self, state: ResearchState, plan: Plan, analysis: Analysis | None, verification: dict[str, Any] | None,
                context: AgentContext) -> StepResult[Reflection]:
        kept = bool(verification and verification["any_kept"])
        return StepResult(value=Reflection(decision="keep" if kept else "discard", reason="verified" if kept else "weak"),
                          usage=USAGE)


class Backend:
    """Odd attempts return a heatmap and a strong claim, even ones a weak claim."""

    def submit(self, request: ExperimentRequest) -> int:
        return request.attempt

    def wait(self, handle: int, timeout: float | None = None) -> ExperimentOutcome:
        strength = "strong" if handle % 2 else "weak"
        claim = Claim(statement=f"{strength}: layer {handle}", expected_direction="increase",
                      interventions=[{"kind": "patch", "hook": f"blocks.{handle}.hook_resid_pre"}])
        result = ExperimentResult(summary=f"attempt {handle}", claims=[claim],
                                  measurements={"figures": [heatmap(f"sweep {handle}", (handle, 8))]})
        return ExperimentOutcome(status="ok", result=result, duration_s=0.1)

    def cancel(self, handle: int) -> None:
        return None


class Verifier:
    def verify(self, claim: Claim, request: VerifyRequest) -> VerificationResult:
        strong = claim.statement.startswith("strong")
        effect = 0.5 + 0.01 * request.attempt if strong else 0.01
        return VerificationResult(kept=strong, effect=effect, ci_low=effect - 0.12, ci_high=effect + 0.09, p_value=0.001,
                                  adjusted_p=0.002 * request.attempt, noise_floor=0.04, n_pairs=14)


def test_report_of_a_loop_run_matches_its_ledger(tmp_path: Path) -> None:
    task_path = tmp_path / "task.yaml"
    task_path.write_text(DEFAULT_TASK.read_text().replace("max_experiments: 12", "max_experiments: 4"))
    run = make_run(tmp_path, task_path=task_path)
    task = load_task(run.task_yaml, check_tokenizer=False)
    Loop(run, task, Components(agent=Agent(), backend=Backend(), guard=AcceptAllGuard(), verifier=Verifier())).run_until_stopped()
    entries = read_ledger(run.ledger)
    assert [e.decision for e in entries] == ["keep", "discard", "keep", "discard"]

    md_path, html_path = write_report(run.root)
    parsed = htmlparse.parse(html_path.read_text())
    rows = htmlparse.table(parsed, "findings")
    kept = [(e.attempt, e.statistics[0]) for e in entries if e.decision == "keep"]
    assert [(int(r[0]), float(r[2]), r[3]) for r in rows] == [
        (a, round(v["effect"], 4), f"[{v['ci_low']:+.4f}, {v['ci_high']:+.4f}]") for a, v in kept]
    commits = [f["commit"] for f in review_data(run)["findings"]]
    assert [r[7] for r in rows] == commits
    budget = dict((r[0], r[1]) for r in htmlparse.table(parsed, "budget"))
    assert budget["dollars"] == f"${sum(e.dollars for e in entries):.2f}" and budget["tokens"] == str(sum(e.tokens for e in entries))
    assert budget["outcomes"] == "2 keep, 2 discard" and budget["experiments"] == "4 of 4"
    assert len(parsed.images) == 4 + 1 + 3  # one heatmap per attempt, the forest plot, timeline + time + spend
    assert "## Circuit" not in md_path.read_text()
