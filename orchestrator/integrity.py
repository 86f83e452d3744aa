"""Cross-checks between state.json, the ledger and the findings branch, run when a session starts.

Why: each file is written crash-safely on its own, and the loop's write order gives invariants that
hold across them at every instant (numbers taken = finished + in flight; every finished attempt has
one ledger line; every findings commit has a keep line and every finished keep a commit). A resume on
files that break them (a ledger truncated by hand, a branch reset backwards, a state.json copied from
another run) would silently lose or duplicate work, so it stops with a message naming the repair.
"""

from __future__ import annotations

from pathlib import Path

import git

from orchestrator.ledger import LedgerEntry
from orchestrator.state import RunState


class RunInconsistent(RuntimeError):
    """The run directory's files disagree in a way no crash can produce."""


def _ids(attempts: set[int] | list[int]) -> str:
    items = sorted(attempts)
    shown = ", ".join(str(a) for a in items[:8])
    return shown + (f" and {len(items) - 8} more" if len(items) > 8 else "")


def check_run(root: Path, state: RunState, entries: list[LedgerEntry], findings: list[tuple[int, git.Commit]]) -> None:
    """Raise RunInconsistent if ``state``, the ledger ``entries`` and the branch's ``findings`` disagree."""
    where = f"git -C {root}"
    taken = set(range(1, state.next_attempt))
    in_flight = {int(a) for a in state.in_flight}
    recorded = {e.attempt for e in entries}
    if not in_flight <= taken:
        raise RunInconsistent(f"{root}/state.json: attempts {_ids(in_flight - taken)} are in flight but were never "
                              "started (next_attempt is lower); state.json was edited: put back the original")
    if state.completed != len(taken) - len(in_flight):
        raise RunInconsistent(
            f"{root}/state.json: says {state.completed} attempts finished, but {len(taken)} were started and "
            f"{len(in_flight)} are in flight; state.json was edited or copied from another run: put back the original")
    unknown = recorded - taken
    if unknown:
        raise RunInconsistent(
            f"{root}/results.jsonl: holds attempts {_ids(unknown)} that state.json never started; the ledger or "
            "state.json comes from another run: put back this run's own files")
    lost = taken - in_flight - recorded
    if lost:
        raise RunInconsistent(
            f"{root}/results.jsonl: finished attempts {_ids(lost)} have no ledger line (the file was truncated, "
            f"replaced or deleted); restore it (`{where} show findings:results.jsonl` holds it up to the last kept "
            "finding, or use a backup), then resume")
    keeps = {e.attempt for e in entries if e.decision == "keep"}
    committed = {a for a, _ in findings}
    orphans = committed - keeps
    if orphans:
        raise RunInconsistent(
            f"{root}: findings commits for attempts {_ids(orphans)} have no keep line in results.jsonl; the ledger "
            f"was edited or the branch comes from another run: restore the ledger (`{where} show findings:results.jsonl`)")
    missing = keeps - in_flight - committed
    if missing:
        raise RunInconsistent(
            f"{root}: kept attempts {_ids(missing)} have no commit on the findings branch, which only moves forward; "
            f"it was reset or rewritten: find the lost commit with `{where} reflog show findings --` and "
            f"`{where} reset --hard <sha>` to it, then resume")
