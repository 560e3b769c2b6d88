"""Many labels: which of 64 books of the Bible a verse comes from, measured with the commands a
user runs (docs/tasks.md, "Many labels").

Every method is a ``faast`` command line run as a subprocess on files ``faast assets export``
wrote, and timed from outside (model loading included):

* zero-shot: ``faast task evaluate`` on the test verses, the training verses' books as labels;
* FAAST: ``faast task learn --labels all`` on the training verses, then ``faast task evaluate``;
* FAAST + label head: the same ``learn`` with ``--head squared`` (the closed-form label head on
  the prompt-end state), then ``evaluate``; and with ``--head-layer auto`` (the head's layer
  chosen by cross-validation among decoder blocks), and with ``--head logistic``;
* in-context: ``faast task evaluate --demonstrations`` (the training verses, as many as fit);
* LoRA (backprop; not in the default methods: hours of this CPU): ``faast task evaluate --lora``;
* FaastClassifier on MiniLM sentence features: ``faast classify fit --cv --baselines``, then
  ``faast classify predict`` (its accuracy over all the test verses, those of a book the training
  verses lack counted as errors, as ``task evaluate`` counts them).

    python benchmarks/lm_many_labels.py --out benchmarks/results/lm_many_labels
    python benchmarks/lm_many_labels.py --out benchmarks/results/lm_many_labels --render

Each method's results are kept in ``--work`` (a folder of the exported files, the learned files
and each command's JSON), so a run that stops goes on where it stopped; ``--render`` rewrites the
table and plot from ``results.json`` alone.
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from faast.eval.text_metrics import label_accuracy
from faast.publish import save_figure, write_public_json, write_public_text
from task_bench import MODEL_NAMES, machine

TEMPLATE = "Verse: {input}\\nBook:"
HEADS = ("faast head", "faast head auto", "faast head logistic")
CLASSIFIERS = ("classifier", "classifier logistic")
METHODS = ("zero-shot", "faast", *HEADS, "in-context", "in-context calibrated", "lora", *CLASSIFIERS)
DEFAULT_METHODS = ("zero-shot", "faast", *HEADS, "in-context", "in-context calibrated", *CLASSIFIERS)
TITLES = {
    "zero-shot": "zero-shot (the training verses' books as labels)",
    "faast": "FAAST (`--labels all`)",
    "faast head": "FAAST + the closed-form label head on the prompt-end state (`--head squared`)",
    "faast head auto": "the same, the head's layer chosen by cross-validation (`--head-layer auto`)",
    "faast head logistic": "the same with the logistic label head (`--head logistic`)",
    "in-context": "in-context learning (the training verses as demonstrations, as many as fit)",
    "lora": "LoRA r=8 (backprop, `--lora`)",
    "in-context calibrated": "the same, contextually calibrated (`--calibrate`)",
    "classifier": "`FaastClassifier` on all-MiniLM-L6-v2 sentence features",
    "classifier logistic": "the same with the logistic loss (`--loss logistic`)",
}


def faast(*args: str) -> list[str]:
    """The command line of ``faast ARGS`` with this interpreter."""
    return [sys.executable, "-m", "faast.cli", *args]


def shown(cmd: list[str], work: Path) -> str:
    """``cmd`` as a user types it: ``faast ...`` with paths relative to the work folder."""
    words = ["faast", *cmd[3:]] if cmd[:3] == faast() else cmd
    return shlex.join(w.replace(f"{work}/", "") for w in words)


def run(cmd: list[str], work: Path, log: Path) -> float:
    """Run ``cmd`` in ``work`` (its output appended to ``log``); its wall-clock seconds. A failing
    command stops the benchmark with its log named."""
    start = time.perf_counter()
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(f"$ {shown(cmd, work)}\n")
        fh.flush()
        done = subprocess.run(cmd, cwd=work, stdout=fh, stderr=subprocess.STDOUT, check=False)
    if done.returncode:
        raise SystemExit(f"{shown(cmd, work)} failed (exit {done.returncode}); see {log}")
    return time.perf_counter() - start


def books(path: Path) -> list[str]:
    """The distinct books of an exported JSONL file, in order of first appearance."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return list(dict.fromkeys(r["book"] for r in rows))


def _result_json(method: str, work: Path) -> Path:
    """The JSON a language-model method's ``evaluate`` writes (``--json``)."""
    return work / f"{method.replace(' ', '-')}.json"


