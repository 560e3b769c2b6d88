"""The classifier's record of examples learned: beyond 2·D examples (no rows kept) ``forget``
refuses an example never learned — other features, another label, another weight — where before
only the class counts were checked and it was subtracted without a word (issue #11: "forgetting
what was never learned is a clear error")."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from faast.classifier import FaastClassifier
from faast.classifier_record import ExampleRecord, example_digests
from faast.cli import main


def _data(n: int = 60, d: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    return rng.normal(size=(n, d)) + y[:, None], y


def _beyond() -> tuple[FaastClassifier, np.ndarray, np.ndarray]:
    X, y = _data()
    clf = FaastClassifier().fit(X, y)
    stats = clf.memory_.stats
    assert stats.kept_row_count < stats.count  # 60 examples of 4 design columns: no rows kept
    return clf, X, y


@pytest.mark.parametrize(
    "wrong",
    ["label", "features", "weight", "dtype"],
)
def test_an_example_never_learned_is_refused_beyond_2d(wrong):
    clf, X, y = _beyond()
    before = clf.decision_function(X)
    Xf, yf, w = X[:3].copy(), y[:3].copy(), None
    if wrong == "label":
        yf = (yf + 1) % 3  # learned inputs under other labels (class counts still allow it)
    elif wrong == "features":
        Xf[1, 0] += 1e-9
    elif wrong == "weight":
        w = np.full(3, 2.0)
    else:
        Xf = Xf.astype(np.float32)  # cast back to float64 by forget: other bits than learned
    with pytest.raises(ValueError, match="never learned"):
        clf.forget(Xf, yf, sample_weight=w)
    np.testing.assert_array_equal(clf.decision_function(X), before)  # nothing was forgotten


def test_forgetting_learned_examples_equals_a_refit_and_twice_is_refused():
    clf, X, y = _beyond()
    clf.forget(X[:5], y[:5])
    refit = FaastClassifier().fit(X[5:], y[5:])
    np.testing.assert_allclose(clf.decision_function(X), refit.decision_function(X), rtol=1e-8, atol=1e-10)
    assert len(clf._record) == 55
    with pytest.raises(ValueError, match="already forgotten"):
        clf.forget(X[:1], y[:1])


def test_weighted_examples_are_forgotten_with_their_weight():
    X, y = _data()
    w = np.linspace(0.5, 2.0, len(y))
    clf = FaastClassifier().fit(X, y, sample_weight=w)
    with pytest.raises(ValueError, match="never learned"):
        clf.forget(X[:2], y[:2])  # learned with weights 0.5, …: not weight 1
    clf.forget(X[:2], y[:2], sample_weight=w[:2])


def test_partial_fit_in_batches_records_what_fit_records():
    X, y = _data()
    whole = FaastClassifier().fit(X, y)
    parts = FaastClassifier()
    for start in range(0, 60, 7):
        parts.partial_fit(X[start : start + 7], y[start : start + 7], classes=[0, 1, 2])
    assert torch.equal(parts._record.to_tensor(), whole._record.to_tensor())


def test_the_record_is_saved_and_a_loaded_classifier_refuses_the_same(tmp_path):
    clf, X, y = _beyond()
    loaded = FaastClassifier.load(clf.save(tmp_path / "m"))
    assert torch.equal(loaded._record.to_tensor(), clf._record.to_tensor())
    with pytest.raises(ValueError, match="never learned"):
        loaded.forget(X[:2], (y[:2] + 1) % 3)
    loaded.forget(X[:2], y[:2])


def test_a_classifier_saved_without_a_record_forgets_as_before(tmp_path):
    clf, X, y = _beyond()
    clf._record = None  # as saved before the record
    loaded = FaastClassifier.load(clf.save(tmp_path / "m"))
    assert loaded._record is None
    with pytest.warns(UserWarning, match="cannot be verified"):  # and said so (s84)
        loaded.forget(X[:2], (y[:2] + 1) % 3)  # unverifiable beyond 2·D: subtracted, as before


def test_a_record_of_another_size_than_the_statistics_is_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    clf, _, _ = _beyond()
    folder = clf.save(tmp_path / "m")
    tensors = load_file(str(folder / "classifier.safetensors"))
    tensors["example_record"] = tensors["example_record"][:-1]
    save_file(tensors, str(folder / "classifier.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ValueError):  # the digest check or the record check: never a silent load
        FaastClassifier.load(folder)


def test_while_the_rows_are_kept_a_row_recomputed_within_rounding_is_forgotten():
    X, y = _data(n=6, d=5)
    clf = FaastClassifier().fit(X, y)
    assert clf.memory_.stats.kept_row_count == 6
    clf.forget(X[:1], y[:1])  # bit for bit: the record follows
    assert clf._record is not None and len(clf._record) == 5
    clf.forget(X[1:2] * (1 + 1e-15), y[1:2])  # within rounding: matched by the kept rows
    assert clf._record is None  # the record cannot say which one went: it is dropped


def test_the_command_line_refuses_examples_under_the_wrong_label(tmp_path, capsys):
    X, y = _data()
    labels = np.array(["a", "b", "c"])[y]

    def write(path: Path, rows: np.ndarray, names: np.ndarray) -> Path:
        lines = [",".join(repr(float(v)) for v in r) + f",{n}" for r, n in zip(rows, names, strict=True)]
        path.write_text("f0,f1,f2,label\n" + "\n".join(lines) + "\n", encoding="utf-8")
        return path

    model = tmp_path / "m"
    assert main(["classify", "fit", str(write(tmp_path / "all.csv", X, labels)), "--model", str(model)]) == 0
    before = (model / "classifier.safetensors").read_bytes()
    wrong = write(tmp_path / "wrong.csv", X[:3], labels[[1, 2, 0]])
    capsys.readouterr()
    assert main(["classify", "forget", str(wrong), "--model", str(model)]) == 1
    assert "never learned" in capsys.readouterr().err
    assert (model / "classifier.safetensors").read_bytes() == before
    right = write(tmp_path / "right.csv", X[:3], labels[:3])
    assert main(["classify", "forget", str(right), "--model", str(model)]) == 0


def test_digests_tell_features_labels_weights_and_dtypes_apart():
    keys = torch.randn(5, 7, dtype=torch.float64)
    classes = torch.tensor([0, 1, 2, 0, 1])
    base = example_digests(keys, classes, None)
    assert np.array_equal(base, example_digests(keys.clone(), classes, torch.ones(5)))
    assert len(set(base.tolist())) == 5
    assert example_digests(keys[:0], classes[:0], None).shape == (0,)  # an empty shard
    column = torch.arange(5.0, dtype=torch.float64).as_strided((5, 1), (1, 0))  # stride 0
    assert np.array_equal(
        example_digests(column, classes, None), example_digests(column.clone(), classes, None)
    )
    for other in (
        example_digests(keys, (classes + 1) % 3, None),
        example_digests(keys, classes, torch.full((5,), 2.0)),
        example_digests(keys.to(torch.float32), classes, None),
        example_digests(keys.roll(1, dims=1), classes, None),
    ):
        assert not np.any(other == base)


@settings(max_examples=60, deadline=None)
@given(
    held=st.lists(st.integers(0, 6), max_size=25),
    wanted=st.lists(st.integers(0, 8), max_size=25),
)
def test_the_record_is_a_multiset(held, wanted):
    """missing / remove_found against a plain Counter reference, on random multisets."""
    record = ExampleRecord(np.asarray(held, dtype=np.uint64))
    left, expect = Counter(held), []
    for i, value in enumerate(wanted):
        if left[value] > 0:
            left[value] -= 1
        else:
            expect.append(i)
    got = record.missing(np.asarray(wanted, dtype=np.uint64))
    assert got.tolist() == expect
    complete = record.remove_found(np.asarray(wanted, dtype=np.uint64))
    assert complete == (not expect)
    assert sorted(record.to_tensor().numpy().view(np.uint64).tolist()) == sorted(left.elements())


def test_a_malformed_record_is_refused():
    with pytest.raises(ValueError, match="malformed example record"):
        ExampleRecord.from_tensor(torch.zeros(3, 2, dtype=torch.int64), "f.safetensors")
    with pytest.raises(ValueError, match="malformed example record"):
        ExampleRecord.from_tensor(torch.zeros(3), "f.safetensors")
