"""Contract: data-only files, lock with sha256, verification, restore from the run's first commit."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from sandbox.contract import (
    ContractError,
    contract_digest,
    create_contract,
    load_contract,
    restore_contract,
    verify_contract,
)
from tests.sandbox.conftest import EXPLORATION, HELD_OUT


def test_created_contract_reads_back_and_verifies(run_dir: Path) -> None:
    contract = load_contract(run_dir)
    assert contract.model == "smollm2-135m" and contract.seed == 7 and contract.metric == "logit_diff"
    assert contract.exploration == EXPLORATION and contract.held_out == HELD_OUT
    check = verify_contract(run_dir)
    assert check.ok and set(check.expected) == {"setup.py", "metrics.py"}
    lock = (run_dir / "contract" / "contract.lock").read_text()
    assert lock.count("\n") == 2 and "  setup.py" in lock
    log = subprocess.run(["git", "-C", str(run_dir), "log", "--format=%s", "--", "contract/"],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert len(log) == 1


def test_refuses_overlapping_splits_and_second_creation(tmp_path: Path, run_dir: Path) -> None:
    with pytest.raises(ContractError, match="both splits"):
        create_contract(tmp_path / "x", "m", EXPLORATION, EXPLORATION)
    with pytest.raises(ContractError, match="already holds a contract"):
        create_contract(run_dir, "m", EXPLORATION, HELD_OUT)
    with pytest.raises(ContractError, match="unknown contract metric"):
        create_contract(tmp_path / "y", "m", EXPLORATION, HELD_OUT, metric="accuracy")


@pytest.mark.parametrize("tamper", ["edit", "delete", "symlink", "extra_file", "edit_lock_too"])
def test_tampering_is_detected_and_restored(run_dir: Path, tamper: str) -> None:
    before = contract_digest(run_dir)
    setup = run_dir / "contract" / "setup.py"
    setup.chmod(0o644)
    if tamper == "edit":
        setup.write_text(setup.read_text().replace("SEED = 7", "SEED = 8"))
    elif tamper == "delete":
        setup.unlink()
    elif tamper == "symlink":
        setup.unlink()
        setup.symlink_to("/etc/hostname")
    elif tamper == "extra_file":
        (run_dir / "contract" / "evil.py").write_text("import os\n")
    else:  # rewrite a file and the lock consistently: the digest still moves
        import hashlib

        setup.write_text(setup.read_text().replace("SEED = 7", "SEED = 8"))
        lock = run_dir / "contract" / "contract.lock"
        lock.chmod(0o644)
        lines = [ln for ln in lock.read_text().splitlines() if not ln.endswith("setup.py")]
        lines.append(f"{hashlib.sha256(setup.read_bytes()).hexdigest()}  setup.py")
        lock.write_text("\n".join(lines) + "\n")
    assert contract_digest(run_dir) != before
    if tamper != "edit_lock_too":
        assert not verify_contract(run_dir).ok
    restore_contract(run_dir)
    assert verify_contract(run_dir).ok and contract_digest(run_dir) == before
    assert load_contract(run_dir).seed == 7


def test_contract_files_are_never_executed(run_dir: Path) -> None:
    setup = run_dir / "contract" / "setup.py"
    setup.chmod(0o644)
    setup.write_text(setup.read_text() + "\nimport os\nos.system('touch /tmp/pwned-by-contract')\n")
    with pytest.raises(ContractError, match="only `NAME = literal` lines"):
        load_contract(run_dir)
    assert not Path("/tmp/pwned-by-contract").exists()


def test_restore_without_git_history_fails_clearly(tmp_path: Path) -> None:
    create_contract(tmp_path / "r", "m", EXPLORATION, HELD_OUT)
    (tmp_path / "r" / ".git").mkdir()
    with pytest.raises(ContractError):
        restore_contract(tmp_path / "r")
