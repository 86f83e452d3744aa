"""``python -m engine.features.server --model M --sae DIR``: measure latents on texts over stdin/stdout.

One JSON line in (MeasureRequest), one JSON line out (MeasureResponse). Why a long-lived process:
the orchestrator never imports mlx, and loading the model per round would cost more than measuring.
The first line written is a ready banner {"ready": true, "hook": ..., "d_sae": ...}.
"""

from __future__ import annotations

import argparse
import json
import sys

from pydantic import ValidationError

from engine.errors import EngineError
from engine.features.schemas import MeasureRequest, MeasureResponse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.features.server")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--sae", required=True, help="SAELens-layout SAE directory")
    parser.add_argument("--hook", default=None, help="override the hook named in cfg.json")
    args = parser.parse_args(argv)
    import engine
    from engine.features.measure import LatentMeasurer
    from engine.features.sae_io import load_sae

    try:
        measurer = LatentMeasurer(engine.load_model(args.model), load_sae(args.sae), hook=args.hook)
    except (EngineError, ValueError, OSError) as exc:
        print(json.dumps({"ready": False, "error": str(exc)}), flush=True)
        return 2
    print(json.dumps({"ready": True, "hook": measurer.hook, "d_sae": measurer.sae.cfg.d_sae}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            request = MeasureRequest.model_validate_json(line)
            response = MeasureResponse(results=measurer.measure(request.texts, request.latents))
        except ValidationError as exc:
            response = MeasureResponse(error=f"malformed request: {exc.errors(include_url=False)[:3]}")
        except (EngineError, ValueError) as exc:
            response = MeasureResponse(error=str(exc))
        print(response.model_dump_json(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
