"""FaastConfig: JSON round trip, validation, the paper's placement ⌊L/(m+1)·(i+1)⌋."""

from __future__ import annotations

import json

import pytest

from faast.lm import DEFAULT_OUTPUT_GATE, DEFAULT_OUTPUT_TEMPERATURES, DEFAULT_OUTPUT_WEIGHTS, FaastConfig


def test_json_round_trip(tmp_path):
    cfg = FaastConfig(
        num_memories=3,
        alpha=0.8,
        c=2.0,
        output_mix="prob",
        output_weight=0.3,
        output_temperature=0.5,
        scorer=False,
        dtype="bfloat16",
        extra={"note": "x"},
    )
    cfg.save_pretrained(tmp_path)
    raw = json.loads((tmp_path / "faast_config.json").read_text())
    assert raw["format"] == "faast.lm.FaastConfig" and raw["num_memories"] == 3
    back = FaastConfig.from_pretrained(tmp_path)
    assert back == cfg
    assert FaastConfig.from_dict(cfg.to_dict()) == cfg


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


def test_default_weights_per_mix():
    gated = FaastConfig()  # the default: the prob mix with the recall gate
    assert (gated.output_mix, gated.mix_key) == ("prob", "prob-gated")
    assert gated.gate_threshold == DEFAULT_OUTPUT_GATE
    assert gated.mix_weight == DEFAULT_OUTPUT_WEIGHTS["prob-gated"]
    assert gated.mix_temperature == DEFAULT_OUTPUT_TEMPERATURES["prob-gated"]
    plain = FaastConfig(output_gate=None)
    assert plain.mix_key == "prob" and plain.mix_weight == DEFAULT_OUTPUT_WEIGHTS["prob"]
    assert plain.mix_temperature == DEFAULT_OUTPUT_TEMPERATURES["prob"]
    for mix in ("logit", "paper"):
        cfg = FaastConfig(output_mix=mix)  # "auto" gate: none outside the prob mix
        assert cfg.gate_threshold is None and cfg.mix_weight == DEFAULT_OUTPUT_WEIGHTS[mix]
    assert FaastConfig(output_mix="paper", output_weight=0.5).mix_weight == 0.5
    assert FaastConfig(output_gate=0.5, output_temperature=2.0).mix_temperature == 2.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_memories": -1},
        {"output_mix": "sum"},
        {"output_weight": -0.1},
        {"output_mix": "prob", "output_weight": 2.0},
        {"c": 0.0},
        {"alpha": float("nan")},
        {"readout_dropout": 1.0},
        {"dtype": "int8"},
        {"memory_layers": [1, 1]},
        {"output_temperature": 0.0},
        {"output_support": "all"},
        {"output_gate": "on"},
        {"output_gate": -0.1},
    ],
)
def test_bad_values_raise(kwargs):
    with pytest.raises(ValueError):
        FaastConfig(**kwargs)


def test_unknown_fields_and_bad_files(tmp_path):
    with pytest.raises(ValueError, match="unknown FaastConfig fields"):
        FaastConfig.from_dict({"num_memories": 1, "rank": 8})
    with pytest.raises(FileNotFoundError, match="faast_config.json"):
        FaastConfig.from_pretrained(tmp_path)
    (tmp_path / "faast_config.json").write_text('{"r": 8}')
    with pytest.raises(ValueError, match="not a FaastConfig"):
        FaastConfig.from_pretrained(tmp_path)
