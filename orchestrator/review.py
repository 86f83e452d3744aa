"""`status` and `review`: what a researcher needs at a glance, as text or JSON.

Why read-only and lock-free: both must work on a live run (another process holds the lock) and on
a finished one, and must never change anything (no ledger repair, no git writes).
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import yaml

from orchestrator.ledger import LedgerEntry, read_ledger
from orchestrator.ratchet import Ratchet
from orchestrator.records import best_verification
from orchestrator.report.live import eta_seconds, lock_holder, seconds_since
from orchestrator.report.show import detail_json, finding_detail, format_finding_detail
from orchestrator.report.terminal import safe
from orchestrator.rundir import RunDir
from orchestrator.state import AttemptRecord, read_state


def _hms(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h:d}:{m:02d}:{s:02d}"


def _task_meta(run: RunDir) -> dict[str, Any]:
    data = yaml.safe_load(run.task_yaml.read_text(encoding="utf-8")) or {}
    return data if isinstance(data, dict) else {}


def _findings(run: RunDir, entries: list[LedgerEntry]) -> list[dict[str, Any]]:
    by_attempt = {e.attempt: e for e in entries}
    out = []
    for attempt, commit in Ratchet(run.root).findings():
        entry = by_attempt.get(attempt)
        best = _best(entry)
        out.append({
            "attempt": attempt,
            "commit": commit.hexsha[:10],
            "slug": entry.slug if entry else "",
            "method": entry.method if entry else "",
            "statement": str(best.get("statement", "")) if best else "",
            "effect": best.get("effect") if best else None,
            "ci": [best.get("ci_low"), best.get("ci_high")] if best else None,
            "adjusted_p": best.get("adjusted_p") if best else None,
            "noise_floor": best.get("noise_floor") if best else None,
            "n_pairs": best.get("n_pairs") if best else None,
            "ledger_line": entry is not None,
            "summary": entry.result_summary if entry else "",
        })
    return out


def _best(entry: LedgerEntry | None) -> dict[str, Any] | None:
    if entry is None or not entry.statistics:
        return None
    return best_verification(AttemptRecord(attempt=entry.attempt, verifications=entry.statistics))


def _phase(state: dict[str, Any], alive: bool | None) -> str:
    """What the run is doing: the in-flight attempts' phases, or why nothing is moving."""
    in_flight = state.get("in_flight") or {}
    if state.get("status") == "finished":
        return "finished"
    if alive is False:
        return "not running" + (f" (attempt {', '.join(map(str, sorted(map(int, in_flight))))} interrupted)" if in_flight else "")
    if in_flight:
        return ", ".join(f"{v} (attempt {k})" for k, v in sorted(in_flight.items(), key=lambda kv: int(kv[0])))
    return "between attempts" if state.get("status") == "running" else str(state.get("status"))


