"""Start a trusted entry module in an isolated child and supervise it without ever blocking on it.

The child gets its request as scratch/request.json and answers over a pipe fd (newline-delimited
JSON). Output is read in bounded chunks with caps; a wall-clock deadline, an output cap or a
cancel request kills the whole tree (process group, pid namespace via bubblewrap, pids cgroup).
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox import jit_cache
from sandbox.cgroup import CgroupUnavailable, TreeCgroup
from sandbox.isolation import (
    PROJECT_ROOT,
    UID_POOL,
    IsolationReport,
    build_command,
    child_env,
    child_python,
    isolation_report,
    readable_paths,
)
from sandbox.schemas import ResourceLimits, Status

TRUSTED_ENTRIES = frozenset({"sandbox.harness", "sandbox.verify_entry"})
EXIT_GRACE_S = 1.0  # after the main process exits, how long stray holders of the pipes may linger
CHUNK = 65536
REASON_CHARS = 4000


@dataclass
class _Stream:
    name: str
    cap: int
    keep: int
    total: int = 0
    data: bytearray = field(default_factory=bytearray)

    def add(self, chunk: bytes) -> bool:
        """Append (keeping only the tail); False once the cap is exceeded."""
        self.total += len(chunk)
        self.data += chunk
        if len(self.data) > self.keep:
            del self.data[: len(self.data) - self.keep]
        return self.total <= self.cap


@dataclass
class ProcessRun:
    """What happened to one child process (all output already capped)."""

    returncode: int | None = None
    stdout: bytes = b""
    stderr: bytes = b""
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    channel: bytes = b""
    timed_out: bool = False
    cancelled: bool = False
    limit_hit: str | None = None
    oom_killed: bool = False  # the tree's memory cgroup killed a process
    ready_s: float | None = None
    last_message_s: float | None = None  # when the channel last delivered data (the result, normally)
    wall_s: float = 0.0
    argv: list[str] = field(default_factory=list)

    @property
    def signal(self) -> int | None:
        """The signal that ended the child (bubblewrap reports 128+N for a signalled child)."""
        if self.returncode is None:
            return None
        if self.returncode < 0:
            return -self.returncode
        if self.returncode > 128:
            return self.returncode - 128
        return None

    def messages(self) -> list[dict[str, Any]]:
        """Parsed channel messages; raises ValueError on anything that is not one JSON object per line."""
        out = []
        for line in self.channel.split(b"\n"):
            if not line.strip():
                continue
            msg = json.loads(line, parse_constant=lambda c: None)
            if not isinstance(msg, dict):
                raise ValueError("a channel message is not a JSON object")
            out.append(msg)
        return out


def _kill_tree(proc: subprocess.Popen, cgroup: TreeCgroup | None) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # already gone
    if cgroup is not None:
        cgroup.kill_all()


def supervise(argv: list[str], env: dict[str, str], cwd: Path, limits: ResourceLimits, read_fd: int,
              write_fd: int, *, cancel: threading.Event | None = None,
              cgroup: TreeCgroup | None = None) -> ProcessRun:
    """Run ``argv`` in its own session; read stdout/stderr/channel with caps until exit or deadline."""
    start = time.perf_counter()
    run = ProcessRun(argv=argv)
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                pass_fds=(write_fd,), cwd=cwd, env=env, start_new_session=True)
    except OSError:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    streams = {proc.stdout.fileno(): _Stream("stdout", limits.output_cap_bytes, limits.tail_bytes),
               proc.stderr.fileno(): _Stream("stderr", limits.output_cap_bytes, limits.tail_bytes),
               read_fd: _Stream("result", limits.result_cap_bytes, limits.result_cap_bytes)}
    sel = selectors.DefaultSelector()
    for fd in streams:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    deadline = start + limits.timeout_s
    exited_at: float | None = None
    try:
        while sel.get_map():
            now = time.perf_counter()
            if now >= deadline:
                run.timed_out = True
                break
            if cancel is not None and cancel.is_set():
                run.cancelled = True
                break
            if exited_at is not None and now - exited_at > EXIT_GRACE_S:
                break  # a detached grandchild holds the pipes open: do not wait for it
            for key, _ in sel.select(timeout=min(deadline - now, 0.05)):
                try:
                    chunk = os.read(key.fd, CHUNK)
                except BlockingIOError:
                    continue
                if not chunk:
                    sel.unregister(key.fd)
                    continue
                stream = streams[key.fd]
                if not stream.add(chunk):
                    run.limit_hit = (f"{stream.name} exceeded {stream.cap} bytes"
                                     if stream.name != "result" else f"result message exceeded {stream.cap} bytes")
                    break
                if stream.name == "result":
                    run.last_message_s = time.perf_counter() - start
                    if run.ready_s is None and b"\n" in stream.data:
                        run.ready_s = run.last_message_s
            if run.limit_hit:
                break
            if exited_at is None and proc.poll() is not None:
                exited_at = time.perf_counter()
    finally:
        _kill_tree(proc, cgroup)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            run.limit_hit = run.limit_hit or "the child could not be reaped within 10 s after SIGKILL"
        sel.close()
        os.close(read_fd)
        proc.stdout.close()
        proc.stderr.close()
    run.returncode = proc.returncode
    run.oom_killed = cgroup is not None and cgroup.oom_killed()
    out, err, res = streams.values()
    run.stdout, run.stderr, run.channel = bytes(out.data), bytes(err.data), bytes(res.data)
    run.stdout_bytes, run.stderr_bytes = out.total, err.total
    run.wall_s = time.perf_counter() - start
    return run


def _write_request(scratch: Path, request: dict[str, Any]) -> Path:
    path = scratch / "request.json"
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(request, fh)
    os.chmod(path, 0o444)
    return path


def launch_isolated(entry: str, request: dict[str, Any], scratch: Path, limits: ResourceLimits, *,
                    hidden: list[Path], extra_readable: list[Path] | None = None,
                    cancel: threading.Event | None = None, report: IsolationReport | None = None) -> ProcessRun:
    """Run trusted ``entry`` (python -I) in the strongest isolation available, cwd = ``scratch``."""
    if entry not in TRUSTED_ENTRIES:
        raise ValueError(f"{entry!r} is not a trusted sandbox entry point ({sorted(TRUSTED_ENTRIES)})")
    report = report or isolation_report()
    if report.mode == "bwrap" and request.get("model"):
        jit_cache.ensure_warm(request["model"])
    request = {**request, "limits": {**limits.model_dump(), "cpu_s": limits.cpu_seconds()}}
    request_path = _write_request(scratch, request)
    uid = _uids.acquire()
    try:
        return _launch(entry, request_path, scratch, limits, hidden, extra_readable, cancel, report, uid)
    finally:
        _uids.release(uid)


class _UidPool:
    """Hands each concurrent child its own unprivileged uid."""

    def __init__(self, uids: range) -> None:
        self._free = list(uids)
        self._cond = threading.Condition()

    def acquire(self) -> int:
        with self._cond:
            while not self._free:
                self._cond.wait()
            return self._free.pop(0)

    def release(self, uid: int) -> None:
        with self._cond:
            self._free.append(uid)
            self._cond.notify()


_uids = _UidPool(UID_POOL)


def _launch(entry: str, request_path: Path, scratch: Path, limits: ResourceLimits, hidden: list[Path],
            extra_readable: list[Path] | None, cancel: threading.Event | None, report: IsolationReport,
            uid: int) -> ProcessRun:
    if report.uid_drop:
        os.chown(scratch, uid, uid)
        os.chmod(scratch, 0o711)  # bubblewrap (root, no capabilities) must chdir into it
    read_fd, write_fd = os.pipe()
    boot = (f"import sys;sys.path.insert(0,{str(PROJECT_ROOT)!r});from {entry} import main, exit_now;"
            "exit_now(main(sys.argv[1:]))")
    inner = [child_python(), "-I", "-c", boot, str(request_path), str(write_fd)]
    env = child_env(scratch)
    if report.mode != "bwrap":
        # Without bubblewrap's private /tmp, temporary files (MLX's compiled-kernel cache among them) would
        # go to the shared /tmp, where a hostile child could plant a kernel that a later child, the verifier
        # or the user's own MLX process loads. Each child gets its own, removed with its scratch directory.
        tmp = scratch / "tmp"
        tmp.mkdir(mode=0o700, exist_ok=True)
        if report.uid_drop:
            os.chown(tmp, uid, uid)
        env["TMPDIR"] = str(tmp)
    argv = build_command(inner, scratch, env, report, hidden=hidden, readable=readable_paths(extra_readable),
                         tmp_mb=limits.tmp_size_mb, scratch_mb=limits.scratch_size_mb, uid=uid)
    cgroup = None
    if report.pids_cgroup:
        # RLIMIT_AS is per process: the cgroup caps the whole tree (forks included) and its tmpfs pages.
        memory = (limits.memory_mb + limits.tmp_size_mb + limits.scratch_size_mb) << 20 if report.memory_cgroup else None
        try:
            cgroup = TreeCgroup(limits.processes + 16, memory)
        except (OSError, CgroupUnavailable) as exc:
            print(f"sandbox: cgroup unavailable for this run: {exc}", file=sys.stderr)
    if cgroup is not None:
        # sh -c SCRIPT $0 $1 ... : $0 is the first procs file, "$@" the rest; shift the other files off.
        files = [str(f) for f in cgroup.procs_files]
        script = " && ".join([*(f'echo $$ > "${i}"' for i in range(len(files))), f"shift {len(files) - 1}",
                              'exec "$@"'])
        argv = ["/bin/sh", "-c", script, *files, *argv]
    try:
        return supervise(argv, env, scratch, limits, read_fd, write_fd, cancel=cancel, cgroup=cgroup)
    finally:
        if cgroup is not None:
            try:
                cgroup.remove()
            except OSError as exc:  # a leftover empty cgroup is untidy, not a reason to fail the run
                print(f"sandbox: {exc}", file=sys.stderr)


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def _no_result_reason(run: ProcessRun, limits: ResourceLimits) -> tuple[Status, str]:
    sig = run.signal
    if sig == signal.SIGXCPU:
        return "resource_limit", f"the child used more than {limits.cpu_seconds()} s of CPU time (SIGXCPU)"
    if sig == signal.SIGXFSZ:
        return "resource_limit", (f"the child tried to write a file larger than {limits.file_size_mb} MB "
                                  "(SIGXFSZ); return data in the result dict instead of writing files")
    if sig == signal.SIGKILL and run.oom_killed:
        return "resource_limit", (f"out of memory: the experiment's processes together used more than "
                                  f"{limits.memory_mb} MB (plus its /tmp and scratch files); the kernel killed it")
    if sig == signal.SIGKILL:
        return "resource_limit", ("killed by signal 9 (SIGKILL) before sending a result: a kernel limit (memory, "
                                  "CPU time) or the experiment's own processes killed it")
    if sig is not None:
        return "crashed", f"the child process was killed by signal {sig} ({_signal_name(sig)})"
    if run.ready_s is None:
        tail = run.stderr.decode(errors="replace")[-1500:]
        return "crashed", f"the sandboxed process failed to start (exit code {run.returncode}): {tail}"
    return "crashed", (f"the child process exited with code {run.returncode} without sending a result; "
                       "return a dict from run(ctx) instead of exiting")


def interpret(run: ProcessRun, limits: ResourceLimits) -> tuple[Status, str, dict[str, Any]]:
    """Status and reason of a finished child; on "ok" the single untrusted "result" message (else {})."""
    if run.cancelled:
        return "cancelled", "cancelled before it finished; the process tree was killed", {}
    if run.timed_out:
        return "timeout", (f"ran longer than the {limits.timeout_s:g} s wall-clock limit and was killed with its "
                           "whole process tree; make it cheaper (fewer pairs, batched forwards)"), {}
    if run.limit_hit:
        hint = "; print less and return data in the result dict" if "std" in run.limit_hit else ""
        return "resource_limit", f"{run.limit_hit}; the process tree was killed{hint}", {}
    try:
        messages = run.messages()
    except (ValueError, RecursionError) as exc:
        return "invalid_result", f"the result channel held data that is not JSON messages ({exc})"[:REASON_CHARS], {}
    finals = [m for m in messages if m.get("type") in ("result", "invalid", "error")]
    if len(finals) > 1:
        return "invalid_result", f"the child sent {len(finals)} result messages; exactly one is expected", {}
    if not finals:
        status, reason = _no_result_reason(run, limits)
        return status, reason, {}
    msg = finals[0]
    if msg["type"] == "error":
        if msg.get("error_type") == "MemoryError":
            return "resource_limit", f"out of memory: the limit is {limits.memory_mb} MB of address space", msg
        if "File too large" in str(msg.get("error")):
            return "resource_limit", (f"the child tried to write a file larger than {limits.file_size_mb} MB (EFBIG); "
                                      "return data in the result dict instead of writing files"), msg
        text = f"run(ctx) raised {msg.get('error_type')}: {msg.get('error')}\n{msg.get('traceback', '')}"
        return "crashed", str(text)[-REASON_CHARS:], msg
    if msg["type"] == "invalid":
        return "invalid_result", f"the returned value is not plain data: {msg.get('error')}"[:REASON_CHARS], msg
    return "ok", "", msg
