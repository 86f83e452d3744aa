"""``python -m engine.features build --out DIR [...]``: the SAE pipeline (see engine/features/pipeline.py)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from engine.features.pipeline import BuildConfig, PairSpec, attribute_and_sample, build, sample_existing
from engine.features.schemas import TrainConfig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.features")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="cache activations, train and evaluate an SAE, sample latent examples")
    b.add_argument("--out", required=True)
    b.add_argument("--model", default="smollm2-135m")
    b.add_argument("--hook", default="blocks.15.hook_resid_post")
    b.add_argument("--tokens", type=int, default=150_000)
    b.add_argument("--d-sae", type=int, default=4096)
    b.add_argument("--k", type=int, default=32)
    b.add_argument("--architecture", choices=("topk", "batchtopk"), default="topk")
    b.add_argument("--epochs", type=float, default=3.0)
    b.add_argument("--latents", type=int, default=50)
    b.add_argument("--order", choices=("frequency", "random"), default="frequency")
    b.add_argument("--quiet", action="store_true")
    s = sub.add_parser("sample", help="cache the hook of an existing SAELens-layout SAE and sample latent examples")
    s.add_argument("--sae", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--model", default="smollm2-135m")
    s.add_argument("--tokens", type=int, default=150_000)
    s.add_argument("--latents", type=int, default=50)
    s.add_argument("--order", choices=("frequency", "random"), default="frequency")
    s.add_argument("--quiet", action="store_true")
    a = sub.add_parser("attribute", help="rank an SAE's latents by attribution to prompt pairs' logit difference, "
                                           "then sample examples of the top ones")
    a.add_argument("--sae", required=True)
    a.add_argument("--pairs", required=True, help="JSON list of {clean, corrupted, correct, wrong}")
    a.add_argument("--out", required=True)
    a.add_argument("--model", default="smollm2-135m")
    a.add_argument("--tokens", type=int, default=150_000)
    a.add_argument("--latents", type=int, default=10)
    a.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "attribute":
        pairs = [PairSpec.model_validate(p) for p in json.loads(Path(args.pairs).read_text())]
        rep = attribute_and_sample(args.sae, pairs, args.out, model_name=args.model, n_tokens=args.tokens,
                                   n_latents=args.latents, progress=not args.quiet)
        print(json.dumps(rep, indent=2))
        return 0
    if args.command == "sample":
        rep = sample_existing(args.sae, args.out, model_name=args.model, n_tokens=args.tokens, n_latents=args.latents,
                              order=args.order, progress=not args.quiet)
        print(rep.model_dump_json(indent=2))
        return 0
    cfg = BuildConfig(model=args.model, hook=args.hook, n_tokens=args.tokens, n_latents=args.latents, latent_order=args.order,
                      train=TrainConfig(architecture=args.architecture, d_sae=args.d_sae, k=args.k, epochs=args.epochs))
    report = build(cfg, args.out, progress=not args.quiet)
    print(report.model_dump_json(indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
