"""FaastConfig (layout) and ReadConfig (read-time knobs): JSON round trips, validation, defaults of
each read-out, the paper's placement ⌊L/(m+1)·(i+1)⌋."""

from __future__ import annotations

import json

import pytest

from faast.lm import FaastConfig, LogitReadOut, PaperReadOut, ProbReadOut, ReadConfig, get_faast_model
from faast.solver import Cut
from tests.lm_tiny import tiny_model


def test_json_round_trip(tmp_path):
    cfg = FaastConfig(num_memories=3, output_mix="logit", scorer=False, dtype="bfloat16", extra={"note": "x"})
    cfg.save_pretrained(tmp_path)
    raw = json.loads((tmp_path / "faast_config.json").read_text())
    assert raw["format"] == "faast.lm.FaastConfig" and raw["num_memories"] == 3
    back = FaastConfig.from_pretrained(tmp_path)
    assert back == cfg
    assert FaastConfig.from_dict(cfg.to_dict()) == cfg
    read = ReadConfig(cut="alpha=0.8,c=2", weight=0.3, temperature=0.5, gate=None, support="vocab")
    assert ReadConfig.from_dict(json.loads(json.dumps(read.to_dict()))) == read
    assert read.cut == Cut.power(0.8, 2.0)


@pytest.mark.parametrize(
    ("layers", "m", "expected"),
    [
        (12, 1, [6]),
        (48, 1, [24]),
        (28, 1, [14]),
        (36, 1, [18]),
        (32, 1, [16]),
        (30, 2, [10, 20]),
        (48, 15, list(range(3, 48, 3))),
        (2, 1, [1]),
        (2, 0, []),
    ],
)
def test_placement_matches_the_paper(layers, m, expected):
    assert FaastConfig(num_memories=m).layer_indices(layers) == expected


def test_explicit_layers_override_count():
    cfg = FaastConfig(num_memories=5, memory_layers=[7, 2])
    assert cfg.num_memories == 2 and cfg.layer_indices(10) == [2, 7]
    with pytest.raises(ValueError, match="do not exist"):
        cfg.layer_indices(5)


def test_each_read_out_owns_its_defaults():
    def output(mix, read=None):
        return get_faast_model(
            tiny_model("llama"), FaastConfig(num_memories=0, output_mix=mix), read
        ).output_memory

    gated = output("prob")  # the default: the prob mix with the recall gate
    assert isinstance(gated, ProbReadOut)
    assert (gated.weight, gated.temperature, gated.gate) == tuple(
        ProbReadOut.defaults[k] for k in ("weight", "temperature", "gate")
    )
    assert gated.memory.cut == Cut.power(1.0)
    plain = output("prob", ReadConfig(gate=None))
    assert (plain.weight, plain.temperature) == tuple(
        ProbReadOut.ungated_defaults[k] for k in ("weight", "temperature")
    )
    assert plain.gate is None
    assert (
        isinstance(output("logit"), LogitReadOut)
        and output("logit").weight == LogitReadOut.defaults["weight"]
    )
    assert isinstance(output("paper"), PaperReadOut) and output("paper").weight == 0.9
    assert output("paper", ReadConfig(weight=0.5)).weight == 0.5
    assert output("prob", ReadConfig(gate=0.5, temperature=2.0)).temperature == 2.0
    with pytest.raises(ValueError, match="ratio in"):
        output("prob", ReadConfig(weight=2.0))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_memories": -1},
        {"output_mix": "sum"},
        {"readout_dropout": 1.0},
        {"dtype": "int8"},
        {"memory_layers": [1, 1]},
        {"memory_layers": [1.5]},  # was truncated to layer 1
        {"memory_layers": [True]},
        {"memory_layers": [float("nan")]},
        {"num_memories": float("inf")},
    ],
)
def test_bad_layout_values_raise(kwargs):
    with pytest.raises(ValueError, match="must be|distinct|one of|in \\["):
        FaastConfig(**kwargs)


def test_whole_numbers_from_json_are_kept():
    """A JSON file may hold 2.0 for 2: kept, as an int."""
    cfg = FaastConfig(num_memories=2.0, memory_layers=[3.0, 1])
    assert cfg.memory_layers == [1, 3] and all(type(i) is int for i in cfg.memory_layers)
    assert type(FaastConfig(output_key_features=8.0).output_key_features) is int


@pytest.mark.parametrize(
    "kwargs",
    [
        {"weight": -0.1},
        {"cut": "c=0"},
        {"cut": "alpha=nan"},
        {"temperature": 0.0},
        {"support": "all"},
        {"gate": "on"},
        {"gate": -0.1},
        {"cut": "tau=2"},
    ],
)
def test_bad_read_values_raise(kwargs):
    with pytest.raises(ValueError):
        ReadConfig(**kwargs)


def test_unknown_fields_and_bad_files(tmp_path):
    with pytest.raises(ValueError, match="unknown FaastConfig fields"):
        FaastConfig.from_dict({"num_memories": 1, "rank": 8})
    with pytest.raises(FileNotFoundError, match="faast_config.json"):
        FaastConfig.from_pretrained(tmp_path)
    (tmp_path / "faast_config.json").write_text('{"r": 8}')
    with pytest.raises(ValueError, match="not a FaastConfig"):
        FaastConfig.from_pretrained(tmp_path)
