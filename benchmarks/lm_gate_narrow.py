"""The recall gate on narrow texts: learn a short or repetitive text (a word, a one-line note, a rule
of dashes, a phrase repeated), then score unseen Spanish and English text and the learned text
itself, with the library's default read (gated "prob" mix), and with the gate's context check off
(``ProbReadOut._context_basis`` returning None: the rule before it existed), interleaved in one run.

A narrow memory (fewer than ``NARROW_SUPPORT`` = 64 effective distinct next tokens) has W·z near
one of its few learned rows whatever z is, so the gate's cosine was near 1 on every text; the gate
now also takes the share of z's unit key in the learned keys' dominant directions (eigenvalues of
KᵀK at least ``CONTEXT_SPAN`` = 1 % of the largest). A varied text (the first verses of Genesis in
Spanish, above 64 effective tokens) is the control: the check does not apply to it.

Texts: fixed strings, and from the offline assets ``bible-en-es`` (Spanish: Genesis 1 for the
control; 40 verses of Psalms, unseen) and ``gutenberg-books`` (English: *The War of the Worlds*,
unseen). "In a new context" scores the learned text after the words "Reminder: ".

    python benchmarks/lm_gate_narrow.py --models smollm2,gemma3 --threads 1

Writes ``benchmarks/results/lm_gate_narrow.{json,md}`` and the ``gate-narrow`` block of
``docs/lm.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import shlex
import sys
import warnings
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from faast.assets.text import bible_pairs, gutenberg_books
from faast.eval.report import update_doc_block
from faast.lm import FaastConfig, get_faast_model
from faast.lm.output_readouts import ProbReadOut, effective_tokens
from faast.lm.prompts import start_token_ids
from faast.lm.text import load_causal_lm
from faast.publish import write_public_text
from task_bench import MODEL_NAMES, REPO, Timer, machine, write_json

NARROW_TEXTS = {
    "a word": "Hola",
    "a one-line note": "The meeting is on Tuesday at noon.",
    "a rule of dashes": "-" * 300,
    "a phrase × 100": "Hola.\n" * 100,
    "a syllable × 150": "ja " * 150,
}
REMINDER = "Reminder: "


def texts() -> tuple[dict[str, str], dict[str, str]]:
    """(texts learned, one at a time; unseen texts scored after each)."""
    verses = bible_pairs()
    genesis = " ".join(v["es"] for v in verses if v["book"] == "Genesis" and v["chapter"] == 1)[:800]
    psalms = " ".join(v["es"] for v in verses if v["book"] == "Psalms")[:1500]
    book = gutenberg_books()["The War of the Worlds"]
    book = book if isinstance(book, str) else "\n".join(book)
    english = book[20000:21500]
    return {**NARROW_TEXTS, "control: Genesis 1 (es)": genesis}, {"es": psalms, "en": english}


@contextlib.contextmanager
def context_check(on: bool) -> Iterator[None]:
    """The gate's context check as the library has it (``on``), or off (the rule before it)."""
    if on:
        yield
        return
    original = ProbReadOut._context_basis
    ProbReadOut._context_basis = lambda self: None  # type: ignore[method-assign]
    try:
        yield
    finally:
        ProbReadOut._context_basis = original  # type: ignore[method-assign]


def measure(name: str, learned: dict[str, str], unseen: dict[str, str]) -> list[dict]:
    model, tok = load_causal_lm(name)
    fm = get_faast_model(model, FaastConfig(num_memories=0))
    start = start_token_ids(tok)

    def ids(text: str) -> torch.Tensor:
        return torch.tensor([start + tok(text, add_special_tokens=False).input_ids])

    def ppl(row: torch.Tensor, skip: int = 0) -> float:
        with torch.no_grad():
            logits = fm(input_ids=row).logits[0, :-1].double()
        nll = F.cross_entropy(logits[skip:], row[0, 1 + skip :], reduction="mean")
        return math.exp(float(nll))

    unseen_ids = {k: ids(v) for k, v in unseen.items()}
    with fm.disabled():
        base_unseen = {k: ppl(v) for k, v in unseen_ids.items()}
    rows = []
    for label, text in learned.items():
        row_ids = ids(text)
        in_context = ids(REMINDER + text)
        skip = in_context.shape[1] - row_ids.shape[1]  # score the learned text's tokens only
        fm.reset_projection()
        if row_ids.shape[1] - len(start) < 2:  # one token after the start tokens: no pair to learn
            print(f"{MODEL_NAMES[name]}: {label!r} is one token: nothing to learn", flush=True)
            continue
        fm.learn(input_ids=row_ids)
        out = fm.output_memory
        with fm.disabled():
            base_recall, base_context = ppl(row_ids), ppl(in_context, max(skip, 0))
        for check in (True, False):
            with context_check(check), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out._support = None  # the read-out's cache: recomputed under this rule
                row = {
                    "model": MODEL_NAMES[name],
                    "text": label,
                    "pairs": fm.num_pairs,
                    "effective_tokens": effective_tokens(out.counts),
                    "context_check": check,
                    "recall_base_ppl": base_recall,
                    "recall_ppl": ppl(row_ids),
                    "new_context_base_ppl": base_context,
                    "new_context_ppl": ppl(in_context, max(skip, 0)),
                }
                for k, v in unseen_ids.items():
                    row[f"unseen_{k}_change_pct"] = 100 * (ppl(v) / base_unseen[k] - 1)
                row["context_directions"] = 0 if out._context is None else int(out._context.shape[1])
            out._support = None
            print(row, flush=True)
            rows.append(row)
    return rows


def markdown(rows: list[dict], meta: dict) -> str:
    lines = [
        f"**Data** {meta['data']}; deterministic (no sampling)  ",
        f"**Machine** {meta['machine']}",
        "",
        "| model | learned text | pairs | effective tokens | context directions | context check "
        "| unseen es | unseen en | recall ppl (base) | in a new context (base) |",
        "|---|---|---:|---:|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['text']} | {r['pairs']} | {r['effective_tokens']:.1f} | "
            f"{r['context_directions']} | {'on' if r['context_check'] else 'off'} | "
            f"{r['unseen_es_change_pct']:+.1f} % | {r['unseen_en_change_pct']:+.1f} % | "
            f"{r['recall_ppl']:.2f} ({r['recall_base_ppl']:.3g}) | "
            f"{r['new_context_ppl']:.2f} ({r['new_context_base_ppl']:.3g}) |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="smollm2")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    learned, unseen = texts()
    rows = []
    with Timer() as total:
        for name in args.models.split(","):
            rows += measure(name, learned, unseen)
    command = "python benchmarks/lm_gate_narrow.py " + shlex.join(sys.argv[1:])
    meta = {
        "command": command,
        "data": "fixed narrow texts; Genesis 1 (es, first 800 characters) as the control; unseen: Psalms "
        "(es, 1,500 characters, bible-en-es asset) and The War of the Worlds (en, 1,500 characters "
        "from character 20,000, gutenberg-books asset)",
        "machine": machine(args.threads),
        "seconds": total.s,
    }
    write_json(REPO / "benchmarks" / "results" / "lm_gate_narrow.json", {**meta, "rows": rows})
    md = markdown(rows, meta)
    write_public_text(
        REPO / "benchmarks" / "results" / "lm_gate_narrow.md", f"Command: `{command}`\n\n{md}\n"
    )
    update_doc_block(REPO / "docs" / "lm.md", "gate-narrow", md, command)
    print(md)


if __name__ == "__main__":
    main()
