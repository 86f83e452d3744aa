"""OS isolation for sandboxed children: detect what this machine allows, once, and wrap commands with it.

Order of preference (Linux): bubblewrap (a read-only filesystem built from an ALLOW-list: system
directories, a few /etc files, the interpreter, the venv, engine/ and sandbox/, the model caches; nothing
else exists in the child (no task files, other run directories, service sockets, home directories);
private /tmp, new network/pid/ipc/uts namespaces, all capabilities dropped, non-root uid via setpriv when
we are root) > ``unshare`` network+pid namespaces > rlimits only (reported as degraded). macOS uses a
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
from sandbox.cgroup import cgroup_available, memory_cgroup_available

CHILD_UID = 65534  # nobody: used by the probe; RLIMIT_NPROC applies, root-owned files are out of reach
# Each concurrent child gets its own unprivileged uid, so RLIMIT_NPROC (counted per uid) of one
# experiment cannot be exhausted by another, and children cannot signal each other.
UID_POOL = range(61000, 61256)
PROJECT_ROOT = Path(__file__).resolve().parents[1]
Mode = Literal["bwrap", "unshare", "sandbox-exec", "rlimits-only"]
MODES_BY_STRENGTH: tuple[Mode, ...] = ("bwrap", "unshare", "rlimits-only")
ENV_ALLOW = ("LANG", "LC_ALL", "TZ")
SECRET_MARKERS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "CREDENTIAL", "AUTH")
# What a bubblewrap child sees of the host: these system directories (read-only; symlinks stay symlinks),
# the /etc files the loader, libc and Python read, and readable_paths(). Everything else is absent, so a
# file or an AF_UNIX socket the orchestrator, the user or a service keeps elsewhere is out of reach.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/sys")
ETC_ALLOW = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "localtime", "timezone", "passwd",
             "group", "nsswitch.conf", "host.conf", "hosts", "gai.conf", "os-release", "mime.types")
# The parts of the project a child imports; the rest (orchestrator, tasks, runs, notes, .git) is absent,
# and hidden again should a bound directory ever contain it.
PROJECT_VISIBLE = ("engine", "sandbox")
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
    memory_cgroup: bool = False  # the tree's memory is capped, not only each process's address space
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
        if self.memory_cgroup:
            out.append("memory-cgroup")
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


def child_python() -> str:
    """The interpreter a sandboxed child runs, by a path that exists inside the sandbox.

    Only the directories are resolved: a venv reached through a symlinked directory (a clone whose .venv
    links to another's) is bound at its real path, which is the only one the child sees; the file name
    stays the venv's own bin/python link, so Python still finds the venv's pyvenv.cfg beside it."""
    exe = Path(sys.executable)
    return str(exe.parent.resolve() / exe.name)


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache (model snapshots only: HF_HOME also holds the user's access token)."""
    hub = Path(os.environ.get("HF_HUB_CACHE") or os.environ.get("HF_HOME", str(Path.home() / ".cache" / "huggingface")))
    return hub if hub.name == "hub" else hub / "hub"


def readable_paths(extra: list[Path] | None = None) -> list[Path]:
    """What a child must be able to read: the interpreter, the venv, engine/ and sandbox/, the model caches."""
    from engine.loading.resolve import cache_root  # light: no mlx

    paths = {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve(), cache_root(),
             *(PROJECT_ROOT / d for d in PROJECT_VISIBLE)}
    if hf_hub_cache().is_dir():
        paths.add(hf_hub_cache().resolve())
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
    if hf_hub_cache().is_dir():  # HOME is the scratch directory: point the engine at the real hub cache
        env["HF_HUB_CACHE"] = str(hf_hub_cache().resolve())
    return {k: v for k, v in env.items() if not any(m in k.upper() for m in SECRET_MARKERS)}


def preload_prefix() -> list[str]:
    """``env LD_PRELOAD=<OpenBLAS>`` placed right before python: the wrappers (setpriv) must not load it,
    since setpriv aborts when a preloaded library has already started threads."""
    from engine.blas import blas_env

    extra = blas_env({}, warn=False)
    return ["/usr/bin/env", *(f"{k}={v}" for k, v in extra.items())] if extra else []


def _system_args() -> list[str]:
    """The host's system directories (read-only) and the allow-listed /etc files."""
    args: list[str] = []
    for d in SYSTEM_DIRS:
        p = Path(d)
        if p.is_symlink():
            args += ["--symlink", os.readlink(p), d]
        elif p.is_dir():
            args += ["--ro-bind", d, d]
    args += ["--perms", "0755", "--dir", "/etc"]
    for name in ETC_ALLOW:
        p = Path("/etc") / name
        if p.is_symlink():
            args += ["--symlink", os.readlink(p), str(p)]
        elif p.exists():
            args += ["--ro-bind", str(p), str(p)]
    return args


def _mkdirs(path: Path, made: set[Path], stop: tuple[Path, ...]) -> list[str]:
    """--dir for each missing ancestor of ``path`` (0755: bubblewrap would make them 0700, which the child
    uid could not traverse); ``stop`` already exist in the child (e.g. the private /tmp), their
    descendants do not and are made too (a model under pytest's 0700 /tmp/pytest-of-root/...)."""
    args = []
    for mid in reversed(path.parents):
        if mid == Path("/") or mid in made or mid in stop:
            continue
        args += ["--perms", "0755", "--dir", str(mid)]
        made.add(mid)
    return args


def _bwrap_args(scratch: Path, hidden: list[Path], readable: list[Path], env: dict[str, str], tmp_mb: int,
                scratch_mb: int, uid_drop: bool) -> list[str]:
    args = ["bwrap", "--die-with-parent", "--new-session", "--unshare-net", "--unshare-pid", "--unshare-ipc",
            "--unshare-uts", "--unshare-cgroup-try", "--cap-drop", "ALL"]
    if uid_drop:  # kept only for setpriv, which drops them together with root
        args += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_SETPCAP"]
    # No "--ro-bind / /": the child's root is an empty tmpfs holding only what is bound below.
    args += _system_args()
    args += ["--dev", "/dev", "--proc", "/proc", "--perms", "1777", "--size", str(tmp_mb << 20), "--tmpfs", "/tmp"]
    args += jit_cache.bind_args()  # trusted MLX kernels, read-only, inside the private /tmp
    system = tuple(Path(d) for d in SYSTEM_DIRS if Path(d).is_dir() and not Path(d).is_symlink())
    made: set[Path] = set()
    bound: list[Path] = []
    for r in sorted({Path(p) for p in readable}):
        if any(b == r or b in r.parents for b in (*system, *bound)):
            continue  # already visible through a directory bound before it
        if any(h == r or h in r.parents for h in hidden):
            continue  # a hidden directory stays hidden even when something inside it was asked for
        args += _mkdirs(r, made, (Path("/tmp"),) if Path("/tmp") in r.parents else ())
        args += ["--ro-bind", str(r), str(r)]
        bound.append(r)
    for h in hidden:  # hidden dirs inside bound ones (a run directory inside the model cache)
        if any(b in h.parents for b in bound):
            args += ["--tmpfs", str(h)]
    # The working directory is a size-capped tmpfs at the scratch path: nothing the child writes reaches the
    # host disk or outlives it. The parent's inputs (request.json, experiment.py) are bound in read-only.
    args += _mkdirs(scratch, made, ())
    args += ["--perms", "1777", "--size", str(scratch_mb << 20), "--tmpfs", str(scratch)]
    for f in sorted(scratch.iterdir()):
        if f.is_file() and not f.is_symlink():
            args += ["--ro-bind", str(f), str(f)]
    args += ["--remount-ro", "/", "--chdir", str(scratch), "--clearenv"]
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
    if report.mode == "sandbox-exec":  # macOS, UNTESTED in this project's CI (probed before use, see _detect)
        return ["sandbox-exec", "-p", macos_profile(scratch, hidden, readable), *inner]
    return list(inner)


def _sb(path: Path) -> str:
    """A path as sandbox-exec matches it: resolved (/tmp and /var are symlinks into /private) and quoted."""
    return json.dumps(str(Path(path).resolve()))


def macos_profile(scratch: Path, hidden: list[Path] = (), readable: list[Path] = ()) -> str:
    """Deny all network (AF_UNIX included: ssh-agent, docker and other local services listen on unix
    sockets) and writes outside scratch; deny reading file contents in the user, temp and volume trees
    except the allow-listed ``readable`` paths, and always in ``hidden`` (the run directory); allow Metal so
    MLX finds the GPU. Later rules win. UNTESTED here: _detect probes it and falls back (closed) if it fails."""
    private = ("/Users", "/private/var/folders", "/private/tmp", "/private/var/root", "/Volumes")
    return "\n".join([
        "(version 1)", "(allow default)", "(deny network*)",
        "(deny file-write*)",
        f'(allow file-write* (subpath {_sb(scratch)}) (literal "/dev/null"))',
        "(deny file-read-data " + " ".join(f"(subpath {json.dumps(d)})" for d in private) + ")",
        "(allow file-read-data " + " ".join(f"(subpath {_sb(r)})" for r in (*readable, scratch)) + ")",
        *([f"(deny file-read-data {' '.join(f'(subpath {_sb(h)})' for h in hidden)})"] if hidden else []),
        '(allow iokit-open (iokit-user-client-class "AGXDeviceUserClient"))',
        '(allow mach-lookup (global-name "com.apple.MTLCompilerService"))', "",
    ])


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
def readable(p):
    try:
        return bool(open(p).read())
    except OSError:
        return False
r["hidden_seen"] = [p for p in sys.argv[1:] if readable(p)]
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
    inner = [child_python(), "-I", "-c", PROBE.replace("ROOT_PLACEHOLDER", repr(str(PROJECT_ROOT))), str(secret / "marker")]
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
        return _detect_macos()
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
            mem = cg and memory_cgroup_available()
            if not mem:
                degraded.append("no memory cgroup: RLIMIT_AS caps each process, so a child that forks N times "
                                "may use N times the memory limit")
            return IsolationReport(
                platform=system, mode=mode, network_isolated=netns, network_probe=result.get("net", ""),
                pid_namespace=mode in ("bwrap", "unshare") and result.get("pid", 99) < 10,
                readonly_root=mode == "bwrap" and not result.get("root_writable", True),
                hidden_paths=["everything outside the read-only allow-list", "<run directory>"] if mode == "bwrap" else [],
                uid_drop=uid_drop and non_root, child_uid=result["uid"], pids_cgroup=cg, memory_cgroup=mem,
                capabilities_dropped=result.get("caps", "") == "0000000000000000", degraded=degraded)
    return IsolationReport(platform=system, mode="rlimits-only", network_isolated=False,
                           network_probe="no network isolation available",
                           degraded=degraded + ["no usable isolation probe; running with rlimits only"])


def _detect_macos() -> IsolationReport:
    """sandbox-exec only after a probe child proves it denies the network and hides the run directory;
    otherwise rlimits only, which require_isolation refuses unless the operator opts in."""
    system = "Darwin"
    degraded = ["macOS: RLIMIT_AS is not enforced", "macOS: no pid namespace; the child runs as your own user",
                "sandbox-exec profile UNTESTED in this project's CI"]
    if shutil.which("sandbox-exec") is None:
        return IsolationReport(platform=system, mode="rlimits-only", network_isolated=False,
                               network_probe="sandbox-exec not found", degraded=degraded + ["no sandbox-exec"])
    result = _probe("sandbox-exec", False)
    net = (result or {}).get("net", "no probe result")
    contained = result is not None and "failed" in net and not result.get("hidden_seen", True)
    if not contained:
        return IsolationReport(platform=system, mode="rlimits-only", network_isolated=False, network_probe=net,
                               degraded=degraded + [f"the sandbox-exec probe failed ({net}; hidden files seen: "
                                                    f"{(result or {}).get('hidden_seen')})"])
    return IsolationReport(platform=system, mode="sandbox-exec", network_isolated=True, network_probe=net,
                           hidden_paths=["user, temp and volume trees outside the allow-list", "<run directory>"],
                           degraded=degraded)


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
