"""Which guard keeps a task's memory off when its read-out does not clearly help: measured on
development sentences that no published test set contains.

``TaskModel.fit`` chooses a read-out among ~60 candidates on a few held-out examples, then a guard
keeps the memory off (the zero-shot model) unless the choice beats it clearly
(:func:`faast.lm.task_choice.significant_or_off`). With 16 examples the guard sees 6–8 held-out
examples, and the best of 60 candidates on them looks better than it is. This benchmark draws many
small support sets, fits each once and reads, from the same validation scores, the choice of every
guard (``FitReport.decisions``): "one-se" (the winner's own gain above one standard error),
"selection" (the gain of the choice made without each example, which the winner's luck does not
inflate), "sign-flip" (the winner's studentized gain against the best of any candidate under random
signs of the per-example gains: a p-value for the best of many; also read at other levels from the
same p-value), "raw-sign-flip" (the same test on raw sums of gains) and "none". Each choice is then
scored on development sentences: accuracy and mean log-probability of the right label, against the
memory off.

Data: Pang & Lee movie-review sentences, the 8,604 left beside the 2,000-sentence test split (split
seed 0, ``--split-seed``), so neither published test set (500 or 2,000 sentences, same seed) is
touched: development = the last ``--dev`` of them, support sets drawn from the others (``--seed``
draws them and seeds the fits; fresh draws with another seed keep the same split and development
sentences). ``--lead m`` also runs each
support set with its first m examples as lead demonstrations (``TaskSpec.demonstrations``) and the
memory learning the rest.

``--hold-out`` fits each draw once per share of it held out for the cross-validation
(``TaskModel.fit(hold_out=)``); every share ends with the same memory, read with its own choice.

    python benchmarks/lm_guard.py --models smollm2 --sizes 16,32,64 --draws 12 --dev 400 --lead 0,4 \
        --hold-out 0.5,1
"""

from __future__ import annotations

import argparse
import itertools
import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from faast.eval.report import update_doc_block
from faast.lm import FaastConfig, get_faast_model
from faast.lm.examples import Example
from faast.lm.task import DEFAULT_HOLD_OUT, FitReport, TaskModel, TaskSpec
from faast.lm.task_choice import GUARDS, MEMORY_OFF, SIGN_FLIP_LEVEL, sign_flip_p_value
from faast.lm.text import load_causal_lm
from faast.publish import save_figure, write_public_csv
from lm_sentiment import LABELS, TEMPLATE, load_data
from task_bench import (
    MODEL_NAMES,
    PUBLISHED_HOLD_OUT,
    REPO,
    Timer,
    earlier_other_models,
    hold_out_shares,
    published_candidates,
    rel,
    run_meta,
    saved_run,
    scored_accuracy,
    write_json,
)

BLOCK = "guard"
#: The sign-flip guard at other levels than its default, from the same p-values.
OTHER_LEVELS = (0.05, 0.2)
#: The guards the table compares.
COMPARED = (*GUARDS, *(f"sign-flip@{level:g}" for level in OTHER_LEVELS), "raw-sign-flip")
#: The read-outs ``TaskModel.fit`` chooses among (its default candidates), by name.
CANDIDATES = {c.name: c for c in published_candidates()}


def dev_scores(
    task: TaskModel, dev: list[Example], batch_size: int, labels: Sequence[str] | None = None
) -> tuple[float, float]:
    """(accuracy, mean log-probability of the right label) of ``task`` as it is read now on ``dev``,
    whose outputs are among ``labels`` (None: the sentiment :data:`LABELS`), the task's label order."""
    labels = list(LABELS if labels is None else labels)
    scores = task.label_scores([e.input for e in dev], batch_size=batch_size)  # (n, labels)
    target = torch.tensor([labels.index(e.output) for e in dev])  # type: ignore[arg-type]
    logp = scores.double() - torch.logsumexp(scores.double(), dim=1, keepdim=True)
    right = logp[torch.arange(len(dev)), target].clamp_min(-1e4)
    return scored_accuracy(scores, dev, labels), float(right.mean())


