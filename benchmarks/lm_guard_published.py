"""Which published FAAST rows a guard would change: each row of a published sentiment table is fit
again (same pool, k, pair mode, key features, lead demonstrations and seed as the command that
made it), without scoring the test sentences; every guard's choice comes from the same
cross-validation scores (``FitReport.decisions``).

A row whose choice under a guard equals its published read-out keeps its test accuracy under that
guard (the read-out is the only thing the guard decides); the "one-se" column also checks that the
published read-out is reproduced. Rows with fewer than 8 examples (nothing validated) and rows
beyond ``--max-k`` examples are listed as not checked. ``--hold-out`` fits each row once per share
of its examples held out in the cross-validation (``TaskModel.fit(hold_out=)``; the published
rows: 0.5). Each fit runs its own forward passes (the task's state cache is cleared before it), so
the seconds in its note are its cost.

    python benchmarks/lm_guard_published.py --blocks sentiment-lead-smollm2,sentiment-qwen2.5 --max-k 1000

The tables are read from ``benchmarks/results/lm_<block>.json`` as they are now, or, with
``--tables-at REV``, as they were at git revision REV of this repository (``git show``): a
published check of tables that were later run again is re-run that way.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from faast.lm import FaastConfig, get_faast_model
from faast.lm.task import MIN_VALIDATION_EXAMPLES, TaskModel, TaskSpec
from faast.lm.task_choice import GUARDS
from faast.lm.text import load_causal_lm
from faast.publish import write_public_csv, write_public_text
from lm_sentiment import LABELS, TEMPLATE, load_data, parse_args
from task_bench import (
    MODEL_NAMES,
    PUBLISHED_HOLD_OUT,
    REPO,
    Timer,
    earlier_other_models,
    hold_out_shares,
    machine,
    published_candidates,
    rel,
    write_json,
)

#: "faast-answer", "faast-all +4096 key features", "faast-answer + 4 in context"
METHOD = re.compile(r"faast-(answer|all)(?: \+(\d+) key features)?(?: \+ (\d+) in context)?$")
NAMES = {v: k for k, v in MODEL_NAMES.items()}


def table_text(path: Path, revision: str | None) -> str:
    """The text of the results file ``path`` (in this repository), now or at git ``revision``."""
    if revision is None:
        if not path.is_file():
            raise SystemExit(f"{path.stem.removeprefix('lm_')}: no results file {rel(path)}")
        return path.read_text(encoding="utf-8")
    if revision.startswith("-"):  # git would read it as an option
        raise SystemExit(f"--tables-at {revision}: not a git revision")
    spec = f"{revision}:{path.relative_to(REPO).as_posix()}"
    try:
        shown = subprocess.run(
            ["git", "-C", str(REPO), "show", spec], capture_output=True, text=True, encoding="utf-8"
        )
    except FileNotFoundError:
        raise SystemExit("--tables-at needs git on PATH") from None
    if shown.returncode != 0:
        raise SystemExit(f"--tables-at {revision}: git show {spec} failed: {shown.stderr.strip()}")
    return shown.stdout


def published_rows(block: str, revision: str | None = None) -> list[dict[str, Any]]:
    """The FAAST rows of ``block`` with the command-line options of the run that made each, from
    its results file now or at git ``revision``."""
    path = REPO / "benchmarks" / "results" / f"lm_{block}.json"  # as publish_task_table names it
    data = json.loads(table_text(path, revision))
    if "runs" not in data:
        raise SystemExit(f"{block}: no per-model runs in its results file")
    out = []
    for row in data["rows"]:
        match = METHOD.match(row["method"])
        if match is None or row["model"] not in data["runs"]:
            continue
        command = data["runs"][row["model"]]["command"]
        words = shlex.split(command)
        if words[1] != "benchmarks/lm_sentiment.py":
            raise SystemExit(f"{block}: not a sentiment table ({command})")
        mode, features, lead = match.groups()
        read = row["detail"].split("; ")[-1]  # lead rows: "4 in context + 12 learned; <read-out>"
        out.append(
            {
                "block": block,
                "model": row["model"],
                "method": row["method"],
                "k": row["k"],
                "mode": mode,
                "features": int(features or 0),
                "lead": int(lead or 0),
                "published": read,
                "score": row["score"],
                "options": parse_args(words[2:]),
            }
        )
    return out


def check(
    rows: list[dict[str, Any]], args: argparse.Namespace, on_model: Callable[[list], Any] | None = None
) -> list[dict[str, Any]]:
    """Fit every row again and record each guard's choice; one model loaded at a time, and
    ``on_model(results so far)`` after each (a stopped run keeps what it checked)."""
    results = []
    for model_label in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model_label]
        todo = [r for r in mine if MIN_VALIDATION_EXAMPLES <= r["k"] - r["lead"] and r["k"] <= args.max_k]
        for r in mine:
            if r not in todo:
                why = (
                    "nothing validated" if r["k"] - r["lead"] < MIN_VALIDATION_EXAMPLES else "beyond --max-k"
                )
                results += [_result(r, None, why, share) for share in args.hold_out]
        if not todo:
            continue
        model, tok = load_causal_lm(NAMES.get(model_label, model_label), device=args.device)
        fm = get_faast_model(model, FaastConfig(num_memories=0))
        pools: dict[tuple, list] = {}
        task, task_key = None, None  # one task (state cache) at a time, for rows of the same setting
        for r in tqdm(todo, desc=f"{model_label}: fits of published rows"):
            o = r["options"]
            key = (o.test, o.pool, o.seed)
            if key not in pools:
                pools[key] = load_data(o.test, o.pool, o.seed)[0]
            pool = pools[key]
            if (key, r["mode"], r["lead"]) != task_key:
                demos = [(e.input, e.output) for e in pool[: r["lead"]]]
                task_key = (key, r["mode"], r["lead"])
                task = TaskModel(fm, tok, TaskSpec(TEMPLATE, r["mode"], LABELS, demos), cache=True)
            task.reset()
            fm.set_output_key_features(r["features"])
            for share in args.hold_out:
                task.reset().clear_cache()  # every fit runs its forward passes: its seconds are its cost
                with Timer() as t:
                    report = task.fit(
                        pool[r["lead"] : r["k"]],
                        labels=LABELS,
                        candidates=published_candidates(),
                        hold_out=share,
                        seed=o.seed,
                        progress=False,
                    )
                results.append(_result(r, report, f"{t.s:.0f} s", share))
        del task, fm, model
        if on_model is not None:
            on_model(results)
    return results


def _result(r: dict[str, Any], report: Any, note: str, share: float) -> dict[str, Any]:
    out = {k: r[k] for k in ("block", "model", "method", "k", "published", "score")}
    out["hold_out"] = share
    for g in GUARDS:
        out[g] = None if report is None else report.decisions.get(g, report.chosen.name)
    out["sign_flip_p"] = None if report is None else report.sign_flip_p
    out["n_validation"] = None if report is None else report.n_validation
    out["note"] = note
    return out


def markdown(results: list[dict[str, Any]], header: str) -> str:
    lines = [
        header,
        "",
        "Each guard's column: = when its choice is the published read-out (the row's accuracy stands"
        " under that guard), else the read-out it chooses.",
        "",
        "| block | model | method | k | published read-out | accuracy | held out | "
        + " | ".join(GUARDS)
        + " | p | note |",
        "|---|---|---|---:|---|---:|---:|" + "---|" * len(GUARDS) + "---:|---|",
    ]
    for r in results:
        cells = [("—" if r[g] is None else "=" if r[g] == r["published"] else r[g]) for g in GUARDS]
        p = "" if r["sign_flip_p"] is None else f"{r['sign_flip_p']:.3f}"
        lines.append(
            f"| {r['block']} | {r['model']} | {r['method']} | {r['k']} | {r['published']} | "
            f"{100 * r['score']:.2f} | {r.get('hold_out', PUBLISHED_HOLD_OUT):g} | "
            + " | ".join(cells)
            + f" | {p} | {r['note']} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--blocks", required=True, help="published sentiment tables (comma list)")
    ap.add_argument("--models", default=None, help="only these models' rows (display names, comma list)")
    ap.add_argument("--max-k", type=int, default=1000, help="skip rows with more examples than this")
    ap.add_argument(
        "--hold-out",
        default=f"{PUBLISHED_HOLD_OUT:g}",
        help="shares of the examples held out in the cross-validation (comma list; a fit for each; "
        f"default {PUBLISHED_HOLD_OUT:g}, as the published rows were fit)",
    )
    ap.add_argument(
        "--tables-at",
        default=None,
        metavar="REV",
        help="read the published tables as they were at this git revision (default: as they are now)",
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default=None)
    ap.add_argument(
        "--out", default=str(REPO / "benchmarks" / "results"), help="folder for lm_guard_published.*"
    )
    args = ap.parse_args()
    args.hold_out = hold_out_shares(args.hold_out)
    torch.set_num_threads(args.threads)
    rows = [r for b in args.blocks.split(",") if b for r in published_rows(b, args.tables_at)]
    if args.models:
        rows = [r for r in rows if r["model"] in args.models.split(",")]
    with Timer() as total:
        results = check(rows, args, lambda so_far: publish(so_far, args, total, partial=True))
    print(publish(results, args, total, partial=False))


def publish(results: list[dict[str, Any]], args: argparse.Namespace, total: Timer, *, partial: bool) -> str:
    """Write lm_guard_published.{json,csv,md} into ``args.out``, keeping the rows of the models this
    run does not check from an earlier run there (each model's rows with the command that checked
    them; a model's rows are written once all are checked); ``partial``: the run goes on (its
    seconds so far)."""
    out = Path(args.out)
    path = out / "lm_guard_published.json"
    command = "python benchmarks/lm_guard_published.py " + shlex.join(sys.argv[1:])
    seconds = time.perf_counter() - total.start if partial else total.s
    run = {"command": command, "machine": machine(args.threads, args.device), "seconds": seconds}
    kept, runs = earlier_other_models(path, {r["model"] for r in results}, run)
    results = kept + results
    write_json(path, {"runs": runs, "rows": results})
    write_public_csv(out / "lm_guard_published.csv", results)
    header = [
        f"- **{m}**: `{r['command']}` ({r['machine']}; {r['seconds'] / 60:.0f} min" + ")"
        for m, r in runs.items()
    ]
    md = markdown(results, "\n".join(header))
    write_public_text(out / "lm_guard_published.md", md + "\n")
    return md


if __name__ == "__main__":
    main()
