"""The shipped tasks make sense to the embedded model: it completes the clean prompts correctly.

Runs the engine in a subprocess (the orchestrator's tests stay mlx-free in-process).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.embedded
REPO = Path(__file__).resolve().parents[2]
CHECK = r"""
import json, sys
import engine, mlx.core as mx
from orchestrator.task import load_task
model = engine.load_model("smollm2-135m")
out = {}
for name in sys.argv[1:]:
    task = load_task(name, check_tokenizer=False)
    clean = model.to_tokens([p.clean for p in task.pairs])
    last = model.forward(clean)[:, -1, :]
    top = [int(i) for i in mx.argmax(last, axis=-1).tolist()]
    correct = [model.token_id(p.correct) for p in task.pairs]
    wrong = [model.token_id(p.wrong) for p in task.pairs]
    diffs = [float(last[i, c] - last[i, w]) for i, (c, w) in enumerate(zip(correct, wrong))]
    out[name] = {"top1": sum(t == c for t, c in zip(top, correct)), "n": len(correct), "positive": sum(d > 0 for d in diffs)}
print(json.dumps(out))
"""


def test_embedded_model_gets_the_clean_prompts_right() -> None:
    from engine.blas import blas_env

    env = {**os.environ, **blas_env(dict(os.environ))}
    files = ["tasks/factual_recall.yaml", "tasks/ioi.yaml"]
    proc = subprocess.run([sys.executable, "-c", CHECK, *files], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    recall, ioi = got["tasks/factual_recall.yaml"], got["tasks/ioi.yaml"]
    assert recall["top1"] == recall["n"] == 28  # chosen so that every clean prompt is answered top-1
    assert recall["positive"] == recall["n"]
    assert ioi["top1"] >= 0.9 * ioi["n"] and ioi["positive"] == ioi["n"]
