"""What a task is and which examples it accepts: the :class:`TaskSpec` saved with a task (prompt
template, pairs, labels, lead demonstrations), the label set found in or checked against the
examples' outputs, and the checks an example list passes before it is learned or scored
(:class:`~faast.lm.task.TaskModel`, :class:`~faast.lm.icl.InContextTask`)."""

from __future__ import annotations

import unicodedata
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from faast._checks import caller_stacklevel
from faast.lm.examples import Example, as_example
from faast.lm.prompts import PromptTemplate

PAIR_MODES = ("answer", "all")
#: Outputs with at most this many distinct values make a classification task (labels) by default.
MAX_LABELS = 20


def auto_labels(examples: Sequence[Example], how: str = "auto") -> list[str] | None:
    """The label set ``labels="auto"`` stands for: the examples' distinct outputs when there are 2 to
    :data:`MAX_LABELS` of them, else None (free-form outputs); ``how="all"``: every distinct
    output however many (an error for fewer than 2)."""
    return labels_of_outputs((e.output for e in examples if e.output is not None), how)


def labels_of_outputs(outputs: Iterable[str], how: str = "auto") -> list[str] | None:
    """:func:`auto_labels` of bare outputs (e.g. the reference answers of a test file): their
    distinct values in order of first appearance when there are 2 to :data:`MAX_LABELS` (``how="all"``:
    from 2 on), else None (:func:`check_label_spaces` refuses two that differ only by the whitespace
    around them, :func:`warn_case_twins` warns of two that differ only in case or in characters
    that look alike)."""
    if label_rule(how) is None:  # another string: label_rule's error; not a string: this one
        raise ValueError(f"labels must be a list of labels, 'auto', 'all' or None, got {how!r}")
    outs = list(dict.fromkeys(outputs))
    if how == "all" and len(outs) < 2:
        raise ValueError(f"labels 'all': the outputs hold {len(outs)} distinct value(s); a label set needs 2")
    if len(outs) < 2 or (how == "auto" and len(outs) > MAX_LABELS):
        return None
    return warn_case_twins(check_label_spaces(outs))


def warn_case_twins(labels: list[str]) -> list[str]:
    """``labels``, with a UserWarning naming the first two that differ only in case (``"Positive"``
    and ``"positive"``) or in characters that look alike or show nothing (:func:`lookalike_key`:
    a composed ``"café"`` and a decomposed one, ``"positive"`` and ``"positive"`` followed by a
    zero-width space, a full-width letter): taken from the outputs they are two labels, so the
    examples of one class are split between them (half its references then count as errors); they
    are not merged, since the case may be meant and the examples are the place to mend the data
    (the labels are compared exactly everywhere else)."""
    seen: dict[str, str] = {}
    for label in labels:
        twin = seen.setdefault(lookalike_key(label).casefold(), label)
        if twin == label:
            continue
        if twin.strip().casefold() == label.strip().casefold():
            message = (
                f"labels {twin!r} and {label!r} differ only in case: the outputs make them two labels "
                "(two classes, each scored and predicted apart); if they are one class, write its "
                "outputs in one case in the examples (or list the labels: --labels a,b,...)"
            )
        else:  # shown as ascii(): the difference is invisible in the text itself
            message = (
                f"labels {twin!a} and {label!a} look the same but differ in their Unicode "
                "characters (a composed or decomposed accent, an invisible format character such as a "
                "zero-width space, or a full-width or half-width form of a letter): the outputs "
                "make them two labels (two classes, each scored and predicted apart, and tokenized "
                "differently); if they are one class, write its outputs alike in the examples "
                "(normalised to NFC, invisible characters removed), or list the labels: --labels a,b,..."
            )
        warnings.warn(message, UserWarning, stacklevel=caller_stacklevel())
        break
    return labels


