"""Should a labelled task read with the closed-form label head when cross-validation on its own
examples says the head beats the output memory? Measured on development tasks that no published
test set contains.

On the three test tasks no default was chosen on, the closed-form head on the prompt-end states
(``faast task learn --head squared``, no gradients) is often ahead of the default fit, which reads
the output memory (docs/tasks.md, "A third task no default was chosen on": 11.7 and 14.3 points on
Gemma-3-270M and Qwen2.5-Coder after 48 tweets, where the memory's guard kept it off). Both are
fitted by cross-validation on the examples already, so a fit could weigh one against the other
with no more data. This study compares, per draw of k support examples:

* ``memory``: ``TaskModel.fit`` with the library's defaults (what ``faast task learn`` reads);
* ``head``: ``TaskModel.fit_head`` with its defaults (layer ``"auto"``), always used;
* ``head if significant``: the head when, on the examples held out by the two cross-validations
  (each example once in each), it predicted more of them right than the memory's chosen read-out
  and a sign-flip test (:func:`faast.lm.task_choice.max_gain_p_value`, the guard of the read-out
  choice) puts the gain below :data:`~faast.lm.task_choice.SIGN_FLIP_LEVEL`; the memory otherwise
  (and when a label has fewer than two examples: the head cannot be cross-validated);
* ``head (centred)``: ``TaskModel.fit_head(center=True)``, always used: the head solved on the
  states centred on their mean, with a per-label intercept (:class:`faast.lm.label_head.LabelHead`);
* ``head if more likely``: the same test on each held-out example's log-probability of its right
  label instead of whether it was predicted right — a finer score, so a test with more power:
  the memory's from the read-out choice (``FitReport.validation_loglik``, normalised over the
  labels), the head's from its probabilities on the same folds as its right/wrong
  (:func:`faast.lm.label_head.held_out_log_likelihood`).

The head's held-out predictions are those of its chosen layer, so they carry that choice's
optimism (the head input wins in most draws, where there is none). Nothing here changes a default.

Data (``--task``, benchmarks/dev_tasks.py): ``sentiment`` (Pang & Lee development sentences) or
``bible-books`` (which of four books of the Bible a verse comes from).

    python benchmarks/lm_head_or_memory.py --models smollm2,gemma3 --task sentiment --sizes 16,64 --draws 4

Writes ``results.json``, ``draws.csv``, ``table.md`` and ``table.png`` in ``--out`` (default
benchmarks/results/lm_head_or_memory/<task>).
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from dev_tasks import add_study_options, draw_groups, study_task
from faast.lm import FaastConfig, get_faast_model
from faast.lm.examples import Example
from faast.lm.label_head import candidate_layers, held_out_log_likelihood, held_out_right
from faast.lm.task import TaskModel, TaskSpec
from faast.lm.task_choice import SIGN_FLIP_LEVEL, max_gain_p_value
from faast.lm.text import load_causal_lm
from faast.publish import save_figure, write_public_csv, write_public_text
from lm_guard import dev_scores, draw_support
from task_bench import MODEL_NAMES, REPO, Timer, run_meta, saved_run, scored_accuracy, write_json

#: The compared read-outs, in table order.
VARIANTS = ("memory", "head", "head if significant", "head if more likely", "head (centred)")
#: The guarded variants: the held-out score each one tests the head's gain on.
RULES = {"head if significant": "right", "head if more likely": "log-likelihood"}
#: A draw loses when its development accuracy falls more than this many points below ``memory``'s.
LOSS_POINTS = 1.0


def head_or_memory(
    memory_score: torch.Tensor, head_score: torch.Tensor | None, seed: int = 0
) -> tuple[str, float | None]:
    """("head" or "memory", the sign-flip p-value or None when no test was made) from a per-example
    held-out score (n,) — whether it was predicted right, or the log-probability of its right label —
    of the memory's chosen read-out and of the head on the same examples (None: the head could not
    be cross-validated): the head when its scores sum higher and the test of its gain is below
    :data:`SIGN_FLIP_LEVEL`."""
    if head_score is None:
        return "memory", None
    if memory_score.shape != head_score.shape:
        raise ValueError(
            f"held-out scores of {tuple(memory_score.shape)} and {tuple(head_score.shape)} examples"
        )
    gains = head_score.to(torch.float64) - memory_score.to(torch.float64)
    if float(gains.sum()) <= 0:
        return "memory", None
    p = max_gain_p_value(gains[:, None], seed=seed)
    return ("head" if p < SIGN_FLIP_LEVEL else "memory"), p


def head_held_out(
    task: TaskModel, learned: list[Example], layer: int | None, seed: int
) -> dict[str, torch.Tensor] | None:
    """{"right": (k,) bool, "log-likelihood": (k,) float64}: whether the head on ``layer``, fitted on
    the other folds, predicts each example of ``learned`` right, and the log-probability it gives
    its label (:func:`faast.lm.label_head.held_out_right`,
    :func:`~faast.lm.label_head.held_out_log_likelihood`, the same folds); None when a label has
    fewer than two examples."""
    labels = list(task.spec.labels)
    features = task.prompt_layer_features(learned, [layer], progress=False)  # (k, 1, d)
    index = np.array([labels.index(e.output) for e in learned])
    right = held_out_right(features, index, task.head.loss, seed)
    loglik = held_out_log_likelihood(features[:, 0], index, task.head.loss, seed)
    if right is None or loglik is None:
        return None
    return {"right": torch.as_tensor(right[:, 0] > 0.5), "log-likelihood": torch.as_tensor(loglik)}


def centred_head_accuracy(
    task: TaskModel,
    learned: list[Example],
    dev: list[Example],
    dev_states: torch.Tensor,
    args: argparse.Namespace,
) -> tuple[float, str]:
    """(development accuracy, layer) of the centred head fitted on ``learned``, scored on
    ``dev_states`` (len(dev), c, d), the development prompts' states at the layers of
    :func:`~faast.lm.label_head.candidate_layers` (computed once per model: they do not change
    with the support set)."""
    layers = candidate_layers(task.model._layout.num_layers)
    head = task.fit_head(learned, batch_size=args.batch_size, center=True, progress=False)
    scores = head.scores(dev_states[:, layers.index(head.layer)])
    return scored_accuracy(scores, dev, list(task.spec.labels)), head.where


def draw_row(
    task: TaskModel,
    learned: list[Example],
    dev: list[Example],
    dev_states: torch.Tensor,
    args: argparse.Namespace,
) -> dict:
    """Fit the memory and the heads on ``learned``; each variant's development accuracy."""
    labels = list(task.spec.labels)
    task.reset()
    report = task.fit(learned, labels=labels, seed=args.seed, progress=False)
    memory_accuracy, _ = dev_scores(task, dev, args.batch_size, labels)
    head = task.fit_head(learned, batch_size=args.batch_size, progress=False)
    scores = task.head_scores([e.input for e in dev], batch_size=args.batch_size)
    head_accuracy = scored_accuracy(scores, dev, labels)
    layers = candidate_layers(task.model._layout.num_layers)
    cached = head.scores(dev_states[:, layers.index(head.layer)])
    if not torch.allclose(cached, scores, rtol=1e-5, atol=1e-8):  # the shared states are the head's
        raise RuntimeError("the development states computed once differ from the head's own")
    accuracy = {"memory": memory_accuracy, "head": head_accuracy}
    row: dict[str, Any] = {
        "memory_read_out": report.chosen.name,
        "head_layer": head.where,
        "memory_accuracy": memory_accuracy,
        "head_accuracy": head_accuracy,
    }
    held = None
    if report.validation_index is not None:
        held = head_held_out(task, learned, head.layer, args.seed)
    memory_scores = {"right": report.validation_correct, "log-likelihood": report.validation_loglik}
    for name, score in RULES.items():
        choice, p = "memory", None
        if held is not None:
            memory_score = memory_scores[score][report.chosen.name]
            choice, p = head_or_memory(memory_score, held[score][report.validation_index], args.seed)
        row |= {f"{name}_choice": choice, f"{name}_p": p, f"{name}_accuracy": accuracy[choice]}
    centred, where = centred_head_accuracy(task, learned, dev, dev_states, args)
    return row | {"head (centred)_layer": where, "head (centred)_accuracy": centred}


