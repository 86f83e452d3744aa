"""The weaker isolation modes still contain what they claim to: network (unshare), process trees
(pid namespace / pids cgroup), secrets (environment allow-list) and the contract (hash + git restore)."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest

from sandbox.contract import contract_digest, verify_contract
from sandbox.isolation import IsolationReport, IsolationUnavailable, isolation_report
from sandbox.runner import run_experiment
from tests.sandbox.attacks import ATTACKS
from tests.sandbox.conftest import FAST, sandbox_uid_processes

BY_NAME = {a.name: a for a in ATTACKS}


@pytest.fixture(params=["unshare", "rlimits-only"])
def fallback(request: pytest.FixtureRequest) -> IsolationReport:
    report = isolation_report(request.param)
    if report.mode != request.param:
        pytest.skip(f"{request.param} is not available here (got {report.mode})")
    print(report.summary())
    return report


def attack(run_dir: Path, scratch: Path, name: str, report: IsolationReport, **subs: str):
    code = BY_NAME[name].code.replace("RUN_DIR", str(run_dir))
    for key, value in subs.items():
        code = code.replace(key, value)
    path = run_dir / "experiments" / f"0001-{name}.py"
    path.parent.mkdir(exist_ok=True)
    path.write_text(code)
    return run_experiment(run_dir, path, 1, limits=FAST, guard=False, scratch_root=scratch, isolation=report)


def test_network_namespace_in_unshare_mode(run_dir: Path, scratch_root: Path, fallback: IsolationReport) -> None:
    if fallback.mode != "unshare":
        assert not fallback.network_isolated and "NO" in fallback.summary()
        return  # no network isolation exists in rlimits-only mode: the report says so
    out = attack(run_dir, scratch_root, "open_socket_to_internet", fallback)
    assert out.status == "crashed" and "Network is unreachable" in out.reason


def test_api_key_is_not_passed(run_dir: Path, scratch_root: Path, fallback: IsolationReport,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-SENTINEL")
    out = attack(run_dir, scratch_root, "read_anthropic_api_key_from_env", fallback)
    assert out.status == "ok" and out.result.measurements["key"] is None
    assert "SENTINEL" not in out.model_dump_json()


def test_contract_tampering_is_detected_and_restored(run_dir: Path, scratch_root: Path,
                                                     fallback: IsolationReport) -> None:
    before = contract_digest(run_dir)
    out = attack(run_dir, scratch_root, "write_contract_file", fallback)
    if out.status == "violation":  # the child could write (no read-only root here): hashes caught it
        assert "restored from git" in out.reason and out.contract_after != before
    else:
        assert out.status == "crashed"
    assert verify_contract(run_dir).ok and contract_digest(run_dir) == before


def test_fork_bomb_is_contained(run_dir: Path, scratch_root: Path, fallback: IsolationReport) -> None:
    if not (fallback.pids_cgroup or fallback.uid_drop):
        pytest.skip("neither a pids cgroup nor a non-root uid is available: forks are not limited here")
    out = attack(run_dir, scratch_root, "fork_until_refused", fallback)
    assert out.status == "crashed", out.reason
    n = int(re.search(r"refused after (\d+) children", out.reason).group(1))
    assert n <= FAST.processes + 16  # pids.max of the cgroup (root ignores RLIMIT_NPROC)


def test_detached_daemon_is_killed(run_dir: Path, scratch_root: Path, fallback: IsolationReport) -> None:
    out = attack(run_dir, scratch_root, "setsid_daemon_holds_pipes", fallback)
    assert out.status == "ok" and out.durations.total_s < FAST.timeout_s
    for _ in range(60):
        if not sandbox_uid_processes(str(scratch_root), any_uid=True):
            break
        time.sleep(0.05)
    assert sandbox_uid_processes(str(scratch_root), any_uid=True) == []


def test_temporary_files_stay_in_the_childs_scratch(run_dir: Path, scratch_root: Path,
                                                     fallback: IsolationReport) -> None:
    """Without bubblewrap's private /tmp, a child's temporary files (MLX's compiled-kernel cache) must not
    land in the shared /tmp, where the verifier or the user's own MLX process would load a planted kernel."""
    planted = Path("/tmp/mlx/0.0.0-planted")
    try:
        out = attack(run_dir, scratch_root, "plant_kernel_in_shared_tmp", fallback)
        assert out.status == "ok", out.reason
        assert Path(out.result.measurements["tmpdir"]).is_relative_to(scratch_root)
        assert not planted.exists()
        assert list(scratch_root.iterdir()) == []  # removed with the scratch directory
    finally:
        shutil.rmtree(planted, ignore_errors=True)


def test_degraded_isolation_fails_closed_unless_allowed(run_dir: Path, scratch_root: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    if isolation_report("rlimits-only").contains_filesystem:
        pytest.skip("here even rlimits-only mode drops to another uid: nothing is degraded")
    monkeypatch.setenv("SANDBOX_ISOLATION", "rlimits-only")
    path = run_dir / "experiments" / "0001-a.py"
    path.parent.mkdir()
    path.write_text("def run(ctx):\n    return {'summary': 'x'}\n")
    with pytest.raises(IsolationUnavailable, match="SANDBOX_ALLOW_DEGRADED=1"):
        run_experiment(run_dir, path, 1, limits=FAST, scratch_root=scratch_root)
    monkeypatch.setenv("SANDBOX_ALLOW_DEGRADED", "1")
    assert run_experiment(run_dir, path, 1, limits=FAST, scratch_root=scratch_root).status == "ok"


def test_macos_sandbox_exec_is_probed_and_fails_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Mac has no bubblewrap: sandbox-exec is used only after a probe child proves the profile holds;
    a failing probe leaves rlimits only, which require_isolation refuses."""
    import sandbox.isolation as iso

    monkeypatch.delenv(iso.ALLOW_DEGRADED_ENV, raising=False)
    monkeypatch.setattr(iso.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(iso, "_probe", lambda mode, uid_drop: {"net": "connected to 192.0.2.1:9", "hidden_seen": []})
    report = iso._detect_macos()
    assert report.mode == "rlimits-only" and "probe failed" in report.summary()
    with pytest.raises(IsolationUnavailable):
        iso.require_isolation(report)
    monkeypatch.setattr(iso, "_probe", lambda mode, uid_drop: {"net": "connect failed: errno 1", "hidden_seen": []})
    assert iso._detect_macos().mode == "sandbox-exec"


def test_macos_profile_denies_unix_sockets_and_the_run_directory(tmp_path: Path) -> None:
    from sandbox.isolation import macos_profile

    run = tmp_path / "run"
    profile = macos_profile(tmp_path / "scratch", [run], [tmp_path / "venv"])
    assert "(deny network*)" in profile and "allow network" not in profile  # ssh-agent, docker: unix sockets
    last_rule_on_run = [line for line in profile.splitlines() if str(run.resolve()) in line][-1]
    assert last_rule_on_run.startswith("(deny file-read-data")  # later rules win in sandbox-exec profiles
    assert '(subpath "/private/var/folders")' in profile  # other children's scratch (verifier requests)


@pytest.mark.skipif(shutil.which("bwrap") is None or not hasattr(__import__("os"), "geteuid")
                    or __import__("os").geteuid() != 0, reason="needs bubblewrap and root (uid drop)")
def test_a_venv_reached_through_a_symlinked_directory_still_gets_bubblewrap(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A clone whose .venv is a symlink to another clone's venv: the child is started by a path that
    exists inside the sandbox (before: the probe failed and the run fell back to weaker isolation)."""
    import sys

    from sandbox import isolation

    venv = Path(sys.executable).parent.parent
    (tmp_path / "clone").mkdir()
    (tmp_path / "clone" / ".venv").symlink_to(venv)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "clone" / ".venv" / "bin" / Path(sys.executable).name))
    assert isolation.child_python() == str(venv.resolve() / "bin" / Path(sys.executable).name)
    assert isolation._probe("bwrap", uid_drop=True) is not None
