"""Peer benchmark (issue 12): this engine against TransformerLens and plain PyTorch, side by side.

Set up the peers once (torch CPU build, TransformerLens 3.9.0, transformers, gguf; never in the
default install):
    bash tests/bench/peers/make_venv.sh            # creates .venv-peers (keep it out of git)
Run (from the repo root, with the engine's venv; OpenBLAS is preloaded for the MLX worker here):
    .venv/bin/python -m tests.bench.bench_peers    # or: .venv/bin/python -m tests.bench.peers

One invocation starts three worker processes, each loading the embedded GGUF's weights (float32):
the engine (MLX, with OpenBLAS preloaded), plain transformers, and TransformerLens (MLX and PyTorch
never share a process). Task: clean "The Eiffel Tower is in the city of", corrupted "The Colosseum
is in the city of" (9 tokens, no BOS), metric logit(" Paris") - logit(" Rome") at the last position,
normalised 0 = corrupted, 1 = clean; patching is denoising (clean into corrupted).
Repetitions are interleaved round by round (engine, then each peer) so load from other processes
hits all alike; medians are printed with the engine's speed-up over each peer, the agreement of every
peer's result with the engine's (target 1e-4), peak memory of every sweep and PASS/MISS per target.
TransformerLens' own patching (about 50 s a grid) and the plain torch loop run --slow-reps times.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tests.bench.peers.common import CLEAN, CORRECT, CORRUPTED, GIB, WRONG, gguf_path

ROOT = Path(__file__).resolve().parents[2]
AGREE = 1e-4
MEMORY_LIMIT = 4 * GIB


# ==== workers =====================================================================================
class WorkerError(RuntimeError):
    pass


class Worker:
    """One peer in its own process, spoken to in JSON lines."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log = log_dir / f"{name}.stderr.log"
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=open(self.log, "wb"), start_new_session=True,
        )
        self._buf = b""
        self._sel = selectors.DefaultSelector()
        self._sel.register(self.proc.stdout, selectors.EVENT_READ)

    def send(self, task: str, **kw) -> None:
        self.proc.stdin.write((json.dumps({"task": task, **kw}) + "\n").encode())
        self.proc.stdin.flush()

    def receive(self, timeout: float = 1800.0) -> dict:
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not self._sel.select(left):
                raise WorkerError(f"{self.name}: no answer within {timeout:.0f} s (log: {self.log})")
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                tail = self.log.read_text(errors="replace")[-2000:]
                raise WorkerError(f"{self.name} exited (code {self.proc.poll()}); log {self.log}:\n{tail}")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        reply = json.loads(line)
        if not reply.pop("ok"):
            raise WorkerError(f"{self.name}: {reply['error']}\n{reply.get('trace', '')}")
        return reply

    def ask(self, task: str, **kw) -> dict:
        self.send(task, **kw)
        return self.receive()

    def close(self) -> None:
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
        except Exception:  # noqa: BLE001
            self.proc.kill()


def start_workers(args, log_dir: Path) -> dict[str, Worker]:
    from engine.blas import blas_env

    gguf = str(gguf_path())
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC", "OPENAI"))}
    base["BENCH_GGUF"] = gguf
    base["TQDM_DISABLE"] = "1"
    base["PYTHONPATH"] = str(ROOT)
    engine_env = {**base, **blas_env(base)}
    peers_env = dict(base)
    peers_env.pop("LD_PRELOAD", None)
    if args.omp_wait_policy != "default":
        # torch's OpenMP threads spin-wait by default; on a shared machine a descheduled thread stalls the
        # others (measured here under load: a 9-token forward 13 s spinning vs 0.6 s passive, 0.06 s quiet)
        peers_env["OMP_WAIT_POLICY"] = args.omp_wait_policy.upper()
    return {
        "engine": Worker("engine", [args.engine_python, "-m", "tests.bench.peers.engine_worker"], engine_env, log_dir),
        "torch": Worker("torch", [args.peers_python, "-m", "tests.bench.peers.torch_worker", "torch"], peers_env, log_dir),
        "tl": Worker("tl", [args.peers_python, "-m", "tests.bench.peers.torch_worker", "tl"], peers_env, log_dir),
    }


