"""The trusted verifier of feature explanations: it alone decides which explanation becomes a finding.

Trust boundary (DESIGN.md sections 5 and 9):
- Untrusted: whatever an explainer produces. An LLM explainer (and the provider clients) live in the
  loop's process; the explainer supplies only an Explanation (text + predicate) and the texts of its
  adversarial inputs. Everything the loop computes from them (rounds, validation scores, its own
  LatentOutcome.test/kept) is advisory.
- Trusted: the engine children (``python -I -m engine.features build|sample|attribute`` write every
  example's activations; ``engine.features.server`` measures written inputs), and this module, run as
  ``python -I -m orchestrator.features.verify --run-dir RUN`` — a child that never sees an explainer.
  It refuses to start unless the held-out examples (engine/latents.json), the SAE and the
  random-explanation pool (contract/first_explanations.json) hash to what contract/feature_task.json
  pinned in the run's first commit, i.e. before any explanation was refined. Per request it scores
  the explanation on the test split with the task's scorer, scores the pinned pool's explanations of
  other latents on the same split (the baseline), applies the keep rule (>= keep_sigma baseline
  sigmas), and re-measures every recorded adversarial input on the engine: a recorded activation that
  differs from the fresh measurement means the finding's record is not what the engine says, and the
  explanation is not kept.
The loop records ``kept = verdict.kept``; ``python -m orchestrator verify RUN_DIR N`` asks the same child again.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engine.features.schemas import LatentExamples, LatentSet
from engine.features.scoring import beats_baseline
from orchestrator.features.measure_client import LineChild, MeasureError, SubprocessMeasurer
from orchestrator.features.schemas import Explanation, LatentOutcome, Verdict
from orchestrator.fsutil import sha256_file
from orchestrator.providers.base import Budget, BudgetExceeded, ProviderStop, UsageLedger

ADVERSARIAL_TOLERANCE = 1e-3  # |recorded - re-measured| allowed per token, plus the same fraction of |recorded|


class TrustError(RuntimeError):
    """A pinned file changed since the contract commit, or a request names something the run does not hold."""


class RecordedInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=600)
    acts: list[float]  # as recorded in the finding


class VerifyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    latent: int
    explanation: Explanation
    adversarial: list[RecordedInput] = Field(default_factory=list)
    # what is left of the run's LLM budget: the verifier's scoring calls spend the same budget
    max_tokens: int | None = Field(default=None, ge=0)
    max_dollars: float | None = Field(default=None, ge=0.0)

    @classmethod
    def from_outcome(cls, outcome: LatentOutcome, budget: Budget | None = None) -> "VerifyRequest":
        recorded = [RecordedInput(text=m.input.text, acts=list(m.example.acts)) for r in outcome.rounds for m in r.adversarial]
        b = budget or Budget()
        return cls(latent=outcome.latent, explanation=outcome.final, adversarial=recorded,
                   max_tokens=b.max_tokens, max_dollars=b.max_dollars)


class VerifyResponse(BaseModel):
    model_config = ConfigDict(extra="forbid")

    verdict: Verdict | None = None
    error: str | None = None
    budget_spent: str | None = None  # the run's LLM budget ran out during scoring: the run stops, resumable


def pinned_paths(root: Path, sae: Path) -> dict[str, Path]:
    """The files whose sha256 the contract pins (the verifier trusts nothing else of the run)."""
    return {
        "latents.json": root / "engine" / "latents.json",
        "sae_weights.safetensors": sae / "sae_weights.safetensors",
        "cfg.json": sae / "cfg.json",
        "first_explanations.json": root / "contract" / "first_explanations.json",
    }


def baseline_pool(firsts: dict[int, Explanation], latent: int, seed: int, n: int) -> list[tuple[int, Explanation]]:
    """The random-explanation pool of one latent: ``n`` first explanations of other latents, seeded shuffle."""
    pool = [(lid, e) for lid, e in sorted(firsts.items()) if lid != latent]
    random.Random(seed * 100_003 + latent).shuffle(pool)
    return pool[:n]


class PinnedRun:
    """The run's task, held-out examples and baseline pool, read only after their hashes are checked."""

    def __init__(self, root: Path) -> None:
        from orchestrator.features.run import sae_dir
        from orchestrator.features.task import load_feature_task

        self.root = root
        contract_path = root / "contract" / "feature_task.json"
        if not contract_path.is_file():
            raise TrustError(f"{root}: no contract/feature_task.json; not a feature run directory")
        contract = json.loads(contract_path.read_text(encoding="utf-8"))
        self.task = load_feature_task(root / "task.yaml")
        # the SAE path as resolved when the run was created (a relative `sae:` is relative to that caller)
        self.sae = Path(contract["sae_dir"]) if contract.get("sae_dir") else sae_dir(self.task, root)
        pinned = contract.get("sha256", {})
        for name, path in pinned_paths(root, self.sae).items():
            if name not in pinned:
                raise TrustError(f"{contract_path} pins no sha256 for {name}; this run predates trusted verification")
            if not path.is_file():
                raise TrustError(f"{path} is missing; the contract pins it (sha256 {pinned[name][:12]}…)")
            if sha256_file(path) != pinned[name]:
                raise TrustError(f"{path} changed since the contract commit (sha256 differs); its scores cannot be trusted")
        latents = LatentSet.model_validate_json((root / "engine" / "latents.json").read_text(encoding="utf-8"))
        self.latents: dict[int, LatentExamples] = {lat.latent: lat for lat in latents.latents}
        raw = json.loads((root / "contract" / "first_explanations.json").read_text(encoding="utf-8"))
        self.firsts = {int(k): Explanation.model_validate(v) for k, v in raw.items()}


