"""The recall gate on narrow texts: learn a short or repetitive text (a word, a one-line note, a rule
of dashes, a phrase repeated, a sentence after a repeated phrase), then score unseen Spanish and
English text and the learned text itself, under three rules of the gate's context check,
interleaved in one run: the library's (``on``), the rule of 2026-12-07 before it (``dominant``: the
share of the context's key in the learned keys' dominant directions alone) and none (``off``:
``ProbReadOut._context_check`` returning None, the gate before any check).

A narrow memory (fewer than ``NARROW_SUPPORT`` = 64 effective distinct next tokens) has W·z near
one of its few learned rows whatever z is, so the gate's cosine was near 1 on every text. The
check bounds it by how far z's key lies among the learned keys (``faast.lm.output_readouts.
context_share``): the larger of its share in their dominant directions (eigenvalues of KᵀK at least
``CONTEXT_SPAN`` = 1 % of the largest) and 1/√max(L, 1), L = zᵀ(KᵀK + ρI)⁻¹z its leverage (ρ =
``CONTEXT_RIDGE`` = 0.1 × a learned key's mean squared norm; at most 1 for every learned key). The
dominant directions alone shut out a context learned once beside one repeated many times: the
rows "after ..." score the last sentence of such a text (its tokens only). A varied text (the
first verses of Genesis in Spanish, above 64 effective tokens) is the control: no check applies.

``CONTEXT_RIDGE`` was chosen on SmolLM2 and Gemma-3-270M with the texts marked "dev" below; the
texts marked "held out" and the model Qwen2.5-Coder-0.5B were not looked at before it was fixed.

Texts: fixed strings, and from the offline assets ``bible-en-es`` (Spanish: Genesis 1 for the
control; 40 verses of Psalms, unseen) and ``gutenberg-books`` (English: *The War of the Worlds*,
unseen). "In a new context" scores the learned text (or its last sentence) after "Reminder: ".

    python benchmarks/lm_gate_narrow.py --models smollm2,gemma3,qwen2.5 --threads 1

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
from faast.lm import FaastConfig, get_faast_model, output_readouts
from faast.lm.output_readouts import ContextCheck, ProbReadOut, effective_tokens
from faast.lm.prompts import start_token_ids
from faast.lm.text import load_causal_lm
from faast.publish import write_public_text
from task_bench import MODEL_NAMES, REPO, Timer, machine, write_json

#: label → (text, its scored part: the whole text, or the sentence after a repeated part), "dev" or
#: "held out" (see the module docstring)
NARROW_TEXTS: dict[str, tuple[str, str, str]] = {
    "a word": ("Hola", "Hola", "dev"),
    "a one-line note": ("The meeting is on Tuesday at noon.",) * 2 + ("dev",),
    "a rule of dashes": ("-" * 300,) * 2 + ("dev",),
    "a phrase × 100": ("Hola.\n" * 100,) * 2 + ("dev",),
    "a syllable × 150": ("ja " * 150,) * 2 + ("dev",),
    "after a phrase × 100": (
        "Hola.\n" * 100 + "Nos vemos el martes en la plaza mayor.",
        "Nos vemos el martes en la plaza mayor.",
        "dev",
    ),
    "after a rule of dashes": (
        "-" * 300 + "The meeting is on Tuesday at noon.",
        "The meeting is on Tuesday at noon.",
        "dev",
    ),
    "after a syllable × 150": (
        "ja " * 150 + "Call me when you arrive at the station.",
        "Call me when you arrive at the station.",
        "dev",
    ),
    "after a to-do × 60": (
        "- [ ] todo\n" * 60 + "- [ ] call the bank about the loan\n",
        "- [ ] call the bank about the loan\n",
        "held out",
    ),
    "after a log line × 80": (
        "INFO heartbeat ok\n" * 80 + "ERROR disk /dev/sda1 is full\n",
        "ERROR disk /dev/sda1 is full\n",
        "held out",
    ),
    "a line of code × 40": ("x = x + 1\n" * 40,) * 2 + ("held out",),
}
REMINDER = "Reminder: "
RULES = ("on", "dominant", "off")


def texts() -> tuple[dict[str, tuple[str, str, str]], dict[str, str]]:
    """(texts learned, one at a time, with their scored part and set; unseen texts scored after each)."""
    verses = bible_pairs()
    genesis = " ".join(v["es"] for v in verses if v["book"] == "Genesis" and v["chapter"] == 1)[:800]
    psalms = " ".join(v["es"] for v in verses if v["book"] == "Psalms")[:1500]
    book = gutenberg_books()["The War of the Worlds"]
    book = book if isinstance(book, str) else "\n".join(book)
    english = book[20000:21500]
    control = {"control: Genesis 1 (es)": (genesis, genesis, "control")}
    return {**NARROW_TEXTS, **control}, {"es": psalms, "en": english}


def _dominant_share(keys: torch.Tensor, check: ContextCheck) -> torch.Tensor:
    """The rule before the leverage: the share ‖Pk̂‖ of the unit key in the dominant directions."""
    inside = (keys @ check.basis[:, : check.dominant]).square().sum(dim=-1, keepdim=True)
    return (inside / (keys * keys).sum(dim=-1, keepdim=True).clamp_min(1e-30)).sqrt()


@contextlib.contextmanager
def context_check(rule: str) -> Iterator[None]:
    """The gate's context check as the library has it (``"on"``), by the dominant directions alone
    (``"dominant"``), or off (``"off"``: the gate before any check)."""
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    if rule == "on":
        yield
        return
    original_check, original_share = ProbReadOut._context_check, output_readouts.context_share
    if rule == "off":
        ProbReadOut._context_check = lambda self: None  # type: ignore[method-assign]
    else:
        output_readouts.context_share = _dominant_share
    try:
        yield
    finally:
        ProbReadOut._context_check = original_check  # type: ignore[method-assign]
        output_readouts.context_share = original_share


def measure(name: str, learned: dict[str, tuple[str, str, str]], unseen: dict[str, str]) -> list[dict]:
    model, tok = load_causal_lm(name)
    fm = get_faast_model(model, FaastConfig(num_memories=0))
    start = start_token_ids(tok)

    def ids(text: str) -> torch.Tensor:
        return torch.tensor([start + tok(text, add_special_tokens=False).input_ids])

    def ppl(row: torch.Tensor, skip: int = 0) -> float:
        """Perplexity of the tokens of ``row`` (1, T) after its first ``skip`` + 1."""
        with torch.no_grad():
            logits = fm(input_ids=row).logits[0, :-1].double()
        nll = F.cross_entropy(logits[skip:], row[0, 1 + skip :], reduction="mean")
        return math.exp(float(nll))

    def scored_from(text: str, part: str) -> int:
        """Targets of ``ids(text)`` to skip so that ``part``, the end of ``text``, is scored."""
        if part == text:
            return 0
        lead = ids(text[: len(text) - len(part)])
        return max(lead.shape[1] - 1, 0)

    unseen_ids = {k: ids(v) for k, v in unseen.items()}
    with fm.disabled():
        base_unseen = {k: ppl(v) for k, v in unseen_ids.items()}
    rows = []
    for label, (text, part, kind) in learned.items():
        row_ids = ids(text)
        in_context = ids(REMINDER + text)
        skip = scored_from(text, part)
        context_skip = in_context.shape[1] - row_ids.shape[1] + skip  # the same tokens, scored
        fm.reset_projection()
        if row_ids.shape[1] - len(start) < 2:  # one token after the start tokens: no pair to learn
            print(f"{MODEL_NAMES[name]}: {label!r} is one token: nothing to learn", flush=True)
            continue
        fm.learn(input_ids=row_ids)
        out = fm.output_memory
        with fm.disabled():
            base_recall, base_context = ppl(row_ids, skip), ppl(in_context, max(context_skip, 0))
        for rule in RULES:
            with context_check(rule), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out._support = None  # the read-out's cache: recomputed under this rule
                row = {
                    "model": MODEL_NAMES[name],
                    "text": label,
                    "set": kind,
                    "pairs": fm.num_pairs,
                    "effective_tokens": effective_tokens(out.counts),
                    "context_check": rule,
                    "recall_base_ppl": base_recall,
                    "recall_ppl": ppl(row_ids, skip),
                    "new_context_base_ppl": base_context,
                    "new_context_ppl": ppl(in_context, max(context_skip, 0)),
                }
                for k, v in unseen_ids.items():
                    row[f"unseen_{k}_change_pct"] = 100 * (ppl(v) / base_unseen[k] - 1)
            out._support = None
            print(row, flush=True)
            rows.append(row)
    return rows


def markdown(rows: list[dict], meta: dict) -> str:
    lines = [
        f"**Data** {meta['data']}; deterministic (no sampling)  ",
        f"**Machine** {meta['machine']}",
        "",
        "| model | learned text | set | pairs | effective tokens | context check "
        "| unseen es | unseen en | recall ppl (base) | in a new context (base) |",
        "|---|---|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['text']} | {r['set']} | {r['pairs']} | {r['effective_tokens']:.1f} | "
            f"{r['context_check']} | "
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
        "data": "fixed narrow texts (rows 'after ...': their last sentence scored); Genesis 1 (es, first "
        "800 characters) as the control; unseen: Psalms "
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
