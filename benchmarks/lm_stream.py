"""Streaming mode on long texts: perplexity vs position in the book, and the memory's capacity.

1. Stream (``faast.lm.stream.stream_chunks``): each chunk of ``--chunk`` tokens is scored with the
   fast weights of all chunks before it, then learned; beside it the base model on the same chunk and
   the base model with the ``--context`` tokens before the chunk in its prompt (a sliding in-context
   window). Texts: *Persuasion* (Austen) and *The War of the Worlds* (Wells), both from offline
   assets; the first ``--max-chunks`` chunks of each.
2. Capacity: learn the chunks of *Persuasion* one after another and, after 1, 2, 4, … chunks, score
   the first ``--recall`` chunks again (they were learned first): how well a d × d memory still
   recalls them as more text is written on top.

Output-memory defaults throughout (nothing is chosen here). Model: SmolLM2-135M-Instruct by default.
With ``--mix correction`` the output memory learns loss gradients (:mod:`faast.lm.correction`;
outputs get the suffix ``-correction``). With ``--adapter NAME`` the model also carries a trained
readout (e.g. the bundled ``smollm2-general``): its outputs get the suffix ``-NAME``
(``docs/lm/stream-NAME.{csv,png}``, the ``stream-NAME`` block of ``docs/lm.md``,
``lm_stream-NAME.json``), so both runs stay published.

    python benchmarks/lm_stream.py --threads 2
    python benchmarks/lm_stream.py --adapter smollm2-general --capacity-chunks 0 --threads 2

Writes ``benchmarks/results/lm_stream.json``, ``docs/lm/stream.{csv,png}``,
``docs/lm/capacity.{csv,png}`` and the ``stream`` block of ``docs/lm.md``.
"""

from __future__ import annotations

import argparse
import csv
import shlex
import sys
from pathlib import Path

import torch

from faast.assets.lm import austen_texts
from faast.assets.text import gutenberg_books
from faast.eval.report import update_doc_block
from faast.lm import FaastConfig, FaastModel, get_faast_model
from faast.lm.prompts import start_token_ids
from faast.lm.stream import chunk_stream, stream_chunks, summarize
from faast.lm.stream_report import plot_stream
from faast.lm.text import encode, load_causal_lm, perplexity, with_start_tokens
from faast.publish import save_figure, write_public_csv
from task_bench import REPO, Timer, machine, rel, write_json


def texts() -> dict[str, str]:
    wells = gutenberg_books()["The War of the Worlds"]
    return {
        "Persuasion": austen_texts()["persuasion"],
        "The War of the Worlds": wells if isinstance(wells, str) else "\n".join(wells),
    }