def run_model(name: str, args: argparse.Namespace, support: list[Example], dev: list[Example]) -> list[dict]:
    """One row per (lead, k, draw, hold-out share): every guard's choice and its development scores."""
    model, tok = load_causal_lm(name, device=args.device)
    fm = get_faast_model(model, FaastConfig(num_memories=0))
    label = MODEL_NAMES.get(name, name)
    rows: list[dict[str, Any]] = []
    jobs = [(m, k, d) for m in args.lead for k in args.sizes for d in range(args.draws) if k > m]
    bar = tqdm(jobs, desc=f"{label}: guards on development sentences")
    # without demonstrations one task's state cache serves every draw; with them each draw has
    # its own demonstrations, so its own task (and cache)
    plain = TaskModel(fm, tok, TaskSpec(TEMPLATE, "answer", LABELS), cache=True)
    for m, k, draw in bar:
        picked = draw_support(support, args.seed, k, draw)
        demos = [(e.input, e.output) for e in picked[:m]]
        learned = balanced(picked[m:]) if args.balance else picked[m:]
        task = TaskModel(fm, tok, TaskSpec(TEMPLATE, "answer", LABELS, demos), cache=True) if m else plain
        # every hold-out share ends with the same memory (all the draw's examples), so a read-out's
        # development scores serve each of them
        by_name: dict[str, tuple[float, float]] = {}
        for share in args.hold_out:
            task.reset()
            report = task.fit(
                learned,
                labels=LABELS,
                candidates=published_candidates(),
                hold_out=share,
                folds=args.folds,
                seed=args.seed,
                progress=False,
            )
            row = _guard_row(report, task, dev, args.batch_size, by_name)
            where = {"model": label, "lead": m, "k": k, "draw": draw, "hold_out": share}
            rows.append(where | ({"learned": len(learned)} if args.balance else {}) | row)
        bar.set_postfix(k=k, lead=m)
    return rows


def balanced(examples: list[Example]) -> list[Example]:
    """The first examples of each label, in order, as many of each as the rarest label has (only
    the labels that occur): a support set whose label mix is even (``--balance``)."""
    keep = min(Counter(e.output for e in examples).values(), default=0)
    seen: Counter[str | None] = Counter()
    out = []
    for e in examples:
        seen[e.output] += 1
        if seen[e.output] <= keep:
            out.append(e)
    return out


def draw_support(support: list[Example], seed: int, k: int, draw: int) -> list[Example]:
    """The ``draw``-th support set of ``k`` examples drawn with ``seed`` (its first examples are the
    lead demonstrations when there are)."""
    return random.Random(f"{seed}-{k}-{draw}").sample(support, k)


def _guard_row(
    report: FitReport, task: TaskModel, dev: list[Example], batch_size: int, by_name: dict
) -> dict[str, Any]:
    """Every compared guard's choice from ``report`` and its development scores (``by_name``: the
    scores of read-outs already scored with this memory, filled in here)."""
    off = MEMORY_OFF.name
    for cname in {off, *report.decisions.values()} - set(by_name):
        task.use(CANDIDATES[cname])
        by_name[cname] = dev_scores(task, dev, batch_size)
    row: dict[str, Any] = {
        "n_validation": report.n_validation,
        "off_accuracy": by_name[off][0],
        "off_loglik": by_name[off][1],
        "sign_flip_p": report.sign_flip_p,
    }
    # the same test on raw gain sums (not studentized): the widest-swinging candidates set the bar
    loglik = report.validation_loglik
    raw = sign_flip_p_value(published_candidates(), loglik, MEMORY_OFF, studentize=False) if loglik else 1.0
    row["raw_sign_flip_p"] = raw
    row["validation_loglik"], row["validation_correct"] = validation_record(report)
    choices = dict(report.decisions)
    for level in OTHER_LEVELS:  # the same test at other levels: the best candidate or off
        on = passes_sign_flip(report.sign_flip_p, level)
        choices[f"sign-flip@{level:g}"] = report.decisions["none"] if on else off
    choices["raw-sign-flip"] = report.decisions["none"] if raw < SIGN_FLIP_LEVEL else off
    for g in COMPARED:
        choice = choices[g]
        row[f"{g}_choice"] = choice
        row[f"{g}_on"] = choice != off
        row[f"{g}_accuracy"], row[f"{g}_loglik"] = by_name[choice]
    return row


