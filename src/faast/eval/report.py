"""Reporting: markdown tables (also printed), a CSV of every number, a PNG plot, a JSON of the
run's settings and machine, and a short comparison of FAAST with the baselines."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from faast.eval.protocols import MethodResult
from faast.io import atomic_write, save_json
from faast.publish import public_paths, save_figure, write_public_csv

CSV_FIELDS = (
    "regime", "shots", "method", "label", "accuracy", "ci95", "fit_s", "predict_s", "nbytes", "params",
    "val_accuracy", "select_s", "episodes", "n_support", "n_query",
)  # fmt: skip


def _by(
    results: Sequence[MethodResult],
) -> tuple[list[str], list[int | None], dict[tuple[str, Any], MethodResult]]:
    methods = list(dict.fromkeys(r.method for r in results))
    shots = sorted({r.shots for r in results if r.shots is not None})
    regimes: list[int | None] = [*shots, *([None] if any(r.shots is None for r in results) else [])]
    return methods, regimes, {(r.method, r.shots): r for r in results}


def _label(results: Sequence[MethodResult], key: str) -> str:
    return next(r.label for r in results if r.method == key)


def _bytes(n: int) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def _seconds(s: float) -> str:
    return f"{s * 1e3:.1f} ms" if s < 1 else f"{s:.2f} s"


def accuracy_table(results: Sequence[MethodResult]) -> str:
    """Markdown: one row per method, accuracy (%) ± 95 % CI per regime."""
    methods, regimes, cell = _by(results)
    head = ["method"] + [("full data" if k is None else f"{k}-shot") for k in regimes]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in methods:
        row = [_label(results, m)]
        for k in regimes:
            r = cell.get((m, k))
            row.append("" if r is None else f"{100 * r.accuracy:.2f} ± {100 * r.ci95:.2f}")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def cost_table(results: Sequence[MethodResult]) -> str:
    """Markdown: fit and predict time per regime (per episode for few-shot) and inference bytes."""
    methods, regimes, cell = _by(results)
    head = ["method"]
    for k in regimes:
        name = "full" if k is None else f"{k}-shot"
        head += [f"fit {name}", f"predict {name}"]
    head += ["bytes kept (largest regime)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in methods:
        row = [_label(results, m)]
        for k in regimes:
            r = cell.get((m, k))
            row += ["", ""] if r is None else [_seconds(r.fit_s), _seconds(r.predict_s)]
        last = cell.get((m, regimes[-1]))
        row.append("" if last is None else _bytes(last.nbytes))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def params_table(results: Sequence[MethodResult]) -> str:
    """Markdown: the hyper-parameters chosen on validation, with their validation accuracy."""
    lines = [
        "| regime | method | chosen on validation | val. accuracy | selection time |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        params = ", ".join(f"{k}={v}" for k, v in r.params.items())
        val = "—" if r.val_accuracy != r.val_accuracy else f"{100 * r.val_accuracy:.2f}"
        lines.append(f"| {r.regime} | {r.label} | {params} | {val} | {_seconds(r.select_s)} |")
    return "\n".join(lines)


def comparison(results: Sequence[MethodResult]) -> list[str]:
    """FAAST against the baselines, one fact per line: full-data accuracy against the best
    baseline, full-data fit time against each baseline, and each few-shot regime against the best
    baseline there."""
    _, regimes, cell = _by(results)
    out = []
    for shots in regimes:
        faast = cell.get(("faast", shots))
        others = [r for (m, k), r in cell.items() if k == shots and m != "faast"]
        if faast is None or not others:
            continue
        best = max(others, key=lambda r: r.accuracy)
        gap = 100 * (faast.accuracy - best.accuracy)
        out.append(
            f"{faast.regime}: FAAST {100 * faast.accuracy:.2f} % vs the best baseline, {best.label}, "
            f"{100 * best.accuracy:.2f} % ({gap:+.2f} points)"
        )
        if shots is None:
            ratios = ", ".join(
                f"{r.label} {r.fit_s:.2f} s ({r.fit_s / max(faast.fit_s, 1e-12):.1f}×)" for r in others
            )
            out.append(f"full-data fit: FAAST {faast.fit_s:.2f} s; {ratios}")
    return out


def write_csv(path: str | os.PathLike[str], results: Sequence[MethodResult], meta: dict[str, Any]) -> Path:
    """One row per (method, regime), every field, plus the run's identifying settings (through
    :func:`~faast.publish.write_public_csv`: atomic, paths repository-relative)."""
    extra = {k: meta[k] for k in ("dataset", "encoder", "resolution", "seed") if k in meta}
    rows = []
    for r in results:
        row = r.row()
        rows.append({**{field: row.get(field) for field in CSV_FIELDS}, **extra})
    return write_public_csv(path, rows)


def plot(
    path: str | os.PathLike[str], results: Sequence[MethodResult], title: str, full_x: float | None
) -> Path:
    """PNG: accuracy vs shots per class (left) and fit time vs shots (right), one line per method.
    Full data is drawn at ``full_x`` (its examples per class) with a hollow marker."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods, regimes, cell = _by(results)
    fig, (ax_acc, ax_fit) = plt.subplots(1, 2, figsize=(12, 4.8))
    for i, m in enumerate(methods):
        color, label = f"C{i}", _label(results, m)
        pts = [(k, cell[(m, k)]) for k in regimes if k is not None and (m, k) in cell]
        full = cell.get((m, None)) if full_x else None
        if pts:
            xs = [k for k, _ in pts]
            ax_acc.errorbar(
                xs, [100 * r.accuracy for _, r in pts], yerr=[100 * r.ci95 for _, r in pts],
                marker="o", capsize=3, color=color, label=label,
            )  # fmt: skip
            ax_fit.plot(xs, [r.fit_s for _, r in pts], marker="o", color=color, label=label)
        if full is not None:
            x = full_x * 1.06 ** (i - (len(methods) - 1) / 2)  # spread overlapping squares
            ax_acc.errorbar(
                [x], [100 * full.accuracy], yerr=[100 * full.ci95], marker="s", mfc="none",
                capsize=3, color=color, label=None if pts else label,
            )  # fmt: skip
            ax_fit.plot([x], [full.fit_s], marker="s", mfc="none", color=color)
            if pts:
                last_x, last = pts[-1]
                ax_acc.plot([last_x, x], [100 * last.accuracy, 100 * full.accuracy], ":", color=color, lw=1)
                ax_fit.plot([last_x, x], [last.fit_s, full.fit_s], ":", color=color, lw=1)
    for ax in (ax_acc, ax_fit):
        ax.set_xscale("log")
        ax.set_xlabel("training examples per class (squares: full data)")
        ax.grid(True, which="both", alpha=0.3)
    ax_acc.set_ylabel("test accuracy (%) ± 95 % CI")
    ax_fit.set_ylabel("fit time (s; per episode for few-shot)")
    ax_fit.set_yscale("log")
    ax_acc.legend(fontsize=8, loc="lower right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)


def markdown_report(
    results: Sequence[MethodResult], meta: dict[str, Any], png_name: str, csv_name: str
) -> str:
    """The report as markdown: settings, tables, bars, plot."""
    parts = [
        f"**Data** {meta.get('data_desc', '')}  ",
        f"**Encoder** {meta.get('encoder_desc', '')}  ",
        f"**Protocol** {meta.get('protocol_desc', '')}  ",
        f"**Machine** {meta.get('machine_desc', '')}  ",
        f"**Command** `{meta.get('command', '')}`",
        "",
        "Accuracy (%), 95 % confidence interval (few-shot: over episodes; full data: binomial):",
        "",
        accuracy_table(results),
        "",
        "Time on the cached features (few-shot: mean per episode) and the bytes a method keeps to "
        "answer queries:",
        "",
        cost_table(results),
        "",
        f"![accuracy and fit time vs shots]({png_name})",
        "",
        "FAAST against the baselines:",
        "",
        *[f"- {line}" for line in comparison(results)],
        "",
        "<details><summary>Hyper-parameters chosen on validation data (never on test)</summary>",
        "",
        params_table(results),
        "",
        "</details>",
        "",
        f"Every number: [`{csv_name}`]({csv_name}).",
    ]
    return "\n".join(parts) + "\n"


def write_report(
    out_dir: str | os.PathLike[str], results: Sequence[MethodResult], meta: dict[str, Any]
) -> dict[str, Path]:
    """Write results.csv, results.png, results.md and run.json into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = public_paths(meta)  # published: repository-relative paths only
    paths = {
        "csv": write_csv(out / "results.csv", results, meta),
        "png": plot(out / "results.png", results, meta.get("title", ""), meta.get("full_per_class")),
    }
    text = markdown_report(results, meta, "results.png", "results.csv")
    paths["md"] = atomic_write(out / "results.md", lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    paths["json"] = save_json(out / "run.json", {**meta, "results": [r.row() for r in results]})
    return paths


BEGIN = "<!-- faast:{name}:begin (generated by `{command}`; do not edit by hand) -->"
END = "<!-- faast:{name}:end -->"


def update_doc_block(doc: str | os.PathLike[str], name: str, content: str, command: str) -> Path:
    """Replace the block between the ``faast:<name>`` markers of a markdown file (appending the
    block when the markers are absent), so a published page is produced by the command."""
    path = Path(doc)
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    block = f"{BEGIN.format(name=name, command=command)}\n{content.rstrip()}\n{END.format(name=name)}"
    pattern = re.compile(
        re.escape(f"<!-- faast:{name}:begin") + r".*?" + re.escape(END.format(name=name)), flags=re.DOTALL
    )
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = (text.rstrip() + "\n\n" if text.strip() else "") + block + "\n"
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
