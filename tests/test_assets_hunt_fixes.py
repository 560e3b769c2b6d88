"""Fixes from a bug hunt in ``faast assets`` and ``faast demo``: outputs written into an asset's
cache folder, damaged or empty cached files, an export with no training examples, the help and
messages, and ``faast demo`` arguments checked before the data are loaded."""

from __future__ import annotations

import os

import pytest

from faast.assets import core, export
from faast.assets.text import read_jsonl
from faast.cli import main


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("FAAST_CACHE", str(folder))
    return folder


def _toy(monkeypatch, rows):
    """A stand-in exportable asset ``toy``; returns the list of its reads."""
    reads = []

    def make(cache_dir):
        reads.append(cache_dir)
        return [dict(r) for r in rows]

    monkeypatch.setitem(export.EXPORTS, "toy", ("text → a / b", make))
    return reads


ROWS = [{"input": f"text {i}", "output": "ab"[i % 2]} for i in range(10)]


def _fake_ready_tweets(cache, content: bytes):
    """A tweet-sentiment folder that counts as fetched (marker and data file), holding ``content``."""
    folder = cache / "tweet-sentiment"
    folder.mkdir(parents=True)
    (folder / "faast-asset.json").write_text("{}", encoding="utf-8")
    (folder / "tweets.jsonl").write_bytes(content)
    return folder


