"""Issue acceptance: full loops with the LLM providers on the embedded model, real sandbox and verifier.

- anthropic: scripted replies for every role from the local fake Messages API, with faults injected
  (429 + retry-after, 500, 529, dropped connection, slow past the timeout, malformed tool input, a
  reply that fails schema validation twice); the run ends cleanly, no experiment is duplicated, the
  ledger's tokens and dollars equal the fake server's usage, and the key is nowhere in the run dir.
- the sandbox child's environment holds no API key.
- mlx: the embedded SmolLM2-135M as the agent, 3 attempts end cleanly whatever it writes.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any, Callable

import pytest

from orchestrator.agent.llm import LLMAgent
from orchestrator.providers.anthropic_client import AnthropicClient
from orchestrator.providers.base import pricing_for
from tests.fakes import anthropic_server as fk

pytestmark = [pytest.mark.embedded, pytest.mark.slow]

TASK = """\
name: llm-acceptance
question: Which layer carries the city name at the final position?
generator: {{family: factual_recall, n: 8, seed: 1}}
split: {{held_out_fraction: 0.5, seed: 2}}
agent: {{provider: {provider}, max_repairs: 1}}
budgets: {{max_experiments: {n}, wall_clock_hours: 1}}
sandbox: {{timeout_s: 240}}
seed: 7
"""

CODE = '''\
import engine


def mean(values):
    return sum(values) / len(values)


def run(ctx):
    model = ctx.model
    hook = f"blocks.{model.cfg.n_layers - 1}.hook_resid_pre"
    clean_logits, cache = model.run_with_cache(ctx.clean_tokens, names=[hook])
    clean = mean(ctx.metric(clean_logits))
    corrupted = mean(ctx.metric(model.forward(ctx.corrupted_tokens)))
    patch = engine.Patch(hook=hook, positions=[-1])
    patched = mean(ctx.metric(model.run_with_hooks(ctx.corrupted_tokens, [patch], source=cache)))
    restored = (patched - corrupted) / (clean - corrupted)
    claims = [{"statement": f"{hook} at the final position carries the answer",
               "interventions": [{"kind": "patch", "hook": hook, "positions": [-1]}],
               "target": "corrupted", "source": "clean", "expected_direction": "increase", "min_effect": 0.2}]
    return {
        "summary": f"patching {hook} at the final position restores {restored:.2f} of the gap",
        "measurements": {"clean": clean, "corrupted": corrupted, "restored": restored, "claims_made": len(claims)},
        "claims": claims,
    }
'''


NO_CLAIMS = CODE.replace('"claims": claims,', '"claims": [],')  # attempt 2 skips verification (slow)


def _plan(n: int) -> dict[str, Any]:
    return {"hypothesis": "the last layer's residual stream at the final position carries the city",
            "method": "activation_patching", "parameters": {"layer": "last"},
            "falsification": "patching restores less than 20% of the gap", "slug": f"last-layer-{n}"}


def _components(task: Any, run_root: Path, agent: Any) -> Any:
    from orchestrator.loop import Components
    from orchestrator.sandbox_backend import SandboxBackend, SandboxGuard
    from orchestrator.verifier import SubprocessVerifier

    return Components(agent=agent, backend=SandboxBackend(), guard=SandboxGuard(),
                      verifier=SubprocessVerifier(task, run_root))


def _run_loop(tmp_path: Path, provider: str, n: int, agent: Any) -> tuple[Any, Path]:
    pytest.importorskip("orchestrator.sandbox_backend", reason="sandbox wiring not built yet")
    pytest.importorskip("orchestrator.verifier", reason="verifier not built yet")
    from orchestrator.logging import RunLog
    from orchestrator.loop import Loop
    from orchestrator.rundir import create_run_dir
    from orchestrator.task import load_task

    task_path = tmp_path / "task.yaml"
    task_path.write_text(TASK.format(provider=provider, n=n))
    task = load_task(task_path)
    run = create_run_dir(tmp_path / "run", task, task_path.read_text())
    log = RunLog(run.logs / "run.jsonl")
    try:
        state = Loop(run, task, _components(task, run.root, agent), log=log).run_until_stopped()
    finally:
        log.close()
    return state, run.root


def _ledger(root: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (root / "results.jsonl").read_text().splitlines() if line.strip()]


def _assert_secret_absent(root: Path, secret: str) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), f"API key found in {path}"
    objects = subprocess.run(["git", "-C", str(root), "cat-file", "--batch-all-objects", "--batch"],
                             capture_output=True, check=True).stdout
    assert objects and secret.encode() not in objects  # git objects are compressed on disk: check their content


def test_anthropic_full_loop_with_faults(tmp_path: Path, fake_server: fk.FakeAnthropic,
                                         make_client: Callable[..., AnthropicClient], api_key: str) -> None:
    fake_server.push_for("submit_plan", fk.rate_limited(0.2), fk.tool_use(_plan(1)), fk.server_error(), fk.tool_use(_plan(2)))
    fake_server.push_for("submit_experiment_module", fk.drop(), fk.tool_use("{not json"), fk.tool_use({"code": CODE}),
                         fk.overloaded(), fk.hang(2.0), fk.tool_use({"code": NO_CLAIMS, "notes": "measure only"}))
    analysis = {"interpretation": "the patch restores most of the gap", "supports_hypothesis": True}
    fake_server.push_for("submit_analysis", fk.tool_use(analysis), fk.tool_use(analysis))
    fake_server.push_for("submit_reflection", fk.tool_use({"decision": "discard", "reason": "one layer is not a circuit"}),
                         fk.tool_use({"decision": "maybe", "reason": "x"}), fk.tool_use({"reason": ""}))
    client = make_client(timeout_s=1.0)
    state, root = _run_loop(tmp_path, "anthropic", 2, LLMAgent(client, max_repairs=1))

    assert state.status == "finished" and state.stop_reason == "max_experiments"
    assert fake_server.pending() == 0  # every scripted reply used, nothing extra requested
    ledger = _ledger(root)
    assert [e["attempt"] for e in ledger] == [1, 2]
    assert len(list((root / "experiments").glob("*.py"))) == 2 and len(list((root / "results").glob("*.json"))) == 2
    assert "reflector produced no valid decision" in ledger[1]["reason"] and "decision" in ledger[1]["reason"]

    served = fake_server.usage_totals()
    price, _ = pricing_for(client.model)
    assert sum(e["tokens"] for e in ledger) == sum(served.values())
    expected_dollars = (served["input_tokens"] * price.input + served["output_tokens"] * price.output
                        + served["cache_creation_input_tokens"] * price.cache_write
                        + served["cache_read_input_tokens"] * price.cache_read) / 1e6
    assert sum(e["dollars"] for e in ledger) == pytest.approx(expected_dollars, rel=1e-9)
    assert sum(e["calls"] for e in ledger) == sum(1 for r in fake_server.requests if r.delivered and r.usage)
    assert served["cache_read_input_tokens"] > 0  # the stable prefix was cached and re-read
    _assert_secret_absent(root, api_key)


def test_sandbox_child_environment_has_no_api_key(tmp_path: Path, api_key: str) -> None:
    pytest.importorskip("sandbox.runner", reason="sandbox not built yet")
    from sandbox.runner import run_experiment

    from orchestrator.rundir import create_run_dir
    from orchestrator.task import load_task

    task_path = tmp_path / "task.yaml"
    task_path.write_text(TASK.format(provider="builtin", n=1))
    task = load_task(task_path)
    run = create_run_dir(tmp_path / "run", task, task_path.read_text())
    probe = run.experiments / "0001-env-probe.py"
    probe.write_text(  # guard=False: this probe reads what the OS layer lets through
        "import os\n\ndef run(ctx):\n"
        "    own = open('/proc/self/environ', 'rb').read().decode('utf-8', 'replace')\n"
        "    try:\n        parent = open(f'/proc/{os.getppid()}/environ', 'rb').read().decode('utf-8', 'replace')\n"
        "    except OSError as exc:\n        parent = f'unreadable: {exc}'\n"
        "    return {'summary': 'env probe', 'measurements': {'own': own + ' ' + repr(dict(os.environ)), 'parent': parent}}\n")
    outcome = run_experiment(run.root, probe, 1, guard=False, write_result=False)
    assert outcome.status == "ok", outcome.reason
    seen = json.dumps(outcome.result.model_dump(mode="json"))
    assert "env probe" in seen and api_key not in seen and "ANTHROPIC_API_KEY" not in seen


def test_mlx_agent_three_attempts_end_cleanly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.providers.mlx_client import MLXClient

    # Bounded for a shared 2-core machine: short replies, a short prompt window, one BLAS thread, and a
    # request timeout that turns a slow generation into a failed step rather than a long wait.
    with MLXClient("smollm2-135m", max_new_tokens=48, max_prompt_tokens=1200, request_timeout_s=150,
                   startup_timeout_s=300, blas_threads=1) as client:
        state, root = _run_loop(tmp_path, "mlx", 3, LLMAgent(client, max_repairs=0, guide_roles=("executor",)))
    assert state.status == "finished" and state.stop_reason == "max_experiments"
    ledger = _ledger(root)
    assert [e["attempt"] for e in ledger] == [1, 2, 3]
    for entry in ledger:
        assert entry["decision"] in ("keep", "discard", "crash", "violation", "rejected", "failed") and entry["reason"]
        assert entry["dollars"] == 0.0
    assert client.ledger.total().calls >= 3


def test_anthropic_budget_spent_mid_attempt_stops_the_run_cleanly(
        tmp_path: Path, fake_server: fk.FakeAnthropic, make_client: Callable[..., AnthropicClient], api_key: str) -> None:
    from orchestrator.providers.base import Budget, UsageLedger

    fake_server.push_for("submit_plan", fk.tool_use(_plan(1), usage={"input_tokens": 50_000, "output_tokens": 1_000}))
    client = make_client(ledger=UsageLedger(Budget(max_dollars=0.05)))  # the plan costs $0.165
    state, root = _run_loop(tmp_path, "anthropic", 3, LLMAgent(client, max_repairs=1))
    assert state.status == "stopped" and "budget" in (state.stop_reason or "")
    assert len(fake_server.requests) == 1 and fake_server.pending() == 0  # the executor call was never made
    assert not list((root / "experiments").glob("*.py")) and list(state.in_flight) == [1]  # resumable
    _assert_secret_absent(root, api_key)
