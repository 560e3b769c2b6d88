"""``faast classify`` on text files: a tiny BERT-style sentence encoder (random weights, saved as a
``from_pretrained`` folder) through the feature cache, and the real all-MiniLM-L6-v2 asset."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from faast import FaastClassifier
from faast.classifier_io import load_classifier
from faast.cli import main
from faast.encoders.text import SentenceEncoder
from faast.encoders.text_cache import encode_texts, text_cache_path, texts_fingerprint

WORDS = "good great fine lovely superb bad awful poor dull boring film plot acting it was the a and".split()
POSITIVE, NEGATIVE = WORDS[:5], WORDS[5:10]


def tiny_text_encoder(folder: Path, seed: int = 0) -> Path:
    """A 1-layer, 16-wide BERT with a word-level vocabulary of WORDS, saved to ``folder``."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    vocab = {token: i for i, token in enumerate(tokens)}
    tokenizer = BertTokenizerFast(vocab=vocab, do_lower_case=True)
    assert tokenizer("good film").input_ids == [2, vocab["good"], vocab["film"], 3]  # words, not [UNK]
    tokenizer.save_pretrained(folder)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(WORDS) + 5,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    BertModel(config).eval().save_pretrained(folder)
    return folder


def sentences(n: int, seed: int) -> list[tuple[str, str]]:
    """n (text, label) pairs: 2 to 6 words, the label "pos" or "neg" by the sentiment word in it."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        filler = list(rng.choice(WORDS[10:], size=int(rng.integers(1, 6))))
        word = str(rng.choice(POSITIVE if label == "pos" else NEGATIVE))
        filler.insert(int(rng.integers(0, len(filler) + 1)), word)
        rows.append((" ".join(filler), label))
    return rows


def write_tsv(path: Path, rows, header: bool = True) -> Path:
    lines = (["input\toutput"] if header else []) + ["\t".join(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _run(*argv) -> int:
    return main(["classify", *map(str, argv)])


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory) -> Path:
    return tiny_text_encoder(tmp_path_factory.mktemp("enc") / "tiny-bert")


def test_text_file_fit_predict_partial_fit_forget_equal_the_library(tmp_path, encoder_dir, capsys):
    """fit on a TSV, partial-fit a JSONL, forget some lines, predict: each saved classifier equals
    FaastClassifier on the encoder's features of the texts it holds; the predictions CSV names
    each text and scores it against its label."""
    first, more, test = sentences(12, 0), sentences(6, 1), sentences(8, 2)
    train = write_tsv(tmp_path / "train.tsv", first)
    extra = tmp_path / "more.jsonl"
    extra.write_text(
        "".join(json.dumps({"input": t, "output": y, "id": f"m{i}"}) + "\n" for i, (t, y) in enumerate(more))
    )
    wrong = write_tsv(tmp_path / "wrong.tsv", first[:3], header=False)
    held = write_tsv(tmp_path / "test.tsv", test)
    common = ["--cache-dir", tmp_path / "cache"]
    model = tmp_path / "model"
    encoder = SentenceEncoder(encoder_dir)

    def expected(rows) -> FaastClassifier:
        feats = encoder.encode([t for t, _ in rows], progress=False)
        return FaastClassifier().fit(feats, np.asarray([y for _, y in rows]))

    def same(want: FaastClassifier) -> None:
        got = load_classifier(model)[0]
        assert got.classes_.tolist() == want.classes_.tolist()
        assert got.class_count_.tolist() == want.class_count_.tolist()
        np.testing.assert_allclose(got.coef_, want.coef_, rtol=1e-9, atol=1e-9 * np.abs(want.coef_).max())

    capsys.readouterr()  # the library's own load above may show transformers' bar
    assert _run("fit", train, "--model", model, "--encoder", encoder_dir, *common) == 0
    printed, err = capsys.readouterr()
    assert "Loading weights" not in err  # transformers' progress bar: the command's lines only
    assert "fitted on 12 examples in " in printed and "; 2 classes (neg: 6, pos: 6), 16 features" in printed
    same(expected(first))
    source = json.loads((model / "classifier.json").read_text())["metadata"]["source"]
    assert source["input"] == "texts" and source["encoder"] == str(encoder_dir.resolve())
    assert source["encoder_identity"] == encoder.identity()
    assert _run("partial-fit", extra, "--model", model, *common) == 0
    assert "added 6 examples" in capsys.readouterr().out
    same(expected(first + more))
    assert _run("forget", wrong, "--model", model, *common) == 0
    same(expected(first[3:] + more))
    out = tmp_path / "p.csv"
    assert _run("predict", held, "--model", model, "--out", out, "--proba", *common) == 0
    printed = capsys.readouterr().out
    rows = _read_csv(out)
    assert list(rows[0]) == ["id", "input", "predicted", "label", "p_neg", "p_pos"]
    assert [r["input"] for r in rows] == [t for t, _ in test] and [r["id"] for r in rows] == list(
        map(str, range(8))
    )
    want = expected(first[3:] + more)
    feats = encoder.encode([t for t, _ in test], progress=False)
    assert [r["predicted"] for r in rows] == want.predict(feats).tolist()
    accuracy = np.mean([r["predicted"] == r["label"] for r in rows])
    assert f"accuracy {100 * accuracy:.2f} %" in printed


def test_unlabelled_texts_are_predicted_with_ids_from_a_jsonl_field(tmp_path, encoder_dir, capsys):
    model = tmp_path / "model"
    assert (
        _run(
            "fit", write_tsv(tmp_path / "t.tsv", sentences(10, 0)), "--model", model, "--encoder", encoder_dir
        )
        == 0
    )
    unlabelled = tmp_path / "new.jsonl"
    unlabelled.write_text('{"input": "a good film", "key": 7}\n{"input": "so dull", "key": "x"}\n')
    out = tmp_path / "p.csv"
    assert _run("predict", unlabelled, "--model", model, "--out", out, "--id-column", "key") == 0
    rows = _read_csv(out)
    assert [r["id"] for r in rows] == ["7", "x"] and list(rows[0]) == ["id", "input", "predicted"]
    assert {r["predicted"] for r in rows} <= {"pos", "neg"}
    plain = write_tsv(tmp_path / "new.tsv", [("a good film",), ("so dull",)], header=False)
    assert _run("predict", plain, "--model", model, "--out", out) == 0
    assert [r["id"] for r in _read_csv(out)] == ["0", "1"]
    some = tmp_path / "some.tsv"  # labels on some lines: scored where given, left empty elsewhere
    some.write_text("a good film\tpos\nso dull\nfine acting\tneg\nthe plot\n")
    assert _run("predict", some, "--model", model, "--out", out) == 0
    rows = _read_csv(out)
    assert [r["label"] for r in rows] == ["pos", "", "neg", ""]
    right = sum(r["predicted"] == r["label"] for r in rows)
    printed = capsys.readouterr().out
    assert f"accuracy {100 * right / 2:.2f} %" in printed and "on the 2 with a known class" in printed


def test_a_csv_of_texts_by_column_names_fits_what_the_tsv_fits(tmp_path, encoder_dir, capsys):
    """A CSV (or TSV with a header) of other column names: --text-column / --label-column name
    them, the fit equals the one on the input<TAB>output file, --id-column takes another column;
    a CSV with an 'input' column is read as texts without flags, and --text-column is refused for
    data that holds no texts."""
    rows = sentences(12, 0)
    tsv = write_tsv(tmp_path / "t.tsv", rows)
    table = tmp_path / "t.csv"
    with table.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["key", "review", "stars"])
        writer.writerows([f"r{i}", text, label] for i, (text, label) in enumerate(rows))
    a, b = tmp_path / "a", tmp_path / "b"
    assert _run("fit", tsv, "--model", a, "--encoder", encoder_dir) == 0
    named = ["--text-column", "review", "--label-column", "stars"]
    assert _run("fit", table, "--model", b, "--encoder", encoder_dir, *named) == 0
    want, got = load_classifier(a)[0], load_classifier(b)[0]
    assert got.classes_.tolist() == want.classes_.tolist() and np.array_equal(got.coef_, want.coef_)
    out = tmp_path / "p.csv"
    assert _run("predict", table, "--model", b, "--out", out, *named, "--id-column", "key") == 0
    predicted = _read_csv(out)
    assert [r["id"] for r in predicted] == [f"r{i}" for i in range(12)]
    assert [r["label"] for r in predicted] == [y for _, y in rows]
    tsv_named = tmp_path / "n.tsv"
    tsv_named.write_text(
        "key\treview\tstars\n" + "".join(f"r{i}\t{t}\t{y}\n" for i, (t, y) in enumerate(rows))
    )
    assert _run("predict", tsv_named, "--model", b, "--out", out, *named, "--id-column", "key") == 0
    assert _read_csv(out) == predicted
    plain = tmp_path / "plain.csv"
    plain.write_text("input,output\n" + "".join(f"{t},{y}\n" for t, y in rows))
    assert _run("predict", plain, "--model", b, "--out", out) == 0
    assert [r["predicted"] for r in _read_csv(out)] == [r["predicted"] for r in predicted]
    capsys.readouterr()
    assert _run("fit", table, "--model", tmp_path / "c") != 0  # no 'input' column: read as features
    assert (
        "'r0' is not a number" in (err := capsys.readouterr().err) and "name its column: --text-column" in err
    )
    assert _run("fit", table, "--model", tmp_path / "c", "--text-column", "review") != 0
    assert "no column 'output' in the header ['key', 'review', 'stars']" in capsys.readouterr().err
    np.save(tmp_path / "x.npy", np.zeros((2, 3)))
    assert _run("fit", tmp_path / "x.npy", "--model", tmp_path / "c", "--text-column", "review") != 0
    assert "--text-column is for text files; " in capsys.readouterr().err


def test_feature_cache_of_texts_is_used_and_keyed_by_texts_and_encoder(tmp_path, encoder_dir, monkeypatch):
    encoder = SentenceEncoder(encoder_dir, batch_size=3)
    texts = [t for t, _ in sentences(7, 3)]
    first = encode_texts(encoder, texts, tmp_path)
    path = text_cache_path(tmp_path, encoder, texts_fingerprint(texts))
    assert path.is_file() and path.parent.name == "tiny-bert-text"
    assert torch.equal(first, encoder.encode(texts, progress=False))

    def refuse(*args, **kwargs):
        raise AssertionError("encoded again despite a valid cache entry")

    monkeypatch.setattr(encoder, "encode", refuse)
    assert torch.equal(encode_texts(encoder, texts, tmp_path), first)
    with pytest.raises(AssertionError, match="encoded again"):  # other texts: another entry
        encode_texts(encoder, texts[:-1], tmp_path)
    other = SentenceEncoder(tiny_text_encoder(tmp_path / "other" / "tiny-bert", seed=1))
    assert other.identity()["weights_sha256"] != encoder.identity()["weights_sha256"]
    assert text_cache_path(tmp_path, other, texts_fingerprint(texts)) == path  # same name, other weights:
    again = encode_texts(other, texts, tmp_path)  # the entry is stale and re-encoded
    assert torch.equal(again, other.encode(texts, progress=False)) and not torch.equal(again, first)


def test_a_tokenizer_without_a_padding_token_pads_with_another_and_encodes_alike(tmp_path):
    """GPT-2-style tokenizers have no padding token: the encoder pads with the end-of-text (here,
    with no such token, the unknown) token, which the attention mask leaves out of the mean."""
    from transformers import AutoTokenizer

    folder = tiny_text_encoder(tmp_path / "enc")
    texts = ["a good film", "so dull and boring it was", "fine"]
    padded = SentenceEncoder(folder).encode(texts, progress=False)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.pad_token = None
    tokenizer.save_pretrained(folder)
    encoder = SentenceEncoder(folder)
    assert encoder.tokenizer.pad_token == "[UNK]"
    torch.testing.assert_close(encoder.encode(texts, progress=False), padded, rtol=0, atol=1e-6)


def test_a_left_padding_tokenizer_pads_on_the_right_so_batching_does_not_move_positions(tmp_path):
    """A model of absolute positions (GPT-2) under a tokenizer saved to pad on the left: each
    sentence encodes in a batch as it does alone."""
    from transformers import AutoTokenizer, GPT2Config, GPT2Model

    folder = tiny_text_encoder(tmp_path / "gpt2")
    settings = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**settings, "padding_side": "left"}))
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(WORDS) + 5, n_embd=16, n_layer=1, n_head=2, n_positions=64)
    config.bos_token_id = config.eos_token_id = None
    GPT2Model(config).save_pretrained(folder)
    assert AutoTokenizer.from_pretrained(folder).padding_side == "left"
    encoder = SentenceEncoder(folder)
    texts = ["a good film", "so dull and boring it was the plot", "fine"]
    alone = torch.cat([encoder.encode([t], progress=False) for t in texts])
    torch.testing.assert_close(encoder.encode(texts, progress=False), alone, rtol=0, atol=1e-6)


def test_fingerprint_tells_apart_lists_that_join_to_the_same_text():
    assert texts_fingerprint(["ab", "c"]) != texts_fingerprint(["a", "bc"])
    assert texts_fingerprint(["a", ""]) != texts_fingerprint(["a"])
    assert texts_fingerprint(["x", "y"]) == texts_fingerprint(("x", "y"))


def test_text_file_errors_are_named(tmp_path, encoder_dir, capsys):
    train = write_tsv(tmp_path / "t.tsv", sentences(8, 0))
    model, feats_model = tmp_path / "model", tmp_path / "feats"
    assert _run("fit", train, "--model", model, "--encoder", encoder_dir) == 0
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(6, 16)))
    np.save(tmp_path / "y.npy", np.array(["pos", "neg"] * 3))
    assert _run("fit", tmp_path / "x.npy", "--labels", tmp_path / "y.npy", "--model", feats_model) == 0
    capsys.readouterr()
    out = ["--out", tmp_path / "p.csv"]
    cases = [
        (("predict", train, "--model", feats_model, *out), "fitted on a features file, not on a text file"),
        (("predict", tmp_path / "x.npy", "--model", model, *out), "fitted on a text file"),
        (
            ("fit", train, "--model", model, "--labels", tmp_path / "y.npy"),
            "--labels is for features files; a text file gives each text's label",
        ),
        (
            ("predict", train, "--model", model, "--id-column", "key", *out),
            "a TSV file names its columns only in a header line",
        ),
        (
            (
                "fit",
                tmp_path / "x.npy",
                "--model",
                model,
                "--labels",
                tmp_path / "y.npy",
                "--encoder",
                "minilm",
            ),
            "a features file is encoded already",
        ),
        (("fit", write_tsv(tmp_path / "u.tsv", [("a good film",)]), "--model", model), "no output"),
        (("fit", train, "--model", model, "--encoder", tmp_path / "nope"), "no encoder folder"),
        (("fit", train, "--model", model, "--resolution", 96), "--resolution is for image folders; "),
        (
            ("fit", tmp_path / "x.npy", "--labels", tmp_path / "y.npy", "--model", model, "--resolution", 96),
            "is a features file",
        ),
    ]
    for argv, message in cases:
        assert _run(*argv) != 0, argv
        assert message in capsys.readouterr().err, argv
    other = tiny_text_encoder(tmp_path / "other", seed=1)
    assert _run("predict", train, "--model", model, "--encoder", other, *out) != 0
    assert "differs from the one the classifier was fitted with" in capsys.readouterr().err
    moved = tmp_path / "moved"
    encoder_dir.rename(moved)
    try:
        assert _run("predict", train, "--model", model, *out) != 0  # the folder fit read is gone
        assert "no encoder folder" in capsys.readouterr().err
        assert _run("predict", train, "--model", model, "--encoder", moved, *out) == 0  # named again
        assert _run("partial-fit", train, "--model", model, "--encoder", moved) == 0
        source = json.loads((model / "classifier.json").read_text())["metadata"]["source"]
        assert source["encoder"] == str(moved.resolve())  # saved where it is now
        assert _run("predict", train, "--model", model, *out) == 0  # found without --encoder
    finally:
        moved.rename(encoder_dir)


@pytest.mark.assets("minilm", "movie-review-sentences")
def test_real_minilm_classifies_movie_review_sentences_above_chance(tmp_path, capsys):
    """all-MiniLM-L6-v2 features of 40 Pang & Lee sentences (20 per polarity) and the default
    classifier: held-out accuracy on 200 other sentences well above the 50 % of chance."""
    from faast.assets.text import movie_review_sentences

    rows = movie_review_sentences(fetch=False)
    rng = np.random.default_rng(0)
    pick = {label: [r for r in rows if r["label"] == label] for label in ("positive", "negative")}
    train, test = [], []
    for label, items in pick.items():
        chosen = rng.choice(len(items), size=120, replace=False)
        train += [(items[i]["text"], label) for i in chosen[:20]]
        test += [(items[i]["text"], label) for i in chosen[20:]]
    model, out = tmp_path / "model", tmp_path / "p.csv"
    assert _run("fit", write_tsv(tmp_path / "train.tsv", train), "--model", model) == 0
    assert _run("predict", write_tsv(tmp_path / "test.tsv", test), "--model", model, "--out", out) == 0
    got = _read_csv(out)
    accuracy = np.mean([r["predicted"] == r["label"] for r in got])
    assert len(got) == 200 and accuracy > 0.6, accuracy


class _Pending(Exception):
    """A simulated process reached the gather before every other had brought its rows."""


class _World:
    """Processes simulated one after the other: each brings its local rows to ``gather_rows``;
    once every rank has, a second pass gathers them as ``all_gather`` would."""

    def __init__(self, size: int) -> None:
        self.size, self.rows = size, {}

    def process(self, rank: int):
        from faast.distributed import shard_range

        world = self

        class Process:
            active, is_main, world_size = True, rank == 0, world.size

            def shard_range(self, n):
                return shard_range(n, rank, world.size)

            def gather_rows(self, local, total):
                sizes = [len(shard_range(total, r, world.size)) for r in range(world.size)]
                assert local.shape[0] == sizes[rank]
                world.rows[rank] = local.clone()
                if len(world.rows) < world.size:
                    raise _Pending
                return torch.cat([world.rows[r] for r in range(world.size)])

        return Process()


class _BatchRecorder:
    """Encodes as SentenceEncoder batches (length order, ``batch_size`` at a time), each row
    [its text's length, the longest text of its batch, its batch's size]: rows differ when the
    batches do."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size, self.dim = batch_size, 3

    def encode(self, texts, progress=False):
        from faast.encoders.text import length_order

        out = torch.zeros(len(texts), 3)
        order = length_order(texts)
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            widest = max(len(texts[i]) for i in rows)
            for i in rows:
                out[i] = torch.tensor([len(texts[i]), widest, len(rows)], dtype=torch.float32)
        return out


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 9), min_size=1, max_size=30),
    batch_size=st.integers(1, 7),
    world=st.integers(1, 5),
)
def test_processes_share_out_the_batches_one_process_forms(lengths, batch_size, world):
    """Against one process's ``encode``: on any number of processes each encodes its block of the
    same batches, and the gathered rows come back in input order (texts of equal length too)."""
    from faast.encoders.text_cache import _encode

    texts = [chr(97 + i % 26) * n for i, n in enumerate(lengths)]
    encoder = _BatchRecorder(batch_size)
    reference = encoder.encode(texts)
    simulated = _World(world)
    for rank in range(world):  # every process brings its rows
        try:
            _encode(encoder, texts, simulated.process(rank), progress=False)
        except _Pending:
            pass
    for rank in range(world):  # then each gathers them
        assert torch.equal(_encode(encoder, texts, simulated.process(rank), progress=False), reference)


