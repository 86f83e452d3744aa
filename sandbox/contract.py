"""The immutable contract of a run: contract/setup.py, contract/metrics.py and contract/contract.lock.

The files are data only (module-level literal assignments): they are read with ``ast.literal_eval``,
never imported or executed, so nothing in them can run code in a trusted process. contract.lock
holds their sha256 in ``sha256sum`` format. The run directory is a git repository whose first
commit holds contract/; a tampered contract is restored from that commit without touching the index.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sandbox.schemas import PromptPair

CONTRACT_DIR = "contract"
CONTRACT_FILES: tuple[str, ...] = ("setup.py", "metrics.py")
LOCK_FILE = "contract.lock"
METRICS: dict[str, str] = {
    "logit_diff": "logit(correct) - logit(wrong) at the last position, per pair",
    "prob_correct": "softmax probability of the correct token at the last position, per pair",
}


class ContractError(Exception):
    """The contract cannot be created, read or restored; the message says what to fix."""


class ContractTamperedError(ContractError):
    """The contract files do not match contract.lock."""


class Contract(BaseModel):
    """The parsed contract: what every experiment and the verifier measure against."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    seed: int = 0
    family: str = ""
    metric: Literal["logit_diff", "prob_correct"] = "logit_diff"
    exploration: list[PromptPair] = Field(min_length=1)
    held_out: list[PromptPair] = Field(min_length=1)


class ContractCheck(BaseModel):
    """Result of comparing the contract files with contract.lock."""

    ok: bool
    digest: str
    expected: dict[str, str]
    actual: dict[str, str]
    problems: list[str] = Field(default_factory=list)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _contract_dir(run_dir: Path) -> Path:
    return Path(run_dir) / CONTRACT_DIR


def _pairs_literal(pairs: Sequence[PromptPair]) -> str:
    rows = [json.dumps(p.model_dump(), ensure_ascii=True, sort_keys=True) for p in pairs]
    return "[\n" + "".join(f"    {r},\n" for r in rows) + "]"


def _render_setup(contract: Contract) -> str:
    return (
        '"""Immutable setup of this run: model, seed and the prompt dataset split.\n\n'
        "Data only: the sandbox reads it with ast.literal_eval and never executes it. The agent sees the\n"
        'EXPLORATION pairs only; HELD_OUT is used by the verifier alone."""\n\n'
        f"MODEL = {contract.model!r}\nSEED = {contract.seed!r}\nFAMILY = {contract.family!r}\n\n"
        f"EXPLORATION = {_pairs_literal(contract.exploration)}\n\nHELD_OUT = {_pairs_literal(contract.held_out)}\n"
    )


def _render_metrics(contract: Contract) -> str:
    return (
        '"""The contract metric. Data only: the trusted implementation is sandbox.metric, selected by name.\n\n'
        f'{contract.metric}: {METRICS[contract.metric]}."""\n\nMETRIC = {contract.metric!r}\nPOSITION = -1\n'
    )


def _write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    os.chmod(path, 0o444)


def _lock_text(hashes: dict[str, str]) -> str:
    return "".join(f"{digest}  {name}\n" for name, digest in sorted(hashes.items()))


def create_contract(
    run_dir: Path,
    model: str,
    exploration: Sequence[PromptPair],
    held_out: Sequence[PromptPair],
    metric: str = "logit_diff",
    seed: int = 0,
    family: str = "",
    *,
    commit: bool = False,
) -> Contract:
    """Write contract/setup.py, contract/metrics.py and contract.lock into ``run_dir``.

    With ``commit=True`` the run directory is made a git repository (if it is not one) and the
    contract becomes a commit; otherwise the caller commits contract/ as the first commit.
    """
    if metric not in METRICS:
        raise ContractError(f"unknown contract metric {metric!r}; choose one of {sorted(METRICS)}")
    overlap = {p.clean for p in exploration} & {p.clean for p in held_out}
    if overlap:
        raise ContractError(f"{len(overlap)} prompt(s) appear in both splits, e.g. {sorted(overlap)[0]!r}: "
                            "the held-out split must be disjoint from the exploration split")
    try:
        contract = Contract(model=model, seed=seed, family=family, metric=metric,  # type: ignore[arg-type]
                            exploration=list(exploration), held_out=list(held_out))
    except ValidationError as exc:
        raise ContractError(f"invalid contract: {exc}") from exc
    cdir = _contract_dir(run_dir)
    if (cdir / LOCK_FILE).exists():
        raise ContractError(f"{cdir} already holds a contract; a run's contract is created once and never changed")
    cdir.mkdir(parents=True, exist_ok=True)
    files = {"setup.py": _render_setup(contract).encode(), "metrics.py": _render_metrics(contract).encode()}
    for name, data in files.items():
        _write_bytes(cdir / name, data)
    _write_bytes(cdir / LOCK_FILE, _lock_text({n: _sha256(d) for n, d in files.items()}).encode())
    if load_contract(run_dir) != contract:
        raise ContractError("the contract written to disk does not read back identically (a bug in the sandbox)")
    if commit:
        _git_commit_contract(Path(run_dir))
    return contract


def _literal_assignments(path: Path) -> dict[str, object]:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, SyntaxError, UnicodeDecodeError) as exc:
        raise ContractError(f"cannot read {path}: {exc}") from exc
    values: dict[str, object] = {}
    for node in tree.body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # docstring
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            raise ContractError(f"{path.name} line {node.lineno}: the contract holds only `NAME = literal` lines")
        try:
            values[node.targets[0].id] = ast.literal_eval(node.value)
        except ValueError as exc:
            raise ContractError(f"{path.name} line {node.lineno}: not a literal value ({exc})") from exc
    return values


