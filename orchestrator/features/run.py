"""Run a feature task into a run directory: engine work in a child process, the refinement loop here,
one ledger line per latent, and one findings commit (by the ratchet) per kept explanation.

Layout (DESIGN.md section 4, feature flavour):
  task.yaml, program.md            the task as run
  contract/feature_task.json       the task and the sha256 of the SAE weights and held-out examples
  engine/                          cache, SAE (SAELens layout), latents.json — ignored by git (large)
  results/NNNN.json                {"result": {"summary", "measurements": {"feature_cards", "outcome"}}}
  contract/first_explanations.json first explanations of every sampled latent (the random-explanation pool)
  findings/NNNN-latent-L.md        a kept explanation: every round, adversarial input and score
  results.jsonl                    the ledger (kept and discarded latents alike)
  state.json                       the main loop's RunState (status, completed, kept, usage), for status/report
Resume = run again on the same directory: latents already in the ledger are skipped.
Keep decisions come from the trusted verifier child (orchestrator/features/verify.py, trust boundary
described there); the loop's own scores are replaced by its verdict before anything is recorded.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from engine.blas import blas_env
from engine.features.schemas import LatentSet
from orchestrator.agent.base import Usage
from orchestrator.features.batch import FeatureSummary, first_explanations, summarise
from orchestrator.features.findings import feature_card, finding_markdown
from orchestrator.features.measure_client import SubprocessMeasurer
from orchestrator.features.refine import Measurer, refine_latent
from orchestrator.features.schemas import Explanation, LatentOutcome, Verdict
from orchestrator.features.task import FeatureTask, make_explainer, make_scorer
from orchestrator.features.verify import TrustedVerifier, VerifyRequest, baseline_pool, pinned_paths
from orchestrator.fsutil import atomic_write_json, atomic_write_text, sha256_file
from orchestrator.ledger import Ledger, LedgerEntry
from orchestrator.providers.base import Budget, BudgetExceeded, ProviderStop, UsageLedger
from orchestrator.providers.call_log import CallLog, read_call_log
from orchestrator.crashpoints import crash_point
from orchestrator.ratchet import Ratchet, RatchetError
from orchestrator.rundir import RunDir, RunLock, utc_now, utc_stamp
from orchestrator.state import RunState, StateStore


# JSON argv of a stand-in measurement server (tests: no mlx); like ORCH_COMPONENTS for research runs
MEASURE_ENV = "ORCH_FEATURE_MEASURE_COMMAND"


def _clock() -> float:
    """Seconds for the run's elapsed time and wall-clock budget (one place, so tests can drive it)."""
    return time.perf_counter()


class FeatureRunError(RuntimeError):
    """The engine step failed or the run directory is unusable; the message says which and why."""


def engine_commands(task: FeatureTask, out: Path, python: str = sys.executable) -> list[list[str]]:
    """The child commands that produce engine/sae (if trained here) and engine/latents.json."""
    base = [python, "-I", "-m", "engine.features"]
    t = task.train
    n_sampled = str(task.n_latents + task.refine.n_baseline)  # extra latents feed the random-explanation pool
    build = base + ["build", "--out", str(out), "--model", task.model, "--hook", t.hook, "--tokens", str(t.n_tokens),
                    "--d-sae", str(t.d_sae), "--k", str(t.k), "--architecture", t.architecture, "--epochs", str(t.epochs),
                    "--latents", n_sampled, "--order", task.latent_order, "--quiet"]
    tokens = str(task.corpus_tokens if task.sae else t.n_tokens)
    if task.kind == "behaviour_features":
        steps = [] if task.sae else [build]
        return steps + [base + ["attribute", "--sae", str(sae_dir(task, out.parent)), "--pairs", str(out / "pairs.json"),
                                "--out", str(out), "--model", task.model, "--tokens", tokens,
                                "--latents", n_sampled, "--quiet"]]
    if task.sae:
        return [base + ["sample", "--sae", str(sae_dir(task, out.parent)), "--out", str(out), "--model", task.model, "--tokens", tokens,
                        "--latents", n_sampled, "--order", task.latent_order, "--quiet"]]
    return [build]


