"""How much text the output memory can recall, with and without random-feature keys.

A least-squares memory keyed on the d-wide final state holds at most d pairs (SmolLM2-135M: 576,
Gemma-3-270M: 640). ``FaastConfig(output_key_features=D)`` appends D random ReLU features to the key
(:mod:`faast.lm.key_features`), so it holds d + D. This benchmark learns *Persuasion* (offline asset
``austen-novels``) chunk after chunk, as the capacity curve of ``benchmarks/lm_stream.py`` does, and
after 2, 4, 8, … chunks scores

* **recall**: the perplexity of the first ``--recall`` chunks (learned first, overwritten by
  everything after);
* **unseen**: the perplexity of the ``--unseen`` chunks that follow the last chunk ever learned
  (never learned), against the base model on the same tokens: what the memory costs on new text.

for every model in ``--models`` and every D in ``--key-features``, with the library's default read
settings (nothing is chosen here). Each window is read after the tokenizer's start tokens. Also:
learning time, and the bytes held at inference (fast weights and R in the model's dtype, the
learned-token mask) and while learning (the float64 statistics).

    python benchmarks/lm_capacity.py --threads 1

Writes ``benchmarks/results/lm_capacity.json``, ``docs/lm/capacity-keys.{csv,png}`` and the
``capacity-keys`` block of ``docs/lm.md``.
"""

from __future__ import annotations

import argparse
import shlex
import sys

import torch
from tqdm import tqdm

from faast.assets.lm import austen_texts
from faast.eval.report import update_doc_block
from faast.lm import FaastConfig, get_faast_model
from faast.lm.prompts import start_token_ids
from faast.lm.stream import chunk_stream
from faast.lm.text import encode, load_causal_lm, perplexity, with_start_tokens
from faast.publish import save_figure, write_public_csv
from task_bench import REPO, Timer, machine, rel, write_json

MODELS = {"smollm2": "SmolLM2-135M-Instruct", "gemma3": "Gemma-3-270M"}


def measure(name: str, features: list[int], args: argparse.Namespace) -> list[dict]:
    """Rows (one per model, D and number of chunks learned) of the recall and unseen perplexities."""
    model, tok = load_causal_lm(name)
    start = start_token_ids(tok)
    pieces = [p for _, p in chunk_stream(encode(tok, austen_texts()["persuasion"]), args.chunk)]
    need = args.chunks + args.unseen
    if len(pieces) < need or any(p.numel() != args.chunk for p in pieces[:need]):
        raise ValueError(f"Persuasion has fewer than {need} chunks of {args.chunk} tokens")
    first = with_start_tokens(torch.stack(pieces[: args.recall]), start)
    unseen = with_start_tokens(torch.stack(pieces[args.chunks : need]), start)
    points = sorted({2**i for i in range(1, 20) if args.recall <= 2**i <= args.chunks} | {args.chunks})
    rows = []
    fm = get_faast_model(model, FaastConfig(num_memories=0))
    for d_extra in features:
        fm.reset_projection().set_output_key_features(d_extra)
        with fm.disabled():
            base_recall, base_unseen = perplexity(fm, first).ppl, perplexity(fm, unseen).ppl
        learn_s = 0.0
        bar = tqdm(pieces[: args.chunks], desc=f"{name} D={d_extra}", unit="chunk")
        for n, piece in enumerate(bar, 1):
            with Timer() as t:
                fm.learn(input_ids=with_start_tokens(piece[None], start))
            learn_s += t.s
            if n not in points:
                continue
            with Timer() as t:
                fm.compile_fast_weights()
            recall, new = perplexity(fm, first).ppl, perplexity(fm, unseen).ppl
            sizes = fm.fast_weight_nbytes()
            rows.append(
                {
                    "model": MODELS.get(name, name),
                    "key_features": d_extra,
                    "key_dim": fm.output_memory.memory.key_dim,
                    "chunks_learned": n,
                    "tokens_learned": n * args.chunk,
                    "base_recall_ppl": base_recall,
                    "recall_ppl": recall,
                    "base_unseen_ppl": base_unseen,
                    "unseen_ppl": new,
                    "unseen_change_pct": 100 * (new / base_unseen - 1),
                    "learn_s": learn_s,
                    "compile_s": t.s,
                    "inference_bytes": sizes["compiled"] + sizes["support_rows"],
                    "statistics_bytes": sizes["statistics"],
                }
            )
            bar.write(
                f"[{name} D={d_extra}] {n * args.chunk} tokens: recall {recall:.2f} "
                f"(base {base_recall:.2f}), unseen {rows[-1]['unseen_change_pct']:+.2f} %"
            )
    return rows


