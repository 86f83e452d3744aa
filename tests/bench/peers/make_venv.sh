#!/usr/bin/env bash
# Create the peers venv for tests/bench/bench_peers.py (torch CPU + TransformerLens + transformers + gguf).
# Usage: bash tests/bench/peers/make_venv.sh [VENV_DIR]   (default: .venv-peers at the repo root; keep it out of git)
# Idempotent: re-running only installs what is missing.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
VENV="${1:-$ROOT/.venv-peers}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q -r "$ROOT/tests/bench/requirements-peers.txt" 2>&1 \
  | { grep -v "^WARNING: Location .* is ignored" || true; }
"$VENV/bin/python" - <<'PY'
import importlib.metadata, torch, transformers, transformer_lens, gguf
from transformer_lens import HookedTransformer, patching  # noqa: F401
assert "+cpu" in torch.__version__ or not torch.cuda.is_available(), torch.__version__
print(f"peers venv ok: torch {torch.__version__}, transformers {transformers.__version__}, "
      f"transformer_lens {importlib.metadata.version('transformer_lens')}")
PY