def _adversarial_check(latent: int, recorded: Sequence[RecordedInput], measurer) -> tuple[float, list[str]]:
    """Largest |recorded - measured| activation and one problem per input that disagrees."""
    fresh = measurer.measure(latent, [r.text for r in recorded])
    worst, problems = 0.0, []
    for r, ex in zip(recorded, fresh):
        if len(ex.acts) != len(r.acts):
            problems.append(f"adversarial input {r.text[:60]!r}: {len(r.acts)} recorded activations, engine has {len(ex.acts)} tokens")
            worst = max(worst, 1e9)  # finite: the ledger stores it as JSON
            continue
        diff = max((abs(a - b) for a, b in zip(r.acts, ex.acts)), default=0.0)
        worst = max(worst, diff)
        if any(abs(a - b) > ADVERSARIAL_TOLERANCE * (1.0 + abs(b)) for a, b in zip(r.acts, ex.acts)):
            problems.append(f"adversarial input {r.text[:60]!r}: recorded activations differ from the engine's by up to {diff:.4g}")
    return worst, problems


def verify_latent(run: PinnedRun, request: VerifyRequest, scorer, measurer=None) -> Verdict:
    """Score, baseline, keep rule and (for a candidate finding) the adversarial record, all from pinned data."""
    from orchestrator.features.scoring import baseline, score

    cfg = run.task.refine
    lat = run.latents.get(request.latent)
    if lat is None:
        raise TrustError(f"latent {request.latent} has no held-out examples in this run's engine/latents.json")
    test, used = score(request.explanation, lat.test, scorer, cfg.seed + 1000)
    others = [e for _, e in baseline_pool(run.firsts, lat.latent, run.task.seed, cfg.n_baseline)]
    baselines, used_baseline = baseline(others, lat.test, scorer, cfg.seed + 1000)
    margins = {m: round(b.margin(test.get(m)), 3) for m, b in baselines.items()}
    beats = beats_baseline(test.get(cfg.keep_metric), baselines[cfg.keep_metric], cfg.keep_sigma)
    worst, problems = None, []
    if beats and request.adversarial and measurer is not None:  # only a candidate finding's record matters
        worst, problems = _adversarial_check(lat.latent, request.adversarial, measurer)
    consistent = not problems
    return Verdict(latent=lat.latent, test=test, baselines=baselines, margins=margins, keep_metric=cfg.keep_metric,
                   keep_sigma=cfg.keep_sigma, beats_baseline=beats,
                   adversarial_checked=len(request.adversarial) if worst is not None else 0,
                   adversarial_max_diff=worst, adversarial_consistent=consistent, kept=beats and consistent,
                   problems=problems, usage=used + used_baseline)


class TrustedVerifier(LineChild):
    """The loop's (and ``verify``'s) handle on the verifier child; ``verify(request) -> Verdict``."""

    what = "trusted feature verifier"

    def __init__(self, root: Path, *, python: str = sys.executable, measure_command: list[str] | None = None,
                 keep_keys: bool = False, timeout: float = 1800.0) -> None:
        cmd = [python, "-I", "-m", "orchestrator.features.verify", "--run-dir", str(Path(root).resolve())]
        if measure_command:
            cmd += ["--measure-command", json.dumps(measure_command)]
        super().__init__(cmd, start_timeout=120.0, timeout=timeout, cwd=Path(__file__).resolve().parents[2],
                         keep_keys=keep_keys)

    def verify(self, request: VerifyRequest) -> Verdict:
        line = self.request(request.model_dump_json().encode(), f"verifying latent {request.latent}")
        response = VerifyResponse.model_validate_json(line)
        if response.budget_spent is not None:
            raise BudgetExceeded(f"while the trusted verifier scored latent {request.latent}: {response.budget_spent}")
        if response.verdict is None:
            raise MeasureError(f"trusted verifier refused latent {request.latent}: {response.error}")
        return response.verdict


def _request_scorer(run: PinnedRun, request: VerifyRequest, root: Path):
    """The task's scorer held to what is left of the run's budget; its calls go to the run's call log."""
    from orchestrator.features.task import make_scorer
    from orchestrator.providers.call_log import CallLog

    ledger = UsageLedger(Budget(max_tokens=request.max_tokens, max_dollars=request.max_dollars), sink=CallLog(root / "logs"))
    return make_scorer(run.task, ledger=ledger)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.features.verify")
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--measure-command", default=None, help="JSON argv of a measurement server (tests)")
    args = parser.parse_args(argv)
    from orchestrator.features.task import FeatureTaskError, make_scorer

    root = Path(args.run_dir)
    try:
        run = PinnedRun(root)
        make_scorer(run.task)  # a missing API key or unknown provider refuses the start, not the first request
    except (TrustError, FeatureTaskError, ProviderStop, OSError, ValueError) as exc:
        print(json.dumps({"ready": False, "error": str(exc)}), flush=True)
        return 2
    command = json.loads(args.measure_command) if args.measure_command else None
    measurer = SubprocessMeasurer(run.sae, run.task.model, command=command)
    print(json.dumps({"ready": True, "latents": len(run.latents)}), flush=True)
    try:
        for line in sys.stdin:
            if not line.strip():
                continue
            try:
                request = VerifyRequest.model_validate_json(line)
                verdict = verify_latent(run, request, _request_scorer(run, request, root), measurer)
                response = VerifyResponse(verdict=verdict)
            except ValidationError as exc:
                response = VerifyResponse(error=f"malformed request: {exc.errors(include_url=False)[:3]}")
            except BudgetExceeded as exc:
                response = VerifyResponse(budget_spent=str(exc))
            except (TrustError, MeasureError, RuntimeError, ValueError) as exc:
                response = VerifyResponse(error=f"{type(exc).__name__}: {exc}")
            print(response.model_dump_json(), flush=True)
    finally:
        measurer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
