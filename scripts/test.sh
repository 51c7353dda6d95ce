#!/usr/bin/env bash
# Install everything the tests need (idempotent), lint, then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1
ruff check src tests bench scripts  # lint first: seconds, where the suite takes minutes
python -m pytest "$@"