def markdown(rows: list[dict], meta: dict, args: argparse.Namespace) -> str:
    lines = [
        f"**Data** {meta['data']}  ",
        f"**Machine** {meta['machine']}; {meta['seconds'] / 60:.0f} min; deterministic (no sampling)",
        "",
        "| model | key features D | key width | tokens learned | recall ppl (base) | unseen change "
        "| learning s | compile s | bytes at inference | statistics |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['key_features']} | {r['key_dim']} | {r['tokens_learned']} "
            f"| {r['recall_ppl']:.2f} ({r['base_recall_ppl']:.2f}) | {r['unseen_change_pct']:+.2f} % "
            f"| {r['learn_s']:.1f} | {r['compile_s']:.1f} | {_mb(r['inference_bytes'])} "
            f"| {_mb(r['statistics_bytes'])} |"
        )
    csv_path = REPO / "docs" / "lm" / "capacity-keys.csv"
    lines += [
        "",
        "![recall vs tokens learned](lm/capacity-keys.png)",
        "",
        f"Every number: [`{rel(csv_path)}`](lm/capacity-keys.csv).",
    ]
    return "\n".join(lines)


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def plot(path, rows: list[dict], recall_tokens: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    groups: dict[tuple[str, int], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["key_features"]), []).append(r)
    styles = {m: s for m, s in zip(MODELS.values(), ("-", "--"), strict=False)}
    colours = {d: f"C{i}" for i, d in enumerate(sorted({d for _, d in groups}))}  # one colour per D
    for (model, d_extra), rs in groups.items():
        ax.plot(
            [r["tokens_learned"] for r in rs],
            [r["recall_ppl"] for r in rs],
            ls=styles.get(model, ":"),
            color=colours[d_extra],
            marker="o",
            label=f"{model}, D = {d_extra}",
        )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("tokens of Persuasion learned (log)")
    ax.set_ylabel(f"perplexity of the first {recall_tokens} tokens (log)")
    ax.set_title("Output memory capacity: random-feature keys", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="smollm2,gemma3")
    ap.add_argument("--key-features", default="0,1024,4096", help="values of D (0: the state itself)")
    ap.add_argument("--chunk", type=int, default=512)
    ap.add_argument("--chunks", type=int, default=32, help="chunks learned in the end")
    ap.add_argument("--recall", type=int, default=2, help="first chunks whose recall is followed")
    ap.add_argument("--unseen", type=int, default=4, help="chunks after the learned ones, never learned")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if not 1 <= args.recall <= args.chunks or args.unseen < 1:
        ap.error("need 1 <= --recall <= --chunks and --unseen >= 1")
    torch.set_num_threads(args.threads)
    features = [int(x) for x in args.key_features.split(",")]
    rows: list[dict] = []
    with Timer() as total:
        for name in args.models.split(","):
            rows += measure(name, features, args)
    command = "python benchmarks/lm_capacity.py " + shlex.join(sys.argv[1:])
    meta = {
        "command": command,
        "data": f"Persuasion (austen-novels asset) in chunks of {args.chunk} tokens: recall of the first "
        f"{args.recall} chunks after learning up to {args.chunks}; unseen: the {args.unseen} chunks after "
        "them; library default read settings",
        "machine": machine(args.threads),
        "seconds": total.s,
    }
    write_json(REPO / "benchmarks" / "results" / "lm_capacity.json", {**meta, "rows": rows})
    docs = REPO / "docs" / "lm"
    write_public_csv(docs / "capacity-keys.csv", rows)
    plot(docs / "capacity-keys.png", rows, args.recall * args.chunk)
    md = markdown(rows, meta, args)
    update_doc_block(REPO / "docs" / "lm.md", "capacity-keys", md, command)
    print(md)


if __name__ == "__main__":
    main()
