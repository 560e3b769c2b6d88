"""``faast task``: a frozen causal LM learns a supervised task from a file of examples.

    faast task learn    --model smollm2 --examples train.tsv --out tasks.safetensors --task sentiment \\
                        --template 'Review: {input}\\nSentiment:' [--in-context 4]
    faast task classify --model smollm2 --fast-weights tasks.safetensors --task sentiment \\
                        --inputs new.tsv --out predictions.tsv
    faast task generate --model gemma3 --fast-weights tasks.safetensors --task en-es \\
                        --inputs verses.jsonl --out translations.jsonl
    faast task evaluate --model smollm2 --fast-weights tasks.safetensors --task sentiment \\
                        --examples test.tsv [--predictions predictions.tsv]
    faast task forget   --model smollm2 --fast-weights tasks.safetensors --task sentiment \\
                        --examples wrong.tsv

Examples are TSV (``input<TAB>output``, optional header, ``\\t``/``\\n`` escapes), CSV (a header
row naming the columns) or JSONL (``input`` and ``output`` fields). ``learn`` writes the task into
the same fast-weight files as ``faast lm learn`` (other tasks in the file are kept) together with
its template, labels and the read-out chosen by cross-validation on the examples; with
``--in-context N`` the first N examples are written before every prompt instead (stored with the
task: the other commands read them too) and the memory learns the rest on states conditioned on
them. Without ``--fast-weights``, ``classify``/``generate``/``evaluate`` run the base model
zero-shot with ``--template`` (and ``--labels``). Every way of running a task (zero-shot, in-context,
fast weights, LoRA) prompts the model with the template as written, the input put in as it is: no
chat template (a chat model's markup can be written in ``--template``).

Under ``torchrun`` every command runs unchanged (:mod:`faast.distributed`): ``learn`` shards the
learning and the cross-validation scoring of each fold over the processes (one process's result);
``classify``, ``generate`` and ``evaluate`` give each process its block of the inputs and gather
the results in order. Rank 0 alone prints progress and writes files.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faast.cli.lm_cmd import _init, _load, _model_args, check_same_everywhere, fast_weights_read

if TYPE_CHECKING:
    from faast.distributed import Dist

#: The layer a ``--head`` reads unless ``--head-layer`` says otherwise: faast.lm.label_head's
#: DEFAULT_HEAD_LAYER, written out (importing it loads torch at start-up).
DEFAULT_HEAD_LAYER = "auto"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "task", help="learn a task from (input, output) examples; classify, generate, evaluate"
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    le = actions.add_parser("learn", help="learn a file of examples into named fast weights")
    _model_args(le)
    le.add_argument(
        "--examples", required=True, help="TSV (input<TAB>output), CSV (a header) or JSONL (input/output)"
    )
    _column_args(le)
    le.add_argument("--out", required=True, help="fast-weight file (safetensors; other tasks in it are kept)")
    le.add_argument("--task", default="default", help="name of the task inside --out (default: default)")
    _spec_args(le)
    le.add_argument(
        "--pairs",
        choices=("answer", "all"),
        default="answer",
        help="answer: learn only the transitions into the output (default; won on validation data in "
        "docs/tasks.md); all: every transition of the demonstration, as in the paper",
    )
    le.add_argument(
        "--key-features",
        type=int,
        default=0,
        help="random features appended to the output memory's key (more capacity; default 0)",
    )
    le.add_argument(
        "--mix",
        choices=("prob", "correction"),
        default="prob",
        help="what the output memory learns: prob (the next tokens; read as a mixture, default) or "
        "correction (the loss gradients at the head input; read as a closed-form step on the loss)",
    )
    le.add_argument(
        "--in-context",
        type=int,
        default=0,
        metavar="N",
        help="write the first N examples before every prompt as demonstrations (stored with the task; "
        "classify/generate/evaluate read them too) and learn the others: in-context learning and fast "
        "weights together (default 0)",
    )
    le.add_argument("--folds", type=int, default=5, help="cross-validation folds for the read-out choice")
    le.add_argument(
        "--max-validation", type=int, default=500, help="examples scored in cross-validation (default 500)"
    )
    le.add_argument(
        "--hold-out",
        type=float,
        default=None,
        metavar="SHARE",
        help="share of the examples held out in the cross-validation, each in one fold (1: every "
        "example but a label's only one; copies of an input together; default: the library's, "
        "faast.lm.task.DEFAULT_HOLD_OUT)",
    )
    le.add_argument(
        "--guard",
        default=None,
        help="what keeps the memory off unless the chosen read-out clearly beats it on the held-out "
        "examples: sign-flip, selection, one-se or none (default: the library's, "
        "faast.lm.task.DEFAULT_GUARD; see faast.lm.task_choice.significant_or_off)",
    )
    le.add_argument(
        "--anchor",
        # faast.lm.task_choice.ANCHORS, written out (importing it loads torch at start-up)
        choices=("zero-shot", "best", "tested", "balanced", "balanced-best", "balanced-best-fallback"),
        default=None,
        help="labels, with a calibrated zero-shot candidate: what the guard falls back on and tests "
        "against: the zero-shot model as it is, the better of it and its calibrated twin on the "
        "held-out examples, the calibrated twin only when a sign-flip test prefers it, or when its "
        "predicted labels come in shares closer to the right ones (and, balanced-best, it is also "
        "the better); balanced-best-fallback falls back as balanced-best but tests against the "
        "zero-shot model as it is (default: the library's, faast.lm.task_choice.DEFAULT_ANCHOR)",
    )
    le.add_argument(
        "--calibrated",
        choices=("none", "zero-shot", "all"),  # faast.lm.task_choice.CALIBRATED_SETS (no torch at start-up)
        default=None,
        help="labels only: the contextually calibrated read-outs the choice also weighs: none, the "
        "zero-shot model calibrated, or a calibrated twin of every read-out (default: the library's, "
        "faast.lm.task_choice.DEFAULT_CALIBRATED; free text: none)",
    )
    le.add_argument(
        "--head",
        choices=["squared", "logistic"],
        default=None,
        help="labels only: also fit a closed-form label head on the prompt-end state with this loss "
        "(no backprop); classify and evaluate then use it",
    )
    le.add_argument(
        "--head-layer",
        default=None,
        metavar="LAYER",
        help="with --head: the layer the head reads at the prompt's end: last (what the LM head reads), "
        "auto (decoder blocks at depths 1/2 to 7/8 and the last, chosen by cross-validation on the "
        "examples; one more forward pass over them) or a decoder block's index, 0-based "
        f"(default: {DEFAULT_HEAD_LAYER})",
    )
    le.add_argument(
        "--head-center",
        action="store_true",
        help="with --head: solve the head on the prompt-end states centred on their mean, with a "
        "per-label intercept (a strongly shrunk head then leans towards the label shares, not towards "
        "the label with the most examples)",
    )
    le.add_argument(
        "--group-field",
        default=None,
        metavar="NAME",
        help="a JSONL field or a named TSV/CSV column naming each example's group (the document, "
        "speaker or source it comes from); the cross-validation then holds out whole groups, so the "
        "read-out is chosen for groups not learned (TaskModel.fit groups=)",
    )
    le.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the draw of the examples held out for choosing the read-out; it changes "
        "nothing while every example is held out (the default --hold-out 1 with at most "
        "--max-validation examples)",
    )
    le.add_argument("--batch-size", type=int, default=16)
    le.set_defaults(func=run_learn)

    fo = actions.add_parser(
        "forget", help="forget learned examples: rewrite the task as if they had never been learned"
    )
    _model_args(fo)
    fo.add_argument(
        "--examples", required=True, help="TSV/CSV/JSONL of the examples to forget (with outputs)"
    )
    _column_args(fo)
    fo.add_argument("--fast-weights", required=True, help="file from `faast task learn` (rewritten in place)")
    fo.add_argument("--task", default=None, help="task inside --fast-weights (needed if it holds several)")
    fo.add_argument(
        "--batch-size",
        type=int,
        default=16,
        help="examples per forward pass; while the task holds at most d pairs each is checked bit for "
        "bit against a learned one, so use the batches they were learned in",
    )
    fo.set_defaults(func=run_forget)

    cl = actions.add_parser("classify", help="the most probable label for each input of a file")
    _use_args(cl)
    cl.add_argument(
        "--out",
        required=True,
        help="predictions (.tsv, .csv or .jsonl): input, prediction and each label's score (log_probs, or "
        "head_scores with a label head): an object in JSONL, JSON text in TSV and CSV",
    )
    _calibrate_arg(cl)
    cl.set_defaults(func=run_classify)

    ge = actions.add_parser("generate", help="greedy outputs for each input of a file")
    _use_args(ge)
    ge.add_argument("--out", required=True, help="predictions (.tsv, .csv or .jsonl): input, prediction")
    ge.add_argument("--max-new-tokens", type=int, default=64)
    _no_repeat_arg(ge)
    ge.set_defaults(func=run_generate, calibrate=None)  # free text: nothing to calibrate

    ev = actions.add_parser(
        "evaluate",
        help="accuracy, balanced accuracy, macro-F1, per-label scores and the confusion matrix "
        "(labels) or exact match, BLEU/chrF and NLL (text) on a file of examples with outputs",
    )
    _use_args(ev, inputs=False)
    ev.add_argument("--examples", required=True, help="TSV/CSV/JSONL with the reference outputs")
    ev.add_argument(
        "--predictions",
        default=None,
        help="also write the predictions here (.tsv/.csv/.jsonl): input, prediction, reference (as "
        "written), for labels reference_label (the label it was scored as), then the examples' other "
        "columns (e.g. an id)",
    )
    ev.add_argument("--max-new-tokens", type=int, default=64)
    _no_repeat_arg(ev)
    ev.add_argument("--json", default=None, help="write the scores here as JSON")
    _calibrate_arg(ev)
    ev.set_defaults(func=run_evaluate)


def _column_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--input-column",
        default="input",
        metavar="NAME",
        help="the column (a TSV or CSV header's name, or a JSONL field) holding the inputs, in every "
        "examples file the command reads (default: input)",
    )
    p.add_argument(
        "--output-column",
        default="output",
        metavar="NAME",
        help="the column or field holding the outputs (default: output); an integer JSONL output, "
        "e.g. a class id, is read as its text",
    )


def _columns(args: argparse.Namespace) -> dict[str, str]:
    """``read_examples``' column names from ``--input-column`` / ``--output-column``."""
    return {"input_column": args.input_column, "output_column": args.output_column}


