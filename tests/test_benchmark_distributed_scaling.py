"""benchmarks/distributed_scaling.py: its command lines, the parsing of what the runs print, the
comparison of fast-weight files and the table (the runs themselves need the offline models and
minutes: not run here)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import distributed_scaling as bench


def test_commands_run_each_job_on_one_process_or_under_torchrun(tmp_path):
    inputs = {"text": tmp_path / "t.txt", "examples": tmp_path / "e.tsv"}
    out = tmp_path / "o.safetensors"
    one = bench.command("lm learn", 1, inputs, out)
    two = bench.command("lm learn", 2, inputs, out)
    assert one[0] == sys.executable and "torch.distributed.run" not in one
    assert two[:5] == [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    assert one[1:] == two[5:]  # the same arguments either way
    assert one[one.index("--text") + 1] == str(inputs["text"]) and one[-2:] == ["--threads", "1"]
    task = bench.command("task learn", 1, inputs, out)
    assert task[task.index("--examples") + 1] == str(inputs["examples"])
    assert task[task.index("--folds") + 1] == "4"
    assert bench.command("classifier", 2, inputs, out)[-4:] == ["--limit", "2000", "--test", "1000"]
    with pytest.raises(ValueError, match="unknown job"):
        bench.command("nothing", 1, inputs, out)


def test_parse_reads_the_classifier_json_and_the_learning_time():
    line = (
        '{"processes": 2, "encode_s_per_rank": [2.4, 2.5], "fit_s_per_rank": [0.9, 0.87], '
        '"encode_plus_fit_s": 3.37, "test_accuracy": 0.832, "coef_checksum": 29.7}'
    )
    parsed = bench.parse("classifier", "noise\n" + line + "\n")
    assert parsed == {
        "encode+fit s": 3.37,
        "encode s": 2.5,
        "fit s": 0.9,
        "test accuracy": 0.832,
        "coef checksum": 29.7,
    }
    printed = "[faast] learning 7168 tokens\n[faast] 7140 pairs in 38.6 s (186 tok/s); wrote task 'default'\n"
    assert bench.parse("lm learn", printed) == {"learning s": 38.6}
    with pytest.raises(RuntimeError, match="no '\\[faast\\] N pairs in S s' line"):
        bench.parse("task learn", "[faast] learning 80 examples\n")


def test_relative_difference_of_two_files(tmp_path):
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    base = {"G": torch.tensor([[4.0, 1.0], [1.0, 2.0]], dtype=torch.float64), "n": torch.tensor([3])}
    save_file(base, str(a))
    save_file(base, str(b))
    assert bench.relative_difference(a, b) == 0.0
    save_file(
        {"G": base["G"] + torch.tensor([[0.0, 0.0], [0.0, 0.004]], dtype=torch.float64), "n": base["n"]},
        str(b),
    )
    assert bench.relative_difference(a, b) == pytest.approx(0.001)
    save_file({"G": base["G"]}, str(b))
    with pytest.raises(ValueError, match="different tensors"):
        bench.relative_difference(a, b)


def test_markdown_lists_every_run_and_the_ratio_of_medians():
    def runs(*values: float) -> list[dict[str, float]]:
        return [
            {"encode+fit s": v, "encode s": v - 1, "fit s": 0.5, "wall s": v, "learning s": v} for v in values
        ]

    result = {
        "runs": {"classifier": {1: runs(4.0, 5.0), 2: runs(3.0, 3.0)}},
        "checks": {"classifier: test accuracy": {1: [0.832], 2: [0.832]}},
    }
    lines = bench.markdown(result).splitlines()
    assert (
        "| classifier: feature extraction + fit, slowest process | 4.00 s, 5.00 s | 3.00 s, 3.00 s | 1.50× |"
        in lines
    )
    assert not any("lm learn" in line for line in lines)  # a job not run has no rows
    assert "- classifier: test accuracy: 1 process: [0.832]; 2 processes: [0.832]" in lines
