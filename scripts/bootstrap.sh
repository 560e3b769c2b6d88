#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment and install faast with everything the
# demo and the tests need. Sourced by scripts/demo.sh and scripts/test.sh; safe to re-run (it
# reinstalls only when pyproject.toml or the torch spec changed).
#
#   FAAST_VENV        where the environment lives            (default: <repo>/.venv)
#   FAAST_TORCH_SPEC  the torch requirement installed first  (default: torch==2.13.0, which this
#                     project's machines have as a local CPU wheel; installing it first keeps pip
#                     from pulling a multi-GB CUDA build)
#   PYTHON            interpreter used to create the venv    (default: python3, needs >= 3.10)
set -euo pipefail
FAAST_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FAAST_VENV="${FAAST_VENV:-$FAAST_ROOT/.venv}"
FAAST_TORCH_SPEC="${FAAST_TORCH_SPEC:-torch==2.13.0}"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$FAAST_VENV/bin/python" ]; then
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
    || { echo "faast needs Python >= 3.10 (found $("$PYTHON" --version))" >&2; exit 1; }
  echo "[faast] creating virtual environment $FAAST_VENV"
  "$PYTHON" -m venv "$FAAST_VENV"
fi
FAAST_PY="$FAAST_VENV/bin/python"
want="$(sha256sum "$FAAST_ROOT/pyproject.toml" | cut -d' ' -f1) $FAAST_TORCH_SPEC"
stamp="$FAAST_VENV/.faast-install-stamp"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[faast] installing $FAAST_TORCH_SPEC, then faast[lm,vision,text,test] (editable)"
  # --no-cache-dir: the wheels are installed once; a copy in pip's cache only takes disk (a CI run
  # once ran out of space while installing torch)
  "$FAAST_PY" -m pip install -q --no-cache-dir --disable-pip-version-check "$FAAST_TORCH_SPEC" 2> >(grep -v "is ignored" >&2)
  "$FAAST_PY" -m pip install -q --no-cache-dir --disable-pip-version-check -e "$FAAST_ROOT[lm,vision,text,test]" 2> >(grep -v "is ignored" >&2)
  echo "$want" > "$stamp"
fi
export FAAST_PY FAAST_ROOT FAAST_VENV
