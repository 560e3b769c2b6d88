"""The bad-input catalogue: every public entry point fed the inputs users get wrong.

Each :class:`Case` names an entry point and a bad input, builds the objects it needs in a
:class:`Ctx` (a scratch folder, a tiny model, saved files), and either expects an error (its type
and a regular expression the message must match, so the message names the problem) or a
documented behaviour (a check on the result). Where state existed before the call, the case gives
a snapshot of it, which must be unchanged afterwards: a refused input never corrupts what was
learned. :class:`CliCase` runs ``faast ...`` and expects one line on stderr and a non-zero exit.

``tests/test_bad_inputs.py`` runs every case; ``benchmarks/bad_inputs_table.py`` writes the table
of ``docs/bad-inputs.md`` from the same list.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

Action = Callable[[], Any]
Snapshot = Callable[[], Any] | None


class Ctx:
    """What the cases build on: a scratch folder and lazily made models and files."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = Path(tmp)

    def path(self, name: str) -> Path:
        return self.tmp / name

    # ----------------------------------------------------------------- solver and classifier
    def stats(self, *, float64: bool = False):
        from faast.solver import GramStats

        gen = torch.Generator().manual_seed(0)
        dtype = torch.float64 if float64 else torch.float32
        keys, values = (
            torch.randn(6, 4, generator=gen, dtype=dtype),
            torch.randn(6, 2, generator=gen, dtype=dtype),
        )
        return GramStats(4, 2).add(keys, values)

    def classifier(self):
        from faast import FaastClassifier

        rng = np.random.default_rng(0)
        return FaastClassifier().fit(rng.standard_normal((12, 4)), np.arange(12) % 3)

    # ----------------------------------------------------------------- language models
    @cached_property
    def model_dir(self) -> Path:
        from tests.lm_wordlevel import save_tiny_model

        return save_tiny_model(self.path("tiny-llama"))

    def fm(self, *, learned: bool = True, family: str = "llama", seed: int = 0, hidden: int = 32):
        from faast.lm import FaastConfig, get_faast_model
        from tests.lm_tiny import tiny_model

        fm = get_faast_model(tiny_model(family, seed=seed, hidden=hidden), FaastConfig(num_memories=1))
        if learned:
            fm.learn(input_ids=torch.arange(3, 23).reshape(2, 10))
        return fm

    def tokenizer(self, *, pad: bool = True):
        from tests.lm_wordlevel import word_tokenizer

        tok = word_tokenizer()
        if not pad:
            tok.pad_token = None
        return tok

    @cached_property
    def fast_weights(self) -> Path:
        """A fast-weight file with tasks 'a' and 'b' of the tiny llama."""
        path = self.path("fw.safetensors")
        fm = self.fm()
        fm.save_fast_weights(path, "a")
        fm.save_fast_weights(path, "b")
        return path

    @cached_property
    def stats_file(self) -> Path:
        path = self.path("stats.safetensors")
        self.stats().save(path)
        return path

    @cached_property
    def readout_dir(self) -> Path:
        return self.fm(learned=False).save_pretrained(self.path("readout"))

    # ----------------------------------------------------------------- broken files
    def text_file(self, name: str, data: bytes) -> Path:
        path = self.path(name)
        path.write_bytes(data)
        return path

    def truncated(self, source: Path, name: str) -> Path:
        data = source.read_bytes()
        return self.text_file(name, data[: len(data) // 2])

    def corrupt_header(self, source: Path, name: str) -> Path:
        data = bytearray(source.read_bytes())
        data[8:40] = b"#" * 32  # inside the JSON header
        return self.text_file(name, bytes(data))

    def newer_version(self, source: Path, name: str) -> Path:
        from safetensors.torch import load_file, save_file

        from faast.io import load_tensors

        _, meta = load_tensors(source)
        path = self.path(name)
        save_file(load_file(str(source)), str(path), metadata={**meta, "format_version": "99"})
        return path

    def file_as_dir(self) -> Path:
        """A path whose parent is a regular file: no output can be written under it (even as root)."""
        blocker = self.text_file("blocker", b"x")
        return blocker / "out" / "file.safetensors"


@dataclass(frozen=True)
class Case:
    """An entry point, the bad input, and the error (or behaviour) expected."""

    entry: str
    input: str
    build: Callable[[Ctx], tuple[Action, Snapshot]]
    error: type[BaseException] | None = None
    match: str = ""
    behaviour: str = ""
    check: Callable[[Any], bool] | None = None

    @property
    def id(self) -> str:
        return f"{self.entry}: {self.input}"


@dataclass(frozen=True)
class CliCase:
    """``faast ARGV`` must exit with ``code`` and print one line on stderr matching ``match``."""

    input: str
    argv: Callable[[Ctx], list[str]]
    match: str
    code: int = 1
    missing: str | None = None  # an optional dependency to hide (as if not installed)

    entry = "CLI"

    @property
    def id(self) -> str:
        return f"CLI: {self.input}"


def same_state(a: Any, b: Any) -> bool:
    """Exact equality of nested dicts/lists/tuples of tensors, arrays and plain values."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_state(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same_state(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.dtype == b.dtype and a.shape == b.shape and bool(torch.equal(a, b))
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return a.dtype == b.dtype and np.array_equal(a, b)
    return a == b


# --------------------------------------------------------------------------- snapshots
def stats_state(s) -> dict[str, Any]:
    return {k: v.clone() for k, v in s.state_dict().items()} | {"dtype": s.input_dtype}


def fm_state(fm) -> dict[str, Any]:
    return {name: stats_state(r.stats) for name, r in fm.memories.items()}


def clf_state(clf) -> dict[str, Any]:
    return {"coef": clf.coef_.copy(), "stats": stats_state(clf.memory_.stats), "classes": clf.classes_.copy()}


# --------------------------------------------------------------------------- builders
def on_stats(fn: Callable[[Any], Any], *, float64: bool = False) -> Callable[[Ctx], tuple[Action, Snapshot]]:
    def build(ctx: Ctx):
        s = ctx.stats(float64=float64)
        return (lambda: fn(s)), (lambda: stats_state(s))

    return build


def on_memory(make: Callable[[], Any], fn: Callable[[Any], Any], *, filled: bool = True):
    def build(ctx: Ctx):
        mem = make()
        if filled:
            gen = torch.Generator().manual_seed(0)
            mem.add(torch.randn(6, 4, generator=gen), torch.eye(3)[torch.arange(6) % 3])
        snap = (lambda: mem.read(torch.ones(2, 4)).clone()) if filled else None
        return (lambda: fn(mem)), snap

    return build


def on_clf(fn: Callable[[Any], Any]):
    def build(ctx: Ctx):
        clf = ctx.classifier()
        return (lambda: fn(clf)), (lambda: clf_state(clf))

    return build


def on_logistic_clf(fn: Callable[[Any], Any]):
    """A classifier fitted with ``loss="logistic"`` (its steps need every example at once)."""

    def build(ctx: Ctx):
        clf = _clf(loss="logistic", C=1.0).fit(_rows(), np.arange(12) % 3)
        return (lambda: fn(clf)), (lambda: clf_state(clf))

    return build


def on_fm(fn: Callable[[Ctx, Any], Any]):
    def build(ctx: Ctx):
        fm = ctx.fm()
        return (lambda: fn(ctx, fm)), (lambda: fm_state(fm))

    return build


def _both_zero_shot() -> tuple[list, dict[str, torch.Tensor], torch.Tensor]:
    """The plain and calibrated zero-shot read-outs with equal held-out scores on four examples."""
    from faast.lm.task_choice import MEMORY_OFF

    both = [MEMORY_OFF, MEMORY_OFF.calibrated()]
    return both, {c.name: torch.full((4,), -1.0, dtype=torch.float64) for c in both}, torch.ones(4)


def call(fn: Callable[[Ctx], Any]):
    def build(ctx: Ctx):
        return (lambda: fn(ctx)), None

    return build


def _k(rows: int = 3, cols: int = 4, *, at: tuple[int, int] | None = None, value: float = 0.0):
    t = torch.randn(rows, cols, generator=torch.Generator().manual_seed(rows * 7 + cols))
    if at is not None:
        t[at] = value
    return t


def _gs(*args: Any, **kwargs: Any):
    from faast.solver import GramStats

    return GramStats(*args, **kwargs)


def _cut(spec: Any):
    from faast.solver import Cut

    return Cut.parse(spec)


def _inv(**kw: Any):
    from faast import InverseMemory

    return InverseMemory(**kw)


def _knn(**kw: Any):
    from faast import KNNMemory

    return KNNMemory(**kw)


def _soft(**kw: Any):
    from faast import SoftmaxMemory

    return SoftmaxMemory(**kw)


def _clf(**kw: Any):
    from faast import FaastClassifier

    return FaastClassifier(**kw)


def _rows(n: int = 12, d: int = 4, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d))


NAN, INF = math.nan, math.inf
ONE_HOT = torch.eye(3)[torch.arange(6) % 3]

# --------------------------------------------------------------------------- solver
SOLVER = [
    Case(
        "GramStats.add",
        "NaN in keys",
        on_stats(lambda s: s.add(_k(at=(1, 2), value=NAN), _k(3, 2))),
        ValueError,
        r"keys: contains 1 NaN or Inf",
    ),
    Case(
        "GramStats.add",
        "+Inf in values",
        on_stats(lambda s: s.add(_k(), _k(3, 2, at=(0, 0), value=INF))),
        ValueError,
        r"values: contains 1 NaN",
    ),
    Case(
        "GramStats.add",
        "-Inf in keys",
        on_stats(lambda s: s.add(_k(at=(0, 0), value=-INF), _k(3, 2))),
        ValueError,
        r"keys: contains 1 NaN or Inf",
    ),
    Case(
        "GramStats.add",
        "weights of 1e-300 on a key column of 1e-100 (its terms underflow beside the others')",
        on_stats(
            lambda s: s.add(
                _k().double() * torch.tensor([1e-100, 1.0, 1.0, 1.0], dtype=torch.float64),
                _k(3, 2).double(),
                torch.full((3,), 1e-300, dtype=torch.float64),
            ),
            float64=True,
        ),
        ValueError,
        r"weights: the largest is 1e-300, so the products .* of key column 0 .* would lose that column to "
        r"underflow",
    ),
    Case(
        "GramStats.add",
        "1-D keys",
        on_stats(lambda s: s.add(torch.randn(4), _k(1, 2))),
        ValueError,
        r"keys: expected a 2-D array",
    ),
    Case(
        "GramStats.add",
        "3-D values",
        on_stats(lambda s: s.add(_k(), torch.randn(3, 2, 1))),
        ValueError,
        r"values: expected a 2-D array",
    ),
    Case(
        "GramStats.add",
        "keys and values of different lengths",
        on_stats(lambda s: s.add(_k(3), _k(2, 2))),
        ValueError,
        r"number of pairs: 3 vs 2",
    ),
    Case(
        "GramStats.add",
        "keys of another dimension",
        on_stats(lambda s: s.add(_k(3, 5), _k(3, 2))),
        ValueError,
        r"keys: expected dimension 4",
    ),
    Case(
        "GramStats.add",
        "values of another dimension",
        on_stats(lambda s: s.add(_k(), _k(3, 3))),
        ValueError,
        r"values: expected dimension 2",
    ),
    Case(
        "GramStats.add",
        "integer keys",
        on_stats(lambda s: s.add(torch.ones(3, 4, dtype=torch.int64), _k(3, 2))),
        TypeError,
        r"keys: expected a floating-point dtype",
    ),
    Case(
        "GramStats.add",
        "float32 keys with float64 values",
        on_stats(lambda s: s.add(_k(), _k(3, 2).double())),
        TypeError,
        r"keys are torch.float32 but values",
    ),
    Case(
        "GramStats.add",
        "float64 batch after float32 batches",
        on_stats(lambda s: s.add(_k().double(), _k(3, 2).double())),
        TypeError,
        r"built from torch.float32",
    ),
    Case(
        "GramStats.add",
        "strings where numbers belong",
        on_stats(lambda s: s.add([["a", "b", "c", "d"]], [[1.0, 2.0]])),
        TypeError,
        r"keys: .*strings",
    ),
    Case(
        "GramStats.add",
        "ragged nested lists",
        on_stats(lambda s: s.add([[1.0, 2.0], [3.0]], [[1.0, 2.0]])),
        TypeError,
        r"keys: cannot convert",
    ),
    Case(
        "GramStats.add",
        "array of Python objects",
        on_stats(lambda s: s.add(np.array([[object()] * 4]), [[1.0, 2.0]])),
        TypeError,
        r"Python objects",
    ),
    Case(
        "GramStats.add",
        "sparse keys",
        on_stats(lambda s: s.add(torch.eye(4).to_sparse(), _k(4, 2))),
        TypeError,
        r"sparse",
    ),
    Case(
        "GramStats.add",
        "negative weights",
        on_stats(lambda s: s.add(_k(), _k(3, 2), torch.tensor([1.0, -1.0, 1.0]))),
        ValueError,
        r"non-negative",
    ),
    Case(
        "GramStats.add",
        "NaN weight",
        on_stats(lambda s: s.add(_k(), _k(3, 2), torch.tensor([1.0, NAN, 1.0]))),
        ValueError,
        r"weights: contains 1 NaN",
    ),
    Case(
        "GramStats.add",
        "weights of the wrong length",
        on_stats(lambda s: s.add(_k(), _k(3, 2), torch.ones(4))),
        ValueError,
        r"weights: expected shape \(3,\)",
    ),
    Case(
        "GramStats.add",
        "empty batch (0 rows)",
        on_stats(lambda s: s.add(torch.empty(0, 4), torch.empty(0, 2))),
        behaviour="accepted, adds nothing",
        check=lambda s: s.count == 6,
    ),
    Case(
        "GramStats.add",
        "keys on another device",
        on_stats(lambda s: s.add(torch.empty(3, 4, device="meta"), torch.empty(3, 2, device="meta"))),
        ValueError,
        r"batch is on meta but the statistics live on cpu",
    ),
    Case(
        "GramStats()",
        "a device that is not one",
        call(lambda c: _gs(4, 2, device="gpu")),
        ValueError,
        r"device: 'gpu' is not a device",
    ),
    Case(
        "GramStats()",
        "a CUDA device this machine lacks",
        call(lambda c: _gs(4, 2, device="cuda:999")),
        ValueError,
        r"device='cuda:999': (no CUDA device|only \d+ CUDA)",
    ),
    Case("GramStats()", "zero key dimension", call(lambda c: _gs(0, 2)), ValueError, r"key_dim"),
    Case("GramStats()", "dimension given as a string", call(lambda c: _gs("4", 2)), TypeError, r"key_dim"),
    Case(
        "GramStats.solve",
        "no pairs added (empty statistics)",
        call(lambda c: _gs(4, 2).solve()),
        ValueError,
        r"statistics are empty",
    ),
    Case(
        "GramStats.solve",
        "every key is zero",
        call(lambda c: _gs(4, 2).add(torch.zeros(3, 4), _k(3, 2)).solve()),
        ValueError,
        r"every key added",
    ),
    Case(
        "GramStats.solve",
        "one example",
        call(lambda c: _gs(4, 2).add(_k(1), _k(1, 2)).solve()),
        behaviour="rank-1 solution (finite)",
        check=lambda w: bool(torch.isfinite(w).all()),
    ),
    Case(
        "GramStats.solve",
        "tau and ridge together",
        on_stats(lambda s: s.solve(0.1, ridge=0.1)),
        ValueError,
        r"either tau .* or ridge",
    ),
    Case("GramStats.solve", "negative tau", on_stats(lambda s: s.solve(-0.1)), ValueError, r"in \[0, 1\]"),
    Case("GramStats.solve", "tau above 1", on_stats(lambda s: s.solve(1.5)), ValueError, r"in \[0, 1\]"),
    Case(
        "GramStats.solve",
        "tau as an unknown word",
        on_stats(lambda s: s.solve("best")),
        ValueError,
        r"tau must be a number, got 'best'",
    ),
    Case("GramStats.solve", "NaN tau", on_stats(lambda s: s.solve(NAN)), ValueError, r"tau must be finite"),
    Case(
        "GramStats.solve",
        "zero ridge",
        on_stats(lambda s: s.solve(ridge=0.0)),
        ValueError,
        r"ridge must be > 0",
    ),
    Case("GramStats.solve", "c = 0", on_stats(lambda s: s.solve(c=0.0)), ValueError, r"c must be > 0"),
    Case(
        "GramStats.subtract",
        "more examples than were added",
        on_stats(lambda s: s.subtract(_k(7), _k(7, 2))),
        ValueError,
        r"cannot subtract 7 examples from statistics that hold 6",
    ),
    Case(
        "GramStats.merge",
        "statistics of other dimensions",
        on_stats(lambda s: s.merge(_gs(5, 2))),
        ValueError,
        r"cannot merge: statistics of keys 5",
    ),
    Case(
        "GramStats.merge",
        "not a GramStats",
        on_stats(lambda s: s.merge(np.zeros((4, 4)))),
        TypeError,
        r"can only merge GramStats",
    ),
    Case(
        "GramStats.load_state_dict",
        "gram of the wrong shape",
        on_stats(
            lambda s: s.load_state_dict({**s.state_dict(), "gram": torch.zeros(3, 3, dtype=torch.float64)})
        ),
        ValueError,
        r"gram",
    ),
    Case(
        "GramStats.load_state_dict",
        "missing entry",
        on_stats(lambda s: s.load_state_dict({"gram": s.state_dict()["gram"]})),
        ValueError,
        r"cross",
    ),
    Case("Cut.parse", "unknown spec", call(lambda c: _cut("bogus")), ValueError, r"bogus"),
    Case("Cut.parse", "alpha that is not a number", call(lambda c: _cut("alpha=x")), ValueError, r"alpha"),
    Case("Cut.parse", "relative cut above 1", call(lambda c: _cut(2.0)), ValueError, r"\[0, 1\]"),
    Case(
        "Cut.parse",
        "prior of 0 pseudo-pairs",
        call(lambda c: _cut("prior=0")),
        ValueError,
        r"prior \(pseudo-pairs\) must be > 0",
    ),
]

# --------------------------------------------------------------------------- memories
MEMORIES = [
    Case(
        "InverseMemory.add",
        "NaN in keys",
        on_memory(_inv, lambda m: m.add(_k(6, at=(0, 0), value=NAN), ONE_HOT)),
        ValueError,
        r"keys: contains 1 NaN",
    ),
    Case(
        "InverseMemory.add",
        "keys of another dimension",
        on_memory(_inv, lambda m: m.add(_k(6, 5), ONE_HOT)),
        ValueError,
        r"4-d keys",
    ),
    Case(
        "InverseMemory.read",
        "before any add",
        on_memory(_inv, lambda m: m.read(_k(2)), filled=False),
        ValueError,
        r"is empty: add\(\) pairs before read\(\)",
    ),
    Case(
        "InverseMemory.read",
        "queries of another dimension",
        on_memory(_inv, lambda m: m.read(_k(2, 5))),
        ValueError,
        r"queries: expected 4 columns",
    ),
    Case(
        "InverseMemory.read",
        "NaN query",
        on_memory(_inv, lambda m: m.read(_k(2, at=(0, 1), value=NAN))),
        ValueError,
        r"queries: contains 1 NaN",
    ),
    Case(
        "InverseMemory.read",
        "strings as queries",
        on_memory(_inv, lambda m: m.read([["x"] * 4])),
        TypeError,
        r"queries: .*strings",
    ),
    Case(
        "InverseMemory.forget",
        "more than was added",
        on_memory(_inv, lambda m: m.forget(_k(7), _k(7, 3))),
        ValueError,
        r"cannot subtract 7",
    ),
    Case(
        "KNNMemory.forget",
        "a pair never added",
        on_memory(_knn, lambda m: m.forget(_k(1), torch.eye(3)[:1] * 2)),
        ValueError,
        r"1 of the 1 pairs to remove were never added",
    ),
    Case(
        "SoftmaxMemory.forget",
        "an empty memory",
        on_memory(_soft, lambda m: m.forget(_k(1), torch.eye(3)[:1]), filled=False),
        ValueError,
        r"SoftmaxMemory is empty: there is nothing to forget",
    ),
    Case("InverseMemory()", "unknown cut", call(lambda c: _inv(cut="sometimes")), ValueError, r"sometimes"),
    Case("KNNMemory()", "k = 0", call(lambda c: _knn(k=0)), ValueError, r"k must be an integer >= 1"),
    Case("KNNMemory()", "unknown metric", call(lambda c: _knn(metric="manhattan")), ValueError, r"metric"),
    Case(
        "KNNMemory.read",
        "before any add",
        on_memory(_knn, lambda m: m.read(_k(2)), filled=False),
        ValueError,
        r"is empty",
    ),
    Case(
        "KNNMemory.add",
        "1-D values",
        on_memory(_knn, lambda m: m.add(_k(6), torch.zeros(6))),
        ValueError,
        r"values: expected a 2-D array",
    ),
    Case(
        "KNNMemory.read",
        "Inf query",
        on_memory(_knn, lambda m: m.read(_k(2, at=(1, 1), value=INF))),
        ValueError,
        r"queries: contains 1 NaN or Inf",
    ),
    Case(
        "SoftmaxMemory()", "temperature 0", call(lambda c: _soft(temperature=0)), ValueError, r"temperature"
    ),
    Case(
        "SoftmaxMemory.read",
        "queries of another dimension",
        on_memory(_soft, lambda m: m.read(_k(2, 3))),
        ValueError,
        r"queries: expected 4 columns",
    ),
    Case(
        "SoftmaxMemory.read",
        "scores beyond float64 (keys near 1e10, temperature 1e-300)",
        call(
            lambda c: (
                _soft(temperature=1e-300)
                .add(_k(6).double() * 1e10, ONE_HOT.double())
                .read(_k(2).double() * 1e10)
            )
        ),
        ValueError,
        r"scores / temperature overflow float64",
    ),
    Case(
        "SoftmaxMemory.add",
        "keys and values of different lengths",
        on_memory(_soft, lambda m: m.add(_k(5), ONE_HOT)),
        ValueError,
        r"number of pairs: 5 vs 6",
    ),
]

# --------------------------------------------------------------------------- classifier
CLASSIFIER = [
    Case(
        "FaastClassifier.fit",
        "NaN in X",
        call(lambda c: _clf().fit(np.where(_rows() > 1.5, NAN, _rows()), np.arange(12) % 3)),
        ValueError,
        r"NaN",
    ),
    Case(
        "FaastClassifier.fit",
        "Inf in a tensor X",
        call(lambda c: _clf().fit(torch.tensor(np.where(_rows() > 1.5, INF, _rows())), np.arange(12) % 3)),
        ValueError,
        r"X: contains \d+ NaN or Inf",
    ),
    Case(
        "FaastClassifier.fit",
        "a CUDA device this machine lacks",
        call(lambda c: _clf(device="cuda:999").fit(_rows(), np.arange(12) % 3)),
        ValueError,
        r"device='cuda:999': (no CUDA device|only \d+ CUDA)",
    ),
    Case(
        "FaastClassifier.fit",
        "empty support set",
        call(lambda c: _clf().fit(np.zeros((0, 4)), np.zeros(0))),
        ValueError,
        r"0 sample",
    ),
    Case(
        "FaastClassifier.fit",
        "one example",
        call(lambda c: _clf().fit(_rows(1), ["cat"]).predict(_rows(2))),
        behaviour="fits; predicts that example's class",
        check=lambda p: list(p) == ["cat", "cat"],
    ),
    Case(
        "FaastClassifier.fit",
        "a single class",
        call(lambda c: _clf().fit(_rows(), ["cat"] * 12).predict(_rows(3, seed=2))),
        behaviour="fits; predicts the one class",
        check=lambda p: list(p) == ["cat"] * 3,
    ),
    Case(
        "FaastClassifier.fit",
        "X and y of different lengths",
        call(lambda c: _clf().fit(_rows(), np.arange(11) % 3)),
        ValueError,
        r"12.*11|11.*12",
    ),
    Case(
        "FaastClassifier.fit",
        "strings in X",
        call(lambda c: _clf().fit([["a", "b"], ["c", "d"]], [0, 1])),
        ValueError,
        r"string|float",
    ),
    Case(
        "FaastClassifier.fit",
        "1-D X",
        call(lambda c: _clf().fit(np.arange(5.0), np.arange(5) % 2)),
        ValueError,
        r"2D|2-D",
    ),
    Case(
        "FaastClassifier.fit",
        "3-D tensor X",
        call(lambda c: _clf().fit(torch.zeros(4, 2, 2), np.arange(4) % 2)),
        ValueError,
        r"2-D tensor",
    ),
    Case(
        "FaastClassifier.fit",
        "missing labels (None) among string labels",
        call(lambda c: _clf().fit(_rows(), np.array(["cat", None, "dog"] * 4, dtype=object))),
        ValueError,
        r"y holds 4 missing label\(s\) \(None or NaN\), the first at index 1",
    ),
    Case(
        "FaastClassifier.fit",
        "labels of mixed types (str and int)",
        call(lambda c: _clf().fit(_rows(), np.array(["cat", 1, "dog"] * 4, dtype=object))),
        ValueError,
        r"mixes labels of types that cannot be ordered together \(int, str\)",
    ),
    Case(
        "FaastClassifier.fit",
        "multilabel y (an indicator matrix)",
        call(
            lambda c: _clf().fit(_rows(), np.eye(3, dtype=int)[np.arange(12) % 3] | np.eye(3, dtype=int)[0])
        ),
        ValueError,
        r"indicator matrix \(12, 3\) of several labels per example.*OneVsRestClassifier",
    ),
    Case(
        "FaastClassifier.fit",
        "y is None",
        call(lambda c: _clf().fit(_rows(), None)),
        ValueError,
        r"requires y",
    ),
    Case(
        "FaastClassifier.fit",
        "continuous y",
        call(lambda c: _clf().fit(_rows(), _rows(12, 1)[:, 0])),
        ValueError,
        r"continuous|Unknown label type",
    ),
    Case(
        "FaastClassifier.fit",
        "negative sample_weight",
        call(lambda c: _clf().fit(_rows(), np.arange(12) % 3, sample_weight=-np.ones(12))),
        ValueError,
        r"negative",
    ),
    Case(
        "FaastClassifier.fit",
        "tau and ridge together",
        call(lambda c: _clf(tau=0.1, ridge=0.1).fit(_rows(), np.arange(12) % 3)),
        ValueError,
        r"tau or ridge",
    ),
    Case(
        "FaastClassifier.fit",
        "class_embeddings of the wrong shape",
        call(lambda c: _clf(class_embeddings=np.eye(2)).fit(_rows(), np.arange(12) % 3)),
        ValueError,
        r"class_embeddings",
    ),
    Case(
        "FaastClassifier.fit",
        'loss="logistic" with class embeddings',
        call(lambda c: _clf(loss="logistic", class_embeddings=np.eye(3)).fit(_rows(), np.arange(12) % 3)),
        ValueError,
        r'loss="logistic" cannot be combined with class_embeddings',
    ),
    Case(
        "FaastClassifier.fit",
        "center_features without an intercept",
        call(lambda c: _clf(center_features=True, fit_intercept=False).fit(_rows(), np.arange(12) % 3)),
        ValueError,
        r"center_features=True needs fit_intercept=True",
    ),
    Case(
        "FaastClassifier.fit",
        'loss="logistic" with C = 0',
        call(lambda c: _clf(loss="logistic", C=0.0).fit(_rows(), np.arange(12) % 3)),
        ValueError,
        r"'C' parameter",
    ),
    Case(
        "FaastClassifier.fit",
        "class_weight naming a label that is not a class",
        call(lambda c: _clf(class_weight={7: 2.0}).fit(_rows(), np.arange(12) % 3)),
        ValueError,
        r"class_weight names the label 7, which is not a class",
    ),
    Case(
        "FaastClassifier.fit",
        "a negative class weight",
        call(lambda c: _clf(class_weight={0: -1.0}).fit(_rows(), np.arange(12) % 3)),
        ValueError,
        r"class_weight\[0\] must be a finite number",
    ),
    Case(
        "FaastClassifier.fit",
        'loss="logistic" with a negative tol',
        call(lambda c: _clf(loss="logistic", tol=-1e-4).fit(_rows(), np.arange(12) % 3)),
        ValueError,
        r"'tol' parameter",
    ),
    Case(
        "FaastClassifier.partial_fit",
        'on a loss="logistic" model',
        on_logistic_clf(lambda m: m.partial_fit(_rows(2), [0, 1])),
        ValueError,
        r'partial_fit is not available with loss="logistic"',
    ),
    Case(
        "FaastClassifier.predict",
        "before fit",
        call(lambda c: _clf().predict(_rows())),
        Exception,
        r"not fitted",
    ),
    Case(
        "FaastClassifier.predict",
        "X with another number of features",
        on_clf(lambda m: m.predict(_rows(3, 5))),
        ValueError,
        r"5 features.*expecting 4",
    ),
    Case(
        "FaastClassifier.predict",
        "NaN in X",
        on_clf(lambda m: m.predict(np.full((2, 4), NAN))),
        ValueError,
        r"NaN",
    ),
    Case(
        "FaastClassifier.partial_fit",
        "first call without classes",
        call(lambda c: _clf().partial_fit(_rows(), np.arange(12) % 3)),
        ValueError,
        r"classes must be passed",
    ),
    Case(
        "FaastClassifier.partial_fit",
        "a label not in classes_",
        on_clf(lambda m: m.partial_fit(_rows(2), [0, 7])),
        ValueError,
        r"not in classes_",
    ),
    Case(
        "FaastClassifier.partial_fit",
        "rows with another number of features",
        on_clf(lambda m: m.partial_fit(_rows(2, 5), [0, 1])),
        ValueError,
        r"5 features",
    ),
]


# --------------------------------------------------------------------------- language models
def _fm_new(**kw: Any):
    from faast.lm import FaastConfig, get_faast_model
    from tests.lm_tiny import tiny_model

    return get_faast_model(tiny_model("llama"), FaastConfig(**kw))


def _task_model(ctx: Ctx, **kw: Any):
    from faast.lm.task import TaskModel

    return TaskModel.create(ctx.fm(learned=False).unload(), ctx.tokenizer(**kw))


def _ex(*pairs: tuple[str, str | None]):
    from faast.lm.examples import Example

    return [Example(i, o) for i, o in pairs]


def _long_prompt_generate(ctx: Ctx, fm):
    ids = torch.full((1, 2049), 5)
    return fm.generate(input_ids=ids, max_new_tokens=2, do_sample=False)


def _load_other_model(ctx: Ctx, fm):
    other = ctx.fm(hidden=16)
    path = ctx.path("other-model.safetensors")
    other.save_fast_weights(path, "t")
    fm.load_fast_weights(path)


def _load_other_weights(ctx: Ctx, fm):
    other = ctx.fm(seed=5)
    path = ctx.path("other-weights.safetensors")
    other.save_fast_weights(path, "t")
    fm.load_fast_weights(path)


def _load_fine_tune_weights(ctx: Ctx, fm):
    """Fast weights of a fine-tune: the same embeddings, one decoder matrix changed by 0.1 %."""
    other = ctx.fm(learned=False)
    with torch.no_grad():
        other.base_model.model.layers[0].self_attn.q_proj.weight.mul_(1.001)
    other.learn(input_ids=torch.arange(3, 23).reshape(2, 10))
    path = ctx.path("fine-tune-weights.safetensors")
    other.save_fast_weights(path, "t")
    fm.load_fast_weights(path)


def _load_other_layout(ctx: Ctx, fm):
    other = _fm_new(num_memories=0)
    other.learn(input_ids=torch.arange(3, 13)[None])
    path = ctx.path("other-layout.safetensors")
    other.save_fast_weights(path, "t")
    fm.load_fast_weights(path)


def _add_task_keeps_others(ctx: Ctx):
    path = ctx.path("grow.safetensors")
    fm = ctx.fm()
    fm.save_fast_weights(path, "a")
    before = {k: v.clone() for k, v in __import__("faast.io", fromlist=["x"]).load_tensors(path)[0].items()}
    fm.learn(input_ids=torch.arange(30, 40)[None])
    fm.save_fast_weights(path, "b")
    after = __import__("faast.io", fromlist=["x"]).load_tensors(path)[0]
    return all(torch.equal(after[k], v) for k, v in before.items()) and any(k.startswith("b/") for k in after)


LM = [
    Case(
        "FaastModel.learn",
        "float token ids",
        on_fm(lambda c, m: m.learn(input_ids=torch.rand(2, 5))),
        TypeError,
        r"integer token ids",
    ),
    Case(
        "FaastModel.learn",
        "token ids outside the vocabulary",
        on_fm(lambda c, m: m.learn(input_ids=torch.full((1, 4), 1000))),
        ValueError,
        r"\[0, 97\)",
    ),
    Case(
        "FaastModel.learn",
        "negative token ids",
        on_fm(lambda c, m: m.learn(input_ids=torch.full((1, 4), -1))),
        ValueError,
        r"\[0, 97\)",
    ),
    Case(
        "FaastModel.learn",
        "one token",
        on_fm(lambda c, m: m.learn(input_ids=torch.ones(2, 1, dtype=torch.long))),
        ValueError,
        r"at least 2 tokens",
    ),
    Case(
        "FaastModel.learn",
        "only padding",
        on_fm(
            lambda c, m: m.learn(
                input_ids=torch.zeros(2, 6, dtype=torch.long),
                attention_mask=torch.zeros(2, 6, dtype=torch.long),
            )
        ),
        ValueError,
        r"only padding|nothing to learn",
    ),
    Case(
        "FaastModel.learn",
        "attention mask of another shape",
        on_fm(
            lambda c, m: m.learn(
                input_ids=torch.ones(2, 5, dtype=torch.long),
                attention_mask=torch.ones(2, 4, dtype=torch.long),
            )
        ),
        ValueError,
        r"shape",
    ),
    Case(
        "FaastModel.learn",
        "3-D input_ids",
        on_fm(lambda c, m: m.learn(input_ids=torch.ones(2, 3, 4, dtype=torch.long))),
        ValueError,
        r"batch, seq_len",
    ),
    Case(
        "FaastModel.learn",
        "inputs_embeds instead of ids",
        on_fm(lambda c, m: m.learn(inputs_embeds=torch.zeros(1, 4, 32))),
        ValueError,
        r"needs input_ids",
    ),
    Case(
        "FaastModel.learn",
        "a string instead of token ids",
        on_fm(lambda c, m: m.learn(input_ids="hello world")),
        TypeError,
        r"input_ids",
    ),
    Case(
        "FaastModel.learn",
        "longer than the context window",
        on_fm(lambda c, m: m.learn(input_ids=torch.full((1, 2049), 5))),
        ValueError,
        r"context window of 2048",
    ),
    Case(
        "FaastModel.generate",
        "prompt longer than the context window",
        on_fm(_long_prompt_generate),
        ValueError,
        r"context window of 2048",
    ),
    Case(
        "FaastModel.generate",
        "a token id outside the vocabulary",
        on_fm(lambda c, m: m.generate(torch.tensor([[5, 100000]]), max_new_tokens=2)),
        ValueError,
        r"input_ids must lie in \[0, \d+\), got values in \[5, 100000\]",
    ),
    Case(
        "FaastModel.generate",
        "float token ids",
        on_fm(lambda c, m: m.generate(torch.tensor([[5.0, 6.0]]), max_new_tokens=2)),
        TypeError,
        r"input_ids must hold integer token ids or 0/1 flags, got dtype torch.float32",
    ),
    Case(
        "FaastModel.generate",
        "max_length beyond the context window",
        on_fm(lambda c, m: m.generate(torch.tensor([[5, 6]]), max_length=5000)),
        ValueError,
        r"generate: max_length of 5000 tokens exceed the model's context window of 2048",
    ),
    Case(
        "FaastModel.save_fast_weights",
        "nothing learned",
        call(lambda c: c.fm(learned=False).save_fast_weights(c.path("x.safetensors"))),
        ValueError,
        r"nothing to save",
    ),
    Case(
        "FaastModel.save_fast_weights",
        "task name with '/'",
        on_fm(lambda c, m: m.save_fast_weights(c.path("x.safetensors"), "a/b")),
        ValueError,
        r"task names",
    ),
    Case(
        "FaastModel.save_fast_weights",
        "empty task name",
        on_fm(lambda c, m: m.save_fast_weights(c.path("x.safetensors"), "")),
        ValueError,
        r"task names",
    ),
    Case(
        "FaastModel.save_fast_weights",
        "output directory cannot be created",
        on_fm(lambda c, m: m.save_fast_weights(c.file_as_dir())),
        OSError,
        r"blocker",
    ),
    Case(
        "FaastModel.save_fast_weights",
        "existing output is not a fast-weight file",
        on_fm(lambda c, m: m.save_fast_weights(c.stats_file, "t")),
        ValueError,
        r"holds statistics \(GramStats\), not LM fast weights",
    ),
    Case(
        "FaastModel.save_fast_weights",
        "adding a task to a file with other tasks",
        call(_add_task_keeps_others),
        behaviour="the other tasks are kept bit for bit",
        check=bool,
    ),
    Case(
        "FaastModel.load_fast_weights",
        "missing file",
        on_fm(lambda c, m: m.load_fast_weights(c.path("missing.safetensors"))),
        FileNotFoundError,
        r"no such file",
    ),
    Case(
        "FaastModel.load_fast_weights",
        "a text file, not safetensors",
        on_fm(lambda c, m: m.load_fast_weights(c.text_file("notes.safetensors", b"hello\n"))),
        ValueError,
        r"not a readable safetensors file",
    ),
    Case(
        "FaastModel.load_fast_weights",
        "an empty file",
        on_fm(lambda c, m: m.load_fast_weights(c.text_file("empty.safetensors", b""))),
        ValueError,
        r"not a readable safetensors file",
    ),
    Case(
        "FaastModel.load_fast_weights",
        "truncated file",
        on_fm(lambda c, m: m.load_fast_weights(c.truncated(c.fast_weights, "cut.safetensors"))),
        ValueError,
        r"not a readable safetensors file",
    ),
    Case(
        "FaastModel.load_fast_weights",
        "corrupted header",
        on_fm(lambda c, m: m.load_fast_weights(c.corrupt_header(c.fast_weights, "bad.safetensors"))),
        ValueError,
        r"not a readable safetensors file",
    ),
    Case(
        "FaastModel.load_fast_weights",
        "a statistics file",
        on_fm(lambda c, m: m.load_fast_weights(c.stats_file)),
        ValueError,
        r"holds statistics",
    ),
    Case(
        "FaastModel.load_fast_weights",
        "a newer layout version",
        on_fm(lambda c, m: m.load_fast_weights(c.newer_version(c.fast_weights, "v99.safetensors"), "a")),
        ValueError,
        r"layout version '99'",
    ),
    Case(
        "FaastModel.load_fast_weights",
        "unknown task name",
        on_fm(lambda c, m: m.load_fast_weights(c.fast_weights, "zzz")),
        ValueError,
        r"has no task 'zzz'",
    ),
    Case(
        "FaastModel.load_fast_weights",
        "no task named in a file of several",
        on_fm(lambda c, m: m.load_fast_weights(c.fast_weights)),
        ValueError,
        r"holds 2 tasks",
    ),
    Case(
        "FaastModel.load_fast_weights",
        "saved for a model of another dimension",
        on_fm(_load_other_model),
        ValueError,
        r"another model: hidden_size = 16 there, 32 here",
    ),
    Case(
        "FaastModel.load_fast_weights",
        "saved for another model of the same architecture",
        on_fm(_load_other_weights),
        ValueError,
        r"different embeddings",
    ),
    Case(
        "FaastModel.learn",
        "the model cast to another dtype than the held pairs were learned in",
        on_fm(lambda c, m: m.to(torch.float32).learn(input_ids=torch.arange(3, 13)[None])),
        ValueError,
        r"learned with the model in float64 and it now runs in float32: adding these states would mix",
    ),
    Case(
        "FaastModel.load_fast_weights",
        "saved for a fine-tune of the same model (same embeddings)",
        on_fm(_load_fine_tune_weights),
        ValueError,
        r"same architecture and embeddings, but model\.layers\.0\.self_attn\.q_proj\.weight differ",
    ),
    Case(
        "FaastModel.load_fast_weights",
        "saved with another memory layout",
        on_fm(_load_other_layout),
        ValueError,
        r"do not match this model's memory",
    ),
    Case(
        "FaastModel.load_readout",
        "readout of another hidden size",
        call(
            lambda c: c.fm(hidden=16, learned=False).load_readout(c.readout_dir / "faast_readout.safetensors")
        ),
        ValueError,
        r"hidden size 32, not 16",
    ),
    Case(
        "FaastModel.load_readout",
        "a fast-weight file",
        on_fm(lambda c, m: m.load_readout(c.fast_weights)),
        ValueError,
        r"holds LM fast weights, not an LM readout",
    ),
    Case(
        "FaastModel.from_pretrained",
        "missing folder",
        call(
            lambda c: __import__("faast.lm", fromlist=["x"]).FaastModel.from_pretrained(
                c.fm(learned=False).unload(), c.path("no-such-folder")
            )
        ),
        FileNotFoundError,
        r"no readout folder",
    ),
    Case(
        "get_faast_model",
        "more memories than blocks",
        call(lambda c: _fm_new(num_memories=3)),
        ValueError,
        r"exceeds",
    ),
    Case(
        "get_faast_model",
        "a model whose positions see later tokens (XLNet)",
        call(
            lambda c: _fm_of_class(
                "XLNetConfig", "XLNetLMHeadModel", d_model=32, n_layer=2, n_head=4, d_inner=64
            )
        ),
        ValueError,
        r"XLNetLMHeadModel is not causal: its logits at a position change",
    ),
    Case(
        "get_faast_model",
        "config as a dict",
        call(
            lambda c: __import__("faast.lm", fromlist=["x"]).get_faast_model(c.fm(learned=False).unload(), {})
        ),
        TypeError,
        r"FaastConfig",
    ),
]


def _fm_of_class(config_name: str, model_name: str, **sizes: Any):
    """get_faast_model on a tiny randomly initialised ``model_name`` (transformers classes by name)."""
    import transformers

    from faast.lm import FaastConfig, get_faast_model
    from tests.lm_tiny import VOCAB

    torch.manual_seed(0)
    config = getattr(transformers, config_name)(vocab_size=VOCAB, pad_token_id=0, **sizes)
    return get_faast_model(getattr(transformers, model_name)(config).eval(), FaastConfig(num_memories=0))


def _cfg_from_dict(data: Any):
    from faast.lm import FaastConfig

    return FaastConfig.from_dict(data)


def _read_cfg(data: Any):
    from faast.lm import ReadConfig

    return ReadConfig.from_dict(data)


def _cfg_file(ctx: Ctx, text: bytes):
    from faast.lm import FaastConfig

    folder = ctx.path("cfg")
    folder.mkdir(exist_ok=True)
    (folder / "faast_config.json").write_bytes(text)
    return FaastConfig.from_pretrained(folder)


CONFIGS = [
    Case(
        "FaastConfig.from_dict",
        "unknown field",
        call(lambda c: _cfg_from_dict({"num_memoirs": 1})),
        ValueError,
        r"unknown FaastConfig fields \['num_memoirs'\]",
    ),
    Case(
        "FaastConfig.from_dict",
        "not a dict",
        call(lambda c: _cfg_from_dict([1, 2])),
        ValueError,
        r"is a dict",
    ),
    Case(
        "FaastConfig.from_dict",
        "negative num_memories",
        call(lambda c: _cfg_from_dict({"num_memories": -1})),
        ValueError,
        r"num_memories must be an integer >= 0",
    ),
    Case(
        "FaastConfig.from_dict",
        "num_memories as a string",
        call(lambda c: _cfg_from_dict({"num_memories": "two"})),
        ValueError,
        r"num_memories",
    ),
    Case(
        "FaastConfig.from_dict",
        "fractional memory layer",
        call(lambda c: _cfg_from_dict({"memory_layers": [0, 1.5]})),
        ValueError,
        r"memory_layers must be an integer >= 0, got 1\.5",
    ),
    Case(
        "FaastConfig.from_dict",
        "memory layer as a string",
        call(lambda c: _cfg_from_dict({"memory_layers": ["first"]})),
        ValueError,
        r"memory_layers must be an integer >= 0, got 'first'",
    ),
    Case(
        "FaastConfig.from_dict",
        "negative output_key_features",
        call(lambda c: _cfg_from_dict({"output_key_features": -8})),
        ValueError,
        r"output_key_features must be an integer >= 0",
    ),
    Case(
        "FaastConfig.from_dict",
        "unknown output_mix",
        call(lambda c: _cfg_from_dict({"output_mix": "blend"})),
        ValueError,
        r"output_mix must be one of",
    ),
    Case(
        "ReadConfig.from_dict",
        "negative weight",
        call(lambda c: _read_cfg({"weight": -1})),
        ValueError,
        r"weight must be >= 0",
    ),
    Case(
        "ReadConfig.from_dict", "gate of 1.5", call(lambda c: _read_cfg({"gate": 1.5})), ValueError, r"gate"
    ),
    Case(
        "ReadConfig.from_dict",
        "damping of 0 (the correction mix's damped step)",
        call(lambda c: _read_cfg({"damping": 0})),
        ValueError,
        r"damping must be > 0",
    ),
    Case(
        "FaastModel.set_output_mix",
        "next-token statistics read with the correction mix (it learns loss gradients)",
        on_fm(lambda c, m: m.set_output_mix("correction")),
        ValueError,
        r"cannot be read with the 'correction' mix",
    ),
    Case(
        "ReadConfig.from_dict",
        "temperature as a string",
        call(lambda c: _read_cfg({"temperature": "hot"})),
        ValueError,
        r"temperature",
    ),
    Case(
        "FaastConfig.from_pretrained",
        "config file that is not JSON",
        call(lambda c: _cfg_file(c, b"{num: 1")),
        ValueError,
        r"not valid JSON",
    ),
    Case(
        "FaastConfig.from_pretrained",
        "config file that is not UTF-8",
        call(lambda c: _cfg_file(c, b"\xff\xfe{}")),
        ValueError,
        r"not (valid JSON|UTF-8)",
    ),
    Case(
        "FaastConfig.from_pretrained",
        "config JSON that is a list",
        call(lambda c: _cfg_file(c, b"[1]")),
        ValueError,
        r"not a FaastConfig",
    ),
]

TASKS = [
    Case(
        "TaskModel",
        "tokenizer without a pad token",
        call(lambda c: _task_model(c, pad=False)),
        ValueError,
        r"no pad token",
    ),
    Case(
        "TaskModel",
        "model without an output memory",
        call(
            lambda c: __import__("faast.lm.task", fromlist=["x"]).TaskModel(
                _fm_new(num_memories=1, output_memory=False), c.tokenizer()
            )
        ),
        ValueError,
        r"output memory",
    ),
    Case(
        "TaskModel",
        "not a FaastModel",
        call(lambda c: __import__("faast.lm.task", fromlist=["x"]).TaskModel(object(), c.tokenizer())),
        TypeError,
        r"must be a FaastModel",
    ),
    Case(
        "TaskModel.learn", "no examples", call(lambda c: _task_model(c).learn([])), ValueError, r"no examples"
    ),
    Case(
        "TaskModel.learn",
        "an example without output",
        call(lambda c: _task_model(c).learn(_ex(("w3 w4", None)))),
        ValueError,
        r"has no output",
    ),
    Case(
        "TaskModel.fit",
        "a calibrated read-out for free-text outputs",
        call(
            lambda c: _task_model(c).fit(
                _ex(*[(f"w{3 + i}", f"w{10 + i} w{11 + i}") for i in range(8)]),
                labels=None,
                candidates=[__import__("faast.lm.task_choice", fromlist=["x"]).MEMORY_OFF.calibrated()],
                progress=False,
            )
        ),
        ValueError,
        r"calibrated read-outs \(prob\(λ=0,T=1;default\)\+calibrated, \.\.\.\) need labels; these "
        r"outputs are free text",
    ),
    Case(
        "TaskModel.fit",
        "folds = 0",
        call(
            lambda c: _task_model(c).fit(
                _ex(*[(f"w{3 + i}", "w40" if i % 2 else "w41") for i in range(8)]), folds=0, progress=False
            )
        ),
        ValueError,
        r"folds must be an integer >= 1, got 0",
    ),
    Case(
        "TaskModel.fit",
        "one fold holding out every example",
        call(
            lambda c: _task_model(c).fit(
                _ex(*[(f"w{3 + i}", "w40" if i % 2 else "w41") for i in range(8)]), folds=1, progress=False
            )
        ),
        ValueError,
        r"folds=1 with hold_out=1 holds out every example at once",
    ),
    Case(
        "TaskModel.fit",
        "negative max_validation",
        call(
            lambda c: _task_model(c).fit(
                _ex(*[(f"w{3 + i}", "w40" if i % 2 else "w41") for i in range(8)]),
                max_validation=-3,
                progress=False,
            )
        ),
        ValueError,
        r"max_validation must be an integer >= 0, got -3",
    ),
    Case(
        "TaskModel.fit",
        "batch_size = 0",
        call(
            lambda c: _task_model(c).fit(
                _ex(*[(f"w{3 + i}", "w40" if i % 2 else "w41") for i in range(8)]),
                batch_size=0,
                progress=False,
            )
        ),
        ValueError,
        r"batch_size must be an integer >= 1, got 0",
    ),
    Case(
        "TaskModel.learn",
        "batch_size = 0",
        call(lambda c: _task_model(c).learn(_ex(("w3", "w40")), batch_size=0)),
        ValueError,
        r"batch_size must be an integer >= 1, got 0",
    ),
    Case(
        "TaskModel.learn",
        "a free-text output holding the answer end",
        call(lambda c: _task_model(c).learn(_ex(("w3", "w40\nw41")))),
        ValueError,
        r"example 0 \('w3'\): its output holds the answer end '\\n'",
    ),
    Case(
        "TaskModel.fit",
        "an unknown anchor for the guard",
        call(
            lambda c: _task_model(c).fit(
                _ex(*[(f"w{3 + i}", "w40" if i % 2 else "w41") for i in range(8)]),
                anchor="loose",
                progress=False,
            )
        ),
        ValueError,
        r"unknown anchor 'loose'; use one of zero-shot, best, tested",
    ),
    Case(
        "anchor_candidate",
        "a label-mix anchor without the predicted labels",
        call(
            lambda c: __import__("faast.lm.task_choice", fromlist=["x"]).anchor_candidate(
                *_both_zero_shot(), "balanced"
            )
        ),
        ValueError,
        r"the 'balanced' anchor needs the predicted and the right labels",
    ),
    Case(
        "label_mix_distance",
        "predicted and right labels of different lengths",
        call(
            lambda c: __import__("faast.lm.task_choice", fromlist=["x"]).label_mix_distance(
                torch.tensor([0, 1, 1]), torch.tensor([0, 1])
            )
        ),
        ValueError,
        r"predicted and targets must be two \(n,\) label indices with n >= 1, got \(3,\) and \(2,\)",
    ),
    Case(
        "default_candidates",
        "an unknown set of calibrated read-outs",
        call(lambda c: __import__("faast.lm.task_choice", fromlist=["x"]).default_candidates("prob", "some")),
        ValueError,
        r"unknown calibrated set 'some'; use one of none, zero-shot, all",
    ),
    Case(
        "TaskModel.learn",
        "input strings without outputs",
        call(lambda c: _task_model(c).learn(["w3 w4"])),
        ValueError,
        r"example 0 \('w3 w4'\) has no output",
    ),
    Case(
        "TaskModel.learn",
        "a number instead of an example",
        call(lambda c: _task_model(c).learn([("w3 w4", "w5"), 7])),
        TypeError,
        r"example 1 is of type int; pass Example\(input, output\), an \(input, output\) tuple, a dict",
    ),
    Case(
        "TaskModel.learn",
        "one example instead of a list",
        call(lambda c: _task_model(c).learn(("w3 w4", "w5"))),
        TypeError,
        r"examples must be a sequence of examples, got one tuple: pass a list, e.g. \[\(input, output\)\]",
    ),
    Case(
        "TaskSpec",
        "a single label",
        call(lambda c: __import__("faast.lm.task", fromlist=["x"]).TaskSpec(labels=["w5"])),
        ValueError,
        r"at least two distinct",
    ),
    Case(
        "TaskSpec",
        "two labels that differ only by a stray space",
        call(lambda c: __import__("faast.lm.task", fromlist=["x"]).TaskSpec(labels=["w5", "w8", "w5 "])),
        ValueError,
        r"labels 'w5' and 'w5 ' differ only by surrounding whitespace",
    ),
    Case(
        "TaskSpec",
        "a template that is neither a PromptTemplate nor a string",
        call(lambda c: __import__("faast.lm.task", fromlist=["x"]).TaskSpec(template=3)),
        TypeError,
        r"template must be a PromptTemplate or a prompt string holding \{input\}, got int",
    ),
    Case(
        "TaskSpec",
        "the template as a plain prompt string",
        call(lambda c: __import__("faast.lm.task", fromlist=["x"]).TaskSpec(template="Q: {input}\nA:")),
        behaviour="taken as PromptTemplate(template): the default answer prefix and end",
        check=lambda spec: spec.template.template == "Q: {input}\nA:" and spec.template.answer_end == "\n",
    ),
    Case(
        "TaskSpec",
        "unknown pair mode",
        call(lambda c: __import__("faast.lm.task", fromlist=["x"]).TaskSpec(pairs="all-of-them")),
        ValueError,
        r"pairs must be one of",
    ),
    Case(
        "TaskSpec",
        "a lead demonstration without an output",
        call(lambda c: __import__("faast.lm.task", fromlist=["x"]).TaskSpec(demonstrations=[("w3 w4", "")])),
        ValueError,
        r"demonstration 0 must be an \(input, output\) pair of non-empty strings",
    ),
    Case(
        "contextually_calibrated",
        "content-free scores of other labels",
        call(
            lambda c: __import__("faast.lm.calibration", fromlist=["x"]).contextually_calibrated(
                torch.zeros(2, 3), torch.zeros(1, 4)
            )
        ),
        ValueError,
        r"content_free \(1, 4\) needs at least one row of the 3 labels",
    ),
    Case(
        "contextually_calibrated",
        "-Inf label score",
        call(
            lambda c: __import__("faast.lm.calibration", fromlist=["x"]).contextually_calibrated(
                torch.tensor([[0.0, -INF]]), torch.zeros(1, 2)
            )
        ),
        ValueError,
        r"label scores must be finite to be calibrated",
    ),
    Case(
        "TaskModel.load",
        "fast weights not saved by a TaskModel",
        call(
            lambda c: __import__("faast.lm.task", fromlist=["x"]).TaskModel.load(
                c.fm(learned=False).unload(), c.tokenizer(), c.fast_weights, "a"
            )
        ),
        ValueError,
        r"not saved by a TaskModel",
    ),
]


def _saved_classifier(ctx: Ctx, name: str, seed: int = 0) -> Path:
    """A FaastClassifier fitted on 12 random rows (seed) and saved to the folder ``name``."""
    from faast import FaastClassifier

    rng = np.random.default_rng(seed)
    return FaastClassifier().fit(rng.standard_normal((12, 4)), np.arange(12) % 3).save(ctx.path(name))


def _torn_classifier(ctx: Ctx):
    """Load a saved classifier whose tensors another save wrote (a save stopped between its files)."""
    from faast import FaastClassifier

    folder, other = _saved_classifier(ctx, "torn"), _saved_classifier(ctx, "other", seed=1)
    (folder / "classifier.safetensors").write_bytes((other / "classifier.safetensors").read_bytes())
    return FaastClassifier.load(folder)


def _classifier_with_json(ctx: Ctx, field: str, value: Any):
    """Load a saved classifier whose ``classifier.json`` has ``field`` set to ``value``."""
    import json

    from faast import FaastClassifier

    folder = _saved_classifier(ctx, "edited")
    info = json.loads((folder / "classifier.json").read_text())
    info[field] = value
    (folder / "classifier.json").write_text(json.dumps(info))
    return FaastClassifier.load(folder)


def _predict_over_labels(ctx: Ctx) -> list[str]:
    """``faast classify predict`` with ``--out`` naming its own ``--labels`` file (the model fitted
    by ``faast classify fit`` first, which records what its features are)."""
    from faast.cli import main

    features, labels, model = ctx.path("x.npy"), ctx.path("y.npy"), ctx.path("clf-predict")
    np.save(features, np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1], [0.1, 1.0]]))
    np.save(labels, np.array(["a", "b", "a", "b"]))
    assert main(["classify", "fit", str(features), "--labels", str(labels), "--model", str(model)]) == 0
    return [
        "classify",
        "predict",
        str(features),
        "--model",
        str(model),
        "--labels",
        str(labels),
        "--out",
        str(labels),
    ]


def _predict_out(ctx: Ctx, out: str) -> list[str]:
    """``faast classify predict`` of a fitted classifier (:func:`_predict_over_labels`) with
    ``--out`` ``out``."""
    argv = _predict_over_labels(ctx)
    argv[argv.index("--out") + 1] = out
    return argv


def _link_to_nothing(ctx: Ctx) -> str:
    """A link ``out.csv`` to a file that does not exist."""
    link = ctx.path("out.csv")
    link.symlink_to(ctx.path("nowhere.csv"))
    return str(link)


def _subtract_without_rows(ctx: Ctx) -> tuple[Action, Snapshot]:
    """Statistics that keep no rows (``dual_max_pairs=0``), so pairs cannot be matched one by one;
    subtract pairs far larger than the ones added."""
    s = _gs(4, 2, dual_max_pairs=0)
    s.add(_k(6, 4), _k(6, 2))
    return (lambda: s.subtract(_k(2, 4) + 10.0, _k(2, 2))), (lambda: stats_state(s))


def _negated_stats(ctx: Ctx):
    """Load a statistics file whose Gram matrix was negated (no sum of squares gives it)."""
    from faast.io import load_tensors, save_tensors
    from faast.solver import GramStats

    tensors, meta = load_tensors(ctx.stats_file, kind="stats")
    tensors["gram"] = -tensors["gram"]
    path = ctx.path("negated.safetensors")
    save_tensors(path, tensors, {k: v for k, v in meta.items() if not k.startswith("faast.")}, kind="stats")
    return GramStats.load(path)


def _examples(ctx: Ctx, name: str, data: bytes, **kw: Any):
    from faast.lm.examples import read_examples

    return read_examples(ctx.text_file(name, data), **kw)


def _text(ctx: Ctx, name: str, data: bytes):
    from faast.lm.text import read_text

    return read_text(ctx.text_file(name, data))


def _windows(ids: torch.Tensor, length: int):
    from faast.lm.text import token_windows

    return token_windows(ids, length)


LOADERS = [
    Case(
        "read_examples",
        "missing file",
        call(lambda c: __import__("faast.lm.examples", fromlist=["x"]).read_examples(c.path("none.tsv"))),
        FileNotFoundError,
        r"no such examples file",
    ),
    Case("read_examples", "empty file", call(lambda c: _examples(c, "e.tsv", b"")), ValueError, r"is empty"),
    Case(
        "read_examples",
        "non-UTF-8 bytes",
        call(lambda c: _examples(c, "b.tsv", b"a\tb\n\xff\xfe\tc\n")),
        ValueError,
        r"b.tsv:2: not UTF-8",
    ),
    Case(
        "read_examples",
        "blank line",
        call(lambda c: _examples(c, "bl.tsv", b"a\tb\n\nc\td\n")),
        ValueError,
        r"bl.tsv:2: blank line",
    ),
    Case(
        "FaastClassifier.load",
        "tensors written by another save (an interrupted save)",
        call(_torn_classifier),
        ValueError,
        r"classifier.safetensors is not the file .*classifier.json was saved with "
        r".*written by different saves",
    ),
    Case(
        "FaastClassifier.load",
        "classifier.json: n_features_in not a number",
        call(lambda c: _classifier_with_json(c, "n_features_in", "abc")),
        ValueError,
        r"classifier.json: malformed classifier description "
        r"\(n_features_in: 'abc' is not a positive whole number",
    ),
    Case(
        "read_examples",
        "inputs to predict, a carriage return inside a TSV line",
        call(lambda c: _examples(c, "cr.tsv", b"one input\nsecond\rhalf\n", outputs=False)),
        ValueError,
        r"cr.tsv:2: a carriage return \(CR\) inside the line",
    ),
    Case(
        "read_examples",
        "three TSV fields",
        call(lambda c: _examples(c, "f3.tsv", b"a\tb\tc\n")),
        ValueError,
        r"3 tab-separated fields",
    ),
    Case(
        "read_examples",
        "TSV line without output",
        call(lambda c: _examples(c, "no.tsv", b"a\n")),
        ValueError,
        r"no output",
    ),
    Case(
        "read_examples",
        "header only",
        call(lambda c: _examples(c, "h.tsv", b"input\toutput\n")),
        ValueError,
        r"header but no examples",
    ),
    Case(
        "read_examples",
        "invalid JSON line",
        call(lambda c: _examples(c, "j.jsonl", b'{"input": "a",\n')),
        ValueError,
        r"j.jsonl:1: not valid JSON",
    ),
    Case(
        "read_examples",
        "JSON line that is a list",
        call(lambda c: _examples(c, "l.jsonl", b'["a", "b"]\n')),
        ValueError,
        r"expected a JSON object",
    ),
    Case(
        "read_examples",
        "output that is a fraction (an integer reads as its text)",
        call(lambda c: _examples(c, "n.jsonl", b'{"input": "a", "output": 3.5}\n')),
        ValueError,
        r"'output' must be a string or an integer, got float",
    ),
    Case(
        "read_examples",
        "output that is true",
        call(lambda c: _examples(c, "b.jsonl", b'{"input": "a", "output": true}\n')),
        ValueError,
        r"'output' must be a string or an integer, got bool",
    ),
    Case(
        "read_examples",
        "CSV without the named columns",
        call(lambda c: _examples(c, "t.csv", b"text,label\na,b\n")),
        ValueError,
        r"t.csv:1: no column 'input' or 'output' in the header \['text', 'label'\]; name the columns",
    ),
    Case(
        "read_examples",
        "CSV quote never closed",
        call(lambda c: _examples(c, "q.csv", b'input,output\n"never closed,a\nb,c\n')),
        ValueError,
        r"q.csv:2: 1 fields, the header 2, and a quoted cell that runs on to line 3: is a quote opened "
        r"on line 2 never closed\?",
    ),
    Case(
        "read_examples",
        "TSV read by column names without a header",
        call(lambda c: _examples(c, "h.tsv", b"a\tb\n", input_column="text", output_column="label")),
        ValueError,
        r"h.tsv:1: no header naming the column 'text'",
    ),
    Case(
        "read_examples",
        "empty input",
        call(lambda c: _examples(c, "ei.jsonl", b'{"input": " ", "output": "b"}\n')),
        ValueError,
        r"'input' must be a non-empty string",
    ),
    Case(
        "read_examples",
        "unknown extension",
        call(lambda c: _examples(c, "x.xlsx", b"a,b\n")),
        ValueError,
        r"unknown file type '.xlsx'",
    ),
    Case(
        "read_text",
        "missing file",
        call(lambda c: __import__("faast.lm.text", fromlist=["x"]).read_text(c.path("none.txt"))),
        FileNotFoundError,
        r"no such text file",
    ),
    Case(
        "read_text",
        "empty text",
        call(lambda c: _text(c, "empty.txt", b"")),
        ValueError,
        r"empty.txt is empty",
    ),
    Case(
        "read_text",
        "only blank lines and spaces",
        call(lambda c: _text(c, "blank.txt", b"  \n\n")),
        ValueError,
        r"blank.txt holds only whitespace",
    ),
    Case(
        "read_text",
        "non-UTF-8 text",
        call(lambda c: _text(c, "latin.txt", b"caf\xe9\n")),
        ValueError,
        r"latin.txt:1: not UTF-8",
    ),
    Case(
        "token_windows",
        "window shorter than 2",
        call(lambda c: _windows(torch.arange(10), 1)),
        ValueError,
        r"at least 2 tokens",
    ),
    Case(
        "token_windows",
        "a single token",
        call(lambda c: _windows(torch.arange(1), 8)),
        ValueError,
        r"too short",
    ),
    Case(
        "GramStats.load",
        "missing file",
        call(lambda c: __import__("faast.solver", fromlist=["x"]).GramStats.load(c.path("none.safetensors"))),
        FileNotFoundError,
        r"no such file",
    ),
    Case(
        "GramStats.load",
        "truncated file",
        call(
            lambda c: __import__("faast.solver", fromlist=["x"]).GramStats.load(
                c.truncated(c.stats_file, "cut-stats.safetensors")
            )
        ),
        ValueError,
        r"not a readable safetensors",
    ),
    Case(
        "GramStats.load",
        "a Gram matrix with a negative diagonal (damaged)",
        call(_negated_stats),
        ValueError,
        r"negated.safetensors: malformed state: the Gram matrix .* has a negative diagonal entry",
    ),
    Case(
        "GramStats.subtract",
        "beyond the kept rows, pairs larger than any that were added",
        _subtract_without_rows,
        ValueError,
        r"cannot subtract these pairs: they were never added \(key column 0",
    ),
    Case(
        "FaastClassifier.forget",
        "beyond the kept rows, examples never learned (shifted)",
        on_clf(lambda c: c.forget(_rows(3, 4, seed=3) + 5.0, np.arange(3))),  # 12 > 2·5: no rows
        ValueError,
        r"were never learned \(or were already forgotten\)",
    ),
    Case(
        "GramStats.solve",
        "an integer dtype",
        on_stats(lambda s: s.solve(dtype=torch.int64)),
        ValueError,
        r"dtype=torch.int64 cannot hold fast weights",
    ),
    Case(
        "GramStats.load",
        "a fast-weight file",
        call(lambda c: __import__("faast.solver", fromlist=["x"]).GramStats.load(c.fast_weights)),
        ValueError,
        r"holds LM fast weights, not statistics",
    ),
    Case(
        "GramStats.load",
        "a safetensors file not written by faast",
        call(lambda c: __import__("faast.solver", fromlist=["x"]).GramStats.load(_foreign(c))),
        ValueError,
        r"not a faast file of statistics",
    ),
    Case(
        "GramStats.load_file",
        "statistics of other dimensions",
        on_stats(lambda s: s.load_file(_other_stats_file())),
        ValueError,
        r"dimension|keys 5",
    ),
    Case(
        "GramStats.save",
        "output directory cannot be created",
        on_stats(lambda s: s.save(_blocked())),
        OSError,
        r"blocker",
    ),
    Case(
        "save_tensors",
        "unknown kind",
        call(
            lambda c: __import__("faast.io", fromlist=["x"]).save_tensors(
                c.path("k.safetensors"), {}, kind="zip"
            )
        ),
        ValueError,
        r"unknown file kind 'zip'",
    ),
    Case(
        "load_json",
        "not JSON",
        call(lambda c: __import__("faast.io", fromlist=["x"]).load_json(c.text_file("x.json", b"{"))),
        ValueError,
        r"not valid JSON",
    ),
]


def _idx(ctx: Ctx, name: str, data: bytes | None = None, *, ndim: int = 3):
    from faast.data.idx import read_idx, write_idx

    path = ctx.path(name)
    if data is None:
        write_idx(path, np.zeros((2, 4, 4), np.uint8))
    else:
        path.write_bytes(data)
    return read_idx(path, ndim=ndim)


def _cached_features(ctx: Ctx):
    from faast.encoders.cache import load_cached

    path = ctx.truncated(ctx.stats_file, "features.safetensors")
    return load_cached(path, {"num_images": "2"})


def _save_into_missing_folder(ctx: Ctx):
    from faast.solver import GramStats

    path = ctx.path("new") / "deeper" / "stats.safetensors"
    ctx.stats().save(path)
    return GramStats.load(path).count


LOADERS += [
    Case(
        "read_idx",
        "missing file",
        call(lambda c: __import__("faast.data.idx", fromlist=["x"]).read_idx(c.path("none-idx"), ndim=3)),
        FileNotFoundError,
        r"no such IDX file",
    ),
    Case(
        "read_idx",
        "not an IDX file",
        call(lambda c: _idx(c, "text.idx", b"hello world\n")),
        ValueError,
        r"not an IDX file \(bad magic number",
    ),
    Case(
        "read_idx",
        "truncated header",
        call(lambda c: _idx(c, "short.idx", bytes([0, 0, 8, 3, 0, 0]))),
        ValueError,
        r"truncated IDX header",
    ),
    Case(
        "read_idx",
        "labels given where images are expected",
        call(lambda c: _idx(c, "ok.idx", ndim=1)),
        ValueError,
        r"has 3 dimensions, expected 1",
    ),
    Case(
        "read_idx",
        "gzip magic with a corrupt body",
        call(lambda c: _idx(c, "bad.idx.gz", b"\x1f\x8b" + b"not gzip at all" * 4)),
        ValueError,
        r"cannot be read as gzip IDX",
    ),
    Case(
        "encode_dataset (feature cache)",
        "a truncated cache file",
        call(_cached_features),
        behaviour="treated as not cached: the features are encoded again and the cache rewritten",
        check=lambda r: r[0] is None and r[1].startswith("unreadable"),
    ),
    Case(
        "GramStats.save",
        "output folder missing",
        call(_save_into_missing_folder),
        behaviour="the folders are created; the file loads",
        check=lambda n: n == 6,
    ),
    Case(
        "load_tensors(kind=train_state)",
        "a fast-weight file as a training checkpoint",
        call(
            lambda c: __import__("faast.io", fromlist=["x"]).load_tensors(c.fast_weights, kind="train_state")
        ),
        ValueError,
        r"holds LM fast weights, not a readout-training checkpoint",
    ),
]


_CTX: list[Ctx] = []  # the context of the running case (for helpers without one)


def _foreign(ctx: Ctx) -> Path:
    from safetensors.torch import save_file

    path = ctx.path("foreign.safetensors")
    save_file({"x": torch.zeros(2)}, str(path))
    return path


def _other_stats_file() -> Path:
    ctx = _CTX[-1]
    path = ctx.path("stats5.safetensors")
    _gs(5, 2).add(_k(3, 5), _k(3, 2)).save(path)
    return path


def _blocked() -> Path:
    return _CTX[-1].file_as_dir()


# --------------------------------------------------------------------------- CLI
def _learn(ctx: Ctx, *extra: str, text: Path | None = None) -> list[str]:
    if text is None:
        text = ctx.text_file("cli.txt", " ".join(f"w{3 + i % 40}" for i in range(80)).encode())
    out = ctx.path("cli-fw.safetensors")
    return [
        "lm",
        "learn",
        "--model",
        str(ctx.model_dir),
        "--threads",
        "1",
        "--text",
        str(text),
        "--out",
        str(out),
        "--window",
        "16",
        *extra,
    ]


def _forget_other_window(ctx: Ctx) -> list[str]:
    """Learn a text with --window 16 (the CLI), then the argv forgetting it with --window 8."""
    from faast.cli import main

    argv = _learn(ctx)
    argv[argv.index("--out") + 1] = str(ctx.path("forget-window.safetensors"))  # not the others' file
    if main(argv) != 0:
        raise RuntimeError("learning the text to forget failed")
    text, out = argv[argv.index("--text") + 1], argv[argv.index("--out") + 1]
    model = ["--model", str(ctx.model_dir), "--threads", "1"]
    return ["lm", "forget", *model, "--fast-weights", out, "--text", text, "--window", "8"]


def _forget_unlearned_text(ctx: Ctx) -> list[str]:
    """Learn a text (the CLI), then the argv forgetting another text from its task."""
    from faast.cli import main

    argv = _learn(ctx)
    argv[argv.index("--out") + 1] = str(ctx.path("forget-other.safetensors"))  # not the others' file
    if main(argv) != 0:
        raise RuntimeError("learning the text failed")
    other = ctx.text_file("never.txt", " ".join(f"w{3 + i % 30}" for i in range(60)).encode())
    model = ["--model", str(ctx.model_dir), "--threads", "1"]
    out = argv[argv.index("--out") + 1]
    return ["lm", "forget", *model, "--fast-weights", out, "--text", str(other), "--window", "16"]


def _stream_csv_over_text(ctx: Ctx) -> list[str]:
    text = str(ctx.text_file("s.txt", b"w3 w4 w5 w6 w7 w8"))
    return ["lm", "stream", "--model", str(ctx.model_dir), "--threads", "1", "--text", text, "--csv", text]


def _generate(ctx: Ctx, fw: Path, *extra: str) -> list[str]:
    return [
        "lm",
        "generate",
        "--model",
        str(ctx.model_dir),
        "--threads",
        "1",
        "--fast-weights",
        str(fw),
        "--prompt",
        "w3 w4",
        "--max-new-tokens",
        "2",
        *extra,
    ]


def _task_learn(ctx: Ctx, out: Path) -> list[str]:
    if out.suffix != ".safetensors":
        out.mkdir(exist_ok=True)
    examples = ctx.text_file("task.tsv", b"w3 w4\tw5\nw6 w7\tw8\n")
    return ["task", "learn", "--model", str(ctx.model_dir), "--examples", str(examples), "--out", str(out)]


def _task_evaluate(ctx: Ctx, examples: bytes, *extra: str, name: str = "two-labels.tsv") -> list[str]:
    """``faast task evaluate`` of a file ``name`` holding ``examples`` on the tiny model."""
    path = str(ctx.text_file(name, examples))
    return ["task", "evaluate", "--model", str(ctx.model_dir), "--examples", path, *extra]


def _append_text_to_a_task(ctx: Ctx) -> list[str]:
    """Learn a task with ``faast task learn`` (the CLI), then the argv appending a text to it."""
    from faast.cli import main

    out = ctx.path("task-then-text.safetensors")
    if main([*_task_learn(ctx, out), "--threads", "1"]) != 0:
        raise RuntimeError("learning the task failed")
    argv = _learn(ctx, "--append")
    argv[argv.index("--out") + 1] = str(out)
    return argv


def _append_text_to_a_task_learned_in_steps(ctx: Ctx) -> list[str]:
    """Learn a text with ``faast lm learn --mix correction --steps 2``, then the argv appending
    another text to it."""
    from faast.cli import main

    out = ctx.path("stepped.safetensors")
    argv = _learn(ctx, "--mix", "correction", "--steps", "2")
    argv[argv.index("--out") + 1] = str(out)
    if main(argv) != 0:
        raise RuntimeError("learning the text in steps failed")
    more = ctx.text_file("more.txt", " ".join(f"w{5 + i % 30}" for i in range(60)).encode())
    argv = _learn(ctx, "--append", text=more)
    argv[argv.index("--out") + 1] = str(out)
    return argv


def _task_classify(ctx: Ctx, *extra: str) -> list[str]:
    inputs = ctx.text_file("inputs.tsv", b"w3 w4\nw6 w7\n")
    out = str(ctx.path("pred.tsv"))
    return ["task", "classify", "--model", str(ctx.model_dir), "--inputs", str(inputs), "--out", out, *extra]


def _pairs_file(ctx: Ctx, **tensors: torch.Tensor) -> Path:
    from safetensors.torch import save_file

    path = ctx.path("pairs.safetensors")
    save_file(tensors, str(path))
    return path


CLI = [
    CliCase("unknown command", lambda c: ["frobnicate"], r"invalid choice: 'frobnicate'", 2),
    CliCase(
        "task examples whose outputs carry stray spaces",
        lambda c: [
            *_task_learn(c, c.path("sp.safetensors"))[:5],
            str(c.text_file("spaces.tsv", b"w3 w4\tw5\nw6 w7\tw8\nw9 w10\tw5 \n")),
            "--out",
            str(c.path("sp.safetensors")),
        ],
        r"labels 'w5' and 'w5 ' differ only by surrounding whitespace",
    ),
    CliCase("missing required option", lambda c: ["lm", "learn", "--text", "x"], r"required: --out", 2),
    CliCase("a number option given a word", lambda c: _learn(c, "--window", "many"), r"invalid int value", 2),
    CliCase("text file missing", lambda c: _learn(c, text=c.path("none.txt")), r"no such text file"),
    CliCase(
        "empty text file", lambda c: _learn(c, text=c.text_file("e.txt", b"\n")), r"holds only whitespace"
    ),
    CliCase("non-UTF-8 text file", lambda c: _learn(c, text=c.text_file("l1.txt", b"caf\xe9")), r"not UTF-8"),
    CliCase("window of 1 token", lambda c: _learn(c, "--window", "1"), r"at least 2 tokens"),
    CliCase(
        "--temperature with the logit mix (which does not read it)",
        lambda c: _learn(c, "--mix", "logit", "--temperature", "3"),
        r"--temperature does not apply to the 'logit' mix, which reads --weight",
    ),
    CliCase(
        "--damping with the prob mix",
        lambda c: _learn(c, "--damping", "0.5"),
        r"--damping does not apply to the 'prob' mix",
    ),
    CliCase(
        "forget with another --window than the text was learned with",
        lambda c: _forget_other_window(c),
        r"was learned into this task with --window 16 \(not --window 8\)",
    ),
    CliCase(
        "forget a text the task never learned",
        _forget_unlearned_text,
        r"never.txt is not a text learned into task 'default' of .*forget-other.safetensors \(never learned",
    ),
    CliCase(
        "stream --csv is the --text file",
        lambda c: _stream_csv_over_text(c),
        r"--csv .*s.txt is the same file as --text .*s.txt: writing it would replace that input",
    ),
    CliCase(
        "negative --key-features",
        lambda c: _learn(c, "--key-features", "-8"),
        r"output_key_features must be an integer >= 0",
    ),
    CliCase("task name with '/'", lambda c: _learn(c, "--task", "a/b"), r"task names"),
    CliCase(
        "output directory cannot be created",
        lambda c: [*_learn(c)[:-4], "--out", str(c.file_as_dir()), "--window", "16"],
        r"blocker",
    ),
    CliCase(
        "task learn: --out is a folder (refused before loading the model)",
        lambda c: _task_learn(c, c.path("out-folder")),
        r"the output path is a folder",
    ),
    CliCase(
        "task learn: --out is not a fast-weight file",
        lambda c: _task_learn(c, c.text_file("notfw.safetensors", b"hi")),
        r"not a readable safetensors file",
    ),
    CliCase(
        "task learn: --in-context takes every example (nothing left to learn)",
        lambda c: [*_task_learn(c, c.path("t.safetensors")), "--in-context", "2"],
        r"--in-context 2 leaves none of the 2 examples",
    ),
    CliCase(
        "task learn: --guard is not a guard",
        lambda c: [*_task_learn(c, c.path("t.safetensors")), "--guard", "strict"],
        r"unknown guard 'strict'; use one of sign-flip, selection, one-se, none",
    ),
    CliCase(
        "task learn: --calibrated read-outs for free-text outputs",
        lambda c: [*_task_learn(c, c.path("t.safetensors")), "--labels", "none", "--calibrated", "all"],
        r"calibrated read-outs \(.*\+calibrated, \.\.\.\) need labels; these outputs are free text",
    ),
    CliCase(
        "task learn: --hold-out is not a share of the examples",
        lambda c: [*_task_learn(c, c.path("t.safetensors")), "--hold-out", "1.5"],
        r"hold_out must be a share of the examples in \(0, 1\], got 1.5",
    ),
    CliCase(
        "task learn: --in-context demonstrations fill the context",
        lambda c: [
            *_task_learn(c, c.path("t.safetensors")),
            "--examples",
            str(c.text_file("long.tsv", b"".join(b"w3 " * 40 + b"\tw5\n" for _ in range(3)))),
            "--in-context",
            "2",
        ],
        r"2 lead demonstrations take \d+ tokens, which leaves no room in the context",
    ),
    CliCase(
        "task classify: --shots without --demonstrations",
        lambda c: _task_classify(c, "--labels", "w5,w8", "--shots", "2"),
        r"--shots needs --demonstrations",
    ),
    CliCase(
        "task classify: demonstrations without outputs",
        lambda c: _task_classify(c, "--demonstrations", str(c.text_file("demos.tsv", b"w3 w4\n"))),
        r"demos.tsv:1: no output",
    ),
    CliCase(
        "task classify: --calibrate on free text",
        lambda c: _task_classify(c, "--labels", "none", "--calibrate"),
        r"--calibrate needs labels \(a classification task\): pass --labels",
    ),
    CliCase(
        "task classify: a one-column inputs file headed by a column name",
        lambda c: [
            *_task_classify(c, "--labels", "w5,w8")[:5],  # task classify --model M --inputs
            str(c.text_file("headed.tsv", b"text\nw3 w4\n")),
            *_task_classify(c, "--labels", "w5,w8")[6:],
        ],
        r"headed.tsv:1: 'text' looks like a header of another column name",
    ),
    CliCase(
        "task classify: --labels none with --fast-weights",
        lambda c: _task_classify(c, "--fast-weights", str(c.fast_weights), "--task", "a", "--labels", "none"),
        r"--labels none: a learned task keeps the labels",
    ),
    CliCase(
        "task evaluate: zero-shot --labels auto on references of one label",
        lambda c: _task_evaluate(c, b"w3 w4\tw5\nw6 w7\tw5\n", "--labels", "auto", name="one-label.tsv"),
        r"every output is 'w5', one label",
    ),
    CliCase(
        "task evaluate: --predictions and --json name one file",
        lambda c: _task_evaluate(
            c,
            b"w3 w4\tw5\nw6 w7\tw8\n",
            "--predictions",
            str(c.path("same.json")),
            "--json",
            str(c.path("same.json")),
        ),
        r"--predictions and --json both name .*same.json: the one written last would replace the other",
    ),
    CliCase(
        "task learn: --folds 0 (refused before the model loads)",
        lambda c: [*_task_learn(c, c.path("folds0.safetensors")), "--folds", "0"],
        r"--folds must be an integer >= 1",
    ),
    CliCase(
        "lm learn --append: text into a task learned by task learn",
        _append_text_to_a_task,
        r"--append: task 'default' of .* was learned from examples by `faast task learn`",
    ),
    CliCase(
        "lm learn --append: text into a task learned with --steps 2",
        _append_text_to_a_task_learned_in_steps,
        r"--append: task 'default' of .* was learned with --steps 2: a text added to it would be learned "
        r"in one step",
    ),
    CliCase(
        "task classify: negative --shots",
        lambda c: _task_classify(
            c, "--demonstrations", str(c.text_file("d.tsv", b"w3\tw5\n")), "--shots", "-1"
        ),
        r"--shots must be >= 0",
    ),
    CliCase(
        "fast-weight file missing",
        lambda c: ["lm", "tasks", str(c.path("none.safetensors"))],
        r"no such file",
    ),
    CliCase(
        "model folder missing",
        lambda c: [*_learn(c)[:2], "--model", str(c.path("no-model")), *_learn(c)[4:]],
        r"no model folder .*no-model",
    ),
    CliCase(
        "a model folder without config.json",
        lambda c: [
            *_learn(c)[:2],
            "--model",
            str(_folder_with(c, "not-a-model", "weights.bin")),
            *_learn(c)[4:],
        ],
        r"not-a-model is not a model folder: no config.json in it \(it holds weights.bin\)",
    ),
    CliCase(
        "missing optional extra (transformers)", lambda c: _learn(c), r"faast\[lm\]", missing="transformers"
    ),
    CliCase(
        "tasks of a text file",
        lambda c: ["lm", "tasks", str(c.text_file("t.safetensors", b"hi"))],
        r"not a readable safetensors file",
    ),
    CliCase(
        "tasks of a truncated file",
        lambda c: ["lm", "tasks", str(c.truncated(c.fast_weights, "c.safetensors"))],
        r"not a readable safetensors file",
    ),
    CliCase(
        "fast weights of another model",
        lambda c: _generate(c, _other_model_file(c), "--task", "t"),
        r"another model",
    ),
    CliCase(
        "fast weights: unknown task",
        lambda c: _generate(c, c.fast_weights, "--task", "zzz"),
        r"has no task 'zzz'",
    ),
    CliCase("fast weights: a statistics file", lambda c: _generate(c, c.stats_file), r"holds statistics"),
    CliCase(
        "lm learn: a CUDA device this machine lacks",
        lambda c: _learn(c, "--device", "cuda:999"),
        r"--device='cuda:999': (no CUDA device|only \d+ CUDA)",
    ),
    CliCase(
        "tasks of a folder, not a file", lambda c: ["lm", "tasks", str(c.model_dir)], r"a folder, not a file"
    ),
    CliCase(
        "solve: file without 'keys'",
        lambda c: [
            "solve",
            str(_pairs_file(c, values=torch.zeros(3, 2))),
            "--out",
            str(c.path("w.safetensors")),
        ],
        r"lacks tensor",
    ),
    CliCase(
        "solve: NaN keys",
        lambda c: [
            "solve",
            str(_pairs_file(c, keys=torch.full((3, 4), NAN), values=torch.zeros(3, 2))),
            "--out",
            str(c.path("w.safetensors")),
        ],
        r"keys: contains 12 NaN",
    ),
    CliCase(
        "solve: 1-D keys",
        lambda c: [
            "solve",
            str(_pairs_file(c, keys=torch.zeros(3), values=torch.zeros(3, 2))),
            "--out",
            str(c.path("w.safetensors")),
        ],
        r"must be 2-D",
    ),
    CliCase(
        "solve: tau as a word",
        lambda c: [
            "solve",
            str(_pairs_file(c, keys=_k(), values=_k(3, 2))),
            "--out",
            str(c.path("w.safetensors")),
            "--tau",
            "best",
        ],
        r"--tau must be a number, .gcv. or .auto., got .best.",
    ),
    CliCase("assets: unknown asset", lambda c: ["assets", "fetch", "no-such-asset"], r"no-such-asset"),
    CliCase(
        "demo: data folder missing",
        lambda c: [
            "demo",
            "--dataset",
            "cifar10",
            "--data-dir",
            str(c.path("no-data")),
            "--shots",
            "1",
            "--skip-full",
            "--threads",
            "1",
        ],
        r"no-data",
    ),
    CliCase(
        "learn: --out is a statistics file",
        lambda c: [*_learn(c)[:-4], "--out", str(c.stats_file)],
        r"holds statistics",
    ),
    CliCase("learn: --batch-size 0", lambda c: _learn(c, "--batch-size", "0"), r"--batch-size must be >= 1"),
    CliCase(
        "generate: prompt longer than the context window",
        lambda c: _generate(c, c.fast_weights, "--task", "a", "--prompt", " ".join(["w5"] * 2049)),
        r"context window of 2048",
    ),
]


def _perplexity(ctx: Ctx, *extra: str) -> list[str]:
    text = ctx.text_file("ppl.txt", " ".join(f"w{3 + i % 40}" for i in range(80)).encode())
    return ["lm", "perplexity", "--model", str(ctx.model_dir), "--threads", "1", "--text", str(text), *extra]


def _classify_fit(ctx: Ctx, data: bytes, *extra: str, name: str = "texts.tsv") -> list[str]:
    """``faast classify fit`` of a file ``name`` holding ``data`` (examples or features)."""
    examples = ctx.text_file(name, data)
    return ["classify", "fit", str(examples), "--model", str(ctx.path("clf")), *extra]


CLI += [
    CliCase(
        "classify: --labels with a text file",
        lambda c: _classify_fit(c, b"a good film\tpos\n", "--labels", str(c.text_file("y.txt", b"pos\n"))),
        r"--labels is for features files; a text file gives each text's label after a tab",
    ),
    CliCase(
        "classify: a CSV read as texts (--text-column) without that column",
        lambda c: _classify_fit(
            c, b"a,b,label\n1,2,x\n", "--text-column", "review", "--label-column", "label", name="f.csv"
        ),
        r"f.csv:1: no column 'review' in the header \['a', 'b', 'label'\]; name the columns to read with "
        r"--text-column/--label-column",
    ),
    CliCase(
        "classify predict: --out is the --labels file",
        _predict_over_labels,
        r"the output .*y.npy would overwrite the input .*y.npy",
    ),
    CliCase(
        "classify predict: --out ends in '/' (a folder meant, none there)",
        lambda c: _predict_out(c, f"{c.path('preds')}{os.sep}"),
        r"the output .*preds/ ends in '/', which names a folder, not a file: give the file's name",
    ),
    CliCase(
        "classify predict: --out is a link to nothing",
        lambda c: _predict_out(c, _link_to_nothing(c)),
        r"the output .*out.csv is a link to nothing \(.*nowhere.csv\): faast writes through a link",
    ),
    CliCase(
        "classify: a features CSV without a header line (np.savetxt)",
        lambda c: _classify_fit(
            c,
            b"0.5,1.5,0\n0.25,2.5,1\n1.5,0.5,0\n",
            "--labels",
            str(c.text_file("y.txt", b"0\n1\n")),
            name="f.csv",
        ),
        r"f.csv: the first line holds only numbers \(0.5, 1.5, 0\), not the columns' names",
    ),
    CliCase(
        "classify: a fit on examples of one class",
        lambda c: _classify_fit(c, b"f0,f1,label\n0.5,1.5,x\n0.25,2.5,x\n", name="f.csv"),
        r"f.csv: all 2 examples are of one class, 'x': a classifier needs examples of at least two classes",
    ),
    CliCase(
        "classify: a text file without labels",
        lambda c: _classify_fit(c, b"a good film\nso dull\n"),
        r"texts.tsv:1: no output; expected input<TAB>output",
    ),
    CliCase(
        "generate: empty prompt",
        lambda c: _generate(c, c.fast_weights, "--task", "a", "--prompt", ""),
        r"the prompt is empty",
    ),
    CliCase("--threads 0", lambda c: _learn(c, "--threads", "0"), r"--threads must be >= 1"),
    CliCase(
        "perplexity: --max-windows 0", lambda c: _perplexity(c, "--max-windows", "0"), r"limit must be >= 1"
    ),
    CliCase(
        "solve: --out is a folder",
        lambda c: ["solve", str(_pairs_file(c, keys=_k(), values=_k(3, 2))), "--out", str(c.tmp)],
        r"the output path is a folder",
    ),
    CliCase(
        "solve: the pairs path is a folder, --out inside it",
        lambda c: ["solve", str(c.tmp), "--out", str(c.tmp / "W.safetensors")],
        r"a folder, not a pairs file: ",
    ),
    CliCase(
        "solve: --out is the pairs file",
        lambda c: ["solve", str(p := _pairs_file(c, keys=_k(), values=_k(3, 2))), "--out", str(p)],
        r"the output .*pairs.safetensors would overwrite the input .*pairs.safetensors: write it elsewhere",
    ),
    CliCase(
        "classify: an empty label",
        lambda c: _classify_fit(c, b"f0,f1,label\n1,0,a\n0,1,\n1,1,b\n", name="e.csv"),
        r"e.csv: example 2 has an empty label \(1 in all, counting the data rows or lines from 1\)",
    ),
    CliCase(
        "demo: --shots not numbers",
        lambda c: ["demo", "--shots", "one,two", "--threads", "1"],
        r"--shots must be comma-separated integers",
    ),
    CliCase(
        "demo: --shots listing a value twice",
        lambda c: ["demo", "--shots", "1,1", "--threads", "1"],
        r"--shots lists 1 more than once \(each would run and be reported again\)",
    ),
    CliCase(
        "demo: --episodes 0",
        lambda c: ["demo", "--episodes", "0", "--threads", "1"],
        r"--episodes must be >= 1, got 0",
    ),
    CliCase(
        "assets: unknown group",
        lambda c: ["assets", "fetch", "--group", "no-such-group"],
        r"no assets in group 'no-such-group'",
    ),
]
LM += [
    Case(
        "FaastModel.generate",
        "empty prompt (0 tokens)",
        on_fm(lambda c, m: m.generate(input_ids=torch.zeros(1, 0, dtype=torch.long), max_new_tokens=2)),
        ValueError,
        r"the prompt is empty",
    ),
]
LOADERS += [
    Case(
        "token_windows",
        "limit of 0 windows",
        call(
            lambda c: __import__("faast.lm.text", fromlist=["x"]).token_windows(torch.arange(10), 4, limit=0)
        ),
        ValueError,
        r"limit must be >= 1",
    ),
]


SOLVER += [
    Case(
        "GramStats.add",
        "keys so large the float64 sums would overflow",
        on_stats(
            lambda s: s.add(torch.full((3, 4), 1e200, dtype=torch.float64), _k(3, 2).double()), float64=True
        ),
        ValueError,
        r"keys: entries up to 1e\+200 would overflow the float64 statistics",
    ),
]


def _on_kept_rows(fn: Callable[[Any], Any]):
    """Statistics that keep their rows (so a pair never added can be told)."""

    def build(ctx: Ctx):
        from faast.solver import GramStats

        s = GramStats(4, 2, dual_max_pairs=8).add(_k(6, 4), _k(6, 2))
        return (lambda: fn(s)), (lambda: stats_state(s))

    return build


def _on_small_clf(fn: Callable[[Any], Any]):
    """A classifier fitted on 6 examples of 4 features: at most 2·D, so its rows are kept."""

    def build(ctx: Ctx):
        clf = _clf().fit(_rows(6, 4), np.arange(6) % 3)
        return (lambda: fn(clf)), (lambda: clf_state(clf))

    return build


SOLVER += [
    Case(
        "GramStats.add",
        "keys so small their products underflow float64",
        on_stats(
            lambda s: s.add(torch.full((3, 4), 1e-200, dtype=torch.float64), _k(3, 2).double()), float64=True
        ),
        ValueError,
        r"keys: the largest entry is 1e-200, so their products underflow",
    ),
    Case(
        "GramStats.check_subtract",
        "a pair that was never added",
        _on_kept_rows(lambda s: s.check_subtract(_k(2, 4), _k(2, 2))),
        ValueError,
        r"2 of the 2 pairs to remove were never added",
    ),
]
CLASSIFIER += [
    Case(
        "FaastClassifier.fit",
        "features so large the statistics would overflow",
        call(lambda c: _clf().fit(_rows() * 1e200, np.arange(12) % 3)),
        ValueError,
        r"would overflow",
    ),
    Case(
        "FaastClassifier.fit",
        "features so small their products underflow (no intercept)",
        call(lambda c: _clf(fit_intercept=False).fit(_rows() * 1e-200, np.arange(12) % 3)),
        ValueError,
        r"products underflow the float64 statistics",
    ),
    Case(
        "FaastClassifier.forget",
        "as many examples as were learned, none of them learned",
        _on_small_clf(lambda clf: clf.forget(_rows(6, 4, seed=5), np.arange(6) % 3)),
        ValueError,
        r"6 of the 6 pairs to remove were never added",
    ),
]


def _folder_with(ctx: Ctx, name: str, *files: str) -> Path:
    """A folder of ``ctx`` holding empty ``files``."""
    folder = ctx.path(name)
    folder.mkdir(exist_ok=True)
    for file in files:
        (folder / file).write_bytes(b"")
    return folder


def _learned_task_model(ctx: Ctx):
    tm = _task_model(ctx)
    tm.learn(_ex(("w3 w4", "w7"), ("w5 w6", "w8")), progress=False)
    return tm


def on_task(fn: Callable[[Ctx, Any], Any]):
    def build(ctx: Ctx):
        tm = _learned_task_model(ctx)
        return (lambda: fn(ctx, tm)), (lambda: fm_state(tm.model))

    return build


LONG = " ".join(["w5"] * 3000)
TASKS += [
    Case(
        "TaskModel.learn",
        "an example longer than the context window",
        on_task(lambda c, t: t.learn(_ex((LONG, "w7")), progress=False)),
        ValueError,
        r"is 3005 tokens, more than the model's context of 64",
    ),
    Case(
        "TaskModel.answer_nll",
        "an example longer than the context window",
        on_task(lambda c, t: t.answer_nll(_ex((LONG, "w7")))),
        ValueError,
        r"is 3005 tokens, more than the model's context of 64",
    ),
    Case(
        "TaskModel.classify",
        "a prompt longer than the context window",
        on_task(lambda c, t: t.classify([LONG], labels=["w7", "w8"])),
        ValueError,
        r"more than the model's context",
    ),
    Case(
        "TaskModel.classify",
        "a single label",
        on_task(lambda c, t: t.classify(["w3"], labels=["w7"])),
        ValueError,
        r"at least two labels",
    ),
    Case(
        "TaskModel.classify",
        "an empty label",
        on_task(lambda c, t: t.classify(["w3"], labels=["w7", ""])),
        ValueError,
        r"a label encodes to no tokens",
    ),
    Case(
        "TaskModel.classify",
        "two labels that encode to the same tokens",
        on_task(lambda c, t: t.classify(["w3"], labels=["w7", "w7 "])),
        ValueError,
        r"labels 'w7' and 'w7 ' encode to the same tokens",
    ),
    Case(
        "TaskModel.save",
        "the output path is a folder",
        on_task(lambda c, t: t.save(c.tmp)),
        IsADirectoryError,
        r"the output path is a folder",
    ),
]


def _other_model_file(ctx: Ctx) -> Path:
    path = ctx.path("cli-other.safetensors")
    if not path.is_file():
        ctx.fm(hidden=16).save_fast_weights(path, "t")
    return path


def _forget_beyond_kept_rows(ctx: Ctx) -> tuple[Action, Snapshot]:
    """A model holding 4 rows of 12 tokens (44 pairs, past the d = 32 rows its memory keeps) and a
    row never learned whose next tokens were all learned (the first row, its first token changed)."""
    fm = ctx.fm(learned=False)
    rows = torch.arange(3, 51).reshape(4, 12)
    fm.learn(input_ids=rows)
    other = rows[:1].clone()
    other[0, 0] = 60
    return (lambda: fm.forget(input_ids=other)), (lambda: fm_state(fm))


# ----------------------------------------------------------------- forgetting (LM side)
LM += [
    Case(
        "FaastModel.forget",
        "beyond the kept rows, a text never learned whose next tokens were all learned",
        _forget_beyond_kept_rows,
        ValueError,
        r"1 of the 1 rows to forget were never learned \(or were already forgotten\)",
    ),
    Case(
        "FaastModel.forget",
        "a text never learned",
        on_fm(lambda c, m: m.forget(input_ids=torch.arange(40, 50)[None])),
        ValueError,
        r"never learned token ids \[41, 42",
    ),
    Case(
        "FaastModel.forget",
        "more pairs than were learned",
        on_fm(lambda c, m: m.forget(input_ids=torch.arange(3, 23)[None])),
        ValueError,
        r"cannot forget 19 pairs, it holds 18",
    ),
    Case(
        "FaastModel.forget",
        "learned tokens in a context never learned",
        on_fm(lambda c, m: m.forget(input_ids=torch.cat([torch.tensor([50]), torch.arange(4, 13)])[None])),
        ValueError,
        r"9 of the 9 pairs to remove were never added",
    ),
    Case(
        "FaastModel.forget",
        "the model in another dtype than it learned in",
        on_fm(lambda c, m: m.to(torch.float32).forget(input_ids=torch.arange(3, 23).reshape(2, 10))),
        ValueError,
        r"learned with the model in float64 and it now runs in float32",
    ),
    Case(
        "FaastModel.save_fast_weights",
        "info holding NaN (not standard JSON)",
        on_fm(lambda c, m: m.save_fast_weights(c.path("nan-info.safetensors"), info={"score": math.nan})),
        ValueError,
        r"info must hold only standard JSON",
    ),
    Case(
        "FaastModel.forget_captured",
        "not a captured batch",
        on_fm(lambda c, m: m.forget_captured([torch.arange(3, 13)[None]])),
        TypeError,
        r"Captured batch",
    ),
]
TASKS += [
    Case(
        "TaskModel.forget",
        "an example never learned",
        on_task(lambda c, t: t.forget(_ex(("w3 w4", "w9")), progress=False)),
        ValueError,
        r"were never learned by this task",
    ),
]
CLI += [
    CliCase(
        "lm forget: unknown task",
        lambda c: _forget(c, "--task", "zzz"),
        r"has no task 'zzz'",
    ),
    CliCase(
        "lm forget: a text never learned",
        lambda c: _forget(c, "--task", "a", "--dtype", "float64"),  # the dtype the tasks learned in
        r"never learned token ids",
    ),
    CliCase(
        "lm forget: the model in another dtype than the task learned in",
        lambda c: _forget(c, "--task", "a", "--dtype", "float32"),
        r"learned with the model in float64 and it now runs in float32",
    ),
    CliCase(
        "lm learn --append to a missing file",
        lambda c: [*_learn(c), "--out", str(c.path("append-none.safetensors")), "--append"],
        r"--append: .* does not exist",
    ),
]


def _forget(ctx: Ctx, *extra: str) -> list[str]:
    text = ctx.text_file("never.txt", " ".join(f"w{40 + i}" for i in range(12)).encode())
    fw = ctx.path("forget-fw.safetensors")
    if not fw.is_file():
        fw.write_bytes(ctx.fast_weights.read_bytes())
    return [
        "lm",
        "forget",
        "--model",
        str(ctx.model_dir),
        "--threads",
        "1",
        "--text",
        str(text),
        "--fast-weights",
        str(fw),
        *extra,
    ]


def _half_pairs() -> tuple[torch.Tensor, torch.Tensor]:
    """float16 keys of scale 1e-4 and values of scale 100: W (≈ 10⁵) is beyond float16."""
    gen = torch.Generator().manual_seed(0)
    keys = (torch.randn(50, 4, generator=gen, dtype=torch.float64) * 1e-4).half()
    return keys, (torch.randn(50, 2, generator=gen, dtype=torch.float64) * 100).half()


def _fifo(ctx: Ctx) -> Path:
    fifo = ctx.path("fifo")
    if not fifo.exists():
        os.mkfifo(fifo)
    return fifo


SOLVER += [
    Case(
        "GramStats.solve",
        "float16 keys whose fast weights exceed float16's range",
        call(lambda c: _gs(4, 2).add(*_half_pairs()).solve()),
        ValueError,
        r"the fast weights reach .* beyond what torch.float16 holds",
    ),
    Case(
        "GramStats.solve",
        "alpha given beside tau",
        on_stats(lambda s: s.solve(tau=0.1, alpha=0.5)),
        ValueError,
        r"alpha and c shape the power-law cut .*; with tau they would be ignored",
    ),
    Case(
        "GramStats.save",
        "a named pipe as the output",
        call(lambda c: c.stats().save(_fifo(c))),
        ValueError,
        r"fifo is not a regular file \(a device or a pipe\)",
    ),
]
MEMORIES += [
    Case(
        "InverseMemory.add",
        "a first batch with a negative weight",
        call(
            lambda c: _refused_then(
                _inv(), lambda m: m.add(_k(3, 4), _k(3, 2), torch.tensor([1.0, -1.0, 1.0]))
            )
        ),
        behaviour="refused; the memory keeps no dimensions (5-d keys are then accepted)",
        check=lambda m: m.key_dim == 5,
    ),
]
CLI += [
    CliCase(
        "classify: a features CSV with a pandas index column (unnamed first column)",
        lambda c: _classify_fit(c, b",f0,f1,label\n0,1,0,a\n1,0,1,b\n", name="pd.csv"),
        r"pd.csv: the first column has no name in the header, as pandas writes a DataFrame's index",
    ),
    CliCase(
        "classify: a features CSV whose header ends with a separator",
        lambda c: _classify_fit(c, b"f0,f1,label,\n1,0,a,\n0,1,b,\n", name="t.csv"),
        r"t.csv: column 4 has no name in the header",
    ),
    CliCase(
        "classify: a features CSV with a quote left open in a label",
        lambda c: _classify_fit(c, b'f0,label\n1,"a\n2,b\n3,c\n4,d\n', name="q.csv"),
        r"q.csv: row 2: the label 'a\\n2,b\\n3,c\\n4,d' holds a line break: a quote",
    ),
    CliCase(
        "classify: a features CSV whose first line is blank",
        lambda c: _classify_fit(c, b"\nf0,f1,label\n1,0,a\n0,1,b\n", name="b.csv"),
        r"b.csv: the first line is blank; a features CSV's first line names its columns",
    ),
    CliCase(
        "classify: a text label of spaces only",
        lambda c: _classify_fit(c, b"a good film\tpos\nso dull\t  \n"),
        r"texts.tsv: example 2 has an empty label",
    ),
    CliCase(
        "solve: --alpha beside --tau",
        lambda c: [
            "solve",
            str(_pairs_file(c, keys=_k(), values=_k(3, 2))),
            "--out",
            str(c.path("w.safetensors")),
            "--tau",
            "0.5",
            "--alpha",
            "2",
        ],
        r"alpha and c shape the power-law cut .*; with tau they would be ignored",
    ),
    CliCase(
        "solve: a named pipe as --out",
        lambda c: ["solve", str(_pairs_file(c, keys=_k(), values=_k(3, 2))), "--out", str(_fifo(c))],
        r"fifo is not a regular file \(a device or a pipe\)",
    ),
]


def _class_folder_of_gifs(ctx: Ctx) -> list[str]:
    """``faast classify fit`` of an image folder whose class ``cats`` holds only GIFs (not read)."""
    data = ctx.path("gif-photos")
    (data / "cats").mkdir(parents=True, exist_ok=True)
    (data / "dogs").mkdir(exist_ok=True)
    for i in range(4):
        (data / "cats" / f"cat{i}.gif").write_bytes(b"GIF89a")
    (data / "dogs" / "dog.png").write_bytes(b"never decoded: the folder is refused first")
    return ["classify", "fit", str(data), "--model", str(ctx.path("gif-clf")), "--encoder", "pixels"]


def _partial_fit_balanced(ctx: Ctx) -> list[str]:
    """Fit ``--class-weight balanced`` with ``faast classify fit``, then the argv adding to it."""
    from faast.cli import main

    features = ctx.text_file("balanced.csv", b"f0,f1,label\n1,0,a\n0,1,b\n1,1,a\n0,0,b\n")
    model = str(ctx.path("balanced-clf"))
    with contextlib.redirect_stdout(io.StringIO()):  # its summary line
        fitted = main(["classify", "fit", str(features), "--model", model, "--class-weight", "balanced"])
    if fitted != 0:
        raise RuntimeError("fitting the classifier failed")
    return ["classify", "partial-fit", str(features), "--model", model]


def _save_over_write_protected(ctx: Ctx) -> tuple[Action, Snapshot]:
    """Save a classifier into a folder whose ``classifier.json`` was made read-only (``chmod a-w``),
    refused as root too (whom ``os.access`` always answers yes)."""
    from faast.classifier_io import save_classifier

    clf = ctx.classifier()
    folder = _saved_classifier(ctx, "protected")
    (folder / "classifier.json").chmod(0o444)
    return (lambda: save_classifier(clf, folder)), (
        lambda: {p.name: p.read_bytes() for p in sorted(folder.iterdir())}
    )


LOADERS += [
    Case(
        "read_text",
        "UTF-16 text without a byte-order mark",
        call(lambda c: _text(c, "u16.txt", "Once upon a time\n".encode("utf-16-le"))),
        ValueError,
        r"u16.txt: not UTF-8 text: it holds NUL bytes, as UTF-16LE text saved without a byte-order mark "
        r"does .*iconv -f UTF-16LE -t UTF-8",
    ),
    Case(
        "read_examples",
        "UTF-32 examples without a byte-order mark",
        call(lambda c: _examples(c, "u32.tsv", "a good film\tpos\nso dull\tneg\n".encode("utf-32-be"))),
        ValueError,
        r"u32.tsv: not UTF-8 text: it holds NUL bytes, as UTF-32BE text .*iconv -f UTF-32BE -t UTF-8",
    ),
]
CLASSIFIER += [
    Case(
        "FaastClassifier.save",
        "a folder whose classifier.json is write-protected",
        _save_over_write_protected,
        PermissionError,
        r"cannot save a classifier there: classifier.json is write-protected .*so it is not replaced",
    ),
]
CLI += [
    CliCase(
        "classify: a class folder holding only GIFs",
        _class_folder_of_gifs,
        r"class folder\(s\) without images: cats \(4 file\(s\) of other extensions, skipped: cat0.gif, "
        r"cat1.gif, cat2.gif and 1 more\); images are files ending in .jpg, .jpeg, .png",
    ),
    CliCase(
        "classify partial-fit: a classifier fitted with --class-weight balanced",
        _partial_fit_balanced,
        r'partial_fit is not available with class_weight="balanced"',
    ),
]


def _refused_then(mem: Any, refused: Callable[[Any], Any]) -> Any:
    """``mem`` after ``refused`` raised a ValueError, then took a batch of 5-d keys."""
    try:
        refused(mem)
    except ValueError:
        pass
    else:
        raise AssertionError("the batch was accepted")
    return mem.add(_k(3, 5), _k(3, 2))


CASES: list[Case] = SOLVER + MEMORIES + CLASSIFIER + LM + CONFIGS + TASKS + LOADERS  # after the += above


def run_case(case: Case, ctx: Ctx) -> tuple[str, Any]:
    """Run ``case``: ("error", the exception) or ("result", the value returned); check that any
    state it had is unchanged (AssertionError otherwise)."""
    _CTX.append(ctx)
    try:
        action, snapshot = case.build(ctx)
        before = snapshot() if snapshot else None
        try:
            result = action()
        except Exception as exc:
            outcome: tuple[str, Any] = ("error", exc)
        else:
            outcome = ("result", result)
        if snapshot is not None:
            assert same_state(before, snapshot()), f"{case.id}: state changed by a refused input"
        return outcome
    finally:
        _CTX.pop()


def json_line(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)
