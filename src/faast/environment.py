"""What the numerical environment of this process is, and what in it slows faast down.

faast's CPU work runs in three BLAS/LAPACK libraries: torch's (MKL or OpenBLAS, inside torch) and
the OpenBLAS builds that NumPy and SciPy each bring (the float64 statistics, the
eigendecompositions, the logistic steps' row passes). OpenBLAS picks its kernels at load time from
the CPU's model, unless ``OPENBLAS_CORETYPE`` names them; a CPU newer than the build gets a
fallback. The AMD EPYC development VM (family 26, AVX-512) sets ``OPENBLAS_CORETYPE=Haswell`` and
``OPENBLAS_L2_SIZE=512`` in every shell (older OpenBLAS builds computed wrong results or crashed on
it); that held NumPy's and SciPy's OpenBLAS 0.3.31/0.3.30 to their AVX2 kernels, where with both
unset they choose their AVX-512 (``SkylakeX``) ones, which made the float64 statistics and the
full-data fits 1.7–1.8× faster (``benchmarks/blas_kernels.py``; docs/reliability.md, "BLAS
kernels").
:func:`blas_kernel_hints` says when an OpenBLAS runs narrower kernels than the CPU has, and why;
``faast env`` prints everything here.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import torch
from threadpoolctl import threadpool_info

__all__ = [
    "BlasLibrary",
    "blas_kernel_hints",
    "blas_libraries",
    "blas_summary",
    "cpu_capability",
    "cpu_name",
    "describe",
    "describe_cpuinfo",
    "machine_line",
]

#: OpenBLAS kernel sets (threadpoolctl's ``architecture``, lower case) built on AVX-512.
OPENBLAS_AVX512_CORES = frozenset({"skylakex", "cooperlake", "sapphirerapids"})
#: The kernel set to name in the hint: the one every AVX-512 (F/BW/DQ/VL) CPU can run.
OPENBLAS_AVX512_CORETYPE = "SkylakeX"


@dataclass(frozen=True)
class BlasLibrary:
    """One BLAS library loaded in this process (threadpoolctl's view of it)."""

    api: str  #: the implementation: "openblas", "mkl", "blis", ...
    version: str | None
    architecture: str | None  #: the kernel set it chose (OpenBLAS, BLIS), else None
    threads: int
    file: str  #: the shared library's file name (not its directory)


def cpu_name() -> str:
    """The CPU's model name, with its family and model numbers where /proc/cpuinfo gives them (a
    virtual machine often shows a bare "AMD EPYC" for CPUs of several generations, whose timings
    differ: "AMD EPYC (family 25, model 17)"); the platform's processor or machine elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            text = fh.read()
    except OSError:
        text = ""
    return describe_cpuinfo(text) or platform.processor() or platform.machine()


def describe_cpuinfo(text: str) -> str | None:
    """The first processor's "model name" in /proc/cpuinfo ``text``, followed by "(family F, model
    M)" when both fields are there; None without a model name."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break  # the first processor's block is enough
            continue
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name")
    if not name:
        return None
    family, model = fields.get("cpu family"), fields.get("model")
    return f"{name} (family {family}, model {model})" if family and model else name


def cpu_capability() -> str:
    """The widest vector instruction set torch found on this CPU ("AVX512", "AVX2", "DEFAULT", ...;
    "unknown" with a torch too old to say)."""
    get = getattr(torch.backends.cpu, "get_cpu_capability", None)
    return str(get()) if get is not None else "unknown"


def blas_libraries() -> list[BlasLibrary]:
    """The BLAS libraries of this process, in threadpoolctl's order: NumPy's and SciPy's (whose
    linear algebra, which faast's solver uses, is imported first so that its OpenBLAS is loaded
    and listed), and any other loaded so far."""
    import scipy.linalg  # noqa: F401

    found = []
    for info in threadpool_info():
        if info.get("user_api") != "blas":
            continue
        found.append(
            BlasLibrary(
                api=str(info.get("internal_api")),
                version=info.get("version"),
                architecture=info.get("architecture"),
                threads=int(info.get("num_threads") or 1),
                file=os.path.basename(str(info.get("filepath", ""))),
            )
        )
    return found


