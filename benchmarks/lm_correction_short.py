"""Short texts and the correction memory's cut: how much unseen text of the same book moves after
learning only a little of it.

Protocol (on *Northanger Abbey*, the novel the output memory's defaults were chosen on, never on
the test book *Persuasion*): skip the first 2,000 tokens, learn the next n ∈ ``--sizes`` tokens in
windows of ``--window`` with the correction memory (``output_mix="correction"``, its default β and
damping), then score the 2,048 tokens that follow (the continuation, not learned) with each cut of
``--cuts``: the read-out's default (``default``: a ridge worth 2·d pseudo-pairs,
:meth:`faast.lm.correction.CorrectionReadOut.default_cut`), the paper's ``alpha=1`` (truncation at
τ = 1/n, which interpolates the learned gradients when n < d), GCV truncation, and ``prior=N`` (a
ridge worth N pseudo-pairs, :meth:`faast.solver.Cut.pseudo_pairs`). The statistics are learned once
per n; the cuts only change the solve.

    python benchmarks/lm_correction_short.py --threads 1
    python benchmarks/lm_correction_short.py --model qwen2.5 --block correction-short-qwen2.5

Writes ``benchmarks/results/lm_correction_short.json`` and the ``correction-short`` block of
``docs/lm.md`` (``lm_<block>.json`` and the ``<block>`` block for another ``--block``).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import torch

from faast.assets.lm import austen_texts
from faast.eval.report import update_doc_block
from faast.lm import FaastConfig, get_faast_model
from faast.lm.prompts import start_token_ids
from faast.lm.text import encode, learn_windows, load_causal_lm, perplexity, token_windows, with_start_tokens
from task_bench import REPO, block_results_name, machine, write_json

BOOK, SKIP, SCORED = "northangerabbey", 2000, 2048


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--sizes", default="256,1024,4096,16384", help="tokens learned")
    ap.add_argument(
        "--cuts",
        default="default,alpha=1,gcv,prior=256,prior=4096",
        help="cuts compared ('default': the read-out's)",
    )
    ap.add_argument("--window", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None, help="folder for the JSON and Markdown (default: published)")
    ap.add_argument(
        "--block", default="correction-short", help="docs/lm.md block and results name (lm_<block>.json)"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sizes = [int(v) for v in args.sizes.split(",")]
    cuts = [c for c in args.cuts.split(",") if c]
    model, tok = load_causal_lm(args.model)
    ids = encode(tok, austen_texts()[BOOK])[SKIP:]
    start = start_token_ids(tok)
    fm = get_faast_model(model, FaastConfig(num_memories=0, output_mix="correction"))
    rows = []
    for n in sizes:
        learn = with_start_tokens(token_windows(ids[:n], args.window), start)
        test = with_start_tokens(token_windows(ids[n : n + SCORED], args.window), start)
        with fm.disabled():
            base = perplexity(fm, test).ppl
        fm.reset_projection()
        learn_windows(fm, learn, batch_size=4, progress=True)
        row = {"learned_tokens": n, "base": base}
        for cut in cuts:
            fm.set_read(fm.read_config.replace(cut=None if cut == "default" else cut))
            row[cut] = perplexity(fm, test).ppl
        rows.append(row)
        print(f"[short] {row}", flush=True)
    command = "python benchmarks/lm_correction_short.py " + shlex.join(sys.argv[1:])
    meta = {"command": command, "model": args.model, "machine": machine(args.threads), "book": BOOK}
    out = Path(args.out) if args.out else None
    results = (out or REPO / "benchmarks" / "results") / block_results_name(args.block)
    write_json(results, {**meta, "rows": rows})
    default = fm.output_memory.default_cut()
    lines = [
        f"**Model** {args.model} (correction memory, default β = 0.5, c = 0.3); **data** *Northanger Abbey* "
        f"(austen-novels asset) after its first {SKIP} tokens: learn n tokens, score the next {SCORED}; "
        f"**machine** {meta['machine']}. Perplexity of the continuation:",
        "",
        "| tokens learned | base model | "
        + " | ".join(f"default cut ({default})" if c == "default" else f"cut {c}" for c in cuts)
        + " |",
        "|---:|---:|" + "---:|" * len(cuts),
    ]
    lines += [
        f"| {r['learned_tokens']} | {r['base']:.2f} | " + " | ".join(f"{r[c]:.2f}" for c in cuts) + " |"
        for r in rows
    ]
    md = "\n".join(lines)
    if out is None:
        update_doc_block(REPO / "docs" / "lm.md", args.block, md, command)
    else:
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{args.block}.md").write_text(md, encoding="utf-8")
    print(md)


if __name__ == "__main__":
    main()
