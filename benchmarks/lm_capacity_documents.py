"""One memory for a whole book, or one task per document: what a named task per document buys.

The output memory is a d × d least-squares map (SmolLM2-135M: d = 576): written with a whole book,
it forgets the first pages (``benchmarks/lm_capacity.py``). A user who knows which document a
query is about can instead keep one named task per document in a fast-weight file
(``save_fast_weights(path, task=...)``, ``faast lm learn --task``) and load the right one before
reading (``load_fast_weights``; ``faast lm generate --task``). This benchmark cuts *Persuasion*
(offline asset ``austen-novels``) into documents of ``--doc-chunks`` × ``--chunk`` tokens and, for
N = 1, 2, 4, … ``--documents`` documents learned, scores

* **recall**: the perplexity of all N documents, each read by the fast weights at hand — layout
  *one memory*: one set of fast weights learned from all N documents in order; layout *one task
  per document*: document j read with task j loaded (the caller names the document: oracle
  routing, as ``--task`` is given on the command line) — and of the first document alone;
* **unseen**: the perplexity of the ``--unseen`` chunks after the last document ever learned,
  against the base model on the same tokens, read with the one memory / with the last document's
  task loaded;
* **costs**: bytes held at inference (one compiled task at a time), bytes of the file holding every
  task, and the mean time to switch task (load the statistics, compile).

Library default read settings, no key features; nothing is chosen here. Each document is read
after the tokenizer's start tokens.

    python benchmarks/lm_capacity_documents.py --threads 1
    python benchmarks/lm_capacity_documents.py --models smollm2 --documents 2 --out /tmp/docs  # minutes

Writes ``benchmarks/results/lm_capacity_documents.json``, ``docs/lm/capacity-documents.{csv,png}``
and the ``capacity-documents`` block of ``docs/lm.md`` (with ``--out``: the JSON, CSV, PNG and
Markdown in that folder, the docs untouched).
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
import tempfile
from pathlib import Path

import torch
from tqdm import tqdm

from faast.assets.lm import austen_texts
from faast.eval.report import update_doc_block
from faast.lm import FaastConfig, get_faast_model
from faast.lm.prompts import start_token_ids
from faast.lm.stream import chunk_stream
from faast.lm.text import Perplexity, encode, load_causal_lm, perplexity, with_start_tokens
from faast.publish import save_figure, write_public_csv
from task_bench import MODEL_NAMES, REPO, Timer, human_bytes, machine, rel, write_json

LAYOUTS = ("one memory", "one task per document")


def pooled_ppl(scores: list[Perplexity]) -> float:
    """Perplexity over every token of several scored sets (their NLLs weighted by token counts)."""
    tokens = sum(s.tokens for s in scores)
    return math.exp(sum(s.nll * s.tokens for s in scores) / tokens)


def documents_of(tok, args: argparse.Namespace) -> tuple[list[torch.Tensor], torch.Tensor]:
    """(documents, unseen): ``--documents`` windows of ``doc_chunks`` chunks, each (doc_chunks, chunk+s)
    with the start tokens s, and the (unseen, chunk+s) windows after the last document."""
    start = start_token_ids(tok)
    pieces = [p for _, p in chunk_stream(encode(tok, austen_texts()["persuasion"]), args.chunk)]
    need = args.documents * args.doc_chunks + args.unseen
    if len(pieces) < need or any(p.numel() != args.chunk for p in pieces[:need]):
        raise ValueError(f"Persuasion has fewer than {need} chunks of {args.chunk} tokens")
    docs = [
        with_start_tokens(torch.stack(pieces[i * args.doc_chunks : (i + 1) * args.doc_chunks]), start)
        for i in range(args.documents)
    ]
    unseen = with_start_tokens(torch.stack(pieces[args.documents * args.doc_chunks : need]), start)
    return docs, unseen


def measure(name: str, args: argparse.Namespace, scratch: Path) -> list[dict]:
    """Rows (one per layout and number of documents learned) for one model."""
    model, tok = load_causal_lm(name)
    docs, unseen = documents_of(tok, args)
    points = sorted({2**i for i in range(0, 20) if 2**i <= args.documents} | {args.documents})
    fm = get_faast_model(model, FaastConfig(num_memories=0))
    with fm.disabled():
        base = [perplexity(fm, d) for d in docs]
        base_unseen = perplexity(fm, unseen).ppl
    rows: list[dict] = []

    def row(layout: str, n: int, scores: list[Perplexity], unseen_ppl: float, **costs) -> None:
        rows.append(
            {
                "model": MODEL_NAMES.get(name, name),
                "layout": layout,
                "documents_learned": n,
                "tokens_learned": n * args.doc_chunks * args.chunk,
                "base_recall_ppl": pooled_ppl(base[:n]),
                "recall_ppl": pooled_ppl(scores),
                "base_first_ppl": base[0].ppl,
                "first_ppl": scores[0].ppl,
                "base_unseen_ppl": base_unseen,
                "unseen_ppl": unseen_ppl,
                "unseen_change_pct": 100 * (unseen_ppl / base_unseen - 1),
                **costs,
            }
        )
        r = rows[-1]
        tqdm.write(
            f"[{name}, {layout}] {n} documents: recall {r['recall_ppl']:.2f} "
            f"(base {r['base_recall_ppl']:.2f}), "
            f"first {r['first_ppl']:.2f}, unseen {r['unseen_change_pct']:+.2f} %"
        )

    # one memory: every document written into the same fast weights, in order
    fm.reset_projection()
    learn_s = 0.0
    for n, doc in enumerate(tqdm(docs, desc=f"{name}: one memory", unit="doc"), 1):
        with Timer() as t:
            fm.learn(input_ids=doc)
        learn_s += t.s
        if n in points:
            fm.compile_fast_weights()
            sizes = fm.fast_weight_nbytes()
            row(
                LAYOUTS[0],
                n,
                [perplexity(fm, d) for d in docs[:n]],
                perplexity(fm, unseen).ppl,
                learn_s=learn_s,
                inference_bytes=sizes["compiled"] + sizes["support_rows"],
                file_bytes=sizes["statistics"],
                switch_s=0.0,
            )

    # one task per document: each learned alone and saved under its own name in one file
    path = scratch / f"{name}-documents.safetensors"
    learn_s = 0.0
    for j, doc in enumerate(tqdm(docs, desc=f"{name}: one task per document", unit="doc")):
        with Timer() as t:
            fm.reset_projection()
            fm.learn(input_ids=doc)
            fm.save_fast_weights(path, task=f"doc{j}")
        learn_s += t.s
        n = j + 1
        if n not in points:
            continue
        scores, switches = [], []
        for i in range(n):
            with Timer() as t:
                fm.load_fast_weights(path, task=f"doc{i}")
                fm.compile_fast_weights()
            switches.append(t.s)
            scores.append(perplexity(fm, docs[i]))
        sizes = fm.fast_weight_nbytes()  # the last document's task is loaded: it reads the unseen text
        row(
            LAYOUTS[1],
            n,
            scores,
            perplexity(fm, unseen).ppl,
            learn_s=learn_s,
            inference_bytes=sizes["compiled"] + sizes["support_rows"],
            file_bytes=os.path.getsize(path),
            switch_s=sum(switches) / len(switches),
        )
    return rows


def markdown(rows: list[dict], meta: dict, csv_name: str, png_name: str) -> str:
    lines = [
        f"**Data** {meta['data']}  ",
        f"**Machine** {meta['machine']}; {meta['seconds'] / 60:.0f} min; deterministic (no sampling)",
        "",
        "| model | layout | documents learned | tokens learned | recall ppl, all documents (base) "
        "| recall ppl, first document (base) | unseen change | learning s | bytes at inference "
        "| bytes of the file | switch task s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['layout']} | {r['documents_learned']} | {r['tokens_learned']} "
            f"| {r['recall_ppl']:.2f} ({r['base_recall_ppl']:.2f}) "
            f"| {r['first_ppl']:.2f} ({r['base_first_ppl']:.2f}) "
            f"| {r['unseen_change_pct']:+.2f} % | {r['learn_s']:.1f} | {human_bytes(r['inference_bytes'])} "
            f"| {human_bytes(r['file_bytes'])} | {r['switch_s']:.2f} |"
        )
    lines += [
        "",
        f"![recall vs documents learned](lm/{png_name})",
        "",
        f"Every number: [`docs/lm/{csv_name}`](lm/{csv_name}).",
    ]
    return "\n".join(lines)


def plot(path: Path, rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    models = sorted({r["model"] for r in rows})
    for i, model in enumerate(models):
        mine = [r for r in rows if r["model"] == model]
        for layout, style in zip(LAYOUTS, ("-", "--"), strict=True):
            rs = [r for r in mine if r["layout"] == layout]
            ax.plot(
                [r["documents_learned"] for r in rs],
                [r["recall_ppl"] for r in rs],
                ls=style,
                color=f"C{i}",
                marker="o",
                label=f"{model}, {layout}",
            )
        ax.plot(
            [r["documents_learned"] for r in mine if r["layout"] == LAYOUTS[0]],
            [r["base_recall_ppl"] for r in mine if r["layout"] == LAYOUTS[0]],
            ls=":",
            color=f"C{i}",
            label=f"{model}, base model",
        )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("documents of Persuasion learned (log)")
    ax.set_ylabel("perplexity of every learned document (log)")
    ax.set_title("One memory for the book, or one task per document", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="smollm2,gemma3")
    ap.add_argument("--chunk", type=int, default=512)
    ap.add_argument("--doc-chunks", type=int, default=2, help="chunks per document")
    ap.add_argument("--documents", type=int, default=16, help="documents learned in the end")
    ap.add_argument("--unseen", type=int, default=4, help="chunks after the last document, never learned")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="write here instead of the published places")
    args = ap.parse_args()
    if args.chunk < 1 or args.doc_chunks < 1 or args.documents < 1 or args.unseen < 1:
        ap.error("--chunk, --doc-chunks, --documents and --unseen must be at least 1")
    torch.set_num_threads(args.threads)
    rows: list[dict] = []
    with Timer() as total, tempfile.TemporaryDirectory() as scratch:
        for name in args.models.split(","):
            rows += measure(name, args, Path(scratch))
    command = "python benchmarks/lm_capacity_documents.py " + shlex.join(sys.argv[1:])
    meta = {
        "command": command,
        "data": f"Persuasion (austen-novels asset): documents of {args.doc_chunks} × {args.chunk} tokens, "
        f"up to {args.documents}; unseen: the {args.unseen} chunks of {args.chunk} tokens after them; "
        "library default read settings, no key features; task per document: oracle routing",
        "machine": machine(args.threads),
        "seconds": total.s,
    }
    results = args.out or REPO / "benchmarks" / "results"
    docs = args.out or REPO / "docs" / "lm"
    results.mkdir(parents=True, exist_ok=True)
    docs.mkdir(parents=True, exist_ok=True)
    write_json(results / "lm_capacity_documents.json", {**meta, "rows": rows})
    csv_name, png_name = "capacity-documents.csv", "capacity-documents.png"
    write_public_csv(docs / csv_name, rows)
    plot(docs / png_name, rows)
    md = markdown(rows, meta, csv_name, png_name)
    if args.out is None:
        update_doc_block(REPO / "docs" / "lm.md", "capacity-documents", md, command)
    else:
        (args.out / "capacity-documents.md").write_text(md + "\n", encoding="utf-8")
    print(md)
    print(f"wrote {rel(results / 'lm_capacity_documents.json')}")


if __name__ == "__main__":
    main()
