"""A stand-in for ``python -m engine.features.server`` (no mlx) that measures the synthetic rule latents
of tests/orchestrator/features/synthetic.py: argv[1] is a rule spec (``rules_from_spec``) as JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository, for `tests.`

from tests.orchestrator.features.synthetic import rules_from_spec, tokenize  # noqa: E402

rules = rules_from_spec(json.loads(sys.argv[1]))
print(json.dumps({"ready": True, "hook": "synthetic", "d_sae": max(rules) + 1}), flush=True)
for line in sys.stdin:
    req = json.loads(line)
    results = []
    for text in req["texts"]:
        toks = tokenize(text)
        results.append({"text": text, "tokens": toks, "acts": {str(l): rules[l](toks) for l in req["latents"]}})
    print(json.dumps({"results": results}), flush=True)
