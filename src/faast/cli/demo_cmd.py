"""``faast demo``: few-shot and full-data image classification on a frozen encoder, every method.

Encodes the dataset once with the frozen encoder (cached on disk), then runs the few-shot and
full-data protocols of :mod:`faast.eval.protocols` for FAAST and the baselines, prints the
tables and writes results.csv / results.png / results.md / run.json to ``--out``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from collections import Counter
from pathlib import Path

from faast.assets.core import CACHE_DIR_HELP

DEFAULT_SHOTS = "1,5,16,64"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="few-shot and full-data classification on a frozen encoder: FAAST vs every baseline",
        description="Fashion-MNIST on frozen EfficientNet-Lite0 features (offline assets; fetch them "
        "with `faast assets fetch --group demo`): FAAST, softmax and k-NN memories, a backprop linear "
        "probe, LogisticRegression and RidgeClassifier, in N-way K-shot episodes and on full data.",
    )
    g = p.add_argument_group("data and encoder")
    g.add_argument("--dataset", default="fashion-mnist", choices=["fashion-mnist", "cifar10"])
    g.add_argument(
        "--data-dir", default=None, help="directory with the dataset files (Fashion-MNIST: the four "
        "IDX files; CIFAR-10: cifar-10-batches-bin). Default for Fashion-MNIST: the fetched asset",
    )  # fmt: skip
    g.add_argument(
        "--encoder",
        default="efficientnet-lite0",
        help="efficientnet-lite0, clip:RN50/openai (open_clip), or pixels (the resized pixels: a baseline)",
    )
    g.add_argument("--resolution", type=int, default=64, help="encoder input size in pixels (default 64)")
    g.add_argument("--batch-size", type=int, default=128, help="images per encoder batch")
    g.add_argument("--device", default="cpu")
    g.add_argument("--cache-dir", default=None, help=CACHE_DIR_HELP)
    g.add_argument(
        "--no-feature-cache", action="store_true", help="re-encode instead of using cached features"
    )
    g.add_argument("--fetch", action="store_true", help="fetch missing assets instead of stopping")
    g.add_argument("--limit-train", type=int, default=None, help="use a stratified subset of the train split")
    g.add_argument("--limit-test", type=int, default=None, help="use a stratified subset of the test split")
    e = p.add_argument_group("protocol")
    e.add_argument(
        "--shots", default=DEFAULT_SHOTS, help=f"comma-separated K (default {DEFAULT_SHOTS}); '' = none"
    )
    e.add_argument("--episodes", type=int, default=100, help="test episodes per K (default 100)")
    e.add_argument("--val-episodes", type=int, default=10, help="validation episodes per K (default 10)")
    e.add_argument("--queries", type=int, default=20, help="query images per class per episode (default 20)")
    e.add_argument("--ways", type=int, default=None, help="classes per episode (default: all)")
    e.add_argument("--skip-full", action="store_true", help="skip the full-data protocol")
    e.add_argument(
        "--val-fraction", type=float, default=1 / 6, help="validation share of train (default 1/6)"
    )
    e.add_argument(
        "--methods", default=None, help="comma-separated subset of faast,softmax,knn,probe,logreg,ridge"
    )
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--threads", type=int, default=None, help="CPU threads for torch and BLAS (default: all)")
    o = p.add_argument_group("output")
    o.add_argument("--out", default="results/demo", help="results directory (default results/demo)")
    o.add_argument("--doc", default=None, help="also replace the generated block of this markdown page")
    o.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def _limit(dataset, n: int | None, seed: int, option: str):
    """A stratified subset of ``n`` images (``dataset`` itself when it holds no more); a clear error
    naming ``option`` for fewer images than classes (scikit-learn's said "test_size")."""
    if n is None or n >= len(dataset):
        return dataset
    if n < dataset.num_classes:
        raise ValueError(
            f"{option} {n}: a stratified subset needs at least one image per class ({dataset.num_classes})"
        )
    from faast.eval.splits import validation_split

    _, idx = validation_split(dataset.labels, n, seed)
    return dataset.subset(idx, split=f"{dataset.split}-subset{n}-seed{seed}")


def _machine() -> str:
    from faast.environment import machine_line

    load = " / ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return (
        f"{machine_line(torch_threads=True)}, "
        f"{platform.system()} {platform.release()}; load average at the end (1/5/15 min): {load}"
    )


