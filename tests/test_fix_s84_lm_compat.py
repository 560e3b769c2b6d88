"""LM fast weights written by the first faast versions (hunt s84_compat, findings 2 and 7).

* A task written on 2026-11-23 (file tag ``faast.lm.fast_weights``, no ``read`` in its signature:
  its read settings in the layout config) was accepted and read to other outputs than it gave then
  (7917574 changed what the output memory's weight, temperature and gate mean), without a word: it
  now warns, once.
* Files written before 2026-11-30 keep which tokens the output memory learned (``seen``, 0/1), not
  how often: ``forget`` took each as learned once and refused a text that *was* learned, saying
  "this text was not learned". It now refuses, with the true reason, to forget any text from them
  (beyond what this faast learned into them since, whose counts it knows).

The old files are written here by hand from a current save, as those versions wrote them (the
hunt's ``.dev/hunts/s84_compat/lm/out/713d30d`` and ``out/1cab23c`` saves): the tags and metadata,
the signature's fields, and the tensors (statistics of the output memory, ``seen``, fingerprint).
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from faast.cli import main
from faast.lm import FaastConfig, get_faast_model
from tests.lm_tiny import tiny_model
from tests.lm_wordlevel import save_tiny_model

#: The layout config's fields in files of 2026-11-23 and 11-25 (the read fields apart).
OLD_CONFIG = (
    "base_model_name_or_path",
    "decoder_layers_path",
    "dtype",
    "extra",
    "final_norm_path",
    "memory_layers",
    "num_memories",
    "output_memory",
    "output_mix",
    "readout_dropout",
    "scorer",
)
#: The read fields of a 2026-11-23 layout config, as `faast lm learn` wrote them (its defaults).
READ_FIELDS_1123 = {
    "alpha": 1.0,
    "c": 1.0,
    "output_gate": "auto",
    "output_support": "learned",
    "output_temperature": None,
    "output_weight": None,
}
#: The read config stored with a task on 2026-11-25 (the defaults then).
READ_1125 = {"cut": "alpha=1", "gate": "auto", "support": "learned", "temperature": None, "weight": None}
LEGACY_READ = "from before 2026-11-25"
UNCOUNTED = "older faast (before 2026-11-30)"

#: 40 words whose next tokens repeat (w5 follows w4 four times): a text learned once.
TEXT = " ".join(f"w{3 + i % 10}" for i in range(40))
IDS = torch.tensor([[3 + i % 10 for i in range(40)]])


def old_layout(current: Path, old: Path, day: str) -> Path:
    """Rewrite the fast-weight file ``current`` (this faast's, output memory only) at ``old`` in the
    layout of ``day``: "11-23" (tag ``faast.lm.fast_weights`` with ``version``, the read fields in
    the layout config) or "11-25" (tag ``faast.fast_weights``, ``format_version``, a ``read``
    config); both keep ``seen`` (0/1 uint8) instead of the counts and nothing a later faast added."""
    with safe_open(str(current), framework="pt") as fh:
        meta = fh.metadata()
        tensors = {name: fh.get_tensor(name) for name in fh.keys()}
    tasks, out_tasks, out = json.loads(meta["tasks"]), {}, {}
    for task, sig in tasks.items():
        assert set(sig["memories"]) == {"output"}
        kept = ("hidden_size", "memories", "model_type", "name_or_path", "num_layers", "vocab_size")
        old_sig = {key: sig[key] for key in kept}
        old_sig["config"] = {key: sig["config"][key] for key in OLD_CONFIG}
        if day == "11-23":
            old_sig["config"].update(READ_FIELDS_1123)
        else:
            old_sig["read"] = dict(READ_1125)
        out_tasks[task] = old_sig
        out[f"{task}/fingerprint"] = tensors[f"{task}/fingerprint"]
        for key in ("count", "cross", "gram", "value_sq_sum", "weight_sum"):
            out[f"{task}/output/{key}"] = tensors[f"{task}/output/{key}"]
        out[f"{task}/output/seen"] = (tensors[f"{task}/output/counts"] > 0).to(torch.uint8)
    tag = {"format": "faast.lm.fast_weights", "version": "1"}
    if day == "11-25":
        tag = {"format": "faast.fast_weights", "format_version": "1"}
    save_file(out, str(old), metadata={**tag, "tasks": json.dumps(out_tasks)})
    return old


def fresh():
    """The tiny float32 llama (as `save_tiny_model` saves it) with an output memory only."""
    return get_faast_model(tiny_model("llama", dtype=torch.float32), FaastConfig(num_memories=0))


@pytest.fixture
def files(tmp_path):
    """{"now", "11-23", "11-25"}: one task "t1" that learned ``IDS``, in each layout."""
    fm = fresh()
    fm.learn(input_ids=IDS)
    now = tmp_path / "now.safetensors"
    fm.save_fast_weights(now, "t1")
    return {
        "now": now,
        "11-23": old_layout(now, tmp_path / "fw1123.safetensors", "11-23"),
        "11-25": old_layout(now, tmp_path / "fw1125.safetensors", "11-25"),
    }


def _legacy_warnings(caught):
    return [w for w in caught if LEGACY_READ in str(w.message)]


# ----------------------------------------------------------------- finding 2: the read settings of 11-23
def test_a_task_of_2026_11_23_warns_that_its_read_settings_meant_other_things(files):
    fm = fresh()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fm.load_fast_weights(files["11-23"], "t1")
    said = _legacy_warnings(caught)
    assert len(said) == 1 and issubclass(said[0].category, UserWarning)
    text = str(said[0].message)
    for part in ("faast.lm.fast_weights", "weight, temperature, gate", "meant other things", "learn the"):
        assert part in text, text
    # the statistics are read as they were: the same fast weights as the file of 11-25
    ref = fresh().load_fast_weights(files["11-25"], "t1")
    assert torch.equal(fm.output_memory.stats.gram, ref.output_memory.stats.gram)
    assert fm.read_config == ref.read_config


@pytest.mark.parametrize("day", ["11-25", "now"])
def test_later_files_load_without_that_warning(files, day):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fresh().load_fast_weights(files[day], "t1")
    assert not _legacy_warnings(caught)


def test_the_cli_says_it_once_per_command(tmp_path, files, capsys):
    model = save_tiny_model(tmp_path / "model")
    text = tmp_path / "text.txt"
    text.write_text(TEXT)
    common = ["--model", str(model), "--threads", "1", "--task", "t1"]
    scores = {}
    for day in ("11-23", "11-25"):
        capsys.readouterr()
        score = ["lm", "perplexity", *common, "--text", str(text)]
        assert main([*score, "--fast-weights", str(files[day])]) == 0
        out, err = capsys.readouterr()
        scores[day] = json.loads(out[out.index("{") :])["fast_weights"]
        warned = [line for line in err.splitlines() if LEGACY_READ in line]
        assert len(warned) == (1 if day == "11-23" else 0), err
        if warned:
            assert warned[0].startswith("faast lm: warning: fast weights written by a faast from before")
    assert scores["11-23"] == scores["11-25"]  # read as this faast reads them, warned
    # forget reads the task's read config twice (the command, then the model): still said once
    assert main(["lm", "forget", *common, "--text", str(text), "--fast-weights", str(files["11-23"])]) == 1
    err = capsys.readouterr().err
    assert len([line for line in err.splitlines() if LEGACY_READ in line]) == 1, err


# ----------------------------------------------------------------- finding 7: forgetting without counts
@pytest.mark.parametrize("day", ["11-23", "11-25"])
@pytest.mark.parametrize("what", ["the text learned", "one pair of it"])
def test_forgetting_from_a_file_without_counts_is_refused_with_the_true_reason(files, day, what):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the 11-23 read settings: tested above
        fm = fresh().load_fast_weights(files[day], "t1")
    before = {k: v.clone() for k, v in fm.output_memory.extra_state().items()}
    gram = fm.output_memory.stats.gram.clone()
    ids = IDS if what == "the text learned" else IDS[:, :2]  # w3 → w4: learned; the counts of one let it by
    with pytest.raises(ValueError, match=r"older faast \(before 2026-11-30\).*token counts") as err:
        fm.forget(input_ids=ids)
    assert "this text was not learned" not in str(err.value) and "\n" not in str(err.value)
    assert fm.num_pairs == IDS.shape[1] - 1
    assert torch.equal(fm.output_memory.stats.gram, gram)
    assert all(torch.equal(v, fm.output_memory.extra_state()[k]) for k, v in before.items())


def test_a_text_whose_tokens_the_old_file_never_learned_is_refused_as_not_learned(files):
    """Review s84 (2): the old file's reason was given for any token short of its count, also for
    tokens that file never learned; those are the text's fault, as with a current file."""
    fm = fresh().load_fast_weights(files["11-25"], "t1")
    never = torch.tensor([[20, 21, 22, 23]])  # next tokens 21, 22, 23: not in the text learned
    with pytest.raises(ValueError, match="this text was not learned") as err:
        fm.forget(input_ids=never)
    assert UNCOUNTED not in str(err.value)


def test_a_text_learned_since_is_forgotten_and_the_record_outlives_a_rollback_and_a_save(tmp_path, files):
    """After `lm learn --append` on such a file, the counts of what this faast learned are known:
    that text can be forgotten (its tokens, shared with the old text or not, are counted), the old
    text still cannot; the record of the tokens counted once is saved (``seen`` beside the counts)."""
    fm = fresh().load_fast_weights(files["11-25"], "t1")
    seen = fm.output_memory.counts.clone()
    more = torch.tensor([[12, 3, 4, 20, 21]])  # next tokens 3, 4 (learned then, 4 times each), 20, 21
    with pytest.raises(RuntimeError), fm.all_or_nothing():  # a block undone: the record put back too
        fm.learn(input_ids=more)
        raise RuntimeError("undo")
    fm.learn(input_ids=more)  # as `lm learn --append` does
    path = tmp_path / "appended.safetensors"
    fm.save_fast_weights(path, "t1")
    with safe_open(str(path), framework="pt") as fh:
        assert torch.equal(fh.get_tensor("t1/output/seen"), (seen > 0).to(torch.uint8))
        assert fh.get_tensor("t1/output/counts")[[3, 4, 20, 21]].tolist() == [2, 2, 1, 1]
    again = fresh().load_fast_weights(path, "t1")
    for model in (fm, again):
        with pytest.raises(ValueError, match=re.escape(UNCOUNTED)):
            model.forget(input_ids=IDS)  # the old text: how often it learned its tokens is not known
        assert model.forget(input_ids=more) == 4
        assert torch.equal(model.output_memory.counts, seen)  # 3 and 4 still learned, 20 and 21 not
        assert model.num_pairs == IDS.shape[1] - 1
    again.reset_projection()  # new fast weights: counted from the start
    assert again.output_memory.uncounted is None
    again.learn(input_ids=IDS)
    assert again.forget(input_ids=IDS) == IDS.shape[1] - 1 and again.num_pairs == 0


def test_a_current_file_still_forgets(files):
    fm = fresh().load_fast_weights(files["now"], "t1")
    assert "seen" not in fm.output_memory.extra_state()
    assert fm.forget(input_ids=IDS) == IDS.shape[1] - 1 and fm.num_pairs == 0


def test_lm_forget_refuses_in_one_line_and_writes_nothing(tmp_path, files, capsys):
    model = save_tiny_model(tmp_path / "model")
    text = tmp_path / "text.txt"
    text.write_text(TEXT)  # exactly the text learned
    path = files["11-25"]
    data = path.read_bytes()
    args = ["lm", "forget", "--model", str(model), "--threads", "1", "--task", "t1"]
    capsys.readouterr()
    assert main([*args, "--text", str(text), "--fast-weights", str(path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("faast lm: error: these fast weights were written by an older")
    assert "token counts" in err[0] and "learn the task again" in err[0]
    assert "not learned" not in err[0]
    assert path.read_bytes() == data


def test_a_seen_mask_beside_counts_it_exceeds_is_refused(tmp_path, files):
    fm = fresh().load_fast_weights(files["11-25"], "t1")
    fm.learn(input_ids=torch.tensor([[20, 21]]))
    path = tmp_path / "appended.safetensors"
    fm.save_fast_weights(path, "t1")
    with safe_open(str(path), framework="pt") as fh:
        meta, tensors = fh.metadata(), {name: fh.get_tensor(name) for name in fh.keys()}
    tensors["t1/output/seen"][90] = 1  # a token counted once that the counts never learned
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(ValueError, match="the learned-token set holds tokens the counts do not"):
        fresh().load_fast_weights(path, "t1")
