"""Bounded memory: peak RSS of learning 1× vs 10× more text, and of the classifier over 1× vs 10×
more rows. Each run is a fresh process; its peak resident set (VmHWM) is read at the end.

    PYTHONPATH=src:. OMP_NUM_THREADS=1 python benchmarks/memory_bound.py            # ~1-2 min
    PYTHONPATH=src:. OMP_NUM_THREADS=1 python benchmarks/memory_bound.py --model smollm2 --tokens 4000

Workloads:

* ``learn``: ``faast lm learn`` (the command line: read the text file, tokenize, cut windows,
  learn, save the fast weights) on a text of ``--tokens`` words and on one 10× longer. Default
  model: a tiny random Llama (2 blocks, d = 32, word-level tokenizer, built here), so the
  statistics are small and any growth with the text shows; ``--model smollm2`` uses the offline
  SmolLM2-135M-Instruct asset instead.
* ``forget``: ``faast lm forget`` of the same texts (the same model and window), each learned
  first, in a run not measured, after a short other text into one task (forgetting a task's only
  text is refused): what rewriting the task without the text costs.
* ``perplexity``: ``faast lm perplexity`` of the same texts by the base model (same window).
* ``stream``: ``FaastClassifier.partial_fit`` over batches of 2,000 rows (d = 256, 10 classes,
  synthetic Gaussian features made batch by batch): 20,000 vs 200,000 rows.
* ``fit``: ``FaastClassifier.fit`` on an in-memory array of the same sizes; the array is the
  caller's and grows 10× by design, so this row reports the overhead beyond it.
* ``fit-logistic``: the same with ``loss="logistic"``, whose steps need every design row at once
  (one copy of the array with the intercept column, rows in its held-out order) and the n × m
  scores: its overhead grows with the rows.

Writes ``benchmarks/results/memory_bound.json`` (``--out``) and the ``memory-bound`` table of
docs/reliability.md, rendered from every file of :data:`PUBLISHED` (:func:`markdown_table`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORDS = [f"w{i}" for i in range(3, 97)]
#: The results files whose rows make the table of docs/reliability.md, in its order.
PUBLISHED = (
    REPO / "benchmarks" / "results" / "memory_bound.json",
    REPO / "benchmarks" / "results" / "memory_bound_smollm2.json",
)
DOC, BLOCK = REPO / "docs" / "reliability.md", "memory-bound"


def _mb(small: float, large: float) -> str:
    return f"{small:,.1f} → {large:,.1f} MB"


#: The workloads that run a ``faast lm`` command on a text file (``learn``'s model, window and texts).
TEXT_WORKLOADS = ("learn", "forget", "perplexity")


def _learn_label(results: dict, command: str = "learn") -> str:
    """The workload cell of a ``learn`` (``forget``, ``perplexity``) row: the model (and the window
    beyond the default)."""
    model = str(results.get("learn_model", ""))
    if model.startswith("tiny random Llama"):
        return f"`faast lm {command}`, tiny random Llama (d = 32), word text"
    window = re.search(r"--window (\d+)", str(results.get("command", "")))
    named = {"smollm2": "SmolLM2-135M-Instruct (float32)"}.get(model, model)
    return f"`faast lm {command}`, {named}, window {window.group(1) if window else 64}"


def markdown_table(paths: tuple[Path, ...] | list[Path]) -> str:
    """The table of docs/reliability.md from results files (those that exist): one row per
    workload measured, peak RSS at 1× and 10×, its growth, and what lies above the warm baseline."""
    rows = [
        "| Workload | 1× | 10× | Peak RSS 1× → 10× | Growth | Above the warm baseline |",
        "|---|---|---|---|---:|---|",
    ]
    for path in paths:
        if not Path(path).is_file():
            continue
        results = json.loads(Path(path).read_text(encoding="utf-8"))
        for name in (*TEXT_WORKLOADS, "stream", "fit", "fit-logistic"):
            if name not in results:
                continue
            small, large = results[name]["1x"], results[name]["10x"]
            above = _mb(small["peak_mb"] - small["baseline_mb"], large["peak_mb"] - large["baseline_mb"])
            if name in TEXT_WORKLOADS:
                label, sizes = _learn_label(results, name), [f"{r['words']:,} words" for r in (small, large)]
            elif name == "stream":
                label = "`FaastClassifier.partial_fit`, d = 256, 10 classes, batches of 2,000"
                sizes = [f"{r['rows']:,} rows" for r in (small, large)]
            else:
                call = "fit" if name == "fit" else 'fit`, `loss="logistic"'
                label = f"`FaastClassifier.{call}` on an in-memory array (the array grows 10×)"
                sizes = [f"{r['input_mb']:,.1f} MB" for r in (small, large)]
                above += f" ({100 * large['overhead_over_input']:.0f} % of the array)"
            growth = f"{100 * results[name]['peak_growth']:+.1f} %"
            peaks = _mb(small["peak_mb"], large["peak_mb"])
            rows.append(f"| {label} | {sizes[0]} | {sizes[1]} | {peaks} | {growth} | {above} |")
    return "\n".join(rows)


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (VmHWM; ru_maxrss elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ----------------------------------------------------------------- child workloads
def _measured_cli(args: argparse.Namespace, argv: list[str], what: str) -> dict:
    """Run the faast command ``argv`` in this process after loading ``args.model`` once (warming the
    imports and the file cache; freed before the command): its seconds and the peak before it."""
    import torch  # noqa: F401  (imported before the baseline, as every workload needs it)

    from faast.cli import main as cli_main
    from faast.lm.text import load_causal_lm

    load_causal_lm(args.model)
    baseline = peak_rss_mb()
    start = time.perf_counter()
    assert cli_main(argv) == 0, f"faast {what} failed"
    return {"baseline_mb": baseline, "seconds": time.perf_counter() - start}


def child_learn(args: argparse.Namespace) -> dict:
    out = Path(args.work) / f"fw-{args.scale}.safetensors"
    argv = ["lm", "learn", "--model", args.model, "--text", args.text, "--out", str(out)]
    argv += ["--window", str(args.window), "--threads", "1", "--task", "t"]
    return _measured_cli(args, argv, "lm learn")


def _forget_file(args: argparse.Namespace) -> Path:
    """The fast weights ``forget`` rewrites at this scale (written by :func:`child_forget_setup`)."""
    return Path(args.work) / f"forget-{args.scale}.safetensors"


def child_forget_setup(args: argparse.Namespace) -> dict:
    """Not measured: a task that learned a short other text, then the text (``--append``), for
    ``forget`` to remove the text from (a task's only text cannot be forgotten: it would be empty)."""
    from faast.cli import main as cli_main

    other = make_text(Path(args.work) / f"other-{args.scale}.txt", 200, args.seed + 1)
    common = ["lm", "learn", "--model", args.model, "--out", str(_forget_file(args)), "--task", "t"]
    common += ["--window", str(args.window), "--threads", "1"]
    assert cli_main([*common, "--text", str(other)]) == 0, "faast lm learn failed"
    assert cli_main([*common, "--text", args.text, "--append"]) == 0, "faast lm learn --append failed"
    return {}


def child_forget(args: argparse.Namespace) -> dict:
    argv = ["lm", "forget", "--model", args.model, "--text", args.text, "--task", "t"]
    argv += ["--fast-weights", str(_forget_file(args)), "--window", str(args.window), "--threads", "1"]
    return _measured_cli(args, argv, "lm forget")


def child_perplexity(args: argparse.Namespace) -> dict:
    argv = ["lm", "perplexity", "--model", args.model, "--text", args.text, "--window", str(args.window)]
    return _measured_cli(args, [*argv, "--threads", "1"], "lm perplexity")


def _batches(rows: int, d: int, classes: int, batch: int, seed: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((classes, d)).astype(np.float32)
    for start in range(0, rows, batch):
        y = rng.integers(0, classes, min(batch, rows - start))
        yield centers[y] + rng.standard_normal((len(y), d)).astype(np.float32), y


def child_stream(args: argparse.Namespace) -> dict:
    import numpy as np

    from faast import FaastClassifier

    clf = FaastClassifier()
    FaastClassifier().fit(np.eye(4, dtype=np.float32), np.arange(4))  # warm the code paths
    baseline = peak_rss_mb()
    start = time.perf_counter()
    for x, y in _batches(args.rows, 256, 10, 2000, args.seed):
        clf.partial_fit(x, y, classes=np.arange(10))
    return {"baseline_mb": baseline, "seconds": time.perf_counter() - start, "rank": int(clf.rank_)}


def child_fit(args: argparse.Namespace, **params: object) -> dict:
    import numpy as np

    from faast import FaastClassifier

    FaastClassifier(**params).fit(np.eye(4, dtype=np.float32), np.arange(4))
    x, y = np.empty((args.rows, 256), np.float32), np.empty(args.rows, np.int64)
    start = 0
    for xb, yb in _batches(args.rows, 256, 10, 2000, args.seed):
        x[start : start + len(yb)], y[start : start + len(yb)] = xb, yb
        start += len(yb)
    baseline = peak_rss_mb()
    start = time.perf_counter()
    FaastClassifier(**params).fit(x, y)
    return {"baseline_mb": baseline, "seconds": time.perf_counter() - start, "input_mb": x.nbytes / 2**20}


def child_fit_logistic(args: argparse.Namespace) -> dict:
    return child_fit(args, loss="logistic")


CHILDREN = {
    "learn": child_learn,
    "forget-setup": child_forget_setup,
    "forget": child_forget,
    "perplexity": child_perplexity,
    "stream": child_stream,
    "fit": child_fit,
    "fit-logistic": child_fit_logistic,
}


# ----------------------------------------------------------------- parent
def run_child(workload: str, **kw: object) -> dict:
    argv = [sys.executable, __file__, "--child", workload]
    for key, value in kw.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{workload} {kw} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_text_workload(name: str, texts: dict[int, Path], **kw: object) -> dict[int, dict]:
    """The runs of the text workload ``name`` (:data:`TEXT_WORKLOADS`) on the 1× and 10× texts
    (``texts``: scale → file; ``kw``: model, work, window, seed), ``forget``'s setup run first."""
    runs = {}
    for scale, text in texts.items():
        if name == "forget":
            run_child("forget-setup", text=text, scale=scale, **kw)
        runs[scale] = run_child(name, text=text, scale=scale, **kw) | {"text_mb": text.stat().st_size / 2**20}
    return runs


def make_text(path: Path, words: int, seed: int) -> Path:
    import numpy as np

    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(WORDS), words)
    lines = [" ".join(WORDS[i] for i in picks[j : j + 16]) for j in range(0, words, 16)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def compare(name: str, small: dict, large: dict, what: str) -> dict:
    growth = large["peak_mb"] / small["peak_mb"] - 1
    print(
        f"{name:7s} {what}: peak RSS {small['peak_mb']:.0f} MB → {large['peak_mb']:.0f} MB "
        f"({100 * growth:+.1f} %); above the baseline {small['peak_mb'] - small['baseline_mb']:.1f} MB → "
        f"{large['peak_mb'] - large['baseline_mb']:.1f} MB"
    )
    return {"1x": small, "10x": large, "peak_growth": growth}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", choices=sorted(CHILDREN), default=None, help=argparse.SUPPRESS)
    ap.add_argument(
        "--model",
        default=None,
        help="model for `learn`, `forget`, `perplexity` (default: a tiny random Llama)",
    )
    ap.add_argument("--tokens", type=int, default=20_000, help="words of the 1× text (default 20,000)")
    ap.add_argument("--rows", type=int, default=20_000, help="rows of the 1× classifier data")
    ap.add_argument("--window", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--workloads",
        default="learn,stream,fit,fit-logistic",
        help="comma-separated subset of learn, forget, perplexity, stream, fit, fit-logistic "
        "(default: learn,stream,fit,fit-logistic)",
    )
    ap.add_argument("--text", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--work", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--scale", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "memory_bound.json"))
    args = ap.parse_args(argv)

    if args.child is not None:
        result = CHILDREN[args.child](args)
        result["peak_mb"] = peak_rss_mb()
        print(json.dumps(result))
        return 0

    from faast.publish import write_public_json

    results: dict[str, object] = {
        "command": shlex.join(["python", "benchmarks/memory_bound.py", *sys.argv[1:]]),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}, OMP_NUM_THREADS=1",
        "seed": args.seed,
        "measure": "peak resident set size (VmHWM) of a fresh process per run; baseline_mb: the peak "
        "after imports and warm-up, before the workload",
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = args.model
        if model is None:
            sys.path[:0] = [str(REPO / "src"), str(REPO)]
            from tests.lm_wordlevel import save_tiny_model

            model = str(save_tiny_model(work / "tiny-llama"))
            results["learn_model"] = (
                "tiny random Llama (2 blocks, d = 32, 97 word tokens; tests/lm_wordlevel.py)"
            )
        else:
            results["learn_model"] = model
        todo = args.workloads.split(",")
        texts = {}
        for scale in (1, 10) if any(w in todo for w in TEXT_WORKLOADS) else ():
            texts[scale] = make_text(work / f"text-{scale}.txt", args.tokens * scale, args.seed)
        for name in [w for w in TEXT_WORKLOADS if w in todo]:
            kw = {"model": model, "work": work, "window": args.window, "seed": args.seed}
            runs = run_text_workload(name, texts, **kw)
            for scale, run in runs.items():
                run["words"] = args.tokens * scale
            results[name] = compare(name, runs[1], runs[10], f"{args.tokens} vs {10 * args.tokens} words")
        for name in [w for w in ("stream", "fit", "fit-logistic") if w in todo]:
            small = run_child(name, rows=args.rows, seed=args.seed) | {"rows": args.rows}
            large = run_child(name, rows=10 * args.rows, seed=args.seed) | {"rows": 10 * args.rows}
            results[name] = compare(name, small, large, f"{args.rows} vs {10 * args.rows} rows")
            if name.startswith("fit"):
                for r in (small, large):
                    r["overhead_over_input"] = (r["peak_mb"] - r["baseline_mb"]) / r["input_mb"]
    write_public_json(args.out, results)
    print(f"wrote {os.path.relpath(args.out, REPO)}")
    if Path(args.out).resolve() in [p.resolve() for p in PUBLISHED]:
        from faast.eval.report import update_doc_block

        update_doc_block(DOC, BLOCK, markdown_table(PUBLISHED), "python benchmarks/memory_bound.py")
        print(f"wrote the {BLOCK} block of {os.path.relpath(DOC, REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
