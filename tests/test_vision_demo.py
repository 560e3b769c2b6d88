"""``faast demo`` end to end on a small slice of the real data and the real encoder, and its
errors."""

from __future__ import annotations

import csv

import pytest

from faast.cli import main


@pytest.mark.assets
def test_demo_on_a_real_slice_writes_every_output(tmp_path, capsys):
    doc = tmp_path / "docs" / "results.md"
    doc.parent.mkdir()
    doc.write_text("# Results\n", encoding="utf-8")
    out = tmp_path / "out"
    argv = [
        "demo", "--limit-train", "400", "--limit-test", "150", "--resolution", "32", "--shots", "1,5",
        "--episodes", "3", "--val-episodes", "2", "--queries", "5", "--threads", "1", "--no-feature-cache",
        "--quiet", "--out", str(out), "--doc", str(doc),
    ]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "400 train / 150 test images" in printed and "FAAST against the baselines" in printed
    rows = list(csv.DictReader(open(out / "results.csv", encoding="utf-8")))
    methods = {"faast", "softmax", "knn", "probe", "logreg", "ridge"}
    assert {(r["method"], r["regime"]) for r in rows} == {
        (m, g) for m in methods for g in ("1-shot", "5-shot", "full")
    }
    for r in rows:
        assert 0.0 <= float(r["accuracy"]) <= 1.0 and float(r["fit_s"]) > 0 and int(r["nbytes"]) > 0
        assert r["encoder"] == "efficientnet-lite0" and r["resolution"] == "32" and r["seed"] == "0"
    faast_full = next(r for r in rows if r["method"] == "faast" and r["regime"] == "full")
    assert float(faast_full["accuracy"]) > 0.5  # 10 classes; chance is 0.1
    assert (out / "results.png").stat().st_size > 10_000 and (out / "run.json").is_file()
    page = doc.read_text(encoding="utf-8")
    assert page.startswith("# Results") and "faast:fashion-mnist-demo:begin" in page
    assert "](../out/results.png)" in page


def test_demo_without_assets_names_the_fetch_command(tmp_path, capsys):
    code = main(["demo", "--cache-dir", str(tmp_path), "--quiet", "--out", str(tmp_path / "o")])
    assert code == 1
    assert "faast assets fetch" in capsys.readouterr().err


def test_demo_rejects_an_empty_run(tmp_path, capsys):
    assert main(["demo", "--shots", "", "--skip-full", "--out", str(tmp_path)]) == 1
    assert "nothing to run" in capsys.readouterr().err
    assert main(["demo", "--methods", "faast,magic", "--out", str(tmp_path)]) == 1
    assert "unknown method" in capsys.readouterr().err


def test_demo_rejects_a_validation_share_outside_zero_one(tmp_path, capsys):
    assert main(["demo", "--val-fraction", "1.5", "--out", str(tmp_path)]) == 1
    assert "--val-fraction must be a share in (0, 1), got 1.5" in capsys.readouterr().err


@pytest.mark.assets
@pytest.mark.parametrize(
    ("options", "message"),
    [  # scikit-learn's stratified split said "test_size = 5 should be greater or equal to ..."
        (
            ["--limit-train", "5"],
            "--limit-train 5: a stratified subset needs at least one image per class (10)",
        ),
        (
            ["--limit-test", "3"],
            "--limit-test 3: a stratified subset needs at least one image per class (10)",
        ),
        (
            ["--limit-train", "100", "--val-fraction", "0.99"],
            "--val-fraction 0.99 of 100 training images leaves 1 to learn from, fewer than the 10 classes",
        ),
    ],
)
def test_demo_names_subsets_too_small_for_the_classes(tmp_path, capsys, options, message):
    assert main(["demo", *options, "--quiet", "--no-feature-cache", "--out", str(tmp_path)]) == 1
    assert message in capsys.readouterr().err


def test_demo_checks_its_result_paths_before_the_run(tmp_path, capsys):
    """--out and --doc are written after the whole run (half an hour on the full data)."""
    (tmp_path / "notes").write_text("x")
    for option in ("--out", "--doc"):
        argv = ["demo", "--out", str(tmp_path / "o"), option, str(tmp_path / "notes" / "r.md")]
        assert main([*argv, "--cache-dir", str(tmp_path / "no-assets")]) == 1
        assert "notes is a file, not a folder" in capsys.readouterr().err