def passes_sign_flip(p: float | None, level: float) -> bool:
    """Whether a draw's sign-flip p-value (None: no test could be made) keeps its winner at
    ``level`` — one predicate for the guards scored here and those read later from the saved rows
    (``lm_guard_levels.memory_on``)."""
    return p is not None and p < level


def validation_record(report: FitReport) -> tuple[dict[str, str], dict[str, str]]:
    """Per candidate read-out, its held-out examples' scores as the fit saw them, for guards read
    later without fits, each as one string (one line of the results JSON): the right label's
    log-probability normalised over the labels, space-separated with 6 decimals
    (:func:`read_loglik` reads it back), and which examples it got right
    (``FitReport.validation_correct``) as 0/1."""
    scores = {name: " ".join(f"{float(x):.6f}" for x in ll) for name, ll in report.validation_loglik.items()}
    right = {
        name: "".join("1" if x else "0" for x in hit.tolist())
        for name, hit in report.validation_correct.items()
    }
    return scores, right


def read_loglik(saved: str) -> list[float]:
    """A candidate's held-out log-probabilities as :func:`validation_record` saved them."""
    return [float(x) for x in saved.split()]


#: Row fields kept in the results JSON but not in the every-draw CSV (one string per candidate).
JSON_ONLY = ("validation_loglik", "validation_correct")


#: A draw "loses" when its development accuracy falls by more than this many points.
LOSS_POINTS = 1.0