def _warn_if_busy(threads: int | None) -> None:
    """On a machine already loaded by other jobs, several OpenMP threads per process slow torch
    down many times over (spinning threads compete for the cores); say so."""
    if threads is not None or not hasattr(os, "getloadavg"):
        return
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if cores > 1 and load > cores - 0.5:
        print(
            f"[faast] the machine is busy (load {load:.1f} on {cores} cores): timings will be noisy; "
            "--threads 1 is often much faster in this situation",
            file=sys.stderr,
        )


def _warn_if_narrow_blas() -> None:
    """The demo reports fit times: say so when OpenBLAS runs narrower kernels than the CPU has
    (:func:`faast.environment.blas_kernel_hints`), which slowed the float64 statistics 1.8× on
    the development VM."""
    from faast.environment import blas_kernel_hints

    for hint in blas_kernel_hints():
        print(f"[faast] timings: {hint}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from faast import distributed
    from faast.assets.core import cache_dir
    from faast.data import load_dataset
    from faast.encoders import build_encoder, encode_dataset
    from faast.eval.methods import build_methods
    from faast.eval.protocols import Features, run_fewshot, run_full
    from faast.eval.report import accuracy_table, comparison, cost_table, update_doc_block, write_report

    dist = distributed.init()  # under torchrun: the images are encoded in parallel
    started = time.perf_counter()
    try:
        shots = [int(s) for s in args.shots.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"--shots must be comma-separated integers, got {args.shots!r}") from None
    if not shots and args.skip_full:
        raise ValueError("nothing to run: --shots is empty and --skip-full is set")
    # checked here, before the data are loaded and encoded (minutes), not by the episode sampler
    if any(k < 1 for k in shots):
        raise ValueError(f"--shots must be >= 1 each, got {args.shots!r}")
    for option, value, least in (
        ("--episodes", args.episodes, 1),
        ("--val-episodes", args.val_episodes, 1),
        ("--queries", args.queries, 1),
        ("--ways", args.ways, 2),
        ("--batch-size", args.batch_size, 1),
    ):
        if value is not None and value < least:
            raise ValueError(f"{option} must be >= {least}, got {value}")
    method_keys = args.methods.split(",") if args.methods else None
    for option, values in (("--shots", shots), ("--methods", method_keys or [])):
        repeated = [v for v, n in Counter(values).items() if n > 1]
        if repeated:
            raise ValueError(
                f"{option} lists {', '.join(map(str, repeated))} more than once (each would run and be "
                "reported again): give each once"
            )
    if not 0 < args.val_fraction < 1:
        raise ValueError(f"--val-fraction must be a share in (0, 1), got {args.val_fraction}")
    if dist.is_main:  # the results are written after the whole run: a bad path fails now
        from faast.io import check_writable

        check_writable(Path(args.out) / "results.csv")
        if args.doc:
            check_writable(args.doc)
    methods = build_methods(method_keys)
    progress = not args.quiet and dist.is_main

    extra = (
        {"fetch": args.fetch, "cache": args.cache_dir}
        if args.dataset == "fashion-mnist"
        else {"download": args.fetch}  # cifar10: from its web site (needs internet)
    )
    train = _limit(
        load_dataset(args.dataset, "train", args.data_dir, **extra),
        args.limit_train,
        args.seed,
        "--limit-train",
    )
    test = _limit(
        load_dataset(args.dataset, "test", args.data_dir, **extra), args.limit_test, args.seed, "--limit-test"
    )
    val_size = max(train.num_classes, round(args.val_fraction * len(train)))
    if len(train) - val_size < train.num_classes:  # scikit-learn's split would say "train_size"
        raise ValueError(
            f"--val-fraction {args.val_fraction:g} of {len(train)} training images leaves "
            f"{len(train) - val_size} to learn from, fewer than the {train.num_classes} classes: "
            "lower it or use more images"
        )
    enc_kwargs = (
        {"fetch": args.fetch, "cache": args.cache_dir} if args.encoder == "efficientnet-lite0" else {}
    )
    encoder = build_encoder(args.encoder, resolution=args.resolution, device=args.device, **enc_kwargs)
    feature_cache = None if args.no_feature_cache else cache_dir(args.cache_dir) / "features"
    t0 = time.perf_counter()
    feats = [
        encode_dataset(
            encoder, ds, feature_cache, batch_size=args.batch_size, progress=progress, distributed=True
        )
        for ds in (train, test)
    ]
    encode_s = time.perf_counter() - t0
    if not dist.is_main:  # every process has the features; rank 0 alone runs the protocols
        return 0  # (the group is left at exit, together with rank 0)
    print(
        f"[faast] {args.dataset}: {len(train)} train / {len(test)} test images, {encoder.name} "
        f"@{encoder.resolution}px → {feats[0].shape[1]}-d features ({encode_s:.1f} s incl. cache)",
        flush=True,
    )
    data = Features(feats[0], train.labels, feats[1], test.labels)
    # what would distort the timings, said once the inputs are known to be good (an error before
    # this point is then the only line on stderr) and just before the protocols time the methods
    _warn_if_busy(args.threads)
    _warn_if_narrow_blas()

    results = []
    if shots:
        results += run_fewshot(
            methods, data, shots, episodes=args.episodes, val_episodes=args.val_episodes,
            queries=args.queries, ways=args.ways, val_size=val_size, seed=args.seed, progress=progress,
        )  # fmt: skip
    if not args.skip_full:
        results += run_full(methods, data, val_size=val_size, seed=args.seed, progress=progress)

    command = (
        "faast demo " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if sys.argv[1:2] == ["demo"] else ""
    )
    ways = args.ways or train.num_classes
    meta = {
        "dataset": args.dataset,
        "encoder": encoder.name,
        "resolution": encoder.resolution,
        "seed": args.seed,
        "encoder_identity": encoder.identity(),
        "data_desc": f"{args.dataset}, {len(train)} train / {len(test)} test images, "
        f"{train.num_classes} classes",
        "encoder_desc": f"{encoder.name} (frozen, ImageNet weights) at {encoder.resolution}×"
        f"{encoder.resolution} px, {feats[0].shape[1]}-d global-average-pooled features",
        "protocol_desc": (
            f"{ways}-way K-shot episodes, K ∈ {{{', '.join(map(str, shots))}}}, {args.episodes} test "
            f"episodes (support: train split, {args.queries} queries/class: test split) and full data "
            f"({len(train)} → {len(test)}); hyper-parameters chosen on a stratified validation split of "
            f"{val_size} train images ({args.val_episodes} validation episodes per K); seed {args.seed}"
            if shots
            else f"full data ({len(train)} → {len(test)}); validation split {val_size}; seed {args.seed}"
        ),
        "machine_desc": _machine(),
        "command": command or "faast demo",
        "title": f"{args.dataset} on frozen {encoder.name} @{encoder.resolution}px (seed {args.seed})",
        "full_per_class": len(train) / train.num_classes,
        "shots": shots,
        "episodes": args.episodes,
        "val_episodes": args.val_episodes,
        "queries": args.queries,
        "encode_s": encode_s,
        "total_s": time.perf_counter() - started,
    }
    paths = write_report(args.out, results, meta)
    print("\nAccuracy (%) ± 95 % CI\n" + accuracy_table(results))
    print("\nFit / predict time on cached features (few-shot: per episode), bytes kept at inference\n")
    print(cost_table(results))
    print("\nFAAST against the baselines:\n" + "\n".join(f"  {line}" for line in comparison(results)))
    print(f"\n[faast] wrote {', '.join(str(p) for p in paths.values())} ({meta['total_s']:.0f} s in all)")
    if args.doc:
        md = Path(paths["md"]).read_text(encoding="utf-8")
        rel = os.path.relpath(Path(args.out), Path(args.doc).parent)
        md = md.replace("](results.", f"]({rel}/results.")
        update_doc_block(args.doc, f"{args.dataset}-demo", md, meta["command"])
        print(f"[faast] updated the generated block of {args.doc}")
    return 0