def _no_repeat_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-repeat-ngram",
        type=int,
        default=0,
        help="never repeat an n-gram of the output itself (the prompt's n-grams stay allowed; 0: off)",
    )


def _spec_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--template",
        default=None,
        help="prompt with {input} (\\n, \\t: newline, tab); default 'Input: {input}\\nOutput:'; the "
        "answer follows after a space, so a space that ends it is dropped (with a warning)",
    )
    _answer_end_arg(p, "")
    p.add_argument(
        "--labels",
        default="auto",
        help="comma-separated label set, 'auto' (the distinct outputs if at most 20), 'all' (every "
        "distinct output, however many) or 'none' (free text)",
    )


def _use_args(p: argparse.ArgumentParser, inputs: bool = True) -> None:
    _model_args(p)
    _column_args(p)
    p.add_argument("--fast-weights", default=None, help="file from `faast task learn` (none: zero-shot)")
    p.add_argument("--task", default=None, help="task inside --fast-weights (needed if it holds several)")
    if inputs:
        p.add_argument(
            "--inputs",
            required=True,
            help="TSV/CSV/JSONL of inputs (an output column is ignored; other columns are carried into "
            "--out). In a TSV without a header a tab starts the output column: write a tab inside a text "
            "as \\t (a file whose lines hold a tab and lines that do not is refused) or use CSV/JSONL",
        )
    p.add_argument("--template", default=None, help="zero-shot and in-context only: the prompt with {input}")
    _answer_end_arg(p, "zero-shot and in-context only: ")
    p.add_argument(
        "--labels",
        default=None,
        help="comma-separated labels (default: the task's; with --demonstrations or --lora, 'auto' "
        "from their outputs; zero-shot evaluate, 'auto'); zero-shot 'auto': the distinct reference "
        "outputs of evaluate's --examples (free text beyond 20; refused for one), 'all': however many; "
        "'none': free text",
    )
    p.add_argument(
        "--demonstrations",
        default=None,
        help="in-context learning instead of fast weights: TSV/CSV/JSONL examples put before every input "
        "(whole ones, as many as fit; the baseline FAAST is measured against); labels 'auto' from them",
    )
    p.add_argument(
        "--shots",
        type=int,
        default=None,
        help="with --demonstrations: use only the first K (labels 'auto': still those of all of them)",
    )
    p.add_argument(
        "--lora",
        default=None,
        help="backprop instead of fast weights: train a LoRA adapter (rank 8) on these TSV/CSV/JSONL "
        "examples' answers first, its learning rate chosen on a held-out fifth of them (the gradient "
        "baseline FAAST is measured against; faast.lm.lora_baseline); labels 'auto' from them",
    )
    # None: faast.lm.lora_baseline.LoraRecipe's defaults (read there, so that start-up imports no torch)
    p.add_argument("--lora-epochs", type=int, default=None, help="with --lora: passes over its examples (3)")
    p.add_argument(
        "--lora-lrs",
        default=None,
        help="with --lora: the learning rates it chooses among, comma-separated, tried from the smallest up "
        "until the held-out NLL rises (1e-4,3e-4,1e-3,3e-3,1e-2)",
    )
    p.add_argument(
        "--lora-seed",
        type=int,
        default=None,
        help="with --lora: seed of the held-out fifth, the batch order and the adapter's initial weights (0)",
    )
    p.add_argument("--batch-size", type=int, default=16)


def _calibrate_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--calibrate",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="contextual calibration of the label scores (Zhao et al. 2021: divide out the labels' "
        "probabilities after content-free inputs), zero-shot, in-context or with fast weights "
        "(default: as the task's read-out chosen by `faast task learn`; not calibrated without one)",
    )


def _answer_end_arg(p: argparse.ArgumentParser, scope: str) -> None:
    p.add_argument(
        "--answer-end",
        default=None,
        help=f"{scope}what ends every answer, where generation stops (\\n, \\t: newline, tab; "
        "default \\n); free-text outputs must not hold it: e.g. '\\n\\n' or ' </answer>' for "
        "outputs of several lines",
    )


