"""Every hook TransformerLens exposes on the embedded model, against this engine's cache of the same name.

    .venv/bin/python -m tests.bench.peers.cache_parity [-v]       (needs .venv-peers: make_venv.sh)

Two children, never one process: TransformerLens (HookedTransformer built as torch_worker.py builds it,
float32, no weight processing) in the peers venv, and the engine in the engine venv with OpenBLAS
preloaded. Each runs the same token ids (a batch of two prompts of equal length, no BOS, and the same
batch with BOS prepended: the engine's ``to_tokens(prepend_bos=True)``, checked equal to TL's own
``to_tokens(prepend_bos=True)`` with transformers' tokenizer of the GGUF) and writes every activation to
an .npz; this runner compares shapes and values hook by hook, and the logits.
TL is run twice in its child: with its default flags (the hooks of its default cache), then with
use_attn_result and use_hook_mlp_in on, for the opt-in attn.hook_result and hook_mlp_in only.
A third pass reads transformers' own modules (forward hooks on the tensors nnsight's .input/.output give,
HF_MODULES) and compares them with the engine hook holding the same tensor.
Masked attention scores (above the diagonal) are compared as a convention (both -inf or not), the
rest as numbers: max |diff| relative to the largest |value| of the hook, and the same at every
(batch, position) alone; PASS when both are <= 1e-4 (float32 summation-order differences over 30 layers
stay below ~4e-5).
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
TOLERANCE = 1e-4  # on max |diff| / max |TL value|, over the whole hook and at every single position
# Why per position and not elementwise (torch.allclose): the residual stream carries activations up to ~2.5e4
# at the first position, and where resid_mid + mlp_out cancel to O(1) an element differs by ~2e-3 through
# float32 summation order alone (allclose rtol 1e-3 / atol 1e-4 fails there by 1.6x with BOS); relative to
# what the same position holds, every hook stays below ~4e-5.


OPT_IN = ("attn.hook_result", "hook_mlp_in")  # TL: use_attn_result, use_hook_mlp_in


def tl_child(tokens: list[list[int]], out: Path, texts: list[str] | None = None) -> None:
    """Peers venv: TransformerLens' run_with_cache on ``tokens``; every hook to ``out``. With ``texts``
    (the BOS pass), TL's own ``to_tokens(texts, prepend_bos=True)`` is saved too, for the runner to compare."""
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
    arrays = {}
    if texts is not None:
        from transformers import AutoTokenizer

        path = gguf_path()
        model.set_tokenizer(AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name))
        arrays["tl_to_tokens"] = model.to_tokens(texts, prepend_bos=True).numpy()
    ids = torch.tensor(tokens, dtype=torch.long)
    with torch.inference_mode():
        logits, cache = model.run_with_cache(ids)
        arrays.update({name: t.float().numpy() for name, t in cache.items()})
        arrays["logits"] = logits.float().numpy()
        model.set_use_attn_result(True)
        model.set_use_hook_mlp_in(True)
        _, opt_in = model.run_with_cache(ids, names_filter=lambda name: name.endswith(OPT_IN))
    arrays.update({name: t.float().numpy() for name, t in opt_in.items()})
    np.savez(out, **arrays)


# transformers' LlamaForCausalLM modules (what nnsight's .input / .output return) -> the engine hook holding the
# same tensor: (hook, module path under model.model.layers[L] ("" = the layer), "in" or "out", heads to split).
HF_MODULES = (
    ("hook_resid_pre", "", "in", 0),
    ("attn.hook_q", "self_attn.q_proj", "out", "h"),
    ("attn.hook_k", "self_attn.k_proj", "out", "g"),
    ("attn.hook_v", "self_attn.v_proj", "out", "g"),
    ("attn.hook_pattern", "self_attn", "weights", 0),
    ("attn.hook_z", "self_attn.o_proj", "in", "h"),
    ("hook_attn_out", "self_attn", "out", 0),
    ("hook_resid_mid", "post_attention_layernorm", "in", 0),
    ("mlp.hook_pre", "mlp.gate_proj", "out", 0),
    ("mlp.hook_pre_linear", "mlp.up_proj", "out", 0),
    ("mlp.hook_post", "mlp.down_proj", "in", 0),
    ("hook_mlp_out", "mlp", "out", 0),
    ("hook_resid_post", "", "out", 0),
)


