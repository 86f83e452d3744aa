"""PyTorch peers: plain transformers (loop and batched, forward hooks) and TransformerLens.

Runs in the peers venv (tests/bench/requirements-peers.txt), never beside MLX:
    .venv-peers/bin/python -m tests.bench.peers.torch_worker torch|tl
and answers the JSON-lines requests of tests/bench/bench_peers.py (see common.serve).

Both load the embedded GGUF with transformers (float32, dequantised by transformers' GGUF reader).
TransformerLens gets a hand-built HookedTransformerConfig for the Llama architecture and weights
converted by its own Llama converter, with no weight processing (no fold_ln / centering), so raw
logits equal transformers'; logit differences are unaffected by TL's default processing anyway.
Prompts are passed as token ids, so no BOS is prepended (default_prepend_bos=False as well).

Every patching grid is denoising (clean activation into the corrupted run), metric = logit
difference correct - wrong at the last position, normalised (0 = corrupted, 1 = clean). Timed
sections include the reference runs each method needs (clean cache, corrupted baseline).
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np
import torch

from tests.bench.peers.common import gguf_path, measured, normalise, serve


def load_hf():
    from transformers import AutoModelForCausalLM

    path = gguf_path()
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    model.eval()
    return model


def hf_tokenize(texts: list[str]) -> list[list[int]]:
    from transformers import AutoTokenizer

    path = gguf_path()
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    return [tok(t, add_special_tokens=False).input_ids for t in texts] + [tok(t).input_ids for t in texts]


def _ld(logits: torch.Tensor, correct: int, wrong: int) -> torch.Tensor:
    """Logit difference at the last position per row."""
    last = logits[:, -1]
    return last[:, correct] - last[:, wrong]


class Task:
    """Tokens and answer ids sent by the runner (the engine's tokenisation)."""

    def __init__(self, req: dict) -> None:
        self.clean = torch.tensor([req["clean"]], dtype=torch.long)
        self.corrupted = torch.tensor([req["corrupted"]], dtype=torch.long)
        self.correct, self.wrong = int(req["correct"]), int(req["wrong"])
        self.n_pos = self.clean.shape[1]


# ==== plain transformers ==========================================================================
class TorchPeer:
    """transformers' LlamaForCausalLM with forward (pre-)hooks: a loop of single runs, and one batch."""

    TASKS = ("setup", "forward", "resid_loop", "resid_batched", "head_loop", "head_batched")

    def __init__(self) -> None:
        self.model = None
        self.task: Task | None = None

    def setup(self, req: dict) -> dict:
        t0 = time.perf_counter()
        self.model = load_hf()
        load = time.perf_counter() - t0
        self.task = t = Task(req)
        ids = hf_tokenize([req["clean_text"], req["corrupted_text"]])
        with torch.inference_mode():
            clean_logits = self.model(t.clean, use_cache=False).logits
            corr_logits = self.model(t.corrupted, use_cache=False).logits
        self.clean_ld = float(_ld(clean_logits, t.correct, t.wrong)[0])
        self.corr_ld = float(_ld(corr_logits, t.correct, t.wrong)[0])
        return {
            "load_seconds": load,
            "versions": {"torch": torch.__version__, "transformers": _version("transformers"),
                         "threads": torch.get_num_threads()},
            "hf_tokens": ids,
            "clean_ld": self.clean_ld,
            "corrupted_ld": self.corr_ld,
            "last_logits": clean_logits[0, -1].tolist(),
        }

    @property
    def layers(self):
        return self.model.model.layers

    def forward(self, req: dict) -> dict:
        times, cpu = [], []
        with torch.inference_mode():
            for _ in range(int(req.get("reps", 5))):
                c0, t0 = time.process_time(), time.perf_counter()
                self.model(self.task.clean, use_cache=False).logits
                times.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
        return {"times": times, "cpu": cpu}

    # -- reference activations
    def _clean_resid(self) -> list[torch.Tensor]:
        out = self.model(self.task.clean, use_cache=False, output_hidden_states=True, logits_to_keep=1)
        return list(out.hidden_states[: len(self.layers)])  # hidden_states[L] = input of layer L

    def _clean_z(self) -> list[torch.Tensor]:
        store: list[torch.Tensor] = [None] * len(self.layers)
        handles = []
        for L, layer in enumerate(self.layers):
            def grab(mod, args, L=L):
                store[L] = args[0].detach().clone()
            handles.append(layer.self_attn.o_proj.register_forward_pre_hook(grab))
        try:
            self.model(self.task.clean, use_cache=False, logits_to_keep=1)
        finally:
            for h in handles:
                h.remove()
        return store  # [1, P, n_heads * d_head] each: the input of o_proj = hook_z flattened

    def _metric(self, logits: torch.Tensor) -> np.ndarray:
        ld = _ld(logits, self.task.correct, self.task.wrong).double().numpy()
        return normalise(ld, self.clean_ld, self.corr_ld)

    def _run(self, tokens: torch.Tensor) -> np.ndarray:
        return self._metric(self.model(tokens, use_cache=False, logits_to_keep=1).logits)

    # -- resid_pre grids
    def resid_loop(self, req: dict) -> dict:
        def run():
            with torch.inference_mode():
                clean = self._clean_resid()
                n, P = len(self.layers), self.task.n_pos
                grid = np.zeros((n, P))
                for L in range(n):
                    for p in range(P):
                        def patch(mod, args, kwargs, L=L, p=p):
                            hs = args[0] if args else kwargs["hidden_states"]
                            hs[:, p] = clean[L][:, p]  # in place: the layer's own input
                        h = self.layers[L].register_forward_pre_hook(patch, with_kwargs=True)
                        try:
                            grid[L, p] = self._run(self.task.corrupted)[0]
                        finally:
                            h.remove()
            return {"grid": grid.tolist()}
        return measured(run)

    def resid_batched(self, req: dict) -> dict:
        def run():
            with torch.inference_mode():
                clean = self._clean_resid()
                n, P = len(self.layers), self.task.n_pos
                batch = self.task.corrupted.repeat(n * P, 1)  # row L * P + p patches (L, p)
                pos = torch.arange(P)
                handles = []
                for L in range(n):
                    rows = L * P + pos
                    def patch(mod, args, kwargs, L=L, rows=rows):
                        hs = args[0] if args else kwargs["hidden_states"]
                        hs[rows, pos] = clean[L][0, pos]
                    handles.append(self.layers[L].register_forward_pre_hook(patch, with_kwargs=True))
                try:
                    grid = self._run(batch).reshape(n, P)
                finally:
                    for h in handles:
                        h.remove()
            return {"grid": grid.tolist()}
        return measured(run)

    # -- per-head grids (z of one head at every position)
    def head_loop(self, req: dict) -> dict:
        def run():
            with torch.inference_mode():
                clean = self._clean_z()
                n, H = len(self.layers), self.model.config.num_attention_heads
                e = self.model.config.head_dim
                grid = np.zeros((n, H))
                for L in range(n):
                    for h in range(H):
                        def patch(mod, args, L=L, h=h):
                            args[0][:, :, h * e:(h + 1) * e] = clean[L][:, :, h * e:(h + 1) * e]
                        hd = self.layers[L].self_attn.o_proj.register_forward_pre_hook(patch)
                        try:
                            grid[L, h] = self._run(self.task.corrupted)[0]
                        finally:
                            hd.remove()
            return {"grid": grid.tolist()}
        return measured(run)

    def head_batched(self, req: dict) -> dict:
        def run():
            with torch.inference_mode():
                clean = self._clean_z()
                n, H = len(self.layers), self.model.config.num_attention_heads
                e = self.model.config.head_dim
                batch = self.task.corrupted.repeat(n * H, 1)  # row L * H + h patches head h of layer L
                handles = []
                for L in range(n):
                    def patch(mod, args, L=L):
                        z = args[0]  # [rows, P, H * e]
                        for h in range(H):
                            z[L * H + h, :, h * e:(h + 1) * e] = clean[L][0, :, h * e:(h + 1) * e]
                    handles.append(self.layers[L].self_attn.o_proj.register_forward_pre_hook(patch))
                try:
                    grid = self._run(batch).reshape(n, H)
                finally:
                    for hd in handles:
                        hd.remove()
            return {"grid": grid.tolist()}
        return measured(run)


# ==== TransformerLens =============================================================================
def tl_config(hf_config):
    """HookedTransformerConfig for a Llama-architecture transformers config, written out by hand."""
    from transformer_lens import HookedTransformerConfig

    rope = getattr(hf_config, "rope_parameters", None) or {}
    theta = rope.get("rope_theta", getattr(hf_config, "rope_theta", 10000.0))
    n_kv = hf_config.num_key_value_heads
    return HookedTransformerConfig(
        model_name="smollm2-135m-gguf",
        original_architecture="LlamaForCausalLM",
        d_model=hf_config.hidden_size,
        d_head=hf_config.hidden_size // hf_config.num_attention_heads,
        n_heads=hf_config.num_attention_heads,
        n_key_value_heads=n_kv if n_kv != hf_config.num_attention_heads else None,
        d_mlp=hf_config.intermediate_size,
        n_layers=hf_config.num_hidden_layers,
        n_ctx=hf_config.max_position_embeddings,
        eps=hf_config.rms_norm_eps,
        d_vocab=hf_config.vocab_size,
        act_fn=hf_config.hidden_act,
        normalization_type="RMS",
        positional_embedding_type="rotary",
        rotary_adjacent_pairs=False,  # transformers' GGUF reader un-permutes Q/K to the rotate-half layout
        rotary_dim=hf_config.hidden_size // hf_config.num_attention_heads,
        rotary_base=theta,
        final_rms=True,
        gated_mlp=True,
        tie_word_embeddings=bool(getattr(hf_config, "tie_word_embeddings", False)),
        default_prepend_bos=False,
        dtype=torch.float32,
        device="cpu",
    )


class TLPeer:
    """TransformerLens' HookedTransformer: its own patching functions, batched by hand, attribution, DLA."""

    TASKS = ("setup", "forward", "resid_own", "resid_batched", "head_own", "head_batched", "attrib", "dla")

    def __init__(self) -> None:
        self.model = None

    def setup(self, req: dict) -> dict:
        from transformer_lens import HookedTransformer
        from transformer_lens.pretrained.weight_conversions.llama import convert_llama_weights

        t0 = time.perf_counter()
        hf = load_hf()
        cfg = tl_config(hf.config)
        model = HookedTransformer(cfg)
        with torch.no_grad():
            state = convert_llama_weights(hf, cfg)
            model.load_and_process_state_dict(state, fold_ln=False, center_writing_weights=False,
                                              center_unembed=False, fold_value_biases=False)
        model.eval()
        load = time.perf_counter() - t0
        self.model = model
        self.task = t = Task(req)
        with torch.inference_mode():
            hf_logits = hf(t.clean, use_cache=False).logits[0]
            tl_logits = model(t.clean)[0]
            corr_logits = model(t.corrupted)
        del hf, state
        self.clean_ld = float(tl_logits[-1, t.correct] - tl_logits[-1, t.wrong])
        self.corr_ld = float(_ld(corr_logits, t.correct, t.wrong)[0])
        return {
            "load_seconds": load,
            "versions": {"transformer_lens": _version("transformer_lens"), "torch": torch.__version__,
                         "threads": torch.get_num_threads()},
            "processing": "no weight processing (fold_ln, center_writing_weights, center_unembed off)",
            "tl_vs_hf_max_abs_logit": float((tl_logits - hf_logits).abs().max()),
            "clean_ld": self.clean_ld,
            "corrupted_ld": self.corr_ld,
            "last_logits": tl_logits[-1].tolist(),
        }

    def forward(self, req: dict) -> dict:
        times, cpu = [], []
        with torch.inference_mode():
            for _ in range(int(req.get("reps", 5))):
                c0, t0 = time.process_time(), time.perf_counter()
                self.model(self.task.clean)
                times.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
        return {"times": times, "cpu": cpu}

    def _metric_fn(self):
        t, clean, corr = self.task, self.clean_ld, self.corr_ld

        def metric(logits: torch.Tensor) -> torch.Tensor:  # TL's patching calls .item() on a scalar
            ld = logits[0, -1, t.correct] - logits[0, -1, t.wrong]
            return (ld - corr) / (clean - corr)
        return metric

    def _batched_metric(self, logits: torch.Tensor) -> np.ndarray:
        ld = _ld(logits, self.task.correct, self.task.wrong).double().numpy()
        return normalise(ld, self.clean_ld, self.corr_ld)

    # -- TL's own patching functions (transformer_lens.patching), grad off as in TL's demos
    def resid_own(self, req: dict) -> dict:
        from transformer_lens import patching

        def run():
            with torch.no_grad():
                _, cache = self.model.run_with_cache(self.task.clean)
                grid = patching.get_act_patch_resid_pre(self.model, self.task.corrupted, cache, self._metric_fn())
            return {"grid": grid.double().tolist()}
        return measured(run)

    def head_own(self, req: dict) -> dict:
        from transformer_lens import patching

        def run():
            with torch.no_grad():
                _, cache = self.model.run_with_cache(self.task.clean)
                grid = patching.get_act_patch_attn_head_out_all_pos(
                    self.model, self.task.corrupted, cache, self._metric_fn())
            return {"grid": grid.double().tolist()}
        return measured(run)

    # -- batched by hand: every patched run is one row of a single run_with_hooks
    def resid_batched(self, req: dict) -> dict:
        def run():
            m, n, P = self.model, self.model.cfg.n_layers, self.task.n_pos
            with torch.inference_mode():
                names = [f"blocks.{L}.hook_resid_pre" for L in range(n)]
                _, cache = m.run_with_cache(self.task.clean, names_filter=lambda nm: nm in names)
                pos = torch.arange(P)
                hooks = []
                for L in range(n):
                    clean_L, rows = cache[names[L]][0], L * P + pos
                    def patch(act, hook, clean_L=clean_L, rows=rows):
                        act[rows, pos] = clean_L[pos]
                        return act
                    hooks.append((names[L], patch))
                logits = m.run_with_hooks(self.task.corrupted.repeat(n * P, 1), fwd_hooks=hooks)
                grid = self._batched_metric(logits).reshape(n, P)
            return {"grid": grid.tolist()}
        return measured(run)

    def head_batched(self, req: dict) -> dict:
        def run():
            m, n, H = self.model, self.model.cfg.n_layers, self.model.cfg.n_heads
            with torch.inference_mode():
                names = [f"blocks.{L}.attn.hook_z" for L in range(n)]
                _, cache = m.run_with_cache(self.task.clean, names_filter=lambda nm: nm in names)
                heads = torch.arange(H)
                hooks = []
                for L in range(n):
                    clean_L, rows = cache[names[L]][0], L * H + heads  # [P, H, e]
                    def patch(act, hook, clean_L=clean_L, rows=rows):  # act [rows, P, H, e]
                        act[rows, :, heads] = clean_L.permute(1, 0, 2)
                        return act
                    hooks.append((names[L], patch))
                logits = m.run_with_hooks(self.task.corrupted.repeat(n * H, 1), fwd_hooks=hooks)
                grid = self._batched_metric(logits).reshape(n, H)
            return {"grid": grid.tolist()}
        return measured(run)

    # -- attribution patching: (clean - corrupted) activation x gradient of the metric at corrupted
    def attrib(self, req: dict) -> dict:
        from transformer_lens import ActivationCache

        def run():
            m, n = self.model, self.model.cfg.n_layers
            want = lambda nm: nm.endswith("hook_resid_pre") or nm.endswith("attn.hook_z")  # noqa: E731
            with torch.no_grad():
                _, clean_cache = m.run_with_cache(self.task.clean, names_filter=want)
            # the standard recipe: forward hooks cache activations, backward hooks cache their gradients
            acts, grads = {}, {}
            m.reset_hooks()

            def fwd(act, hook):
                acts[hook.name] = act.detach()

            def bwd(grad, hook):
                grads[hook.name] = grad.detach()
            m.add_hook(want, fwd, "fwd")
            m.add_hook(want, bwd, "bwd")
            try:
                value = self._metric_fn()(m(self.task.corrupted))
                value.backward()
            finally:
                m.reset_hooks()
                m.zero_grad(set_to_none=True)
            corr_cache, grad_cache = ActivationCache(acts, m), ActivationCache(grads, m)
            resid = torch.stack([
                ((clean_cache[f"blocks.{L}.hook_resid_pre"] - corr_cache[f"blocks.{L}.hook_resid_pre"])
                 * grad_cache[f"blocks.{L}.hook_resid_pre"]).sum(-1)[0] for L in range(n)])  # [L, P]
            z = torch.stack([
                ((clean_cache[f"blocks.{L}.attn.hook_z"] - corr_cache[f"blocks.{L}.attn.hook_z"])
                 * grad_cache[f"blocks.{L}.attn.hook_z"]).sum((-1, 1))[0] for L in range(n)])  # [L, H]
            return {"resid": resid.double().tolist(), "z": z.double().tolist()}
        return measured(run)

    # -- direct logit attribution of the clean run onto the logit-difference direction
    def dla(self, req: dict) -> dict:
        def run():
            m, t = self.model, self.task
            with torch.no_grad():
                logits, cache = m.run_with_cache(t.clean)
                # W_U columns; ln_final.w is not folded into W_U (no weight processing), so apply it here
                direction = (m.W_U[:, t.correct] - m.W_U[:, t.wrong]) * m.ln_final.w
                heads = cache.stack_head_results(layer=-1, pos_slice=-1, apply_ln=True)  # [L*H, 1, d]
                per_head = (heads[:, 0] @ direction).reshape(m.cfg.n_layers, m.cfg.n_heads)
                comps, labels = cache.decompose_resid(layer=-1, pos_slice=-1, apply_ln=True, return_labels=True)
                per_comp = comps[:, 0] @ direction  # embed, 0_attn_out, 0_mlp_out, ...
                total = float(logits[0, -1, t.correct] - logits[0, -1, t.wrong])
            return {"heads": per_head.double().tolist(), "components": per_comp.double().tolist(),
                    "labels": labels, "logit_diff": total}
        return measured(run)


def _version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)


def main() -> None:
    which = sys.argv[1] if len(sys.argv) > 1 else "torch"
    torch.manual_seed(0)
    if os.environ.get("BENCH_TORCH_THREADS"):
        torch.set_num_threads(int(os.environ["BENCH_TORCH_THREADS"]))
    peer = TorchPeer() if which == "torch" else TLPeer()
    serve({name: getattr(peer, name) for name in peer.TASKS})


if __name__ == "__main__":
    main()
