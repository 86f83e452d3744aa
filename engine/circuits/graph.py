"""The computational graph of a Llama-family model, at the level of edges through the residual stream.

Nodes: the input embedding, every attention head, every MLP, and the logits. A node *sends* its
output into the residual stream (the embedding, one head's share of o_proj, the MLP output) and
*receives* through one or more inputs. Edges run from every upstream sender to every downstream
receiver, as in EAP / MIB.

Receivers (what a node reads; each gets its own residual sum and its own RMSNorm):
  a{L}.h{h}<q>    the query input of query head h (one per query head)
  a{L}.kv{g}<k>   the key input of key/value head g
  a{L}.kv{g}<v>   the value input of key/value head g
  m{L}            the MLP input
  logits          the final-norm input
Grouped-query attention: keys and values are computed once per key/value head, and query heads
g*r .. g*r+r-1 (r = n_heads / n_kv_heads) read them. We keep one k and one v input per kv head,
which is the model's real computation (a per-query-head split would invent r copies of a
projection that does not exist); the price is that an edge into a kv input is shared by the r
query heads of that group.

Indexing (the dense [n_senders, n_receivers] matrices every algorithm uses):
  senders:   0 = input; 1 + L*(H+1) + h = head (L, h); 1 + L*(H+1) + H = MLP L
  receivers: L*(H+2G+1) + h = q of head h; + H + g = k of kv head g; + H + G + g = v; + H + 2G = MLP L;
             n_layers*(H+2G+1) = logits
  edge (s, r) exists iff s < n_up[r] (the sender is upstream of the receiver).
Edges are enumerated in row-major order of that matrix (sender-major), which is the order of every
per-edge list in the results. Kept free of mlx so results can be read anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from engine.errors import EngineError


class CircuitError(EngineError, ValueError):
    """A circuit, edge name or score array that does not fit the model's graph."""


