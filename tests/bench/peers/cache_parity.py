"""Every hook TransformerLens exposes on the embedded model, against this engine's cache of the same name.

    .venv/bin/python -m tests.bench.peers.cache_parity            (needs .venv-peers: make_venv.sh)

Two children, never one process: TransformerLens (HookedTransformer built as torch_worker.py builds it,
float32, no weight processing) in the peers venv, and the engine in the engine venv with OpenBLAS
preloaded. Each runs the same token ids (a batch of two prompts of equal length, no BOS, and the same
batch with the tokenizer's BOS prepended through ``to_tokens(prepend_bos=True)`` when the engine has it)
and writes every activation to an .npz; this runner compares shapes and values hook by hook.
Masked attention scores (above the diagonal) are compared as a convention (both -inf or not), the
rest as numbers: max |diff| relative to the largest |value| of the hook, PASS at <= 1e-4.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from tests.bench.peers.common import CLEAN, CORRUPTED, gguf_path

ROOT = Path(__file__).resolve().parents[3]
TOLERANCE = 1e-4


def tl_child(tokens: list[list[int]], out: Path) -> None:
    """Peers venv: TransformerLens' run_with_cache on ``tokens``; every hook to ``out``."""
    import torch
    from transformer_lens import HookedTransformer
    from transformer_lens.pretrained.weight_conversions.llama import convert_llama_weights

    from tests.bench.peers.torch_worker import load_hf, tl_config

    hf = load_hf()
    cfg = tl_config(hf.config)
    model = HookedTransformer(cfg)
    with torch.no_grad():
        model.load_and_process_state_dict(convert_llama_weights(hf, cfg), fold_ln=False, center_writing_weights=False,
                                          center_unembed=False, fold_value_biases=False)
    model.eval()
    with torch.inference_mode():
        logits, cache = model.run_with_cache(torch.tensor(tokens, dtype=torch.long))
    arrays = {name: t.float().numpy() for name, t in cache.items()}
    arrays["logits"] = logits.float().numpy()
    np.savez(out, **arrays)


def engine_child(tokens: list[list[int]], names: list[str], out: Path) -> None:
    """Engine venv: run_with_cache on the same ids for every name the engine knows."""
    import mlx.core as mx

    import engine
    from engine.errors import UnknownHookError
    from engine.hook_names import validate_hook

    m = engine.load_model("smollm2-135m")
    known, missing = [], []
    for name in names:
        try:
            validate_hook(name, m.cfg.n_layers)
            known.append(name)
        except UnknownHookError:
            missing.append(name)
    logits, cache = m.run_with_cache(mx.array(tokens, dtype=mx.int32), names=known)
    arrays = {name: np.array(cache[name].astype(mx.float32)) for name in known}
    arrays["logits"] = np.array(logits.astype(mx.float32))
    np.savez(out, **arrays)
    (out.parent / (out.stem + ".missing.json")).write_text(json.dumps(missing))


def engine_tokens() -> tuple[list[list[int]], list[list[int]] | None]:
    """The runner's token ids (and the BOS-prepended ids) from the engine's tokenizer, read in a child."""
    code = ("import json, engine, inspect; m = engine.load_model('smollm2-135m'); p = [%r, %r]; "
            "plain = [m.tokenizer.encode(t) for t in p]; "
            "bos = [list(map(int, m.to_tokens(t, prepend_bos=True)[0].tolist())) for t in p] "
            "if 'prepend_bos' in inspect.signature(m.to_tokens).parameters else None; "
            "print(json.dumps([plain, bos]))") % (CLEAN, CORRUPTED)
    out = _run([_engine_python(), "-c", code], engine_env())
    plain, bos = json.loads(out.strip().splitlines()[-1])
    return plain, bos


def engine_env() -> dict[str, str]:
    from engine.blas import blas_env

    env = dict(os.environ)
    env.update(blas_env(env))
    return env


def _engine_python() -> str:
    return sys.executable


def _run(argv: list[str], env: dict[str, str]) -> str:
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"{argv[:4]} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc.stdout


