"""`verify RUN_DIR FINDING`: re-derive a finding's claims with the verifier, on demand.

Why separate from the loop: it reads the recorded result and asks the verifier again without
touching the ledger, state or branch, so it is safe on a finished or a live run.
Why a clean checkout: a committed finding is verified from its own commit on the findings branch
(contract, result, ledger as committed), extracted with `git archive` into a temporary directory, so
nothing edited in the run directory since — and no cached state (noise floor) — enters the figures.
"""

from __future__ import annotations

import contextlib
import io
import json
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import git

from orchestrator.interfaces import Verifier, VerifyRequest
from orchestrator.ledger import LedgerEntry, read_ledger
from orchestrator.ratchet import Ratchet, RatchetError
from orchestrator.rundir import RunDir
from orchestrator.task import Task
from sandbox.schemas import ExperimentResult


def verify_finding(
    run: RunDir, task: Task, attempt: int, verifier: Verifier, entries: list[LedgerEntry]
) -> tuple[bool, list[str]]:
    """(every claim kept when first verified is confirmed again, printable lines)."""
    entry = next((e for e in entries if e.attempt == attempt), None)
    if entry is None:
        raise ValueError(f"attempt {attempt} is not in the ledger of {run.root}")
    path = run.result_path(attempt)
    if not path.is_file():
        raise ValueError(f"attempt {attempt} has no result file ({run.rel(path)}): it never produced claims")
    result = ExperimentResult.model_validate(json.loads(path.read_text(encoding="utf-8"))["result"])
    if not result.claims:
        raise ValueError(f"attempt {attempt} made no claims to verify")
    prior = [float(v["p_value"]) for e in entries if e.attempt < attempt for v in e.statistics if "p_value" in v]
    sig = task.significance
    lines = [f"attempt {attempt:04d} {entry.slug} (recorded decision: {entry.decision})"]
    confirmed = True
    for i, claim in enumerate(result.claims):
        request = VerifyRequest(run_dir=run.root, attempt=attempt, claim_index=i, contract_dir=run.contract,
                                seed=task.seed, alpha=sig.alpha, correction=sig.correction,
                                bootstrap=sig.bootstrap, prior_p_values=prior)
        v = verifier.verify(claim, request)
        prior.append(v.p_value)
        was_kept = i < len(entry.statistics) and bool(entry.statistics[i].get("kept"))
        confirmed &= (v.kept or not was_kept)
        lines.append(
            f"  claim {i}: {'CONFIRMED' if v.kept else 'not confirmed'}  effect {v.effect:+.4f} "
            f"[{v.ci_low:+.4f}, {v.ci_high:+.4f}]  p {v.p_value:.3g}  p_adj {v.adjusted_p:.3g}  "
            f"floor {v.noise_floor:.4f}  n={v.n_pairs}  {claim.statement[:80]}"
        )
    return confirmed, lines


class CheckoutError(RuntimeError):
    """The run directory's findings branch cannot be read (not a git repository, or a damaged one)."""


@contextlib.contextmanager
def finding_checkout(run: RunDir, attempt: int) -> Iterator[tuple[RunDir, str] | None]:
    """(a RunDir over a clean checkout of the finding's commit, its sha), or None if ``attempt`` has no commit.

    The checkout is read-only extraction (`git archive`): the run's repository, index and branch are untouched.
    """
    try:
        commit = Ratchet(run.root).commit_for(attempt)
    except (RatchetError, git.GitCommandError, git.BadName, ValueError) as exc:
        raise CheckoutError(f"{run.root} has no readable findings branch ({exc}); is this a run directory?") from None
    if commit is None:
        yield None
        return
    data = io.BytesIO()
    commit.repo.archive(data, treeish=commit.hexsha, format="tar")
    data.seek(0)
    with tempfile.TemporaryDirectory(prefix=f"verify-{attempt:04d}-") as tmp:
        with tarfile.open(fileobj=data) as tar:
            tar.extractall(tmp, filter="data")
        yield RunDir(Path(tmp)), commit.hexsha


def verify_committed(run: RunDir, task: Task, attempt: int, make_verifier: Callable[[Task, Path], Verifier],
                     entries: list[LedgerEntry]) -> tuple[bool, list[str]]:
    """verify_finding on the clean checkout of the finding's commit (the live run dir for uncommitted attempts)."""
    with finding_checkout(run, attempt) as checkout:
        if checkout is None:
            note = f"attempt {attempt} is not on the findings branch: verifying against the run directory as it is"
            confirmed, lines = verify_finding(run, task, attempt, make_verifier(task, run.root), entries)
            return confirmed, [note, *lines]
        clean, sha = checkout
        committed = read_ledger(clean.ledger) if clean.ledger.is_file() else entries
        confirmed, lines = verify_finding(clean, task, attempt, make_verifier(task, clean.root), committed)
        return confirmed, [f"verified from a clean checkout of findings commit {sha[:12]}", *lines]
