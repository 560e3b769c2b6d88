"""``faast env``: the numerical environment (versions, threads, BLAS kernels, devices) and what in
it slows faast down (:mod:`faast.environment`)."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "env",
        help="show versions, threads, BLAS libraries and their kernels, devices; hint at slow settings",
        description="Print what faast runs on: versions, the CPU and its vector instructions, torch's "
        "threads, each BLAS library loaded (NumPy's, SciPy's) with the kernels it chose, GPUs, and "
        "advice where a setting slows faast down (e.g. OpenBLAS not recognising an AVX-512 CPU). "
        "Paste it into a bug report or beside a timing.",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from faast.environment import describe

    info = describe()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"faast {info['faast']}, Python {info['python']}, {info['platform']}")
    cpu = f"{info['cpu']}, {info['cpu_count']} logical CPUs"
    print(f"CPU: {cpu}, vector instructions {info['cpu_capability']}")
    print(f"torch {info['torch']} ({info['torch_threads']} threads, BLAS: {info['torch_blas']})")
    print(f"NumPy {info['numpy']}, SciPy {info['scipy']}")
    for lib in info["blas"]:
        kernels = f", {lib['architecture']} kernels" if lib["architecture"] else ""
        version = f" {lib['version']}" if lib["version"] else ""
        print(f"  BLAS {lib['api']}{version}{kernels}, {lib['threads']} threads ({lib['file']})")
    if info["openblas_coretype"]:
        print(f"environment: OPENBLAS_CORETYPE={info['openblas_coretype']}")
    print("GPUs: " + (", ".join(info["cuda"]) if info["cuda"] else "none"))
    for hint in info["hints"]:
        print(f"hint: {hint}")
    return 0