def lookalike_key(label: str) -> str:
    """``label`` as it reads: in Unicode's composed form (NFC: a decomposed accent composed), its
    full-width and half-width forms as the plain characters (``"ＡＢ"`` as ``"AB"``), without format
    characters (Unicode category Cf: the zero-width space and joiners, the soft hyphen, direction
    marks) and without the whitespace around it; two labels of one key look alike
    (:func:`warn_case_twins`). Other compatibility forms are kept apart, as they read differently
    (``"m²"`` and ``"m2"``, ``"½"`` and ``"1⁄2"``, ``"Ⅳ"`` and ``"IV"``)."""
    text = "".join(
        unicodedata.normalize("NFKC", c)
        if unicodedata.decomposition(c).startswith(("<wide>", "<narrow>"))
        else c
        for c in label
        if unicodedata.category(c) != "Cf"
    )
    return unicodedata.normalize("NFC", text).strip()  # composed after the folding: ｶﾞ as ガ


def label_rule(labels: object) -> str | None:
    """``"auto"`` or ``"all"`` when ``labels`` names one of those rules (labels taken from the
    outputs), None for a list of labels or None; a clear error for another string (which would
    otherwise be read letter by letter)."""
    if not isinstance(labels, str):
        return None
    if labels not in ("auto", "all"):
        raise ValueError(f"labels must be a list of labels, 'auto', 'all' or None, got {labels!r}")
    return labels


def check_label_spaces(labels: list[str]) -> list[str]:
    """``labels``, unless two of them differ only by surrounding whitespace (``"positive"`` and
    ``"positive "``, as a spreadsheet leaves them): they would be two labels of one class, so a
    ValueError names them (labels are compared exactly)."""
    stripped: dict[str, str] = {}
    for label in labels:
        twin = stripped.setdefault(label.strip(), label)
        if twin != label:
            raise ValueError(
                f"labels {twin!r} and {label!r} differ only by surrounding whitespace: strip the "
                "outputs of the examples (or give the labels)"
            )
    return labels


def checked_labels(labels: Sequence[str] | None, default: Sequence[str] | None, hint: str) -> list[str]:
    """``labels``, else ``default``: at least two strings, or a ValueError ending with ``hint`` (how
    to give them); a single string, or a label that is not one, is a ``TypeError``."""
    if isinstance(labels, str):  # list("w5") would be the labels "w" and "5"
        raise TypeError(f"labels must be a list of strings, got one string {labels[:40]!r}")
    chosen = list(labels) if labels is not None else default
    if not chosen or len(chosen) < 2:
        raise ValueError(f"classification needs at least two labels ({hint})")
    bad = [i for i, label in enumerate(chosen) if not isinstance(label, str)]
    if bad:
        raise TypeError(f"labels must be strings; label {bad[0]} is {type(chosen[bad[0]]).__name__}")
    return list(chosen)


def input_texts(inputs: Sequence[str]) -> list[str]:
    """``inputs`` (the texts to classify or answer) as a list of strings; one string (which would be
    read a character at a time) or an item that is not a string is a ``TypeError``."""
    return listed(inputs, str, ("inputs", "input", "strings"), hint=": pass [text]")


def listed(
    items: Sequence[Any], kinds: type | tuple[type, ...], names: tuple[str, str, str], hint: str = ""
) -> list:
    """``items`` as a list whose every item is one of ``kinds``; ``names``: (the argument, one item,
    what the items must be) for the messages. One string, which would be read a character at a
    time, or an item of another kind is a ``TypeError``."""
    argument, one, plural = names
    if isinstance(items, str):
        raise TypeError(f"{argument} must be a list of {plural}, got one string {items[:40]!r}{hint}")
    out = list(items)
    bad = [i for i, item in enumerate(out) if not isinstance(item, kinds)]
    if bad:
        raise TypeError(f"{argument} must be {plural}; {one} {bad[0]} is {type(out[bad[0]]).__name__}")
    return out


