"""Run directories on the hand-built planted model (engine.circuits.planted), where a0.h0 carries the answer.

Shared by the verifier's acceptance tests: the model is a real mlx-lm directory, the contract is the
real sandbox contract, so the verifier path measured here is the one a run uses.
"""

from __future__ import annotations

import random
from pathlib import Path

from engine.circuits.planted import N_NAMES, build_planted_model, fact, planted_pairs
from engine.interventions import Patch
from orchestrator.interfaces import VerifyRequest
from sandbox.contract import create_contract
from sandbox.schemas import Claim, PromptPair

TRUE_CLAIM = Claim(statement="a0.h0 moves the matched name to the final position",
                   interventions=[Patch(hook="blocks.0.attn.hook_z", heads=[0], positions=[-1])],
                   expected_direction="increase", min_effect=0.1)
FALSE_CLAIM = Claim(statement="a2.h3 (a distractor) moves the answer",
                    interventions=[Patch(hook="blocks.2.attn.hook_z", heads=[3], positions=[-1])],
                    expected_direction="increase", min_effect=0.1)


def prompt_pairs(n: int, seed: int) -> list[PromptPair]:
    """n distinct planted pairs (all three corruption kinds)."""
    seen: set[str] = set()
    out = []
    for p in planted_pairs(4 * n, seed):
        if p.clean not in seen:
            seen.add(p.clean)
            out.append(PromptPair(clean=p.clean, corrupted=p.corrupted, correct=p.correct, wrong=p.wrong))
    assert len(out) >= n
    return out[:n]


def name_pairs(n: int, matched_at: int, seed: int) -> list[PromptPair]:
    """'Name replaced' pairs whose matched name sits at token position ``matched_at`` (1 or 3), the other at the other."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        red, blue, third = rng.sample(range(N_NAMES), 3)
        cue = rng.choice(["cr", "cb"])
        colour = "r" if cue == "cr" else "b"
        matched, other = (red, blue) if cue == "cr" else (blue, red)
        other_tok = f"{'b' if colour == 'r' else 'r'}{other}"
        fill = [f"f{rng.randrange(4)}" for _ in range(3)]

        def text(name: str) -> str:
            slots = {matched_at: name, 4 - matched_at: other_tok}
            return f"{fill[0]} {slots[1]} {fill[1]} {slots[3]} {fill[2]} {cue}"

        out.append(PromptPair(clean=text(f"{colour}{matched}"), corrupted=text(f"{colour}{third}"),
                              correct=f" a{fact(matched)}", wrong=f" a{fact(third)}"))
    return out


def make_run(root: Path, model_dir: Path, exploration: list[PromptPair], held_out: list[PromptPair], seed: int,
             commit: bool = False) -> Path:
    root.mkdir(parents=True)
    create_contract(root, str(model_dir), exploration, held_out, seed=seed, family="planted", commit=commit)
    return root


def build_model(directory: Path, seed: int = 0) -> Path:
    return build_planted_model(directory, seed=seed).path


def request(run_dir: Path, seed: int, claim_index: int = 0, prior: list[float] | None = None) -> VerifyRequest:
    return VerifyRequest(run_dir=run_dir, attempt=1, claim_index=claim_index, contract_dir=run_dir / "contract",
                         seed=seed, alpha=0.05, correction="holm", bootstrap=1000, prior_p_values=prior or [])