@dataclass(frozen=True)
class CircuitGraph:
    """Edge-level graph of a model with ``n_layers`` layers of ``n_heads`` query / ``n_kv_heads`` kv heads."""

    n_layers: int
    n_heads: int
    n_kv_heads: int

    def __post_init__(self) -> None:
        if self.n_heads % self.n_kv_heads:
            raise CircuitError(f"n_heads ({self.n_heads}) must be a multiple of n_kv_heads ({self.n_kv_heads})")

    @classmethod
    def from_config(cls, cfg) -> "CircuitGraph":
        """From an engine ModelConfig (or anything with n_layers, n_heads, n_kv_heads)."""
        return cls(int(cfg.n_layers), int(cfg.n_heads), int(cfg.n_kv_heads))

    # ---- sizes ----------------------------------------------------------------------------
    @property
    def group(self) -> int:
        """Query heads per kv head."""
        return self.n_heads // self.n_kv_heads

    @property
    def attn_receivers(self) -> int:
        """Receivers of one attention layer: H queries, G keys, G values."""
        return self.n_heads + 2 * self.n_kv_heads

    @property
    def per_layer_receivers(self) -> int:
        return self.attn_receivers + 1

    @property
    def n_senders(self) -> int:
        return 1 + self.n_layers * (self.n_heads + 1)

    @property
    def n_receivers(self) -> int:
        return self.n_layers * self.per_layer_receivers + 1

    @property
    def n_nodes(self) -> int:
        return self.n_senders + 1

    @cached_property
    def n_up(self) -> np.ndarray:
        """[n_receivers] number of senders upstream of each receiver (a prefix of the sender order)."""
        out = np.empty(self.n_receivers, dtype=np.int64)
        for layer in range(self.n_layers):
            base = layer * self.per_layer_receivers
            out[base : base + self.attn_receivers] = self.attn_up(layer)
            out[base + self.attn_receivers] = self.mlp_up(layer)
        out[-1] = self.n_senders
        return out

    @cached_property
    def valid(self) -> np.ndarray:
        """[n_senders, n_receivers] bool: which (sender, receiver) pairs are edges."""
        return np.arange(self.n_senders)[:, None] < self.n_up[None, :]

    @property
    def n_edges(self) -> int:
        return int(self.n_up.sum())

    @cached_property
    def edge_index(self) -> tuple[np.ndarray, np.ndarray]:
        """(senders [E], receivers [E]) in the canonical (row-major) edge order."""
        s, r = np.nonzero(self.valid)
        return s, r

    # ---- index helpers -------------------------------------------------------------------
    def attn_up(self, layer: int) -> int:
        """Senders upstream of layer ``layer``'s attention inputs."""
        return 1 + layer * (self.n_heads + 1)

    def mlp_up(self, layer: int) -> int:
        """Senders upstream of layer ``layer``'s MLP input (its own layer's heads included)."""
        return 1 + layer * (self.n_heads + 1) + self.n_heads

    def head_sender(self, layer: int, head: int) -> int:
        return 1 + layer * (self.n_heads + 1) + head

    def mlp_sender(self, layer: int) -> int:
        return 1 + layer * (self.n_heads + 1) + self.n_heads

    def attn_receiver_base(self, layer: int) -> int:
        return layer * self.per_layer_receivers

    def mlp_receiver(self, layer: int) -> int:
        return layer * self.per_layer_receivers + self.attn_receivers

    @property
    def logits_receiver(self) -> int:
        return self.n_receivers - 1

    # ---- names ----------------------------------------------------------------------------
    @cached_property
    def sender_names(self) -> list[str]:
        names = ["input"]
        for layer in range(self.n_layers):
            names.extend(f"a{layer}.h{h}" for h in range(self.n_heads))
            names.append(f"m{layer}")
        return names

    @cached_property
    def receiver_names(self) -> list[str]:
        names: list[str] = []
        for layer in range(self.n_layers):
            names.extend(f"a{layer}.h{h}<q>" for h in range(self.n_heads))
            names.extend(f"a{layer}.kv{g}<k>" for g in range(self.n_kv_heads))
            names.extend(f"a{layer}.kv{g}<v>" for g in range(self.n_kv_heads))
            names.append(f"m{layer}")
        names.append("logits")
        return names

    @cached_property
    def node_names(self) -> list[str]:
        return [*self.sender_names, "logits"]

    @cached_property
    def edge_names(self) -> list[str]:
        s, r = self.edge_index
        sn, rn = self.sender_names, self.receiver_names
        return [f"{sn[i]}->{rn[j]}" for i, j in zip(s.tolist(), r.tolist())]

    @cached_property
    def _edge_lookup(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.edge_names)}

    def edge_ids(self, names: list[str]) -> np.ndarray:
        """Positions of edge names in the canonical order; unknown names raise with an example."""
        lookup = self._edge_lookup
        missing = [n for n in names if n not in lookup]
        if missing:
            raise CircuitError(
                f"{len(missing)} edge name(s) not in this graph, e.g. {missing[0]!r}. Edges are named "
                f"'<sender>-><receiver>', e.g. {self.edge_names[0]!r}, 'a0.h1->a2.kv0<v>', 'm3->logits'."
            )
        return np.array([lookup[n] for n in names], dtype=np.int64)

    # ---- conversions between per-edge vectors and dense matrices --------------------------
    def to_dense(self, per_edge: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """[..., E] -> [..., n_senders, n_receivers] (non-edges get ``fill``)."""
        per_edge = np.asarray(per_edge)
        if per_edge.shape[-1] != self.n_edges:
            raise CircuitError(f"expected {self.n_edges} values per edge row, got {per_edge.shape[-1]}")
        dense = np.full((*per_edge.shape[:-1], self.n_senders, self.n_receivers), fill, dtype=per_edge.dtype)
        s, r = self.edge_index
        dense[..., s, r] = per_edge
        return dense

    def to_edges(self, dense: np.ndarray) -> np.ndarray:
        """[..., n_senders, n_receivers] -> [..., E]."""
        s, r = self.edge_index
        return np.asarray(dense)[..., s, r]

    def mask_from_names(self, names: list[str]) -> np.ndarray:
        """Bool [E] with the named edges set."""
        mask = np.zeros(self.n_edges, dtype=bool)
        mask[self.edge_ids(names)] = True
        return mask

    def names_from_mask(self, mask: np.ndarray) -> list[str]:
        names = self.edge_names
        return [names[i] for i in np.flatnonzero(mask)]

    # ---- connectivity -----------------------------------------------------------------------
    def prune(self, mask: np.ndarray) -> np.ndarray:
        """Keep only edges on some input -> ... -> logits path (bool [E] -> bool [E]).

        Why: an edge whose sender receives nothing clean carries the sender's corrupted value,
        i.e. patching it changes nothing; an edge into a node whose output reaches the logits
        through no kept edge cannot matter either. Under counterfactual ablation the pruned
        circuit computes exactly what the unpruned one does (under mean ablation, nearly).
        A head counts as reached when its q, or its group's k or v, input has a kept edge from a
        reached sender; a kv input counts as alive when any head of its group reaches the logits.
        """
        dense = self.to_dense(np.asarray(mask, dtype=bool), fill=False)  # [S, R]
        H, G = self.n_heads, self.n_kv_heads
        reached = np.zeros(self.n_senders, dtype=bool)
        reached[0] = True
        for layer in range(self.n_layers):
            base = self.attn_receiver_base(layer)
            has_in = dense[: self.attn_up(layer), base : base + self.attn_receivers][reached[: self.attn_up(layer)]].any(0)
            q_in, k_in, v_in = has_in[:H], has_in[H : H + G], has_in[H + G :]
            kv_in = np.repeat(k_in | v_in, self.group)
            first = self.head_sender(layer, 0)
            reached[first : first + H] = q_in | kv_in
            m = self.mlp_receiver(layer)
            reached[self.mlp_sender(layer)] = dense[: self.mlp_up(layer), m][reached[: self.mlp_up(layer)]].any()
        alive_recv = np.zeros(self.n_receivers, dtype=bool)
        alive_recv[-1] = True
        alive_node = np.zeros(self.n_senders, dtype=bool)
        alive_node[0] = True  # the input never needs a consumer of its own
        for layer in reversed(range(self.n_layers)):
            ms = self.mlp_sender(layer)
            alive_node[ms] = reached[ms] and bool((dense[ms] & alive_recv).any())
            alive_recv[self.mlp_receiver(layer)] = alive_node[ms]
            first = self.head_sender(layer, 0)
            heads_alive = reached[first : first + H] & (dense[first : first + H] & alive_recv[None, :]).any(1)
            alive_node[first : first + H] = heads_alive
            base = self.attn_receiver_base(layer)
            alive_recv[base : base + H] = heads_alive
            groups_alive = heads_alive.reshape(G, self.group).any(1)
            alive_recv[base + H : base + H + G] = groups_alive
            alive_recv[base + H + G : base + H + 2 * G] = groups_alive
        kept = dense & reached[:, None] & alive_recv[None, :]
        return self.to_edges(kept)

    def nodes_of(self, mask: np.ndarray) -> list[str]:
        """Nodes of a circuit: every sender of a kept edge, plus the logits when an edge reaches them.

        (A head that only shares a kv input with a circuit head is not listed: it sends nothing.)
        """
        s, r = self.edge_index
        mask = np.asarray(mask, dtype=bool)
        nodes = {self.sender_names[i] for i in set(s[mask].tolist())}
        if (r[mask] == self.logits_receiver).any():
            nodes.add("logits")
        order = {n: i for i, n in enumerate(self.node_names)}
        return sorted(nodes, key=order.__getitem__)

    def receiver_nodes(self, receiver: int) -> list[str]:
        """The node(s) that read receiver ``receiver`` (a kv input is read by its whole group)."""
        if receiver == self.logits_receiver:
            return ["logits"]
        layer, local = divmod(receiver, self.per_layer_receivers)
        H, G = self.n_heads, self.n_kv_heads
        if local < H:
            return [f"a{layer}.h{local}"]
        if local < H + 2 * G:
            g = (local - H) % G
            return [f"a{layer}.h{h}" for h in range(g * self.group, (g + 1) * self.group)]
        return [f"m{layer}"]

    def summary(self) -> str:
        return (
            f"graph: {self.n_nodes} nodes (input, {self.n_layers * self.n_heads} heads, {self.n_layers} MLPs, logits), "
            f"{self.n_receivers} inputs (q per query head, k/v per kv head: {self.n_kv_heads} of {self.n_heads}), "
            f"{self.n_edges} edges"
        )


def graph_of(model) -> CircuitGraph:
    """The edge graph of an engine HookedModel (from its config; no weights touched)."""
    return CircuitGraph.from_config(model.cfg)
