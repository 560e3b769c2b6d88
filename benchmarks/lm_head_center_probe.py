"""Probe on development tasks: the label head on the LM head's input fitted through the origin, with
an intercept, and on centred states with an intercept, per draw of k support examples.

The probe behind the rule of the centred-head variant of ``benchmarks/lm_head_or_memory.py``
(``benchmarks/results/lm_head_or_memory/rule.md``): after 16 random examples the head through the
origin gave every Bible verse one book in some draws. It reads only the development tasks of
``benchmarks/dev_tasks.py`` and the support draws of that study (same options, same seeds); the
head reads the head input (``layer=None``), no layer is chosen. Prints, per draw, the examples per
label and the development accuracy (%) of the three heads:

* ``origin``: :meth:`faast.lm.label_head.LabelHead.fit` (no intercept, the head's default);
* ``intercept``: ``FaastClassifier(tau="auto")`` with its default intercept, features not centred;
* ``centred``: ``LabelHead.fit(center=True)`` (centred states, per-label intercept).

    python benchmarks/lm_head_center_probe.py --models smollm2 --task bible-books
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from dev_tasks import add_study_options, study_task
from faast import FaastClassifier
from faast.lm import FaastConfig, get_faast_model
from faast.lm.label_head import LabelHead
from faast.lm.task import TaskModel, TaskSpec
from faast.lm.text import load_causal_lm
from lm_guard import draw_support
from task_bench import MODEL_NAMES

#: The probed heads, in column order.
HEADS = ("origin", "intercept", "centred")


def draw_accuracies(
    x: torch.Tensor, y: np.ndarray, dev_x: torch.Tensor, dev_y: np.ndarray
) -> dict[str, float]:
    """Development accuracy (%) of each head of :data:`HEADS` fitted on states ``x`` (k, d) with
    label indices ``y`` (k,), scored on ``dev_x`` (m, d) against ``dev_y`` (m,); a label without a
    support example is never predicted."""
    present = np.unique(y)  # the heads score the labels they saw
    outputs = [str(i) for i in y]
    names = [str(i) for i in present]

    def head(center: bool) -> np.ndarray:
        return present[LabelHead.fit(x, outputs, names, center=center).scores(dev_x).argmax(1).numpy()]

    predicted = {
        "origin": head(False),
        "intercept": FaastClassifier(tau="auto").fit(x.numpy(), y).predict(dev_x.numpy()),
        "centred": head(True),
    }
    return {name: round(100 * float((p == dev_y).mean()), 1) for name, p in predicted.items()}


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_study_options(ap, draws=4)
    args = ap.parse_args(argv)
    data = study_task(args)
    labels = list(data.labels)
    rows = []
    print("| model | k | draw | examples per label | " + " | ".join(HEADS) + " |")
    print("|---|---|---|---|" + "---|" * len(HEADS))
    for name in filter(None, args.models.split(",")):
        model, tok = load_causal_lm(name, device=args.device)
        task = TaskModel(
            get_faast_model(model, FaastConfig(num_memories=0)),
            tok,
            TaskSpec(data.template, "answer", labels),
        )
        dev_x = task.prompt_layer_features(data.dev, [None], batch_size=args.batch_size)[:, 0].double()
        dev_y = np.array([labels.index(e.output) for e in data.dev])
        for k in args.sizes:
            for draw in range(args.draws):
                learned = draw_support(data.support, args.seed, k, draw)
                x = task.prompt_layer_features(learned, [None], batch_size=args.batch_size)[:, 0].double()
                y = np.array([labels.index(e.output) for e in learned])
                row = {"model": MODEL_NAMES.get(name, name), "k": k, "draw": draw}
                row |= {"counts": np.bincount(y, minlength=len(labels)).tolist()}
                row |= draw_accuracies(x, y, dev_x, dev_y)
                rows.append(row)
                cells = [row["model"], k, draw, row["counts"], *(row[h] for h in HEADS)]
                print("| " + " | ".join(str(c) for c in cells) + " |", flush=True)
    return rows


if __name__ == "__main__":
    main()