def capacity(fm, ids: torch.Tensor, start: list[int], chunk: int, steps: int, recall: int) -> list[dict]:
    """Recall perplexity of the first ``recall`` chunks after learning 1, 2, 4, … ``steps`` chunks."""
    pieces = chunk_stream(ids, chunk, steps)
    first = with_start_tokens(torch.stack([p for _, p in pieces[:recall]]), start)
    fm.reset_projection()
    with fm.disabled():
        base = perplexity(fm, first).ppl
    points, out = {2**i for i in range(20) if 2**i <= len(pieces)} | {len(pieces)}, []
    for n, (_, piece) in enumerate(pieces, 1):
        fm.learn(input_ids=with_start_tokens(piece[None], start))
        if n in points and n >= recall:
            out.append(
                {"chunks_learned": n, "tokens_learned": n * chunk, "recall_ppl": perplexity(fm, first).ppl}
            )
            out[-1]["base_ppl"] = base
            print(f"[capacity] {out[-1]}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--chunk", type=int, default=512)
    ap.add_argument("--max-chunks", type=int, default=40, help="chunks per text (0: the whole text)")
    ap.add_argument("--context", type=int, default=512)
    ap.add_argument("--capacity-chunks", type=int, default=128, help="0: no capacity curve")
    ap.add_argument("--adapter", default=None, help="a trained readout (folder or bundled name)")
    ap.add_argument(
        "--mix",
        choices=("prob", "correction"),
        default="prob",
        help="the output memory: prob (next tokens, default) or correction (loss gradients; outputs get "
        "the suffix -correction)",
    )
    ap.add_argument("--recall", type=int, default=2, help="chunks whose recall the capacity curve follows")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None, help="write everything to this folder instead (a quick look)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, tok = load_causal_lm(args.model)
    if args.adapter:
        fm = FaastModel.from_pretrained(model, args.adapter)
    else:
        fm = get_faast_model(model, FaastConfig(num_memories=0, output_mix=args.mix))
    if args.adapter and args.mix != "prob":
        ap.error("--mix applies without --adapter (a readout brings its own layout)")
    suffix = f"-{Path(args.adapter).name}" if args.adapter else ("" if args.mix == "prob" else f"-{args.mix}")
    start = start_token_ids(tok)
    runs, parts = {}, {}
    with Timer() as total:
        for name, text in texts().items():
            fm.reset_projection()
            ids = encode(tok, text)
            runs[name] = stream_chunks(
                fm,
                ids,
                chunk=args.chunk,
                start_ids=start,
                max_chunks=args.max_chunks or None,
                context=args.context,
            )
            parts[name] = summarize(runs[name])
            print(f"[stream] {name}: {parts[name]}", flush=True)
        cap = []
        if args.capacity_chunks:
            cap = capacity(
                fm, encode(tok, texts()["Persuasion"]), start, args.chunk, args.capacity_chunks, args.recall
            )
    out = None if args.out is None else Path(args.out)
    docs = out or REPO / "docs" / "lm"
    docs.mkdir(parents=True, exist_ok=True)
    with open(docs / f"stream{suffix}.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "index", "start", "tokens", "ppl", "base_ppl", "context_ppl"])
        for name, rows in runs.items():
            for r in rows:
                w.writerow([name, r.index, r.start, r.tokens, r.ppl, r.base_ppl, r.context_ppl])
    plot_stream(
        docs / f"stream{suffix}.png",
        runs,
        title=f"{args.model}{' + ' + args.adapter if args.adapter else ''}: chunks of {args.chunk} tokens, "
        "apply then update",
    )
    if cap:
        write_public_csv(docs / f"capacity{suffix}.csv", cap)
        plot_capacity(docs / f"capacity{suffix}.png", cap, args)
    command = "python benchmarks/lm_stream.py " + shlex.join(sys.argv[1:])
    meta = {
        "command": command,
        "model": args.model,
        "adapter": args.adapter,
        "machine": machine(args.threads),
        "seconds": total.s,
        "chunk": args.chunk,
        "context": args.context,
    }
    write_json(
        (out or REPO / "benchmarks" / "results") / f"lm_stream{suffix}.json",
        {
            **meta,
            "parts": parts,
            "capacity": cap,
            "chunks": {n: [r.to_dict() for r in rs] for n, rs in runs.items()},
        },
    )
    md = markdown(parts, cap, meta, args, suffix)
    if out is None:
        update_doc_block(REPO / "docs" / "lm.md", f"stream{suffix}", md, command)
    else:
        (out / f"stream{suffix}.md").write_text(md, encoding="utf-8")
    print(md)


def markdown(parts: dict, cap: list[dict], meta: dict, args: argparse.Namespace, suffix: str = "") -> str:
    memory = f"readout {args.adapter} + output memory" if args.adapter else "output memory"
    if args.mix == "correction":
        memory = "correction memory (output_mix='correction')"
    lines = [
        f"**Model** {meta['model']} ({memory}, library defaults); **machine** {meta['machine']}; "
        f"{meta['seconds'] / 60:.0f} min. Chunks of {args.chunk} tokens; each scored with the fast weights "
        "of the chunks before it, then learned. Perplexity over consecutive quarters of what was read:",
        "",
        "| text | chunks | tokens | fast weights (text so far) | base model | base + "
        f"{args.context} preceding tokens in context |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, ps in parts.items():
        for p in ps:
            lines.append(
                f"| {name} | {p['first_chunk']}–{p['last_chunk']} | {p['tokens']} | {p['ppl']:.2f} "
                f"| {p['base_ppl']:.2f} | {p['context_ppl']:.2f} |"
            )
    lines += ["", f"![perplexity vs position](lm/stream{suffix}.png)"]
    files = [f"[`{rel(REPO / 'docs' / 'lm' / f'stream{suffix}.csv')}`](lm/stream{suffix}.csv)"]
    if cap:
        lines += [
            "",
            f"Capacity (*Persuasion*): perplexity of the first {args.recall} chunks "
            f"({args.recall * args.chunk} tokens, learned first) after learning more and more of the book "
            f"(base model: {cap[0]['base_ppl']:.2f}):",
            "",
            "| chunks learned | tokens learned | recall ppl |",
            "|---:|---:|---:|",
        ]
        lines += [f"| {c['chunks_learned']} | {c['tokens_learned']} | {c['recall_ppl']:.2f} |" for c in cap]
        lines += ["", f"![capacity](lm/capacity{suffix}.png)"]
        files.append(f"[`{rel(REPO / 'docs' / 'lm' / f'capacity{suffix}.csv')}`](lm/capacity{suffix}.csv)")
    lines += ["", "Every number: " + ", ".join(files) + "."]
    return "\n".join(lines)


def plot_capacity(path, cap: list[dict], args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.plot([c["tokens_learned"] for c in cap], [c["recall_ppl"] for c in cap], marker="o", label="recall")
    ax.axhline(cap[0]["base_ppl"], color="grey", ls="--", label="base model")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("tokens learned (log)")
    ax.set_ylabel(f"perplexity of the first {args.recall * args.chunk} tokens")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


if __name__ == "__main__":
    main()
