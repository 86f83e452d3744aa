"""OS isolation for sandboxed children: detect what this machine allows, once, and wrap commands with it.

Order of preference (Linux): bubblewrap (read-only root, hidden run directory and home, private /tmp,
new network/pid/ipc/uts namespaces, all capabilities dropped, non-root uid via setpriv when we are
root) > ``unshare`` network+pid namespaces > rlimits only (reported as degraded). macOS uses a
sandbox-exec profile that denies network but allows Metal (UNTESTED here: no macOS in CI).
Each layer is accepted only after a probe child proves it works; the report says what is active.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from sandbox import jit_cache
from sandbox.cgroup import cgroup_available

CHILD_UID = 65534  # nobody: used by the probe; RLIMIT_NPROC applies, root-owned files are out of reach
# Each concurrent child gets its own unprivileged uid, so RLIMIT_NPROC (counted per uid) of one
# experiment cannot be exhausted by another, and children cannot signal each other.
UID_POOL = range(61000, 61256)
PROJECT_ROOT = Path(__file__).resolve().parents[1]
Mode = Literal["bwrap", "unshare", "sandbox-exec", "rlimits-only"]
MODES_BY_STRENGTH: tuple[Mode, ...] = ("bwrap", "unshare", "rlimits-only")
ENV_ALLOW = ("LANG", "LC_ALL", "TZ")
SECRET_MARKERS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "CREDENTIAL", "AUTH")
HIDDEN_DIRS = ("/root", "/home", "/run", "/mnt", "/media", "/srv", "/var/lib", "/var/spool", "/var/mail",
               "/etc/ssh")
# Parts of the project a child never needs (it imports only engine and sandbox): task files may hold
# prompts, and the orchestrator and run directories are none of its business.
PROJECT_HIDDEN = ("orchestrator", "tasks", "tests", "runs", "notes", ".git", ".ci")
RLIMITS = ["address-space", "cpu-time", "file-size", "open-files", "processes"]


class IsolationUnavailable(RuntimeError):
    """Isolation the caller required is not available on this machine."""


class IsolationReport(BaseModel):
    """Which isolation layers are active for sandboxed children on this machine (probed, not assumed)."""

    platform: str
    mode: Mode
    network_isolated: bool
    network_probe: str = ""
    pid_namespace: bool = False
    readonly_root: bool = False
    hidden_paths: list[str] = Field(default_factory=list)
    uid_drop: bool = False
    child_uid: int | None = None
    pids_cgroup: bool = False
    capabilities_dropped: bool = False
    rlimits: list[str] = Field(default_factory=lambda: list(RLIMITS))
    degraded: list[str] = Field(default_factory=list)

    @property
    def layers(self) -> list[str]:
        out = [self.mode]
        if self.network_isolated:
            out.append("net-namespace" if self.mode != "sandbox-exec" else "network-denied")
        if self.pid_namespace:
            out.append("pid-namespace")
        if self.readonly_root:
            out.append("readonly-root+hidden-dirs")
        if self.capabilities_dropped:
            out.append("no-capabilities")
        if self.uid_drop:
            out.append("non-root-uid")
        if self.pids_cgroup:
            out.append("pids-cgroup")
        out.append("rlimits")
        out.append("env-allowlist")
        return out

    @property
    def contains_filesystem(self) -> bool:
        """Whether the child is kept away from the run directory by more than hashes: a read-only, hiding
        mount namespace (bubblewrap), a deny-write profile (sandbox-exec) or a uid other than the parent's."""
        return self.mode in ("bwrap", "sandbox-exec") or self.uid_drop

    def summary(self) -> str:
        text = f"sandbox isolation on {self.platform}: " + ", ".join(self.layers)
        text += f"; network namespace: {'yes' if self.network_isolated else 'NO'} ({self.network_probe})"
        if self.uid_drop:
            text += f"; child uids {UID_POOL.start}-{UID_POOL.stop - 1} (probe ran as {self.child_uid})"
        if self.degraded:
            text += "; degraded: " + "; ".join(self.degraded)
        return text


def readable_paths(extra: list[Path] | None = None) -> list[Path]:
    """What a child must be able to read: the interpreter, the venv, the project, the model cache."""
    from engine.loading.resolve import cache_root  # light: no mlx

    paths = {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve(), PROJECT_ROOT, cache_root()}
    hf = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    if hf.is_dir():
        paths.add(hf)
    paths.update(Path(p) for p in (extra or []))
    return sorted(p for p in paths if p.exists())


