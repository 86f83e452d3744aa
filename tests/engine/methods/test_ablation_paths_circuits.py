"""Ablations, path patching and circuit checks against references built from plain hooks."""

from __future__ import annotations

import json

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten, tree_unflatten

from engine import metrics
from engine.errors import ComponentError, MethodError
from engine.interventions import Ablate, Patch
from engine.methods import (AblationResult, CircuitResult, PathPatchingResult, ablate, ablation_sweep,
                            activation_patching, circuit_check, parse_component, path_patching)
from engine.methods.components import Head, MLP
from tests.engine.tiny import random_tokens, tiny_model


def _ld(logits, correct, wrong) -> float:
    return float(metrics.logit_diff(logits, correct, wrong).mean().item())


# ---- ablations ------------------------------------------------------------------------------
@pytest.mark.parametrize("over", ["heads", "mlps", "attn", "positions"])
@pytest.mark.parametrize("mode", ["zero", "mean", "resample"])
def test_sweep_equals_one_ablation_per_component(tiny, over, mode):
    tokens, ref = random_tokens(tiny, 3, 6, seed=1), random_tokens(tiny, 5, 6, seed=2)
    correct, wrong = [1, 2, 3], [4, 5, 6]
    sweep = ablation_sweep(tiny, tokens, correct, wrong, over=over, mode=mode, reference_tokens=ref, seed=3)
    raw = np.asarray(sweep.raw)
    hook = {"heads": "attn.hook_z", "mlps": "hook_mlp_out", "attn": "hook_attn_out", "positions": "hook_resid_pre"}[over]
    for ix in np.ndindex(*raw.shape):
        layer = ix[0]
        name = f"blocks.{layer}.{hook}"
        iv = Ablate(hook=name, mode=mode, seed=3, heads=[ix[1]] if over == "heads" else None,
                    positions=[ix[1]] if over == "positions" else None)
        _, ref_cache = tiny.run_with_cache(ref, names=[name])
        expected = _ld(tiny.run_with_hooks(tokens, [iv], reference=ref_cache), correct, wrong)
        assert abs(raw[ix] - expected) < 1e-4, (ix, raw[ix], expected)
    np.testing.assert_allclose(sweep.grid(), raw - sweep.baseline, atol=1e-9)


def test_ablate_set_and_patch_mode(tiny, tiny_pairs):
    clean, corrupted, correct, wrong = tiny_pairs
    res = ablate(tiny, clean, ["L1H2", "L1H0", MLP(layer=2)], "zero", correct_ids=correct, wrong_ids=wrong, positions=[-1])
    ivs = [Ablate(hook="blocks.2.hook_mlp_out", positions=[-1]), Ablate(hook="blocks.1.attn.hook_z", heads=[0, 2], positions=[-1])]
    assert abs(res.ablated - _ld(tiny.run_with_hooks(mx.array(clean), ivs), correct, wrong)) < 1e-5
    assert abs(res.baseline - _ld(tiny.forward(mx.array(clean)), correct, wrong)) < 1e-5
    assert res.components == ["L1H2", "L1H0", "MLP2"] and len(res.interventions) == 2
    assert AblationResult.model_validate(json.loads(res.to_json())) == res
    # 'patch' ablation of one head from the paired corrupted prompt = noising activation patching of that head
    one = ablate(tiny, clean, ["L1H2"], "patch", corrupted, correct_ids=correct, wrong_ids=wrong)
    sweep = activation_patching(tiny, clean, corrupted, correct, wrong, hook="z", direction="noise")
    assert abs(one.ablated - np.asarray(sweep.raw)[1, 2]) < 1e-4


def test_ablation_errors(tiny, tiny_pairs):
    clean, _, correct, wrong = tiny_pairs
    with pytest.raises(MethodError, match="needs reference_tokens"):
        ablate(tiny, clean, ["L0H0"], "mean", correct_ids=correct, wrong_ids=wrong)
    with pytest.raises(ComponentError, match="head 9 does not exist"):
        ablate(tiny, clean, ["L0H9"], correct_ids=correct, wrong_ids=wrong)
    with pytest.raises(ComponentError, match="cannot read component"):
        parse_component("head 3 of layer 2")
    with pytest.raises(MethodError, match="cannot sweep over"):
        ablation_sweep(tiny, clean, correct, wrong, over="neurons")


