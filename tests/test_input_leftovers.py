"""Users' inputs a read-only hunt found still mishandled: text files in UTF-16 without a byte-order
mark, or in UTF-32, read as letters between NULs (errors full of ``\\x00``, or garbage learned); a
class folder of GIFs refused as "without images" without naming what is read; ``partial-fit`` (and
``forget``) of a ``class_weight="balanced"`` classifier refused only once its data was read and
encoded; write-protected files of a classifier silently replaced by a save. And the features
CSV's row reader, which took eight arguments, takes the CSV's layout."""

from __future__ import annotations

import codecs
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from faast.classifier_io import load_classifier, save_classifier
from faast.cli import classify_data, main
from faast.data.features_file import read_features, read_labels
from faast.lm.examples import read_examples
from faast.lm.text import read_text
from faast.text_files import iter_user_text, open_user_text, read_user_text

FEATURES = "f0,f1,label\n1.5,0,a\n0,1,b\n1,1,a\n0,0.5,b\n"

UNMARKED = {
    "UTF-16LE": lambda t: t.encode("utf-16-le"),
    "UTF-16BE": lambda t: t.encode("utf-16-be"),
    "UTF-32LE": lambda t: t.encode("utf-32-le"),
    "UTF-32BE": lambda t: t.encode("utf-32-be"),
}
MARKED = {
    "UTF-32LE with mark": lambda t: codecs.BOM_UTF32_LE + t.encode("utf-32-le"),
    "UTF-32BE with mark": lambda t: codecs.BOM_UTF32_BE + t.encode("utf-32-be"),
    "UTF-16LE with mark": lambda t: codecs.BOM_UTF16_LE + t.encode("utf-16-le"),
    "UTF-16BE with mark": lambda t: codecs.BOM_UTF16_BE + t.encode("utf-16-be"),
}


def _run(*argv: object) -> int:
    return main(["classify", *map(str, argv)])


