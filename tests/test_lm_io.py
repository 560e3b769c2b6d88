"""Saving and loading: fast weights (several named tasks), the readout adapter (save_pretrained)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from faast.lm import FaastConfig, FaastModel, get_faast_model, list_tasks
from tests.lm_tiny import random_batch, tiny_model
from tests.test_lm_model import with_random_readout


def assert_close(a, b):
    """Equal up to float64 rounding: a reloaded memory has lost the n < d dual solve's pair copies."""
    assert torch.allclose(a, b, rtol=1e-9, atol=1e-11)


def learned(family="llama", seed=0, config=None, data_seed=1):
    fm = get_faast_model(tiny_model(family, seed=seed), config or FaastConfig(num_memories=1))
    with_random_readout(fm)
    ids, mask = random_batch([12, 9], seed=data_seed)
    fm.learn(input_ids=ids, attention_mask=mask)
    return fm


def test_fast_weights_round_trip_and_named_tasks(tmp_path):
    path = tmp_path / "tasks.safetensors"
    fm = learned()
    ids = random_batch([10], seed=7)[0]
    out_a = fm(input_ids=ids).logits
    fm.save_fast_weights(path, task="a")
    fm.reset_projection().learn(input_ids=random_batch([15, 15], seed=8)[0])  # equal lengths: no pad
    out_b = fm(input_ids=ids).logits
    fm.save_fast_weights(path, task="b")
    assert list_tasks(path) == ["a", "b"]
    assert not torch.equal(out_a, out_b)

    seen_b = fm.output_memory.seen.clone()
    fm.reset_projection()
    fm.load_fast_weights(path, task="a")
    assert_close(fm(input_ids=ids).logits, out_a)
    assert not torch.equal(fm.output_memory.seen, seen_b)
    fm.load_fast_weights(path, task="b")
    assert_close(fm(input_ids=ids).logits, out_b)
    assert torch.equal(fm.output_memory.seen, seen_b)
    fm.save_fast_weights(path, task="a")  # overwriting a task keeps the others
    assert list_tasks(path) == ["a", "b"]
    with pytest.raises(ValueError, match="holds 2 tasks"):
        fm.load_fast_weights(path)
    with pytest.raises(ValueError, match="no task .c."):
        fm.load_fast_weights(path, task="c")


def test_loaded_statistics_keep_learning_exactly(tmp_path):
    path = tmp_path / "fw.safetensors"
    fm = learned()
    fm.save_fast_weights(path)
    more = random_batch([11], seed=4)[0]
    fm.learn(input_ids=more)
    direct = {n: m.stats.cross.clone() for n, m in fm.memories.items()}
    fm.reset_projection().load_fast_weights(path)
    fm.learn(input_ids=more)
    for name, mem in fm.memories.items():
        assert torch.allclose(mem.stats.cross, direct[name], rtol=1e-12, atol=0)


def test_fast_weights_load_into_another_dtype_of_the_same_model(tmp_path):
    path = tmp_path / "fw.safetensors"
    fm = learned()
    fm.save_fast_weights(path)
    other = get_faast_model(tiny_model("llama", dtype=torch.float32), FaastConfig(num_memories=1))
    with_random_readout(other)  # same seed → same readout and scorer
    other.load_fast_weights(path)
    assert other.num_pairs == fm.num_pairs


@pytest.mark.parametrize(
    ("other", "match"),
    [
        (lambda: tiny_model("qwen2"), "model_type"),
        (lambda: tiny_model("llama", layers=3), "num_layers"),
        (lambda: tiny_model("llama", hidden=64), "hidden_size"),
        (lambda: tiny_model("llama", seed=123), "other weights"),
    ],
)
def test_fast_weights_of_another_model_are_refused(tmp_path, other, match):
    path = tmp_path / "fw.safetensors"
    learned().save_fast_weights(path)
    target = with_random_readout(get_faast_model(other(), FaastConfig(num_memories=1)))
    with pytest.raises(ValueError, match=match):
        target.load_fast_weights(path)
    assert target.num_pairs == 0  # nothing was half-loaded


def test_fast_weights_of_another_layout_or_readout_are_refused(tmp_path):
    path = tmp_path / "fw.safetensors"
    learned().save_fast_weights(path)
    no_output = with_random_readout(
        get_faast_model(tiny_model("llama"), FaastConfig(num_memories=1, output_memory=False))
    )
    with pytest.raises(ValueError, match="'output'"):
        no_output.load_fast_weights(path)
    paper = with_random_readout(
        get_faast_model(tiny_model("llama"), FaastConfig(num_memories=1, output_mix="paper"))
    )
    with pytest.raises(ValueError, match="pre_norm"):
        paper.load_fast_weights(path)
    other_scorer = with_random_readout(
        get_faast_model(tiny_model("llama"), FaastConfig(num_memories=1)), seed=99
    )
    with pytest.raises(ValueError, match="scorer differs"):
        other_scorer.load_fast_weights(path)


