"""Exact forgetting on the LM side: ``FaastModel.forget`` / ``forget_captured``, the output memory's
per-token counts, ``TaskModel.forget`` and ``faast lm forget``. Every check compares with a refit:
a model that learned only what remains (tiny random float64 models of each family)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from faast.cli import main
from faast.io import save_tensors
from faast.lm import FaastConfig, ReadConfig, get_faast_model
from faast.lm.examples import Example
from faast.lm.fastweights import read_file, read_task
from faast.lm.prompts import PromptTemplate
from faast.lm.task import TaskModel, TaskSpec
from tests.lm_tiny import FAMILIES, random_batch, tiny_model
from tests.lm_wordlevel import save_tiny_model, word_tokenizer
from tests.test_lm_model import with_random_readout

MIXES = ("prob", "logit", "paper", "correction")
READS = {
    "prob": {"weight": 0.5, "temperature": 0.5, "gate": None},
    "logit": {"weight": 0.8},
    "paper": {},
    "correction": {"weight": 0.7},
}
#: (A, B) sequence lengths: 12 + 9 pairs (the memories keep their d = 32 rows), 28 + 17 (they do not).
REGIMES = {"rows-kept": ([9, 5], [7, 4]), "rows-dropped": ([12, 10, 9], [11, 8])}


def make(family, mix, middle, seed_model=0):
    layout = FaastConfig(memory_layers=[0, 1] if middle else [], output_mix=mix)
    read = ReadConfig(cut="alpha=0.9,c=1.5", **READS[mix])
    return with_random_readout(get_faast_model(tiny_model(family, seed=seed_model), layout, read))


def state(fm):
    """Everything learning changes: the statistics, kept rows and learned-token counts, copied."""
    out = {}
    for name, r in fm.memories.items():
        s = r.stats
        rows = s.kept_rows()
        out[name] = {
            "gram": s.gram.clone(),
            "cross": s.cross.clone(),
            "count": s.count,
            "weight_sum": s.weight_sum,
            "value_sq_sum": s.value_sq_sum,
            "rows": None if rows is None else tuple(t.clone() for t in rows),
            **{k: v.clone() for k, v in r.extra_state().items()},
        }
    return out


def assert_same_state(a, b, rtol=0.0, sums_rtol=None):
    """Statistics equal to ``rtol`` relative to their largest entry (0: bit for bit, kept rows
    too), the scalar sums to ``sums_rtol`` (default ``rtol``); counts exactly."""
    sums_rtol = rtol if sums_rtol is None else sums_rtol
    assert a.keys() == b.keys()
    for name in a:
        x, y = a[name], b[name]
        assert x["count"] == y["count"], name
        for key in ("gram", "cross"):
            scale = max(float(x[key].abs().max()), 1e-300)
            assert float((x[key] - y[key]).abs().max()) <= rtol * scale, (name, key)
        for key in ("weight_sum", "value_sq_sum"):
            assert abs(x[key] - y[key]) <= sums_rtol * max(abs(x[key]), 1e-300), (name, key)
        if "counts" in x:
            assert torch.equal(x["counts"], y["counts"]), name
        if rtol == 0.0:
            assert (x["rows"] is None) == (y["rows"] is None), name
            if x["rows"] is not None:
                assert all(torch.equal(p, q) for p, q in zip(x["rows"], y["rows"], strict=True)), name


def logits(fm, seed=9):
    ids, mask = random_batch([10, 6], seed=seed)
    return fm(input_ids=ids, attention_mask=mask).logits


# ----------------------------------------------------------------- FaastModel.forget equals a refit
@pytest.mark.parametrize("regime", list(REGIMES))
@pytest.mark.parametrize("middle", [False, True], ids=["no-middle", "middle"])
@pytest.mark.parametrize("mix", MIXES)
@pytest.mark.parametrize("family", FAMILIES)
def test_forget_equals_learning_the_rest(family, mix, middle, regime):
    len_a, len_b = REGIMES[regime]
    a, b = random_batch(len_a, seed=1, side="left"), random_batch(len_b, seed=2)
    fm = make(family, mix, middle)
    fm.learn(input_ids=a[0], attention_mask=a[1])
    fm.learn(input_ids=b[0], attention_mask=b[1])
    assert fm.forget(input_ids=b[0], attention_mask=b[1]) == sum(n - 1 for n in len_b)
    refit = make(family, mix, middle)
    refit.learn(input_ids=a[0], attention_mask=a[1])
    assert fm.num_pairs == refit.num_pairs == sum(n - 1 for n in len_a)
    assert_same_state(state(fm), state(refit), rtol=1e-10)
    out = fm.output_memory
    assert out is not None and torch.equal(out.seen, refit.output_memory.seen)
    if regime == "rows-kept":  # the kept rows are removed: G, B and the rows are the refit's
        assert_same_state(state(fm), state(refit), sums_rtol=1e-12)
    got, want = logits(fm), logits(refit)
    assert torch.allclose(got, want, rtol=1e-8, atol=1e-8), float((got - want).abs().max())
    # Forgetting A too leaves the base model, bit for bit.
    fm.forget(input_ids=a[0], attention_mask=a[1])
    assert fm.num_pairs == 0 and not bool(fm.output_memory.counts.any())
    with fm.disabled():
        base = logits(fm)
    assert torch.equal(logits(fm), base)


@settings(max_examples=8, deadline=None)
@given(
    texts=st.lists(st.lists(st.integers(3, 25), min_size=2, max_size=14), min_size=1, max_size=5),
    data=st.data(),
)
def test_random_learn_forget_sequences_equal_refits(texts, data):
    """Texts (token ids from a small range, so tokens repeat) learned one by one, a random subset
    forgotten: the statistics and per-token counts equal learning the others alone (up to 65
    pairs: the rows are kept or dropped)."""
    drop = data.draw(st.lists(st.booleans(), min_size=len(texts), max_size=len(texts)))
    fm, refit = make("llama", "prob", True), make("llama", "prob", True)
    for text in texts:
        fm.learn(input_ids=torch.tensor([text]))
    for text, gone in zip(texts, drop, strict=True):
        if gone:
            fm.forget(input_ids=torch.tensor([text]))
        else:
            refit.learn(input_ids=torch.tensor([text]))
    assert_same_state(state(fm), state(refit), rtol=1e-10)
    want = torch.zeros_like(fm.output_memory.counts)
    for text, gone in zip(texts, drop, strict=True):
        for token in text[1:]:  # a plain count of the next tokens of the texts kept
            want[token] += 0 if gone else 1
    assert torch.equal(fm.output_memory.counts, want)


def test_forgetting_the_last_occurrence_drops_the_token_from_the_support():
    fm = make("llama", "prob", False)
    ids = torch.tensor([[5, 6, 7, 8], [9, 6, 7, 10]])
    fm.learn(input_ids=ids[:1])
    fm.learn(input_ids=ids[1:])
    counts = fm.output_memory.counts
    assert counts[6] == 2 and counts[7] == 2 and counts[8] == 1 and counts[10] == 1
    fm.forget(input_ids=ids[1:])
    assert counts[6] == 1 and counts[7] == 1 and counts[10] == 0
    assert torch.nonzero(fm.output_memory.seen).squeeze(1).tolist() == [6, 7, 8]
    support = fm.output_memory.support_of(fm._layout.lm_head)
    assert support.index is not None and support.index.tolist() == [6, 7, 8]
    # Reading the same statistics with another mix keeps the counts, and forgetting goes on.
    fm.set_output_mix("logit", ReadConfig(weight=0.5))
    assert torch.equal(fm.output_memory.counts, counts)
    fm.forget(input_ids=ids[:1])
    assert fm.num_pairs == 0 and not bool(fm.output_memory.counts.any())


# ----------------------------------------------------------------- never learned: an error, no change
@pytest.mark.parametrize("middle", [False, True], ids=["no-middle", "middle"])
@pytest.mark.parametrize("mix", MIXES)
def test_forgetting_what_was_never_learned_is_an_error_and_changes_nothing(mix, middle):
    fm = make("qwen2", mix, middle)
    a = random_batch([9, 5], seed=1)
    rows = [a[0][:1, :9], a[0][1:, :5]]
    for row in rows:
        fm.learn(input_ids=row)
    before, out_before = state(fm), logits(fm)
    other = random_batch([6, 4], seed=7)  # rows kept: every pair is checked bit for bit
    with pytest.raises(ValueError, match="never"):
        fm.forget(input_ids=other[0], attention_mask=other[1])
    with pytest.raises(ValueError, match="cannot forget 19 pairs, it holds 12"):
        fm.forget(input_ids=random_batch([10, 11], seed=1)[0], attention_mask=random_batch([10, 11])[1])
    with pytest.raises(ValueError, match="nothing to learn"):
        fm.forget(input_ids=a[0], attention_mask=torch.zeros_like(a[1]))
    # One batch learned, one not, with the same next tokens (another first token): the token
    # counts pass, the second batch's pairs match no kept row after the first's were removed,
    # and everything is put back.
    changed = rows[0].clone()
    changed[0, 0] = 3 if int(changed[0, 0]) != 3 else 4
    caps = [fm.capture(input_ids=rows[1]), fm.capture(input_ids=changed)]
    with pytest.raises(ValueError, match="never added"):
        fm.forget_captured(caps)
    assert_same_state(state(fm), before)
    assert torch.equal(logits(fm), out_before)
    # A batch forgotten twice is refused the second time.
    fm.forget_captured(caps[0])
    with pytest.raises(ValueError, match="never"):
        fm.forget_captured(caps[0])
    fm.forget(input_ids=rows[0])
    assert fm.num_pairs == 0


@pytest.mark.parametrize("mix", MIXES)
def test_loaded_fast_weights_still_refuse_pairs_never_learned(mix, tmp_path):
    """A memory that keeps its rows (at most d pairs) saves them with its fast weights, so after
    loading, a batch never learned whose next tokens were all learned is refused as before the
    save (it was subtracted before the rows were saved), and forgetting what was learned still
    equals a model that learned only the rest."""
    fm = make("llama", mix, False)
    a, b = random_batch([9], seed=1)[0], random_batch([7], seed=2)[0]
    fm.learn(input_ids=a)
    fm.learn(input_ids=b)
    fm.save_fast_weights(tmp_path / "fw.safetensors")
    loaded = make("llama", mix, False).load_fast_weights(tmp_path / "fw.safetensors")
    assert_same_state(state(loaded), state(fm))  # the rows included
    other = a.clone()
    other[0, 0] = 3 if int(a[0, 0]) != 3 else 4  # the same next tokens, another first token
    before = state(loaded)
    with pytest.raises(ValueError, match="never added"):
        loaded.forget(input_ids=other)
    assert_same_state(state(loaded), before)
    loaded.forget(input_ids=a)
    rest = make("llama", mix, False)
    rest.learn(input_ids=b)
    torch.testing.assert_close(logits(loaded), logits(rest), rtol=1e-9, atol=1e-9)


def test_a_refused_load_keeps_the_rows_forgetting_checks(tmp_path):
    """A load refused partway (a damaged file: NaN statistics) puts the earlier fast weights back
    with their kept rows, so a batch never learned is still refused afterwards (the rollback
    dropped the rows, and forgetting then accepted it)."""
    from faast.lm.fastweights import write_task

    fm = make("llama", "prob", False)
    a = random_batch([9], seed=1)[0]
    fm.learn(input_ids=a)
    fm.save_fast_weights(tmp_path / "fw.safetensors")
    task, tensors, signature = read_task(tmp_path / "fw.safetensors", None)
    tensors["output/gram"] = torch.full_like(tensors["output/gram"], float("nan"))
    write_task(tmp_path / "bad.safetensors", task, tensors, signature)
    before = state(fm)
    with pytest.raises(ValueError, match="NaN"):
        fm.load_fast_weights(tmp_path / "bad.safetensors")
    assert_same_state(state(fm), before)  # the rows included
    other = a.clone()
    other[0, 0] = 3 if int(a[0, 0]) != 3 else 4
    with pytest.raises(ValueError, match="never added"):
        fm.forget(input_ids=other)


def test_many_pairs_held_a_token_never_learned_is_still_refused():
    fm = make("gpt2", "prob", True)
    ids, mask = random_batch([12, 12, 12], seed=1)  # 33 pairs: the rows are dropped
    fm.learn(input_ids=ids, attention_mask=mask)
    before = state(fm)
    never = int(torch.nonzero(fm.output_memory.counts == 0)[0])
    with pytest.raises(ValueError, match=rf"never learned token ids \[{never}\]"):
        fm.forget(input_ids=torch.tensor([[int(ids[0, 0]), never]]))
    assert_same_state(state(fm), before)


def test_a_changed_scorer_refuses_forgetting():
    fm = make("llama", "prob", True)
    ids = random_batch([9], seed=1)[0]
    fm.learn(input_ids=ids)
    before = state(fm)
    with torch.no_grad():
        fm.middle_memories[0].scorer.weight.add_(0.5)
    with pytest.raises(ValueError, match="scorer changed"):
        fm.forget(input_ids=ids)
    assert_same_state(state(fm), before)


# ----------------------------------------------------------------- saved counts
def test_save_load_keeps_counts_and_validates_them(tmp_path):
    fm = make("llama", "logit", False)
    ids, mask = random_batch([9, 6], seed=3)
    fm.learn(input_ids=ids, attention_mask=mask)
    fm.learn(input_ids=ids, attention_mask=mask)  # every count is even
    path = tmp_path / "fw.safetensors"
    fm.save_fast_weights(path, "t")
    loaded = make("llama", "logit", False).load_fast_weights(path, "t")
    assert torch.equal(loaded.output_memory.counts, fm.output_memory.counts)
    assert loaded.output_memory.counts.dtype == torch.int64
    loaded.forget(input_ids=ids, attention_mask=mask)
    loaded.forget(input_ids=ids, attention_mask=mask)
    assert loaded.num_pairs == 0
    tensors, tasks = read_file(path)
    meta = {"tasks": json.dumps(tasks, sort_keys=True)}
    good = tensors["t/output/counts"]
    bad_cases = {
        "negative": good - 2,
        "float": good.double(),
        "shape": good[:-1],
    }
    for why, bad in bad_cases.items():
        broken = tmp_path / f"{why}.safetensors"
        save_tensors(broken, {**tensors, "t/output/counts": bad}, meta, kind="fast_weights")
        target = make("llama", "logit", False)
        with pytest.raises(ValueError, match="learned-token counts"):
            target.load_fast_weights(broken, "t")
        assert target.num_pairs == 0 and not bool(target.output_memory.counts.any())


def test_a_legacy_file_with_only_seen_loads_as_counts_of_one(tmp_path):
    fm = make("gemma3", "prob", False)
    ids = torch.tensor([[5, 6, 7, 6, 7, 8]])  # 6 and 7 learned twice as values
    fm.learn(input_ids=ids)
    path = tmp_path / "fw.safetensors"
    fm.save_fast_weights(path, "t")
    tensors, tasks = read_file(path)
    counts = tensors.pop("t/output/counts")
    tensors["t/output/seen"] = (counts > 0).to(torch.uint8)  # what older versions wrote
    legacy = tmp_path / "legacy.safetensors"
    save_tensors(legacy, tensors, {"tasks": json.dumps(tasks)}, kind="fast_weights")
    loaded = make("gemma3", "prob", False).load_fast_weights(legacy, "t")
    out = loaded.output_memory
    assert torch.equal(out.seen, fm.output_memory.seen)
    assert out.counts[[6, 7, 8]].tolist() == [1, 1, 1]
    assert torch.allclose(logits(loaded), logits(fm), rtol=1e-10, atol=1e-10)  # the same support
    with pytest.raises(ValueError, match=r"older faast \(before 2026-11-30\)"):
        loaded.forget(input_ids=ids)  # the file holds no counts: nothing in it can be forgotten
    assert loaded.num_pairs == 5


# ----------------------------------------------------------------- TaskModel.forget
def _examples(n, seed):
    gen = np.random.default_rng(seed)
    return [
        Example(" ".join(f"w{k}" for k in gen.integers(3, 80, size=3)), f"w{80 + i % 3}") for i in range(n)
    ]


@pytest.mark.parametrize(("pairs", "cache"), [("answer", False), ("all", False), ("all", True)])
def test_task_forget_equals_learning_the_rest(pairs, cache):
    template = PromptTemplate("{input} w90", answer_prefix=" ", answer_end=" w91", separator=" w92")

    def task():
        return TaskModel.create(tiny_model("llama"), word_tokenizer(), TaskSpec(template, pairs), cache=cache)

    keep, drop = _examples(6, 1), _examples(4, 2)
    tm = task()
    tm.learn(keep + drop, batch_size=2, progress=False)
    # With the cache the states are the very ones learned, whatever the batching.
    removed = tm.forget(drop, batch_size=3 if cache else 2, progress=False)
    refit = task()
    assert removed > 0 and refit.learn(keep, batch_size=2, progress=False) == tm.model.num_pairs
    assert_same_state(state(tm.model), state(refit.model), rtol=1e-10)
    never = [keep[0], Example("w5 w6 w7", "w95")]  # w95 was never learned: nothing is forgotten
    with pytest.raises(ValueError, match="never learned"):
        tm.forget(never, batch_size=1, progress=False)
    assert_same_state(state(tm.model), state(refit.model), rtol=1e-10)


# ----------------------------------------------------------------- faast lm forget
def test_cli_forget_round_trip(tmp_path, capsys):
    folder = save_tiny_model(tmp_path / "model")
    words = [f"w{i}" for i in range(3, 90)]
    text_a, text_b = tmp_path / "a.txt", tmp_path / "b.txt"
    text_a.write_text(" ".join(words[i % 31] for i in range(40)))
    text_b.write_text(" ".join(words[(7 * i) % 50] for i in range(30)))
    path = tmp_path / "fw.safetensors"
    common = ["--model", str(folder), "--threads", "1", "--window", "16"]
    learn = ["lm", "learn", *common, "--out", str(path)]
    assert main([*learn, "--text", str(text_a), "--task", "a"]) == 0
    assert main([*learn, "--text", str(text_a), "--task", "ab"]) == 0
    assert main([*learn, "--text", str(text_b), "--task", "ab", "--append"]) == 0
    missing = ["lm", "learn", *common, "--out", str(tmp_path / "none.safetensors"), "--text", str(text_b)]
    assert main([*missing, "--append"]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert int(read_task(path, "ab")[1]["output/count"]) > int(read_task(path, "a")[1]["output/count"])
    capsys.readouterr()
    forget = ["lm", "forget", *common, "--fast-weights", str(path), "--task", "ab"]
    assert main([*forget, "--text", str(text_b)]) == 0
    printed = capsys.readouterr().out
    assert "pairs remain" in printed
    _, got, signature = read_task(path, "ab")
    _, want, _ = read_task(path, "a")
    forgot = int(printed.split("forgot ")[1].split(" pairs")[0])
    assert forgot > 0 and signature["info"]["forgotten"] == [{"text": "b.txt", "pairs": forgot}]
    assert torch.equal(got["output/counts"], want["output/counts"])
    assert int(got["output/count"]) == int(want["output/count"])
    for key in ("output/gram", "output/cross"):
        scale = float(want[key].abs().max())
        assert float((got[key] - want[key]).abs().max()) <= 1e-10 * scale, key
    # Forgetting b again (never learned now) fails and leaves the file as it was.
    before = path.read_bytes()
    assert main([*forget, "--text", str(text_b)]) == 1
    assert "never learned" in capsys.readouterr().err
    assert path.read_bytes() == before
    # Forgetting the only text of a task would leave it empty: refused, file unchanged.
    only_a = ["lm", "forget", *common, "--fast-weights", str(path), "--task", "a", "--text", str(text_a)]
    assert main(only_a) == 1
    assert "empty" in capsys.readouterr().err
    assert path.read_bytes() == before


@pytest.mark.parametrize("regime", sorted(REGIMES))
def test_forgetting_with_the_model_in_another_dtype_is_refused(tmp_path, regime):
    lengths_a, lengths_b = REGIMES[regime]
    ids_a, mask_a = random_batch(lengths_a, seed=3)
    ids_b, mask_b = random_batch(lengths_b, seed=4)
    fm = make("llama", "prob", middle=False)
    fm.learn(input_ids=ids_a, attention_mask=mask_a)
    fm.learn(input_ids=ids_b, attention_mask=mask_b)
    path = tmp_path / "fw.safetensors"
    fm.save_fast_weights(path)
    before = {k: v.clone() for k, v in fm.output_memory.stats.state_dict().items()}
    fm.to(torch.float32)
    with pytest.raises(ValueError, match="learned with the model in float64 and it now runs in float32"):
        fm.forget(input_ids=ids_b, attention_mask=mask_b)
    assert all(torch.equal(v, before[k]) for k, v in fm.output_memory.stats.state_dict().items())
    fm.to(torch.float64)
    assert fm.forget(input_ids=ids_b, attention_mask=mask_b) == int(mask_b[:, 1:].sum())

    loaded = make("llama", "prob", middle=False)
    loaded.to(torch.float32).load_fast_weights(path)  # the dtype travels with the file
    with pytest.raises(ValueError, match="learned with the model in float64"):
        loaded.forget(input_ids=ids_b, attention_mask=mask_b)
    loaded.to(torch.float64)
    loaded.forget(input_ids=ids_b, attention_mask=mask_b)
    loaded.reset_projection().to(torch.float32)  # nothing held: learning in float32 starts afresh
    loaded.learn(input_ids=ids_a, attention_mask=mask_a)
    loaded.forget(input_ids=ids_a, attention_mask=mask_a)