def hf_child(tokens: list[list[int]], out: Path) -> None:
    """Peers venv: transformers' model (eager attention, so the weights are returned) with forward hooks on
    the modules of HF_MODULES; each tensor saved under the engine's hook name, plus hook_embed,
    unembed.hook_in (model.norm's output) and the logits."""
    import torch

    from tests.bench.peers.torch_worker import load_hf

    model = load_hf()
    model.set_attn_implementation("eager")
    cfg = model.config
    heads = {"h": cfg.num_attention_heads, "g": cfg.num_key_value_heads}
    arrays: dict[str, np.ndarray] = {}

    def keep(name: str, tensor, split) -> None:
        t = tensor[0] if isinstance(tensor, tuple) else tensor
        t = t.detach().float()
        if split:
            t = t.reshape(*t.shape[:-1], heads[split], -1)
        arrays[name] = t.numpy().copy()

    def hook(name: str, where: str, split):
        def fn(module, args, kwargs, output):
            if where == "in":
                keep(name, args[0] if args else kwargs["hidden_states"], split)
            elif where == "weights":
                keep(name, output[1], split)
            else:
                keep(name, output, split)
        return fn

    handles = [model.model.embed_tokens.register_forward_hook(hook("hook_embed", "out", 0), with_kwargs=True),
               model.model.norm.register_forward_hook(hook("unembed.hook_in", "out", 0), with_kwargs=True)]
    for layer, block in enumerate(model.model.layers):
        for local, path, where, split in HF_MODULES:
            module = block.get_submodule(path) if path else block
            handles.append(module.register_forward_hook(hook(f"blocks.{layer}.{local}", where, split), with_kwargs=True))
    with torch.inference_mode():
        logits = model(torch.tensor(tokens, dtype=torch.long), use_cache=False, output_attentions=True).logits
    for h in handles:
        h.remove()
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


def engine_tokens() -> tuple[list[list[int]], list[list[int]]]:
    """The batch's token ids from the engine's to_tokens, without and with BOS (read in an engine child)."""
    code = ("import json, engine; m = engine.load_model('smollm2-135m'); p = [%r, %r]; "
            "print(json.dumps([m.to_tokens(p).tolist(), m.to_tokens(p, prepend_bos=True).tolist()]))") % (CLEAN, CORRUPTED)
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


Row = tuple[str, str, float, float, float, bool]
# hook, shape (or what is wrong), max |diff|, relative (to the hook's max |TL value|), worst per-position relative, pass


def compare(tl: dict[str, np.ndarray], eng: dict[str, np.ndarray], missing: list[str]) -> list[Row]:
    """A Row for every TL hook and the logits; PASS = relative and per-position relative <= TOLERANCE."""
    rows = []
    for name in sorted(tl):
        a = tl[name]
        if name in missing or name not in eng:
            rows.append((name, "engine has no such hook", float("nan"), float("nan"), float("nan"), False))
            continue
        b = eng[name]
        if a.shape != b.shape:
            rows.append((name, f"shape TL {a.shape} vs engine {b.shape}", float("nan"), float("nan"), float("nan"), False))
            continue
        finite_a, finite_b = np.isfinite(a), np.isfinite(b)
        if not np.array_equal(finite_a, finite_b):
            rows.append((name, "masked (non-finite) positions differ", float("nan"), float("nan"), float("nan"), False))
            continue
        if not np.array_equal(a[~finite_a], b[~finite_b]):
            rows.append((name, "masked values differ (e.g. -inf vs a large negative)", float("nan"), float("nan"), float("nan"), False))
            continue
        scale = float(np.abs(a[finite_a]).max()) or 1.0
        diff = float(np.abs(a[finite_a] - b[finite_b]).max())
        pos = per_position_relative(name, np.where(finite_a, a, 0.0), np.where(finite_b, b, 0.0))
        rows.append((name, str(a.shape), diff, diff / scale, pos, max(diff / scale, pos) <= TOLERANCE))
    return rows


def per_position_relative(name: str, a: np.ndarray, b: np.ndarray) -> float:
    """max over (batch, position) of max |diff| / max |TL value| within that slice (the query position for
    [batch, head, q, k] attention hooks; masked entries zeroed on both sides beforehand)."""
    if name.endswith(("hook_attn_scores", "hook_pattern")):
        a, b = a.transpose(0, 2, 1, 3), b.transpose(0, 2, 1, 3)
    rows_a = np.abs(a.reshape(a.shape[0] * a.shape[1], -1))
    rows_d = np.abs(a - b).reshape(rows_a.shape)
    return float((rows_d.max(axis=1) / np.maximum(rows_a.max(axis=1), np.finfo(np.float32).tiny)).max())


def by_kind(rows: list[Row]) -> list[tuple[str, int, str, float, float, float, bool]]:
    """One line per hook kind (blocks.L.x grouped over L): count, shapes, the worst of each figure, all pass."""
    groups: dict[str, list[Row]] = {}
    for row in rows:
        parts = row[0].split(".", 2)
        kind = f"blocks.*.{parts[2]}" if parts[0] == "blocks" and len(parts) == 3 else row[0]
        groups.setdefault(kind, []).append(row)
    out = []
    for kind, group in groups.items():
        shapes = sorted({r[1] for r in group})
        worst = [max((r[i] for r in group), key=lambda x: (x != x, x)) for i in (2, 3, 4)]  # nan ranks worst
        out.append((kind, len(group), shapes[0] if len(shapes) == 1 else f"{len(shapes)} shapes",
                    *worst, all(r[5] for r in group)))
    return out


