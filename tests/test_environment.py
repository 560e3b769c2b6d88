"""faast.environment and ``faast env``: the BLAS libraries, their kernels, and the hints."""

from __future__ import annotations

import json
import os

import pytest
import torch

from faast import environment
from faast.cli import main
from faast.environment import BlasLibrary, blas_kernel_hints, blas_libraries, blas_summary, describe


def _openblas(architecture: str | None, version: str = "0.3.31", file: str = "libopenblas.so") -> BlasLibrary:
    return BlasLibrary("openblas", version, architecture, 2, file)


def test_hint_when_the_environment_holds_openblas_to_avx2_kernels() -> None:
    hints = blas_kernel_hints(
        [_openblas("Haswell"), _openblas("Haswell", "0.3.30", "other.so")],
        "AVX512",
        {"OPENBLAS_CORETYPE": "Haswell"},
    )
    assert len(hints) == 1  # one line names both libraries
    assert "OpenBLAS 0.3.31 (libopenblas.so), OpenBLAS 0.3.30 (other.so)" in hints[0]
    assert "OPENBLAS_CORETYPE=Haswell is set" in hints[0]
    assert "OPENBLAS_L2_SIZE" in hints[0]


def test_hint_when_openblas_does_not_recognise_an_avx512_cpu() -> None:
    hints = blas_kernel_hints([_openblas("Zen")], "AVX512", {})
    assert len(hints) == 1
    assert "Zen kernels" in hints[0]
    assert "OPENBLAS_CORETYPE=SkylakeX" in hints[0]


@pytest.mark.parametrize(
    ("libraries", "capability"),
    [
        ([_openblas("SkylakeX")], "AVX512"),  # already the AVX-512 kernels
        ([_openblas("Cooperlake")], "AVX512"),
        ([_openblas("Haswell")], "AVX2"),  # the CPU has no wider kernels to offer
        ([BlasLibrary("mkl", "2024.0", None, 2, "libmkl_rt.so")], "AVX512"),  # not OpenBLAS
        ([_openblas(None)], "AVX512"),  # kernels unknown: nothing to say
        ([], "AVX512"),
    ],
)
def test_no_hint_when_nothing_is_amiss(libraries: list[BlasLibrary], capability: str) -> None:
    assert blas_kernel_hints(libraries, capability, {}) == []


def test_summary_groups_libraries_by_kernels() -> None:
    libraries = [_openblas("SkylakeX", "0.3.31"), _openblas("SkylakeX", "0.3.30")]
    libraries.append(_openblas("Haswell", "0.3.2"))
    expected = "OpenBLAS 0.3.30/0.3.31 SkylakeX kernels, OpenBLAS 0.3.2 Haswell kernels"
    assert blas_summary(libraries) == expected
    assert blas_summary([BlasLibrary("mkl", None, None, 1, "libmkl_rt.so")]) == "MKL"
    assert blas_summary([]) == "no BLAS found"


def test_this_process_lists_numpys_blas() -> None:
    import numpy as np

    np.ones((2, 2)) @ np.ones((2, 2))  # NumPy's BLAS is loaded with NumPy
    found = blas_libraries()
    assert found, "threadpoolctl found no BLAS library in a process that has imported NumPy"
    assert all(lib.threads >= 1 and lib.file and "/" not in lib.file for lib in found)


def test_describe_is_json_ready_and_consistent() -> None:
    info = describe()
    again = json.loads(json.dumps(info))
    assert again["blas"] and {"api", "version", "architecture", "threads", "file"} <= set(again["blas"][0])
    assert again["cpu_capability"]
    assert isinstance(again["hints"], list)


def test_env_command_prints_text_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["env"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("faast ")
    assert "BLAS" in text and "GPUs:" in text
    assert main(["env", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["blas"] and info["torch"]


def test_demo_prints_the_hint_before_its_timings(monkeypatch, capsys: pytest.CaptureFixture[str]) -> None:
    from faast.cli import demo_cmd

    monkeypatch.setattr("faast.environment.blas_kernel_hints", lambda: ["OpenBLAS runs Haswell kernels"])
    demo_cmd._warn_if_narrow_blas()
    assert capsys.readouterr().err == "[faast] timings: OpenBLAS runs Haswell kernels\n"
    monkeypatch.setattr("faast.environment.blas_kernel_hints", lambda: [])
    demo_cmd._warn_if_narrow_blas()
    assert capsys.readouterr().err == ""


def test_capability_unknown_with_a_torch_that_cannot_say(monkeypatch) -> None:
    import torch

    from faast.environment import cpu_capability

    monkeypatch.delattr(torch.backends.cpu, "get_cpu_capability")
    assert cpu_capability() == "unknown"
    assert blas_kernel_hints([_openblas("Haswell")], None, {}) == []  # no advice without knowing the CPU


def test_machine_line_names_cpu_torch_and_blas(monkeypatch) -> None:
    """The one machine line the results files share (classifier benchmarks, task benchmarks, the
    demo), with the thread count when asked."""
    monkeypatch.setattr(environment, "blas_summary", lambda libraries=None: "OpenBLAS 9.9 Zen kernels")
    monkeypatch.setattr(environment, "cpu_name", lambda: "Test CPU")
    line = environment.machine_line()
    assert line == f"Test CPU, {os.cpu_count()} CPUs, torch {torch.__version__}, OpenBLAS 9.9 Zen kernels"
    threads = environment.machine_line(torch_threads=True)
    assert f"torch {torch.__version__} with {torch.get_num_threads()} threads, OpenBLAS" in threads


def test_cpu_description_names_family_and_model_of_the_first_processor() -> None:
    """Results files name the CPU generation: a VM's bare "AMD EPYC" covers several, whose BLAS
    timings differ (docs/classifier.md, "Speed")."""
    from faast.environment import describe_cpuinfo

    block = (
        "processor\t: {i}\nvendor_id\t: AuthenticAMD\ncpu family\t: {f}\nmodel\t\t: {m}\n"
        "model name\t: AMD EPYC\n"
    )
    text = block.format(i=0, f=25, m=17) + "\n" + block.format(i=1, f=26, m=2) + "\n"
    assert describe_cpuinfo(text) == "AMD EPYC (family 25, model 17)"
    assert describe_cpuinfo("processor : 0\nmodel name : Some ARM core\n") == "Some ARM core"
    assert describe_cpuinfo("processor : 0\nBogoMIPS : 50\n") is None
    assert describe_cpuinfo("") is None