def run_model(name: str, args: argparse.Namespace, task_data: Any) -> list[dict]:
    """Every draw's row of model ``name`` on the development task ``task_data``."""
    model, tok = load_causal_lm(name, device=args.device)
    fm = get_faast_model(model, FaastConfig(num_memories=0))
    label = MODEL_NAMES.get(name, name)
    task = TaskModel(fm, tok, TaskSpec(task_data.template, "answer", list(task_data.labels)), cache=True)
    layers = candidate_layers(fm._layout.num_layers)
    dev_states = task.prompt_layer_features(task_data.dev, layers, batch_size=args.batch_size, progress=True)
    rows = []
    for k, draw in tqdm([(k, d) for k in args.sizes for d in range(args.draws)], desc=f"{label}: draws"):
        learned = draw_support(task_data.support, args.seed, k, draw)
        row = draw_row(task, learned, task_data.dev, dev_states, args)
        rows.append({"model": label, "k": k, "draw": draw} | row)
    return rows


def summary(rows: list[dict]) -> list[dict]:
    """Per (model, k) and over all draws: each variant's mean development accuracy (%), its change
    from ``memory`` (points), the draws losing more than :data:`LOSS_POINTS` against it, how often
    the head was chosen, how often it was ahead of ``memory`` (and in how many of those the
    likelihood test was not made), and the centred head against the head."""
    lines = []
    for (model, k), rs in draw_groups(rows).items():
        line: dict[str, Any] = {"model": model, "k": k, "draws": len(rs)}
        for name in VARIANTS:
            changes = [100 * (r[f"{name}_accuracy"] - r["memory_accuracy"]) for r in rs]
            line[name] = 100 * sum(r[f"{name}_accuracy"] for r in rs) / len(rs)
            if name != "memory":
                line[f"{name} − memory"] = sum(changes) / len(rs)
                line[f"{name} losses"] = sum(c < -LOSS_POINTS for c in changes)
        for name in RULES:
            line[f"{name}: head chosen"] = sum(r[f"{name}_choice"] == "head" for r in rs)
        ahead = [r for r in rs if r["head_accuracy"] > r["memory_accuracy"]]
        line["head ahead"] = len(ahead)
        line["head ahead, no likelihood test"] = sum(r["head if more likely_p"] is None for r in ahead)
        centring = [100 * (r["head (centred)_accuracy"] - r["head_accuracy"]) for r in rs]
        line["head (centred) − head"] = sum(centring) / len(rs)
        line["head (centred) losses to head"] = sum(c < -LOSS_POINTS for c in centring)
        lines.append(line)
    return lines