def _template(args: argparse.Namespace):
    """The prompt template of ``--template`` and ``--answer-end`` (escapes \\n, \\t read)."""
    from faast.lm.prompts import PromptTemplate

    def unescaped(text: str) -> str:
        return text.replace("\\n", "\n").replace("\\t", "\t")

    given = {}
    if args.template is not None:
        given["template"] = unescaped(args.template)
    if args.answer_end is not None:
        given["answer_end"] = unescaped(args.answer_end)
    return PromptTemplate(**given)


def _labels(text: str | None) -> list[str] | str | None:
    """``--labels``: a list, the rules ``"auto"`` / ``"all"``, or None (``none``: free text)."""
    if text is None or text in ("auto", "all"):
        return text
    if text.lower() == "none":
        return None
    labels = [x.strip() for x in text.split(",")]
    if any(not x for x in labels):
        raise ValueError(f"--labels: empty label in {text!r}")
    return labels


def _example_groups(examples: list[Any], field: str | None, path: str) -> list[str] | None:
    """Each example's ``field`` (a JSONL field or a named TSV/CSV column, kept in
    ``Example.extra``) as its group, or None without ``--group-field``; a clear error for a file
    without other fields or an example without a usable value."""
    if field is None:
        return None
    if not any(e.extra for e in examples):
        raise ValueError(
            f"--group-field {field!r}: {path} has no fields besides the input and output (a JSONL field, "
            "or a TSV/CSV column named in the file's header row)"
        )
    groups = []
    for i, e in enumerate(examples):
        value = e.extra.get(field)
        if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
            raise ValueError(
                f"{path}: example {i + 1} ({e.input[:40]!r}) has no --group-field {field!r} "
                f"(a non-empty string or an integer), got {value!r}"
            )
        groups.append(str(value))
    return groups


def _head_layer(args: argparse.Namespace) -> int | str | None:
    """``--head-layer`` as ``TaskModel.fit_head`` takes it (None: the head input; "auto"; a block
    index); a clear error for another value, or for it or ``--head-center`` without ``--head``."""
    if args.head_layer is not None and args.head is None:
        raise ValueError("--head-layer needs --head")
    if args.head_center and args.head is None:
        raise ValueError("--head-center needs --head")
    value = DEFAULT_HEAD_LAYER if args.head_layer is None else args.head_layer.strip()
    if value in ("last", "auto"):
        return None if value == "last" else value
    if value.isdigit():
        return int(value)
    raise ValueError(f"--head-layer must be last, auto or a decoder block's index (0, 1, ...), got {value!r}")


def run_learn(args: argparse.Namespace) -> int:
    import time

    from faast.lm.config import ReadConfig
    from faast.lm.examples import read_examples
    from faast.lm.fastweights import check_output_file
    from faast.lm.task import TaskModel, TaskSpec
    from faast.lm.task_choice import default_candidates
    from faast.lm.task_spec import MAX_LABELS

    head_layer = _head_layer(args)  # before any model is loaded
    dist = _init(args)
    if dist.is_main:  # rank 0 writes: a bad --out fails now, not after the learning
        check_output_file(args.out, args.task, warn_replace=False)  # warned once the settings pass
    examples = read_examples(args.examples, **_columns(args))
    lead, examples = _lead_demonstrations(examples, args.in_context, args.examples)
    groups = _example_groups(examples, args.group_field, args.examples)
    _same_examples(dist, args, "examples", [*lead, *examples])  # under torchrun: read alike everywhere
    _check_fit_settings(args, examples, lead, head_layer)  # before the model loads
    fm, tok = _load(args, {"output_key_features": args.key_features, "output_mix": args.mix}, ReadConfig())
    _check_head_layer(head_layer, fm._layout.num_layers)  # now, not after learning
    if dist.is_main:
        check_output_file(args.out, args.task)  # warns when the task will be replaced
    task = TaskModel(fm, tok, TaskSpec(_template(args), args.pairs, demonstrations=lead))
    if lead:  # the demonstrations fit the context (checked above): now the outputs
        _check_one_output(args, examples, lead)
    if dist.is_main:
        where = f" on {dist.world_size} processes" if dist.active else ""
        shown = f", after {len(lead)} in-context demonstrations" if lead else ""
        print(
            f"[faast] learning {len(examples)} examples of {args.examples} "
            f"({args.pairs} pairs{shown}){where}: {fm}",
            flush=True,
        )
    start = time.perf_counter()
    report = task.fit(
        examples,
        labels=_labels(args.labels),
        folds=args.folds,
        max_validation=args.max_validation,
        **({} if args.guard is None else {"guard": args.guard}),
        **({} if args.anchor is None else {"anchor": args.anchor}),
        **({} if args.hold_out is None else {"hold_out": args.hold_out}),
        **(
            {}
            if args.calibrated is None
            else {"candidates": default_candidates(fm.faast_config.output_mix, args.calibrated)}
        ),
        seed=args.seed,
        batch_size=args.batch_size,
        progress=dist.is_main,
        distributed=dist.active,
        groups=groups,
    )
    if args.head is not None:
        task.fit_head(
            examples,
            loss=args.head,
            batch_size=args.batch_size,
            layer=head_layer,
            groups=groups,
            center=args.head_center,
            progress=dist.is_main,
        )
    seconds = time.perf_counter() - start
    if dist.is_main:
        task.save(args.out, args.task)
    dist.barrier()  # the file is written before any process can look for it
    if not dist.is_main:
        return 0
    kind = f"{len(task.spec.labels)} labels" if task.spec.labels else "free-form outputs"
    distinct = len({e.output for e in examples})
    if args.labels == "auto" and not task.spec.labels and distinct > MAX_LABELS:
        kind += (
            f" ({distinct} distinct outputs, more than the {MAX_LABELS} that 'auto' reads as labels; "
            "--labels all classifies among them)"
        )
    if task.head is not None:
        where = "the head input" if task.head.layer is None else f"block {task.head.layer}"
        kind += f", {task.head.loss} {'centred ' if task.head.bias is not None else ''}label head on {where}"
    print(
        f"[faast] {report.pairs} pairs in {seconds:.1f} s; {kind}; read-out {report.chosen.name} "
        f"({report.metric}); wrote task {args.task!r} to {args.out}"
    )
    return 0


