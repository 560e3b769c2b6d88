#!/usr/bin/env bash
# Wall time of data-parallel learning on this machine with 1 and 2 processes (docs/distributed.md):
# feature extraction + FaastClassifier fit (2,000 Fashion-MNIST images, EfficientNet-Lite0 @64px)
# and `faast lm learn` (SmolLM2-135M-Instruct, the first 30,000 characters of Persuasion), twice
# each, one thread per process; then float64 eigh at d = 1024 and 2048 on one thread.
# Needs the offline assets (fashion-mnist, efficientnet-lite0, smollm2-135m-instruct, austen-novels).
# PYTHON: the interpreter to use (default: python).
set -euo pipefail
PY=${PYTHON:-python}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
CACHE=${FAAST_CACHE:-$HOME/.cache/faast}
TMP=$(mktemp -d)
TEXT="$TMP/persuasion-30k.txt"
head -c 30000 "$CACHE/austen-novels/texts/persuasion.txt" > "$TEXT"
for rep in 1 2; do
  uptime
  "$PY" benchmarks/distributed_fit.py --limit 2000 --test 1000
  uptime
  "$PY" -m torch.distributed.run --nproc_per_node 2 benchmarks/distributed_fit.py --limit 2000 --test 1000
done
for rep in 1 2; do
  uptime
  /usr/bin/time -f "wall %e s" "$PY" -m faast lm learn --model smollm2 --text "$TEXT" \
    --out "$TMP/fw1.safetensors" --window 256 --threads 1
  uptime
  /usr/bin/time -f "wall %e s" "$PY" -m torch.distributed.run --nproc_per_node 2 -m faast lm learn \
    --model smollm2 --text "$TEXT" --out "$TMP/fw2.safetensors" --window 256 --threads 1
done
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
rm -rf "$TMP"