def test_a_hugging_face_hub_id_is_downloaded_once_and_remembered_by_its_id(
    tmp_path, encoder_dir, monkeypatch
):
    """``--encoder owner/name`` (not a folder here) is fetched through huggingface_hub's
    snapshot_download (the files a sentence encoder reads) and saved by its id, so predict finds it
    again; a Hub that cannot be reached, or no such model, is one clear error naming both readings."""
    import huggingface_hub

    asked = []

    def snapshot(model_id, allow_patterns=None):
        asked.append((model_id, allow_patterns))
        return str(encoder_dir)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot)
    monkeypatch.chdir(tmp_path)  # "someone/tiny-bert" is no folder here
    train = write_tsv(tmp_path / "t.tsv", sentences(10, 0))
    assert _run("fit", train, "--model", tmp_path / "m", "--encoder", "someone/tiny-bert") == 0
    source = json.loads((tmp_path / "m" / "classifier.json").read_text())["metadata"]["source"]
    assert (
        source["encoder"] == "someone/tiny-bert"
        and source["encoder_identity"]["encoder"] == "someone/tiny-bert"
    )
    assert asked[0][0] == "someone/tiny-bert" and "*.safetensors" in asked[0][1]
    assert _run("predict", train, "--model", tmp_path / "m", "--out", tmp_path / "p.csv") == 0
    assert [a[0] for a in asked] == ["someone/tiny-bert"] * 2

    def offline(model_id, allow_patterns=None):
        raise OSError("We couldn't connect to 'https://huggingface.co'\nmore detail")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(
        FileNotFoundError,
        match=r"no encoder folder someone/other, and no Hugging Face Hub model "
        r"someone/other could be had \(OSError: We couldn't connect to 'https://huggingface.co'\)",
    ):
        SentenceEncoder("someone/other")
    with pytest.raises(FileNotFoundError, match=r"no encoder folder \./not/a/folder/either; use minilm"):
        SentenceEncoder("./not/a/folder/either")  # not an id either: the Hub is not asked