def status_data(run: RunDir) -> dict[str, Any]:
    state = read_state(run.root)
    entries = read_ledger(run.ledger)
    meta = _task_meta(run)
    budgets = meta.get("budgets") or {}
    usage = state.get("usage") or {}
    tokens = sum(int(usage.get(k, 0)) for k in ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"))
    alive, pid = lock_holder(run.lock_path)
    elapsed = float(state.get("elapsed_s", 0.0) or 0.0)
    if alive and state.get("status") == "running":  # state.json is saved per phase: add the time since
        elapsed += seconds_since(state.get("updated_at")) or 0.0
    decisions = Counter(e.decision for e in entries)
    finished = state.get("status") == "finished"
    eta = eta_seconds(finished=finished, elapsed_s=elapsed, completed=int(state.get("completed", 0)),
                      in_flight=len(state.get("in_flight") or {}), max_experiments=budgets.get("max_experiments"),
                      wall_clock_hours=budgets.get("wall_clock_hours"))
    return {
        "phase": _phase(state, alive),
        "alive": alive,
        "pid": pid if alive else None,
        "discarded": decisions.get("discard", 0),
        "crashed": decisions.get("crash", 0),
        "eta_s": None if alive is False and not finished else eta,
        "run_dir": str(run.root),
        "task": state.get("task_name"),
        "question": str(meta.get("question", "")).strip(),
        "model": meta.get("model", "smollm2-135m"),
        "status": state.get("status"),
        "stop_reason": state.get("stop_reason"),
        "answer": state.get("answer"),
        "completed": state.get("completed", 0),
        "max_experiments": budgets.get("max_experiments"),
        "in_flight": state.get("in_flight", {}),
        "kept": state.get("kept", 0),
        "decisions": dict(decisions),
        "elapsed_s": elapsed,
        "wall_clock_hours": budgets.get("wall_clock_hours"),
        "dollars": usage.get("dollars", 0.0),
        "tokens": tokens,
        "sessions": state.get("sessions", 0),
        "recent": [
            {"attempt": e.attempt, "slug": e.slug, "method": e.method, "decision": e.decision, "reason": e.reason}
            for e in entries[-8:]
        ],
        "findings": _findings(run, entries),
    }


def _eta_text(d: dict[str, Any]) -> str:
    if d["status"] == "finished":
        return ""
    if d["alive"] is False:
        return f"; stopped — continue with: python -m orchestrator resume {d['run_dir']}"
    return f", ETA {_hms(d['eta_s'])}" if d["eta_s"] is not None else ", ETA unknown until an experiment finishes"


def format_status(d: dict[str, Any]) -> str:
    others = {k: v for k, v in sorted(d["decisions"].items()) if k not in ("keep", "discard", "crash")}
    lines = [
        f"run       {d['run_dir']}",
        f"task      {d['task']}  (model {d['model']})",
        f"question  {d['question'][:300]}",
        f"status    {d['status']}" + (f"  — stopped by {d['stop_reason']}" if d["stop_reason"] else "")
        + ("  — but no process is driving it (killed or crashed)" if d["alive"] is False and d["status"] == "running" else ""),
        f"phase     {d['phase']}" + (f"  (pid {d['pid']})" if d["pid"] else ""),
        f"progress  {d['completed']}/{d['max_experiments']} experiments, {d['kept']} kept, {d['discarded']} discarded, "
        f"{d['crashed']} crashed" + "".join(f", {v} {k}" for k, v in others.items()),
        f"time      {_hms(d['elapsed_s'])} of {d['wall_clock_hours']} h over {d['sessions']} session(s){_eta_text(d)}",
        f"spend     ${d['dollars']:.2f}, {d['tokens']} tokens",
    ]
    if d["answer"]:
        lines.append(f"answer    {' '.join(str(d['answer']).split())}")
    if d["recent"]:
        lines.append("recent attempts:")
        for r in d["recent"]:
            lines.append(f"  {r['attempt']:>4}  {r['decision']:<9} {r['slug'][:32]:<32} {' '.join(r['reason'].split())[:90]}")
    lines.append(f"findings  {len(d['findings'])} (see `review`)")
    return safe("\n".join(lines))


def review_data(run: RunDir) -> dict[str, Any]:
    entries = read_ledger(run.ledger)
    ratchet = Ratchet(run.root)
    return {
        "run_dir": str(run.root),
        "branch": "findings",
        "head": ratchet.head_sha()[:10],
        "contract_commits": len(ratchet.commits_touching("contract")),
        "attempts": len(entries),
        "decisions": dict(Counter(e.decision for e in entries)),
        "findings": _findings(run, entries),
    }


def format_review(d: dict[str, Any]) -> str:
    tally = ", ".join(f"{k} {v}" for k, v in sorted(d["decisions"].items()))
    lines = [
        f"findings branch of {d['run_dir']} (head {d['head']}): {len(d['findings'])} verified finding(s) "
        f"from {d['attempts']} attempts" + (f" ({tally})" if tally else ""),
    ]
    if not d["findings"]:
        lines.append("  no finding has passed verification yet" + (
            f"; {d['attempts']} attempt(s) tried — see `status`, or `review --show N` for any attempt" if d["attempts"] else ""))
    for f in d["findings"]:
        if f["effect"] is None:
            detail = " ".join(f["summary"].split())[:140] or "no verification figures in the ledger"
            lines.append(f"  {f['attempt']:04d} {f['commit']}  {f['slug']}: {detail}")
            continue
        lines.append(
            f"  {f['attempt']:04d} {f['commit']}  effect {f['effect']:+.3f} "
            f"[{f['ci'][0]:+.3f}, {f['ci'][1]:+.3f}]  p_adj {f['adjusted_p']:.2g}  "
            f"floor {f['noise_floor']:.3f}  n={f['n_pairs']}  {f['slug']}: {' '.join(f['statement'].split())[:100]}"
        )
    if d["contract_commits"] != 1:
        lines.append(f"  WARNING: contract/ was changed by {d['contract_commits']} commits (expected 1)")
    return safe("\n".join(lines))


def show_data(run: RunDir, attempt: int) -> dict[str, Any]:
    """One attempt in full (raises report.show.NoSuchAttempt naming the attempts that exist)."""
    return finding_detail(run, attempt)


def format_show(d: dict[str, Any]) -> str:
    return format_finding_detail(d)


def show_json(d: dict[str, Any]) -> dict[str, Any]:
    return detail_json(d)


def to_json(d: dict[str, Any]) -> str:
    return json.dumps(d, indent=1, sort_keys=True, default=str)