# ==== the plan ====================================================================================
# (section, label, worker, task, repetitions key); the first row of a section is the engine's.
INTERIM = "engine interim (public API, one batch)"
PLAN = [
    ("resid_pre grid (30 layers x 9 positions = 270 patches)", [
        ("engine", "engine", "resid_grid", "reps"),
        ("plain torch, batched", "torch", "resid_batched", "reps"),
        ("TransformerLens, batched by hand", "tl", "resid_batched", "reps"),
        ("plain torch, loop", "torch", "resid_loop", "slow_reps"),
        ("TransformerLens, own patching", "tl", "resid_own", "slow_reps"),
        (INTERIM, "engine", "resid_grid", "interim_reps"),
    ]),
    ("per-head grid (hook_z, 30 layers x 9 heads = 270 patches, all positions)", [
        ("engine", "engine", "head_grid", "reps"),
        ("plain torch, batched", "torch", "head_batched", "reps"),
        ("TransformerLens, batched by hand", "tl", "head_batched", "reps"),
        ("plain torch, loop", "torch", "head_loop", "slow_reps"),
        ("TransformerLens, own patching", "tl", "head_own", "slow_reps"),
        (INTERIM, "engine", "head_grid", "interim_reps"),
    ]),
    ("attribution patching (resid_pre and z, gradient x activation difference)", [
        ("engine", "engine", "attrib", "reps"),
        ("TransformerLens", "tl", "attrib", "reps"),
        (INTERIM, "engine", "attrib", "interim_reps"),
    ]),
    ("direct logit attribution (per head and per component, clean run)", [
        ("engine", "engine", "dla", "reps"),
        ("TransformerLens", "tl", "dla", "reps"),
        (INTERIM, "engine", "dla", "interim_reps"),
    ]),
]


def run_plan(workers: dict[str, Worker], args) -> tuple[dict, dict]:
    """Interleaved rounds; returns {(section, label): [replies]} and forward timings."""
    reps = {"reps": args.reps, "slow_reps": args.slow_reps, "interim_reps": args.reps if args.with_interim else 0}
    results: dict[tuple[str, str], list[dict]] = {}
    fwd = {"engine plain mlx-lm": [], "engine hooked, no hooks": [], "transformers": [], "TransformerLens": []}
    fwd_cpu = {k: [] for k in fwd}
    hooked_diff = []
    failures: list[str] = []
    rounds = max(args.reps, args.slow_reps, args.forward_rounds)
    t_start = time.perf_counter()
    for r in range(rounds):
        if r < args.forward_rounds:
            e = workers["engine"].ask("forward", reps=5)
            fwd["engine plain mlx-lm"] += e["times_plain"]
            fwd["engine hooked, no hooks"] += e["times_hooked"]
            fwd_cpu["engine plain mlx-lm"] += e["cpu_plain"]
            fwd_cpu["engine hooked, no hooks"] += e["cpu_hooked"]
            hooked_diff.append(e["hooked_vs_plain_max_abs"])
            for name, w in (("transformers", "torch"), ("TransformerLens", "tl")):
                reply = workers[w].ask("forward", reps=5)
                fwd[name] += reply["times"]
                fwd_cpu[name] += reply["cpu"]
        for section, rows in PLAN:
            for label, w, task, key in rows:
                if r >= reps[key] or (task.endswith("_own") and args.skip_tl_own):
                    continue
                if label == INTERIM and args.engine_impl == "interim":  # the engine row is the interim already
                    continue
                kw = {}
                if w == "engine":
                    kw["impl"] = "interim" if label == INTERIM else args.engine_impl
                if w == "engine" and args.memory_budget_gb is not None:
                    kw["memory_budget_gb"] = args.memory_budget_gb
                t0 = time.perf_counter()
                try:
                    reply = workers[w].ask(task, **kw)
                except (WorkerError, OSError) as exc:  # record it, go on with the others
                    failures.append(f"{label} / {task}: {str(exc).splitlines()[0]}")
                    print(f"  FAILED {label} {task}: {exc}", file=sys.stderr, flush=True)
                    continue
                results.setdefault((section, label), []).append(reply)
                if args.verbose:
                    print(f"  round {r + 1}: {label:34s} {task:14s} {reply['seconds']:8.3f} s "
                          f"(wall {time.perf_counter() - t0:.1f} s, total {time.perf_counter() - t_start:.0f} s)",
                          flush=True)
    return results, {"forward": fwd, "forward_cpu": fwd_cpu, "hooked_vs_plain_max_abs": max(hooked_diff, default=None), "failures": failures}


