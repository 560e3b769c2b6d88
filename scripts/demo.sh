#!/usr/bin/env bash
# The main job: set up the environment, fetch the real offline assets, run `faast demo`.
# Extra arguments go to `faast demo` (see `faast demo --help`); a `--cache-dir DIR` among them is
# also where the assets are fetched (as FAAST_CACHE), so that the demo finds them there.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
cd "$FAAST_ROOT"
cache=""
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    case "${args[i]}" in
        --cache-dir=*) cache="${args[i]#--cache-dir=}" ;;
        --cache-dir) cache="${args[i + 1]:-}" ;;
    esac
done
if [[ -n "$cache" ]]; then
    FAAST_CACHE="$cache" "$FAAST_VENV/bin/faast" assets fetch --group demo
else
    "$FAAST_VENV/bin/faast" assets fetch --group demo
fi
"$FAAST_VENV/bin/faast" demo "$@"
