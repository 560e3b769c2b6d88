"""Should ``TaskModel.fit`` also weigh contextually calibrated read-outs? Measured on development
sentences that no published test set contains.

The fit chooses a read-out on held-out examples and its guard keeps the memory off (the zero-shot
model) unless the choice clearly beats it. Calibrated zero-shot (:mod:`faast.lm.calibration`)
beats that fallback on every model of the author task at 16 passages (docs/tasks.md "Calibrated
baselines"), so the candidate sets compared here are (:data:`faast.lm.task_choice.CALIBRATED_SETS`):

* ``none``: the plain candidates (the default before this study);
* ``zero-shot``: and the memory off, calibrated;
* ``all``: and a calibrated twin of every candidate.

Each draw is fitted once with ``all``; the choice of each smaller set is made from the same
held-out scores by :func:`faast.lm.task_choice.choose_read_out` over its own candidates (the
choice a fit with only them makes: same folds, same scores, the default guard over them). So are
two more choices among ``all``, whose guard tests against, and falls back on, another memory-off
read-out (:data:`faast.lm.task_choice.ANCHORS`): ``all+best`` the better of the zero-shot model
and its calibrated twin on the held-out examples, ``all+tested`` the calibrated twin only when a
sign-flip test prefers it, ``all+balanced`` the calibrated twin when its predicted labels come in
shares closer to the right labels' than the plain one's, ``all+balanced-best`` only when it is also
the better on the held-out examples; ``all+balanced-best-fallback`` tests against the zero-shot model
as it is and falls back on the read-out of ``all+balanced-best``. Each choice is then scored on the
development sentences.

Data (``--task``, benchmarks/dev_tasks.py): ``sentiment`` (the default), as benchmarks/lm_guard.py
(Pang & Lee sentences beside the 2,000-sentence test split of split seed 0; development = the last
``--dev``; support sets drawn with ``--seed``); or ``bible-books``, a four-label task (which book of
the Bible a verse comes from) that no default was chosen on before it.

    python benchmarks/lm_calibrated_candidates.py --models smollm2 --sizes 16,64 --draws 12 --seed 3

Writes ``results.json``, ``draws.csv``, ``table.md`` and ``table.png`` in ``--out``
(default benchmarks/results/lm_calibrated_candidates); a run adds its models to the ones there.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from tqdm import tqdm

from dev_tasks import add_study_options, draw_groups, study_task
from faast.lm import FaastConfig, get_faast_model
from faast.lm.examples import Example
from faast.lm.prompts import PromptTemplate
from faast.lm.task import TaskModel, TaskSpec
from faast.lm.task_choice import CALIBRATED_SETS, DEFAULT_GUARD, choose_read_out, default_candidates
from faast.lm.text import load_causal_lm
from faast.publish import save_figure, write_public_csv, write_public_text
from lm_guard import dev_scores, draw_support
from lm_sentiment import LABELS, TEMPLATE
from task_bench import MODEL_NAMES, REPO, Timer, earlier_other_models, rel, run_meta, saved_run, write_json

#: Each choice compared: name -> (its candidate set, its guard's anchor); the first is the
#: reference of the ``− none`` columns.
VARIANTS = {
    "none": ("none", "zero-shot"),
    "zero-shot": ("zero-shot", "zero-shot"),
    "all": ("all", "zero-shot"),
    "all+best": ("all", "best"),
    "all+tested": ("all", "tested"),
    "all+balanced": ("all", "balanced"),
    "all+balanced-best": ("all", "balanced-best"),
    "all+balanced-best-fallback": ("all", "balanced-best-fallback"),
}
#: How the plot names each bar.
LEGEND = {
    "none": "fit, plain candidates",
    "zero-shot": "fit, + calibrated zero-shot",
    "all": "fit, + calibrated twin of each",
    "all+best": "fit, all, anchor: better zero-shot",
    "all+tested": "fit, all, anchor: tested zero-shot",
    "all+balanced": "fit, all, anchor: zero-shot closer to the label mix",
    "all+balanced-best": "fit, all, anchor: closer to the label mix and better",
    "all+balanced-best-fallback": "fit, all, tested against zero-shot, falls back as balanced-best",
}
#: A draw loses when its development accuracy falls more than this many points below ``none``'s.
LOSS_POINTS = 1.0
#: The plot's name for the task of a run that recorded none (every run before ``--task``).
SENTIMENT_TITLE = "Pang & Lee development sentences"


def candidate_sets() -> dict[str, list]:
    """Set name -> its candidates (each set's candidates are the first of the next)."""
    return {name: default_candidates("prob", name) for name in CALIBRATED_SETS}


def draw_row(
    task: TaskModel,
    learned: list[Example],
    dev: list[Example],
    args: argparse.Namespace,
    zero_shot: dict[str, tuple[float, float]],
) -> dict:
    """Fit ``learned`` once with every candidate; each variant's choice and its development scores.
    zero_shot: the development scores of the memory-off read-outs, which no draw changes (filled
    here, kept by the caller across draws). The labels are the task's (``task.spec.labels``)."""
    sets = candidate_sets()
    labels = list(task.spec.labels)
    task.reset()
    report = task.fit(learned, labels=labels, candidates=sets["all"], seed=args.seed, progress=False)
    by_name = {c.name: c for c in sets["all"]}
    scored: dict[str, tuple[float, float]] = {}

    def dev_of(name: str) -> tuple[float, float]:
        kept = zero_shot if by_name[name].read.weight == 0 else scored
        if name not in kept:
            task.use(by_name[name])
            kept[name] = dev_scores(task, dev, args.batch_size, labels)
        return kept[name]

    row: dict[str, Any] = {"n_validation": report.n_validation}
    for name, (set_name, anchor) in VARIANTS.items():
        if report.validation_loglik:
            choice, _, p, _ = choose_read_out(
                sets[set_name],
                report.validation_loglik,
                report.validation_items,
                DEFAULT_GUARD,
                anchor,
                report.validation_predicted,
                report.validation_targets,
            )
            chosen = choice.name
        else:  # too few examples to validate: every set keeps the memory off
            chosen, p = report.chosen.name, None
        row[f"{name}_choice"], row[f"{name}_p"] = chosen, p
        row[f"{name}_accuracy"], row[f"{name}_loglik"] = dev_of(chosen)
    off, cal_off = sets["zero-shot"][0].name, sets["zero-shot"][-1].name
    row["off_accuracy"], row["calibrated_off_accuracy"] = dev_of(off)[0], dev_of(cal_off)[0]
    return row


def run_model(
    name: str,
    args: argparse.Namespace,
    support: list[Example],
    dev: list[Example],
    template: PromptTemplate | None = None,
    labels: list[str] | None = None,
) -> list[dict]:
    """Every draw's row of model ``name`` on a task written by ``template`` with ``labels`` (None:
    the sentiment :data:`TEMPLATE` and :data:`LABELS`)."""
    model, tok = load_causal_lm(name, device=args.device)
    fm = get_faast_model(model, FaastConfig(num_memories=0))
    label = MODEL_NAMES.get(name, name)
    spec = TaskSpec(template or TEMPLATE, "answer", list(labels or LABELS))
    task = TaskModel(fm, tok, spec, cache=True)
    rows, zero_shot = [], {}
    for k, draw in tqdm([(k, d) for k in args.sizes for d in range(args.draws)], desc=f"{label}: draws"):
        learned = draw_support(support, args.seed, k, draw)
        rows.append({"model": label, "k": k, "draw": draw} | draw_row(task, learned, dev, args, zero_shot))
    return rows


def variants_in(rows: list[dict]) -> list[str]:
    """The :data:`VARIANTS` every row has (a run made before one was added lacks it)."""
    return [name for name in VARIANTS if all(f"{name}_choice" in r for r in rows)]


def summary(rows: list[dict]) -> list[dict]:
    """Per (model, k) and over all draws: each variant's mean development accuracy (%), its change
    from ``none`` (points), the draws losing more than :data:`LOSS_POINTS` against ``none`` and the
    draws whose choice is calibrated."""
    lines = []
    for (model, k), rs in draw_groups(rows).items():
        line: dict[str, Any] = {"model": model, "k": k, "draws": len(rs)}
        line["zero-shot model"] = 100 * sum(r["off_accuracy"] for r in rs) / len(rs)
        line["calibrated zero-shot model"] = 100 * sum(r["calibrated_off_accuracy"] for r in rs) / len(rs)
        for name in variants_in(rows):
            changes = [100 * (r[f"{name}_accuracy"] - r["none_accuracy"]) for r in rs]
            line[name] = 100 * sum(r[f"{name}_accuracy"] for r in rs) / len(rs)
            line[f"{name} − none"] = sum(changes) / len(rs)
            line[f"{name} losses"] = sum(c < -LOSS_POINTS for c in changes)
            line[f"{name} calibrated"] = sum(r[f"{name}_choice"].endswith("+calibrated") for r in rs)
        lines.append(line)
    return lines


def shown_variants(lines: list[dict]) -> list[str]:
    """The :data:`VARIANTS` the summary ``lines`` have."""
    return [name for name in VARIANTS if name in lines[0]]


def markdown(lines: list[dict], meta: dict[str, Any]) -> str:
    variants = shown_variants(lines)
    cols = [
        "model",
        "k",
        "draws",
        "zero-shot model",
        "calibrated zero-shot model",
        "none",
        *[c for n in variants[1:] for c in (n, f"{n} − none", f"{n} losses", f"{n} calibrated")],
    ]

    def cell(v: Any) -> str:
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    runs = list(meta["runs"].values())
    machines = sorted({r["machine"] for r in runs})
    minutes = " and ".join(f"{r['seconds'] / 60:.0f} min" for r in runs)
    head = (
        "Command: " + " and ".join(f"`{r['command']}`" for r in runs) + "  \n"
        f"Data: {meta['data']}  \n"
        f"Machine: {'; '.join(machines)}; {minutes}  \n"
        "Columns: development accuracy (%), mean over draws: the zero-shot model without and with "
        f"calibration, and the choice of each candidate set ({', '.join(variants)}; default guard "
        f"{DEFAULT_GUARD}{anchors_said(variants)}); `− none`: points against the plain candidates' "
        "choice; `losses`: draws "
        f"more than {LOSS_POINTS:g} point below it; `calibrated`: draws whose choice is calibrated\n\n"
    )
    table = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    table += ["| " + " | ".join(cell(line[c]) for c in cols) + " |" for line in lines]
    return head + "\n".join(table)


def anchors_said(variants: list[str]) -> str:
    """What the table head says of the variants whose guard has another anchor (none: nothing)."""
    other = [f"{n}: anchor {VARIANTS[n][1]}" for n in variants if VARIANTS[n][1] != "zero-shot"]
    return "".join(f"; {o}" for o in other)


def plot(path: Path, lines: list[dict], title: str = SENTIMENT_TITLE) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [line for line in lines if line["model"] != "all draws"]
    names = ["zero-shot model", "calibrated zero-shot model", *shown_variants(lines)]
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(names)
    for j, name in enumerate(names):
        xs = [i + j * width for i in range(len(shown))]
        ax.bar(xs, [line[name] for line in shown], width, label=LEGEND.get(name, name))
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(shown))])
    ax.set_xticklabels([f"{line['model']}\nk={line['k']}" for line in shown], fontsize=8)
    ax.set_ylabel("development accuracy (%)")
    ax.set_ylim(40, 100)
    ax.legend(fontsize=8, ncol=2)
    ax.set_title(f"Calibrated read-out candidates ({title})")
    save_figure(fig, path)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_study_options(ap, draws=12)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "lm_calibrated_candidates"))
    ap.add_argument(
        "--render", action="store_true", help="no fits: write the outputs again from results.json"
    )
    args = ap.parse_args()
    out = Path(args.out)
    if args.render:
        write_outputs(*saved_run(out / "results.json"), out)
        return
    task = study_task(args)
    check_same_data(out / "results.json", task.data)
    with Timer() as total:
        rows = [
            r
            for name in filter(None, args.models.split(","))
            for r in run_model(name, args, task.support, task.dev, task.template, task.labels)
        ]
    meta = run_meta(
        "lm_calibrated_candidates.py",
        task.data,
        task.template.to_dict(),
        args.threads,
        args.device,
        total,
        partial=False,
    )
    run = {k: meta[k] for k in ("command", "machine", "seconds")}
    kept, runs = earlier_other_models(out / "results.json", {r["model"] for r in rows}, run)
    write_outputs(kept + rows, {**meta, "runs": runs, "title": task.title}, out)


def check_same_data(path: Path, data: str) -> None:
    """Stop (a clear error) when the earlier results ``path`` that a run adds its models to were
    measured on other data than ``data``: one table must not mix tasks, splits or draws."""
    if path.is_file():
        earlier = json.loads(path.read_text(encoding="utf-8")).get("data")
        if earlier != data:
            raise SystemExit(
                f"{rel(path)} holds a run on other data ({earlier!r}); this run's is {data!r}: "
                "choose another --out"
            )


def write_outputs(rows: list[dict], meta: dict[str, Any], out: Path) -> None:
    """results.json, draws.csv, table.png and table.md in ``out``."""
    lines = summary(rows)
    write_json(out / "results.json", {**meta, "summary": lines, "rows": rows})
    write_public_csv(out / "draws.csv", rows)
    plot(out / "table.png", lines, meta.get("title", SENTIMENT_TITLE))
    md = markdown(lines, meta)
    write_public_text(out / "table.md", md + "\n")
    print(md)


if __name__ == "__main__":
    main()
