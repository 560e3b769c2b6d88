#!/usr/bin/env bash
# Float64 eigh at d = 1024 and 2048 on one thread (docs/distributed.md, "The eigendecomposition"):
# the part of a distributed solve that every rank repeats. The wall times of data-parallel
# learning with 1 and 2 processes are `python benchmarks/distributed_scaling.py`.
# PYTHON: the interpreter to use (default: python).
set -euo pipefail
PY=${PYTHON:-python}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export OMP_NUM_THREADS=1 PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
uptime
"$PY" - <<'PYEOF'
import time

import torch

torch.set_num_threads(1)
for d in (1024, 2048):
    a = torch.randn(d, d, dtype=torch.float64)
    g = a @ a.T
    t = time.perf_counter()
    torch.linalg.eigh(g)
    print(f"eigh float64 d={d}, 1 thread: {time.perf_counter() - t:.2f} s", flush=True)
PYEOF
uptime
