"""`faast lm stream --csv`: the rows appended to ``CSV.partial`` as the stream runs are an aid, so a
disk that fails under them (full, an I/O error) costs that file, with one warning naming it, not
the stream."""

from __future__ import annotations

import errno

import pytest

import faast.cli.lm_cmd
from faast.cli import main
from tests.lm_wordlevel import WORDS, save_tiny_model


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("model") / "tiny")


def test_a_full_disk_under_the_partial_rows_warns_and_the_stream_ends(model, tmp_path, monkeypatch, capsys):
    text, table = tmp_path / "a.txt", tmp_path / "rows.csv"
    text.write_text(" ".join(WORDS[(i * 7) % len(WORDS)] for i in range(400)) + "\n")
    argv = ["lm", "stream", "--model", str(model), "--text", str(text), "--chunk", "40", "--threads", "1"]
    assert main([*argv, "--csv", str(table)]) == 0
    full = table.read_text()
    table.unlink()
    writes = []

    class FullDisk:
        """The partial file: its third row meets a full disk."""

        def __init__(self, fh):
            self.fh = fh

        def write(self, text):
            writes.append(text)
            if len(writes) == 4:  # the header, two rows, then the third row
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.fh.write(text)

        def __getattr__(self, name):
            return getattr(self.fh, name)

    def fake_open(path, *args, **kwargs):
        fh = open(path, *args, **kwargs)
        return FullDisk(fh) if str(path).endswith(".partial") else fh

    monkeypatch.setattr(faast.cli.lm_cmd, "open", fake_open, raising=False)
    capsys.readouterr()
    assert main([*argv, "--csv", str(table)]) == 0
    err = capsys.readouterr().err
    partial = tmp_path / "rows.csv.partial"
    assert f"could not write {partial} (No space left on device)" in err, err
    assert err.count("could not write") == 1  # one warning, then no more tries
    assert len(writes) == 4  # no row written after the failure
    assert table.read_text() == full  # the stream's result is whole
    assert not partial.exists()