def summary(rows: list[dict], guards: Sequence[str] = COMPARED, loglik: bool = True) -> list[dict]:
    """Per (model, lead, k, hold-out share): each guard's share of draws with the memory on, mean development
    accuracy change over the memory off (points), draws where it lost more than :data:`LOSS_POINTS`,
    and (``loglik``) mean log-likelihood change. Each row holds ``off_accuracy`` and, per guard g of
    ``guards``, ``g_on`` and ``g_accuracy`` (and ``g_loglik``, ``off_loglik``)."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["model"], r["lead"], r["k"], r.get("hold_out", PUBLISHED_HOLD_OUT))].append(r)
    out = []
    for (model, lead, k, share), rs in groups.items():
        line = {
            "model": model,
            "lead": lead,
            "k": k,
            "hold_out": share,
            "draws": len(rs),
            "off_accuracy": 100 * np.mean([r["off_accuracy"] for r in rs]),
        }
        for g in guards:
            gain = [100 * (r[f"{g}_accuracy"] - r["off_accuracy"]) for r in rs]
            line[f"{g}_on"] = float(np.mean([r[f"{g}_on"] for r in rs]))
            line[f"{g}_gain"] = float(np.mean(gain))
            line[f"{g}_losses"] = int(sum(x < -LOSS_POINTS for x in gain))
            if loglik:
                line[f"{g}_loglik_gain"] = float(np.mean([r[f"{g}_loglik"] - r["off_loglik"] for r in rs]))
        out.append(line)
    return out


def markdown(lines: list[dict], meta: dict[str, Any], png: Path, csv: Path, links: str = "lm/") -> str:
    """The table; ``links``: the folder of the plot and CSV as seen from the page that shows it."""
    head = "| model | lead demos | k | held out | draws | memory off | " + " | ".join(
        f"{g}: on / Δ acc / losses / Δ loglik" for g in COMPARED
    )
    out = [
        f"- **{model}**: {run['data']}; `{run['command']}` ({run['machine']}; {run['seconds'] / 60:.0f} min)"
        for model, run in meta["runs"].items()
    ]
    out += [
        "",
        "Held out: the share of each support set held out in the read-out's cross-validation"
        " (`TaskModel.fit(hold_out=)`). Memory off: mean development"
        " accuracy (%) of the zero-shot model (with the lead demonstrations"
        " when there are). Per guard: share of draws with the memory on, mean change of development"
        " accuracy over the memory off (points), draws that lost more than 1 point, mean change of the"
        " right label's log-probability. sign-flip: p <"
        f" {SIGN_FLIP_LEVEL:g} (the default level); sign-flip@a: p < a; raw-sign-flip: p <"
        f" {SIGN_FLIP_LEVEL:g} of the statistic on raw sums of gains (not studentized).",
        "",
        head + " |",
        "|---|---:|---:|---:|---:|---:|" + "---|" * len(COMPARED),
    ]
    for r in lines:
        cells = [
            f"{r[f'{g}_on']:.2f} / {r[f'{g}_gain']:+.2f} / {r[f'{g}_losses']} / {r[f'{g}_loglik_gain']:+.4f}"
            for g in COMPARED
        ]
        out.append(
            f"| {r['model']} | {r['lead']} | {r['k']} | {r['hold_out']:g} | {r['draws']} |"
            f" {r['off_accuracy']:.2f} | " + " | ".join(cells) + " |"
        )
    out += [
        "",
        f"![guards on development sentences]({links}{png.name})",
        "",
        f"Every draw: [`{rel(csv)}`]({links}{csv.name}).",
    ]
    return "\n".join(out)


def plot(path: Path, lines: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({(r["model"], r["lead"]) for r in lines})  # a row of panels each
    shares = sorted({r["hold_out"] for r in lines})  # a column each, same scale along a row
    fig, axes = plt.subplots(
        len(panels), len(shares), figsize=(4.2 * len(shares), 3.2 * len(panels)), squeeze=False, sharey="row"
    )
    for (i, (model, lead)), (j, share) in itertools.product(enumerate(panels), enumerate(shares)):
        ax = axes[i][j]
        key = (model, lead, share)
        rs = sorted((r for r in lines if (r["model"], r["lead"], r["hold_out"]) == key), key=lambda r: r["k"])
        if not rs:  # this model was not run with this share: no empty log-scaled panel
            ax.set_visible(False)
            continue
        ax.tick_params(axis="y", labelleft=True)  # the row's first panel may be the hidden one
        for g in COMPARED:
            ax.plot([r["k"] for r in rs], [r[f"{g}_gain"] for r in rs], marker="o", label=g)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_title(f"{model}, {lead} lead demos, {share:g} held out", fontsize=9)
        ax.set_xlabel("support examples k")
        ax.set_ylabel("Δ dev accuracy vs memory off (points)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def build_parser() -> argparse.ArgumentParser:
    """The study's command-line options (also read back from a recorded command by
    benchmarks/lm_guard_draws.py)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="smollm2")
    ap.add_argument("--sizes", default="16,32,64", help="support examples per draw (comma list)")
    ap.add_argument("--draws", type=int, default=12, help="support sets drawn per size")
    ap.add_argument("--dev", type=int, default=400, help="development sentences (the pool's last)")
    ap.add_argument(
        "--lead", default="0", help="lead demonstrations taken from each support set (comma list)"
    )
    ap.add_argument(
        "--hold-out",
        default=f"{DEFAULT_HOLD_OUT:g}",
        help="shares of each support set held out in the read-out's cross-validation (comma list; "
        "each is a fit of the same draw)",
    )
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default=None)
    ap.add_argument("--seed", type=int, default=0, help="draws the support sets and seeds the fits")
    ap.add_argument(
        "--folds",
        type=int,
        default=5,
        help="folds of the read-out's cross-validation (TaskModel.fit(folds=); default 5, the library's;"
        " 1 with --hold-out 0.5: one split, the memory learns one half and is scored on the other)",
    )
    ap.add_argument(
        "--balance",
        action="store_true",
        help="the memory learns each draw's examples (after the lead) with an even label mix: as many"
        " of each label as the rarest has, the first in the draw's order (the row's 'learned' counts them)",
    )
    ap.add_argument(
        "--split-seed",
        type=int,
        default=0,
        help="seed of the 2,000-sentence test split whose other sentences are used (0: the published"
        " tables' split, so no test sentence of theirs is used whatever --seed)",
    )
    ap.add_argument(
        "--out", default=None, help="folder for the JSON/CSV/PNG/MD (default: the published places)"
    )
    ap.add_argument(
        "--render",
        action="store_true",
        help="no fits: write the table, CSV, plot and docs block again from the results JSON (in --out)",
    )
    return ap