def run_pair(tokens: list[list[int]], peers_python: str, work: Path, label: str,
             texts: list[str] | None = None, peer: str = "tl-child") -> tuple[list[Row], list[list[int]] | None]:
    """The peer child (``tl-child`` or ``hf-child``) and the engine child on ``tokens``; the comparison rows,
    and TL's own BOS tokenisation of ``texts``."""
    tl_out, eng_out = work / f"tl-{label}.npz", work / f"engine-{label}.npz"
    peers_env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    peers_env["BENCH_GGUF"] = str(gguf_path())
    peers_env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see README: spinning OpenMP threads on a shared machine
    _run([peers_python, "-m", "tests.bench.peers.cache_parity", peer, json.dumps(tokens), str(tl_out),
          json.dumps(texts)], peers_env)
    tl = dict(np.load(tl_out))
    tl_tokens = tl.pop("tl_to_tokens", None)
    names = [n for n in tl if n != "logits"]
    _run([_engine_python(), "-m", "tests.bench.peers.cache_parity", "engine-child", json.dumps(tokens), str(eng_out),
          json.dumps(names)], engine_env())
    missing = json.loads((work / f"engine-{label}.missing.json").read_text())
    return compare(tl, dict(np.load(eng_out)), missing), (None if tl_tokens is None else tl_tokens.tolist())


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "tl-child":
        tl_child(json.loads(argv[1]), Path(argv[2]), json.loads(argv[3]) if len(argv) > 3 else None)
        return 0
    if argv and argv[0] == "hf-child":
        hf_child(json.loads(argv[1]), Path(argv[2]))
        return 0
    if argv and argv[0] == "engine-child":
        engine_child(json.loads(argv[1]), json.loads(argv[3]), Path(argv[2]))
        return 0
    ap = argparse.ArgumentParser(prog="python -m tests.bench.peers.cache_parity")
    ap.add_argument("--peers-python", default=os.environ.get("BENCH_PEERS_PYTHON", str(ROOT / ".venv-peers/bin/python")))
    ap.add_argument("-v", "--verbose", action="store_true", help="print every hook, not only the table by hook kind")
    args = ap.parse_args(argv)
    if not Path(args.peers_python).exists():
        print(f"no peers venv at {args.peers_python}: create it with `bash tests/bench/peers/make_venv.sh`")
        return 2
    plain, bos = engine_tokens()
    failures = 0
    with tempfile.TemporaryDirectory(prefix="cache-parity-") as tmp:
        passes = (("TransformerLens, no BOS", "no-bos", plain, None, "tl-child"),
                  ("TransformerLens, BOS prepended", "bos", bos, [CLEAN, CORRUPTED], "tl-child"),
                  ("transformers modules (what nnsight reads), no BOS", "hf", plain, None, "hf-child"))
        for title, label, tokens, texts, peer in passes:
            rows, tl_tokens = run_pair(tokens, args.peers_python, Path(tmp), label, texts, peer)
            bad = [r for r in rows if not r[5]]
            failures += len(bad)
            print(f"\n== {title}: tokens {tokens}")
            if texts is not None:
                same = tl_tokens == tokens
                failures += not same
                print(f"TL's own to_tokens(prepend_bos=True) with transformers' tokenizer: {tl_tokens} "
                      f"-> {'same ids as the engine (PASS)' if same else 'DIFFERENT from the engine (MISS)'}")
            print(f"{len(rows)} {'TransformerLens hooks' if peer == 'tl-child' else 'module tensors'} + logits: {len(rows) - len(bad)} PASS, {len(bad)} MISS "
                  f"(max |diff| / max |peer value| <= {TOLERANCE:g}, over the hook and at every position)")
            print(f"  {'hook':<32} {'n':>3} {'shape (peer = engine)':<22} {'max |diff|':>10} {'relative':>9} {'per pos':>9}")
            for kind, n, shape, diff, rel, pos, ok in by_kind(rows):
                print(f"  {kind:<32} {n:>3} {shape:<22} {diff:10.2e} {rel:9.2e} {pos:9.2e} {'PASS' if ok else 'MISS'}")
            for name, note, diff, rel, pos, ok in rows if args.verbose else bad:
                print(f"  {'PASS' if ok else 'MISS'}  {name:<40} {note:<40} {diff:.2e} {rel:.2e} {pos:.2e}")
    print(f"\n{'all PASS' if not failures else f'{failures} MISS'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
