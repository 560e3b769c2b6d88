"""Shared parts of the task benchmarks (``lm_sentiment.py``, ``lm_translation.py``): timing, the
machine description, result rows, and writing JSON / CSV / Markdown / PNG with repository-relative
paths."""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from faast.environment import machine_line
from faast.eval.report import update_doc_block
from faast.lm.task_choice import ANCHORS, CALIBRATED_SETS, default_candidates
from faast.publish import write_public_csv, write_public_json, write_public_text

REPO = Path(__file__).resolve().parent.parent


def rel(path: str | os.PathLike[str]) -> str:
    """``path`` relative to the repository root when it lies inside it."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(REPO))
    except ValueError:
        return str(path)


def machine(threads: int, device: str | None = None) -> str:
    """The hardware a table was measured on: the CPU, and the GPU when ``device`` is a CUDA one."""
    gpu = "no GPU"
    if device is not None and torch.device(device).type == "cuda":
        precision = torch.get_float32_matmul_precision()  # "highest": no TF32
        gpu = f"GPU {torch.cuda.get_device_name(torch.device(device))} (float32 matmul precision {precision})"
    return f"{machine_line()}, {threads} thread(s), {gpu}"


class Timer:
    """``with Timer() as t: ...`` then ``t.s`` (wall-clock seconds)."""

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        self.s = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.s = time.perf_counter() - self.start


def run_meta(
    script: str,
    data: str,
    template: dict[str, Any],
    threads: int,
    device: str | None,
    total: Timer,
    *,
    partial: bool,
) -> dict[str, Any]:
    """The description of a run for :func:`publish_task_table`: its command line (``script`` under
    benchmarks/ with this process's arguments), data (marked partial while the run goes on),
    prompt template, machine and seconds so far (or in all, once ``total`` has stopped)."""
    return {
        "command": f"python benchmarks/{script} " + shlex.join(sys.argv[1:]),
        "data": data + ("; **partial: the rows measured before the run stopped**" if partial else ""),
        "template": template,
        "machine": machine(threads, device),
        "seconds": time.perf_counter() - total.start if partial else total.s,
    }


class PublishingRows(list):
    """The rows of a running benchmark: ``on_change(rows)`` is called after each append, so a long
    run publishes its table as it grows and one stopped early keeps what it measured."""

    def __init__(self, on_change: Callable[[list[Row]], Any]) -> None:
        super().__init__()
        self.on_change = on_change

    def append(self, row: Row) -> None:
        super().append(row)
        self.on_change(list(self))


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


@dataclass
class Row:
    """One line of a results table. k: support examples the method used (0 for zero-shot)."""

    model: str
    method: str
    k: int
    score: float
    ci95: float | None = None
    adapt_s: float = 0.0
    infer_ms: float = 0.0
    nbytes: int = 0
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def flat(self) -> dict[str, Any]:
        out = asdict(self)
        extra = out.pop("extra")
        out.update({f"x_{k}": v for k, v in extra.items()})
        return out


def scored_accuracy(scores: torch.Tensor, examples: Sequence[Any], labels: Sequence[str]) -> float:
    """Share of ``examples`` (each with an ``output`` among ``labels``) whose best-scored label is
    right; scores: (n, labels) in ``labels`` order."""
    best = scores.argmax(dim=1).tolist()
    return sum(labels[b] == e.output for b, e in zip(best, examples, strict=True)) / len(examples)


def write_csv(path: Path, rows: Sequence[Row]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_public_csv(path, [r.flat() for r in rows])


def write_json(path: Path, obj: Any) -> None:
    write_public_json(path, obj)  # atomic, repository-relative paths


def block_results_name(block: str) -> str:
    """The results file of a docs block: ``lm_<block>.json``, dashes as underscores
    (``domain-correction-gemma3`` → ``lm_domain_correction_gemma3.json``)."""
    return f"lm_{block.replace('-', '_')}.json"


def faast_method(name: str, key_features: int) -> str:
    """The table's method label of FAAST rows read with ``key_features`` random key features."""
    return name + (f" +{key_features} key features" if key_features else "")


def human_bytes(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def earlier_other_models(
    path: Path, models: set[str], run: dict[str, Any]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(the rows of the models not in ``models`` from an earlier results file ``path`` — JSON with
    "rows" of dicts with a "model" and "runs" per model — or none, and per model the run that
    measured it: ``run`` for ``models``, the earlier entry for the others), so one table can be
    built model by model."""
    kept: list[dict[str, Any]] = []
    runs = {m: run for m in models}
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        kept = [r for r in old.get("rows", []) if r["model"] not in models]
        runs = {**{m: v for m, v in old.get("runs", {}).items() if m not in models}, **runs}
    return kept, runs


def merge_runs(path: Path, rows: Sequence[Row], meta: dict[str, Any]) -> tuple[list[Row], dict[str, Any]]:
    """Rows of the models measured now plus the rows of other models from an earlier run in
    ``path`` (JSON written by :func:`write_json`; :func:`earlier_other_models`); each model keeps
    the command, machine, duration and data of the run that measured it (``meta["runs"]``)."""
    run = {k: meta[k] for k in ("command", "machine", "seconds", "data")}
    kept, runs = earlier_other_models(path, {r.model for r in rows}, run)
    fields = {f for f in Row.__dataclass_fields__ if f != "extra"}
    earlier = [
        Row(
            **{k: v for k, v in r.items() if k in fields},
            extra={k[2:]: v for k, v in r.items() if k.startswith("x_")},
        )
        for r in kept
    ]
    return earlier + list(rows), {**meta, "runs": runs}


#: The guard of ``TaskModel.fit`` in the published task tables (``--guard``): they were made with
#: "one-se", the library's default until the development-sentence study of benchmarks/lm_guard.py
#: made it "sign-flip"; ``--guard sign-flip`` runs the library's default.
PUBLISHED_GUARD = "one-se"
#: The share of the examples ``TaskModel.fit`` held out in the published task tables and in the
#: rows of results files written before ``hold_out`` was an option (half).
PUBLISHED_HOLD_OUT = 0.5
#: The calibrated read-outs the published task tables' fits weighed: none (the default until
#: 2026-12-03, when :data:`faast.lm.task_choice.DEFAULT_CALIBRATED` became "all").
PUBLISHED_CALIBRATED = "none"
#: The guard's anchor of the published task tables' fits (:data:`faast.lm.task_choice.ANCHORS`): the
#: zero-shot model as it is (the default until 2026-12-03 evening, when
#: :data:`faast.lm.task_choice.DEFAULT_ANCHOR` became "tested"; it matters only with a calibrated
#: memory-off candidate, ``--calibrated zero-shot`` or ``all``).
PUBLISHED_ANCHOR = "zero-shot"


def saved_run(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(rows, the run's description) of a results JSON written with "rows" and a "summary" beside
    its description, for a benchmark's ``--render`` (the summary is made again from the rows)."""
    saved = json.loads(path.read_text(encoding="utf-8"))
    return saved["rows"], {k: v for k, v in saved.items() if k not in ("summary", "rows")}


def published_candidates(calibrated: str = PUBLISHED_CALIBRATED, mix: str = "prob") -> list:
    """The read-out candidates of a published study's fits: the plain ones and the calibrated set
    ``calibrated`` (:func:`faast.lm.task_choice.default_candidates`), so its command reproduces it
    whatever the library's default now is."""
    return default_candidates(mix, calibrated)


def hold_out_shares(text: str) -> list[float]:
    """The shares of a ``--hold-out`` comma list (each a fit), each in (0, 1]."""
    shares = [float(x) for x in text.split(",")]
    if not all(0 < x <= 1 for x in shares):
        raise SystemExit("--hold-out shares must lie in (0, 1]")
    return shares


def add_fit_options(ap: Any, labelled: bool = True) -> None:
    """The ``--guard``, ``--hold-out`` and (``labelled`` tasks: free text has nothing to calibrate)
    ``--calibrated`` and ``--anchor`` options of a task benchmark (defaults :data:`PUBLISHED_GUARD`,
    :data:`PUBLISHED_HOLD_OUT`, :data:`PUBLISHED_CALIBRATED`, :data:`PUBLISHED_ANCHOR`: the
    published tables' settings)."""
    if labelled:
        _add_labelled_fit_options(ap)
    ap.add_argument(
        "--guard",
        default=PUBLISHED_GUARD,
        help=f"TaskModel.fit's guard (default {PUBLISHED_GUARD}, as the published tables were made; "
        "the library's default is faast.lm.task.DEFAULT_GUARD)",
    )
    ap.add_argument(
        "--hold-out",
        type=float,
        default=PUBLISHED_HOLD_OUT,
        help=f"TaskModel.fit's share of the examples held out (default {PUBLISHED_HOLD_OUT:g}, as the "
        "published tables were made; the library's default is faast.lm.task.DEFAULT_HOLD_OUT)",
    )


def _add_labelled_fit_options(ap: Any) -> None:
    """The ``--calibrated`` and ``--anchor`` options of :func:`add_fit_options` (labelled tasks)."""
    ap.add_argument(
        "--calibrated",
        choices=CALIBRATED_SETS,
        default=PUBLISHED_CALIBRATED,
        help=f"the calibrated read-outs TaskModel.fit also weighs (default {PUBLISHED_CALIBRATED}, as the "
        "published tables were made; the library's default is faast.lm.task_choice.DEFAULT_CALIBRATED)",
    )
    ap.add_argument(
        "--anchor",
        choices=ANCHORS,
        default=PUBLISHED_ANCHOR,
        help=f"what TaskModel.fit's guard falls back on and tests against (default {PUBLISHED_ANCHOR}, as "
        "the published tables were made; the library's default is faast.lm.task_choice.DEFAULT_ANCHOR)",
    )


#: The cost columns every task table ends with (issue #9): the row's ``adapt_s``, ``infer_ms``,
#: ``nbytes`` and ``detail``.
COST_COLUMNS = ("adaptation s", "inference ms/example", "bytes at inference", "read-out / settings")
#: Display names of the offline models the task benchmarks run (``--models``); other names print as given.
MODEL_NAMES = {
    "smollm2": "SmolLM2-135M-Instruct",
    "gemma3": "Gemma-3-270M",
    "qwen2.5": "Qwen2.5-Coder-0.5B-Instruct",
}


@dataclass(frozen=True)
class TableFormat:
    """How one benchmark's table is published. ``script``: its file under benchmarks/;
    ``header``: the column names after ``model | method | k``; ``row_line``: one row's cells for
    them; ``plot(path, rows)``: writes the PNG; ``image_alt``: the PNG's alt text."""

    script: str
    header: Sequence[str]
    row_line: Callable[[Row], str]
    plot: Callable[[Path, list[Row]], None]
    image_alt: str


def publish_run(
    fmt: TableFormat,
    name: str,
    rows: Sequence[Row],
    args: Any,
    data: str,
    template: dict[str, Any],
    total: Timer,
    *,
    partial: bool,
) -> str:
    """Publish the table ``name`` of a run (:func:`run_meta` from ``args.threads``,
    ``args.device``; into ``args.out`` when set): :func:`publish_task_table`."""
    meta = run_meta(fmt.script, data, template, args.threads, args.device, total, partial=partial)
    return publish_task_table(name, rows, meta, Path(args.out) if args.out else None, fmt)


def publish_task_table(
    name: str, rows: Sequence[Row], meta: dict[str, Any], out: Path | None, fmt: TableFormat
) -> str:
    """Merge ``rows`` with other models' rows of an earlier run (:func:`merge_runs`), write
    ``lm_<name>.json``, ``<name>.csv`` + ``.png`` and the ``<name>`` block of docs/tasks.md (or
    everything into the folder ``out``) in the format ``fmt``; returns the Markdown."""
    json_path = (out or REPO / "benchmarks" / "results") / f"lm_{name}.json"
    csv_path = (out or REPO / "docs" / "lm") / f"{name}.csv"
    png_path = csv_path.with_suffix(".png")
    merged, meta = merge_runs(json_path, rows, meta)
    write_json(json_path, {**meta, "rows": [r.flat() for r in merged]})
    write_csv(csv_path, merged)
    fmt.plot(png_path, merged)
    lines = [
        f"- **{model}**: {run['data']}; `{run['command']}` ({run['machine']}; {run['seconds'] / 60:.0f} min)"
        for model, run in meta["runs"].items()
    ]
    columns = ["model", "method", "k", *fmt.header]
    lines += [
        "",
        "| " + " | ".join(columns) + " |",
        "|---|---|" + "---:|" * (len(columns) - 3) + "---|",
    ]
    lines += [f"| {r.model} | {r.method} | {r.k} | {fmt.row_line(r)} |" for r in merged]
    lines += [
        "",
        f"![{fmt.image_alt}](lm/{png_path.name})",
        "",
        f"Every number: [`{rel(csv_path)}`](lm/{csv_path.name}).",
    ]
    md = "\n".join(lines)
    if out is None:
        update_doc_block(REPO / "docs" / "tasks.md", name, md, meta["command"])
    else:
        write_public_text(out / f"{name}.md", md)
    return md