def model_paths(model_ref: str) -> list[Path]:
    """A model given as a local path (mlx-lm directory, GGUF file) must be readable inside the child."""
    path = Path(model_ref).expanduser()
    return [path.resolve()] if path.exists() else []


def child_env(scratch: Path) -> dict[str, str]:
    """The allow-listed environment of a child: no API keys, tokens or secrets can pass."""
    from engine.blas import blas_env
    from engine.loading.resolve import cache_root

    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(scratch), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
           "TZ": "UTC", "ENGINE_CACHE_DIR": str(cache_root()), "PYTHONDONTWRITEBYTECODE": "1",
           "OPENBLAS_NUM_THREADS": str(os.cpu_count() or 1)}
    env.update({k: os.environ[k] for k in ENV_ALLOW if k in os.environ})
    return {k: v for k, v in env.items() if not any(m in k.upper() for m in SECRET_MARKERS)}


def preload_prefix() -> list[str]:
    """``env LD_PRELOAD=<OpenBLAS>`` placed right before python: the wrappers (setpriv) must not load it,
    since setpriv aborts when a preloaded library has already started threads."""
    from engine.blas import blas_env

    extra = blas_env({}, warn=False)
    return ["/usr/bin/env", *(f"{k}={v}" for k, v in extra.items())] if extra else []


def _bwrap_args(scratch: Path, hidden: list[Path], readable: list[Path], env: dict[str, str], tmp_mb: int,
                scratch_mb: int, uid_drop: bool) -> list[str]:
    args = ["bwrap", "--die-with-parent", "--new-session", "--unshare-net", "--unshare-pid", "--unshare-ipc",
            "--unshare-uts", "--unshare-cgroup-try", "--cap-drop", "ALL"]
    if uid_drop:  # kept only for setpriv, which drops them together with root
        args += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_SETPCAP"]
    args += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--perms", "1777", "--size", str(tmp_mb << 20),
             "--tmpfs", "/tmp"]
    args += jit_cache.bind_args()  # trusted MLX kernels, read-only, inside the private /tmp
    hide = [h for h in (*(Path(d) for d in HIDDEN_DIRS), *hidden) if h.is_dir()]
    for h in hide:
        args += ["--tmpfs", str(h)]
    made: set[Path] = set()
    # /tmp is a private tmpfs too: a project or venv cloned under /tmp must be re-exposed like one under /root.
    reexpose_roots = [Path("/tmp"), *hide]
    for r in readable:  # re-expose what lives under a hidden dir (e.g. python under /root/.pyenv)
        roots = [h for h in reexpose_roots if r == h or h in r.parents]
        if roots and not any(x == r or x in r.parents for x in hidden):
            for mid in reversed([p for p in r.parents if roots[0] in p.parents]):
                if mid not in made:  # bubblewrap would create these 0700: unreadable for the child uid
                    args += ["--perms", "0755", "--dir", str(mid)]
                    made.add(mid)
            args += ["--ro-bind", str(r), str(r)]
    for h in hidden:  # hidden dirs inside re-exposed ones (the run directory inside the project)
        if any(r in h.parents for r in readable):
            args += ["--tmpfs", str(h)]
    roots = [h for h in (Path("/tmp"), *hide) if h in scratch.parents]
    if roots:  # scratch's parents would be created 0700 inside a tmpfs: the child uid must traverse them
        for mid in reversed([p for p in scratch.parents if roots[0] in p.parents]):
            args += ["--perms", "0755", "--dir", str(mid)]
    # The working directory is a size-capped tmpfs at the scratch path: nothing the child writes reaches the
    # host disk or outlives it. The parent's inputs (request.json, experiment.py) are bound in read-only.
    args += ["--perms", "1777", "--size", str(scratch_mb << 20), "--tmpfs", str(scratch)]
    for f in sorted(scratch.iterdir()):
        if f.is_file() and not f.is_symlink():
            args += ["--ro-bind", str(f), str(f)]
    args += ["--chdir", str(scratch), "--clearenv"]
    for k, v in env.items():
        args += ["--setenv", k, v]
    return args + ["--"]