def test_bad_fast_weight_files(tmp_path):
    fm = learned()
    with pytest.raises(FileNotFoundError):
        fm.load_fast_weights(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="not a readable safetensors"):
        fm.load_fast_weights(junk)
    stats_file = tmp_path / "stats.safetensors"
    fm.memories["output"].stats.save(stats_file)  # a GramStats file is not a fast-weight file
    with pytest.raises(ValueError, match=r"holds statistics \(GramStats\), not LM fast weights"):
        fm.load_fast_weights(stats_file)
    with pytest.raises(ValueError, match="task names"):
        fm.save_fast_weights(tmp_path / "x.safetensors", task="a/b")
    with pytest.raises(ValueError, match="nothing to save"):
        fm.reset_projection().save_fast_weights(tmp_path / "x.safetensors")


def test_save_pretrained_round_trip(tmp_path):
    fm = learned("gpt2", config=FaastConfig(num_memories=2, output_mix="prob"))
    fm.set_read(cut="alpha=0.8")
    fm.save_pretrained(tmp_path / "adapter")
    assert {p.name for p in (tmp_path / "adapter").iterdir()} == {
        "faast_config.json",
        "faast_readout.safetensors",
    }
    again = FaastModel.from_pretrained(tiny_model("gpt2"), tmp_path / "adapter", fm.read_config)
    assert again.faast_config == fm.faast_config and again.read_config == fm.read_config
    for (name, p), (name2, q) in zip(
        fm.memories.named_parameters(), again.memories.named_parameters(), strict=True
    ):
        assert name == name2 and torch.equal(p, q)
    ids, mask = random_batch([12, 9], seed=1)
    again.learn(input_ids=ids, attention_mask=mask)
    probe = random_batch([8], seed=3)[0]
    assert torch.allclose(again(input_ids=probe).logits, fm(input_ids=probe).logits, rtol=1e-9, atol=1e-10)


def test_readout_of_another_size_is_refused(tmp_path):
    learned().save_pretrained(tmp_path / "a")
    with pytest.raises(ValueError, match="hidden size 32"):
        FaastModel.from_pretrained(tiny_model("llama", hidden=64), tmp_path / "a")
    with pytest.raises(ValueError, match="readout weights"):
        FaastModel.from_pretrained(tiny_model("llama"), tmp_path / "a", num_memories=2)


def test_info_that_standard_json_cannot_hold_is_refused(tmp_path):
    import json

    fm = learned()
    path = tmp_path / "tasks.safetensors"
    for bad, error in (
        ({"score": float("nan")}, ValueError),
        ({"limit": float("inf")}, ValueError),
        ({"tensor": torch.ones(2)}, ValueError),
        ([1, 2], TypeError),
    ):
        with pytest.raises(error, match="info must"):
            fm.save_fast_weights(path, info=bad)
        assert not path.exists()
    fm.save_fast_weights(path, info={"score": 0.5, "notes": ["a", None, True]})
    header = json.loads(path.read_bytes()[8 : 8 + int.from_bytes(path.read_bytes()[:8], "little")])
    tasks = json.loads(header["__metadata__"]["tasks"], parse_constant=lambda c: pytest.fail(c))
    assert tasks["default"]["info"] == {"score": 0.5, "notes": ["a", None, True]}


def test_a_refused_read_config_changes_nothing(tmp_path):
    """set_read refused by one read-out, and a load whose stored read config this model refuses,
    leave the model as it was (the cut was set before the weight was refused; the load had already
    replaced the statistics)."""
    from faast.lm import ReadConfig

    ids, mask = random_batch([20, 15], seed=3)
    probe = random_batch([16], seed=9)[0]
    logit = get_faast_model(
        tiny_model("llama"), FaastConfig(output_mix="logit", num_memories=0), ReadConfig(weight=3.0)
    )
    logit.learn(input_ids=ids[1:], attention_mask=mask[1:])
    path = logit.save_fast_weights(tmp_path / "logit.safetensors")
    prob = get_faast_model(tiny_model("llama"), FaastConfig(num_memories=0), ReadConfig(gate=None))
    prob.learn(input_ids=ids[:1], attention_mask=mask[:1])
    before, pairs, read = prob(input_ids=probe).logits, prob.num_pairs, prob.read_config
    with pytest.raises(ValueError, match="ratio in"):
        prob.set_read(cut="ridge=100", weight=3.0)
    with pytest.raises(ValueError, match="ratio in"):
        prob.load_fast_weights(path)
    assert prob.num_pairs == pairs and prob.read_config == read
    assert torch.equal(prob(input_ids=probe).logits, before)
    prob.load_fast_weights(path, read=False)  # the statistics alone are readable by either mix
    assert prob.num_pairs == logit.num_pairs


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_fast_weights_load_into_a_copy_of_the_model_cast_to_any_float_dtype(tmp_path, dtype):
    path = tmp_path / "fw.safetensors"
    learned().save_fast_weights(path)  # learned on the float64 model
    other = with_random_readout(
        get_faast_model(tiny_model("llama", dtype=dtype), FaastConfig(num_memories=1))
    )
    other.load_fast_weights(path)  # rounding to the coarser dtype is not "other weights"
    assert other.num_pairs > 0


