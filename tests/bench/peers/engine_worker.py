"""The engine's side of the peer benchmark (MLX; never in a process with torch).

    LD_PRELOAD=<openblas> .venv/bin/python -m tests.bench.peers.engine_worker
answers the JSON-lines requests of tests/bench/bench_peers.py (see common.serve).

Each sweep has two implementations:
- "methods": the engine's own batched sweeps in engine.methods (activation_patching,
  attribution_patching, direct_logit_attribution), used whenever they are importable;
- "interim": a stand-in written against the public API only (run_with_cache / run_with_hooks):
  every patched run is one row of a single batched forward (no reuse of unchanged work), gradients
  with mx.value_and_grad through additive hooks, DLA from cached z / outputs. It is labelled as such
  in the report and kept as a reference point.
Same task and conventions as the torch peers: denoising, logit difference at the last position,
normalised (0 = corrupted, 1 = clean).
"""

from __future__ import annotations

import time

import mlx.core as mx
import numpy as np

from tests.bench.peers.common import measured, normalise, serve


def _methods(name: str):
    """engine.methods.<name>, or None while it does not exist (or does not import)."""
    try:
        import engine.methods as em

        return getattr(em, name)
    except Exception:  # noqa: BLE001 - absent or mid-edit: fall back to the interim
        return None