def _setpriv_args(uid: int) -> list[str]:
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--no-new-privs",
            "--inh-caps=-all", "--bounding-set=-all"]


def build_command(inner: list[str], scratch: Path, env: dict[str, str], report: IsolationReport, *,
                  hidden: list[Path] = (), readable: list[Path] | None = None, tmp_mb: int = 256,
                  scratch_mb: int = 1024, uid: int = CHILD_UID) -> list[str]:
    """Wrap ``inner`` (a python -I command) in the isolation ``report`` says is available; with a uid
    drop the child runs as ``uid`` (the caller chowns ``scratch`` to it)."""
    readable = readable if readable is not None else readable_paths()
    hidden = [Path(h).resolve() for h in hidden] + [PROJECT_ROOT / d for d in PROJECT_HIDDEN]
    inner = preload_prefix() + list(inner)
    if report.mode == "bwrap":
        prefix = _bwrap_args(scratch, hidden, readable, env, tmp_mb, scratch_mb, report.uid_drop)
        return prefix + (_setpriv_args(uid) if report.uid_drop else []) + inner
    if report.mode == "unshare":
        return (["unshare", "--net", "--pid", "--fork", "--kill-child", "--mount-proc"]
                + (_setpriv_args(uid) if report.uid_drop else []) + inner)
    if report.mode == "sandbox-exec":  # macOS, UNTESTED in this project's CI
        return ["sandbox-exec", "-p", macos_profile(scratch), *inner]
    return list(inner)


def macos_profile(scratch: Path) -> str:
    """Deny network and writes outside scratch; allow Metal so MLX finds the GPU. UNTESTED here."""
    return (
        "(version 1)\n(allow default)\n(deny network*)\n(allow network* (local unix))\n"
        f'(deny file-write*)\n(allow file-write* (subpath "{scratch}") (subpath "/private/var/folders") '
        '(literal "/dev/null"))\n'
        '(allow iokit-open (iokit-user-client-class "AGXDeviceUserClient"))\n'
        '(allow mach-lookup (global-name "com.apple.MTLCompilerService"))\n'
    )


PROBE = r"""
import errno, json, os, socket, sys
r = {"uid": os.getuid(), "pid": os.getpid()}
s = socket.socket(); s.settimeout(0.5)
try:
    s.connect(("192.0.2.1", 9)); r["net"] = "connected to 192.0.2.1:9"
except socket.timeout:
    r["net"] = "connect timed out"
except OSError as e:
    r["net"] = "connect to 192.0.2.1:9 failed: errno %s %s" % (e.errno, errno.errorcode.get(e.errno, ""))
try:
    r["ifaces"] = [l.split(":")[0].strip() for l in open("/proc/net/dev").read().splitlines()[2:]]
    st = dict(l.split(":\t", 1) for l in open("/proc/self/status").read().splitlines() if ":\t" in l)
    r["caps"] = st.get("CapEff", "").strip(); r["nnp"] = st.get("NoNewPrivs", "").strip()
except OSError:
    pass
r["root_writable"] = os.access("/", os.W_OK)
r["hidden_seen"] = [p for p in sys.argv[1:] if os.path.exists(p)]
sys.path.insert(0, ROOT_PLACEHOLDER)
import sandbox.childlib
print(json.dumps(r))
"""


