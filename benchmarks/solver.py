"""Solver benchmark: our streaming float64 compile + eigh solve vs the authors' SVD pseudoinverse.

Measures, on this machine, for n × d float32 keys and m-d values (default 50,000 × 1024 → 1024):

* ours:  GramStats.add (float64 SYRK/GEMM in row chunks) + solve (eigh, spectral cut τ = n^-α);
* SVD:   torch.linalg.pinv(keys, rtol=τ) @ values in float32 (the authors' route, full SVD);
* floor: one bare float64 KᵀK product, both as torch.mm (what a user writes; a GEMM) and as
         BLAS dsyrk (the cheapest exact way: half the flops);
* agreement: relative Frobenius difference of predictions on held-out queries between ours and
         a float64 SVD pseudoinverse of the same keys (the test oracle).

The keys have a power-law spectrum and unit-norm rows (like pooled encoder features); values are
dense Gaussian. Each timing is the best of ``--repeats`` runs. Results go to
``benchmarks/results/solver.json`` together with the hardware, versions and seed, and (when that
file is written) README's solver table from it; ``--table-only`` rewrites that table alone.

    python benchmarks/solver.py                # the issue's configuration (m=1024) and m=10
    python benchmarks/solver.py --n 5000 --d 256 --m 256 --repeats 1   # quick look

m=10 is the classification case: values are one-hot labels, so B costs little and the compile
is dominated by G, the same work as the floor.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from scipy.linalg import blas

from faast.environment import blas_summary, cpu_name
from faast.eval.report import update_doc_block
from faast.publish import write_public_json
from faast.solver import GramStats, power_law_tau


def best_of(repeats: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def make_keys(n: int, d: int, m: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    spectrum = torch.arange(1, d + 1, dtype=torch.float32) ** -0.75
    keys = torch.randn(n, d, generator=gen) * spectrum
    keys = torch.nn.functional.normalize(keys, dim=1)
    values = torch.randn(n, m, generator=gen)
    queries = torch.nn.functional.normalize(torch.randn(2000, d, generator=gen) * spectrum, dim=1)
    return keys, values, queries


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--d", type=int, default=1024)
    ap.add_argument("--m", default="1024,10", help="value dimension(s), comma-separated")
    ap.add_argument("--alpha", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "solver.json"))
    ap.add_argument(
        "--table-only",
        action="store_true",
        help="measure nothing: rewrite README's table from the published solver.json",
    )
    args = ap.parse_args()
    if not args.table_only:
        results = {}
        for m in [int(x) for x in args.m.split(",")]:
            results[f"m={m}"] = run_config(args, m)
        out = Path(args.out)
        write_public_json(out, results, indent=2)
        print(f"wrote {out}")
        if out.resolve() != PUBLISHED.resolve():
            return
    update_doc_block(README, "solver", markdown_table(PUBLISHED), "python benchmarks/solver.py")
    print("wrote the solver block of README.md")


#: The results README's table shows, and README.
PUBLISHED = Path(__file__).parent / "results" / "solver.json"
README = Path(__file__).resolve().parents[1] / "README.md"


def markdown_table(path: Path) -> str:
    """README's table of the solver benchmark, from its JSON ``path`` (one row per value width m)."""
    import json

    results = json.loads(path.read_text(encoding="utf-8"))
    first = next(iter(results.values()))["config"]
    lines = [
        f"| {first['n']:,} × {first['d']} keys | ours: add + solve | float32 SVD pinv (authors) | "
        "float64 KᵀK: torch.mm / dsyrk | speed-up vs SVD | agreement with float64 SVD |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results.values():
        t = r["seconds"]
        lines.append(
            f"| m = {r['config']['m']} values "
            f"| {t['ours']:.2f} s ({t['ours_add']:.2f} + {t['ours_solve']:.2f}) "
            f"| {t['svd_pinv_float32']:.2f} s | {t['floor_torch_mm']:.2f} s / {t['floor_dsyrk']:.2f} s "
            f"| {r['speedup_vs_svd']:.1f}× | {r['agreement_vs_float64_svd']:.1e} "
            f"(SVD route: {r['agreement_float32_svd_vs_float64_svd']:.1e}) |"
        )
    return "\n".join(lines)


def run_config(args: argparse.Namespace, m: int) -> dict:
    keys, values, queries = make_keys(args.n, args.d, m, args.seed)
    tau = power_law_tau(args.n, args.alpha, 1.0)
    print(
        f"\nn={args.n} d={args.d} m={m} float32 keys, tau=n^-{args.alpha}={tau:.3g}, "
        f"threads={torch.get_num_threads()}, cpu={cpu_name()}",
        flush=True,
    )

    def ours() -> torch.Tensor:
        stats = GramStats(args.d, m).add(keys, values)
        return stats.solve(tau)

    def ours_parts() -> tuple[float, float]:
        stats = GramStats(args.d, m)
        t0 = time.perf_counter()
        stats.add(keys, values)
        t1 = time.perf_counter()
        stats.solve(tau)
        return t1 - t0, time.perf_counter() - t1

    def svd_route() -> torch.Tensor:
        return (torch.linalg.pinv(keys, rtol=tau) @ values).T

    k64 = keys.double()
    k64_np = k64.numpy()

    t_ours = best_of(args.repeats, ours)
    parts = min((ours_parts() for _ in range(args.repeats)), key=sum)
    print(
        f"ours (compile + solve):        {t_ours:8.3f} s  (add {parts[0]:.3f} s, solve {parts[1]:.3f} s)",
        flush=True,
    )
    t_floor_mm = best_of(args.repeats, lambda: k64.T @ k64)
    print(f"floor: float64 KᵀK torch.mm:   {t_floor_mm:8.3f} s", flush=True)
    t_floor_syrk = best_of(args.repeats, lambda: blas.dsyrk(1.0, k64_np.T, trans=0))
    print(f"floor: float64 KᵀK dsyrk:      {t_floor_syrk:8.3f} s", flush=True)
    t_svd = best_of(max(1, args.repeats - 1), svd_route)
    print(f"SVD pinv route (float32):      {t_svd:8.3f} s", flush=True)

    # agreement with the float64 SVD oracle (same keys), on held-out queries
    w_ours = GramStats(args.d, m).add(keys, values).solve(tau, dtype=torch.float64)
    u, s, vh = torch.linalg.svd(k64, full_matrices=False)
    keep = s >= tau * s.max()
    w_ref = (vh[keep].T @ ((u[:, keep].T @ values.double()) / s[keep, None])).T
    q = queries.double()
    agreement = float(torch.linalg.norm(q @ w_ours.T - q @ w_ref.T) / torch.linalg.norm(q @ w_ref.T))
    w_svd32 = svd_route().double()
    agreement_svd32 = float(torch.linalg.norm(q @ w_svd32.T - q @ w_ref.T) / torch.linalg.norm(q @ w_ref.T))
    print(
        f"agreement with float64 SVD:    {agreement:.2e} (authors' float32 SVD route: {agreement_svd32:.2e})"
    )

    result = {
        "command": shlex.join(["python", "benchmarks/solver.py", *sys.argv[1:]]),
        "config": vars(args) | {"m": m, "tau": tau, "kept_rank": int(keep.sum())},
        "hardware": {
            "cpu": cpu_name(),
            "torch_threads": torch.get_num_threads(),
            "cores": os.cpu_count(),
            "platform": platform.platform(),
            "blas": blas_summary(),
        },
        "versions": {"torch": torch.__version__, "numpy": np.__version__},
        "seconds": {
            "ours": t_ours,
            "ours_add": parts[0],
            "ours_solve": parts[1],
            "floor_torch_mm": t_floor_mm,
            "floor_dsyrk": t_floor_syrk,
            "svd_pinv_float32": t_svd,
        },
        "speedup_vs_svd": t_svd / t_ours,
        "ratio_to_floor_torch_mm": t_ours / t_floor_mm,
        "ratio_to_floor_dsyrk": t_ours / t_floor_syrk,
        "agreement_vs_float64_svd": agreement,
        "agreement_float32_svd_vs_float64_svd": agreement_svd32,
    }
    print(
        f"speed-up vs SVD route: {result['speedup_vs_svd']:.2f}x (target >= 5x); "
        f"ratio to floor: {result['ratio_to_floor_torch_mm']:.2f}x torch.mm, "
        f"{result['ratio_to_floor_dsyrk']:.2f}x dsyrk (target <= 2.5x); "
        f"agreement {agreement:.1e} (target <= 1e-8)"
    )
    return result


if __name__ == "__main__":
    main()
