"""A feature run's LLM budget is one budget: the explainer's calls, the scorer's and the trusted
verifier's scoring calls spend it together, it holds across resumes (read back from the call log),
a run that spends it mid-latent stops cleanly and resumable, and a wall-clock budget ends the run
between latents."""

from __future__ import annotations

import itertools
import json
import sys

import pytest

from orchestrator.agent.base import StepResult, Usage
from orchestrator.features import run as feature_run
from orchestrator.features.run import run_feature_task
from orchestrator.features.schemas import AdversarialInput, Explanation, Predicate
from orchestrator.features.scorers import PredicateScorer
from orchestrator.features.task import parse_feature_task
from orchestrator.features.verify import PinnedRun, TrustedVerifier, VerifyRequest, verify_latent
from orchestrator.providers.base import BudgetExceeded, CallRecord
from orchestrator.providers.call_log import read_call_log
from orchestrator.state import StateStore
from tests.orchestrator.features.scripted_llm import ScriptedLLM
from tests.orchestrator.features.synthetic import RuleMeasurer, rules_from_spec
from tests.orchestrator.features.test_main_cli import SPEC, _engine_done

TOKENS_PER_CALL = 100


class ChargingClient:
    """A scripted LLM behind the run's UsageLedger, as the real clients are: budget checked before each
    call, each call recorded (and so written to the run's call log)."""

    name = "charging"

    def __init__(self, ledger) -> None:
        self.ledger = ledger
        self.inner = ScriptedLLM([Explanation(text="colour words", predicate=Predicate(tokens=["red", "blue"]))],
                                 [[AdversarialInput(text="a red car", intent="near_miss", expect_active=True)]],
                                 switch_above=2.0)

    def structured(self, *, role, system, cacheable_context, prompt, schema, max_repairs=2) -> StepResult:
        self.ledger.check_budget()
        res = self.inner.structured(role=role, system=system, cacheable_context=cacheable_context, prompt=prompt,
                                    schema=schema, max_repairs=max_repairs)
        usage = Usage(calls=1, input_tokens=TOKENS_PER_CALL - 10, output_tokens=10, dollars=0.01)
        self.ledger.record(CallRecord(provider="fake", model="scripted", role=role, usage=usage))
        return res.model_copy(update={"usage": usage})


class ChargingScorer(PredicateScorer):
    """The builtin scorer, billed like an LLM scorer (the verifier's share of the budget)."""

    def __init__(self, per_call: Usage) -> None:
        self.per_call = per_call

    def _bill(self, res: StepResult) -> StepResult:
        return res.model_copy(update={"usage": res.usage + self.per_call})

    def detect(self, explanation, examples):
        return self._bill(super().detect(explanation, examples))

    def fuzz(self, explanation, examples):
        return self._bill(super().fuzz(explanation, examples))

    def simulate(self, explanation, examples):
        return self._bill(super().simulate(explanation, examples))


class InProcessVerifier:
    """The verifier's decision code on the pinned run, with a scorer that bills every call."""

    def __init__(self, root, per_call: Usage) -> None:
        self.root, self.per_call = root, per_call
        self.requests: list[VerifyRequest] = []

    def verify(self, request: VerifyRequest):
        self.requests.append(request)
        run = PinnedRun(self.root)
        return verify_latent(run, request, ChargingScorer(self.per_call), RuleMeasurer(rules_from_spec(SPEC)))

    def close(self) -> None:
        pass


def _task(**extra):
    data = {"name": "budget", "n_latents": 3, "explainer": {"provider": "anthropic"},
            "refine": {"n_baseline": 3, "min_rounds": 1, "max_rounds": 2}, **extra}
    return parse_feature_task(data)


def _run(task, root, verifier):
    return run_feature_task(task, root, client_factory=lambda provider, model, ledger: ChargingClient(ledger),
                            measurer=RuleMeasurer(rules_from_spec(SPEC)), verifier=verifier, log=lambda s: None)


def test_the_verifiers_scoring_calls_spend_the_runs_budget(tmp_path):
    root = tmp_path / "run"
    _engine_done(root)
    per_call = Usage(calls=1, input_tokens=5)
    verifier = InProcessVerifier(root, per_call)
    _run(_task(max_tokens=10**9), root, verifier)
    state = StateStore(root).load()
    logged = sum((r.usage for r in read_call_log(root / "logs")), Usage())
    verifier_usage = sum((v.usage for v in _verdicts(root)), Usage())
    assert verifier_usage.input_tokens > 0 and verifier_usage.input_tokens % 5 == 0
    assert state.usage.total_tokens == logged.total_tokens + verifier_usage.total_tokens
    # each request carried what was left of the budget when it was sent
    assert [r.max_tokens for r in verifier.requests] == sorted((r.max_tokens for r in verifier.requests), reverse=True)
    assert verifier.requests[0].max_tokens < 10**9