def steps(method: str, args: argparse.Namespace, work: Path) -> list[tuple[str, list[str]]]:
    """(step name, command) of ``method``, in order; its result JSON is ``<method>.json``."""
    model, common = args.model, ["--output-column", "book", "--threads", str(args.threads)]
    template = ["--template", TEMPLATE]  # "\\n" as a user types it; faast reads the escape
    out = _result_json(method, work)
    train, test = work / "verses.jsonl", work / "verses-test.jsonl"
    evaluate = ["task", "evaluate", "--model", model, "--examples", str(test), *common, "--json", str(out)]
    if method == "zero-shot":
        names = books(train)
        if any("," in name for name in names):
            raise ValueError(f"a book name holds a comma, which --labels would split: {names}")
        labels = ",".join(names)
        return [("evaluate", faast(*evaluate, "--labels", labels, *template))]
    if method == "faast" or method in HEADS:
        weights = work / f"{method.replace(' ', '-')}.safetensors"
        loss = "logistic" if method.endswith("logistic") else "squared"
        head = [] if method == "faast" else ["--head", loss]
        head += ["--head-layer", "auto"] if method == "faast head auto" else []
        learn = ["task", "learn", "--model", model, "--examples", str(train), *common, "--labels", "all"]
        return [
            ("learn", faast(*learn, *template, *head, "--out", str(weights))),
            ("evaluate", faast(*evaluate, "--fast-weights", str(weights))),
        ]
    if method in ("in-context", "in-context calibrated"):
        calibrate = ["--calibrate"] if method.endswith("calibrated") else []
        demos = ["--demonstrations", str(train), "--labels", "all", *template, *calibrate]
        return [("evaluate", faast(*evaluate, *demos))]
    if method == "lora":
        return [("evaluate", faast(*evaluate, "--lora", str(train), "--labels", "all", *template))]
    if method in CLASSIFIERS:
        clf, pred = _classifier_files(method, work)
        col = ["--label-column", "book", "--threads", str(args.threads)]
        how = ["--cv", "--baselines"] if method == "classifier" else ["--loss", "logistic"]
        return [
            ("fit", faast("classify", "fit", str(train), "--model", str(clf), *col, *how)),
            (
                "predict",
                faast("classify", "predict", str(test), "--model", str(clf), *col, "--out", str(pred)),
            ),
        ]
    raise ValueError(f"unknown method {method!r}; use {', '.join(METHODS)}")


def _classifier_files(method: str, work: Path) -> tuple[Path, Path]:
    """(the saved classifier's folder, its predictions CSV) of a classifier method."""
    slug = method.replace("classifier", "").strip().replace(" ", "-")
    suffix = f"-{slug}" if slug else ""
    return work / f"books-clf{suffix}", work / f"classifier{suffix}-predictions.csv"


