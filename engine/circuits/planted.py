"""Planted-circuit models: tiny Llama-architecture models whose circuit is known by construction.

Why: on a real model nobody knows the true circuit, so recovery can only be checked where we put it.
The weights are set by hand; the model is saved as an ordinary mlx-lm directory (config.json,
model.safetensors, tokenizer.json from the `tokenizers` library) so anything that loads a model
(engine.load_model, mlx_lm.load, the sandbox) loads it.

Task ("colour lookup"): a prompt holds a red and a blue name among fillers and ends with a colour
cue; the answer is the fact a_{pi(i)} about the name i whose colour matches the cue.
    f2 r3 f0 b5 f1 cr  ->  a{pi(3)}         (pi(i) = 3i + 1 mod 8)
Circuit (residual subspaces: ID, colour, cue, BIAS | S1 | S3 | S2 | NOISE):
    a0.h0   mover: query = cue colour, key = name colour, value = name identity -> S1 (last position)
    a1.h2   copier: attends from the cue to itself (query = BIAS, key = cue flag), value S1 -> S3
    m2      lookup: hidden unit j fires on S3_j and writes S2_{pi(j)}; lm_head reads S2
Every other head, MLP and hidden unit is a random distractor that reads the whole residual stream
(so its activations differ between clean and corrupted prompts) but writes only NOISE dimensions;
it reaches the answer only through the RMSNorm scales, i.e. weakly but not exactly zero.
Corruptions (mixed equally): flip the cue, swap the names' colours, or replace the matched name;
they exercise the mover's query, key and value inputs respectively. Planted edges:
    input->a0.h0<q>, input->a0.kv0<k>, input->a0.kv0<v>, a0.h0->a1.kv1<v>, a1.h2->m2, m2->logits
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PLANTED_EDGES: tuple[str, ...] = (
    "input->a0.h0<q>",
    "input->a0.kv0<k>",
    "input->a0.kv0<v>",
    "a0.h0->a1.kv1<v>",
    "a1.h2->m2",
    "m2->logits",
)
N_NAMES = 8
DESCRIPTION = (
    "colour lookup: a0.h0 moves the name whose colour matches the cue (q: cue, k: colour, v: identity), "
    "a1.h2 copies it at the cue position, m2 maps it to its fact; every other component is a distractor "
    "writing only noise dimensions"
)
CONFIG = {
    "model_type": "llama",
    "hidden_size": 64,
    "num_hidden_layers": 3,
    "intermediate_size": 64,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "rms_norm_eps": 1e-5,
    "vocab_size": 32,
    "rope_traditional": True,
    "rope_theta": 10000.0,
    "tie_word_embeddings": False,
    "max_position_embeddings": 64,
}
# residual dimensions
ID, RED, BLUE, CUE_R, CUE_B, BIAS, FILL = 0, 8, 9, 10, 11, 12, 13
S1, S3, S2, NOISE = 16, 24, 32, 40
# vocabulary: <unk>, fillers, red names, blue names, cues, answers, <pad>
WORDS = ["<unk>", *(f"f{i}" for i in range(4)), *(f"r{i}" for i in range(N_NAMES)), *(f"b{i}" for i in range(N_NAMES)),
         "cr", "cb", *(f"a{i}" for i in range(N_NAMES)), "<pad>"]
TOKEN = {w: i for i, w in enumerate(WORDS)}


def fact(i: int) -> int:
    """The planted fact: name i -> answer pi(i)."""
    return (3 * i + 1) % N_NAMES


@dataclass(frozen=True)
class PlantedPair:
    """One clean/corrupted pair in the same shape as sandbox PromptPair (clean, corrupted, correct, wrong)."""

    clean: str
    corrupted: str
    correct: str
    wrong: str
    kind: str  # "cue" | "colour" | "name"


@dataclass(frozen=True)
class PlantedModel:
    """A saved planted-circuit model: where it is, its circuit, and prompt pairs for its task."""

    path: Path
    planted_edges: tuple[str, ...]
    description: str

    def pairs(self, n: int, seed: int = 0) -> list[PlantedPair]:
        return planted_pairs(n, seed)


def planted_pairs(n: int, seed: int = 0) -> list[PlantedPair]:
    """n pairs cycling through the three corruptions (cue flip, colour swap, name replacement)."""
    rng = random.Random(seed)
    pairs: list[PlantedPair] = []
    for k in range(n):
        red, blue = rng.sample(range(N_NAMES), 2)
        red_first, cue = rng.random() < 0.5, rng.choice(["cr", "cb"])
        fillers = [f"f{rng.randrange(4)}" for _ in range(3)]

        def text(r: int, b: int, rf: bool, c: str, colours_swapped: bool = False) -> str:
            a, bb = (f"b{r}", f"r{b}") if colours_swapped else (f"r{r}", f"b{b}")
            first, second = (a, bb) if rf else (bb, a)
            return f"{fillers[0]} {first} {fillers[1]} {second} {fillers[2]} {c}"

        answer = fact(red if cue == "cr" else blue)
        kind = ("cue", "colour", "name")[k % 3]
        clean = text(red, blue, red_first, cue)
        if kind == "cue":
            corrupted = text(red, blue, red_first, "cb" if cue == "cr" else "cr")
            other = fact(blue if cue == "cr" else red)
        elif kind == "colour":  # the same names at the same places, colours swapped: the cue now picks the other
            corrupted = text(red, blue, red_first, cue, colours_swapped=True)
            other = fact(blue if cue == "cr" else red)
        else:  # the matched name replaced by a third one
            third = rng.choice([i for i in range(N_NAMES) if i not in (red, blue)])
            corrupted = text(third, blue, red_first, cue) if cue == "cr" else text(red, third, red_first, cue)
            other = fact(third)
        pairs.append(PlantedPair(clean, corrupted, f" a{answer}", f" a{other}", kind))
    return pairs


def _weights(seed: int) -> dict[str, np.ndarray]:
    """Hand-set circuit weights plus random distractors writing only NOISE dimensions."""
    rng = np.random.default_rng(seed)
    d, e, V, m = CONFIG["hidden_size"], CONFIG["head_dim"], CONFIG["vocab_size"], CONFIG["intermediate_size"]
    H, G = CONFIG["num_attention_heads"], CONFIG["num_key_value_heads"]
    noise = slice(NOISE, d)
    n_noise = d - NOISE

    def rand(*shape: int, scale: float) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    emb = np.zeros((V, d), np.float32)
    emb[:, BIAS] = 1.0
    emb[:, noise] = rand(V, n_noise, scale=0.3)
    for i in range(N_NAMES):
        emb[TOKEN[f"r{i}"], [ID + i, RED]] = 1.0
        emb[TOKEN[f"b{i}"], [ID + i, BLUE]] = 1.0
    emb[TOKEN["cr"], CUE_R] = emb[TOKEN["cb"], CUE_B] = 1.0
    for i in range(4):
        emb[TOKEN[f"f{i}"], FILL] = 1.0
    w: dict[str, np.ndarray] = {"model.embed_tokens.weight": emb, "model.norm.weight": np.ones(d, np.float32)}
    for layer in range(CONFIG["num_hidden_layers"]):
        pre = f"model.layers.{layer}."
        q = rand(H * e, d, scale=0.5 / np.sqrt(d))
        k = rand(G * e, d, scale=0.5 / np.sqrt(d))
        v = rand(G * e, d, scale=1.0 / np.sqrt(d))
        o = np.zeros((d, H * e), np.float32)
        o[noise] = rand(n_noise, H * e, scale=0.1 / np.sqrt(e))  # every head writes a little noise
        gate, up = rand(m, d, scale=1.0 / np.sqrt(d)), rand(m, d, scale=1.0 / np.sqrt(d))
        down = np.zeros((d, m), np.float32)
        down[noise] = rand(n_noise, m, scale=0.2 / np.sqrt(m))
        if layer == 0:  # a0.h0 (kv head 0): the mover; the key/value rows are kv head 0's, shared with a0.h1
            q[0:e] = 0.0
            q[14, [CUE_R, CUE_B]] = (2.3, -2.3)
            k[0:e] = 0.0
            k[14, [RED, BLUE]] = (1.0, -1.0)
            v[0:e] = 0.0
            v[np.arange(N_NAMES), ID + np.arange(N_NAMES)] = 1.0
            o[:, 0:e] = 0.0
            o[S1 + np.arange(N_NAMES), np.arange(N_NAMES)] = 0.284
        if layer == 1:  # a1.h2 (kv head 1): copies S1 from the cue position to S3
            q[2 * e : 3 * e] = 0.0
            q[2 * e + 14, BIAS] = 3.0
            k[e : 2 * e] = 0.0
            k[e + 14, [CUE_R, CUE_B]] = (1.0, 1.0)
            v[e : 2 * e] = 0.0
            v[e + np.arange(N_NAMES), S1 + np.arange(N_NAMES)] = 1.0
            o[:, 2 * e : 3 * e] = 0.0
            o[S3 + np.arange(N_NAMES), 2 * e + np.arange(N_NAMES)] = 0.31
        if layer == 2:  # m2 hidden units 0..7: the lookup S3_j -> S2_pi(j)
            gate[:N_NAMES] = 0.0
            up[:N_NAMES] = 0.0
            gate[np.arange(N_NAMES), S3 + np.arange(N_NAMES)] = 1.0
            up[np.arange(N_NAMES), S3 + np.arange(N_NAMES)] = 1.0
            down[:, :N_NAMES] = 0.0
            down[S2 + np.array([fact(j) for j in range(N_NAMES)]), np.arange(N_NAMES)] = 0.116
        w.update({
            pre + "self_attn.q_proj.weight": q, pre + "self_attn.k_proj.weight": k,
            pre + "self_attn.v_proj.weight": v, pre + "self_attn.o_proj.weight": o,
            pre + "mlp.gate_proj.weight": gate, pre + "mlp.up_proj.weight": up, pre + "mlp.down_proj.weight": down,
            pre + "input_layernorm.weight": np.ones(d, np.float32),
            pre + "post_attention_layernorm.weight": np.ones(d, np.float32),
        })
    head = np.zeros((V, d), np.float32)
    head[:, noise] = rand(V, n_noise, scale=0.05)
    for j in range(N_NAMES):
        head[TOKEN[f"a{j}"], S2 + j] = 2.0
    w["lm_head.weight"] = head
    return w


def build_planted_model(directory: str | Path, seed: int = 0) -> PlantedModel:
    """Write the colour-lookup planted model to ``directory`` (created) and describe it.

    Load it with ``engine.load_model(str(directory))``; prompts come from ``PlantedModel.pairs``.
    """
    import mlx.core as mx
    from tokenizers import Tokenizer, models, pre_tokenizers

    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(CONFIG, indent=2))
    mx.save_safetensors(str(path / "model.safetensors"), {k: mx.array(v) for k, v in _weights(seed).items()})
    tok = Tokenizer(models.WordLevel(vocab=TOKEN, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.save(str(path / "tokenizer.json"))
    return PlantedModel(path=path, planted_edges=PLANTED_EDGES, description=DESCRIPTION)