def run_engine(task: FeatureTask, root: Path, python: str = sys.executable, timeout: float = 3600.0) -> None:
    """Run the engine steps in children (OpenBLAS preloaded, no API keys); skipped when already done."""
    out = root / "engine"
    done = out / ("attribution.json" if task.kind == "behaviour_features" else "latents.json")
    if done.is_file():
        return
    out.mkdir(parents=True, exist_ok=True)
    (root / "logs").mkdir(exist_ok=True)
    if task.behaviour is not None:
        atomic_write_json(out / "pairs.json", task.behaviour.pairs())
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_TOKEN", "_SECRET"))}
    env.update(blas_env(env))
    log_path = root / "logs" / "engine.log"
    for cmd in engine_commands(task, out, python):
        if cmd[4] == "build" and (out / "sae" / "cfg.json").is_file() and task.kind == "behaviour_features":
            continue  # the SAE was trained by an earlier (interrupted) run
        with log_path.open("ab") as log:
            try:
                proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=timeout,
                                      cwd=str(Path(__file__).resolve().parents[2]), start_new_session=True)
            except subprocess.TimeoutExpired:
                raise FeatureRunError(f"engine step {cmd[4]!r} took longer than {timeout:.0f}s; see {log_path}") from None
        if proc.returncode != 0:
            tail = log_path.read_text(errors="replace")[-1500:]
            raise FeatureRunError(f"engine step {cmd[4]!r} failed (exit {proc.returncode}):\n{tail}")
    if not done.is_file():
        raise FeatureRunError(f"the engine steps ended without writing {done}; see {log_path}")


def sae_dir(task: FeatureTask, root: Path) -> Path:
    """Where the SAE is: the task's (resolved against the caller's working directory) or the one trained here."""
    return Path(task.sae).expanduser().resolve() if task.sae else root / "engine" / "sae"


def _init_repo(task: FeatureTask, root: Path, task_text: str) -> Ratchet:
    """The contract commit: the task and the sha256 of every file the trusted verifier relies on
    (held-out examples, SAE, random-explanation pool), pinned before any explanation is refined."""
    if (root / ".git").exists():
        try:
            ratchet = Ratchet(root)
            ratchet.branch_commits()
            return ratchet
        except RatchetError:
            if (root / "results.jsonl").exists():
                raise
            # a kill inside the repository's creation left it without its contract commit: make it again
            shutil.rmtree(root / ".git")
    sae = sae_dir(task, root)
    contract = {
        "task": json.loads(task.model_dump_json()),
        "sae_dir": str(sae),
        "sha256": {name: sha256_file(path) for name, path in pinned_paths(root, sae).items()},
    }
    for sub in ("contract", "results", "findings", "state", "logs"):
        (root / sub).mkdir(exist_ok=True)
    atomic_write_text(root / "task.yaml", task_text)
    atomic_write_text(root / "program.md", f"# Feature task: {task.name}\n\n{task.question.strip()}\n\n"
                      f"Explain {task.n_latents} latents ({task.latent_order}) of `{sae}`; explainer "
                      f"{task.explainer.provider}, scorer {task.scorer.provider}; keep rule: held-out "
                      f"{task.refine.keep_metric} >= baseline + {task.refine.keep_sigma:g} sigma, decided by the "
                      "trusted verifier (orchestrator/features/verify.py).\n")
    atomic_write_json(root / "contract" / "feature_task.json", contract)
    return Ratchet.init(root, ["contract", "task.yaml", "program.md"], f"contract: {task.name}\n\nFeature task setup.\n",
                        extra_excludes=("/engine/",))