def _probe(mode: Mode, uid_drop: bool) -> dict | None:
    base = Path(tempfile.mkdtemp(prefix="sandbox-probe-"))
    scratch, secret = base / "scratch", base / "hidden"
    scratch.mkdir()
    secret.mkdir()
    (secret / "marker").write_text("hidden")
    if uid_drop:
        os.chown(scratch, CHILD_UID, CHILD_UID)
    report = IsolationReport(platform=platform.system(), mode=mode, network_isolated=False, uid_drop=uid_drop,
                             child_uid=CHILD_UID if uid_drop else None)
    inner = [sys.executable, "-I", "-c", PROBE.replace("ROOT_PLACEHOLDER", repr(str(PROJECT_ROOT))), str(secret / "marker")]
    try:
        argv = build_command(inner, scratch, child_env(scratch), report, hidden=[secret])
        proc = subprocess.run(argv, capture_output=True, timeout=15, cwd=scratch, env=child_env(scratch),
                              stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    finally:
        shutil.rmtree(base, ignore_errors=True)
    if proc.returncode != 0:
        return None
    try:
        return json.loads(proc.stdout.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


def _detect(prefer: str | None) -> IsolationReport:
    system = platform.system()
    if system == "Darwin":
        ok = shutil.which("sandbox-exec") is not None
        return IsolationReport(platform=system, mode="sandbox-exec" if ok else "rlimits-only", network_isolated=ok,
                               network_probe="sandbox-exec deny-network profile (not probed)",
                               degraded=["macOS: RLIMIT_AS is not enforced; no pid namespace; UNTESTED"])
    modes = list(MODES_BY_STRENGTH)
    if prefer:
        if prefer not in modes:
            raise IsolationUnavailable(f"unknown isolation mode {prefer!r}; choose one of {modes}")
        modes = modes[modes.index(prefer):]
    root = os.geteuid() == 0
    degraded: list[str] = []
    for mode in modes:
        if mode == "bwrap" and shutil.which("bwrap") is None:
            degraded.append("bubblewrap not installed (apt-get install bubblewrap)")
            continue
        if mode == "unshare" and shutil.which("unshare") is None:
            continue
        tries = [True, False] if root and shutil.which("setpriv") else [False]
        for uid_drop in tries:
            result = _probe(mode, uid_drop)
            if result is None:
                if uid_drop:
                    degraded.append(f"{mode}: cannot run the child as uid {CHILD_UID} (interpreter not readable?)")
                continue
            netns = result.get("ifaces") == ["lo"] and mode != "rlimits-only"
            if mode != "rlimits-only" and not netns:
                degraded.append(f"{mode}: probe still saw network interfaces {result.get('ifaces')}")
                break
            non_root = result["uid"] != 0
            if not non_root:
                degraded.append("child runs as root: RLIMIT_NPROC is ignored (the pids cgroup, if any, limits forks)")
            if mode != "bwrap":
                degraded.append("no read-only root: the OS user's permissions are the only filesystem boundary")
            if result.get("hidden_seen"):
                degraded.append("hidden directories are visible to the child")
            cg = cgroup_available()
            if not cg:
                degraded.append("no pids cgroup: setsid() grandchildren are reaped only by the pid namespace")
            return IsolationReport(
                platform=system, mode=mode, network_isolated=netns, network_probe=result.get("net", ""),
                pid_namespace=mode in ("bwrap", "unshare") and result.get("pid", 99) < 10,
                readonly_root=mode == "bwrap" and not result.get("root_writable", True),
                hidden_paths=list(HIDDEN_DIRS) + ["<run directory>"] if mode == "bwrap" else [],
                uid_drop=uid_drop and non_root, child_uid=result["uid"], pids_cgroup=cg,
                capabilities_dropped=result.get("caps", "") == "0000000000000000", degraded=degraded)
    return IsolationReport(platform=system, mode="rlimits-only", network_isolated=False,
                           network_probe="no network isolation available",
                           degraded=degraded + ["no usable isolation probe; running with rlimits only"])


_cache: dict[str, IsolationReport] = {}
_lock = threading.Lock()


def isolation_report(prefer: str | None = None, *, refresh: bool = False) -> IsolationReport:
    """Probe once per process (and per preferred ceiling, e.g. SANDBOX_ISOLATION=unshare) and cache it."""
    prefer = prefer or os.environ.get("SANDBOX_ISOLATION") or None
    key = prefer or "best"
    with _lock:
        if refresh or key not in _cache:
            _cache[key] = _detect(prefer)
        return _cache[key]


ALLOW_DEGRADED_ENV = "SANDBOX_ALLOW_DEGRADED"


def require_isolation(report: IsolationReport) -> None:
    """Fail closed: refuse to run agent code with the parent's uid and a writable filesystem, unless the
    operator opted in with SANDBOX_ALLOW_DEGRADED=1 (contract hashes then remain the only guard)."""
    if report.contains_filesystem or os.environ.get(ALLOW_DEGRADED_ENV) == "1":
        return
    raise IsolationUnavailable(
        f"refusing to run experiments: {report.summary()}. The child would run with the orchestrator's own uid "
        "and could write the run directory. Install bubblewrap (`apt-get install bubblewrap`), or run the "
        f"orchestrator as root with a python the unprivileged uid can read, or set {ALLOW_DEGRADED_ENV}=1 to "
        "accept the degraded isolation")