# ----------------------------------------------------------------- 1: UTF-16 / UTF-32 text files
@pytest.mark.parametrize("encoding", sorted(UNMARKED))
def test_text_without_a_byte_order_mark_in_utf16_or_utf32_is_refused_naming_how_to_convert(
    tmp_path, encoding
):
    """Read as UTF-8, the ASCII of such a file is letters between NULs: a features CSV was refused
    with column names full of ``\\x00``, a labels file learned NUL-laden classes. Every reader
    refuses it in one line naming the file, the encoding and the iconv line converting it."""
    encode = UNMARKED[encoding]
    files = {
        "f.csv": encode(FEATURES),
        "y.txt": encode("a\nb\na\nb\n"),
        "ex.tsv": encode("a good film\tpos\nso dull\tneg\n"),
        "t.txt": encode("Once upon a time\n"),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    readers = [
        lambda: read_features(tmp_path / "f.csv"),
        lambda: read_labels(tmp_path / "y.txt"),
        lambda: read_examples(tmp_path / "ex.tsv"),
        lambda: read_text(tmp_path / "t.txt"),
        lambda: read_user_text(tmp_path / "t.txt"),
        lambda: "".join(iter_user_text(tmp_path / "t.txt")),
        lambda: open_user_text(tmp_path / "t.txt").read(),
    ]
    for read in readers:
        with pytest.raises(ValueError) as info:
            read()
        message = str(info.value)
        assert "\x00" not in message and "\n" not in message, message
        assert f"not UTF-8 text: it holds NUL bytes, as {encoding} text saved without a byte-order mark" in (
            message
        )
        assert f"iconv -f {encoding} -t UTF-8 {tmp_path}" in message


def test_the_cli_refuses_an_unmarked_utf16_features_file_in_one_line(tmp_path, capsys):
    (tmp_path / "w.csv").write_bytes(FEATURES.encode("utf-16-le"))
    assert _run("fit", tmp_path / "w.csv", "--model", tmp_path / "m") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "\\x00" not in err[0] and "\x00" not in err[0], err
    assert f"{tmp_path / 'w.csv'}: not UTF-8 text" in err[0] and "iconv -f UTF-16LE -t UTF-8" in err[0]
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("spelling", sorted(MARKED))
def test_utf32_with_its_mark_reads_as_utf16_and_utf8_do(tmp_path, spelling):
    """UTF-32 little-endian's mark begins with UTF-16's: the file was read as UTF-16, one letter in
    two a NUL. With its mark, UTF-32 is read (UTF-16 with its mark still is)."""
    encode = MARKED[spelling]
    (tmp_path / "f.csv").write_bytes(encode("id,f0,label\nà,1.5,x\n"))
    table = read_features(tmp_path / "f.csv", id_column="id")
    assert table.ids == ["à"] and table.features.tolist() == [[1.5]] and table.labels.tolist() == ["x"]
    (tmp_path / "ex.tsv").write_bytes(encode("input\toutput\nqué\tsí\n"))
    assert [(e.input, e.output) for e in read_examples(tmp_path / "ex.tsv")] == [("qué", "sí")]
    (tmp_path / "t.txt").write_bytes(encode("Érase una vez\r\n"))
    assert read_user_text(tmp_path / "t.txt") == "Érase una vez\n"
    assert "".join(iter_user_text(tmp_path / "t.txt", block_chars=3)) == "Érase una vez\n"


def test_utf8_text_holding_a_nul_character_or_binary_bytes_is_read_as_before(tmp_path):
    """Only text that reads as UTF-16 or UTF-32 is refused: UTF-8 with a NUL character reads as
    written, and bytes that are not text keep their error naming the line."""
    (tmp_path / "nul.txt").write_bytes(b"a\x00b\nc\x00\x00\x00d\n")
    assert read_user_text(tmp_path / "nul.txt") == "a\x00b\nc\x00\x00\x00d\n"
    (tmp_path / "bin.txt").write_bytes(b"line\nPK\x03\x04\x14\x00\x00\x00\x08\x00\xff\xfe")
    with pytest.raises(ValueError, match=r"bin\.txt:2: not UTF-8 text"):
        read_user_text(tmp_path / "bin.txt")
    (tmp_path / "bad32.txt").write_bytes(codecs.BOM_UTF32_LE + b"\xff\xff\xff\xff")
    with pytest.raises(ValueError, match=r"bad32\.txt:1: not UTF-32 text"):
        read_user_text(tmp_path / "bad32.txt")


# ----------------------------------------------------------------- 2: a class folder of GIFs
def test_a_class_folder_of_other_extensions_names_them_and_the_extensions_read(tmp_path, capsys):
    data = tmp_path / "photos"
    (data / "cats").mkdir(parents=True)
    (data / "dogs").mkdir()
    (data / "empty").mkdir()
    for i in range(5):
        (data / "cats" / f"cat{i}.gif").write_bytes(b"GIF89a")
    (data / "cats" / ".DS_Store").write_bytes(b"x")
    (data / "dogs" / "dog.png").write_bytes(b"not read here")
    assert _run("fit", data, "--model", tmp_path / "m", "--encoder", "pixels") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert (
        "class folder(s) without images: cats (5 file(s) of other extensions, skipped: cat0.gif, cat1.gif, "
        "cat2.gif and 2 more), empty (empty); images are files ending in .jpg, .jpeg, .png" in err[0]
    ), err
    assert ".webp (any case)" in err[0] and "DS_Store" not in err[0]


# ----------------------------------------------------------------- 3: partial-fit of a balanced fit
def _features(tmp_path: Path) -> Path:
    path = tmp_path / "f.csv"
    path.write_text(FEATURES, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("fitted", "action", "message"),
    [
        (
            ["--class-weight", "balanced"],
            "partial-fit",
            'partial_fit is not available with class_weight="balanced"',
        ),
        (["--class-weight", "balanced"], "forget", 'forget is not available with class_weight="balanced"'),
        (["--loss", "logistic"], "partial-fit", 'partial_fit is not available with loss="logistic"'),
    ],
)
def test_partial_fit_of_a_classifier_that_refuses_it_is_refused_before_the_data_is_read(
    tmp_path, monkeypatch, capsys, fitted, action, message
):
    """The refusal came from the classifier's partial_fit, after every image was encoded (or every
    text embedded); now before any data is read, with the same message."""
    data, model = _features(tmp_path), tmp_path / "m"
    assert _run("fit", data, "--model", model, *fitted) == 0
    before = {p.name: p.read_bytes() for p in model.iterdir()}
    monkeypatch.setattr(classify_data, "read_data", lambda *a, **k: pytest.fail("the data was read"))
    capsys.readouterr()
    assert _run(action, data, "--model", model) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert {p.name: p.read_bytes() for p in model.iterdir()} == before


# ----------------------------------------------------------------- 4: write-protected classifier files
@pytest.mark.parametrize("protected", ["classifier.json", "classifier.safetensors"])
@pytest.mark.parametrize("action", ["fit", "partial-fit"])
def test_a_write_protected_classifier_file_is_not_replaced(tmp_path, monkeypatch, capsys, protected, action):
    """``chmod a-w`` on a saved classifier's file said "do not overwrite"; a save moved new files
    over it all the same (the folder was writable), and as root it still did (os.access says yes
    to root). Refused now before any data is read, naming the file; nothing changes."""
    data, model = _features(tmp_path), tmp_path / "m"
    assert _run("fit", data, "--model", model) == 0
    before = {p.name: p.read_bytes() for p in model.iterdir()}
    (model / protected).chmod(0o444)
    try:
        monkeypatch.setattr(classify_data, "read_data", lambda *a, **k: pytest.fail("the data was read"))
        capsys.readouterr()
        assert _run(action, data, "--model", model) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"{protected} is write-protected" in err[0], err
        assert str(model / protected) in err[0]
        assert {p.name: p.read_bytes() for p in model.iterdir()} == before
        clf, meta = load_classifier(model)
        with pytest.raises(PermissionError, match=f"{protected} is write-protected"):
            save_classifier(clf, model, meta)
        assert {p.name: p.read_bytes() for p in model.iterdir()} == before
    finally:
        (model / protected).chmod(0o644)


def test_a_file_the_user_may_not_write_is_refused_also_where_permissions_are_ignored(
    tmp_path, monkeypatch, capsys
):
    """As the test above, for root too: ``os.access`` answering as it does for another user."""
    data, model = _features(tmp_path), tmp_path / "m"
    assert _run("fit", data, "--model", model) == 0
    before = {p.name: p.read_bytes() for p in model.iterdir()}
    real = os.access

    def access(path: Any, mode: int, *args: Any, **kwargs: Any) -> bool:
        if Path(path) == model / "classifier.json" and mode & os.W_OK:
            return False
        return real(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)
    capsys.readouterr()
    assert _run("fit", data, "--model", model) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "classifier.json is write-protected" in err[0], err
    assert {p.name: p.read_bytes() for p in model.iterdir()} == before


# ----------------------------------------------------------------- 5: the CSV's row reader
def test_the_csv_row_reader_takes_the_csv_layout(tmp_path):
    from faast.data.features_file import _csv_row_values, _CsvLayout

    path = tmp_path / "f.csv"
    path.write_text("f0,label,f1\n1,a,2\nx,b,3\n", encoding="utf-8")
    layout = _CsvLayout(path, ["f0", "label", "f1"], ",", [0, 2], "label", None)
    assert _csv_row_values(layout, ["1", "a", "2"], 0).tolist() == [1.0, 2.0]
    with pytest.raises(ValueError) as direct:
        _csv_row_values(layout, ["x", "b", "3"], 1)
    with pytest.raises(ValueError) as whole:
        read_features(path)
    assert str(direct.value) == str(whole.value) and "row 3, column 'f0'" in str(whole.value)
    with pytest.raises(ValueError, match=r"row 2 has 2 fields, the header 3"):
        _csv_row_values(layout, ["1", "a"], 0)
    table = read_features(_features(tmp_path))
    assert np.asarray(table.features).tolist() == [[1.5, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.5]]
