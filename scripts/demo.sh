#!/usr/bin/env bash
# The main job: set up the environment, fetch the real offline assets, run `faast demo`.
# Extra arguments go to `faast demo` (see `faast demo --help`).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
cd "$FAAST_ROOT"
"$FAAST_VENV/bin/faast" assets fetch --group demo
"$FAAST_VENV/bin/faast" demo "$@"