def blas_kernel_hints(
    libraries: list[BlasLibrary] | None = None,
    capability: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> list[str]:
    """Advice (one line, naming them all) when OpenBLAS libraries run narrower kernels than the CPU
    has: on a CPU with AVX-512 (``capability``, torch's view; this CPU's by default), an OpenBLAS
    whose kernel set is not an AVX-512 one was either held to it by ``OPENBLAS_CORETYPE`` in
    ``environ`` (``os.environ`` by default) or did not recognise the CPU. Empty when nothing is
    amiss."""
    libraries = blas_libraries() if libraries is None else libraries
    capability = cpu_capability() if capability is None else capability
    environ = os.environ if environ is None else environ
    if capability.upper() != "AVX512":
        return []
    narrow = [
        lib
        for lib in libraries
        if lib.api == "openblas" and (lib.architecture or "").lower() not in {"", *OPENBLAS_AVX512_CORES}
    ]
    if not narrow:
        return []
    names = ", ".join(
        f"OpenBLAS {lib.version} ({lib.file})" if lib.version else f"OpenBLAS ({lib.file})" for lib in narrow
    )
    kernels = " / ".join(dict.fromkeys(str(lib.architecture) for lib in narrow))
    forced = environ.get("OPENBLAS_CORETYPE")
    if forced:
        cause = (
            f"because OPENBLAS_CORETYPE={forced} is set in the environment. Unless an OpenBLAS "
            "build here needs it (some older ones fail on newer CPUs), start Python without it (and "
            "without OPENBLAS_L2_SIZE)"
        )
    else:
        cause = (
            "not recognising this CPU. Start Python with "
            f"OPENBLAS_CORETYPE={OPENBLAS_AVX512_CORETYPE} in the environment"
        )
    return [
        f"{names}: {kernels} kernels on a CPU with AVX-512, {cause} to use the AVX-512 kernels "
        "(1.7–1.8× faster for faast's float64 statistics and full-data fits on the AMD EPYC "
        'development VM; docs/reliability.md, "BLAS kernels").'
    ]


def blas_summary(libraries: list[BlasLibrary] | None = None) -> str:
    """One phrase for a results file's machine line, e.g. "OpenBLAS 0.3.30/0.3.31 SkylakeX
    kernels": the loaded BLAS libraries grouped by implementation and kernel set."""
    libraries = blas_libraries() if libraries is None else libraries
    names = {"openblas": "OpenBLAS", "mkl": "MKL", "blis": "BLIS"}
    groups: dict[tuple[str, str | None], list[str]] = {}
    for lib in libraries:
        versions = groups.setdefault((lib.api, lib.architecture), [])
        if lib.version and lib.version not in versions:
            versions.append(lib.version)
    parts = []
    for (api, architecture), versions in groups.items():
        kernels = architecture and f"{architecture} kernels"
        version = "/".join(sorted(versions))  # sorted: the same phrase whichever library loaded first
        parts.append(" ".join(p for p in (names.get(api, api), version, kernels) if p))
    return ", ".join(parts) or "no BLAS found"


def machine_line(*, torch_threads: bool = False) -> str:
    """The hardware and numerical libraries a results file's timings ran on, e.g. "AMD EPYC,
    2 CPUs, torch 2.13.0+cpu, OpenBLAS 0.3.30/0.3.31 SkylakeX kernels"; ``torch_threads`` adds
    torch's thread count ("torch 2.13.0+cpu with 1 threads"). Callers append their own extras."""
    torch_part = f"torch {torch.__version__}"
    if torch_threads:
        torch_part += f" with {torch.get_num_threads()} threads"
    return f"{cpu_name()}, {os.cpu_count()} CPUs, {torch_part}, {blas_summary()}"


def describe() -> dict:
    """Everything above, plus versions, threads and devices, as a JSON-ready dict."""
    import numpy as np
    import scipy

    from faast import __version__

    libraries = blas_libraries()
    cuda = torch.cuda.is_available()
    return {
        "faast": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "cpu_capability": cpu_capability(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_blas": "MKL" if torch.backends.mkl.is_available() else "other",
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "blas": [asdict(lib) for lib in libraries],
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
        "cuda": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
        "hints": blas_kernel_hints(libraries),
    }