@dataclass
class TaskSpec:
    """What a task is besides its statistics (saved with it): the prompt template, which pairs each
    example contributes, the labels (None: free-form outputs) and the lead demonstrations, (input,
    output) pairs written before every prompt (:class:`~faast.lm.prompts.PromptCodec`: the task then
    learns and reads states conditioned on them, in-context learning and fast weights together;
    none by default). ``template`` may be given as the prompt string alone (holding ``{input}``),
    which becomes ``PromptTemplate(template)``."""

    template: PromptTemplate = field(default_factory=PromptTemplate)
    pairs: str = "answer"
    labels: list[str] | None = None
    demonstrations: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if isinstance(self.template, str):  # the prompt alone: the default answer prefix and end
            self.template = PromptTemplate(self.template)
        elif not isinstance(self.template, PromptTemplate):
            raise TypeError(
                f"template must be a PromptTemplate or a prompt string holding {{input}}, "
                f"got {type(self.template).__name__}"
            )
        if self.pairs not in PAIR_MODES:
            raise ValueError(f"pairs must be one of {PAIR_MODES}, got {self.pairs!r}")
        if self.labels is not None:
            labels = [str(x) for x in self.labels]
            if len(labels) < 2 or len(set(labels)) != len(labels) or any(not x.strip() for x in labels):
                raise ValueError(f"labels must be at least two distinct non-empty strings, got {labels!r}")
            check_label_spaces(labels)
            self.labels = labels
        demos = []
        for i, demo in enumerate(self.demonstrations):
            if isinstance(demo, Example):
                demo = (demo.input, demo.output)
            if (
                not isinstance(demo, (tuple, list))
                or len(demo) != 2
                or not all(isinstance(x, str) and x.strip() for x in demo)
            ):
                raise ValueError(
                    f"demonstration {i} must be an (input, output) pair of non-empty strings, got {demo!r}"
                )
            demos.append((demo[0], demo[1]))
        self.demonstrations = demos

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "template": self.template.to_dict(),
            "pairs": self.pairs,
            "labels": self.labels,
        }
        if self.demonstrations:
            out["demonstrations"] = [list(d) for d in self.demonstrations]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskSpec:
        return cls(
            PromptTemplate.from_dict(data["template"]),
            data.get("pairs", "answer"),
            data.get("labels"),
            data.get("demonstrations", []),
        )


def check_outputs_end(examples: Sequence[Example], template: PromptTemplate) -> None:
    """Refuse free-text outputs that hold the template's ``answer_end``: generation stops at its
    first occurrence, so such an output could never be generated whole (it would be cut there),
    while the memory would learn to go on after the end marker."""
    end = template.answer_end
    if not end:
        return
    for i, e in enumerate(examples):
        if e.output is not None and end in e.output:
            cut = e.output[: e.output.index(end)]
            raise ValueError(
                f"example {i} ({e.input[:40]!r}): its output holds the answer end {end!r}, where "
                f"generation stops, so it could never be generated whole (it would end at {cut[:40]!r}); "
                "choose an end marker that no output holds (faast task learn --answer-end, "
                "PromptTemplate(answer_end=...)), e.g. '\\n\\n' or ' </answer>'"
            )


def checked_examples(examples: Sequence[Any], *, outputs: bool) -> list[Example]:
    """``examples`` as a list of :class:`~faast.lm.examples.Example` (each item as
    :func:`~faast.lm.examples.as_example` reads it: an Example, an ``(input, output)`` tuple, a
    dict), or a clear error for none, for an item of another kind, or (``outputs``) for an example
    without an output."""
    pair = isinstance(examples, tuple) and len(examples) == 2 and all(isinstance(x, str) for x in examples)
    if isinstance(examples, (str, bytes, Mapping)) or (outputs and pair):
        raise TypeError(
            f"examples must be a sequence of examples, got one {type(examples).__name__}: pass a list, "
            "e.g. [(input, output)]"
        )
    examples = [as_example(e, i) for i, e in enumerate(examples)]
    if not examples:
        raise ValueError("no examples")
    for i, e in enumerate(examples):
        if outputs and (e.output is None or not e.output.strip()):
            raise ValueError(f"example {i} ({e.input[:40]!r}) has no output")
    return examples