@pytest.mark.parametrize("relative_change", [1e-6, 1e-3])
def test_fast_weights_of_a_fine_tune_with_the_same_embeddings_are_refused(tmp_path, relative_change):
    path = tmp_path / "fw.safetensors"
    learned().save_fast_weights(path)
    tuned = tiny_model("llama")  # the same base weights, then one decoder matrix nudged, as a fine-tune does
    with torch.no_grad():
        tuned.model.layers[1].mlp.down_proj.weight.mul_(1 + relative_change)
    target = with_random_readout(get_faast_model(tuned, FaastConfig(num_memories=1)))
    with pytest.raises(ValueError, match=r"model\.layers\.1\.mlp\.down_proj\.weight differ"):
        target.load_fast_weights(path)
    assert target.num_pairs == 0


def test_fast_weights_saved_without_weight_samples_still_load(tmp_path):
    """Files written before the samples were stored are checked as before (embeddings only)."""
    from faast.io import load_tensors, save_tensors

    path = tmp_path / "fw.safetensors"
    learned().save_fast_weights(path, task="t")
    tensors, meta = load_tensors(path, kind="fast_weights")
    for key in ("t/weight_samples", "t/weight_resolution"):
        del tensors[key]
    save_tensors(path, tensors, meta, kind="fast_weights")
    tuned = tiny_model("llama")
    with torch.no_grad():
        tuned.model.layers[1].mlp.down_proj.weight.mul_(1.001)
    target = with_random_readout(get_faast_model(tuned, FaastConfig(num_memories=1)))
    target.load_fast_weights(path)  # not told apart without the samples, as before
    assert target.num_pairs > 0


def test_fast_weights_of_a_model_with_other_tensor_names_are_loaded_with_a_warning(tmp_path):
    import json

    from faast.io import load_tensors, save_tensors

    path = tmp_path / "fw.safetensors"
    learned().save_fast_weights(path, task="t")
    tensors, meta = load_tensors(path, kind="fast_weights")
    tasks = json.loads(meta["tasks"])
    tasks["t"]["weights"] = "0" * 16  # as if its tensors had been named or shaped otherwise
    save_tensors(path, tensors, {"tasks": json.dumps(tasks)}, kind="fast_weights")
    target = with_random_readout(get_faast_model(tiny_model("llama"), FaastConfig(num_memories=1)))
    with pytest.warns(UserWarning, match="named or shaped otherwise"):
        target.load_fast_weights(path)
    assert target.num_pairs > 0


FLOAT_DTYPES = [torch.float64, torch.float32, torch.bfloat16, torch.float16]


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    rows=st.integers(1, 6),
    stored_dtype=st.sampled_from(FLOAT_DTYPES),
    dtype=st.sampled_from(FLOAT_DTYPES),
    scale=st.sampled_from([1e-9, 1e-6, 1e-2, 1.0, 1e3, 1e6]),
)
def test_weight_samples_rounded_to_two_dtypes_agree_and_a_change_beyond_rounding_does_not(
    seed, rows, stored_dtype, dtype, scale
):
    from faast.lm import fastweights as fw

    gen = torch.Generator().manual_seed(seed)
    base = torch.randn(rows, 40, generator=gen, dtype=torch.float64) * scale
    stored = [(f"w{i}", base[i].to(stored_dtype)) for i in range(rows)]
    here = [(f"w{i}", base[i].to(dtype)) for i in range(rows)]
    (s_stored, r_stored), (s_here, r_here) = fw.weight_samples(stored), fw.weight_samples(here)
    assert fw.differing_weights(s_stored, r_stored, s_here, r_here) == []
    coarse = max(torch.finfo(stored_dtype).eps, torch.finfo(dtype).eps)
    changed = base.clone()
    changed[rows - 1] *= 1 + 4 * coarse
    moved = [(f"w{i}", changed[i].to(dtype)) for i in range(rows)]
    s_moved, r_moved = fw.weight_samples(moved)
    representable = all(  # normal numbers in both dtypes: a change beyond rounding is visible
        torch.finfo(t).tiny * 4 < base[rows - 1].abs().min()
        and base[rows - 1].abs().max() < torch.finfo(t).max / 4
        for t in (stored_dtype, dtype)
    )
    if representable:
        assert fw.differing_weights(s_stored, r_stored, s_moved, r_moved) == [rows - 1]
