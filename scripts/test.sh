#!/usr/bin/env bash
# The test command: set up the environment, fetch the offline assets the tests use, lint, test.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -k solver`).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
cd "$FAAST_ROOT"
"$FAAST_PY" -m ruff check src tests benchmarks
"$FAAST_VENV/bin/faast" assets fetch --group tests
"$FAAST_PY" -m pytest "$@"
