"""A stand-in for ``python -m engine.features.server`` (no mlx): whitespace tokens, activation 2.0 on
'cat'/'dog'. argv[1] picks a failure mode: ok, die, silent, error, nostart."""

from __future__ import annotations

import json
import sys
import time

mode = sys.argv[1] if len(sys.argv) > 1 else "ok"
if mode == "nostart":
    print(json.dumps({"ready": False, "error": "no such SAE"}), flush=True)
    sys.exit(2)
print(json.dumps({"ready": True, "hook": "fake", "d_sae": 8}), flush=True)
for line in sys.stdin:
    req = json.loads(line)
    if mode == "die":
        sys.stderr.write("fake server crashed\n")
        sys.exit(3)
    if mode == "silent":
        time.sleep(60)
    if mode == "error":
        print(json.dumps({"error": "latent out of range"}), flush=True)
        continue
    results = []
    for text in req["texts"]:
        toks = [" " + w for w in text.split()]
        acts = [2.0 if t.strip() in ("cat", "dog") else 0.0 for t in toks]
        results.append({"text": text, "tokens": toks, "acts": {str(l): acts for l in req["latents"]}})
    print(json.dumps({"results": results}), flush=True)
