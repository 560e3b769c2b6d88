"""Sentiment: a frozen causal LM learns movie-review polarity from labelled examples, without gradients,
against zero-shot, in-context learning, a backprop linear head and a sentence-embedding route.

Data: the 10,605 Pang & Lee rotten-tomatoes sentences (offline asset ``movie-review-sentences``,
vaderSentiment sdist; label = the source polarity file). Split (seed 0): ``--test`` sentences for
testing; the support pool is the rest, without sentences equal to a test sentence (normalised). Each
support subset is a prefix of one seeded permutation of the pool, so FAAST, in-context learning and
the baselines see the same examples at each size k.

Prompt: ``Review: {input}\\nSentiment:`` then `` positive`` / `` negative`` (and ``\\n``); a label is
scored as its full token sequence.

Rows, per model (SmolLM2-135M-Instruct, Gemma-3-270M base; ``--models qwen2.5`` for
Qwen2.5-Coder-0.5B-Instruct):

* zero-shot;
* in-context, k ∈ {1, 4, 16, as many as the context holds} demonstrations (one shared prefix, its KV
  cache computed once and copied per query, ``--batch-size`` queries at once; whole demonstrations
  are dropped, never the query); with ``--calibrated-icl`` (not by default) also each of them with
  contextual calibration (Zhao et al. 2021, ``faast.lm.calibration``), and zero-shot calibrated;
* FAAST after k ∈ {1, 16, 256, all} examples, with both pair modes (``answer``: only the transitions
  into the answer; ``all``: every transition of the demonstration, as in the paper); the read-out is
  chosen by ``TaskModel.fit`` on a validation split of the k examples;
* a linear head on the last hidden state at the prompt's end (the key FAAST learns the label under),
  trained by backprop on the same k examples, twice: ``linear-head (SGD, authors' recipe)``, SGD with
  the FAAST authors' recipe (:func:`faast.eval.probe.train_linear_probe`: batch 16, 20 epochs), its lr
  chosen on the same kind of validation split as FAAST's; and ``linear-head (backprop, tuned)``,
  full-batch L-BFGS to the optimum of the cross-entropy with weight decay on standardised states,
  the weight decay chosen by 5-fold cross-validation on the k examples
  (:func:`faast.eval.probe.train_tuned_linear_head`); beside them two closed-form heads on the same
  states, no backprop: ``FaastClassifier(tau="auto", fit_intercept=False)`` and the same with
  ``loss="logistic"`` (as ``faast.lm.label_head.LabelHead``; ``--heads-only`` runs these four alone,
  into the ``sentiment-heads`` block); with
  ``--head-layers`` also the closed-form head on the layer chosen by cross-validation on the k
  examples (``TaskModel.fit_head(layer="auto")``: blocks at depths ½ … ⅞ and the head input), with
  its guard (the library's) and without;
* with ``--parts faast-icl`` (not run by default): FAAST on top of in-context learning — the first m
  pool examples (``--faast-icl``) written before every prompt as lead demonstrations
  (``TaskSpec.demonstrations``), the memory learning the other k − m of the k examples — and the m
  demonstrations alone through the same prompts (memory empty: the in-context row without its
  KV cache);
* with ``--parts lora`` (not run by default): backprop on the same examples, LoRA (PEFT, rank 8)
  trained on the first k pool examples' answers for each k ≥ 2, its learning rate chosen among
  ``--lora-lrs`` on a held-out fifth of the k (:mod:`faast.lm.lora_baseline`), the labels then
  scored through the same prompts;
* all-MiniLM-L6-v2 sentence embeddings + ``FaastClassifier`` vs ``LogisticRegression`` on the same k;
  ``FaastClassifier (validated)`` picks among ``MINILM_FAAST_OPTIONS`` on the same validation split
  of the k examples that picks LogisticRegression's C (from 8 examples on), then refits on all k.

Costs: adaptation time (FAAST and the linear head: the forward pass over the k examples — measured
once per example over the whole pool and apportioned — plus the fit; in-context: the prefix's
forward), inference time per test example (the forward pass of its prompt plus the read-out), and the
bytes held at inference (fast weights and the gathered LM-head rows; the demonstrations' KV cache).
All rows of a model run in one process on the same machine, one after the other (the in-context
rows last: the longest); the table is published after every row, marked partial until the end.
``--parts`` runs some row groups only (e.g. ``--parts icl --icl 0 --block NAME``: the in-context
row a stopped run did not reach, into a table of its own; same split and seed, so the rows compare).

    python benchmarks/lm_sentiment.py --threads 2                     # the published run (hours)
    python benchmarks/lm_sentiment.py --models smollm2 --test 100 --pool 300 --sizes 1,16,100 \\
        --icl 1,4 --out /tmp/sent                                      # a quick look (minutes)

Writes ``benchmarks/results/lm_sentiment.json`` and ``docs/lm/sentiment.{csv,png}``, and the generated
block of ``docs/tasks.md``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch

from faast import FaastClassifier
from faast.assets.text import movie_review_sentences
from faast.eval.holdout import normalize_text, random_holdout
from faast.eval.probe import ProbeRecipe, TunedHead, train_linear_probe, train_tuned_linear_head
from faast.eval.stats import binomial_ci95
from faast.lm import FaastConfig, get_faast_model
from faast.lm.calibration import contextually_calibrated
from faast.lm.examples import Example
from faast.lm.icl import InContextModel
from faast.lm.label_head import LabelHead, candidate_layers, describe_layer_choice
from faast.lm.prompts import PromptTemplate
from faast.lm.task import TaskModel, TaskSpec, split_examples
from faast.lm.text import load_causal_lm
from faast.publish import save_figure
from task_bench import (
    COST_COLUMNS,
    MODEL_NAMES,
    PublishingRows,
    Row,
    TableFormat,
    Timer,
    add_fit_options,
    faast_method,
    human_bytes,
    publish_run,
    published_candidates,
    scored_accuracy,
)
from task_lora import adapted, add_lora_options, describe, recipe_from_args

TEMPLATE = PromptTemplate("Review: {input}\nSentiment:")
LABELS = ["positive", "negative"]
#: The backprop heads' rows: SGD with the FAAST authors' recipe (lr chosen on a validation split)
#: and the tuned one (L-BFGS to the optimum, weight decay cross-validated on the k examples).
SGD_HEAD = "linear-head (SGD, authors' recipe)"
TUNED_HEAD = "linear-head (backprop, tuned)"
PARTS = ("zero-shot", "faast", "heads", "icl", "minilm", "faast-icl", "lora")
#: Run unless ``--parts`` says otherwise ("faast-icl" re-runs the demonstrations with every prompt, "lora"
#: trains by backprop: opt-in).
DEFAULT_PARTS = ("zero-shot", "faast", "heads", "icl", "minilm")


def load_data(test_size: int, pool_size: int | None, seed: int) -> tuple[list[Example], list[Example]]:
    rows = movie_review_sentences()
    pool_idx, test_idx = random_holdout(rows, test_size, seed, key=lambda r: normalize_text(r["text"]))
    pool = [Example(rows[i]["text"], rows[i]["label"]) for i in pool_idx]
    test = [Example(rows[i]["text"], rows[i]["label"]) for i in test_idx]
    return (pool if pool_size is None else pool[:pool_size]), test


def accuracy(scores: torch.Tensor, examples: list[Example]) -> tuple[float, float]:
    """(share of ``examples`` whose best-scored label is right, its 95 % interval half-width);
    scores: (n, labels) in ``LABELS`` order."""
    acc = scored_accuracy(scores, examples, LABELS)
    return acc, binomial_ci95(acc, len(examples))


def run_model(
    name: str, pool: list[Example], test: list[Example], args: argparse.Namespace, rows: list[Row]
) -> None:
    """Append the rows of one model to ``rows``."""
    model, tok = load_causal_lm(name, device=args.device)
    label = MODEL_NAMES.get(name, name)
    fm = get_faast_model(model, FaastConfig(num_memories=0))
    task = TaskModel(fm, tok, TaskSpec(TEMPLATE, "answer", LABELS), cache=True)
    sizes = [k if k > 0 else len(pool) for k in args.sizes]
    largest = max(sizes)
    inputs = [e.input for e in test]
    parts = args.parts
    fwd_support = fwd_test = None
    if "faast" in parts:
        print(f"[{label}] forward pass over {largest} support examples", flush=True)
        with Timer() as t:
            task.learn(pool[:largest], batch_size=args.batch_size)
        fwd_support = t.s / largest
        task.reset()
    if "zero-shot" in parts or "faast" in parts:
        with Timer() as t:
            zero = task.label_scores(inputs, batch_size=args.batch_size, progress=True)
        fwd_test = t.s / len(test)
    if "zero-shot" in parts:
        acc, ci = accuracy(zero, test)
        rows.append(Row(label, "zero-shot", 0, acc, ci, 0.0, 1000 * fwd_test, 0, "no examples"))
        print(f"[{label}] zero-shot {100 * acc:.2f}", flush=True)
    if "faast" in parts:
        _faast_rows(label, task, pool, test, sizes, fwd_support, fwd_test, args, rows)
    if "heads" in parts:
        _head_rows(label, task, pool, test, sizes, args.seed, fwd_support, fwd_test, rows=rows)
        if args.head_layers:
            _layer_head_rows(label, task, pool, test, sizes, rows)
    if "icl" in parts:
        _icl_rows(label, task, pool, test, args, rows)
    if "faast-icl" in parts:
        _faast_icl_rows(label, task, pool, test, sizes, args, rows)
    if "lora" in parts:
        _lora_rows(label, task, pool, test, sizes, args, rows)


def _lora_rows(
    label: str,
    task: TaskModel,
    pool: list[Example],
    test: list[Example],
    sizes: list[int],
    args: argparse.Namespace,
    rows: list[Row],
) -> None:
    """Append a backprop row for each k ≥ 2 of ``sizes``: LoRA trained on the first k pool examples'
    answers (:mod:`faast.lm.lora_baseline`), the labels then scored through the task's prompts
    with the memory off (:func:`faast.lm.lora_baseline.adapted`)."""
    recipe = recipe_from_args(args)
    inputs = [e.input for e in test]
    for k in [k for k in sizes if k >= 2]:  # a learning rate cannot be chosen on one example
        task.reset()
        with adapted(task, pool[:k], recipe) as fit, Timer() as t:
            scores = task.label_scores(inputs, batch_size=args.batch_size, progress=True)
        acc, ci = accuracy(scores, test)
        print(f"[{label}] LoRA k={k}: {100 * acc:.2f} (lr {fit.learning_rate:g})", flush=True)
        extra = {"learning_rate": fit.learning_rate, "held_out_nll": fit.held_out_nll}
        infer_ms = 1000 * t.s / len(test)
        detail = describe(fit, recipe)
        rows.append(
            Row(
                label,
                "LoRA r=8 (backprop)",
                k,
                acc,
                ci,
                fit.seconds,
                infer_ms,
                fit.nbytes,
                detail,
                extra,
            )
        )


def _faast_rows(
    label: str,
    task: TaskModel,
    pool: list[Example],
    test: list[Example],
    sizes: list[int],
    fwd_support: float,
    fwd_test: float,
    args: argparse.Namespace,
    rows: list[Row],
) -> None:
    """Append the FAAST rows (every key-feature width x pair mode x size k) to ``rows``; the read-out
    of each is chosen by ``TaskModel.fit`` on validation splits of its k examples."""
    fm = task.model
    inputs = [e.input for e in test]
    # -- FAAST, both pair modes, read-out chosen on a validation split of the k examples
    for features, mode in [(f, m) for f in args.key_features for m in args.modes]:
        task.reset()
        fm.set_output_key_features(features)
        method = faast_method(f"faast-{mode}", features)
        task.spec.pairs = mode
        for k in sizes:
            with Timer() as t:
                report = task.fit(
                    pool[:k],
                    labels=LABELS,
                    candidates=published_candidates(args.calibrated),
                    anchor=args.anchor,
                    guard=args.guard,
                    hold_out=args.hold_out,
                    seed=args.seed,
                    progress=False,
                )
            with Timer() as tr:
                scores = task.label_scores(inputs, batch_size=args.batch_size)  # states cached: read-out only
            adapt, infer = k * fwd_support + t.s, 1000 * (fwd_test + tr.s / len(test))
            nbytes = _memory_nbytes(fm)
            rows.append(
                _fitted_row(label, method, k, scores, test, report, adapt, infer, nbytes, report.chosen.name)
            )
    task.spec.pairs = "answer"
    task.reset()
    fm.set_output_key_features(0)


def _icl_rows(
    label: str,
    task: TaskModel,
    pool: list[Example],
    test: list[Example],
    args: argparse.Namespace,
    rows: list[Row],
) -> None:
    """Append the in-context rows (k of ``args.icl`` demonstrations, 0 = as many as fit) to ``rows``,
    read by the plain model (the memory disabled). Run last: the longest rows of a model. With
    ``args.calibrated_icl`` each k also gets an ``in-context (calibrated)`` row (the same scores,
    contextually calibrated: :mod:`faast.lm.calibration`; its inference time adds the content-free
    prompts to the row's), and a ``zero-shot (calibrated)`` row comes first."""
    inputs = [e.input for e in test]
    reserve = max(len(task.codec.prompt_ids(x, start=False)) for x in inputs) + 8
    if args.calibrated_icl:
        zero = InContextModel(task.model.base_model, task.codec, [], reserve=reserve)
        with task.model.disabled(), Timer() as t:
            scores = zero.label_scores(inputs, LABELS, batch_size=args.batch_size, calibrate=True)
        acc, ci = accuracy(scores, test)
        per_example_ms = 1000 * t.s / len(test)
        rows.append(Row(label, "zero-shot (calibrated)", 0, acc, ci, 0.0, per_example_ms, 0, "no examples"))
        print(f"[{label}] zero-shot (calibrated) {100 * acc:.2f}", flush=True)
    for k in args.icl:
        demos = [(e.input, e.output) for e in (pool if k == 0 else pool[:k])]
        icl = InContextModel(task.model.base_model, task.codec, demos, reserve=reserve)
        with task.model.disabled():
            with Timer() as t:
                nbytes = icl.cache_nbytes()  # runs the prefix once
            prefix_s = t.s
            with Timer() as t:
                scores = icl.label_scores(inputs, LABELS, progress=True, batch_size=args.batch_size)
            variants = [("in-context", scores, t.s)]
            if args.calibrated_icl:
                with Timer() as free_t:
                    free = icl.content_free_scores(LABELS, batch_size=args.batch_size)
                calibrated = contextually_calibrated(scores, free)
                variants.append(("in-context (calibrated)", calibrated, t.s + free_t.s))
        tag = "max" if k == 0 else str(k)
        detail = f"k={tag}: {icl.num_used} demonstrations, {len(icl.prefix)} prefix tokens"
        for method, method_scores, seconds in variants:
            acc, ci = accuracy(method_scores, test)
            infer_ms = 1000 * seconds / len(test)
            rows.append(Row(label, method, icl.num_used, acc, ci, prefix_s, infer_ms, nbytes, detail))
            print(f"[{label}] {method} k={tag} ({icl.num_used} used) {100 * acc:.2f}", flush=True)
        del icl


def _faast_icl_rows(
    label: str,
    task: TaskModel,
    pool: list[Example],
    test: list[Example],
    sizes: list[int],
    args: argparse.Namespace,
    rows: list[Row],
) -> None:
    """Append the rows of FAAST on top of in-context learning to ``rows``: for each m of
    ``args.faast_icl``, the first m pool examples are lead demonstrations written before every
    prompt (``TaskSpec.demonstrations``, as the in-context row with m demonstrations reads them) and
    the memory learns the other k − m of the k examples (answer pairs; read-out chosen by
    ``TaskModel.fit`` on them), so the row at k uses the same k examples as the FAAST row at k.
    First the m demonstrations alone (memory empty) are scored through the same prompts: the
    in-context row through the task's code, a check that both read the same tokens. Costs: the
    forward pass over the learned examples (after the demonstrations' KV cache, as ``TaskModel``
    reads them: measured once over the largest set and apportioned) plus the fit; inference per
    query after the same cache, whose bytes are counted with the fast weights."""
    fm = task.model
    inputs = [e.input for e in test]
    for m in args.faast_icl:
        demos = [(e.input, e.output) for e in pool[:m]]
        lead = TaskModel(fm, task.tokenizer, TaskSpec(TEMPLATE, "answer", LABELS, demos), cache=True)
        lead.reset()
        method = f"faast-answer + {m} in context"
        with Timer() as t:
            alone = lead.label_scores(inputs, batch_size=args.batch_size, progress=True)
        fwd_test = t.s / len(test)
        acc, ci = accuracy(alone, test)
        lead_bytes = lead.lead_nbytes()
        rows.append(
            Row(
                label,
                "in-context (task prompts)",
                m,
                acc,
                ci,
                0.0,
                1000 * fwd_test,
                lead_bytes,
                f"the {m} lead demonstrations alone (memory empty)",
            )
        )
        print(f"[{label}] {m} demonstrations through the task's prompts, memory empty: {100 * acc:.2f}")
        learned = [k for k in sizes if k > m]
        if not learned:
            continue
        largest = max(learned)
        with Timer() as t:
            lead.learn(pool[m:largest], batch_size=args.batch_size)  # fills the state cache
        fwd_support = t.s / (largest - m)
        for k in learned:
            lead.reset()
            with Timer() as t:
                report = lead.fit(
                    pool[m:k],
                    labels=LABELS,
                    candidates=published_candidates(args.calibrated),
                    anchor=args.anchor,
                    guard=args.guard,
                    hold_out=args.hold_out,
                    seed=args.seed,
                    progress=False,
                )
            with Timer() as tr:
                scores = lead.label_scores(inputs, batch_size=args.batch_size)  # states cached
            adapt, infer = (k - m) * fwd_support + t.s, 1000 * (fwd_test + tr.s / len(test))
            detail = f"{m} in context + {k - m} learned; {report.chosen.name}"
            nbytes = _memory_nbytes(fm) + lead_bytes
            rows.append(_fitted_row(label, method, k, scores, test, report, adapt, infer, nbytes, detail))
        del lead
    task.reset()


def _fitted_row(
    label: str,
    method: str,
    k: int,
    scores: torch.Tensor,
    test: list[Example],
    report: Any,
    adapt_s: float,
    infer_ms: float,
    nbytes: int,
    detail: str,
) -> Row:
    """The row of a task fitted on k examples (``report``: its ``FitReport``) whose label
    ``scores`` were read on ``test``; printed as well."""
    acc, ci = accuracy(scores, test)
    best_val = max(report.scores.values()) if report.scores else float("nan")
    print(f"[{label}] {method} k={k}: {100 * acc:.2f} (val {best_val:.3f}; {report.chosen.name})", flush=True)
    extra = {"val_accuracy": best_val, "n_validation": report.n_validation, "pairs": report.pairs}
    return Row(label, method, k, acc, ci, adapt_s, infer_ms, nbytes, detail, extra)


def _memory_nbytes(fm: Any) -> int:
    """Bytes the output memory holds at inference: the compiled fast weights and gathered rows."""
    size = fm.fast_weight_nbytes()
    return size["compiled"] + size["support_rows"]


def _head_rows(
    label: str,
    task: TaskModel,
    pool: list[Example],
    test: list[Example],
    sizes: list[int],
    seed: int,
    fwd_support: float | None = None,
    fwd_test: float | None = None,
    *,
    rows: list[Row],
) -> None:
    """Append to ``rows`` the heads on the prompt-end state (the key FAAST learns the label under),
    on the same k examples: two linear heads trained by backprop — SGD with the authors' recipe
    (:func:`linear_head`) and the tuned one (:func:`faast.eval.probe.train_tuned_linear_head`:
    L-BFGS to the optimum, weight decay chosen by cross-validation on the k examples) — and two
    closed-form heads without backprop — ``FaastClassifier(tau="auto", fit_intercept=False)``
    (squared loss) and the same with ``loss="logistic"`` (closed-form logistic steps, C chosen on
    held-out folds of the k examples), as ``faast.lm.label_head.LabelHead`` fits them (no
    intercept). Without ``fwd_support``/``fwd_test`` the forward passes are timed here."""
    largest = max(sizes)
    with Timer() as t:  # the heads train on the CPU
        feats_test = task.prompt_features([e.input for e in test], progress=True).cpu()
    fwd_test = t.s / len(test) if fwd_test is None else fwd_test
    with Timer() as t:
        feats_pool = task.prompt_features(pool[:largest], progress=True).cpu()
    fwd_support = t.s / largest if fwd_support is None else fwd_support
    for k in sizes:
        ys = torch.tensor([LABELS.index(e.output) for e in pool[:k]])
        if len(torch.unique(ys)) < 2:
            continue
        with Timer() as t:
            model_, lr = linear_head(feats_pool[:k].float(), ys, pool[:k], seed)
        with Timer() as tr, torch.no_grad():
            pred = model_(feats_test.float()).double()
        acc, ci = accuracy(pred, test)
        nbytes = sum(p.numel() * 4 for p in model_.parameters())
        infer = 1000 * (fwd_test + tr.s / len(test))
        adapt = k * fwd_support + t.s
        rows.append(Row(label, SGD_HEAD, k, acc, ci, adapt, infer, nbytes, f"lr={lr:g}"))
        print(f"[{label}] {SGD_HEAD} k={k}: {100 * acc:.2f} (lr {lr})", flush=True)
        with Timer() as t:
            tuned = train_tuned_linear_head(feats_pool[:k].float(), ys, len(LABELS), seed=seed)
        with Timer() as tr, torch.no_grad():
            pred = tuned.head(feats_test.float()).double()
        acc, ci = accuracy(pred, test)
        nbytes = sum(p.numel() * p.element_size() for p in tuned.head.parameters())
        infer = 1000 * (fwd_test + tr.s / len(test))
        detail = _tuned_detail(tuned)
        rows.append(Row(label, TUNED_HEAD, k, acc, ci, k * fwd_support + t.s, infer, nbytes, detail))
        print(f"[{label}] {TUNED_HEAD} k={k}: {100 * acc:.2f} ({detail})", flush=True)
        for method, clf in (
            # as LabelHead: tau="auto", the cut the published head rows were measured with (the
            # classifier's default became ridge="auto" later; they differ beyond 2d examples
            # only), and no intercept (the classifier fits one by default since 2026-12)
            ("faast-head", FaastClassifier(tau="auto", fit_intercept=False)),
            (
                "faast-head (logistic)",
                FaastClassifier(tau="auto", loss="logistic", fit_intercept=False, random_state=seed),
            ),
        ):
            with Timer() as t:
                clf.fit(feats_pool[:k].double(), ys.numpy())
            with Timer() as tr:
                scores = torch.as_tensor(clf.decision_function(feats_test.double()))
            pred = torch.stack([-scores, scores], 1) if scores.ndim == 1 else scores  # classes 0, 1
            acc, ci = accuracy(pred, test)
            detail = f"cut {clf.cut_}" + (f", C={clf.C_:.3g}" if clf.C_ is not None else "")
            infer = 1000 * (fwd_test + tr.s / len(test))
            rows.append(
                Row(label, method, k, acc, ci, k * fwd_support + t.s, infer, clf.coef_.nbytes, detail)
            )
            print(f"[{label}] {method} k={k}: {100 * acc:.2f} ({detail})", flush=True)


def _tuned_detail(tuned: TunedHead) -> str:
    """The settings cell of the tuned backprop head: the chosen weight decay, its cross-validated
    accuracy on the k examples and the final fit's L-BFGS iterations."""
    if not tuned.folds:
        return f"wd={tuned.weight_decay:.3g} (default: too few per class to cross-validate)"
    cv = 100 * tuned.cv_accuracy[tuned.weight_decay]
    return f"wd={tuned.weight_decay:.3g} ({tuned.folds}-fold CV acc {cv:.1f} %), L-BFGS {tuned.iterations} it"


def _layer_head_rows(
    label: str, task: TaskModel, pool: list[Example], test: list[Example], sizes: list[int], rows: list[Row]
) -> None:
    """Append to ``rows`` the closed-form head on the layer chosen by cross-validation on the k
    examples (``TaskModel.fit_head(layer="auto")``, ``LabelHead.fit_layers``: the blocks of
    ``candidate_layers`` and the head input), with its guard (the library's) and without, from one
    forward pass over the pool and the test sentences that keeps those layers' prompt-end states
    (timed here: its own forward passes)."""
    layers = candidate_layers(task.model._layout.num_layers)
    largest = max(sizes)
    with Timer() as t:
        feats_test = task.prompt_layer_features([e.input for e in test], layers, progress=True)
    fwd_test = t.s / len(test)
    with Timer() as t:
        feats_pool = task.prompt_layer_features(pool[:largest], layers, progress=True)
    fwd_support = t.s / largest
    for k in sizes:
        outputs = [e.output for e in pool[:k]]
        if len(set(outputs)) < 2:
            continue
        for guard in (True, False):
            with Timer() as t:
                head = LabelHead.fit_layers(feats_pool[:k], layers, outputs, LABELS, guard=guard)
            pick = layers.index(head.layer)
            with Timer() as tr:
                scores = head.scores(feats_test[:, pick])
            acc, ci = accuracy(scores, test)
            detail = describe_layer_choice(head, len(layers))
            infer = 1000 * (fwd_test + tr.s / len(test))
            method = "faast-head (layer auto)" if guard else "faast-head (layer unguarded)"
            adapt = k * fwd_support + t.s
            rows.append(Row(label, method, k, acc, ci, adapt, infer, head.weight.numel() * 8, detail))
            print(f"[{label}] {method} k={k}: {100 * acc:.2f} ({detail})", flush=True)


def linear_head(
    X: torch.Tensor, y: torch.Tensor, examples: list[Example], seed: int, labels: list[str] | None = None
):
    """SGD linear head (backprop) on features X (k, d) for label indices y (k,) into ``labels``
    (default: the sentiment labels); lr chosen on the same validation split TaskModel.fit would
    hold out. Returns (the head, its lr)."""
    labels = LABELS if labels is None else labels
    grid = (1e-4, 1e-3, 1e-2)
    fit, val = split_examples(examples, min(500, max(2, round(0.2 * len(examples)))), labels, seed)
    lr = grid[1]
    if len(examples) >= 8:
        index = {id(e): i for i, e in enumerate(examples)}
        fi = torch.tensor([index[id(e)] for e in fit])
        vi = torch.tensor([index[id(e)] for e in val])
        accs = []
        for g in grid:
            head = train_linear_probe(X[fi], y[fi], len(labels), _recipe(g, len(fi)), seed)
            with torch.no_grad():
                accs.append(float((head(X[vi]).argmax(1) == y[vi]).double().mean()))
        lr = grid[int(np.argmax(accs))]
    return train_linear_probe(X, y, len(labels), _recipe(lr, len(examples)), seed), lr


def _recipe(lr: float, n: int) -> ProbeRecipe:
    return ProbeRecipe(lr=lr, epochs=20, validation="per-class" if n < 100 else "random", patience=5)


#: The FaastClassifier settings the validated MiniLM row chooses among (on a split of the k
#: examples, never the test sentences).
MINILM_FAAST_OPTIONS: dict[str, dict] = {
    "default": {},
    "no intercept": {"fit_intercept": False},
    "ridge=gcv": {"ridge": "gcv"},
    "logistic": {"loss": "logistic"},
    "logistic, no intercept": {"loss": "logistic", "fit_intercept": False},
}


def _validated_faast(x: torch.Tensor, y: np.ndarray, fi: np.ndarray, vi: np.ndarray, seed: int) -> str:
    """The name of the ``MINILM_FAAST_OPTIONS`` entry with the best accuracy on rows ``vi`` when
    fitted on rows ``fi`` (ties: first in order)."""
    scores = {
        name: FaastClassifier(**kw, random_state=seed).fit(x[fi].numpy(), y[fi]).score(x[vi].numpy(), y[vi])
        for name, kw in MINILM_FAAST_OPTIONS.items()
    }
    return max(scores, key=lambda name: scores[name])


def _weight_bytes(est: Any) -> int:
    """Bytes of what a fitted linear classifier reads at inference: ``coef_``, and ``intercept_``
    when it fits one (FaastClassifier keeps zeros there otherwise, unused)."""
    intercept = np.asarray(getattr(est, "intercept_", [])) if getattr(est, "fit_intercept", True) else []
    return int(np.asarray(est.coef_).nbytes + np.asarray(intercept).nbytes)


def run_minilm(pool: list[Example], test: list[Example], args: argparse.Namespace, rows: list[Row]) -> None:
    """Append the sentence-embedding rows to ``rows``."""
    from sklearn.linear_model import LogisticRegression

    from faast.encoders.text import SentenceEncoder

    enc = SentenceEncoder("minilm")
    sizes = [k if k > 0 else len(pool) for k in args.sizes]
    with Timer() as t:
        e_pool = enc.encode([e.input for e in pool[: max(sizes)]])
    per_example = t.s / max(sizes)
    with Timer() as t:
        e_test = enc.encode([e.input for e in test])
    infer = t.s / len(test)
    y_pool = np.array([e.output for e in pool])
    for k in sizes:
        if len(set(y_pool[:k])) < 2:
            continue
        fit, val = split_examples(pool[:k], min(500, max(2, round(0.2 * k))), LABELS, args.seed)
        index = {id(e): i for i, e in enumerate(pool[:k])}
        fi = np.array([index[id(e)] for e in fit])
        vi = np.array([index[id(e)] for e in val])
        cs = (0.1, 1.0, 10.0, 100.0)
        c = 1.0
        if k >= 8:
            accs = [
                LogisticRegression(C=g, max_iter=2000)
                .fit(e_pool[fi], y_pool[fi])
                .score(e_pool[vi], y_pool[vi])
                for g in cs
            ]
            c = cs[int(np.argmax(accs))]
        candidates = [
            ("MiniLM + FaastClassifier", FaastClassifier()),
            ("MiniLM + FaastClassifier (logistic)", FaastClassifier(loss="logistic", random_state=args.seed)),
            ("MiniLM + LogisticRegression", LogisticRegression(C=c, max_iter=2000)),
        ]
        if k >= 8:
            with Timer() as tv:
                option = _validated_faast(e_pool, y_pool, fi, vi, args.seed)
            chosen = FaastClassifier(**MINILM_FAAST_OPTIONS[option], random_state=args.seed)
            candidates.append(("MiniLM + FaastClassifier (validated)", chosen))
        for name, est in candidates:
            with Timer() as tf:
                est.fit(e_pool[:k].numpy(), y_pool[:k])
            with Timer() as tp:
                pred = est.predict(e_test.numpy())
            acc = float(np.mean(pred == np.array([e.output for e in test])))
            if isinstance(est, FaastClassifier):
                detail = f"cut {est.cut_}" + (f", C={est.C_:.3g}" if est.C_ is not None else "")
                if name.endswith("(validated)"):
                    detail = f"validated: {option}; {detail}"
            else:
                detail = f"C={c:g}"
            rows.append(
                Row(
                    "all-MiniLM-L6-v2",
                    name,
                    k,
                    acc,
                    binomial_ci95(acc, len(test)),
                    k * per_example + tf.s + (tv.s if name.endswith("(validated)") else 0.0),
                    1000 * (infer + tp.s / len(test)),
                    _weight_bytes(est),
                    detail,
                )
            )
            print(f"[MiniLM] {name} k={k}: {100 * acc:.2f}", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The benchmark's options (``argv``: None reads the command line), lists parsed."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="smollm2,gemma3")
    ap.add_argument("--test", type=int, default=2000)
    ap.add_argument("--pool", type=int, default=None, help="cap the support pool (default: all)")
    ap.add_argument(
        "--sizes", default="1,16,256,0", help="FAAST / baseline support sizes (0 = the whole pool)"
    )
    ap.add_argument("--icl", default="1,4,16,0", help="in-context demonstrations (0 = as many as fit)")
    ap.add_argument(
        "--calibrated-icl",
        action="store_true",
        help="with the icl part: also each in-context row contextually calibrated, and zero-shot calibrated",
    )
    ap.add_argument("--modes", default="answer,all")
    ap.add_argument(
        "--faast-icl",
        default="4",
        help="part faast-icl: FAAST learning on top of this many lead demonstrations (comma list)",
    )
    ap.add_argument(
        "--key-features",
        default="0",
        help="FAAST rows for each D: the output memory keyed with D random features (0: the state)",
    )
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default=None, help="where the LMs run, e.g. cuda (default: cpu)")
    ap.add_argument("--seed", type=int, default=0)
    add_fit_options(ap)
    ap.add_argument(
        "--parts",
        default=",".join(DEFAULT_PARTS),
        help=f"the rows to run, of {','.join(PARTS)} (default: all but faast-icl; icl alone completes a "
        "stopped run)",
    )
    ap.add_argument("--no-minilm", action="store_true", help="drop the minilm part")
    add_lora_options(ap)
    ap.add_argument(
        "--heads-only",
        action="store_true",
        help="only the heads on the prompt-end state (backprop and closed-form), into the sentiment-heads"
        " block (the same as --parts heads)",
    )
    ap.add_argument(
        "--head-layers",
        action="store_true",
        help="with the heads part: also the closed-form head on the layer chosen by cross-validation on "
        "the k examples (TaskModel.fit_head(layer='auto'))",
    )
    ap.add_argument(
        "--block",
        default=None,
        help="name of the published table (default: sentiment, or sentiment-heads with --heads-only)",
    )
    ap.add_argument("--out", default=None, help="folder for the JSON/CSV/PNG (default: the published places)")
    args = ap.parse_args(argv)
    args.sizes = [int(x) for x in args.sizes.split(",")]
    args.icl = [int(x) for x in args.icl.split(",") if x]
    args.modes = args.modes.split(",")
    args.parts = _parts(args)
    if "lora" in args.parts:
        recipe_from_args(args)  # its errors before any model is loaded
    if args.head_layers and "heads" not in args.parts:
        raise SystemExit("--head-layers needs the heads part (--parts heads or --heads-only)")
    args.key_features = [int(x) for x in args.key_features.split(",")]
    args.faast_icl = [int(x) for x in args.faast_icl.split(",") if x]
    if any(m < 1 for m in args.faast_icl):
        raise SystemExit(f"--faast-icl: demonstrations must be >= 1, got {args.faast_icl}")
    return args


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    pool, test = load_data(args.test, args.pool, args.seed)
    print(f"support pool {len(pool)}, test {len(test)}", flush=True)
    with Timer() as total:
        rows = PublishingRows(lambda so_far: publish(so_far, args, pool, test, total, partial=True))
        lm_parts = set(args.parts) - {"minilm"}
        for name in filter(None, args.models.split(",")) if lm_parts else []:  # --models "": MiniLM alone
            run_model(name, pool, test, args, rows)
        if "minilm" in args.parts:
            run_minilm(pool, test, args, rows)
    print(publish(list(rows), args, pool, test, total, partial=False))


def _parts(args: argparse.Namespace) -> list[str]:
    """The row groups to run, from ``--parts``, ``--heads-only`` and ``--no-minilm``; a clear error
    for a name that is not a part."""
    parts = ["heads"] if args.heads_only else [p for p in args.parts.split(",") if p]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise SystemExit(f"--parts: unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    if args.no_minilm:
        parts = [p for p in parts if p != "minilm"]
    if not parts:
        raise SystemExit("--parts: nothing to run")
    return parts


def publish(
    rows: list[Row],
    args: argparse.Namespace,
    pool: list[Example],
    test: list[Example],
    total: Timer,
    *,
    partial: bool,
) -> str:
    """Write the table of ``rows`` (JSON, CSV, PNG, the docs block); ``partial``: the run is still
    going, and the data line says so until the last row is in."""
    data = (
        "Pang & Lee movie-review sentences (movie-review-sentences asset): "
        f"{len(pool)} support pool, {len(test)} test, split seed {args.seed}"
    )
    block = args.block or ("sentiment-heads" if args.heads_only else "sentiment")
    return publish_run(FORMAT, block, rows, args, data, TEMPLATE.to_dict(), total, partial=partial)


def _cells(r: Row) -> str:
    ci = "" if r.ci95 is None else f" ± {100 * r.ci95:.1f}"
    return (
        f"{100 * r.score:.2f}{ci} | {r.adapt_s:.1f} | {r.infer_ms:.1f} | {human_bytes(r.nbytes)} | {r.detail}"
    )


def plot(path: Path, rows: list[Row]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r.model for r in rows))
    fig, axes = plt.subplots(1, len(models), figsize=(5.5 * len(models), 4.2), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        mine = [r for r in rows if r.model == model]
        for method in dict.fromkeys(r.method for r in mine):
            pts = sorted((r.k, r.score) for r in mine if r.method == method and r.k > 0)
            level = next((r.score for r in mine if r.method == method and r.k == 0), None)
            if method == "zero-shot":
                ax.axhline(100 * level, color="grey", ls="--", label="zero-shot")
            elif level is not None and not pts:  # learned nothing (zero-shot calibrated): a level too
                ax.axhline(100 * level, color="black", ls="-.", lw=1, label=method)
            elif pts:
                ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], marker="o", label=method)
        ax.set_xscale("log")
        ax.set_xlabel("support examples k (log)")
        ax.set_ylabel("test accuracy %")
        ax.set_title(model)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


FORMAT = TableFormat(
    "lm_sentiment.py",
    ["accuracy % (95 % CI)", *COST_COLUMNS],
    _cells,
    plot,
    "accuracy vs support examples",
)

if __name__ == "__main__":
    main()