def markdown(lines: list[dict], meta: dict[str, Any]) -> str:
    cols = [
        "model",
        "k",
        "draws",
        "memory",
        *[c for n in VARIANTS[1:] for c in (n, f"{n} − memory", f"{n} losses")],
    ]
    cols += [f"{name}: head chosen" for name in RULES]
    cols += ["head ahead", "head ahead, no likelihood test"]
    cols += ["head (centred) − head", "head (centred) losses to head"]

    def cell(v: Any) -> str:
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    head = (
        f"Command: `{meta['command']}`  \n"
        f"Data: {meta['data']}  \n"
        f"Machine: {meta['machine']}; {meta['seconds'] / 60:.0f} min  \n"
        "Columns: development accuracy (%), mean over draws: the default fit (`memory`), the label head "
        "(`head`, layer auto) and the head only when its held-out gain over the memory is significant "
        f"(sign-flip p < {SIGN_FLIP_LEVEL:g}) in examples predicted right (`head if significant`) or in "
        "log-probability of the right label (`head if more likely`); `− memory`: points against the "
        f"default fit; `losses`: draws more than {LOSS_POINTS:g} point below it; `head chosen`: draws "
        "that read with the head; `head ahead`: draws where `head` beat `memory` on the development "
        "examples, and of those, the draws where `head if more likely` made no test (no held-out gain in "
        "log-likelihood, or a label with one example); `head (centred)`: the head on centred states "
        "with an intercept, always used, and its change and losses against `head`\n\n"
    )
    table = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    table += ["| " + " | ".join(cell(line[c]) for c in cols) + " |" for line in lines]
    return head + "\n".join(table)


def plot(path: Path, lines: list[dict], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [line for line in lines if line["model"] != "all draws"]
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / len(VARIANTS)
    for j, name in enumerate(VARIANTS):
        xs = [i + j * width for i in range(len(shown))]
        ax.bar(xs, [line[name] for line in shown], width, label=name)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(shown))])
    ax.set_xticklabels([f"{line['model']}\nk={line['k']}" for line in shown], fontsize=8)
    ax.set_ylabel("development accuracy (%)")
    ax.legend(fontsize=8)
    ax.set_title(f"Memory or label head ({title})")
    save_figure(fig, path)
    plt.close(fig)


def write_outputs(rows: list[dict], meta: dict[str, Any], out: Path) -> None:
    """results.json, draws.csv, table.png and table.md in ``out``."""
    lines = summary(rows)
    write_json(out / "results.json", {**meta, "summary": lines, "rows": rows})
    write_public_csv(out / "draws.csv", rows)
    plot(out / "table.png", lines, meta.get("title", ""))
    md = markdown(lines, meta)
    write_public_text(out / "table.md", md + "\n")
    print(md)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_study_options(ap, draws=4)
    ap.add_argument("--out", default=None, help="default benchmarks/results/lm_head_or_memory/<task>")
    ap.add_argument(
        "--render", action="store_true", help="no fits: write the outputs again from results.json"
    )
    args = ap.parse_args(argv)
    out = Path(args.out or REPO / "benchmarks" / "results" / "lm_head_or_memory" / args.task)
    if args.render:
        write_outputs(*saved_run(out / "results.json"), out)
        return
    task_data = study_task(args)
    with Timer() as total:
        rows = [r for name in filter(None, args.models.split(",")) for r in run_model(name, args, task_data)]
    template = task_data.template.to_dict()
    meta = run_meta(
        "lm_head_or_memory.py", task_data.data, template, args.threads, args.device, total, partial=False
    )
    if argv is not None:  # called from Python: the command of these arguments
        meta["command"] = "python benchmarks/lm_head_or_memory.py " + shlex.join(argv)
    write_outputs(rows, {**meta, "title": task_data.title}, out)


if __name__ == "__main__":
    main()
