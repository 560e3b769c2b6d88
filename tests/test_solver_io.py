"""Saving and loading statistics: safetensors, atomic, checked."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from faast.io import atomic_write, check_writable, save_tensors
from faast.solver import GramStats


def filled(d=6, m=3, n=20, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return GramStats(d, m).add(torch.randn(n, d, generator=gen), torch.randn(n, m, generator=gen))


def test_round_trip(tmp_path):
    stats = filled()
    path = tmp_path / "stats.safetensors"
    stats.save(path)
    loaded = GramStats.load(path)
    assert (loaded.key_dim, loaded.value_dim, loaded.count) == (6, 3, 20)
    assert loaded.input_dtype == torch.float32
    assert torch.equal(loaded.gram, stats.gram) and torch.equal(loaded.cross, stats.cross)
    assert torch.equal(loaded.solve(0.01), stats.solve(0.01))
    # streaming continues after a reload exactly as without it
    extra = filled(seed=1)
    loaded.merge(extra)
    stats.merge(extra)
    assert torch.equal(loaded.gram, stats.gram)


def test_state_dict_round_trip_into_existing_object():
    stats = filled()
    other = GramStats(6, 3)
    other.load_state_dict(stats.state_dict(), input_dtype=torch.float32)
    assert torch.equal(other.solve(0.1), stats.solve(0.1))


def test_loading_statistics_of_another_dimension(tmp_path):
    path = tmp_path / "s.safetensors"
    filled(d=6).save(path)
    target = GramStats(5, 3)
    with pytest.raises(ValueError, match=r"statistics of keys 6 → values 3 do not match keys 5 → values 3"):
        target.load_file(path)
    with pytest.raises(ValueError, match="do not match"):
        target.load_state_dict(filled(d=6).state_dict())


def test_loading_a_file_that_is_not_gram_stats(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(2)}, str(path), metadata={"format": "something-else"})
    with pytest.raises(ValueError, match="is not a faast file of statistics"):
        GramStats.load(path)
    weights = tmp_path / "weights.safetensors"
    save_tensors(weights, {"weight": torch.zeros(2, 2)}, kind="weights")
    with pytest.raises(ValueError, match="holds a fast-weight matrix, not statistics"):
        GramStats.load(weights)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        GramStats.load(junk)
    with pytest.raises(FileNotFoundError):
        GramStats.load(tmp_path / "missing.safetensors")


def test_malformed_state_is_rejected():
    state = filled().state_dict()
    bad = dict(state, gram=state["gram"].float())
    with pytest.raises(TypeError, match="float64"):
        GramStats(6, 3).load_state_dict(bad)
    bad = dict(state, cross=state["cross"].clone().fill_(float("nan")))
    with pytest.raises(ValueError, match="cross holds NaN"):
        GramStats(6, 3).load_state_dict(bad)
    bad = {k: v for k, v in state.items() if k != "count"}
    with pytest.raises(ValueError, match="missing"):
        GramStats(6, 3).load_state_dict(bad)


def test_failed_save_keeps_the_previous_file(tmp_path):
    path = tmp_path / "stats.safetensors"
    filled().save(path)
    before = path.read_bytes()

    def crash(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            fh.write(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, crash)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["stats.safetensors"]  # no temp file left


def test_save_creates_parent_directories(tmp_path):
    path = tmp_path / "a" / "b" / "stats.safetensors"
    filled().save(path)
    assert os.path.getsize(path) > 0


def test_saved_files_get_the_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        path = tmp_path / "stats.safetensors"
        filled().save(path)
    finally:
        os.umask(old)
    assert (path.stat().st_mode & 0o777) == 0o644


@pytest.mark.parametrize("option", [("--tau", "auto"), ("--ridge", "auto"), ("--ridge", "gcv")])
def test_solve_command_takes_cuts_chosen_from_the_pairs(tmp_path, option):
    from safetensors.torch import load_file

    from faast.cli import main

    gen = torch.Generator().manual_seed(0)
    keys = torch.randn(20, 30, generator=gen, dtype=torch.float64)
    values = torch.randn(20, 3, generator=gen, dtype=torch.float64)
    save_file({"keys": keys, "values": values}, str(tmp_path / "pairs.safetensors"))
    out = tmp_path / "w.safetensors"
    assert main(["solve", str(tmp_path / "pairs.safetensors"), "--out", str(out), *option]) == 0
    name, word = option
    cut = f"ridge={word}" if name == "--ridge" else word
    expected = GramStats(30, 3).add(keys, values).solve(cut)
    torch.testing.assert_close(load_file(str(out))["weight"], expected)


def test_a_file_in_the_way_of_the_output_folder_is_named(tmp_path):
    """mkdir said only "File exists"; check_writable and atomic_write name the file."""
    (tmp_path / "notes").write_text("x")
    for call in (
        lambda p: check_writable(p),
        lambda p: atomic_write(p, lambda tmp: Path(tmp).write_text("y")),
    ):
        with pytest.raises(NotADirectoryError, match=r"notes is a file, not a folder"):
            call(tmp_path / "notes" / "deeper" / "out.json")
    assert (tmp_path / "notes").read_text() == "x"


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(st.text(max_size=6), st.text(max_size=12) | st.integers() | st.none(), max_size=5))
def test_json_files_keep_text_as_written_and_read_back(tmp_path_factory, obj):
    """save_json writes UTF-8 text as it is (``café``, not ``caf\\u00e9``), escapes everything only
    when a string has no UTF-8 form (a lone surrogate), and load_json reads back the very object."""
    from faast.io import load_json, save_json

    path = save_json(tmp_path_factory.mktemp("json") / "o.json", obj)
    assert load_json(path) == obj
    raw = path.read_bytes().decode("utf-8")
    strings = [t for t in [*obj, *obj.values()] if isinstance(t, str)]
    if not any(0xD800 <= ord(c) <= 0xDFFF for t in strings for c in t):
        assert all(json.dumps(t, ensure_ascii=False)[1:-1] in raw for t in strings)


def test_json_files_hold_labels_as_written(tmp_path):
    from faast.io import load_json, save_json

    path = save_json(tmp_path / "labels.json", {"labels": ["café", "😀 good"], "lone": None})
    assert '"café"' in path.read_text(encoding="utf-8") and "😀 good" in path.read_text(encoding="utf-8")
    odd = save_json(tmp_path / "odd.json", {"label": "a\ud800b"})
    assert load_json(odd) == {"label": "a\ud800b"} and "\\ud800" in odd.read_text(encoding="utf-8")


def test_an_input_path_that_is_not_a_regular_file_is_named_for_what_it_is(tmp_path):
    from faast.io import existing_file
    from faast.lm.text import read_text

    (tmp_path / "a.txt").write_text("x", encoding="utf-8")
    assert existing_file(tmp_path / "a.txt", "text file") == tmp_path / "a.txt"
    with pytest.raises(FileNotFoundError, match="no such text file"):
        read_text(tmp_path / "none.txt")
    with pytest.raises(IsADirectoryError, match="a folder, not a text file"):
        read_text(tmp_path)
    if Path("/dev/null").exists():
        with pytest.raises(ValueError, match="is not a regular file .*; expected a text file"):
            read_text("/dev/null")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_an_output_path_that_is_a_pipe_is_refused_and_left_a_pipe(tmp_path):
    """os.replace moved the written file over the node itself: a FIFO became a regular file (and
    run as root, ``--out /dev/null`` replaced /dev/null)."""
    import stat

    from faast.cli import main

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for call in (
        lambda p: check_writable(p),
        lambda p: atomic_write(p, lambda tmp: Path(tmp).write_text("y")),
        lambda p: GramStats(2, 1).add(torch.ones(1, 2), torch.ones(1, 1)).save(p),
    ):
        with pytest.raises(ValueError, match=r"fifo is not a regular file \(a device or a pipe\)"):
            call(fifo)
        assert stat.S_ISFIFO(fifo.stat().st_mode)
    save_file({"keys": torch.ones(2, 3), "values": torch.ones(2, 1)}, str(tmp_path / "pairs.safetensors"))
    assert main(["solve", str(tmp_path / "pairs.safetensors"), "--out", str(fifo)]) != 0
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 7), st.integers(0, 10), st.integers(0, 2**31 - 1))
def test_load_file_keeps_the_saved_rows_within_its_own_limit(n, limit, seed):
    """load_file into an object brings the kept rows as GramStats.load does, while they fit its
    dual_max_pairs: the auto cut then solves as the saved statistics did, and a pair never added
    is refused by subtract; beyond its limit it holds the sums alone, as add would have left them."""
    gen = torch.Generator().manual_seed(seed)
    d, m = 8, 3
    keys = torch.randn(n, d, generator=gen, dtype=torch.float64)
    values = torch.eye(m, dtype=torch.float64)[torch.arange(n) % m]
    saved = GramStats(d, m).add(keys, values)
    added_here = GramStats(d, m, dual_max_pairs=limit).add(keys, values)
    loaded = GramStats(d, m, dual_max_pairs=limit)
    with tempfile.TemporaryDirectory() as folder:
        saved.save(Path(folder) / "s.safetensors")
        loaded.load_file(Path(folder) / "s.safetensors")
    assert loaded.kept_row_count == added_here.kept_row_count == (n if n <= limit else 0)
    assert torch.equal(loaded.solve("auto"), added_here.solve("auto"))
    if loaded.kept_row_count:
        with pytest.raises(ValueError, match="never added"):
            loaded.subtract(0.5 * keys[:1], values[:1])


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 20), st.integers(1, 12), st.integers(0, 2**31 - 1))
def test_a_loaded_copy_keeps_dual_max_pairs_and_stays_equal_after_more_pairs(limit, n, seed):
    """save/load keeps ``dual_max_pairs``: after the same add to the original and the loaded copy,
    both keep the same rows and solve ``auto`` alike (the copy took the default, key_dim, and
    dropped its rows where the original kept them)."""
    gen = torch.Generator().manual_seed(seed)
    d, m = 8, 3
    keys = torch.randn(n + 1, d, generator=gen, dtype=torch.float64)
    values = torch.eye(m, dtype=torch.float64)[torch.arange(n + 1) % m]
    original = GramStats(d, m, dual_max_pairs=limit).add(keys[:n], values[:n])
    with tempfile.TemporaryDirectory() as folder:
        original.save(Path(folder) / "s.safetensors")
        copy = GramStats.load(Path(folder) / "s.safetensors")
    assert copy.dual_max_pairs == limit
    for stats in (original, copy):
        stats.add(keys[n:], values[n:])
    assert copy.kept_row_count == original.kept_row_count
    assert torch.equal(copy.solve("auto"), original.solve("auto"))


def test_statistics_saved_without_dual_max_pairs_or_with_a_negative_one(tmp_path):
    """Files written before dual_max_pairs was saved take the default (key_dim); a negative one is
    malformed metadata, named with the file."""
    stats = GramStats(4, 2).add(
        torch.randn(3, 4, dtype=torch.float64), torch.eye(2, dtype=torch.float64)[[0, 1, 0]]
    )
    path = tmp_path / "s.safetensors"
    tensors, rows = stats.saved_state()
    tensors.update(zip(("rows_keys", "rows_values"), rows, strict=True))
    for meta, expected in (({}, 4), ({"dual_max_pairs": "-1"}, None)):
        save_tensors(
            path, tensors, {"key_dim": "4", "value_dim": "2", "input_dtype": "float64", **meta}, kind="stats"
        )
        if expected is None:
            with pytest.raises(ValueError, match=r"s.safetensors: malformed statistics metadata"):
                GramStats.load(path)
        else:
            assert GramStats.load(path).dual_max_pairs == expected