def test_a_token_budget_stops_the_run_mid_latent_and_resume_spends_nothing_more(tmp_path):
    root = tmp_path / "run"
    _engine_done(root)
    task = _task(max_tokens=TOKENS_PER_CALL * 10)  # 4 first explanations, latent 1 (4 calls), half of latent 2
    _run(task, root, InProcessVerifier(root, Usage()))
    state = StateStore(root).load()
    calls = read_call_log(root / "logs")
    assert state.status == "stopped" and "budget" in state.stop_reason
    assert state.completed == 1
    assert sum(r.usage.total_tokens for r in calls) == TOKENS_PER_CALL * 10 == state.usage.total_tokens
    ledger_before = (root / "results.jsonl").read_text() if (root / "results.jsonl").exists() else ""

    _run(task, root, InProcessVerifier(root, Usage()))  # resume: the call log says the budget is spent
    state = StateStore(root).load()
    assert state.status == "finished" and "token budget spent" in state.stop_reason
    assert len(read_call_log(root / "logs")) == len(calls), "no call after the budget was spent"
    after = (root / "results.jsonl").read_text() if (root / "results.jsonl").exists() else ""
    assert after == ledger_before


def test_raising_the_budget_lets_the_stopped_run_finish(tmp_path):
    root = tmp_path / "run"
    _engine_done(root)
    _run(_task(max_tokens=TOKENS_PER_CALL * 10), root, InProcessVerifier(root, Usage()))
    summary = _run(_task(max_tokens=10**9), root, InProcessVerifier(root, Usage()))
    state = StateStore(root).load()
    assert state.status == "finished" and state.completed == 3 and summary.n_latents == 3


def test_a_wall_clock_budget_ends_the_run_between_latents(tmp_path, monkeypatch):
    root = tmp_path / "run"
    _engine_done(root)
    clock = itertools.count(0.0, 1000.0)  # every reading of the run's clock is 1000 s later
    monkeypatch.setattr(feature_run, "_clock", lambda: next(clock))
    _run(_task(wall_clock_hours=0.5), root, InProcessVerifier(root, Usage()))
    state = StateStore(root).load()
    assert state.status == "finished" and "wall-clock budget of 0.5 h spent" in state.stop_reason
    assert state.completed == 1  # checked at 1000 s (goes on), then at 3000 s (stops)


def test_the_verifier_childs_budget_stop_reaches_the_run_as_budget_exceeded(tmp_path):
    """The child answers `budget_spent` when its scorer hits the remaining budget; the parent stops."""
    script = ("import json, sys\n"
              "print(json.dumps({'ready': True}), flush=True)\n"
              "for line in sys.stdin:\n"
              "    print(json.dumps({'budget_spent': 'LLM token budget spent: 12 of max_tokens=10'}), flush=True)\n")
    verifier = TrustedVerifier(tmp_path)
    verifier.command = [sys.executable, "-c", script]
    try:
        with pytest.raises(BudgetExceeded, match="token budget spent"):
            verifier.verify(VerifyRequest(latent=1, explanation=Explanation(text="x", predicate=Predicate(tokens=["x"])),
                                          max_tokens=10))
    finally:
        verifier.close()


def test_the_verifiers_usage_is_reported_in_its_verdict(tmp_path):
    root = tmp_path / "run"
    _engine_done(root)
    _run(_task(), root, InProcessVerifier(root, Usage()))  # a run to pin
    request = VerifyRequest(latent=1, explanation=Explanation(text="colours", predicate=Predicate(tokens=["red"])))
    verdict = verify_latent(PinnedRun(root), request, ChargingScorer(Usage(calls=1, input_tokens=7)),
                            RuleMeasurer(rules_from_spec(SPEC)))
    n_baseline = 3
    assert verdict.usage.calls == 3 * (1 + n_baseline) and verdict.usage.input_tokens == 7 * verdict.usage.calls


def _verdicts(root):
    from orchestrator.features.schemas import Verdict

    out = []
    for path in sorted((root / "results").glob("*.json")):
        outcome = json.loads(path.read_text())["result"]["measurements"]["outcome"]
        out.append(Verdict.model_validate(outcome["verdict"]))
    return out


def test_the_command_line_says_stopped_and_how_to_resume(tmp_path, monkeypatch, capsys):
    from orchestrator.cli import main
    from orchestrator.features.llm_explainer import LLMExplainer
    from orchestrator.features.run import MEASURE_ENV
    from tests.orchestrator.features.test_main_cli import RULE_SERVER

    monkeypatch.setenv(MEASURE_ENV, json.dumps(RULE_SERVER))
    monkeypatch.setattr(feature_run, "make_explainer",
                        lambda task, factory=None, ledger=None: LLMExplainer(ChargingClient(ledger)))
    task_file, root = tmp_path / "task.yaml", tmp_path / "run"
    task_file.write_text(f"kind: explain_sae\nname: cli-budget\nn_latents: 3\nmax_tokens: {TOKENS_PER_CALL * 10}\n"
                         "refine: {n_baseline: 3, min_rounds: 1, max_rounds: 2}\n")
    _engine_done(root)
    assert main(["run", str(task_file), "--run-dir", str(root), "--quiet"]) == 3
    err = capsys.readouterr().err
    assert f"python -m orchestrator resume {root}" in err and "budget" in err
    assert main(["resume", str(root), "--quiet"]) == 0
    assert "token budget spent" in capsys.readouterr().out
