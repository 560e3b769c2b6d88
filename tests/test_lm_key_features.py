"""Random-feature keys of the output memory (``FaastConfig(output_key_features=D)``): the map
against a plain NumPy reference, the capacity it buys on tiny models, exact forgetting, save/load,
switching mixes and the CLI."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from faast.cli import main
from faast.lm import FaastConfig, ReadConfig, get_faast_model
from faast.lm.key_features import RandomFeatureKeys
from tests.lm_tiny import FAMILIES, VOCAB, tiny_model
from tests.lm_wordlevel import save_tiny_model
from tests.test_lm_cli import model_dir  # noqa: F401 - the tiny model folder fixture
from tests.test_lm_forget import assert_same_state, state


def reference_features(z: np.ndarray, features: int, seed: int) -> np.ndarray:
    """φ(z) = [ẑ ; relu(R ẑ)] written out with NumPy in float64."""
    d = z.shape[-1]
    r = np.random.RandomState(seed).standard_normal((features, d)) / math.sqrt(d)
    unit = z / np.maximum(np.linalg.norm(z, axis=-1, keepdims=True), 1e-12)
    return np.concatenate([unit, np.maximum(unit @ r.T, 0.0)], axis=-1)


@settings(max_examples=40, deadline=None)
@given(
    dim=st.integers(1, 24),
    features=st.integers(1, 40),
    lead=st.lists(st.integers(1, 4), min_size=0, max_size=2),
    seed=st.integers(0, 2**31 - 1),
    data_seed=st.integers(0, 1000),
    scale=st.sampled_from([1e-3, 1.0, 1e3]),
)
def test_features_match_a_numpy_reference(dim, features, lead, seed, data_seed, scale):
    z = np.random.default_rng(data_seed).standard_normal((*lead, dim)) * scale
    phi = RandomFeatureKeys(dim, features, seed)
    got = phi(torch.from_numpy(z))
    assert got.dtype == torch.float64 and got.shape == (*lead, dim + features)
    np.testing.assert_allclose(got.numpy(), reference_features(z, features, seed), rtol=1e-12, atol=1e-14)
    # float32 keys: computed in float32, equal to the reference to float32 precision
    got32 = phi(torch.from_numpy(z).float())
    assert got32.dtype == torch.float32
    np.testing.assert_allclose(got32.numpy(), reference_features(z, features, seed), rtol=2e-5, atol=2e-6)


def test_features_are_deterministic_and_validated():
    a, b = RandomFeatureKeys(8, 16, seed=3), RandomFeatureKeys(8, 16, seed=3)
    assert torch.equal(a.matrix, b.matrix)
    assert not torch.equal(a.matrix, RandomFeatureKeys(8, 16, seed=4).matrix)
    assert a.signature() == {"key_features": 16, "key_seed": 3} and a.out_dim == 24
    assert a.nbytes(torch.float32) == 16 * 8 * 4
    with pytest.raises(ValueError, match="keys of width 8"):
        a(torch.zeros(3, 7))
    with pytest.raises(ValueError, match="features >= 1"):
        RandomFeatureKeys(8, 0)
    for bad in (-1, 2.5, "8", True):
        with pytest.raises(ValueError, match="output_key_features must be an integer >= 0"):
            FaastConfig(output_key_features=bad)


def _recall(fm, ids: torch.Tensor) -> tuple[float, float]:
    """(next-token accuracy, mean NLL) of the model on the sequence ids (1, n) it learned."""
    with torch.no_grad():
        log_probs = fm(input_ids=ids).logits.log_softmax(-1)[0, :-1]
    target = ids[0, 1:]
    accuracy = (log_probs.argmax(-1) == target).double().mean().item()
    return accuracy, -log_probs.gather(-1, target[:, None]).mean().item()


@pytest.mark.parametrize("family", FAMILIES)
def test_key_features_raise_the_capacity_of_the_output_memory(family):
    """59 pairs in a width-32 memory cannot be recalled; with 256 features (width 288) they are."""
    ids = torch.randint(3, VOCAB, (1, 60), generator=torch.Generator().manual_seed(3))
    scores = {}
    for features in (0, 256):
        fm = get_faast_model(tiny_model(family), FaastConfig(num_memories=0, output_key_features=features))
        fm.learn(input_ids=ids)
        assert fm.output_memory.memory.key_dim == 32 + features
        scores[features] = _recall(fm, ids)
    (acc0, nll0), (acc1, nll1) = scores[0], scores[256]
    assert acc1 >= 0.85 and acc1 >= acc0 + 0.4, scores
    assert nll1 < 0.5 * nll0, scores


def test_reading_predicts_through_the_feature_map():
    fm = get_faast_model(tiny_model("llama"), FaastConfig(num_memories=0, output_key_features=20))
    fm.learn(input_ids=torch.randint(3, VOCAB, (2, 30), generator=torch.Generator().manual_seed(0)))
    out = fm.output_memory
    h = torch.randn(5, 32, dtype=torch.float64)
    expected = out.fast_weight(torch.float64, h.device) @ out.key_map(h).T
    torch.testing.assert_close(out.predict(h), expected.T, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "lengths", [([9, 5], [7, 4]), ([40, 35], [30, 20])], ids=["rows-kept", "rows-dropped"]
)
def test_forgetting_equals_a_refit(lengths):
    first, second = lengths
    gen = torch.Generator().manual_seed(5)
    a = [torch.randint(3, VOCAB, (1, n), generator=gen) for n in first]
    b = [torch.randint(3, VOCAB, (1, n), generator=gen) for n in second]
    layout = FaastConfig(num_memories=0, output_key_features=24)
    learned = get_faast_model(tiny_model("gemma3"), layout)
    for ids in a + b:
        learned.learn(input_ids=ids)
    for ids in b:
        learned.forget(input_ids=ids)
    refit = get_faast_model(tiny_model("gemma3"), layout)
    for ids in a:
        refit.learn(input_ids=ids)
    assert_same_state(state(learned), state(refit), rtol=1e-12)
    probe = torch.randint(3, VOCAB, (1, 12), generator=gen)
    with torch.no_grad():
        torch.testing.assert_close(learned(input_ids=probe).logits, refit(input_ids=probe).logits)


def test_fast_weights_load_only_into_the_same_feature_map(tmp_path):
    ids = torch.randint(3, VOCAB, (1, 50), generator=torch.Generator().manual_seed(1))
    layout = FaastConfig(num_memories=0, output_key_features=40)
    fm = get_faast_model(tiny_model("qwen2"), layout, ReadConfig(gate=None, weight=0.5, temperature=0.1))
    fm.learn(input_ids=ids)
    path = fm.save_fast_weights(tmp_path / "fw.safetensors", task="passage")
    assert fm.signature()["memories"]["output"]["key_features"] == 40
    again = get_faast_model(tiny_model("qwen2"), layout).load_fast_weights(path, "passage")
    with torch.no_grad():
        torch.testing.assert_close(again(input_ids=ids).logits, fm(input_ids=ids).logits)
    for other in (
        FaastConfig(num_memories=0),
        FaastConfig(num_memories=0, output_key_features=40, output_key_seed=1),
    ):
        with pytest.raises(ValueError, match="do not match this model's memory 'output'"):
            get_faast_model(tiny_model("qwen2"), other).load_fast_weights(path, "passage")


def test_switching_the_mix_keeps_the_feature_map():
    ids = torch.randint(3, VOCAB, (1, 50), generator=torch.Generator().manual_seed(2))
    fm = get_faast_model(tiny_model("llama"), FaastConfig(num_memories=0, output_key_features=64))
    fm.learn(input_ids=ids)
    fm.set_output_mix("logit", ReadConfig(weight=2.0))
    assert fm.output_memory.key_map is not None and fm.output_memory.memory.key_dim == 96
    logits = fm(input_ids=ids).logits
    assert torch.isfinite(logits).all()
    sizes = fm.fast_weight_nbytes(torch.float32)
    assert sizes["compiled"] == 96 * 32 * 4 + VOCAB + 64 * 32 * 4


def test_cli_learns_and_reads_with_key_features(tmp_path, capsys):
    folder = save_tiny_model(tmp_path / "model")
    text = tmp_path / "passage.txt"
    text.write_text(" ".join(f"w{i % 37}" for i in range(90)), encoding="utf-8")
    out = tmp_path / "fw.safetensors"
    common = ["--model", str(folder), "--threads", "1"]
    assert main(["lm", "learn", *common, "--text", str(text), "--out", str(out), "--key-features", "48"]) == 0
    from faast.lm.fastweights import read_task

    _, _, signature = read_task(out, "default")
    assert signature["config"]["output_key_features"] == 48
    assert signature["memories"]["output"]["key_dim"] == signature["hidden_size"] + 48
    assert (
        main(
            [
                "lm",
                "generate",
                *common,
                "--fast-weights",
                str(out),
                "--prompt",
                "w1 w2",
                "--max-new-tokens",
                "3",
            ]
        )
        == 0
    )
    capsys.readouterr()
    code = main(
        ["lm", "learn", *common, "--text", str(text), "--out", str(out), "--append", "--key-features", "8"]
    )
    assert code != 0
    assert "--key-features 8 differs from the task's 48" in capsys.readouterr().err


def test_task_learn_and_classify_with_key_features(model_dir, tmp_path):  # noqa: F811
    """`faast task learn --key-features` stores the layout; classify rebuilds it from the file."""
    from faast.lm.fastweights import read_task
    from tests.test_task_cli import TEMPLATE, _write_examples

    train = tmp_path / "train.tsv"
    _write_examples(train, 24)
    out = tmp_path / "tasks.safetensors"
    base = ["--model", str(model_dir), "--threads", "1"]
    learn = ["task", "learn", *base, "--examples", str(train), "--out", str(out), "--template", TEMPLATE]
    assert main([*learn, "--folds", "2", "--key-features", "40"]) == 0
    _, _, signature = read_task(out, "default")
    assert signature["memories"]["output"]["key_features"] == 40
    preds = tmp_path / "pred.jsonl"
    use = [*base, "--fast-weights", str(out)]
    assert main(["task", "classify", *use, "--inputs", str(train), "--out", str(preds)]) == 0
    assert len(preds.read_text().splitlines()) == 24


def test_set_output_key_features_changes_an_empty_memory_only():
    ids = torch.randint(3, VOCAB, (1, 60), generator=torch.Generator().manual_seed(3))
    fm = get_faast_model(tiny_model("gpt2"), FaastConfig(num_memories=0))
    fm.learn(input_ids=ids)
    with pytest.raises(ValueError, match="call reset_projection"):
        fm.set_output_key_features(256)
    assert fm.output_memory.key_map is None and fm.output_memory.memory.num_pairs == 59
    fm.reset_projection().set_output_key_features(256)
    assert fm.faast_config.output_key_features == 256
    fm.learn(input_ids=ids)
    fresh = get_faast_model(tiny_model("gpt2"), FaastConfig(num_memories=0, output_key_features=256))
    fresh.learn(input_ids=ids)
    with torch.no_grad():
        torch.testing.assert_close(fm(input_ids=ids).logits, fresh(input_ids=ids).logits)
    with pytest.raises(ValueError, match="output_key_features must be an integer >= 0"):
        fm.reset_projection().set_output_key_features(-1)
    assert fm.faast_config.output_key_features == 256


def test_save_pretrained_keeps_the_key_features(tmp_path):
    from faast.lm import FaastModel

    fm = get_faast_model(
        tiny_model("llama"), FaastConfig(num_memories=0, output_key_features=12, output_key_seed=7)
    )
    fm.save_pretrained(tmp_path / "adapter")
    again = FaastModel.from_pretrained(tiny_model("llama"), tmp_path / "adapter")
    assert again.output_memory.key_map.signature() == {"key_features": 12, "key_seed": 7}
    assert again.signature()["memories"] == fm.signature()["memories"]
