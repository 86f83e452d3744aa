"""The planted-circuit model: loads like any mlx-lm directory, does its task, and its circuit is
recovered by EAP-IG (>= 90% of the planted edges, <= 10% false, faithfulness >= 0.9) and by ACDC."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

import engine
from engine.circuits import CircuitTask, acdc, build_planted_model, eap, eap_ig, faithfulness, graph_of, select_circuit


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    built = build_planted_model(tmp_path_factory.mktemp("planted") / "colour-lookup")
    model = engine.load_model(str(built.path))
    task = CircuitTask.from_pairs(model, built.pairs(48, seed=0))
    return built, model, task


def _recovery(edges: list[str], planted: tuple[str, ...]) -> tuple[float, float]:
    got, truth = set(edges), set(planted)
    return len(got & truth) / len(truth), len(got - truth) / max(1, len(got))


def test_it_is_an_ordinary_mlx_lm_directory(planted):
    built, model, task = planted
    assert {p.name for p in built.path.iterdir()} == {"config.json", "model.safetensors", "tokenizer.json"}
    from mlx_lm import load

    native, _ = load(str(built.path))
    assert float(mx.abs(native(task.clean)[:, -1] - model.forward(task.clean)[:, -1]).max()) <= 1e-5
    assert model.to_str_tokens("f0 r3 f1 b5 f2 cr") == ["f0", "r3", "f1", "b5", "f2", "cr"]


def test_it_does_the_task(planted):
    _, model, task = planted
    logits = model.forward(task.clean)[:, -1]
    assert np.array_equal(np.asarray(mx.argmax(logits, axis=-1)), np.array(task.correct_ids))
    assert float(task.metric_values(logits).min()) > 2.0  # confident on every pair
    assert float(task.metric_values(model.forward(task.corrupted)[:, -1]).max()) < -2.0  # flipped by each corruption


def test_planted_edges_are_the_circuit(planted):
    built, model, task = planted
    mask = graph_of(model).mask_from_names(list(built.planted_edges))
    assert faithfulness(model, task, mask[None])[0] >= 0.95


def test_eap_ig_recovers_the_planted_circuit(planted):
    built, model, task = planted
    circuit = select_circuit(eap_ig(model, task, steps=8), size=len(built.planted_edges))
    recall, false = _recovery(circuit.edges, built.planted_edges)
    assert recall >= 0.9 and false <= 0.1
    assert faithfulness(model, task, circuit.mask()[None])[0] >= 0.9


def test_eap_misses_the_saturated_mover(planted):
    """Why EAP-IG: the mover's attention is saturated, so the clean-run gradient barely sees its inputs."""
    built, model, task = planted
    circuit = select_circuit(eap(model, task), size=len(built.planted_edges))
    assert _recovery(circuit.edges, built.planted_edges)[0] < 0.9


@pytest.mark.parametrize("loss,threshold", [("metric", 0.3), ("kl", 0.05)])
def test_acdc_recovers_the_planted_circuit(planted, loss, threshold):
    built, model, task = planted
    res = acdc(model, task, threshold=threshold, loss=loss)
    recall, false = _recovery(res.circuit.edges, built.planted_edges)
    assert recall >= 0.9 and false <= 0.1

