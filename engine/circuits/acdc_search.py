"""ACDC (Conmy et al. 2023), the slow reference: one patched forward per edge considered.

Start from the full graph; visit receivers from the logits backwards (logits, then per layer from
the last: the MLP input, then the attention inputs). For each receiver whose node still reaches the
logits, try removing each incoming edge (latest sender first): if the loss rises by less than
``threshold`` the edge stays removed. Loss: "kl" = KL(full model || circuit) at the metric position,
or "metric" = minus the task metric. Every trial is one patched forward of all pairs, and starts at
the receiver's layer: all edges into earlier layers are still intact when a receiver is visited, so
the layers before it are the clean run's, computed once.
"""

from __future__ import annotations

import time

import mlx.core as mx
import numpy as np

from engine.circuits.forward import clean_prefix, patched_logits, prepare_runs, split_model
from engine.circuits.graph import CircuitError, CircuitGraph
from engine.circuits.results import ACDCResult
from engine.circuits.selection import circuit_from_mask
from engine.circuits.stability import bootstrap_by_rerun
from engine.circuits.task import CircuitTask


def acdc_order(graph: CircuitGraph) -> list[int]:
    """Receivers in ACDC's visiting order (reverse topological)."""
    order = [graph.logits_receiver]
    for layer in reversed(range(graph.n_layers)):
        base = graph.attn_receiver_base(layer)
        order.append(graph.mlp_receiver(layer))
        order.extend(reversed(range(base, base + graph.attn_receivers)))
    return order


def _receiver_alive(graph: CircuitGraph, dense: np.ndarray, alive_recv: np.ndarray, r: int) -> bool:
    """Does the node reading receiver r still reach the logits through kept edges?"""
    if r == graph.logits_receiver:
        return True
    layer, local = divmod(r, graph.per_layer_receivers)
    if local == graph.attn_receivers:
        senders = [graph.mlp_sender(layer)]
    elif local < graph.n_heads:
        senders = [graph.head_sender(layer, local)]
    else:
        g = (local - graph.n_heads) % graph.n_kv_heads
        senders = [graph.head_sender(layer, h) for h in range(g * graph.group, (g + 1) * graph.group)]
    return bool((dense[senders] & alive_recv[None, :]).any())


def acdc(
    model,
    task: CircuitTask,
    *,
    threshold: float,
    loss: str = "kl",
    max_edges: int | None = None,
    receivers: list[str] | None = None,
    bootstrap: int | None = None,
    seed: int = 0,
) -> ACDCResult:
    """ACDC circuit: edges whose removal moves the loss by less than ``threshold`` are removed.

    ``max_edges`` stops after that many trials (the rest stay in the circuit); ``receivers`` (names
    such as 'logits', 'm29', 'a29.h3<q>') restricts the trials to those inputs. Both make a
    budget-limited run on a large model; the result says whether the budget ran out.
    ``bootstrap`` (>= 100) reruns ACDC on that many seeded resamples of the pairs for the circuit's
    stability: affordable on small models only (each rerun costs as much as the run).
    """
    if loss not in ("kl", "metric"):
        raise CircuitError(f"unknown ACDC loss {loss!r}; use 'kl' or 'metric'")
    t0 = time.perf_counter()
    sm = split_model(model)
    graph = sm.graph
    runs = prepare_runs(sm, task)
    ref_logp = runs.clean_logits - mx.logsumexp(runs.clean_logits, axis=-1, keepdims=True)  # [N, v]

    def loss_of(logits: mx.array) -> float:  # logits [1, N, v]
        if loss == "metric":
            return -float(task.metric_values(logits[0]).mean())
        logq = logits[0] - mx.logsumexp(logits[0], axis=-1, keepdims=True)
        return float(mx.sum(mx.exp(ref_logp) * (ref_logp - logq), axis=-1).mean())

    allowed = None
    if receivers is not None:
        names = {n: i for i, n in enumerate(graph.receiver_names)}
        unknown = [r for r in receivers if r not in names]
        if unknown:
            raise CircuitError(f"unknown receiver(s) {unknown[:3]}; receivers are named like 'logits', 'm3', "
                               "'a3.h1<q>', 'a3.kv0<k>', 'a3.kv0<v>'")
        allowed = {names[r] for r in receivers}
    dense = graph.valid.copy()  # [S, R] edges still in the circuit
    delta = np.full((graph.n_senders, graph.n_receivers), np.nan)  # loss change when each edge was tried
    alive_recv = np.zeros(graph.n_receivers, dtype=bool)
    current = loss_of(runs.clean_logits[None])
    prefixes: dict[int, mx.array] = {}
    considered = forwards = 0
    exhausted = False
    for r in acdc_order(graph):
        alive_recv[r] = _receiver_alive(graph, dense, alive_recv, r)
        if not alive_recv[r] or (allowed is not None and r not in allowed):
            continue
        layer = graph.n_layers if r == graph.logits_receiver else r // graph.per_layer_receivers
        if layer < graph.n_layers and layer not in prefixes:
            prefixes = {layer: clean_prefix(sm, runs.clean_stack, runs.ablated, layer)}  # one layer at a time
        for s in reversed(range(int(graph.n_up[r]))):
            if max_edges is not None and considered >= max_edges:
                exhausted = True
                break
            dense[s, r] = False
            masks = mx.array(dense[None].astype(np.float32))
            if layer < graph.n_layers:
                logits = patched_logits(sm, masks, runs.clean_embeds, runs.ablated, position=task.position,
                                        start_layer=layer, prefix=prefixes[layer])
            else:
                logits = _logits_only(sm, masks, runs, task.position)
            trial = loss_of(logits)
            considered += 1
            forwards += task.n
            delta[s, r] = trial - current
            if trial - current < threshold:
                current = trial
            else:
                dense[s, r] = True
        if exhausted:
            break
    kept = graph.prune(graph.to_edges(dense))
    scores = graph.to_edges(delta)
    circuit = circuit_from_mask(graph, kept, model=model.cfg.name, method="acdc", scores=scores,
                                ablation=task.ablation)
    runtime = time.perf_counter() - t0  # the search itself; the optional bootstrap reruns come on top
    if bootstrap:

        def rerun(rows: np.ndarray) -> np.ndarray:
            return acdc(model, task.subset(rows), threshold=threshold, loss=loss, max_edges=max_edges,
                        receivers=receivers).circuit.mask()

        circuit = circuit.model_copy(update={"stability": bootstrap_by_rerun(rerun, task.n, kept,
                                                                              n_resamples=bootstrap, seed=seed)})
    return ACDCResult(
        circuit=circuit, threshold=threshold, loss=loss, final_loss=current, edges_considered=considered,
        edges_removed=int(graph.n_edges - graph.to_edges(dense).sum()), forwards=forwards, runtime_s=runtime,
        seconds_per_edge=runtime / max(1, considered), budget_exhausted=exhausted, restricted_to=receivers,
    )


def _logits_only(sm, masks: mx.array, runs, position: int) -> mx.array:
    """[1, N, v]: only the logits' input changes (every other receiver is intact): mix the clean senders."""
    graph = sm.graph
    N = runs.clean_embeds.shape[0]
    diff = (runs.clean_stack[:, :, position] - runs.ablated.stack[:, :, position])  # [S, n->N, d]
    diff = mx.broadcast_to(diff, (graph.n_senders, N, sm.d)).reshape(graph.n_senders, -1)
    x = runs.ablated.final[:, position] + (masks[0, :, graph.logits_receiver][None] @ diff).reshape(N, sm.d)
    return sm.logits(x)[None]