def _check_fit_settings(
    args: argparse.Namespace, examples: list[Any], lead: list[tuple[str, str]], head_layer: int | str | None
) -> None:
    """Refuse, before the model loads, the ``task learn`` settings that need no model: batch size,
    key features, folds, hold-out and validation cap, guard and anchor, a label set that misses an
    output of the examples (or a malformed template or label set), ``--labels auto`` on examples of
    a single output (it would learn them as free text, silently), ``--calibrated`` or ``--head``
    without labels, a ``--head`` label that no learned example shows (e.g. only an ``--in-context``
    demonstration: the head, fitted after the whole cross-validation, could not score it), and a
    ``--head-layer`` past the decoder blocks of a model folder's ``config.json``. These failed only
    after the model was loaded, some after the whole cross-validation. Warns when the ``--in-context``
    lead demonstrations leave out labels (:func:`_warn_missing_labels`)."""
    from faast._checks import integer_at_least
    from faast.lm.task import DEFAULT_HOLD_OUT, fit_labels
    from faast.lm.task_choice import checked_anchor, checked_guard, default_candidates
    from faast.lm.task_folds import check_validation
    from faast.lm.task_spec import TaskSpec

    integer_at_least(args.batch_size, "--batch-size", 1)
    integer_at_least(args.key_features, "--key-features", 0)
    integer_at_least(args.folds, "--folds", 1)
    integer_at_least(args.max_validation, "--max-validation", 0)
    check_validation(
        args.folds, args.max_validation, DEFAULT_HOLD_OUT if args.hold_out is None else args.hold_out
    )
    if args.guard is not None:
        checked_guard(args.guard)
    if args.anchor is not None:
        checked_anchor(args.anchor)
    if not lead:  # with --in-context, once the model has checked that the demonstrations fit
        _check_one_output(args, examples, lead)
    with warnings.catch_warnings():  # fit_labels warns again in TaskModel.fit: said once, there
        warnings.simplefilter("ignore")
        labels = fit_labels(examples, _labels(args.labels), lead)
    TaskSpec(_template(args), args.pairs, labels, lead)  # the template and label set, checked
    _warn_missing_labels(
        labels,
        lead,
        [e.output for e in examples],
        f"the {len(lead)} --in-context lead demonstrations",
        args.examples,
        "raise --in-context",
    )
    if args.calibrated is not None and labels is None:
        calibrated = [c.name for c in default_candidates(args.mix, args.calibrated) if c.calibrate]
        if calibrated:  # as TaskModel.fit says it, after the model would have loaded
            raise ValueError(
                f"--calibrated {args.calibrated}: calibrated read-outs ({calibrated[0]}, ...) need labels; "
                "these outputs are free text"
            )
    if args.head is not None:
        if labels is None:
            raise ValueError("--head needs labels (a classification task); these outputs are free-form")
        learned = {e.output for e in examples}
        missing = [label for label in labels if label not in learned]
        if missing:
            shown = {out for _, out in lead}
            where = (
                "only the --in-context demonstrations show them"
                if all(label in shown for label in missing)
                else "no example learned shows them"
            )
            raise ValueError(
                f"--head: the labels {missing[:5]} have no example to fit the label head on ({where}), so "
                "it could not score them: give them examples to learn, or leave out --head"
            )
    blocks = _config_blocks(args.model)
    if blocks is not None:
        _check_head_layer(head_layer, blocks)


def _check_one_output(args: argparse.Namespace, examples: list[Any], lead: list[tuple[str, str]]) -> None:
    """Refuse ``--labels auto`` when every output (of the examples and the lead demonstrations) is
    the same one: there is no label set, and the examples would be learned as free text silently
    (zero-shot ``evaluate`` refuses such references alike)."""
    outputs = list(dict.fromkeys([*(e.output for e in examples), *(out for _, out in lead)]))
    if args.labels == "auto" and len(outputs) == 1:
        raise ValueError(
            f"--labels auto: every output of {args.examples} is {outputs[0]!r}, one label, so there is no "
            f"label set to take from them; list the labels (--labels {shlex.quote(outputs[0] + ',...')}) or "
            "learn the outputs as free text (--labels none)"
        )


def _config_blocks(model: str) -> int | None:
    """The decoder blocks of a local model folder, read from its ``config.json`` without loading the
    model (None for another model: an offline name, a ``.gguf`` file or a Hub id, checked once loaded)."""
    from faast.lm.text import OFFLINE_MODELS

    if model.lower() in OFFLINE_MODELS:  # loaded by name, whatever folder of that name lies here
        return None
    path = Path(model).expanduser() / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict):
        return None
    text = config.get("text_config")
    for where in (config, text if isinstance(text, dict) else {}):
        blocks = where.get("num_hidden_layers")
        if isinstance(blocks, int) and not isinstance(blocks, bool) and blocks > 0:
            return blocks
    return None


def _check_head_layer(head_layer: int | str | None, blocks: int) -> None:
    """A clear error for a ``--head-layer`` index past the model's ``blocks`` decoder blocks."""
    if isinstance(head_layer, int) and head_layer >= blocks:
        raise ValueError(
            f"--head-layer {head_layer}: the model has {blocks} decoder blocks (0 to {blocks - 1})"
        )


def _lead_demonstrations(examples: list, count: int, source: str) -> tuple[list[tuple[str, str]], list]:
    """(the first ``count`` examples as (input, output) demonstrations, the examples left to learn);
    a clear error when ``count`` is negative or leaves nothing to learn."""
    if count < 0:
        raise ValueError(f"--in-context must be >= 0, got {count}")
    if count >= len(examples):
        raise ValueError(
            f"--in-context {count} leaves none of the {len(examples)} examples of {source} to learn; "
            "pass fewer demonstrations or more examples"
        )
    lead = [(e.input, e.output) for e in examples[:count]]
    return lead, examples[count:]


def run_forget(args: argparse.Namespace) -> int:
    """Forget examples learned by ``faast task learn`` and rewrite the task in place, atomically: its
    fast weights then equal those of a task that learned only the other examples (the read-out
    chosen at learning time is kept, and the examples' names are recorded beside its report). The
    file is left unchanged when an example was never learned, when nothing would remain, or when
    the task has a label head (fitted on these examples too: learn the task again)."""
    from faast.io import check_writable
    from faast.lm.examples import read_examples
    from faast.lm.fastweights import read_task_and_digest
    from faast.lm.task_record import INFO_KEY as LEARNED_KEY

    dist = _init(args)
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    examples = read_examples(args.examples, **_columns(args))
    # the task as read, and its digest: another command's save is not lost
    name, tensors, signature, loaded = read_task_and_digest(args.fast_weights, args.task)
    del tensors
    # under torchrun every process forgets the same examples from the same task (rank 0 writes it)
    _same_examples(dist, args, "examples", examples, {"--fast-weights": (args.fast_weights, loaded[:16])})
    if dist.is_main:  # rank 0 alone writes: another node's copy may be read-only (as `lm forget`)
        check_writable(args.fast_weights)
    args.task, args.template, args.answer_end, args.labels = name, None, None, None
    task = _task_model(args, signature)
    if task.head is not None:
        raise ValueError(
            f"task {name!r} in {args.fast_weights} has a label head fitted on the examples too; forgetting "
            "would leave it describing them: learn the task again without these examples"
        )
    if task.learned is None:
        warnings.warn(
            f"task {name!r} in {args.fast_weights} was saved without a record of the examples it learned "
            "(before 2026-12-06): beyond d pairs an example never learned cannot be told from a learned "
            "one and would be subtracted all the same; learn the task again to get the record",
            UserWarning,
            stacklevel=1,
        )
    pairs = task.forget(examples, batch_size=args.batch_size, progress=dist.is_main)
    if task.model.num_pairs == 0:
        raise ValueError(
            f"forgetting {args.examples} leaves task {name!r} empty: nothing was written (it held only "
            "these examples)"
        )
    info = dict(signature.get("info") or {})
    if task.learned is not None:  # what the task holds now, for the next forget
        info[LEARNED_KEY] = task.learned.to_json()
    entry = {"examples": Path(args.examples).name, "count": len(examples), "pairs": pairs}
    info["forgotten"] = [*info.get("forgotten", []), entry]
    dist.barrier()  # every process has read the file (loading the task) before rank 0 rewrites it
    if dist.is_main:
        task.model.save_fast_weights(args.fast_weights, task=name, info=info, expect=loaded)
    dist.barrier()  # the file is written before any process can look for it
    if dist.is_main:
        print(
            f"[faast] forgot {len(examples)} examples ({pairs} pairs) of {args.examples} from task "
            f"{name!r} in {args.fast_weights}; {task.model.num_pairs} pairs remain"
        )
    return 0