def load_contract(run_dir: Path) -> Contract:
    """Parse the contract (no code is executed)."""
    cdir = _contract_dir(run_dir)
    setup = _literal_assignments(cdir / "setup.py")
    metrics = _literal_assignments(cdir / "metrics.py")
    try:
        return Contract(model=setup["MODEL"], seed=setup.get("SEED", 0), family=setup.get("FAMILY", ""),
                        metric=metrics["METRIC"], exploration=setup["EXPLORATION"], held_out=setup["HELD_OUT"])
    except KeyError as exc:
        raise ContractError(f"contract is missing {exc.args[0]}") from exc
    except ValidationError as exc:
        raise ContractError(f"contract does not validate: {exc}") from exc


def _read_lock(cdir: Path) -> dict[str, str]:
    try:
        text = (cdir / LOCK_FILE).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise ContractTamperedError(f"cannot read {cdir / LOCK_FILE}: {exc}") from exc
    expected: dict[str, str] = {}
    for line in text.splitlines():
        digest, _, name = line.partition("  ")
        if len(digest) != 64 or name not in CONTRACT_FILES:
            raise ContractTamperedError(f"{LOCK_FILE} has an unexpected line {line[:120]!r}")
        expected[name] = digest
    return expected


def contract_digest(run_dir: Path) -> str:
    """One sha256 over contract.lock and every contract file (what is compared before/after a run)."""
    cdir = _contract_dir(run_dir)
    h = hashlib.sha256()
    for name in (LOCK_FILE, *CONTRACT_FILES):
        path = cdir / name
        h.update(name.encode() + b"\0")
        try:
            h.update(_sha256(path.read_bytes()).encode() if not path.is_symlink() else b"symlink")
        except OSError:
            h.update(b"missing")
    extra = sorted(p.name for p in cdir.iterdir() if p.name not in (LOCK_FILE, *CONTRACT_FILES)) if cdir.is_dir() else []
    h.update(("extra:" + ",".join(extra)).encode())
    return h.hexdigest()


def verify_contract(run_dir: Path) -> ContractCheck:
    """Compare each contract file with contract.lock; lists every problem found."""
    cdir = _contract_dir(run_dir)
    problems: list[str] = []
    try:
        expected = _read_lock(cdir)
    except ContractTamperedError as exc:
        expected, problems = {}, [str(exc)]
    actual: dict[str, str] = {}
    for name in CONTRACT_FILES:
        path = cdir / name
        if path.is_symlink() or not path.is_file():
            problems.append(f"{name} is missing or not a regular file")
            continue
        actual[name] = _sha256(path.read_bytes())
        if expected and actual[name] != expected.get(name):
            problems.append(f"{name} does not match contract.lock")
    if cdir.is_dir():
        extra = [p.name for p in cdir.iterdir() if p.name not in (LOCK_FILE, *CONTRACT_FILES)]
        problems.extend(f"unexpected file contract/{n}" for n in sorted(extra))
    return ContractCheck(ok=not problems, digest=contract_digest(run_dir), expected=expected, actual=actual,
                         problems=problems)


def _git(run_dir: Path, *args: str, input_bytes: bytes | None = None) -> bytes:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(run_dir), "GIT_CONFIG_NOSYSTEM": "1",
           "LANG": "C.UTF-8"}
    proc = subprocess.run(["git", "-C", str(run_dir), *args], input=input_bytes, capture_output=True, env=env,
                          timeout=60, check=False)
    if proc.returncode != 0:
        raise ContractError(f"git {' '.join(args)} failed in {run_dir}: {proc.stderr.decode(errors='replace')[:500]}")
    return proc.stdout


def _git_commit_contract(run_dir: Path) -> None:
    if not (run_dir / ".git").exists():
        _git(run_dir, "init", "-q", "-b", "findings")
    _git(run_dir, "add", "--", CONTRACT_DIR)
    _git(run_dir, "-c", "user.name=sandbox", "-c", "user.email=sandbox@localhost", "commit", "-q", "-m",
         "Contract: immutable setup, metric and lock", "--", CONTRACT_DIR)


def restore_contract(run_dir: Path) -> ContractCheck:
    """Rewrite contract/ from the first commit that added contract.lock (the index is not touched)."""
    run_dir = Path(run_dir)
    shas = _git(run_dir, "log", "--all", "--diff-filter=A", "--format=%H", "--", f"{CONTRACT_DIR}/{LOCK_FILE}")
    commits = shas.decode().split()
    if not commits:
        raise ContractError(f"no commit in {run_dir} holds {CONTRACT_DIR}/{LOCK_FILE}: cannot restore the contract")
    first = commits[-1]
    cdir = _contract_dir(run_dir)
    if cdir.is_symlink() or (cdir.exists() and not cdir.is_dir()):
        cdir.unlink()
    cdir.mkdir(exist_ok=True)
    for entry in list(cdir.iterdir()):
        if entry.name not in (LOCK_FILE, *CONTRACT_FILES):
            entry.unlink() if not entry.is_dir() or entry.is_symlink() else _rmtree(entry)
    for name in (*CONTRACT_FILES, LOCK_FILE):
        path = cdir / name
        if path.is_symlink() or path.is_dir():
            _rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        _write_bytes(path, _git(run_dir, "show", f"{first}:{CONTRACT_DIR}/{name}"))
    check = verify_contract(run_dir)
    if not check.ok:
        raise ContractError(f"restored contract still fails verification: {check.problems}")
    return check


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path)
