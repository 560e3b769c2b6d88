"""Do the output memory's default read settings hold on every model? Learn a passage of a text that
no default was tuned on, then score the passage (recall) and the text that follows it (unseen), on
SmolLM2-135M-Instruct, Gemma-3-270M and Qwen2.5-Coder-0.5B-Instruct (three families: Llama, Gemma 3,
Qwen 2), with the library defaults (nothing chosen here).

Text: *The War of the Worlds* (offline asset ``gutenberg-books``; the defaults were chosen on Jane
Austen with SmolLM2). The passage is ``--size`` tokens starting ``--skip`` tokens into the book;
"unseen" is the ``--unseen`` tokens after it, in windows of ``--size``. Each window is read after the
tokenizer's start tokens (Gemma's ``<bos>``). ``--key-features 0,1024`` adds rows where the output
memory is keyed with 1,024 random features (``FaastConfig.output_key_features``: room for a passage
longer than the model's width), the read settings still the defaults.

    python benchmarks/lm_defaults.py --key-features 0,1024 --threads 2

Writes ``benchmarks/results/lm_defaults.json`` and the ``defaults`` block of ``docs/lm.md``.
"""

from __future__ import annotations

import argparse
import shlex
import sys

import torch

from faast.assets.text import gutenberg_books
from faast.eval.report import update_doc_block
from faast.lm import FaastConfig, get_faast_model
from faast.lm.prompts import start_token_ids
from faast.lm.text import encode, load_causal_lm, perplexity, with_start_tokens
from task_bench import MODEL_NAMES, REPO, Timer, machine, write_json

BOOK = "The War of the Worlds"


def measure(
    name: str, text: str, sizes: list[int], skip: int, unseen: int, key_features: list[int]
) -> list[dict]:
    model, tok = load_causal_lm(name)
    fm = get_faast_model(model, FaastConfig(num_memories=0))
    start = start_token_ids(tok)
    ids = encode(tok, text)
    rows = []
    for features, size in [(f, s) for f in key_features for s in sizes]:
        passage = with_start_tokens(ids[skip : skip + size][None], start)
        after = ids[skip + size : skip + size + unseen]
        windows = with_start_tokens(after[: (len(after) // size) * size].view(-1, size), start)
        fm.reset_projection().set_output_key_features(features)
        with fm.disabled():
            base_p = perplexity(fm, passage).ppl
            base_u = perplexity(fm, windows).ppl
        with Timer() as t:
            fm.learn(input_ids=passage)
        recall = perplexity(fm, passage).ppl
        seen_u = perplexity(fm, windows).ppl
        row = {
            "model": MODEL_NAMES[name],
            "key_features": features,
            "passage_tokens": size,
            "base_passage_ppl": base_p,
            "recall_ppl": recall,
            "base_unseen_ppl": base_u,
            "unseen_ppl": seen_u,
            "unseen_change_pct": 100 * (seen_u / base_u - 1),
            "learn_s": t.s,
            "read": _describe(fm.output_memory),
        }
        print(row, flush=True)
        rows.append(row)
    return rows


def _describe(readout) -> str:
    """The read settings the defaults resolved to."""
    knobs = {k: getattr(readout, k, None) for k in ("weight", "temperature", "gate")}
    return f"{type(readout).__name__}(" + ", ".join(f"{k}={v}" for k, v in knobs.items()) + ")"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="smollm2,gemma3,qwen2.5")
    ap.add_argument("--sizes", default="256,1024")
    ap.add_argument("--skip", type=int, default=2000, help="tokens skipped at the start of the book")
    ap.add_argument("--unseen", type=int, default=2048)
    ap.add_argument(
        "--key-features",
        default="0",
        help="rows for each D: the output memory keyed with D random features (0: the state itself)",
    )
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    text = gutenberg_books()[BOOK]
    text = text if isinstance(text, str) else "\n".join(text)
    sizes = [int(x) for x in args.sizes.split(",")]
    key_features = [int(x) for x in args.key_features.split(",")]
    rows = []
    with Timer() as total:
        for name in args.models.split(","):
            rows += measure(name, text, sizes, args.skip, args.unseen, key_features)
    command = "python benchmarks/lm_defaults.py " + shlex.join(sys.argv[1:])
    meta = {
        "command": command,
        "data": f"{BOOK} (gutenberg-books asset): passage after {args.skip} tokens, "
        f"then {args.unseen} unseen",
        "machine": machine(args.threads),
        "seconds": total.s,
    }
    write_json(REPO / "benchmarks" / "results" / "lm_defaults.json", {**meta, "rows": rows})
    lines = [
        f"**Data** {meta['data']}; deterministic (no sampling)  ",
        f"**Machine** {meta['machine']}",
        "",
        "| model | key features | passage tokens | base ppl (passage) | recall ppl | base ppl (unseen) "
        "| unseen ppl | unseen change |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['key_features']} | {r['passage_tokens']} | {r['base_passage_ppl']:.2f} "
            f"| {r['recall_ppl']:.2f} "
            f"| {r['base_unseen_ppl']:.2f} | {r['unseen_ppl']:.2f} | {r['unseen_change_pct']:+.2f} % |"
        )
    md = "\n".join(lines)
    update_doc_block(REPO / "docs" / "lm.md", "defaults", md, command)
    print(md)


if __name__ == "__main__":
    main()