def _check_result_paths(args: argparse.Namespace, *options: str) -> None:
    """Refuse, before any model runs, result paths that could not be written afterwards: an
    unknown extension of a predictions file, a folder, a file in the way of its folder, a file
    the command reads (its inputs, examples, fast weights or demonstrations), or two result options
    naming one file (the one written last would replace the other: ``evaluate --predictions
    p.json --json p.json`` lost the predictions)."""
    from faast.io import check_writable
    from faast.lm.examples import file_format

    named: dict[Path, str] = {}
    for option in options:
        path = getattr(args, option, None)
        if path is None:
            continue
        flag = "--" + option.replace("_", "-")
        resolved = Path(path).expanduser().resolve()
        if resolved in named:
            raise ValueError(
                f"{named[resolved]} and {flag} both name {path}: the one written last would replace "
                "the other; give each its own file"
            )
        named[resolved] = flag
    if not _dist().is_main:
        return
    for option in options:
        path = getattr(args, option, None)
        if path is None:
            continue
        if option != "json":
            file_format(path)
        reads = ("inputs", "examples", "fast_weights", "demonstrations")
        check_writable(path, inputs=[getattr(args, name, None) for name in reads])


def _dist() -> Dist:
    from faast import distributed

    return distributed.current()


def _same_examples(
    dist: Dist,
    args: argparse.Namespace,
    option: str,
    examples: list[Any],
    more: dict[str, tuple[Any, str]] | None = None,
) -> None:
    """Under ``torchrun``, refuse on every process examples (or inputs) read from ``--option`` that
    differ between the processes, and options that differ (:func:`~faast.cli.lm_cmd.check_same_everywhere`):
    each process reads the file itself, and would learn or score its share of another file."""
    if not dist.active:
        return
    from faast.distributed import digest

    held = digest([[e.input, e.output, e.extra] for e in examples])
    check_same_everywhere(dist, args, {f"--{option}": (getattr(args, option), held), **(more or {})})


def _read_beside(dist: Dist, args: argparse.Namespace) -> dict[str, tuple[Any, str]]:
    """Under ``torchrun``, what ``classify``/``generate``/``evaluate`` read beside their inputs or
    examples, for :func:`_same_examples` to compare across the processes (each reads them itself,
    and scores its share of the inputs with them): the task of ``--fast-weights`` (its
    :func:`~faast.lm.fastweights.task_digest` as read: another task in the file does not count)
    and the examples of ``--demonstrations`` and ``--lora`` (a digest of each as read with the
    column options), each path → digest. Nothing with a single process."""
    if not dist.active:
        return {}
    from faast.distributed import digest
    from faast.lm.examples import read_examples

    read = fast_weights_read(args)
    for option in ("demonstrations", "lora"):
        path = getattr(args, option, None)
        if path:
            held = read_examples(path, **_columns(args))
            read[f"--{option}"] = (path, digest([[e.input, e.output, e.extra] for e in held]))
    return read


def _load_compared(args: argparse.Namespace, layout: dict[str, Any], read: Any) -> tuple[Any, Any]:
    """The model and tokenizer (:func:`~faast.cli.lm_cmd._load`), compared under ``torchrun``, as
    soon as they are loaded, with every process's: the :func:`~faast.distributed.model_fingerprint`
    of the model (the base model and any trained read-out) and of its tokenizer, before fast weights
    load into it (fast weights learned on another model would fail on that process alone, its peers
    seeing only a closed connection) and before any input is scored. Another snapshot under the same
    name, or a copy that differs on one node, is an :class:`~faast.distributed.InputsDifferError` on
    every process."""
    fm, tok = _load(args, layout, read)
    dist = _dist()
    if dist.active:
        from faast.distributed import model_fingerprint

        held = model_fingerprint(fm, tok)
        dist.check_same({"--model": held}, {"--model": f"{args.model} (fingerprint {held})"})
    return fm, tok


def _task_model(
    args: argparse.Namespace, signature: dict[str, Any] | None = None, answers: list[str] | None = None
):
    """The task model of ``--fast-weights``/``--task`` (zero-shot without them); ``signature``: the
    task's, when the caller has read it already; ``answers``: the reference outputs of the inputs
    (``evaluate``), from which a zero-shot ``--labels auto`` takes its labels."""
    from faast.lm.config import ReadConfig
    from faast.lm.fastweights import read_task
    from faast.lm.task import TaskModel
    from faast.lm.task_spec import TaskSpec, labels_of_outputs

    labels = _labels(args.labels)
    if args.labels is None and not args.fast_weights and answers:
        # zero-shot evaluate: as with --demonstrations and --lora, the labels 'auto' of the
        # outputs (2 to 20 distinct: scored as labels; more: free text), so that zero-shot is
        # measured like the learned task it is compared with; outputs that differ only in the
        # whitespace around them name one label, as evaluate scores references (a single one is
        # refused below, as --labels auto given is: a one-class slice of a test set would
        # otherwise be scored as free text, silently)
        answers = [a.strip() for a in answers]
        labels = "auto"
    if args.fast_weights and args.labels is not None and not isinstance(labels, list):
        raise ValueError(
            f"--labels {args.labels}: a learned task keeps the labels (or free text) it was learned "
            "with; with --fast-weights, --labels can only list labels to score (a,b)"
        )
    if labels in ("auto", "all") and not args.fast_weights:  # zero-shot: the labels of the references
        if not answers:
            raise ValueError(
                f"--labels {labels}: without --fast-weights there are no outputs to take the labels "
                "from; list them (--labels a,b)"
            )
        if len(set(answers)) == 1:
            rule = (
                f"--labels {labels}"
                if args.labels is not None
                else "zero-shot evaluate takes its labels from the reference outputs (--labels auto, the "
                "default)"
            )
            raise ValueError(
                f"{rule}: every output is {answers[0]!r}, one label, so there is no label set to take "
                "from them; score the outputs as free text (--labels none) or, if they are labels, list "
                "them all (--labels a,b with the task's labels)"
            )
        labels = labels_of_outputs(answers, str(labels))  # None: free-form outputs
    if args.fast_weights:
        for option, value in (("--template", args.template), ("--answer-end", args.answer_end)):
            if value is not None:
                raise ValueError(f"{option} is stored with the task; it applies only without --fast-weights")
        if signature is None:
            _, _, signature = read_task(args.fast_weights, args.task)  # layout and task spec
        info = (signature.get("info") or {}).get("task")
        if info is None or "config" not in signature:
            raise ValueError(
                f"{args.fast_weights}: task {args.task!r} was not written by `faast task learn` "
                "(no prompt template); use `faast lm generate` for text learned with `faast lm learn`"
            )
        fm, tok = _load_compared(args, dict(signature["config"]), ReadConfig())
        task = TaskModel.on_saved(fm, tok, args.fast_weights, args.task, signature["info"])
    else:
        fm, tok = _load_compared(args, {}, ReadConfig())
        task = TaskModel(fm, tok, TaskSpec(_template(args)))
    if isinstance(labels, list):
        task.spec.labels = labels
    return task