class EnginePeer:
    def __init__(self) -> None:
        self.model = None

    # ---- set-up -------------------------------------------------------------------------------
    def setup(self, req: dict) -> dict:
        import engine
        from engine.blas import blas_active

        t0 = time.perf_counter()
        self.model = m = engine.load_model("smollm2-135m")
        load = time.perf_counter() - t0
        self.clean = m.to_tokens(req["clean_text"])
        self.corrupted = m.to_tokens(req["corrupted_text"])
        self.correct, self.wrong = m.token_id(req["correct_text"]), m.token_id(req["wrong_text"])
        clean_logits = m.forward(self.clean)
        corr_logits = m.forward(self.corrupted)
        self.clean_ld = float(engine.metrics.logit_diff(clean_logits, self.correct, self.wrong)[0])
        self.corr_ld = float(engine.metrics.logit_diff(corr_logits, self.correct, self.wrong)[0])
        for _ in range(2):  # warm-up of both forwards
            mx.eval(m.model(self.clean), m.forward(self.clean))
        impls = {t: ("methods" if _methods(fn) else "interim") for t, fn in
                 (("resid_grid", "activation_patching"), ("head_grid", "activation_patching"),
                  ("attrib", "attribution_patching"), ("dla", "direct_logit_attribution"))}
        return {
            "load_seconds": load,
            "versions": {"mlx": _version("mlx"), "mlx_lm": _version("mlx-lm"), "openblas": blas_active()},
            "clean": self.clean[0].tolist(),
            "corrupted": self.corrupted[0].tolist(),
            "correct": self.correct,
            "wrong": self.wrong,
            "str_tokens": [m.to_str_tokens(req["clean_text"]), m.to_str_tokens(req["corrupted_text"])],
            "clean_ld": self.clean_ld,
            "corrupted_ld": self.corr_ld,
            "last_logits": np.array(clean_logits[0, -1]).tolist(),
            "impls": impls,
        }

    def forward(self, req: dict) -> dict:
        """Plain mlx-lm forward and the hooked forward with no hooks, alternated rep by rep."""
        plain, hooked, cpu_plain, cpu_hooked = [], [], [], []
        for _ in range(int(req.get("reps", 5))):
            for fn, out, cpu in ((lambda: self.model.model(self.clean), plain, cpu_plain),
                                 (lambda: self.model.forward(self.clean), hooked, cpu_hooked)):
                c0, t0 = time.process_time(), time.perf_counter()
                mx.eval(fn())
                out.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
        diff = float(mx.abs(self.model.model(self.clean) - self.model.forward(self.clean)).max())
        return {"times_plain": plain, "times_hooked": hooked, "cpu_plain": cpu_plain, "cpu_hooked": cpu_hooked,
                "hooked_vs_plain_max_abs": diff}

    # ---- sweeps -------------------------------------------------------------------------------
    def _measured(self, fn, impl: str) -> dict:
        mx.reset_peak_memory()
        out = measured(fn)
        out["mlx_peak"] = int(mx.get_peak_memory())
        out["impl"] = impl
        return out

    def _choose(self, req: dict, method: str):
        want = req.get("impl", "auto")
        fn = _methods(method) if want in ("auto", "methods") else None
        if want == "methods" and fn is None:
            raise RuntimeError(f"engine.methods.{method} is not available")
        return fn

    def resid_grid(self, req: dict) -> dict:
        return self._grid(req, "resid_pre")

    def head_grid(self, req: dict) -> dict:
        return self._grid(req, "z")

    def _grid(self, req: dict, hook: str) -> dict:
        fn = self._choose(req, "activation_patching")
        budget = req.get("memory_budget_gb")
        if fn is not None:
            kwargs = {"hook": hook}
            if budget is not None:
                kwargs["memory_budget_gb"] = budget

            def run():
                res = fn(self.model, self.clean, self.corrupted, self.correct, self.wrong, **kwargs)
                out = {"grid": res.grid().tolist()}
                for key in ("rows_computed", "rows_skipped"):
                    if hasattr(res, key):
                        out[key] = getattr(res, key)
                return out
            return self._measured(run, "methods")
        return self._measured(lambda: {"grid": self._interim_grid(hook).tolist()}, "interim")

    def _interim_grid(self, hook: str) -> np.ndarray:
        """Every patched run as one row of one batched forward through run_with_hooks."""
        import engine

        m = self.model
        n = m.cfg.n_layers
        P = self.clean.shape[1]
        local = "hook_resid_pre" if hook == "resid_pre" else "attn.hook_z"
        names = [f"blocks.{L}.{local}" for L in range(n)]
        _, cache = m.run_with_cache(self.clean, names=names, logit_positions=[-1])
        k = P if hook == "resid_pre" else m.cfg.n_heads  # cells per layer: positions or heads
        rows = n * k
        layer_of, cell_of = np.arange(rows) // k, np.arange(rows) % k
        hooks = []
        for L in range(n):
            if hook == "resid_pre":  # act [rows, P, d]: row (L, p) takes the clean residual at p
                sel = (layer_of[:, None] == L) & (np.arange(P)[None, :] == cell_of[:, None])
                mask = mx.array(sel[:, :, None])
            else:  # act [rows, P, H, e]: row (L, h) takes the clean z of head h at every position
                sel = (layer_of[:, None] == L) & (np.arange(k)[None, :] == cell_of[:, None])
                mask = mx.array(sel[:, None, :, None])
            src = cache[names[L]]
            hooks.append((names[L], lambda act, name, mask=mask, src=src: mx.where(mask, src, act)))
        batch = mx.broadcast_to(self.corrupted, (rows, P))
        logits = m.run_with_hooks(batch, fwd_hooks=hooks, logit_positions=[-1])
        ld = np.array(engine.metrics.logit_diff(logits, self.correct, self.wrong), dtype=np.float64)
        return normalise(ld, self.clean_ld, self.corr_ld).reshape(n, k)

    def attrib(self, req: dict) -> dict:
        fn = self._choose(req, "attribution_patching")
        if fn is not None:
            def run():
                out = {}
                for hook, key in (("resid_pre", "resid"), ("z", "z")):
                    res = fn(self.model, self.clean, self.corrupted, self.correct, self.wrong, hook=hook)
                    out[key] = res.grid().tolist()
                return out
            return self._measured(run, "methods")
        return self._measured(self._interim_attrib, "interim")

    def _interim_attrib(self) -> dict:
        """(clean - corrupted) x d metric / d activation at the corrupted run, for resid_pre and z."""
        import engine

        m = self.model
        n = m.cfg.n_layers
        resid_names = [f"blocks.{L}.hook_resid_pre" for L in range(n)]
        z_names = [f"blocks.{L}.attn.hook_z" for L in range(n)]
        _, clean = m.run_with_cache(self.clean, names=resid_names + z_names, logit_positions=[-1])
        _, corr = m.run_with_cache(self.corrupted, names=resid_names + z_names, logit_positions=[-1])
        clean_ld, corr_ld = self.clean_ld, self.corr_ld

        def metric(d_resid, d_z):
            hooks = [(resid_names[L], lambda a, _n, L=L: a + d_resid[L]) for L in range(n)]
            hooks += [(z_names[L], lambda a, _n, L=L: a + d_z[L]) for L in range(n)]
            logits = m.run_with_hooks(self.corrupted, fwd_hooks=hooks, logit_positions=[-1])
            ld = engine.metrics.logit_diff(logits, self.correct, self.wrong)[0]
            return (ld - corr_ld) / (clean_ld - corr_ld)

        d_resid = mx.zeros((n, *corr[resid_names[0]].shape))
        d_z = mx.zeros((n, *corr[z_names[0]].shape))
        g_resid, g_z = mx.grad(metric, argnums=(0, 1))(d_resid, d_z)
        resid = mx.stack([((clean[resid_names[L]] - corr[resid_names[L]]) * g_resid[L]).sum(-1)[0] for L in range(n)])
        z = mx.stack([((clean[z_names[L]] - corr[z_names[L]]) * g_z[L]).sum((1, 3))[0] for L in range(n)])
        return {"resid": np.array(resid, dtype=np.float64).tolist(), "z": np.array(z, dtype=np.float64).tolist()}

    def dla(self, req: dict) -> dict:
        fn = self._choose(req, "direct_logit_attribution")
        if fn is not None:
            def run():
                res = fn(self.model, self.clean, self.correct, self.wrong)
                return _dla_fields(res)
            return self._measured(run, "methods")
        return self._measured(self._interim_dla, "interim")

    def _interim_dla(self) -> dict:
        """Per-head and per-component contributions to the clean logit difference (final-norm scale applied)."""
        m = self.model
        cfg = m.cfg
        n, H, e = cfg.n_layers, cfg.n_heads, cfg.d_head
        names = ["hook_embed", "ln_final.hook_scale"]
        names += [f"blocks.{L}.{h}" for L in range(n) for h in ("attn.hook_z", "hook_attn_out", "hook_mlp_out")]
        logits, cache = m.run_with_cache(self.clean, names=names, logit_positions=[-1])
        w_u = m.adapter.unembed_matrix()  # [d, v]
        direction = (w_u[:, self.correct] - w_u[:, self.wrong]) * m.adapter.final_norm_weight()  # [d]
        scale = cache["ln_final.hook_scale"][0, -1]  # [1]
        heads = []
        for L in range(n):
            w_o = m.adapter.layers[L].self_attn.o_proj.weight.reshape(cfg.d_model, H, e)  # [d, h, e]
            z = cache[f"blocks.{L}.attn.hook_z"][0, -1]  # [h, e]
            heads.append(mx.einsum("he,dhe,d->h", z, w_o, direction))
        heads = mx.stack(heads) / scale  # [L, H]
        comps = [cache["hook_embed"][0, -1]]
        for L in range(n):
            comps += [cache[f"blocks.{L}.hook_attn_out"][0, -1], cache[f"blocks.{L}.hook_mlp_out"][0, -1]]
        per_comp = (mx.stack(comps) @ direction) / scale
        labels = ["embed"] + [f"{L}_{k}" for L in range(n) for k in ("attn_out", "mlp_out")]
        total = float(logits[0, -1, self.correct] - logits[0, -1, self.wrong])
        return {"heads": np.array(heads, dtype=np.float64).tolist(),
                "components": np.array(per_comp, dtype=np.float64).tolist(), "labels": labels, "logit_diff": total}


def _dla_fields(res) -> dict:
    """The engine's DLAResult in the peers' layout: heads [L][H]; components embed, 0_attn_out, 0_mlp_out, ..."""
    comps, labels = [res.embed], ["embed"]
    for layer, (a, m) in enumerate(zip(res.attn, res.mlp)):
        comps += [a, m]
        labels += [f"{layer}_attn_out", f"{layer}_mlp_out"]
    return {"heads": res.heads, "components": comps, "labels": labels, "logit_diff": res.total}


def _version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)


def main() -> None:
    peer = EnginePeer()
    handlers = {name: getattr(peer, name) for name in ("setup", "forward", "resid_grid", "head_grid", "attrib", "dla")}
    serve(handlers)


if __name__ == "__main__":
    main()
