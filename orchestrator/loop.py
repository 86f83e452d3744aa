"""The research loop: a per-attempt phase state machine that survives SIGKILL at any instant.

Order of durability (why resume is exact): each phase is written to the attempt record and to
state.json *before* it acts; its outputs are saved together with the move to the next phase; the
ledger line is written once per attempt, then the ratchet commit if kept, then state advances.
On resume every in-flight attempt continues from its recorded phase, and each step checks what is
already on disk (result file, ledger line, commit trailer) instead of redoing it.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any, Callable

from orchestrator.agent.base import AgentContext, ResearchAgent, StepResult, Usage
from orchestrator.contract import check_contract, contract_hash, restore_contract
from orchestrator.crashpoints import crash_point
from orchestrator.fsutil import atomic_write_text, sha256_text
from orchestrator.integrity import RunInconsistent, check_run
from orchestrator.interfaces import ExperimentBackend, ExperimentOutcome, ExperimentRequest, Guard, Verifier, VerifyRequest
from orchestrator.ledger import Ledger
from orchestrator.logging import NullLog, RunLog
from orchestrator.progress import Snapshot
from orchestrator.providers.base import ProviderStop
from orchestrator.ratchet import Ratchet
from orchestrator.records import finding_body, finding_note, finding_title, ledger_entry, research_state
from orchestrator.rundir import RunDir, RunLock, utc_now
from orchestrator.state import AttemptRecord, RunState, StateStore
from orchestrator.task import Task
from sandbox.contract import load_contract
from sandbox.schemas import ExperimentResult


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid != os.getpid()


@dataclass
class Components:
    """Everything the loop drives; swap any of them without touching the loop."""

    agent: ResearchAgent
    backend: ExperimentBackend
    guard: Guard
    verifier: Verifier
    engine_guide: str = ""
    model_facts: dict[str, Any] | None = None


class Loop:
    def __init__(
        self,
        run: RunDir,
        task: Task,
        components: Components,
        *,
        log: RunLog | None = None,
        on_progress: Callable[[Snapshot], None] | None = None,
        on_notice: Callable[[str], None] | None = None,
    ) -> None:
        self.run = run
        self.task = task
        self.c = components
        self.log = log or NullLog()
        self.on_progress = on_progress
        self.on_notice = on_notice or (lambda text: None)
        self.store = StateStore(run.root)
        self.ledger = Ledger(run.ledger)
        self.ratchet = Ratchet(run.root)
        self.contract_sha = ""
        self._contract_text: str | None = None
        self.state: RunState | None = None
        self._t0 = time.monotonic()
        self._elapsed0 = 0.0

    # ---------------------------------------------------------------- driving
    def run_until_stopped(self) -> RunState:
        """Resume whatever is in flight, then start attempts until a stop condition holds."""
        with RunLock(self.run) as lock:
            if lock.stale_pid is not None:
                self.on_notice(f"cleared the stale lock of pid {lock.stale_pid}, which ended without releasing it")
                self.log.warning("stale_run_lock_cleared", pid=lock.stale_pid)
            self._open_session()
            state = self.state
            assert state is not None
            try:
                while True:
                    for attempt in sorted(state.in_flight):
                        self._drive(attempt)
                    reason = self._stop_reason()
                    if reason is not None:
                        break
                    self._start_attempt()
            except ProviderStop as exc:  # budget or configuration: stop cleanly, resumable after a fix
                state.status, state.stop_reason = "stopped", f"agent provider stopped: {exc}"
                self._save_state()
                self.log.warning("run_stopped", stop_reason=state.stop_reason, in_flight=sorted(state.in_flight))
                return state
            state.status = "finished"
            state.stop_reason = reason
            self._save_state()
            self.log.info("run_finished", stop_reason=reason, completed=state.completed, kept=state.kept)
            return state

    def _open_session(self) -> None:
        """Repair what a kill can leave (git locks, a torn ledger line, temp files, a contract restore), then
        refuse files that no kill can produce (integrity.check_run) before anything is written."""
        removed = self.ratchet.clear_stale_locks()
        findings = self.ratchet.check()
        entries = self.ledger.load()  # drops and repairs a torn final line
        self.state = self.store.load()
        if self.state.task_name != self.task.name:
            raise RunInconsistent(f"{self.run.root}/state.json belongs to task {self.state.task_name!r}, not "
                                  f"{self.task.name!r} (task.yaml); the run directory mixes two runs: restore its own files")
        check_run(self.run.root, self.state, entries, findings)
        stale_tmp = self._remove_temp_files()
        self._elapsed0 = self.state.elapsed_s
        self._t0 = time.monotonic()
        bad = check_contract(self.run.root)
        if bad:  # a previous session died between a tampering experiment and its restore
            restore_contract(self.run.root)
            self.log.warning("contract_restored_on_resume", problems=bad)
            self.on_notice(f"restored contract files that differed from the findings branch: {bad}")
        self.contract_sha = contract_hash(self.run.root)
        if self.state.in_flight:
            cut = ", ".join(f"{a} in {p}" for a, p in sorted(self.state.in_flight.items()))
            self.on_notice(f"resuming after {self.state.completed} finished attempt(s); continuing attempt {cut}")
        self.state.status = "running"
        self.state.sessions += 1
        self._save_state()
        self.log.info(
            "session_started", session=self.state.sessions, in_flight=sorted(self.state.in_flight),
            completed=self.state.completed, stale_git_locks=removed, stale_temp_files=stale_tmp,
        )

    def _remove_temp_files(self) -> list[str]:
        """Temp files of atomic writes a kill cut off (ours, and the report's from processes now gone)."""
        removed = []
        for folder in (self.run.root, self.store.attempt_dir, self.run.experiments, self.run.results, self.run.findings):
            for tmp in folder.glob(".*.tmp") if folder.is_dir() else ():
                pid = tmp.name.rsplit(".", 2)[-2] if tmp.name.count(".") >= 3 else ""
                if pid.isdigit() and _alive(int(pid)):
                    continue  # a live `report` command's file
                tmp.unlink()
                removed.append(self.run.rel(tmp))
        return removed

    def _stop_reason(self) -> str | None:
        s, b = self.state, self.task.budgets
        assert s is not None
        if s.in_flight:
            return None
        if any(e.question_answered for e in self.ledger.entries()):
            return "question_answered"
        if s.completed >= b.max_experiments:
            return "max_experiments"
        if s.elapsed_s >= b.wall_clock_hours * 3600:
            return "wall_clock"
        if b.max_dollars is not None and s.usage.dollars >= b.max_dollars:
            return "max_dollars"
        if b.max_tokens is not None and s.usage.total_tokens >= b.max_tokens:
            return "max_tokens"
        return None

    def _start_attempt(self) -> None:
        s = self.state
        assert s is not None
        attempt = s.next_attempt
        s.next_attempt += 1
        s.in_flight[attempt] = "planning"
        self._save_state()  # the number is taken before anything is produced for it
        self.store.save_attempt(AttemptRecord(attempt=attempt, started_at=utc_now()))
        self.log.info("attempt_started", attempt=attempt)

    def _drive(self, attempt: int) -> None:
        rec = self.store.load_attempt(attempt) or AttemptRecord(attempt=attempt, started_at=utc_now())
        while rec.phase != "done":
            phase = rec.phase
            self._enter(rec)
            crash_point(phase, attempt)
            t = time.monotonic()
            getattr(self, f"_phase_{phase}")(rec)
            rec.durations_s[phase] = rec.durations_s.get(phase, 0.0) + time.monotonic() - t
            self.store.save_attempt(rec)  # outputs and the next phase, in one atomic write
        crash_point("recorded-done", attempt)
        self._finish(rec)

    def _enter(self, rec: AttemptRecord) -> None:
        """Record the phase before it acts (state.json and the attempt record)."""
        s = self.state
        assert s is not None
        s.in_flight[rec.attempt] = rec.phase
        self._save_state()
        self.log.info("phase", attempt=rec.attempt, phase=rec.phase, slug=rec.slug, repairs=rec.repairs)
        self._progress(rec)

    def _elapsed(self) -> float:
        """Active seconds over every session of the run."""
        return self._elapsed0 + (time.monotonic() - self._t0)

    def _save_state(self) -> None:
        s = self.state
        assert s is not None
        s.elapsed_s = self._elapsed()
        s.updated_at = utc_now()
        self.store.save(s)

    def _progress(self, rec: AttemptRecord) -> None:
        if self.on_progress is None or self.state is None:
            return
        s = self.state
        usage = s.usage + rec.usage if rec.attempt in s.in_flight else s.usage
        self.on_progress(Snapshot(rec.phase, rec.attempt, self.task.budgets.max_experiments, s.completed, s.kept,
                                  s.elapsed_s, usage.dollars, usage.total_tokens, rec.slug))

    # ---------------------------------------------------------------- helpers
    def _contract_description(self) -> str:
        """What the contract pins, as the roles should read it (exploration pairs only, never held-out)."""
        if self._contract_text is None:
            contract = load_contract(self.run.root)
            examples = "\n".join(
                f"  - clean {p.clean!r} -> {p.correct!r}; corrupted {p.corrupted!r} -> {p.wrong!r}"
                for p in contract.exploration[:4]
            )
            self._contract_text = (
                f"model: {contract.model}\nmetric: {contract.metric} (per pair, final position)\n"
                f"exploration pairs (ctx.pairs): {len(contract.exploration)}; held-out pairs (verifier only): "
                f"{len(contract.held_out)}\nseed: {contract.seed}\nexamples:\n{examples}\n"
            )
        return self._contract_text

    def _context(self) -> AgentContext:
        return AgentContext(
            program=self.run.program_md.read_text(encoding="utf-8"),
            contract_description=self._contract_description(),
            engine_guide=self.c.engine_guide,
            model_facts=self.c.model_facts or {},
            seed=self.task.seed,
        )

    def _research_state(self):
        return research_state(self.ledger.entries(), self.task.question, self.task.budgets.max_experiments)

    def _ask(self, method: str, *args: Any) -> StepResult[Any]:
        """Call one role. A bug in an agent becomes a failed, recorded step rather than a dead overnight
        run (resume would only hit it again); budget and configuration stops still end the run."""
        try:
            return getattr(self.c.agent, method)(*args)
        except ProviderStop:
            raise
        except Exception as exc:  # noqa: BLE001 - recorded in the ledger and the log, never swallowed
            self.log.error("agent_raised", role=method, error=f"{type(exc).__name__}: {exc}", exc_info=True)
            return StepResult(value=None, error=f"the agent raised {type(exc).__name__}: {exc}")

    def _account(self, rec: AttemptRecord, step: StepResult[Any], role: str) -> Any:
        rec.usage = rec.usage + (step.usage or Usage())
        self.log.info("role_called", attempt=rec.attempt, role=role, ok=step.value is not None,
                      tokens=(step.usage or Usage()).total_tokens, dollars=(step.usage or Usage()).dollars)
        if step.value is None:
            self.log.warning("role_failed", attempt=rec.attempt, role=role, error=step.error)
        return step.value

    def _end(self, rec: AttemptRecord, decision: str, reason: str) -> None:
        rec.decision, rec.reason, rec.ended_in, rec.phase = decision, reason, rec.phase, "committing"

    def _result(self, rec: AttemptRecord) -> ExperimentResult:
        data = json.loads(self.run.result_path(rec.attempt).read_text(encoding="utf-8"))
        return ExperimentResult.model_validate(data["result"])

    # ---------------------------------------------------------------- phases
    def _phase_planning(self, rec: AttemptRecord) -> None:
        plan = self._account(rec, self._ask("plan", self._research_state(), self._context()), "planner")
        crash_point("planned", rec.attempt)
        if plan is None:
            return self._end(rec, "failed", "planner produced no valid plan")
        rec.plan, rec.slug, rec.phase = plan, plan.slug, "writing"

    def _phase_writing(self, rec: AttemptRecord) -> None:
        assert rec.plan is not None
        step = self._ask("write_experiment", rec.plan, self._research_state(), self._context(), rec.feedback)
        code = self._account(rec, step, "executor")
        if code is None and rec.feedback is not None:  # a repair that did not come: the original failure stands
            guard_said_no = rec.feedback.startswith("guard rejected")
            return self._end(rec, "rejected" if guard_said_no else "crash",
                             f"{rec.feedback[:1500]} — the executor could not repair it: {step.error or 'no detail'}")
        if code is None:
            return self._end(rec, "failed", f"executor produced no valid code: {step.error or 'no detail'}")
        path = self.run.experiment_path(rec.attempt, rec.slug)
        atomic_write_text(path, code.code)
        rec.experiment_file, rec.code_sha256, rec.phase = self.run.rel(path), sha256_text(code.code), "guarding"

    def _phase_guarding(self, rec: AttemptRecord) -> None:
        assert rec.experiment_file is not None
        message = self.c.guard.check((self.run.root / rec.experiment_file).read_text(encoding="utf-8"))
        if message is None:
            rec.guard_ok, rec.phase = True, "running"
            return
        self.log.info("guard_rejected", attempt=rec.attempt, message=message)
        if rec.repairs < self.task.agent.max_repairs:
            rec.repairs, rec.feedback, rec.phase = rec.repairs + 1, f"guard rejected the code: {message}", "writing"
            return
        self._end(rec, "rejected", f"guard rejected the code after {rec.repairs} repairs: {message}")

    def _phase_running(self, rec: AttemptRecord) -> None:
        assert rec.experiment_file is not None
        result_path = self.run.result_path(rec.attempt)
        if result_path.is_file():  # finished before a crash: reuse, never re-run
            self.log.info("experiment_reused", attempt=rec.attempt)
            result = self._result(rec)
            rec.outcome = {"status": "ok", "summary": result.summary, "measurements": result.measurements}
            rec.phase = "verifying"
            return
        outcome = self._run_experiment(rec)
        if outcome.status == "ok" and outcome.result is not None:
            payload = {"attempt": rec.attempt, "experiment_sha256": rec.code_sha256,
                       "result": outcome.result.model_dump(mode="json"), "outcome": outcome.details}
            atomic_write_text(result_path, json.dumps(payload, indent=1, sort_keys=True) + "\n")
            rec.outcome = {"status": "ok", "summary": outcome.result.summary, "measurements": outcome.result.measurements}
            rec.phase = "verifying"
            return
        rec.outcome = {"status": outcome.status, "error": outcome.error, "details": outcome.details}
        self.log.info("experiment_failed", attempt=rec.attempt, status=outcome.status, error=outcome.error)
        if outcome.status == "violation":
            return self._end(rec, "violation", outcome.error or "sandbox violation")
        if outcome.status in ("error", "rejected") and rec.repairs < self.task.agent.max_repairs:
            rec.repairs, rec.feedback, rec.phase = rec.repairs + 1, f"the experiment failed: {outcome.error}", "writing"
            return
        self._end(rec, "crash", f"experiment {outcome.status}: {outcome.error or 'no detail'}")

    def _run_experiment(self, rec: AttemptRecord) -> ExperimentOutcome:
        """Submit, wait, and check the contract before and after (a tampered contract is restored)."""
        assert rec.experiment_file is not None
        if check_contract(self.run.root):
            restore_contract(self.run.root)
        request = ExperimentRequest(
            attempt=rec.attempt, run_dir=self.run.root, experiment_file=self.run.root / rec.experiment_file,
            contract_dir=self.run.contract, seed=self.task.seed, timeout_s=self.task.sandbox.timeout_s,
            memory_gb=self.task.sandbox.memory_gb, cpu_s=self.task.sandbox.cpu_s,
        )
        handle = self.c.backend.submit(request)
        try:
            self.log.info("experiment_submitted", attempt=rec.attempt, file=rec.experiment_file, repairs=rec.repairs)
            crash_point("experiment-running", rec.attempt)
            outcome = self.c.backend.wait(handle)
        except BaseException:  # Ctrl-C / SIGTERM (or any failure): stop the child now; resume re-runs the experiment
            self.c.backend.cancel(handle)
            raise
        tampered = check_contract(self.run.root)
        if tampered:
            restore_contract(self.run.root)
            self.log.error("contract_violation", attempt=rec.attempt, files=tampered)
            return ExperimentOutcome(status="violation", error=f"contract files changed during the experiment: {tampered}")
        return outcome

    def _phase_verifying(self, rec: AttemptRecord) -> None:
        result = self._result(rec)
        prior = [float(v["p_value"]) for e in self.ledger.entries() for v in e.statistics if "p_value" in v]
        prior += [float(v["p_value"]) for v in rec.verifications]
        sig, budgets = self.task.significance, self.task.budgets
        for i, claim in enumerate(result.claims[: budgets.max_claims_per_experiment]):
            if i < len(rec.verifications):
                continue  # verified before a crash
            if i > 0 and self._elapsed() >= budgets.wall_clock_hours * 3600:
                self.log.warning("claims_skipped_wall_clock", attempt=rec.attempt, verified=i)
                break  # each verification takes a fresh model load: do not run far past the budget
            request = VerifyRequest(
                run_dir=self.run.root, attempt=rec.attempt, claim_index=i, contract_dir=self.run.contract,
                seed=self.task.seed, alpha=sig.alpha, correction=sig.correction, bootstrap=sig.bootstrap,
                prior_p_values=list(prior),
            )
            verdict = self.c.verifier.verify(claim, request)
            verdict = verdict.model_copy(update={"claim_index": i, "statement": verdict.statement or claim.statement})
            rec.verifications.append(verdict.model_dump(mode="json"))
            prior.append(verdict.p_value)
            self.store.save_attempt(rec)
            crash_point("verified-claim", rec.attempt)
        rec.claims_skipped = len(result.claims) - len(rec.verifications)  # never tested: not in the family
        rec.phase = "analysing"

    def _phase_analysing(self, rec: AttemptRecord) -> None:
        assert rec.plan is not None
        summary = dict(rec.outcome or {})
        summary["verification"] = rec.verifications
        rec.analysis = self._account(rec, self._ask("analyse", rec.plan, summary, self._context()), "analyst")
        rec.phase = "reflecting"

    def _phase_reflecting(self, rec: AttemptRecord) -> None:
        assert rec.plan is not None
        verification = {"claims": rec.verifications, "any_kept": any(v.get("kept") for v in rec.verifications)}
        step = self._ask("reflect", self._research_state(), rec.plan, rec.analysis, verification, self._context())
        reflection = self._account(rec, step, "reflector")
        rec.reflection = reflection
        if reflection is None:
            return self._end(rec, "discard", f"reflector produced no valid decision: {step.error or 'no detail'}")
        if reflection.decision == "keep" and verification["any_kept"]:
            return self._end(rec, "keep", reflection.reason)
        if reflection.decision == "keep":
            return self._end(rec, "discard", f"reflector wanted to keep, but no claim passed verification ({reflection.reason})")
        self._end(rec, "discard", reflection.reason)

    def _phase_committing(self, rec: AttemptRecord) -> None:
        if self.ledger.get(rec.attempt) is None:
            self.ledger.append(ledger_entry(rec, self.contract_sha, utc_now()))
        crash_point("ledger-written", rec.attempt)
        if rec.decision == "keep":
            result = self._result(rec)
            note = self.run.finding_path(rec.attempt, rec.slug)
            atomic_write_text(note, finding_note(rec, result))
            assert rec.experiment_file is not None
            paths = [rec.experiment_file, self.run.rel(self.run.result_path(rec.attempt)), self.run.rel(note), self.run.rel(self.run.ledger)]
            sha = self.ratchet.commit_finding(rec.attempt, paths, finding_title(rec), finding_body(rec))
            self.log.info("finding_committed", attempt=rec.attempt, commit=sha)
            crash_point("committed", rec.attempt)
        rec.phase = "done"

    def _finish(self, rec: AttemptRecord) -> None:
        """Advance the global state once per attempt (idempotent: keyed on in_flight membership).

        The record already says done, so a crash before this write is finished by the next session.
        """
        s = self.state
        assert s is not None
        if rec.attempt in s.in_flight:
            del s.in_flight[rec.attempt]
            s.completed += 1
            s.kept += int(rec.decision == "keep")
            s.usage = s.usage + rec.usage
            if rec.reflection is not None and rec.reflection.question_answered:
                s.answer = rec.reflection.answer
            self._save_state()
            self.log.info("attempt_done", attempt=rec.attempt, decision=rec.decision, reason=rec.reason)
        self._progress(rec)
