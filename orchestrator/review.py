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
from orchestrator.rundir import RunDir
from orchestrator.state import AttemptRecord, read_state


def _hms(seconds: float) -> str:
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
        })
    return out


def _best(entry: LedgerEntry | None) -> dict[str, Any] | None:
    if entry is None or not entry.statistics:
        return None
    return best_verification(AttemptRecord(attempt=entry.attempt, verifications=entry.statistics))


def status_data(run: RunDir) -> dict[str, Any]:
    state = read_state(run.root)
    entries = read_ledger(run.ledger)
    meta = _task_meta(run)
    budgets = meta.get("budgets") or {}
    usage = state.get("usage") or {}
    tokens = sum(int(usage.get(k, 0)) for k in ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"))
    return {
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
        "decisions": dict(Counter(e.decision for e in entries)),
        "elapsed_s": state.get("elapsed_s", 0.0),
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


def format_status(d: dict[str, Any]) -> str:
    lines = [
        f"run       {d['run_dir']}",
        f"task      {d['task']}  (model {d['model']})",
        f"question  {d['question'][:300]}",
        f"status    {d['status']}" + (f"  — stopped by {d['stop_reason']}" if d["stop_reason"] else ""),
        f"progress  {d['completed']}/{d['max_experiments']} experiments, {d['kept']} kept  "
        + ", ".join(f"{k} {v}" for k, v in sorted(d["decisions"].items())),
        f"time      {_hms(d['elapsed_s'])} of {d['wall_clock_hours']} h over {d['sessions']} session(s)",
        f"spend     ${d['dollars']:.2f}, {d['tokens']} tokens",
    ]
    if d["in_flight"]:
        lines.append("in flight " + ", ".join(f"#{k} {v}" for k, v in sorted(d["in_flight"].items(), key=lambda kv: int(kv[0]))))
    if d["answer"]:
        lines.append(f"answer    {d['answer']}")
    if d["recent"]:
        lines.append("recent attempts:")
        for r in d["recent"]:
            lines.append(f"  {r['attempt']:>4}  {r['decision']:<9} {r['slug'][:32]:<32} {r['reason'][:90]}")
    lines.append(f"findings  {len(d['findings'])} (see `review`)")
    return "\n".join(lines)


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
    lines = [
        f"findings branch of {d['run_dir']} (head {d['head']}): {len(d['findings'])} verified finding(s) "
        f"from {d['attempts']} attempts (" + ", ".join(f"{k} {v}" for k, v in sorted(d["decisions"].items())) + ")",
    ]
    if not d["findings"]:
        lines.append("  no finding has passed verification yet")
    for f in d["findings"]:
        if f["effect"] is None:
            lines.append(f"  {f['attempt']:04d} {f['commit']}  {f['slug']}  (no verification figures in the ledger)")
            continue
        lines.append(
            f"  {f['attempt']:04d} {f['commit']}  effect {f['effect']:+.3f} "
            f"[{f['ci'][0]:+.3f}, {f['ci'][1]:+.3f}]  p_adj {f['adjusted_p']:.2g}  "
            f"floor {f['noise_floor']:.3f}  n={f['n_pairs']}  {f['slug']}: {f['statement'][:100]}"
        )
    if d["contract_commits"] != 1:
        lines.append(f"  WARNING: contract/ was changed by {d['contract_commits']} commits (expected 1)")
    return "\n".join(lines)


def to_json(d: dict[str, Any]) -> str:
    return json.dumps(d, indent=1, sort_keys=True, default=str)