# ---- circuit check --------------------------------------------------------------------------
def test_circuit_check_against_plain_patches(tiny, tiny_pairs):
    clean, corrupted, correct, wrong = tiny_pairs
    ct, bt = mx.array(clean), mx.array(corrupted)
    res = circuit_check(tiny, clean, corrupted, ["L1H2", "MLP2"], correct, wrong)
    names = [f"blocks.{l}.{h}" for l in range(3) for h in ("attn.hook_z", "hook_mlp_out")]
    _, src = tiny.run_with_cache(bt, names=names)
    c, b = _ld(tiny.forward(ct), correct, wrong), _ld(tiny.forward(bt), correct, wrong)
    without = _ld(tiny.run_with_hooks(ct, [Patch(hook="blocks.1.attn.hook_z", heads=[2]), Patch(hook="blocks.2.hook_mlp_out")], source=src), correct, wrong)
    rest = [Patch(hook=f"blocks.{l}.attn.hook_z", heads=[h for h in range(4) if (l, h) != (1, 2)]) for l in range(3)]
    rest += [Patch(hook=f"blocks.{l}.hook_mlp_out") for l in range(2)]
    only = _ld(tiny.run_with_hooks(ct, rest, source=src), correct, wrong)
    assert abs(res.necessity - (1 - (without - b) / (c - b))) < 1e-4
    assert abs(res.sufficiency - (only - b) / (c - b)) < 1e-4
    assert res.n_complement == 3 * 4 + 3 - 2
    assert CircuitResult.model_validate(json.loads(res.to_json())) == res


def test_circuit_extremes(tiny, tiny_pairs):
    clean, corrupted, correct, wrong = tiny_pairs
    empty = circuit_check(tiny, clean, corrupted, [], correct, wrong)
    assert abs(empty.necessity) < 1e-6
    everything = circuit_check(tiny, clean, corrupted, [f"ATTN{l}" for l in range(3)] + [f"MLP{l}" for l in range(3)], correct, wrong)
    assert abs(everything.sufficiency - 1.0) < 1e-6 and everything.n_complement == 0
    assert abs(everything.necessity - 1.0) < 1e-4  # every output from the corrupted run: the corrupted final residual
    for mode in ("mean", "resample", "zero"):
        res = circuit_check(tiny, clean, corrupted, ["L2H1"], correct, wrong, mode=mode)
        assert np.isfinite([res.necessity, res.sufficiency]).all() and res.mode == mode


# ---- path patching --------------------------------------------------------------------------
def _mha_copy(gqa):
    """The same model with each query head given its own copy of its key/value head (GQA -> MHA)."""
    cfg = gqa.cfg
    rep, e = cfg.n_heads // cfg.n_kv_heads, cfg.d_head
    mha = tiny_model(0, num_key_value_heads=cfg.n_heads)
    params = dict(tree_flatten(gqa.model.parameters()))
    for name in list(params):
        if name.endswith(("k_proj.weight", "v_proj.weight")):
            w = np.asarray(params[name]).reshape(cfg.n_kv_heads, e, -1)
            params[name] = mx.array(np.repeat(w, rep, axis=0).reshape(cfg.n_heads * e, -1))
    mha.model.update(tree_unflatten(list(params.items())))
    return mha