def _chosen_task(args: argparse.Namespace, queries: list[str], answers: list[str]):
    """In-context learning with ``--demonstrations``, else the task of ``--fast-weights`` (zero-shot
    without either)."""
    if args.shots is not None and args.shots < 0:
        raise ValueError(f"--shots must be >= 0, got {args.shots}")
    if args.shots is not None and not args.demonstrations:
        raise ValueError("--shots needs --demonstrations (the examples to take them from)")
    for option in ("lora_epochs", "lora_lrs", "lora_seed"):
        if getattr(args, option) is not None and not args.lora:
            raise ValueError(
                f"--{option.replace('_', '-')} needs --lora (the examples to train the adapter on)"
            )
    if args.lora:
        task = _lora_task(args)
    elif args.demonstrations:
        task = _in_context_task(args, queries, answers)
    else:
        task = _task_model(args, answers=answers)
        zero_shot_auto = not args.fast_weights and args.labels in (None, "auto", "all")
        if zero_shot_auto and task.spec.labels and _dist().is_main:  # one note under torchrun
            print(
                f"[faast] note: zero-shot --labels {args.labels or 'auto'} takes its "
                f"{len(task.spec.labels)} labels from the outputs of the examples scored; a learned "
                "task, --demonstrations and --lora take theirs from their own examples, so to compare "
                "them list the training labels (--labels a,b,...)",
                file=sys.stderr,
            )
    if args.calibrate:
        if not task.spec.labels:
            raise ValueError(
                "--calibrate needs labels (a classification task): pass --labels, or a task or "
                "demonstrations whose outputs are labels; these outputs are free text"
            )
        if task.head_applies(task.spec.labels):
            raise ValueError(
                "--calibrate calibrates the LM's label log-probabilities; this task classifies with its "
                "label head (learn it again without --head)"
            )
    return task


def _lora_task(args: argparse.Namespace):
    """The zero-shot task of ``--template`` on a base model that first learns ``--lora``'s examples
    by backprop (a LoRA adapter, :func:`faast.lm.lora_baseline.fit_lora`, left in the model for
    the command); labels 'auto' are the distinct outputs of those examples."""
    from faast.lm.examples import read_examples
    from faast.lm.lora_baseline import fit_lora, recipe_from_options

    for option, value in (("--fast-weights", args.fast_weights), ("--demonstrations", args.demonstrations)):
        if value:
            raise ValueError(f"--lora trains an adapter on the base model by backprop; drop {option}")
    if _dist().world_size > 1:
        raise ValueError("--lora trains in one process; run the command without torchrun")
    recipe = recipe_from_options(args.lora_epochs, args.lora_lrs, args.batch_size, args.lora_seed)
    examples = read_examples(args.lora, **_columns(args))
    if args.labels is None:  # as with --demonstrations: the labels of the examples learned
        args = argparse.Namespace(**{**vars(args), "labels": "auto"})
    task = _task_model(args, answers=[e.output for e in examples])
    fm = task.model
    with fm.disabled():
        _, fit = fit_lora(fm.base_model, task.codec, examples, recipe)
    print(
        f"[faast] LoRA (backprop) on {len(examples)} examples of {args.lora}: learning rate "
        f"{fit.learning_rate:g} chosen on a held-out fifth (answer NLL {fit.held_out_summary()}); "
        f"{recipe.epochs} epochs, "
        f"{fit.parameters} trained parameters, {fit.seconds:.1f} s",
        file=sys.stderr,
    )
    return task


def _in_context_task(args: argparse.Namespace, queries: list[str], answers: list[str]):
    """The base model reading ``--demonstrations`` before every input (``--shots`` first ones), with
    room after them for the longest of ``queries`` and its answer (``answers``, the labels and
    ``--max-new-tokens``); a clear error naming the query when it does not fit the context with
    that answer even alone, and a warning when the demonstrations used leave out labels."""
    from faast.lm.calibration import CONTENT_FREE_INPUTS
    from faast.lm.config import ReadConfig
    from faast.lm.examples import distinct_outputs, read_examples
    from faast.lm.icl import InContextTask
    from faast.lm.inject import context_window
    from faast.lm.prompts import PromptCodec
    from faast.lm.task_spec import MAX_LABELS

    if args.fast_weights:
        raise ValueError("--demonstrations runs in-context learning on the base model; drop --fast-weights")
    demos = read_examples(args.demonstrations, **_columns(args))
    labels = _labels(args.labels) if args.labels is not None else "auto"
    fm, tok = _load_compared(args, {}, ReadConfig())
    context = context_window(fm.base_model)
    codec = PromptCodec(tok, _template(args), context)
    everyone = distinct_outputs(demos)
    candidates = (
        labels if isinstance(labels, list) else everyone if labels == "all" else everyone[:MAX_LABELS]
    )
    scored = list(queries) + (list(CONTENT_FREE_INPUTS) if args.calibrate else [])
    lengths = [len(codec.prompt_ids(x, start=False)) for x in scored]
    longest = max(lengths, default=0)
    new_tokens = getattr(args, "max_new_tokens", 0)
    answer = max(
        [new_tokens]
        + [len(codec.answer_ids(a)) for a in answers]
        + [len(codec.answer_ids(c)) for c in candidates]  # a label is scored with its end at most
    )
    alone = len(codec.start_ids) + longest + answer  # the query with no demonstration before it
    if alone > codec.context:
        text = scored[lengths.index(longest)]
        longer = " (or lower --max-new-tokens)" if answer == new_tokens else ""
        raise ValueError(
            f"the prompt of {text[:40]!r} with its answer ({answer} tokens at most) is {alone} tokens, "
            f"more than the model's context of {codec.context}, even before any demonstration; "
            f"shorten the input or the template{longer}"
        )
    # a few tokens spare (a query after a demonstration may encode a token longer), unless that
    # leaves none: then no demonstration fits and the query runs alone, as it fits
    reserve = min(longest + answer + 4, codec.context - max(1, len(codec.start_ids)))
    task = InContextTask(fm.base_model, codec, demos, reserve=reserve, labels=labels, shots=args.shots)
    if _dist().is_main:
        print(
            f"[faast] in-context learning: {task.num_used} of {task.num_asked} demonstrations fit "
            f"({len(task.icl.prefix)} tokens) in the context of {codec.context}",
            file=sys.stderr,
        )
    shown = [(e.input, e.output) for e in demos[: task.num_asked][: task.num_used]]
    _warn_missing_labels(
        task.spec.labels,
        shown,
        [e.output for e in demos],
        f"the {len(shown)} in-context demonstrations",
        args.demonstrations,
        "pass more --shots" if task.num_used == task.num_asked else "use shorter ones, so that more fit",
    )
    return task