def main() -> None:
    args = build_parser().parse_args()
    out = Path(args.out) if args.out else None
    json_path = results_json(out)
    if args.render:
        write_outputs(*saved_run(json_path), out)
        return
    args.sizes = [int(x) for x in args.sizes.split(",")]
    args.lead = [int(x) for x in args.lead.split(",")]
    args.hold_out = hold_out_shares(args.hold_out)
    if args.draws < 1 or args.dev < 10 or min(args.sizes) < 1 or min(args.lead) < 0 or args.folds < 1:
        raise SystemExit("--draws >= 1, --dev >= 10, sizes >= 1, lead >= 0 and --folds >= 1 are required")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    support, dev, data = development_split(args.dev, args.split_seed, args.draws, args.seed)
    with Timer() as total:
        rows = [
            r for name in filter(None, args.models.split(",")) for r in run_model(name, args, support, dev)
        ]
    meta = run_meta("lm_guard.py", data, TEMPLATE.to_dict(), args.threads, args.device, total, partial=False)
    run = {k: meta[k] for k in ("command", "machine", "seconds", "data")}
    kept, runs = earlier_other_models(json_path, {r["model"] for r in rows}, run)
    write_outputs(kept + rows, {**meta, "runs": runs}, out)


def development_split(dev_size: int, split_seed: int, draws: int, seed: int) -> tuple[list, list, str]:
    """(support sentences, development sentences, their description): the sentences left beside the
    2,000-sentence test split of ``split_seed``, the last ``dev_size`` for development. The split does
    not depend on ``seed`` (which only draws the support sets), so fresh draws never touch a test
    sentence of the published tables (split seed 0)."""
    pool, _ = load_data(2000, None, split_seed)
    support, dev = pool[:-dev_size], pool[-dev_size:]
    draw_seed = f", draw seed {seed}" if seed != split_seed else ""
    data = (
        f"Pang & Lee movie-review sentences: the {len(pool)} left beside the 2,000-sentence test split"
        f" (seed {split_seed}{draw_seed}), {len(dev)} development sentences (their last), support sets of"
        f" k drawn from the other {len(support)} ({draws} draws per k); no test sentence used"
    )
    return support, dev, data


def results_json(out: Path | None) -> Path:
    """The results JSON: in ``out``, or the published one."""
    return (out or REPO / "benchmarks" / "results") / "lm_guard.json"


def write_outputs(rows: list[dict], meta: dict[str, Any], out: Path | None) -> None:
    """Write the results JSON, every draw's CSV, the plot and the table (the docs block, or
    guard.md in ``out``)."""
    json_path = results_json(out)
    csv_path = (out or REPO / "docs" / "lm") / "guard.csv"
    png_path = csv_path.with_suffix(".png")
    lines = summary(rows)
    write_json(json_path, {**meta, "summary": lines, "rows": rows})
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    write_public_csv(csv_path, [{k: v for k, v in r.items() if k not in JSON_ONLY} for r in rows])
    plot(png_path, lines)
    md = markdown(lines, meta, png_path, csv_path, "lm/" if out is None else "")
    if out is None:
        update_doc_block(REPO / "docs" / "tasks.md", BLOCK, md, meta["command"])
    else:
        (out / "guard.md").write_text(md + "\n", encoding="utf-8")
    print(md)


if __name__ == "__main__":
    main()