# ==== report ======================================================================================
def _max_abs(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))


def _agreement(reply: dict, engine_reply: dict) -> float | None:
    keys = [k for k in ("grid", "resid", "z", "heads", "components") if k in reply and k in engine_reply]
    if not keys:
        return None
    return max(_max_abs(reply[k], engine_reply[k]) for k in keys)


def _gib(x) -> str:
    return "-" if x is None else f"{x / GIB:.2f}"


def report(setup: dict, results: dict, fwd: dict, args, wall: float) -> tuple[list[tuple[str, bool, str]], dict]:
    out: dict = {"setup": {k: {kk: vv for kk, vv in v.items() if kk != "last_logits"} for k, v in setup.items()},
                 "sections": {}, "forward": {}}
    checks: list[tuple[str, bool, str]] = []
    eng = setup["engine"]
    print("\n== set-up")
    print(f"engine {eng['versions']}, loaded in {eng['load_seconds']:.1f} s; engine.methods present for: "
          f"{sorted(k for k, v in eng['impls'].items() if v == 'methods') or 'none'} (--engine-impl {args.engine_impl})")
    print(f"torch {setup['torch']['versions']}, loaded in {setup['torch']['load_seconds']:.1f} s")
    print(f"TransformerLens {setup['tl']['versions']}, loaded in {setup['tl']['load_seconds']:.1f} s; "
          f"{setup['tl']['processing']}")
    print(f"tokens: clean {eng['str_tokens'][0]}\n        corrupted {eng['str_tokens'][1]}")
    hf_ids = setup["torch"]["hf_tokens"][:2]
    same_ids = hf_ids == [eng["clean"], eng["corrupted"]]
    print(f"transformers' tokenizer gives the same ids: {same_ids}")
    print(f"logit diff clean / corrupted: engine {eng['clean_ld']:.5f} / {eng['corrupted_ld']:.5f}, "
          f"transformers {setup['torch']['clean_ld']:.5f} / {setup['torch']['corrupted_ld']:.5f}, "
          f"TL {setup['tl']['clean_ld']:.5f} / {setup['tl']['corrupted_ld']:.5f}")
    e_logits = np.asarray(eng["last_logits"])
    d_hf = _max_abs(e_logits, setup["torch"]["last_logits"])
    d_tl = _max_abs(e_logits, setup["tl"]["last_logits"])
    d_tl_hf = setup["tl"]["tl_vs_hf_max_abs_logit"]
    print(f"last-position logits, max abs: engine vs transformers {d_hf:.2e}, engine vs TL {d_tl:.2e}, "
          f"TL vs transformers (all positions) {d_tl_hf:.2e}")
    out["logit_parity"] = {"engine_vs_hf": d_hf, "engine_vs_tl": d_tl, "tl_vs_hf": d_tl_hf}
    checks.append(("forward logits: engine vs TransformerLens <= 1e-4", d_tl <= AGREE, f"{d_tl:.2e}"))

    # ---- forward
    print("\n== forward (9 tokens, full logits)")
    f = fwd["forward"]
    med = {k: statistics.median(v) for k, v in f.items() if v}
    base = med["engine plain mlx-lm"]
    cpu_med = {k: statistics.median(v) for k, v in fwd["forward_cpu"].items() if v}
    cpu_base = cpu_med["engine plain mlx-lm"]
    print(f"{'implementation':40s} {'median s':>9s} {'n':>4s} {'vs engine plain':>16s} {'CPU s':>8s} {'CPU vs plain':>12s}")
    for k, v in med.items():
        print(f"{k:40s} {v:9.4f} {len(f[k]):4d} {v / base:15.2f}x {cpu_med[k]:8.4f} {cpu_med[k] / cpu_base:11.2f}x")
    print(f"engine hooked (no hooks) vs plain mlx-lm logits, max abs: {fwd['hooked_vs_plain_max_abs']}")
    out["forward"] = {k: {"median": v, "n": len(f[k]), "times": f[k], "cpu_median": cpu_med[k]} for k, v in med.items()}
    r = med["transformers"] / base
    checks.append(("plain forward no slower than transformers (transformers / engine plain >= 1)", r >= 1, f"{r:.2f}x"))
    # the engine's own forward (HookedModel.forward: packed weights, no hooks) is what its users call
    r = med["transformers"] / med["engine hooked, no hooks"]
    checks.append(("engine forward (HookedModel.forward, no hooks) no slower than transformers", r >= 1, f"{r:.2f}x"))
    r = med["engine hooked, no hooks"] / base
    checks.append(("hooked forward, no hooks <= 1.05x plain MLX forward", r <= 1.05, f"{r:.3f}x"))
    r = med["TransformerLens"] / med["transformers"]
    print(f"TransformerLens forward / transformers forward: {r:.2f}x (hook overhead of TL)")

    # ---- sweeps
    budget_note = f" (engine memory budget {args.memory_budget_gb} GB)" if args.memory_budget_gb else ""
    for section, rows in PLAN:
        engine_rows = results.get((section, "engine"))
        if not engine_rows:
            continue
        impl = engine_rows[0].get("impl", "?")
        e_med = statistics.median(x["seconds"] for x in engine_rows)
        print(f"\n== {section}{budget_note}")
        e_cpu = statistics.median(x.get("cpu_seconds", float("nan")) for x in engine_rows)
        print(f"{'implementation':40s} {'median s':>9s} {'n':>3s} {'engine x faster':>15s} {'CPU s':>8s} "
              f"{'x less CPU':>10s} {'max abs vs engine':>17s} {'peak RSS GiB':>12s} {'MLX peak GiB':>12s}")
        sec_out = {}
        for label, w, task, _ in rows:
            replies = results.get((section, label))
            if not replies:
                continue
            secs = [x["seconds"] for x in replies]
            m = statistics.median(secs)
            agree = None if label == "engine" else _agreement(replies[0], engine_rows[0])
            rss = max((x.get("peak_rss") or 0) for x in replies) or None
            mlx_peak = max((x.get("mlx_peak") or 0) for x in replies) or None
            name = f"engine ({impl})" if label == "engine" else label
            speed = "" if label == "engine" else f"{m / e_med:14.2f}x"
            agree_s = "" if agree is None else f"{agree:.2e}"
            cpu = statistics.median(x.get("cpu_seconds", float("nan")) for x in replies)
            cpu_ratio = "" if label == "engine" else f"{cpu / e_cpu:9.2f}x"
            print(f"{name:40s} {m:9.3f} {len(secs):3d} {speed:>15s} {cpu:8.2f} {cpu_ratio:>10s} {agree_s:>17s} "
                  f"{_gib(rss):>12s} {_gib(mlx_peak):>12s}")
            sec_out[label] = {"median": m, "n": len(secs), "seconds": secs, "cpu_median": cpu, "agreement": agree,
                              "peak_rss": rss, "mlx_peak": mlx_peak, "impl": replies[0].get("impl")}
            extra = {k: replies[0][k] for k in ("rows_computed", "rows_skipped") if k in replies[0]}
            if extra:
                sec_out[label].update(extra)
                print(f"{'':40s} {extra}")
            if agree is not None:
                checks.append((f"{section.split(' (')[0]}: {label} agrees with the engine <= 1e-4", agree <= AGREE,
                               f"{agree:.2e}"))
        out["sections"][section] = sec_out
        eng_mem = max(sec_out["engine"]["peak_rss"] or 0, sec_out["engine"]["mlx_peak"] or 0)
        checks.append((f"{section.split(' (')[0]}: engine peak memory < 4 GiB", eng_mem < MEMORY_LIMIT,
                       f"{eng_mem / GIB:.2f} GiB"))
        short = section.split(" (")[0]
        targets = {"resid_pre grid": [("plain torch, batched", 3), ("TransformerLens, own patching", 50)],
                   "per-head grid": [("plain torch, batched", 3), ("TransformerLens, own patching", 50)],
                   "attribution patching": [("TransformerLens", 1)],
                   "direct logit attribution": [("TransformerLens", 1)]}.get(short, [])
        for peer, want in targets:
            if peer in sec_out:
                ratio = sec_out[peer]["median"] / e_med
                checks.append((f"{short}: engine >= {want}x faster than {peer}", ratio >= want, f"{ratio:.2f}x"))
            else:
                checks.append((f"{short}: engine >= {want}x faster than {peer}", False, "not run"))

    for failure in fwd.get("failures", []):
        checks.append((f"ran without error: {failure}", False, "failed"))
    print("\n== targets")
    for name, ok, fig in checks:
        print(f"{'PASS' if ok else 'MISS'}  {name}: {fig}")
    n_pass = sum(ok for _, ok, _ in checks)
    print(f"\n{n_pass} of {len(checks)} targets met; whole benchmark {wall:.0f} s wall")
    out["targets"] = [{"target": n, "pass": ok, "figure": fig} for n, ok, fig in checks]
    return checks, out


