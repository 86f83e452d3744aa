"""Deterministic stand-ins for the agent, experiment backend and verifier (no mlx, fast).

The scripted agent derives everything from the attempt number and the feedback it is given, so a
run replayed after a crash makes exactly the same calls and produces the same files.
The backend really spawns one subprocess per experiment (same submit/wait/cancel interface as the
sandbox), so crashes "inside an experiment subprocess" are real.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from orchestrator.agent.base import AgentContext, StepResult, Usage
from orchestrator.agent.schemas import Analysis, ExperimentCode, Plan, Reflection, ResearchState
from orchestrator.interfaces import AcceptAllGuard, ExperimentOutcome, ExperimentRequest, VerificationResult, VerifyRequest
from orchestrator.loop import Components
from sandbox.schemas import Claim, ExperimentResult

GOOD = '''
def run(ctx):
    return {{
        "summary": "attempt {n}: patched blocks.{layer}.hook_resid_pre on {kind} pairs",
        "measurements": {{"gap": {gap}, "layer": {layer}}},
        "claims": {claims},
    }}
'''
CLAIM = (
    '[{{"statement": "{strength} effect of blocks.{layer}.hook_resid_pre", "expected_direction": "increase", '
    '"interventions": [{{"kind": "patch", "hook": "blocks.{layer}.hook_resid_pre", "positions": {positions}}}]}}]'
)
RUNTIME_ERROR = "def run(ctx):\n    return {'summary': 1 / 0}\n"
SYNTAX_ERROR = "def run(ctx)\n    return {}\n"
TAMPER = (
    "def run(ctx):\n    import os\n    p = os.path.join(os.environ['FAKE_RUN_DIR'], 'contract', 'setup.py')\n"
    "    os.chmod(p, 0o644)\n    open(p, 'a').write('# tampered')\n    return {'summary': 'tampered'}\n"
)
USAGE = Usage(calls=1, input_tokens=120, output_tokens=30, dollars=0.002)


def scenario(n: int) -> str:
    """What attempt ``n`` does: keep, syntax error then discard, runtime error then keep, no claims."""
    return ("none", "keep", "syntax-then-weak", "runtime-then-keep")[n % 4]


class ScriptedAgent:
    """A ResearchAgent whose every output is a function of the attempt number and the feedback."""

    name = "scripted"

    def __init__(self, answer_at: int | None = None, tamper_at: int | None = None,
                 claim_layer: int | None = None, claim_positions: list[int] | None = None) -> None:
        self.answer_at = answer_at
        self.tamper_at = tamper_at
        self.claim_layer = claim_layer  # None: layer n % 7; the real verifier needs a claim that beats nulls
        self.claim_positions = claim_positions

    @staticmethod
    def _n(state: ResearchState) -> int:
        return state.experiments_done + 1

    def plan(self, state: ResearchState, context: AgentContext) -> StepResult[Plan]:
        n = self._n(state)
        plan = Plan(hypothesis=f"hypothesis {n}: layer {n % 7} carries the answer", method="activation_patching",
                    parameters={"n": n, "layer": n % 7}, falsification="no effect beyond the noise floor",
                    slug=f"probe-{n}")
        return StepResult(value=plan, usage=USAGE)

    def write_experiment(self, plan: Plan, state: ResearchState, context: AgentContext, feedback: str | None) -> StepResult[ExperimentCode]:
        n, layer = int(plan.parameters["n"]), int(plan.parameters["layer"])
        layer = layer if self.claim_layer is None else self.claim_layer
        positions = repr(self.claim_positions)  # Python source, not JSON
        kind = scenario(n)
        if self.tamper_at == n:
            return StepResult(value=ExperimentCode(code=TAMPER), usage=USAGE)
        if kind == "syntax-then-weak" and feedback is None:
            return StepResult(value=ExperimentCode(code=SYNTAX_ERROR), usage=USAGE)
        if kind == "runtime-then-keep" and feedback is None:
            return StepResult(value=ExperimentCode(code=RUNTIME_ERROR), usage=USAGE)
        strength = "weak" if kind == "syntax-then-weak" else "strong"
        claims = "[]" if kind == "none" else CLAIM.format(strength=strength, layer=layer, positions=positions)
        code = GOOD.format(n=n, layer=layer, kind=kind, gap=round(0.1 * n, 3), claims=claims)
        return StepResult(value=ExperimentCode(code=code), usage=USAGE)

    def analyse(self, plan: Plan, outcome_summary: dict[str, Any], context: AgentContext) -> StepResult[Analysis]:
        kept = any(v.get("kept") for v in outcome_summary.get("verification", []))
        return StepResult(value=Analysis(interpretation=f"{plan.slug}: {'supported' if kept else 'not supported'}",
                                         supports_hypothesis=kept), usage=USAGE)

    def reflect(self, state: ResearchState, plan: Plan, analysis: Analysis | None, verification: dict[str, Any] | None,
                context: AgentContext) -> StepResult[Reflection]:
        n = int(plan.parameters["n"])
        kept = bool(verification and verification.get("any_kept"))
        answered = self.answer_at == n
        return StepResult(value=Reflection(
            decision="keep" if kept else "discard", reason=f"{plan.slug}: {'verified' if kept else 'not verified'}",
            belief_updates=[f"layer {n % 7} {'matters' if kept else 'unclear'}"], next_direction=f"probe {n + 1}",
            question_answered=answered, answer="layer 1 and 3" if answered else None), usage=USAGE)


_RUNNER = r"""
import importlib.util, json, sys, types
spec = importlib.util.spec_from_file_location("experiment", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
sys.stdout.write(json.dumps(module.run(types.SimpleNamespace(seed=int(sys.argv[2])))))
"""


class FakeBackend:
    """One `python -I` subprocess per experiment; submit → Popen, wait → outcome, cancel → kill."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.submitted: list[int] = []

    def submit(self, request: ExperimentRequest) -> tuple[subprocess.Popen[bytes], float]:
        self.submitted.append(request.attempt)
        env = {"PATH": os.environ.get("PATH", ""), "FAKE_RUN_DIR": str(request.run_dir)}
        code = (f"import time; time.sleep({self.delay_s})\n" if self.delay_s else "") + _RUNNER
        proc = subprocess.Popen([sys.executable, "-I", "-B", "-c", code, str(request.experiment_file), str(request.seed)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True)
        return proc, time.monotonic()

    def wait(self, handle: tuple[subprocess.Popen[bytes], float], timeout: float | None = None) -> ExperimentOutcome:
        proc, t0 = handle
        out, err = proc.communicate(timeout=timeout)
        duration = time.monotonic() - t0
        if proc.returncode != 0:
            tail = err.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            return ExperimentOutcome(status="error", error=tail[0], duration_s=duration)
        try:
            result = ExperimentResult.model_validate(json.loads(out))
        except ValueError as exc:
            return ExperimentOutcome(status="error", error=f"invalid result: {exc}", duration_s=duration)
        return ExperimentOutcome(status="ok", result=result, duration_s=duration)

    def cancel(self, handle: tuple[subprocess.Popen[bytes], float]) -> None:
        handle[0].kill()


class FakeVerifier:
    """'strong' claims verify (effect 0.8), anything else does not (effect 0.02)."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def verify(self, claim: Claim, attempt: VerifyRequest) -> VerificationResult:
        self.calls.append((attempt.attempt, attempt.claim_index))
        strong = claim.statement.startswith("strong")
        effect = 0.8 if strong else 0.02
        p = 0.001 if strong else 0.6
        adjusted = min(1.0, p * (len(attempt.prior_p_values) + 1))
        return VerificationResult(kept=strong and adjusted < attempt.alpha, effect=effect, ci_low=effect - 0.1,
                                  ci_high=effect + 0.1, p_value=p, adjusted_p=adjusted, noise_floor=0.05, n_pairs=14,
                                  reason="beats the noise floor" if strong else "within the noise floor")


def build_components(task: Any, run_root: Path) -> Components:
    """Factory for ORCH_COMPONENTS=tests.orchestrator.fakes:build_components (CLI-level tests)."""
    answer_at = os.environ.get("FAKE_ANSWER_AT")
    return Components(agent=ScriptedAgent(answer_at=int(answer_at) if answer_at else None),
                      backend=FakeBackend(), guard=AcceptAllGuard(), verifier=FakeVerifier())


def build_sandbox_components(task: Any, run_root: Path) -> Components:
    """The scripted agent in front of the real sandbox, guard and verifier (end-to-end tests)."""
    from orchestrator.sandbox_backend import SandboxBackend, SandboxGuard
    from orchestrator.verifier import SubprocessVerifier

    agent = ScriptedAgent(claim_layer=28, claim_positions=[-1])  # the final position late on carries the answer
    return Components(agent=agent, backend=SandboxBackend(), guard=SandboxGuard(),
                      verifier=SubprocessVerifier(task, run_root, n_null=int(os.environ.get("FAKE_N_NULL", "4"))))
