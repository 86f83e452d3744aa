"""Adversarial suite: hostile experiments are rejected by the guard or contained by the OS layer.

Every attack runs with the guard BYPASSED (the OS sandbox alone must contain it); attacks the guard
catches run a second time with the guard on. After each run: the contract hashes are unchanged,
the parent and a stand-in orchestrator process are alive, nothing outside the scratch directory
changed, no sandbox process is left, no secret leaked, and the outcome states a clear reason.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from sandbox.contract import contract_digest, verify_contract
from sandbox.isolation import UID_POOL, IsolationReport, isolation_report
from sandbox.runner import run_experiment
from sandbox.schemas import Claim, ExperimentOutcome
from tests.sandbox.attacks import ATTACKS, Attack
from tests.sandbox.conftest import FAST, PROJECT, make_run_dir, sandbox_uid_processes, tree_state

API_KEY = "sk-ant-api03-SENTINEL-7f3a9c"
FILE_SECRET = "file-secret-SENTINEL-51d2"
ROOT_SECRET = Path("/root/.sandbox-test-secret")
NETWORK_ATTACKS = {"open_socket_to_internet", "connect_to_parent_over_loopback", "dns_exfiltration"}
TABLE: list[tuple[str, str, str, str]] = []


@dataclass
class Env:
    tmp: Path
    run_dir: Path
    scratch: Path
    mark: Path
    listener: socket.socket
    canary_pid: int
    report: IsolationReport
    outside: Path
    unix_listeners: list[socket.socket]

    def fill(self, code: str) -> str:
        subs = {"RUN_DIR": str(self.run_dir), "PROJECT_DIR": str(PROJECT), "MARK": str(self.mark),
                "PARENT_PID": str(os.getpid()), "CANARY_PID": str(self.canary_pid),
                "PORT": str(self.listener.getsockname()[1]), "SECRET_FILE": str(self.tmp / "secret.txt"),
                "ROOT_SECRET": str(ROOT_SECRET), "OUTSIDE_DIR": str(self.outside),
                "ABSTRACT_SOCKET": self.outside.name}
        for key, value in subs.items():
            code = code.replace(key, value)
        return code


@pytest.fixture(scope="module", autouse=True)
def root_secret():
    ROOT_SECRET.write_text(FILE_SECRET)
    ROOT_SECRET.chmod(0o600)
    yield
    ROOT_SECRET.unlink()
    if TABLE:
        print("\nadversarial outcomes (" + isolation_report().summary() + "):")
        for name, mode, status, reason in TABLE:
            print(f"  {name:45s} {mode:9s} {status:15s} {reason}")


def _outside_dir() -> Path:
    """A directory outside /tmp, the project and home: where a user may keep task files or run directories."""
    for base in ("/var/tmp", str(Path.home())):
        if os.access(base, os.W_OK):
            return Path(tempfile.mkdtemp(prefix="sandbox-test-outside-", dir=base))
    pytest.skip("no writable directory outside /tmp for the allow-list attacks")


@pytest.fixture
def env(tmp_path: Path, canary, monkeypatch: pytest.MonkeyPatch) -> Env:
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
    monkeypatch.setenv("GITHUB_TOKEN", API_KEY)
    (tmp_path / "secret.txt").write_text(FILE_SECRET)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.setblocking(False)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    outside = _outside_dir()
    outside.chmod(0o755)
    (outside / "task.yaml").write_text(FILE_SECRET)
    (outside / "hf" / "hub").mkdir(parents=True)
    (outside / "hf" / "token").write_text(FILE_SECRET)  # huggingface_hub writes it 0644
    monkeypatch.setenv("HF_HOME", str(outside / "hf"))
    unix_listeners = []
    for address in (str(outside / "s.sock"), "\0" + outside.name):
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(address)
        sock.listen(4)
        sock.setblocking(False)
        unix_listeners.append(sock)
    os.chmod(outside / "s.sock", 0o777)
    yield Env(tmp=tmp_path, run_dir=make_run_dir(tmp_path / "run"), scratch=scratch, mark=tmp_path / "pwned",
              listener=listener, canary_pid=canary.pid, report=isolation_report(), outside=outside,
              unix_listeners=unix_listeners)
    listener.close()
    for sock in unix_listeners:
        sock.close()
    shutil.rmtree(outside)


def _measure(o: ExperimentOutcome) -> dict:
    return o.result.measurements if o.result is not None else {}


def _no_wrote(o: ExperimentOutcome, e: Env) -> None:
    assert "WROTE" not in json.dumps(_measure(o)), _measure(o)


def _env_clean(o: ExperimentOutcome, e: Env) -> None:
    m = _measure(o)
    assert m["key"] is None
    leaked = [k for k in m["env"] if any(s in k.upper() for s in ("KEY", "TOKEN", "SECRET"))]
    assert leaked == [], leaked


def _fork_counted(o: ExperimentOutcome, e: Env) -> None:
    n = int(re.search(r"refused after (\d+) children", o.reason).group(1))
    assert n <= FAST.processes, f"{n} children were allowed; the limit is {FAST.processes}"


def _subprocess_unprivileged(o: ExperimentOutcome, e: Env) -> None:
    m = _measure(o)
    if e.report.uid_drop:
        assert int(m["out"].splitlines()[0]) in UID_POOL
    assert "root:" not in m["out"], "read /etc/shadow"


def _ctypes_no_root(o: ExperimentOutcome, e: Env) -> None:
    m = _measure(o)
    if e.report.uid_drop:
        assert m["setuid"] == -1 and m["uid"] == m["euid"] and m["uid"] in UID_POOL


def _forged_channel_is_only_a_proposal(o: ExperimentOutcome, e: Env) -> None:
    # The child can always lie about its own result; the parent still validated it as data, clamped the
    # timings it claimed, and a claim in it is only a proposal the verifier re-derives on held-out pairs.
    assert o.result is not None and o.result.summary == "forged"
    assert isinstance(o.result.claims[0], Claim)
    assert o.durations.run_s <= o.durations.total_s


def _git_refused(o: ExperimentOutcome, e: Env) -> None:
    m = _measure(o)
    assert all(rc != 0 for rc in m["rc"]), m
    assert not (PROJECT / ".git" / "refs" / "heads" / "sandbox-pwned").exists()


def _pycache_survives(o: ExperimentOutcome, e: Env) -> None:
    assert (PROJECT / "sandbox" / "__pycache__").is_dir()


def _daemon_did_not_block(o: ExperimentOutcome, e: Env) -> None:
    assert o.durations.total_s < FAST.timeout_s, o.durations


def _no_escalation(o: ExperimentOutcome, e: Env) -> None:
    m = _measure(o)
    for tool in ("su", "sudo", "mount"):
        assert m[tool][0] != 0 or m[tool][1] != "0", (tool, m[tool])
    assert "WROTE" not in m["userns"][1]


def _run_dir_invisible(o: ExperimentOutcome, e: Env) -> None:
    m = _measure(o)
    assert m["run"] in ([], None), m
    assert len(m["siblings"]) == 1 and m["siblings"][0].startswith("exp-0001-"), m


def _frame_walk_reached_os_but_wrote_nothing(o: ExperimentOutcome, e: Env) -> None:
    rc = _measure(o)["rc"]
    assert isinstance(rc, int) and rc != 0  # os.system really ran (guard bypassed); the shell's writes failed


def _blob_inert(o: ExperimentOutcome, e: Env) -> None:
    assert isinstance(_measure(o)["blob"], str)


def _nothing_found(o: ExperimentOutcome, e: Env) -> None:
    assert _measure(o)["found"] == []


def _nothing_read(o: ExperimentOutcome, e: Env) -> None:
    m = _measure(o)
    read = {p: v for p, v in m.items() if v.startswith("READ")}
    if e.report.mode != "bwrap":  # no mount namespace of our own: only the uid's permissions apply
        read = {p: v for p, v in read.items() if "OUTSIDE" in v or FILE_SECRET in v}
    assert read == {}, read


def _no_connection(o: ExperimentOutcome, e: Env) -> None:
    m = _measure(o)
    assert "CONNECTED" not in m.values(), m


def _tree_memory_capped(o: ExperimentOutcome, e: Env) -> None:
    if o.status == "resource_limit":  # the kernel killed the experiment process itself
        assert "out of memory" in o.reason, o.reason
        return
    codes = _measure(o)["codes"]
    cap_mb = 512 + FAST.tmp_size_mb + FAST.scratch_size_mb
    held = 250 * sum(1 for c in codes if c == 0)  # children that filled all of their 250 MB and exited cleanly
    if e.report.memory_cgroup:
        assert held <= cap_mb, f"the children together held {held} MB; the tree's limit is {cap_mb} MB ({codes})"
    else:
        assert "no memory cgroup" in e.report.summary()


PLANTED = Path("/tmp/mlx/0.0.0-planted")


def _kernel_not_shared(o: ExperimentOutcome, e: Env) -> None:
    assert not PLANTED.exists(), "a child planted a kernel in the host's shared /tmp"


CHECKS: dict[str, Callable[[ExperimentOutcome, Env], None]] = {
    "write_contract_relative_and_via_proc_root": _no_wrote,
    "symlink_escape_from_scratch": _no_wrote,
    "read_anthropic_api_key_from_env": _env_clean,
    "read_parent_environ_via_proc": _nothing_found,
    "fork_until_refused": _fork_counted,
    "import_subprocess_read_secrets": _subprocess_unprivileged,
    "import_ctypes_setuid": _ctypes_no_root,
    "forge_result_message_on_the_channel": _forged_channel_is_only_a_proposal,
    "run_git_commit": _git_refused,
    "getattr_import_os_system": _pycache_survives,
    "setsid_daemon_holds_pipes": _daemon_did_not_block,
    "privilege_escalation_tools": _no_escalation,
    "peek_at_run_dir_and_other_scratch": _run_dir_invisible,
    "pickle_blob_in_result": _blob_inert,
    "attrgetter_frame_walk_to_builtins": _frame_walk_reached_os_but_wrote_nothing,
    "builtins_subclasses_to_os_system": _frame_walk_reached_os_but_wrote_nothing,
    "read_files_outside_the_allow_list": _nothing_read,
    "connect_to_unix_sockets": _no_connection,
    "fork_to_multiply_the_memory_limit": _tree_memory_capped,
    "plant_kernel_in_shared_tmp": _kernel_not_shared,
}


def _params() -> list:
    out = []
    for attack in ATTACKS:
        out.append(pytest.param(attack, False, id=f"{attack.name}-os_only"))
        if attack.guarded:
            out.append(pytest.param(attack, True, id=f"{attack.name}-guard"))
    return out


def assert_contained(e: Env, o: ExperimentOutcome, digest: str, outside: dict, project: dict) -> None:
    assert o.contract_before == o.contract_after == digest == contract_digest(e.run_dir)
    assert verify_contract(e.run_dir).ok
    assert os.kill(e.canary_pid, 0) is None  # the stand-in orchestrator is alive (raises if not)
    for sock in (e.listener, *e.unix_listeners):
        with pytest.raises(BlockingIOError):
            sock.accept()
    assert tree_state(e.tmp, skip=(e.scratch, e.run_dir / "results")) == outside
    assert tree_state(PROJECT / "sandbox") == project and not (PROJECT / "pwned").exists()
    assert ROOT_SECRET.read_text() == FILE_SECRET and not e.mark.exists()
    assert list(e.scratch.iterdir()) == [], "scratch directory was not cleaned up"
    written = sorted(p.name for p in (e.run_dir / "results").iterdir())
    assert written == ["0001.json"], written
    assert ExperimentOutcome.model_validate_json((e.run_dir / "results" / "0001.json").read_text()) == o
    text = o.model_dump_json()
    assert API_KEY not in text and FILE_SECRET not in text, "a secret leaked into the outcome"
    for _ in range(60):  # every sandboxed process of this run is gone
        if not sandbox_uid_processes(str(e.scratch)):
            break
        time.sleep(0.05)
    assert sandbox_uid_processes(str(e.scratch)) == []


@pytest.mark.parametrize(("attack", "guard"), _params())
def test_attack_is_rejected_or_contained(attack: Attack, guard: bool, env: Env) -> None:
    if attack.destructive and env.report.mode != "bwrap":
        pytest.skip("destructive attack runs only where the filesystem is read-only for the child (bubblewrap)")
    path = env.run_dir / "experiments" / f"0001-{attack.name}.py"
    path.parent.mkdir()
    path.write_text(env.fill(attack.code))
    digest = contract_digest(env.run_dir)
    outside = tree_state(env.tmp, skip=(env.scratch, env.run_dir / "results"))
    project = tree_state(PROJECT / "sandbox")
    limits = FAST.model_copy(update=attack.limits)

    outcome = run_experiment(env.run_dir, path, 1, limits=limits, guard=guard, scratch_root=env.scratch)
    reason_lines = outcome.reason.splitlines()[1:2] if guard else outcome.reason.splitlines()[:1]
    TABLE.append((attack.name, "guard" if guard else "os-only", outcome.status,
                  reason_lines[0][:110] if reason_lines else "(contained; see checks)"))

    assert_contained(env, outcome, digest, outside, project)
    if guard:
        assert outcome.status == "rejected", outcome.reason
        assert outcome.guard_issues and outcome.reason.count("line ") >= 1
        return
    expect, says = attack.expect, attack.says
    if attack.name in NETWORK_ATTACKS and not env.report.network_isolated:
        # no network namespace here: the strongest available guarantee is that the report says so
        assert "NO" in env.report.summary()
        expect, says = (*expect, "ok"), ()
    assert outcome.status in expect, (outcome.status, outcome.reason, outcome.stderr_tail[-800:])
    if says:
        blob = " ".join([outcome.reason, outcome.stderr_tail, json.dumps(_measure(outcome))]).lower()
        assert any(s in blob for s in says), (says, outcome.reason, outcome.stderr_tail[-800:])
    if outcome.status != "ok":
        assert outcome.reason.strip(), "a failed attempt must record why"
    if attack.name in CHECKS:
        CHECKS[attack.name](outcome, env)


def test_suite_is_large_enough() -> None:
    assert len({a.name for a in ATTACKS}) >= 25