def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--peers-python", default=os.environ.get("BENCH_PEERS_PYTHON", str(ROOT / ".venv-peers/bin/python")),
                    help="python of the peers venv (torch, transformer_lens, transformers, gguf)")
    ap.add_argument("--engine-python", default=sys.executable, help="python of the engine venv (mlx)")
    ap.add_argument("--reps", type=int, default=5, help="rounds of the fast variants (median over them)")
    ap.add_argument("--slow-reps", type=int, default=1,
                    help="runs of TransformerLens' own patching and the plain torch loop (~15-50 s each)")
    ap.add_argument("--forward-rounds", type=int, default=5, help="rounds of 5 forwards per implementation")
    ap.add_argument("--skip-tl-own", action="store_true", help="skip TransformerLens' own (slow) patching")
    ap.add_argument("--engine-impl", choices=("auto", "methods", "interim"), default="auto",
                    help="engine sweeps: engine.methods when present (auto), or the interim batched stand-in")
    ap.add_argument("--with-interim", action="store_true",
                    help="also time the interim engine stand-in (one batch through run_with_hooks) beside engine.methods")
    ap.add_argument("--omp-wait-policy", choices=("passive", "active", "default"), default="passive",
                    help="OMP_WAIT_POLICY of the torch workers (passive: fair on a shared machine)")
    ap.add_argument("--memory-budget-gb", type=float, default=None, help="passed to the engine's sweeps")
    ap.add_argument("--json", type=Path, default=None, help="write every figure to this file")
    ap.add_argument("--log-dir", type=Path, default=None, help="workers' stderr logs (default: a temp dir)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print each timed run as it finishes")
    args = ap.parse_args(argv)

    if not Path(args.peers_python).exists():
        print(f"no peers venv at {args.peers_python}: create it with `bash tests/bench/peers/make_venv.sh` "
              "(or pass --peers-python / BENCH_PEERS_PYTHON)", file=sys.stderr)
        return 2
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="bench-peers-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    print(f"peer benchmark: reps {args.reps}, slow reps {args.slow_reps}, engine impl {args.engine_impl}, "
          f"torch OMP_WAIT_POLICY {args.omp_wait_policy}; "
          f"load average {_load()}; worker logs in {log_dir}", flush=True)
    t0 = time.perf_counter()
    workers = start_workers(args, log_dir)
    try:
        task = {"clean_text": CLEAN, "corrupted_text": CORRUPTED, "correct_text": CORRECT, "wrong_text": WRONG}
        setup = {"engine": workers["engine"].ask("setup", **task)}
        e = setup["engine"]
        ids = {"clean": e["clean"], "corrupted": e["corrupted"], "correct": e["correct"], "wrong": e["wrong"]}
        for name in ("torch", "tl"):  # the two torch peers load concurrently
            workers[name].send("setup", **task, **ids)
        for name in ("torch", "tl"):
            setup[name] = workers[name].receive()
        print(f"workers ready after {time.perf_counter() - t0:.0f} s; timing (load average {_load()})", flush=True)
        results, fwd = run_plan(workers, args)
    finally:
        for w in workers.values():
            w.close()
    wall = time.perf_counter() - t0
    print(f"\nload average at the end: {_load()} (2 cores shared: figures are medians of interleaved runs)")
    checks, out = report(setup, results, fwd, args, wall)
    out["args"] = {k: str(v) for k, v in vars(args).items()}
    out["wall_seconds"] = wall
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
        print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
