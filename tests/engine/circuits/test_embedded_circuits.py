"""Circuits on the embedded SmolLM2-135M: graph size, split-forward parity, one patched edge against the
hand-written forward, and EAP-IG beating random circuits on IOI (kept small: the full figures are in
tests/bench/bench_circuits.py)."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from engine.circuits import CircuitTask, compare_methods, eap_ig, graph_of
from engine.circuits.forward import patched_logits, prepare_runs, split_model
from orchestrator.families import ioi_pairs
from tests.engine.circuits.handwritten import handwritten_forward

pytestmark = pytest.mark.embedded


@pytest.fixture(scope="module")
def ioi(embedded):
    return CircuitTask.from_pairs(embedded, ioi_pairs(4, seed=3))


def test_graph_of_the_embedded_model(embedded):
    g = graph_of(embedded)
    assert (g.n_nodes, g.n_receivers, g.n_edges) == (302, 481, 70651)


def test_split_forward_parity_and_one_patched_edge(embedded, ioi):
    task = ioi.subset([0])
    g = graph_of(embedded)
    sm = split_model(embedded)
    runs = prepare_runs(sm, task)
    plain = embedded.forward(task.clean)[:, -1]
    assert float(mx.abs(runs.clean_logits - plain).max()) <= 1e-4
    edge = "a10.h3->a20.kv1<v>"
    _, clean = handwritten_forward(embedded, task.clean)
    _, corrupt = handwritten_forward(embedded, task.corrupted)
    expected, _ = handwritten_forward(embedded, task.clean, shift=("a20.kv1<v>", clean["a10.h3"] - corrupt["a10.h3"]))
    keep = np.ones(g.n_edges, bool)
    keep[g.edge_ids([edge])] = False
    masks = np.stack([np.ones(g.n_edges, bool), keep, np.zeros(g.n_edges, bool)])
    out = patched_logits(sm, mx.array(g.to_dense(masks.astype(np.float32))), runs.clean_embeds, runs.ablated)
    assert float(mx.abs(out[0] - plain).max()) <= 1e-4
    assert float(mx.abs(out[1] - expected).max()) <= 2e-4
    assert float(mx.abs(out[2] - embedded.forward(task.corrupted)[:, -1]).max()) <= 1e-4


def test_eap_ig_beats_random_on_ioi(embedded, ioi):
    scores = eap_ig(embedded, ioi, steps=2)
    cmp = compare_methods(embedded, ioi, {"eap-ig": scores}, percentages=(0.02, 0.2, 1.0))
    assert cmp.get("eap-ig").cpr > cmp.get("random").cpr + 0.1
    assert cmp.get("eap-ig").cmd < cmp.get("random").cmd