def _reference_path(model, clean, corrupted, sender, receivers, inputs, correct, wrong):
    """Two plain runs (MHA only): (A) base run with the sender's delta added to the receivers' layer input,
    recording q/k/v; (B) base run with the receivers' q/k/v (chosen inputs) replaced by A's."""
    ct, bt = mx.array(clean), mx.array(corrupted)
    (ls, hs), layer = sender, receivers[0][0]
    e = model.cfg.d_head
    zname = f"blocks.{ls}.attn.hook_z"
    _, zc = model.run_with_cache(ct, names=[zname])
    _, zb = model.run_with_cache(bt, names=[zname])
    w_o = model.model.model.layers[ls].self_attn.o_proj.weight[:, hs * e : (hs + 1) * e]  # [d, e]
    delta = (zc[zname][:, :, hs] - zb[zname][:, :, hs]) @ w_o.T
    names = [f"blocks.{layer}.attn.hook_{i}" for i in inputs]
    moved = {}

    def add(act, name):
        return act + delta

    def grab(act, name):
        moved[name] = act

    model.run_with_hooks(bt, fwd_hooks=[(f"blocks.{layer}.hook_resid_pre", add)] + [(n, grab) for n in names])

    def put(act, name):
        heads = [h for (_, h) in receivers]
        mask = np.zeros((1, 1, act.shape[2], 1), dtype=bool)
        mask[0, 0, heads] = True
        return mx.where(mx.array(mask), moved[name], act)

    out = model.run_with_hooks(bt, fwd_hooks=[(n, put) for n in names])
    c, b = _ld(model.forward(ct), correct, wrong), _ld(model.forward(bt), correct, wrong)
    return (_ld(out, correct, wrong) - b) / (c - b)


@pytest.mark.parametrize("inputs", [["q"], ["k"], ["v"], ["k", "v"], ["q", "k", "v"]])
def test_path_patching_equals_two_run_reference(tiny, tiny_pairs, inputs):
    clean, corrupted, correct, wrong = tiny_pairs
    mha = _mha_copy(tiny)
    receivers = [(2, 0), (2, 3)]
    ref = _reference_path(mha, clean, corrupted, (0, 1), receivers, inputs, correct, wrong)
    for model in (mha, tiny):  # GQA: the receiver's own key/value only, not its kv-group neighbours'
        res = path_patching(model, clean, corrupted, "L0H1", ["L2H0", (2, 3)], correct, wrong, receiver_input=inputs)
        assert abs(res.value - ref) < 1e-4, (inputs, res.value, ref)
    single = _reference_path(mha, clean, corrupted, (0, 1), [(2, 3)], inputs, correct, wrong)
    assert abs(res.per_receiver[1] - single) < 1e-4
    assert PathPatchingResult.model_validate(json.loads(res.to_json())) == res


def test_path_patching_errors(tiny, tiny_pairs):
    clean, corrupted, correct, wrong = tiny_pairs
    with pytest.raises(MethodError, match="not after the sender"):
        path_patching(tiny, clean, corrupted, "L1H0", ["L1H2"], correct, wrong)
    with pytest.raises(MethodError, match="receiver_input"):
        path_patching(tiny, clean, corrupted, "L0H0", ["L1H2"], correct, wrong, receiver_input="o")
    with pytest.raises(MethodError, match="must be a head"):
        path_patching(tiny, clean, corrupted, "MLP0", ["L1H2"], correct, wrong)
    assert Head(layer=1, head=2).label == "L1H2" and str(parse_component("mlp3")) == "MLP3"


@pytest.mark.embedded
def test_embedded_head_ablation_sweep_subset(embedded, eiffel):
    clean, corrupted, correct, wrong = eiffel
    sweep = ablation_sweep(embedded, clean, correct, wrong, over="heads", mode="mean", reference_tokens=corrupted, layers=[4, 23])
    raw = np.asarray(sweep.raw)
    for i, layer in enumerate([4, 23]):
        for head in (0, 4):
            one = ablate(embedded, clean, [f"L{layer}H{head}"], "mean", corrupted, correct_ids=correct, wrong_ids=wrong)
            assert abs(raw[i, head] - one.ablated) < 1e-4


@pytest.mark.embedded
def test_embedded_path_and_circuit_run(embedded, eiffel):
    clean, corrupted, correct, wrong = eiffel
    path = path_patching(embedded, clean, corrupted, "L3H4", ["L23H4", "L23H5"], correct, wrong, receiver_input="v")
    assert np.isfinite(path.value) and len(path.per_receiver) == 2
    res = circuit_check(embedded, clean, corrupted, ["L23H4", "L23H5", "MLP25"], correct, wrong)
    assert 0.0 <= res.n_complement and np.isfinite([res.necessity, res.sufficiency]).all()