def _warn_missing_labels(
    labels: list[str] | None,
    shown: list[tuple[str, str]],
    offered: list[str],
    what: str,
    source: str,
    more: str,
) -> None:
    """Warn when the demonstrations ``shown`` before every prompt (``what``: which they are, the
    first ones of ``source``, whose outputs are ``offered``) leave out some of the task's ``labels``,
    e.g. the first examples of a file sorted by label: the model then sees no example of those
    labels and leans towards the ones shown (most towards the last), so the in-context baseline is
    handicapped. The advice: shuffle the file, or ``more`` (the option that shows more of them),
    where the file shows the labels further on; else give examples of them. Nothing for free
    text or when no demonstration is shown."""
    if not labels or not shown:
        return
    outputs = {output.strip() for _, output in shown}  # as evaluate reads a reference
    missing = [label for label in labels if label.strip() not in outputs]
    if not missing:
        return
    names = f"{', '.join(map(repr, missing[:5]))}{', ...' if len(missing) > 5 else ''}"
    later = {output.strip() for output in offered}
    if all(label.strip() in later for label in missing):
        advice = (
            f"later examples of {source} show {'them' if len(missing) > 1 else 'it'} (is the file sorted "
            f"by label?): shuffle the file's examples or {more}"
        )
    else:
        some = "some of them" if len(missing) > 1 else "it"
        advice = f"{source} has no example of {some}: give demonstrations of every label"
    warnings.warn(
        f"{what} show {len(labels) - len(missing)} of the task's {len(labels)} labels, not {names}, so the "
        f"model sees no example of {'those' if len(missing) > 1 else 'that one'} and leans towards the "
        f"others; {advice}",
        UserWarning,
        stacklevel=2,
    )


def _calibrated(task, calibrate: bool | None) -> bool:
    """Whether ``task``'s label scores are calibrated under ``--calibrate`` (None: as its read-out
    says); False for free text and for a task that classifies with its label head."""
    labels = task.spec.labels
    if not labels or task.head_applies(labels):
        return False
    return task.calibrated if calibrate is None else calibrate


def _write_predictions(
    path: str,
    rows: list[dict[str, Any]],
    columns: list[str],
    examples: list[Any] | None = None,
    source: str = "",
) -> None:
    """Write the predictions ``rows`` (``columns`` in order), then the other columns (JSONL fields)
    of the ``examples`` they were made for, e.g. an ``id``, so that they can be joined back; one
    named as a column of the predictions is left out, with a warning."""
    from faast.lm.examples import file_format, write_rows

    if not _dist().is_main:
        return
    extra = list(dict.fromkeys(name for e in examples or [] for name in e.extra))
    clash = [name for name in extra if name in columns]
    if clash:
        warnings.warn(
            f"the column {clash[0]!r} of {source} is not carried into {path}, which has a column of that "
            "name; rename it to keep it",
            UserWarning,
            stacklevel=2,
        )
    extra = [name for name in extra if name not in columns]
    if extra:
        cells = file_format(path) != "jsonl"  # a TSV/CSV cell holds text: other values as JSON text
        rows = [
            {**row, **{name: _extra_cell(e.extra[name], cells) for name in extra if name in e.extra}}
            for row, e in zip(rows, examples or [], strict=True)
        ]
    out = write_rows(path, rows, [*columns, *extra])
    print(f"[faast] wrote {len(rows)} predictions to {out}", file=sys.stderr)


def _extra_cell(value: Any, cell: bool) -> Any:
    """A carried column's value: as read, or (``cell``: a TSV/CSV cell) text, a JSONL value that is
    not a string written as JSON text."""
    if not cell or isinstance(value, str):
        return value
    from faast.lm.examples import finite_json

    return json.dumps(finite_json(value), ensure_ascii=False, allow_nan=False)


def _classify(
    task, inputs: list[str], batch_size: int, calibrate: bool | None = None
) -> tuple[list[str], list[list[float]]]:
    """(best label, score of every label) per input: the log-probability of each label, or the
    label head's scores when the task has one; under ``torchrun`` each process scores its block
    of the inputs and the (n, L) float64 scores are gathered in order."""
    import torch

    dist = _dist()
    labels = task._labels(None)
    mine = list(dist.shard(inputs))
    scores = torch.zeros(0, len(labels), dtype=torch.float64)
    if mine and task.head_applies(labels):
        scores = task.head_scores(mine, labels=labels, batch_size=batch_size, progress=dist.is_main)
    elif mine:
        scores = task.label_scores(
            mine, labels, batch_size=batch_size, progress=dist.is_main, calibrate=calibrate
        ).cpu()
    scores = dist.gather_rows(scores, len(inputs))
    best = scores.argmax(dim=1).tolist()
    return [labels[i] for i in best], scores.tolist()


def _generate(task, inputs: list[str], args: argparse.Namespace) -> list[str]:
    """Greedy outputs; under ``torchrun`` each process generates for its block, gathered in order."""
    dist = _dist()
    mine = list(dist.shard(inputs))
    outs = (
        task.generate(
            mine,
            max_new_tokens=args.max_new_tokens,
            batch_size=args.batch_size,
            progress=dist.is_main,
            no_repeat_ngram=args.no_repeat_ngram,
        )
        if mine
        else []
    )
    return [out for block in dist.all_gather_json(outs) for out in block]


def _answer_nll(task, examples: list[Any], batch_size: int) -> tuple[float, int]:
    """(summed NLL, answer tokens) of the examples; under ``torchrun`` summed over the blocks."""
    dist = _dist()
    mine = list(dist.shard(examples))
    nll, tokens = task.answer_nll(mine, batch_size=batch_size) if mine else (0.0, 0)
    return dist.sum(nll), round(dist.sum(tokens))


def run_classify(args: argparse.Namespace) -> int:
    from faast.lm.examples import read_examples

    dist = _init(args)
    _check_result_paths(args, "out")
    examples = read_examples(args.inputs, outputs=False, partial_outputs=False, **_columns(args))
    _same_examples(dist, args, "inputs", examples, _read_beside(dist, args))
    inputs = [e.input for e in examples]
    task = _chosen_task(args, inputs, [])
    if not task.spec.labels:
        raise ValueError(_no_labels_message(args))
    preds, scores = _classify(task, inputs, args.batch_size, args.calibrate)
    labels = task._labels(None)
    column = "head_scores" if task.head_applies(labels) else "log_probs"
    rows = [
        {"input": x, "prediction": p, column: _label_scores(labels, s, args.out)}
        for x, p, s in zip(inputs, preds, scores, strict=True)
    ]
    _write_predictions(args.out, rows, ["input", "prediction", column], examples, args.inputs)
    return 0


def _no_labels_message(args: argparse.Namespace) -> str:
    """Why ``classify`` has no labels to choose among, and what to do: a task learned as free text,
    demonstrations or LoRA examples whose outputs are free text, or zero-shot without ``--labels``."""
    fixes = "`faast task generate` writes free-text outputs; --labels a,b,... lists labels to score"
    if args.fast_weights:
        name = f"task {args.task!r} in" if args.task else "the task in"
        return (
            f"{name} {args.fast_weights} was learned as free text (no labels: e.g. more than 20 distinct "
            f"outputs under --labels auto), and classification needs at least two labels; {fixes}, or learn "
            "it again as labels (faast task learn --labels all, or --labels a,b,...)"
        )
    source = args.demonstrations or args.lora
    if source:
        return (
            f"the outputs of {source} are free text (no labels: more than 20 distinct ones, or one), and "
            f"classification needs at least two labels; {fixes}, or --labels all takes every distinct output"
        )
    return (
        "zero-shot classification needs at least two labels: pass --labels a,b,... (free text: "
        "`faast task generate`)"
    )


