"""Data-parallel feature extraction + FaastClassifier fit: wall time for 1 and N processes.

Each process encodes its block of a stratified subset of the Fashion-MNIST train split with the
frozen EfficientNet-Lite0 (no feature cache), then ``FaastClassifier(distributed=True)`` sums the
statistics of every block with one all-reduce and solves; rank 0 scores the test subset and
prints one JSON line (times of the slowest process, accuracy, a checksum of the fast weights,
which must not depend on the number of processes).

    python benchmarks/distributed_fit.py --limit 2000
    torchrun --nproc_per_node 2 benchmarks/distributed_fit.py --limit 2000

Needs the offline assets (``faast assets fetch --group demo``). One torch thread per process.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

from faast import FaastClassifier, distributed
from faast.data import load_dataset
from faast.encoders import build_encoder, encode_dataset
from faast.eval.splits import validation_split


def subset(dataset, n: int, seed: int):
    """A stratified subset of n images (the whole split when n is larger)."""
    if n >= len(dataset):
        return dataset
    _, idx = validation_split(dataset.labels, n, seed)
    return dataset.subset(np.sort(idx), split=f"{dataset.split}-subset{n}-seed{seed}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=2000, help="train images (stratified subset)")
    parser.add_argument("--test", type=int, default=1000, help="test images scored by rank 0")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    d = distributed.init()
    train = subset(load_dataset("fashion-mnist", "train"), args.limit, args.seed)
    encoder = build_encoder("efficientnet-lite0", resolution=args.resolution, device="cpu")
    d.barrier()
    start = time.perf_counter()
    rows = d.shard_range(len(train))
    mine = train.subset(np.arange(rows.start, rows.stop))
    feats = encode_dataset(encoder, mine, None, batch_size=args.batch_size, progress=False)
    encoded = time.perf_counter()
    clf = FaastClassifier(distributed=True).fit(feats, mine.labels)
    fitted = time.perf_counter()
    times = d.all_gather_json([encoded - start, fitted - encoded])  # [encode s, fit s] per rank
    if d.is_main:
        test = subset(load_dataset("fashion-mnist", "test"), args.test, args.seed)
        acc = float(clf.score(encode_dataset(encoder, test, None, progress=False), test.labels))
        print(
            json.dumps(
                {
                    "processes": d.world_size,
                    "train_images": len(train),
                    "encode_s_per_rank": [round(e, 2) for e, _ in times],
                    "fit_s_per_rank": [round(f, 3) for _, f in times],
                    "encode_plus_fit_s": round(max(e + f for e, f in times), 2),
                    "test_accuracy": acc,
                    "coef_checksum": float(np.abs(clf.coef_).sum()),
                    "feature_dim": int(feats.shape[1]),
                    "load_average": os.getloadavg(),
                    "cpus": os.cpu_count(),
                    "torch": torch.__version__,
                }
            )
        )
    distributed.shutdown()


if __name__ == "__main__":
    main()
