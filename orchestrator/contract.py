"""The run's contract/ (model, dataset split, metric), through sandbox.contract.

Why an adapter: the sandbox owns the contract's format (it reads it in trusted processes), the
orchestrator only creates it once, hashes it for the ledger, checks it around each experiment and
restores it. Keeping those four calls here means the loop never depends on the file format.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from sandbox import contract as sandbox_contract
from sandbox.schemas import PromptPair

SUPPORTED_METRICS: tuple[str, ...] = tuple(sorted(sandbox_contract.METRICS))


class ContractSpec(BaseModel):
    """What the contract pins: everything the agent may not change."""

    task_name: str
    model: str
    metric: str
    seed: int
    exploration: list[PromptPair]
    held_out: list[PromptPair]


class ContractFailure(RuntimeError):
    """The contract could not be written or restored; the message comes from the sandbox."""


def write_contract(run_root: Path, spec: ContractSpec) -> None:
    """Write contract/ into ``run_root`` (the caller commits it as the first commit)."""
    try:
        sandbox_contract.create_contract(
            run_root, spec.model, spec.exploration, spec.held_out, metric=spec.metric, seed=spec.seed,
            family=spec.task_name, commit=False,
        )
    except sandbox_contract.ContractError as exc:
        raise ContractFailure(str(exc)) from None


def contract_hash(run_root: Path) -> str:
    """One digest over the lock and every contract file (recorded on each ledger line)."""
    return sandbox_contract.contract_digest(run_root)


def check_contract(run_root: Path) -> list[str]:
    """Problems with the contract files (empty when intact)."""
    return list(sandbox_contract.verify_contract(run_root).problems)


def restore_contract(run_root: Path) -> None:
    """Rewrite contract/ from its commit (after an experiment or a crash left it changed)."""
    try:
        sandbox_contract.restore_contract(run_root)
    except sandbox_contract.ContractError as exc:
        raise ContractFailure(str(exc)) from None
