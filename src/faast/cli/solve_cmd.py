"""``faast solve``: compile key/value pairs stored in a safetensors file into fast weights."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "solve",
        help="compile keys/values (safetensors) into a fast-weight matrix",
        description="Read tensors 'keys' (n, d) and 'values' (n, m) from a safetensors file, "
        "accumulate float64 statistics and write the fast weights W (m, d).",
    )
    p.add_argument("pairs", help="safetensors file with tensors 'keys' and 'values'")
    p.add_argument("--out", required=True, help="where to write W (safetensors, tensor 'weight')")
    p.add_argument(
        "--tau", default=None, help="relative cut, 'gcv' or 'auto' (leave-one-out) (default: c·n^-alpha)"
    )
    p.add_argument("--alpha", type=float, default=None, help="the power law's exponent (default 1)")
    p.add_argument("--c", type=float, default=None, help="the power law's scale (default 1)")
    p.add_argument("--ridge", default=None, help="ridge penalty, 'gcv' or 'auto' (instead of truncation)")
    p.set_defaults(func=run)


def _number_or_choice(x: str | None, option: str = "--tau") -> float | str | None:
    """A number, or ``"gcv"`` / ``"auto"`` (chosen from the pairs), or None."""
    if x is None or x in ("gcv", "auto"):
        return x
    try:
        return float(x)
    except ValueError:
        raise ValueError(f"{option} must be a number, 'gcv' or 'auto', got {x!r}") from None


def run(args: argparse.Namespace) -> int:
    from faast.io import check_writable, load_tensors, save_tensors
    from faast.solver import GramStats

    check_writable(args.out, inputs=[args.pairs])
    tensors, _ = load_tensors(args.pairs)
    missing = {"keys", "values"} - tensors.keys()
    if missing:
        raise ValueError(f"{args.pairs} lacks tensor(s) {sorted(missing)}")
    keys, values = tensors["keys"], tensors["values"]
    if keys.ndim != 2 or values.ndim != 2:
        raise ValueError(f"keys and values must be 2-D, got {tuple(keys.shape)} and {tuple(values.shape)}")
    stats = GramStats(keys.shape[1], values.shape[1]).add(keys, values)
    ridge = _number_or_choice(args.ridge, "--ridge")
    w, info = stats.solve_with_info(_number_or_choice(args.tau), alpha=args.alpha, c=args.c, ridge=ridge)
    save_tensors(args.out, {"weight": w}, {"info": repr(info)}, kind="weights")
    print(f"solved {stats.count} pairs ({keys.shape[1]} → {values.shape[1]}): {info}")
    print(f"wrote {args.out}")
    return 0