# ----------------------------------------------------------------- 1: outputs in an asset's folder
def test_export_refuses_outputs_in_an_asset_folder_before_reading_it(cache, tmp_path, monkeypatch):
    reads = _toy(monkeypatch, ROWS)
    own = cache / "toy"
    own.mkdir(parents=True)
    (own / "data.jsonl").write_text("precious\n", encoding="utf-8")
    link = tmp_path / "link"
    os.symlink(own, link)
    cases = [
        (dict(out=own / "data.jsonl"), r"--out .*data.jsonl lies in the cache folder of the asset toy"),
        (dict(out=link / "a.tsv"), r"--out .*link/a.tsv lies in the cache folder of the asset toy"),
        (
            dict(out=tmp_path / "a.tsv", test=2, test_out=cache / "tweet-sentiment" / "t.tsv"),
            r"--test-out .*t.tsv lies in the cache folder of the asset tweet-sentiment",
        ),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            export.export_examples("toy", **kwargs)
    assert reads == [] and (own / "data.jsonl").read_text(encoding="utf-8") == "precious\n"
    assert not (tmp_path / "a.tsv").exists()
    assert export.export_examples("toy", cache / "beside-the-assets.tsv") == (10, 0)  # the cache root is fine


def test_cli_export_into_the_asset_folder_leaves_the_asset_intact(cache, capsys):
    folder = _fake_ready_tweets(cache, b'{"text": "hi", "label": "neutral", "confidence": null}\n')
    before = (folder / "tweets.jsonl").read_bytes()
    argv = ["assets", "export", "tweet-sentiment", "--out", str(folder / "tweets.jsonl")]
    assert main(argv) == 1
    assert "lies in the cache folder of the asset tweet-sentiment" in capsys.readouterr().err
    assert (folder / "tweets.jsonl").read_bytes() == before


# ----------------------------------------------------------------- 2: damaged or empty cached files
def test_a_truncated_jsonl_names_the_file_the_line_and_the_fix(tmp_path):
    folder = tmp_path / "movie-review-sentences"
    folder.mkdir()
    path = folder / "sentences.jsonl"
    path.write_text('{"id": 1, "text": "ok"}\n{"id": 2, "text": "cut sho', encoding="utf-8")
    with pytest.raises(core.AssetError) as info:
        read_jsonl(path)
    message = str(info.value)
    assert str(path) in message and "line 2 is not valid JSON" in message
    assert f"delete the folder {folder}" in message
    assert "`faast assets fetch --force movie-review-sentences`" in message
    path.write_bytes(b'{"id": 1}\n\xff\xfe\n')
    with pytest.raises(core.AssetError, match="line 2 is not UTF-8"):
        read_jsonl(path)
    path.write_text('{"id": 1}\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(core.AssetError, match="line 2 is not a JSON object"):
        read_jsonl(path)
    path.write_text('{"id": 1}\n\n{"id": 2}\n', encoding="utf-8")
    assert read_jsonl(path) == [{"id": 1}, {"id": 2}]  # blank lines are still skipped


def test_cli_export_of_a_damaged_or_empty_cached_asset(cache, tmp_path, capsys):
    cut = b'{"text": "fine", "label": "neutral", "confidence": null}\n{"text": "cu'
    folder = _fake_ready_tweets(cache, cut)
    out = tmp_path / "a.tsv"
    assert main(["assets", "export", "tweet-sentiment", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "tweets.jsonl: line 2 is not valid JSON" in err and "Unterminated string" in err
    assert f"delete the folder {folder}" in err and "faast assets fetch --force tweet-sentiment" in err
    (folder / "tweets.jsonl").write_bytes(b"")
    assert main(["assets", "export", "tweet-sentiment", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "the cached asset tweet-sentiment holds no examples" in err and "--test 0" not in err
    assert f"delete the folder {folder}" in err
    wrong = '{"input": "a", "output": "b"}\n'  # an export's rows, not the asset's records
    (folder / "tweets.jsonl").write_text(wrong, encoding="utf-8")
    assert main(["assets", "export", "tweet-sentiment", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "has a record without the field 'text'" in err and f"delete the folder {folder}" in err
    assert not out.exists()


# ----------------------------------------------------------------- 3: no training examples left
def test_export_refuses_to_write_no_training_examples(cache, tmp_path, monkeypatch):
    _toy(monkeypatch, [{"input": "same text", "output": "a"}] * 3 + [{"input": "Same  text", "output": "b"}])
    with pytest.raises(ValueError, match=r"--test 1 --seed 4: all 3 examples of toy not held out repeat"):
        export.export_examples("toy", tmp_path / "a.tsv", test=1, test_out=tmp_path / "t.tsv", seed=4)
    _toy(monkeypatch, [{"input": "x", "output": "a"}, {"input": "x", "output": "b"}])
    with pytest.raises(ValueError, match=r"the one example of toy not held out repeats .*would hold no"):
        export.export_examples("toy", tmp_path / "a.tsv", test=1, test_out=tmp_path / "t.tsv")
    assert not (tmp_path / "a.tsv").exists() and not (tmp_path / "t.tsv").exists()


# ----------------------------------------------------------------- 4: help and messages
def test_fetch_help_lists_the_groups_of_the_registered_assets(capsys):
    with pytest.raises(SystemExit):
        main(["assets", "fetch", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    groups = core.asset_groups()
    assert {"text", "vision", "demo", "tests", "lm", "lm-more", "all"} <= set(groups)
    assert f"fetch every asset of this group ({', '.join(groups)}; without names: demo)" in help_text


def test_a_cache_path_that_is_a_file_is_named(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "afile"
    blocker.write_text("x", encoding="utf-8")
    for setting in (blocker, blocker / "below"):
        monkeypatch.setenv("FAAST_CACHE", str(setting))
        assert main(["assets", "list"]) == 1
        err = capsys.readouterr().err
        assert f"the asset cache {setting} (set by $FAAST_CACHE)" in err
        assert f"{blocker} is a file, not a folder" in err and "File exists" not in err
    with pytest.raises(core.AssetError, match=r"set by --cache-dir"):
        core.cache_dir(blocker)


def test_demo_encoder_help_names_every_encoder(capsys):
    from faast.encoders import ENCODERS

    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    encoder_help = help_text.rsplit("--encoder ENCODER", 1)[1].split("--resolution", 1)[0]
    for name in ("efficientnet-lite0", "clip:RN50/openai", "pixels"):
        assert name in encoder_help
    assert len(ENCODERS) == 3  # a new encoder: name it in the --encoder help too


# ----------------------------------------------------------------- 5: demo arguments before the data
@pytest.fixture
def no_data(monkeypatch):
    """``faast demo`` stops with this error once it goes on to load the data."""
    import faast.data

    def load(*args, **kwargs):
        raise RuntimeError("the data were loaded")

    monkeypatch.setattr(faast.data, "load_dataset", load)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--episodes", "0"], "--episodes must be >= 1, got 0"),
        (["--val-episodes", "0"], "--val-episodes must be >= 1, got 0"),
        (["--queries", "0"], "--queries must be >= 1, got 0"),
        (["--shots", "0"], "--shots must be >= 1 each, got '0'"),
        (["--shots", "1,-2"], "--shots must be >= 1 each, got '1,-2'"),
        (["--ways", "1"], "--ways must be >= 2, got 1"),
        (["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
        (["--shots", "1,5,1"], "--shots lists 1 more than once"),
        (["--methods", "faast,knn,faast"], "--methods lists faast more than once"),
    ],
)
def test_demo_checks_its_arguments_before_loading_the_data(no_data, tmp_path, capsys, extra, message):
    assert main(["demo", "--quiet", "--threads", "1", "--out", str(tmp_path / "o"), *extra]) == 1
    err = capsys.readouterr().err
    assert message in err and "the data were loaded" not in err


def test_demo_with_good_arguments_goes_on_to_the_data(no_data, tmp_path, capsys):
    argv = ["demo", "--quiet", "--threads", "1", "--out", str(tmp_path / "o"), "--shots", "1,5"]
    assert main([*argv, "--ways", "2", "--methods", "faast,knn", "--episodes", "1", "--queries", "1"]) == 1
    assert "the data were loaded" in capsys.readouterr().err


def test_export_of_an_asset_without_rows_does_not_blame_test(cache, tmp_path, monkeypatch):
    """The empty-asset message no longer blames a --test that was not given."""
    _toy(monkeypatch, [])
    with pytest.raises(core.AssetError, match="the cached asset toy holds no examples") as info:
        export.export_examples("toy", tmp_path / "a.tsv")
    assert "--test" not in str(info.value) and not (tmp_path / "a.tsv").exists()