def _firsts(root: Path, latent_set: LatentSet, explainer) -> tuple[dict[int, Explanation], Usage]:
    """First explanations of every sampled latent (the random-explanation pool), written into contract/
    before the contract commit, so the baseline cannot move once refinement has begun."""
    path = root / "contract" / "first_explanations.json"
    if path.is_file():
        raw = json.loads(path.read_text())
        return {int(k): Explanation.model_validate(v) for k, v in raw.items()}, Usage()
    if (root / ".git").exists():
        raise FeatureRunError(f"{root}: contract/first_explanations.json is missing although the contract was committed; "
                              "restore it with `git checkout findings -- contract`")
    firsts, usage, errors = first_explanations(latent_set, explainer)
    if not firsts:
        raise FeatureRunError(f"no latent got a first explanation: {list(errors.values())[:3]}")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, {str(k): v.model_dump(mode="json") for k, v in firsts.items()})
    return firsts, usage


def _save_state(root: Path, task: FeatureTask, **fields) -> RunState:
    """state.json in the main loop's format, so `status`, `review` and the report read a feature run too."""
    store = StateStore(root)
    state = store.load() if store.exists() else RunState(run_id=root.name, task_name=task.name, seed=task.seed)
    state = state.model_copy(update={**fields, "updated_at": utc_now()})
    store.save(state)
    return state


def run_feature_task(task: FeatureTask, root: Path, *, task_text: str | None = None, python: str = sys.executable,
                     client_factory=None, measurer: Measurer | None = None, verifier=None,
                     log: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
                     on_latent: Callable[[int, int, int, LatentOutcome | None, RunState], None] | None = None) -> FeatureSummary:
    """Run (or resume) ``task`` in ``root``; returns the summary over every latent in the ledger.

    ``verifier`` (default: a TrustedVerifier child on this run) decides what is kept; ``on_latent``
    sees (index, total, latent, outcome or None before it starts, state) for progress output.
    """
    root.mkdir(parents=True, exist_ok=True)
    with RunLock(RunDir(root)):
        return _run_locked(task, root, task_text, python, client_factory, measurer, verifier, log, on_latent)