def classifier_scores(work: Path, method: str = "classifier") -> dict[str, Any]:
    """The classifier's test scores from its predictions CSV (every test verse; a book it does not
    know counts as an error) and its cross-validation from the saved classifier's metadata."""
    clf, pred = _classifier_files(method, work)
    test = [json.loads(x) for x in (work / "verses-test.jsonl").read_text(encoding="utf-8").splitlines() if x]
    with open(pred, encoding="utf-8", newline="") as fh:
        preds = [row["predicted"] for row in csv.DictReader(fh)]
    refs = [r["book"] for r in test]
    info = json.loads((clf / "classifier.json").read_text(encoding="utf-8"))
    classes = [str(c) for c in info["classes"]]
    unknown = list(dict.fromkeys(r for r in refs if r not in classes))
    result = label_accuracy(preds, refs, [*classes, *unknown])
    result["references_outside_labels"] = sum(r not in classes for r in refs)
    result["cross_validation"] = info.get("metadata", info).get("cross_validation")
    return result


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Run every method not yet done in ``--work``; the results so far (also in results.json)."""
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    log, saved = work / "commands.log", Path(args.out) / "results.json"
    results: dict[str, Any] = json.loads(saved.read_text(encoding="utf-8")) if saved.exists() else {}
    results.setdefault("methods", {})
    if not (work / "verses-test.jsonl").exists():
        export = ["assets", "export", "bible-en-es", "--out", str(work / "verses.jsonl"), "--limit"]
        export += [str(args.limit), "--test", str(args.test), "--test-out", str(work / "verses-test.jsonl")]
        run(faast(*export, "--seed", str(args.seed)), work, log)
    results["meta"] = {
        "command": "python benchmarks/lm_many_labels.py " + shlex.join(sys.argv[1:]),
        "machine": machine(args.threads),
        "model": args.model,
        "limit": args.limit,
        "test": args.test,
        "seed": args.seed,
        "train_books": len(books(work / "verses.jsonl")),
        "test_books": len(books(work / "verses-test.jsonl")),
    }
    for method in args.methods:
        if method in results["methods"]:
            continue
        print(f"[lm_many_labels] {method}", flush=True)
        planned = steps(method, args, work)
        times = {name: run(cmd, work, log) for name, cmd in planned}
        if method in CLASSIFIERS:
            scores = classifier_scores(work, method)
        else:
            scores = json.loads(_result_json(method, work).read_text(encoding="utf-8"))
        scores.pop("confusion", None)
        scores.pop("per_label", None)
        commands = [shown(cmd, work) for _, cmd in planned]
        results["methods"][method] = {"scores": scores, "seconds": times, "commands": commands}
        write_public_json(saved, results)
    return results


def _cell_time(seconds: dict[str, float]) -> str:
    return ", ".join(f"{name} {s:.0f} s" for name, s in seconds.items())


def render(results: dict[str, Any], out: Path) -> None:
    """results.md (the table quoted in docs/tasks.md) and results.png from ``results``."""
    meta, rows = results["meta"], results["methods"]
    lines = [
        f"Command: `{meta['command']}`  ",
        f"Data: bible-en-es (World English Bible verses), {meta['limit']:,} training verses of "
        f"{meta['train_books']} books, {meta['test']} held-out verses of {meta['test_books']} books "
        f"(export seed {meta['seed']}); a test verse of a book the training verses lack counts as an error  ",
        f"Model: {MODEL_NAMES.get(meta['model'], meta['model'])} (`--model {meta['model']}`); the "
        "classifier: all-MiniLM-L6-v2 sentence features (offline assets)  ",
        f"Machine: {meta['machine']}; times are whole commands (model loading included), one run each",
        "",
        "| method | accuracy | 95 % interval (Wilson) | balanced accuracy | macro-F1 | time |",
        "|---|---|---|---|---|---|",
    ]
    for method in METHODS:
        if method not in rows:
            continue
        s, low_high = rows[method]["scores"], rows[method]["scores"]["ci95_wilson"]
        lines.append(
            f"| {TITLES[method]} | {100 * s['accuracy']:.2f} % | {100 * low_high[0]:.2f}–"
            f"{100 * low_high[1]:.2f} % | {100 * s['balanced_accuracy']:.2f} % | {100 * s['macro_f1']:.2f} % "
            f"| {_cell_time(rows[method]['seconds'])} |"
        )
    cv = rows.get("classifier", {}).get("scores", {}).get("cross_validation")
    if cv:
        base = ", ".join(f"{name} {100 * b['accuracy']:.2f} %" for name, b in cv.get("baselines", {}).items())
        lines += [
            "",
            f"The classifier's {cv['folds']}-fold cross-validation on the training verses: "
            f"{100 * cv['accuracy']:.2f} % ± {100 * cv['std']:.2f}"
            + (f" ({base} on the same folds)." if base else "."),
        ]
    write_public_text(out / "results.md", "\n".join(lines) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [m for m in METHODS if m in rows]
    acc = [100 * rows[m]["scores"]["accuracy"] for m in names]
    low = [a - 100 * rows[m]["scores"]["ci95_wilson"][0] for a, m in zip(acc, names, strict=True)]
    high = [100 * rows[m]["scores"]["ci95_wilson"][1] - a for a, m in zip(acc, names, strict=True)]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.barh(names[::-1], acc[::-1], xerr=[low[::-1], high[::-1]], color="#4c72b0", capsize=3)
    ax.set_xlabel(f"test accuracy, % ({meta['test']} verses, 95 % Wilson interval)")
    ax.set_title(f"Book of a Bible verse among {meta['train_books']} ({meta['model']})", fontsize=10)
    fig.tight_layout()
    save_figure(fig, out / "results.png")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="benchmarks/results/lm_many_labels", help="results folder")
    ap.add_argument("--work", default=None, help="folder of the files the commands write (default: OUT/work)")
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--limit", type=int, default=2000, help="training verses")
    ap.add_argument("--test", type=int, default=500, help="held-out verses")
    ap.add_argument("--seed", type=int, default=0, help="the export's seed")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--methods", default=",".join(DEFAULT_METHODS), help=f"comma-separated, of {', '.join(METHODS)}"
    )
    ap.add_argument("--render", action="store_true", help="only rewrite the table and plot from results.json")
    args = ap.parse_args()
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        ap.error(f"unknown methods {unknown}; use {', '.join(METHODS)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    args.work = args.work or str(out / "work")
    if args.render:
        results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    else:
        results = measure(args)
    render(results, out)
    print((out / "results.md").read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
