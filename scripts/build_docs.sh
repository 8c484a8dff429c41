#!/usr/bin/env bash
# Build the docs site into site/ (offline): regenerate the reference pages from the code, then a strict MkDocs build.
# Needs the docs extra: .venv/bin/pip install -e ".[docs]"
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
"$PY" scripts/gen_reference.py
"$PY" -m mkdocs build --strict "$@"