def _label_scores(labels: list[str], scores: list[float], out: str) -> dict[str, float] | str:
    """Each label's score, as the predictions file holds it: an object in JSONL, JSON text with
    the labels as written (not as ``\\u`` escapes) in a TSV cell."""
    from faast.lm.examples import file_format, finite_json

    by_label = finite_json(dict(zip(labels, scores, strict=True)))  # -inf (probability 0): null
    if file_format(out) == "jsonl":
        return by_label
    return json.dumps(by_label, ensure_ascii=False, allow_nan=False)


def run_generate(args: argparse.Namespace) -> int:
    from faast.lm.decoding import check_max_new_tokens
    from faast.lm.examples import read_examples

    dist = _init(args)
    check_max_new_tokens(args.max_new_tokens, "--max-new-tokens")
    _check_result_paths(args, "out")
    examples = read_examples(args.inputs, outputs=False, partial_outputs=False, **_columns(args))
    _same_examples(dist, args, "inputs", examples, _read_beside(dist, args))
    inputs = [e.input for e in examples]
    task = _chosen_task(args, inputs, [])
    outs = _generate(task, inputs, args)
    rows = [{"input": x, "prediction": y} for x, y in zip(inputs, outs, strict=True)]
    _write_predictions(args.out, rows, ["input", "prediction"], examples, args.inputs)
    return 0


def _warn_unreachable_references(refs: list[str], end: str) -> None:
    """Warn when reference outputs hold the answer end, where generation stops: they cannot be
    generated whole, so exact match and BLEU understate what the model writes."""
    held = [r for r in refs if end and end in r]
    if held:
        warnings.warn(
            f"{len(held)} of {len(refs)} reference outputs hold the answer end {end!r}, where generation "
            f"stops (e.g. {held[0][:40]!r}): they cannot be generated whole; use another end marker "
            "(--answer-end, zero-shot or in-context; or learn the task with it)",
            UserWarning,
            stacklevel=2,
        )


def _warn_long_references(refs: list[str], codec: Any, max_new_tokens: int, source: str) -> None:
    """Warn when reference outputs take more answer tokens (the answer prefix and the output, the end
    marker left out: :meth:`~faast.lm.prompts.PromptCodec.label_ids`) than ``--max-new-tokens``:
    generation stops there, so they cannot be generated whole and exact match, BLEU and chrF
    understate what the model writes."""
    lengths = [len(codec.label_ids(r)) for r in refs]
    longer = [(n, r) for n, r in zip(lengths, refs, strict=True) if n > max_new_tokens]
    if longer:
        most, example = max(longer, key=lambda item: item[0])
        warnings.warn(
            f"{len(longer)} of {len(refs)} reference outputs of {source} are longer than --max-new-tokens "
            f"{max_new_tokens} tokens (the longest, {most} tokens: {example[:40]!r}), where generation "
            "stops: they cannot be generated whole, so exact match, BLEU and chrF understate the outputs; "
            f"raise --max-new-tokens (to {most} or more)",
            UserWarning,
            stacklevel=2,
        )


def run_evaluate(args: argparse.Namespace) -> int:
    from faast.eval.text_metrics import label_accuracy, translation_scores
    from faast.lm.decoding import check_max_new_tokens
    from faast.lm.examples import read_examples

    dist = _init(args)
    check_max_new_tokens(args.max_new_tokens, "--max-new-tokens")
    _check_result_paths(args, "predictions", "json")
    examples = read_examples(args.examples, **_columns(args))
    _same_examples(dist, args, "examples", examples, _read_beside(dist, args))
    inputs = [e.input for e in examples]
    refs = [e.output for e in examples]
    task = _chosen_task(args, inputs, refs)
    result: dict[str, Any] = {
        "examples": len(examples),
        "fast_weights": args.fast_weights is not None,
        "calibrated": _calibrated(task, args.calibrate),
    }
    scored_refs = refs  # the references as scored (labels: the label each names)
    if task.spec.labels:
        scored_refs = _references_as_labels(refs, task.spec.labels)
        outside_refs = [r for r in scored_refs if r not in task.spec.labels]
        unknown, outside = list(dict.fromkeys(outside_refs)), len(outside_refs)
        if unknown:  # e.g. a rare class the learned examples never held: never predicted, so wrong
            warnings.warn(
                f"{outside} of {len(refs)} reference outputs of {args.examples} are not among the task's "
                f"{len(task.spec.labels)} labels (e.g. {unknown[0]!r}): they can never be predicted and "
                "count as errors",
                UserWarning,
                stacklevel=2,
            )
        preds, _ = _classify(task, inputs, args.batch_size, args.calibrate)
        result.update(label_accuracy(preds, scored_refs, [*task.spec.labels, *unknown]))
        result["references_outside_labels"] = outside
        low, high = result["ci95_wilson"]
        summary = (
            f"accuracy {100 * result['accuracy']:.2f} % (95 % CI {100 * low:.2f}–{100 * high:.2f} %, "
            f"Wilson score), balanced accuracy {100 * result['balanced_accuracy']:.2f} %, "
            f"macro-F1 {100 * result['macro_f1']:.2f} %"
        )
    else:
        _warn_unreachable_references(refs, task.codec.template.answer_end)
        _warn_long_references(refs, task.codec, args.max_new_tokens, args.examples)
        preds = _generate(task, inputs, args)
        result.update(translation_scores(preds, refs))
        nll, tokens = _answer_nll(task, examples, args.batch_size)
        result["answer_nll_per_token"] = nll / tokens
        low, high = result["exact_match_ci95_wilson"]
        bleu = f"BLEU {result['bleu']:.2f}"
        if not result["bleu_defined"]:  # 0.00 whatever the outputs: not a score to read
            result["bleu"] = None
            bleu = "BLEU undefined (no output holds 4 tokens)"
        summary = (
            f"exact match {100 * result['exact_match']:.2f} % (95 % CI {100 * low:.2f}–{100 * high:.2f} %), "
            f"{bleu}, chrF {result['chrf']:.2f}, "
            f"teacher-forced NLL {result['answer_nll_per_token']:.3f} per answer token"
        )
    if args.predictions:
        # the reference as written and, for labels, the label it was scored as (whitespace around it
        # dropped), so that the file gives evaluate's scores again
        columns = ["input", "prediction", "reference"]  # then the examples' other columns (an id)
        columns += ["reference_label"] if task.spec.labels else []
        rows = [
            dict(zip(columns, row, strict=False))  # free text: no reference_label
            for row in zip(inputs, preds, refs, scored_refs, strict=True)
        ]
        _write_predictions(args.predictions, rows, columns, examples, args.examples)
    if not dist.is_main:
        return 0
    from faast.lm.examples import finite_json

    result = finite_json(result)  # JSON has no Infinity (an answer of probability 0): null
    if args.json:
        from faast.io import save_json

        save_json(Path(args.json), result)
    print(f"[faast] {len(examples)} examples: {summary}")
    print(json.dumps(result, allow_nan=False))
    return 0


def _references_as_labels(refs: list[str], labels: list[str]) -> list[str]:
    """Each reference output as the label it names: the label equal to it once the whitespace around
    both is dropped (as the prompt codec reads a label, and as exact match compares free text), so a
    reference ``"positive"`` counts for the label ``"positive "`` (labels differ after stripping:
    :func:`~faast.lm.task_spec.check_label_spaces`); a reference that names none stays as it is."""
    by_text = {label.strip(): label for label in labels}
    return [r if r in labels else by_text.get(r.strip(), r) for r in refs]
