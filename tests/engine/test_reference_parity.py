"""Parity with Hugging Face transformers loading the same GGUF (fp32).

MLX and PyTorch must not share a process, so the torch side runs in a subprocess. Skipped with a
message when torch or transformers are not installed (they are not default dependencies).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import mlx.core as mx
import numpy as np
import pytest

pytestmark = pytest.mark.embedded

PROMPT = "The Eiffel Tower is in the city of"
TORCH_SIDE = r"""
import json, sys
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
path, prompt = sys.argv[1], sys.argv[2]
import os
d, f = os.path.dirname(path), os.path.basename(path)
tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
ids = tok(prompt, return_tensors="pt").input_ids
with torch.no_grad():
    logits = model(ids).logits[0, -1]
print(json.dumps({"ids": ids[0].tolist(), "logits": logits.tolist()}))
"""


# A separate interpreter may hold torch (it need not share the engine's venv).
REFERENCE_PYTHON = os.environ.get("ENGINE_REFERENCE_PYTHON", sys.executable)


def _torch_available() -> bool:
    probe = subprocess.run([REFERENCE_PYTHON, "-c", "import torch, transformers, gguf, accelerate"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _torch_available(), reason="torch/transformers/gguf/accelerate not installed: parity with HF not checked here")
def test_last_position_logits_match_transformers(embedded):
    from engine.loading.resolve import embedded_gguf_path

    out = subprocess.run(
        [REFERENCE_PYTHON, "-c", TORCH_SIDE, str(embedded_gguf_path()), PROMPT],
        capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, f"the transformers side failed:\n{out.stderr[-3000:]}"
    ref = json.loads(out.stdout.strip().splitlines()[-1])
    tokens = embedded.to_tokens(PROMPT)
    assert tokens[0].tolist() == ref["ids"]
    ours = np.array(embedded.forward(tokens)[0, -1])
    diff = float(np.abs(ours - np.array(ref["logits"], dtype=np.float32)).max())
    print(f"max abs logit difference vs transformers: {diff:.2e}")
    assert diff <= 1e-4  # DESIGN.md: TransformerLens matches transformers to 4e-5 on these weights