def compare(tl: dict[str, np.ndarray], eng: dict[str, np.ndarray], missing: list[str]) -> list[tuple[str, str, float, bool]]:
    """(hook, shape note, relative max |diff|, pass) for every TL hook."""
    rows = []
    for name in sorted(tl):
        a = tl[name]
        if name in missing or name not in eng:
            rows.append((name, "engine has no such hook", float("nan"), False))
            continue
        b = eng[name]
        if a.shape != b.shape:
            rows.append((name, f"shape TL {a.shape} vs engine {b.shape}", float("nan"), False))
            continue
        finite_a, finite_b = np.isfinite(a), np.isfinite(b)
        if not np.array_equal(finite_a, finite_b):
            rows.append((name, "masked (non-finite) positions differ", float("nan"), False))
            continue
        if not np.array_equal(a[~finite_a], b[~finite_b]):
            rows.append((name, "masked values differ (e.g. -inf vs a large negative)", float("nan"), False))
            continue
        scale = float(np.abs(a[finite_a]).max()) or 1.0
        rel = float(np.abs(a[finite_a] - b[finite_b]).max()) / scale
        rows.append((name, str(a.shape), rel, rel <= TOLERANCE))
    return rows


def run_pair(tokens: list[list[int]], peers_python: str, work: Path, label: str) -> list[tuple[str, str, float, bool]]:
    tl_out, eng_out = work / f"tl-{label}.npz", work / f"engine-{label}.npz"
    peers_env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    peers_env["BENCH_GGUF"] = str(gguf_path())
    _run([peers_python, "-m", "tests.bench.peers.cache_parity", "tl-child", json.dumps(tokens), str(tl_out)], peers_env)
    tl = dict(np.load(tl_out))
    names = [n for n in tl if n != "logits"]
    _run([_engine_python(), "-m", "tests.bench.peers.cache_parity", "engine-child", json.dumps(tokens), str(eng_out),
          json.dumps(names)], engine_env())
    missing = json.loads((work / f"engine-{label}.missing.json").read_text())
    return compare(tl, dict(np.load(eng_out)), missing)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "tl-child":
        tl_child(json.loads(argv[1]), Path(argv[2]))
        return 0
    if argv and argv[0] == "engine-child":
        engine_child(json.loads(argv[1]), json.loads(argv[3]), Path(argv[2]))
        return 0
    ap = argparse.ArgumentParser(prog="python -m tests.bench.peers.cache_parity")
    ap.add_argument("--peers-python", default=os.environ.get("BENCH_PEERS_PYTHON", str(ROOT / ".venv-peers/bin/python")))
    ap.add_argument("-v", "--verbose", action="store_true", help="print every hook, not only the failures")
    args = ap.parse_args(argv)
    if not Path(args.peers_python).exists():
        print(f"no peers venv at {args.peers_python}: create it with `bash tests/bench/peers/make_venv.sh`")
        return 2
    plain, bos = engine_tokens()
    failures = 0
    with tempfile.TemporaryDirectory(prefix="cache-parity-") as tmp:
        for label, tokens in (("no-bos", plain), ("bos", bos)):
            if tokens is None:
                print(f"\n== {label}: the engine's to_tokens has no prepend_bos; skipped")
                continue
            rows = run_pair(tokens, args.peers_python, Path(tmp), label)
            bad = [r for r in rows if not r[3]]
            failures += len(bad)
            worst = max((r for r in rows if r[3]), key=lambda r: r[2], default=None)
            print(f"\n== {label}: tokens {tokens}")
            print(f"{len(rows)} TransformerLens hooks (+ logits): {len(rows) - len(bad)} PASS, {len(bad)} MISS "
                  f"(relative max |diff| <= {TOLERANCE:g})" + (f"; worst PASS {worst[0]} {worst[2]:.2e}" if worst else ""))
            for name, note, rel, ok in rows if args.verbose else bad:
                print(f"  {'PASS' if ok else 'MISS'}  {name:<40} {note:<40} {rel:.2e}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
