#!/usr/bin/env bash
# The dev containers' post-create command: install Brook for development, migrate, seed.
# CI runs this same script in a fresh virtual environment (tests/test_devcontainer.py).
#
#   PYTHON       the interpreter to install into (default: python3 on PATH)
#   TORCH_INDEX  where torch comes from (default: scripts/torch-index.sh's choice for this
#                machine: the CPU-only build without an NVIDIA GPU). Empty: pip's indexes.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
TORCH_INDEX="${TORCH_INDEX-$(sh scripts/torch-index.sh)}"

# torch first, always exactly this version: the `local` extra pins the same one, so the
# next install keeps it instead of pulling another build.
"$PYTHON" -m pip install --quiet "torch==2.13.0" ${TORCH_INDEX:+--index-url "$TORCH_INDEX"}
"$PYTHON" -m pip install --quiet -e ".[dev,local]"

# The `brook` command just installed, next to this interpreter.
BROOK="$("$PYTHON" -c 'import sys, sysconfig; print(sysconfig.get_path("scripts"))')/brook"
[ -x "$BROOK" ] || BROOK="$(command -v brook)"

# DATABASE_URL unset: instance/brook.db (SQLTools' preset connection). The PostgreSQL
# configuration sets DATABASE_URL to its postgres service.
"$BROOK" db upgrade
# Demo conversations to browse in SQLTools (owner demo:brook-seed; see docs/devcontainer.md).
"$BROOK" db seed --reset --seed 1