def _run_locked(task, root, task_text, python, client_factory, measurer, verifier, log, on_latent) -> FeatureSummary:
    started = _clock()
    log(f"[features] engine step -> {root / 'engine'}")
    run_engine(task, root, python)
    latent_set = LatentSet.model_validate_json((root / "engine" / "latents.json").read_text())
    spend = run_ledger(task, root)
    explainer, scorer = make_explainer(task, client_factory, spend), make_scorer(task, client_factory, spend)
    try:
        firsts, usage = _firsts(root, latent_set, explainer)  # every sampled latent: the pool
    except ProviderStop as exc:
        raise FeatureRunError(f"the first explanations (the random-explanation pool) could not be written: {exc}; "
                              "nothing was committed yet: raise the budget or fix the provider, then run again") from None
    ratchet = _init_repo(task, root, task_text or json.dumps(task.model_dump(mode="json"), indent=2))
    try:
        ratchet.clear_stale_locks()  # a kill inside a findings commit leaves git's index.lock behind
        ratchet.check()
    except RatchetError as exc:
        raise FeatureRunError(str(exc)) from None
    state = _save_state(root, task, status="running", stop_reason=None,
                        sessions=(StateStore(root).load().sessions if StateStore(root).exists() else 0) + 1)
    elapsed_before = state.elapsed_s
    contract_sha = sha256_file(root / "contract" / "feature_task.json")
    sae = Path(json.loads((root / "contract" / "feature_task.json").read_text())["sae_dir"])  # as resolved at creation
    latent_set = latent_set.model_copy(update={"latents": latent_set.latents[: task.n_latents]})
    ledger = Ledger(root / "results.jsonl")
    own_measurer, own_verifier = measurer is None, verifier is None
    command = json.loads(os.environ[MEASURE_ENV]) if os.environ.get(MEASURE_ENV) else None
    measurer = measurer or SubprocessMeasurer(sae, task.model, python=python, command=command)
    verifier = verifier or TrustedVerifier(root, python=python, keep_keys=task.scorer.provider != "builtin",
                                           measure_command=command)
    outcomes: list[LatentOutcome] = []
    total = len(latent_set.latents)
    stop: tuple[str, str] | None = None  # (status, reason) when a budget ends the run early
    try:
        for attempt, lat in enumerate(latent_set.latents, start=1):
            result_path = root / "results" / f"{attempt:04d}.json"
            entry = ledger.get(attempt)
            if entry is not None and result_path.is_file():
                outcome = LatentOutcome.model_validate(json.loads(result_path.read_text())["result"]["measurements"]["outcome"])
                if entry.decision == "keep":  # a kill between the ledger line and the findings commit
                    _commit_kept(root, ratchet, attempt, outcome)
                outcomes.append(outcome)
                continue
            if lat.latent not in firsts:
                continue
            reason = _budget_spent(task, spend, elapsed_before + _clock() - started)
            if reason is not None:
                stop = ("finished", reason)
                break
            if on_latent is not None:
                on_latent(attempt, total, lat.latent, None, state)
            began = utc_now()
            pool = baseline_pool(firsts, lat.latent, task.seed, task.refine.n_baseline)
            try:
                outcome = refine_latent(lat, explainer, scorer, measurer, pool, task.refine,
                                        initial=firsts[lat.latent], sae=str(sae), hook=latent_set.hook)
                verdict = verifier.verify(VerifyRequest.from_outcome(outcome, spend.remaining()))
            except ProviderStop as exc:  # budget or provider: stop cleanly; this latent starts again on resume
                stop = ("stopped", f"LLM provider stopped during latent {lat.latent}: {exc}")
                break
            spend.add_external(verdict.usage, role="feature-verify")
            outcome = _apply_verdict(outcome, verdict)
            outcomes.append(outcome)
            _record(root, ratchet, ledger, attempt, lat, outcome, contract_sha, began)
            state = _save_state(root, task, completed=len(outcomes), kept=sum(o.kept for o in outcomes),
                                next_attempt=attempt + 1, usage=spend.total(),
                                elapsed_s=elapsed_before + _clock() - started)
            log(f"[features] latent {lat.latent} ({attempt}/{total}): {'KEPT' if outcome.kept else 'discarded'} "
                f"({outcome.keep_metric} {outcome.test.get(outcome.keep_metric):.3f}, {outcome.margins[outcome.keep_metric]:+.1f} sigma)")
            if on_latent is not None:
                on_latent(attempt, total, lat.latent, outcome, state)
    finally:
        if own_measurer and isinstance(measurer, SubprocessMeasurer):
            measurer.close()
        if own_verifier:
            verifier.close()
        _save_state(root, task, status="stopped", usage=spend.total(),
                    elapsed_s=elapsed_before + _clock() - started)
    summary = summarise(outcomes, usage, _clock() - started, task.refine)
    atomic_write_json(root / "state" / "summary.json", json.loads(summary.model_dump_json()))
    status, reason = stop or ("finished", f"all {total} latents explained")
    if stop is not None:
        log(f"[features] {status}: {reason}")
    _save_state(root, task, status=status, stop_reason=reason, completed=len(outcomes), kept=summary.n_kept)
    return summary


def run_ledger(task: FeatureTask, root: Path) -> UsageLedger:
    """The one budget every LLM call of the run spends. Its starting total is read back from the call log,
    which every client of the run (and the verifier child) appends to, so it is exact across resumes."""
    spend = UsageLedger(Budget(max_tokens=task.max_tokens, max_dollars=task.max_dollars), sink=CallLog(root / "logs"))
    total = sum((r.usage for r in read_call_log(root / "logs")), Usage())
    spend.restore({"total": total.model_dump()})
    return spend


def _budget_spent(task: FeatureTask, spend: UsageLedger, elapsed_s: float) -> str | None:
    """Why the run must not start another latent, or None."""
    if task.wall_clock_hours is not None and elapsed_s >= task.wall_clock_hours * 3600:
        return f"wall-clock budget of {task.wall_clock_hours:g} h spent ({elapsed_s / 3600:.2f} h)"
    try:
        spend.check_budget()
    except BudgetExceeded as exc:
        return str(exc)
    return None


