"""``faast solve``: compile key/value pairs stored in a safetensors file into fast weights."""

from __future__ import annotations

import argparse

#: The tensors ``faast solve`` reads from its pairs file; any other is named in a warning.
PAIR_TENSORS = ("keys", "values", "weights")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "solve",
        help="compile keys/values (safetensors) into a fast-weight matrix",
        description="Read tensors 'keys' (n, d), 'values' (n, m) and, when present, 'weights' (n,) "
        "(each pair's weight ≥ 0) from a safetensors file, accumulate float64 statistics and write the "
        "fast weights W (m, d).",
    )
    p.add_argument("pairs", help="safetensors file with tensors 'keys', 'values' and optionally 'weights'")
    p.add_argument("--out", required=True, help="where to write W (safetensors, tensor 'weight')")
    p.add_argument(
        "--cut",
        default=None,
        metavar="SPEC",
        help="the cut in any text form of faast.solver.Cut.parse: 'alpha=0.8', 'tau=0.01', 'gcv', 'auto', "
        "'ridge=1e-2', 'ridge=gcv', 'ridge=auto', 'prior=1024' (instead of --tau/--alpha/--c/--ridge)",
    )
    p.add_argument(
        "--tau", default=None, help="relative cut, 'gcv' or 'auto' (leave-one-out) (default: c·n^-alpha)"
    )
    p.add_argument("--alpha", type=float, default=None, help="the power law's exponent (default 1)")
    p.add_argument("--c", type=float, default=None, help="the power law's scale (default 1)")
    p.add_argument("--ridge", default=None, help="ridge penalty, 'gcv' or 'auto' (instead of truncation)")
    p.add_argument(
        "--dtype",
        choices=("float32", "float64"),
        default=None,
        help="dtype of W (default: the keys' dtype; float16/bfloat16 keys whose W does not fit them "
        "are refused with a hint to use this option)",
    )
    p.set_defaults(func=run)


def _number_or_choice(x: str | None, option: str = "--tau") -> float | str | None:
    """A number, or ``"gcv"`` / ``"auto"`` (chosen from the pairs; any case), or None."""
    if x is None:
        return None
    if x.strip().lower() in ("gcv", "auto"):
        return x.strip().lower()
    try:
        return float(x)
    except ValueError:
        raise ValueError(
            f"{option} must be a number, 'gcv' or 'auto', got {x!r} (other cuts: --cut SPEC)"
        ) from None


def _cut_arguments(args: argparse.Namespace) -> dict:
    """The cut keywords of ``GramStats.solve_with_info`` from ``--cut`` or the single options."""
    from faast.solver import Cut

    if args.cut is None:
        return {
            "cut": _number_or_choice(args.tau),
            "alpha": args.alpha,
            "c": args.c,
            "ridge": _number_or_choice(args.ridge, "--ridge"),
        }
    given = [f"--{name}" for name in ("tau", "alpha", "c", "ridge") if getattr(args, name) is not None]
    if given:
        raise ValueError(f"--cut says the whole cut; leave out {', '.join(given)}")
    try:
        return {"cut": Cut.parse(args.cut)}
    except (TypeError, ValueError) as exc:
        raise ValueError(f"--cut {args.cut!r}: {exc}") from None


def run(args: argparse.Namespace) -> int:
    import sys

    import torch

    from faast.io import check_writable, existing_file, load_tensors, save_tensors
    from faast.solver import GramStats

    existing_file(args.pairs, "pairs file")  # a folder is named as one, not as an input overwritten
    check_writable(args.out, inputs=[args.pairs])
    cut = _cut_arguments(args)  # before reading the pairs
    tensors, _ = load_tensors(args.pairs)
    missing = {"keys", "values"} - tensors.keys()
    if missing:
        raise ValueError(f"{args.pairs} lacks tensor(s) {sorted(missing)}")
    keys, values, weights = tensors["keys"], tensors["values"], tensors.get("weights")
    if keys.ndim != 2 or values.ndim != 2:
        raise ValueError(f"keys and values must be 2-D, got {tuple(keys.shape)} and {tuple(values.shape)}")
    if weights is not None and tuple(weights.shape) != (keys.shape[0],):
        raise ValueError(
            f"{args.pairs}: 'weights' must have shape ({keys.shape[0]},), one per pair; "
            f"got {tuple(weights.shape)}"
        )
    other = sorted(set(tensors) - set(PAIR_TENSORS))
    if other:
        print(
            f"[faast] warning: {args.pairs}: tensors {other} are not read (only {list(PAIR_TENSORS)})",
            file=sys.stderr,
        )
    stats = GramStats(keys.shape[1], values.shape[1]).add(keys, values, weights)
    dtype = None if args.dtype is None else getattr(torch, args.dtype)
    try:
        w, info = stats.solve_with_info(**cut, dtype=dtype)
    except ValueError as exc:
        if dtype is None and "dtype=" in str(exc):  # the library's advice, in the command line's terms
            raise ValueError(f"{exc} — on the command line: --dtype float32") from None
        raise
    save_tensors(args.out, {"weight": w}, {"info": repr(info)}, kind="weights")
    weighted = "" if weights is None else f", weighted (Σw = {float(weights.double().sum()):.6g})"
    print(f"solved {stats.count} pairs ({keys.shape[1]} → {values.shape[1]}{weighted}): {info}")
    print(f"wrote {args.out}")
    return 0
