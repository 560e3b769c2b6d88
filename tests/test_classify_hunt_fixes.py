"""``faast classify`` on inputs a bug hunt found mishandled: a pandas index column learned as a
feature, text labels split by the spaces around them, a float32 classifier that no CSV could
extend or forget from, the logistic fit's summary, and flags that did nothing unseen."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from faast import FaastClassifier
from faast.classifier_io import load_classifier
from faast.cli import main
from tests.test_classify_text_cli import sentences, tiny_text_encoder


def _run(*argv) -> int:
    return main(["classify", *map(str, argv)])


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _write_features_csv(path, X, y, *, index: str | None = None, delimiter: str = ","):
    """X (n, d) and labels y as a features CSV (f0.., label); with ``index``, a first column of row
    numbers headed ``index``, as pandas' ``DataFrame.to_csv`` writes it ("" by default)."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh, delimiter=delimiter)
        names = [f"f{i}" for i in range(X.shape[1])]
        out.writerow(([index] if index is not None else []) + names + ["label"])
        for i, (row, label) in enumerate(zip(X, y, strict=True)):
            out.writerow(([10 + i] if index is not None else []) + [f"{v!r}" for v in row.tolist()] + [label])
    return path


def _blobs(n: int = 24, d: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    return rng.normal(size=(n, d)) + 2 * np.eye(2, d)[y], np.array(["a", "b"])[y]


# ---------------------------------------------------------------- 1. a pandas index column
@pytest.mark.parametrize("delimiter", [",", "\t"])
def test_an_unnamed_first_column_a_pandas_index_is_refused_not_learned(tmp_path, capsys, delimiter):
    """DataFrame.to_csv writes its index as a first column headed "": it was learned as one more
    feature (the row number). It is refused, saying how to write the file; the index named and
    passed as --id-column names the rows instead."""
    X, y = _blobs()
    indexed = _write_features_csv(tmp_path / "indexed.csv", X, y, index="", delimiter=delimiter)
    assert _run("fit", indexed, "--model", tmp_path / "m") == 1
    err = capsys.readouterr().err
    assert (
        "indexed.csv: the first column has no name in the header, as pandas writes a DataFrame's index" in err
    )
    assert "write the file with index=False" in err and "pass --id-column id" in err
    assert not (tmp_path / "m").exists()
    named = _write_features_csv(tmp_path / "named.csv", X, y, index="id", delimiter=delimiter)
    assert _run("fit", named, "--model", tmp_path / "m", "--id-column", "id") == 0
    clf, meta = load_classifier(tmp_path / "m")
    assert clf.n_features_in_ == 3 and meta["source"]["columns"] == ["f0", "f1", "f2"]
    assert (
        _run("predict", named, "--model", tmp_path / "m", "--id-column", "id", "--out", tmp_path / "p.csv")
        == 0
    )
    assert [r["id"] for r in _read_csv(tmp_path / "p.csv")] == [str(10 + i) for i in range(len(y))]


def test_a_column_without_a_name_elsewhere_is_named_by_position(tmp_path, capsys):
    """A separator at the end of the header (and of every row) made a column "" of empty cells."""
    (tmp_path / "t.csv").write_text("f0,f1,label,\n1,0,a,\n0,1,b,\n", encoding="utf-8")
    assert _run("fit", tmp_path / "t.csv", "--model", tmp_path / "m") == 1
    assert "t.csv: column 4 has no name in the header ['f0', 'f1', 'label', '']" in capsys.readouterr().err


# ---------------------------------------------------------------- 2. text labels and spaces
@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    return tiny_text_encoder(tmp_path_factory.mktemp("enc") / "tiny-bert")


def test_text_labels_are_read_without_the_spaces_around_them(tmp_path, encoder_dir, capsys):
    """ ", " between a CSV's fields, or a stray space after a TSV's label, made "good" and " good"
    two classes (4 classes of 2): labels are stripped, as a features CSV's are; a label of spaces
    only is refused as empty, naming the example; predict scores " pos" against the class pos."""
    rows = sentences(12, 0)
    spaced = [(text, f" {label}" if i % 3 == 0 else label) for i, (text, label) in enumerate(rows)]
    table = tmp_path / "t.csv"
    table.write_text("input,output\n" + "".join(f"{t},{y}\n" for t, y in spaced), encoding="utf-8")
    tsv = tmp_path / "t.tsv"
    tsv.write_text("".join(f"{t}\t{y}{' ' if i % 2 else ''}\n" for i, (t, y) in enumerate(rows)))
    common = ["--encoder", encoder_dir, "--no-feature-cache"]
    for data, model in ((table, tmp_path / "m1"), (tsv, tmp_path / "m2")):
        assert _run("fit", data, "--model", model, *common) == 0
        clf = load_classifier(model)[0]
        assert clf.classes_.tolist() == ["neg", "pos"] and clf.class_count_.tolist() == [6, 6]
    assert np.array_equal(
        load_classifier(tmp_path / "m1")[0].coef_, load_classifier(tmp_path / "m2")[0].coef_
    )
    out = tmp_path / "p.csv"
    assert _run("predict", table, "--model", tmp_path / "m1", "--out", out, "--no-feature-cache") == 0
    assert [r["label"] for r in _read_csv(out)] == [y for _, y in rows]
    assert "on the 12 with a known class" in capsys.readouterr().out
    blank = tmp_path / "b.tsv"
    blank.write_text("a good film\tpos\nso dull\t  \n", encoding="utf-8")
    assert _run("fit", blank, "--model", tmp_path / "m3", *common) == 1
    assert "b.tsv: example 2 has an empty label (1 in all" in capsys.readouterr().err


# ---------------------------------------------------------------- 3. float32 and float64 files
def test_partial_fit_and_forget_take_features_of_another_dtype_than_the_fit(tmp_path, capsys):
    """A classifier fitted on float32 features (a .npz, as encoders write them) could not be
    extended or forgotten from a CSV (float64): "cast the batch, or reset() first". The features
    are read in the dtype the classifier learned in; the CSV's numbers of the float32 values give
    back exactly the fit, and a float64 classifier takes a float32 file the same way."""
    X, y = _blobs(40, 4, seed=1)
    X32 = X.astype(np.float32)
    np.savez(tmp_path / "a.npz", features=X32[:20], labels=y[:20])
    more = _write_features_csv(tmp_path / "b.csv", X32[20:].astype(np.float64), y[20:])
    model = tmp_path / "m"
    assert _run("fit", tmp_path / "a.npz", "--model", model) == 0
    fitted = load_classifier(model)[0]
    assert _run("partial-fit", more, "--model", model) == 0, capsys.readouterr().err
    clf = load_classifier(model)[0]
    ref = FaastClassifier().fit(X32, y)
    assert clf.class_count_.tolist() == ref.class_count_.tolist() == [20, 20]
    np.testing.assert_allclose(clf.coef_, ref.coef_, rtol=1e-6, atol=1e-9)
    assert _run("forget", more, "--model", model) == 0, capsys.readouterr().err
    clf = load_classifier(model)[0]
    assert clf.class_count_.tolist() == [10, 10]
    np.testing.assert_allclose(clf.coef_, fitted.coef_, rtol=1e-6, atol=1e-9)
    assert _run("predict", more, "--model", model, "--out", tmp_path / "p.csv") == 0
    assert [r["predicted"] for r in _read_csv(tmp_path / "p.csv")] == fitted.predict(X32[20:]).tolist()
    np.save(tmp_path / "x32.npy", X32[20:])
    np.save(tmp_path / "y.npy", y[20:])
    assert _run("fit", more, "--model", tmp_path / "m64") == 0
    assert (
        _run("partial-fit", tmp_path / "x32.npy", "--labels", tmp_path / "y.npy", "--model", tmp_path / "m64")
        == 0
    )
    twice = FaastClassifier().fit(np.vstack([X32[20:], X32[20:]]).astype(np.float64), np.r_[y[20:], y[20:]])
    np.testing.assert_allclose(load_classifier(tmp_path / "m64")[0].coef_, twice.coef_, rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------- extras
def test_a_logistic_fit_prints_the_c_it_used_not_the_least_squares_cut(tmp_path, capsys):
    """fit --loss logistic printed "cut ridge=auto → ridge ρ=...", a penalty it did not use."""
    X, y = _blobs()
    data = _write_features_csv(tmp_path / "t.csv", X, y)
    assert _run("fit", data, "--model", tmp_path / "m", "--loss", "logistic", "--C", "2") == 0
    printed = capsys.readouterr().out
    assert "3 features, loss logistic → C=2 (given, " in printed
    assert "cut " not in printed and "ridge ρ" not in printed
    assert _run("fit", data, "--model", tmp_path / "m", "--loss", "logistic") == 0
    chosen = load_classifier(tmp_path / "m")[0].C_
    assert f"loss logistic → C={chosen:.3g} (auto, " in capsys.readouterr().out
    assert _run("fit", data, "--model", tmp_path / "m") == 0
    assert "cut ridge=auto → ridge ρ=" in capsys.readouterr().out


def _array_files(tmp_path):
    """Features x.npy (24, 3) and labels y.npy (a and b), with their --labels arguments."""
    X, y = _blobs()
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "y.npy", y)
    return X, y, ["--labels", tmp_path / "y.npy"]


def test_an_id_column_for_an_array_file_is_refused(tmp_path, capsys):
    """--id-column was ignored for .npy/.npz/.safetensors: the rows were named 0, 1, ... all the same."""
    _, _, labels = _array_files(tmp_path)
    assert _run("fit", tmp_path / "x.npy", *labels, "--model", tmp_path / "m", "--id-column", "name") == 1
    err = capsys.readouterr().err
    assert (
        "x.npy: --id-column names a CSV column, and a .npy file has none (its rows are named 0, 1, ...)"
        in err
    )
    assert not (tmp_path / "m").exists()


def test_labels_replacing_those_a_features_file_holds_warn(tmp_path, capsys):
    """--labels replaced the labels a .npz or a CSV holds unseen: it still does, with a warning
    (and none where the file has no labels)."""
    X, _, labels = _array_files(tmp_path)
    assert _run("fit", tmp_path / "x.npy", *labels, "--model", tmp_path / "m") == 0
    assert "warning" not in capsys.readouterr().err
    other = np.char.upper(np.load(tmp_path / "y.npy"))  # the file's own labels, A and B: --labels a, b
    np.savez(tmp_path / "z.npz", features=X, labels=other)
    for data in (tmp_path / "z.npz", _write_features_csv(tmp_path / "z.csv", X, other)):
        assert _run("fit", data, *labels, "--model", tmp_path / "m") == 0
        err = capsys.readouterr().err
        assert (
            f"warning: {data} holds labels of its own; those of {tmp_path / 'y.npy'} (--labels) replace them"
            in err
        )
        assert load_classifier(tmp_path / "m")[0].classes_.tolist() == ["a", "b"]