def _apply_verdict(outcome: LatentOutcome, verdict: Verdict) -> LatentOutcome:
    """The trusted verdict replaces the loop's own test scores and keep decision (they should agree)."""
    if verdict.latent != outcome.latent:
        raise FeatureRunError(f"the verifier answered for latent {verdict.latent}, asked about {outcome.latent}")
    notes = [] if verdict.kept == outcome.kept else [
        f"the loop's own keep decision ({outcome.kept}) was overruled by the trusted verifier ({verdict.kept})"]
    notes += verdict.problems
    error = "; ".join(([outcome.error] if outcome.error else []) + notes) or None
    return outcome.model_copy(update={"test": verdict.test, "baselines": verdict.baselines, "margins": verdict.margins,
                                      "kept": verdict.kept, "verdict": verdict, "error": error,
                                      "usage": outcome.usage + verdict.usage})


def _record(root: Path, ratchet: Ratchet, ledger: Ledger, attempt: int, lat, outcome: LatentOutcome,
            contract_sha: str, began: str) -> None:
    """results file, then (kept only) the finding note, then the ledger line, then the findings commit."""
    slug = f"latent-{outcome.latent}"
    result = {"result": {"summary": f"latent {outcome.latent}: {outcome.final.text}",
                         "measurements": {"feature_cards": [feature_card(outcome, lat)],
                                          "outcome": json.loads(outcome.model_dump_json())}}}
    result_path = root / "results" / f"{attempt:04d}.json"
    atomic_write_json(result_path, result)
    crash_point("feature-result-written", attempt)
    if outcome.kept:
        atomic_write_text(_note_path(root, attempt, outcome), finding_markdown(outcome))
    m = outcome.keep_metric
    ledger.append(LedgerEntry(
        attempt=attempt, slug=slug, phase="committing", method="explain-latent", hypothesis=outcome.final.text,
        contract_sha256=contract_sha, result_summary=f"test {m} {outcome.test.get(m):.3f} vs baseline "
        f"{outcome.baselines[m].mean:.3f} ± {outcome.baselines[m].sigma:.3f}",
        key_figures={**{f"test_{k}": outcome.test.get(k) for k in ("detection", "fuzzing", "simulation")},
                     f"margin_{m}_sigma": outcome.margins[m], "rounds": float(len(outcome.rounds)),
                     **({"adversarial_max_diff": outcome.verdict.adversarial_max_diff}
                        if outcome.verdict and outcome.verdict.adversarial_max_diff is not None else {})},
        decision="keep" if outcome.kept else "discard",
        reason=f"{outcome.margins[m]:+.2f} sigma vs random-explanation baseline (rule >= {outcome.keep_sigma:g}; "
               "trusted verifier)" + (f"; {outcome.error}" if outcome.error else ""),
        tokens=outcome.usage.total_tokens, dollars=outcome.usage.dollars, calls=outcome.usage.calls,
        durations_s={"refine": round(outcome.seconds, 3)}, started_at=began, ended_at=utc_now()))
    crash_point("feature-ledger-written", attempt)
    if outcome.kept:
        _commit_kept(root, ratchet, attempt, outcome)


def _note_path(root: Path, attempt: int, outcome: LatentOutcome) -> Path:
    return root / "findings" / f"{attempt:04d}-latent-{outcome.latent}.md"


def _commit_kept(root: Path, ratchet: Ratchet, attempt: int, outcome: LatentOutcome) -> None:
    """The findings commit of a kept latent (idempotent: a finding already on the branch is left as it is)."""
    paths = [f"results/{attempt:04d}.json", "results.jsonl", str(_note_path(root, attempt, outcome).relative_to(root))]
    ratchet.commit_finding(attempt, paths, f"finding {attempt:04d}: latent {outcome.latent}", outcome.final.text)


def default_run_dir(task: FeatureTask, runs_root: Path = Path("runs")) -> Path:
    return runs_root / f"{task.name}-{utc_stamp()}"
