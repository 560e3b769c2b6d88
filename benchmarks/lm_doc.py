"""Render the LM results page ``docs/lm.md`` (+ ``docs/lm/mix.png``) from the benchmark JSONs.

Reads what the LM benchmarks wrote (nothing is re-measured or typed in by hand):

* ``benchmarks/results/lm.json``          ``python benchmarks/lm.py``      (speed and bytes)
* ``benchmarks/results/lm_mix.json``      ``python benchmarks/lm_mix.py --threads 1``  (output mix, SmolLM2)
* ``benchmarks/results/lm_mix-gemma3.json``  ``python benchmarks/lm_mix.py --model gemma3 ...``  (Gemma)
* ``benchmarks/results/lm_readout.json``  ``python benchmarks/lm_readout.py``  (trained middle memory)

    python benchmarks/lm_doc.py            # writes docs/lm.md and docs/lm/mix*.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from faast.lm import ProbReadOut
from faast.publish import save_figure, write_public_text
from lm_mix import DEFAULT, MODELS, build_parser, result_file, select_joint

#: Everything from this line on in docs/lm.md is written by other benchmarks and kept by this one.
KEEP_MARKER = "<!-- faast: the sections below are written by other benchmarks; lm_doc.py keeps them -->"

RESULTS = Path(__file__).parent / "results"
DOCS = Path(__file__).parent.parent / "docs"
FAMILIES = ("paper", "logit", "logit-a0.5", "prob", "prob-learned", "prob-gated")


def family(name: str) -> str:
    return name.split("@")[0]


def load(name: str) -> dict | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else None


def speed_section(res: dict) -> list[str]:
    learn, gen, size = res["learn"], res["generate"], res["bytes"]
    args, machine = res["args"], res["machine"]
    lines = [
        f"## Speed and size (`python benchmarks/lm.py --threads {args['threads']}`)",
        "",
        f"Model: {res['model']}; data: {res['data']}; default config (one middle memory and the output "
        f"memory, `{res['config']['output_mix']}` mix). Batch {args['batch']} × {args['window']} tokens, "
        f"{args['rounds']} interleaved rounds, median; {machine['threads']} CPU thread(s), torch "
        f"{machine['torch']}, {machine['platform']}. The development VM is shared: single timings vary "
        "by up to 2×.",
        "",
        "| learn (forward only) | tokens/s | ratio |",
        "|---|---:|---:|",
        f"| plain forward `model(ids)` (with LM head) | {learn['plain_forward']['tok_per_s']:.0f} | 1.00 |",
        f"| backbone only (no LM head) | {learn['backbone_only']['tok_per_s']:.0f} | "
        f"{learn['backbone_only']['tok_per_s'] / learn['plain_forward']['tok_per_s']:.2f} |",
        f"| `learn` (middle + output memory) | {learn['learn']['tok_per_s']:.0f} | "
        f"{learn['ratio_learn_vs_plain']:.2f} |",
        f"| `learn` (output memory only) | {learn['learn_output_only']['tok_per_s']:.0f} | "
        f"{learn['ratio_learn_output_only_vs_plain']:.2f} |",
        "",
        f"`learn` runs the backbone without the LM head, so it is faster than a plain forward; against "
        f"the backbone alone it runs at {learn['ratio_learn_vs_backbone']:.2f}× (the difference is the "
        "float64 statistics). Target ≥ 0.85× of a plain forward.",
        "",
        f"| greedy generation, {gen['new_tokens']} new tokens after a {gen['prompt_tokens']}-token prompt, "
        f"fast weights of {res['learned_tokens']} learned tokens | tokens/s | ratio |",
        "|---|---:|---:|",
    ]
    labels = {
        "base_no_hooks": "base model (hooks removed)",
        "fast_weights": f"fast weights, default `{gen['default_mix']}` mix",
        "fast_weights_logit_mix": "fast weights, `logit` mix",
        "fast_weights_prob_vocab": "fast weights, `prob` mix over the whole vocabulary",
        "fast_weights_active_middle": "fast weights + an active (non-zero) middle readout",
    }
    for key, label in labels.items():
        if key in gen:
            lines.append(f"| {label} | {gen[key]['tok_per_s']:.1f} | {gen[key]['ratio_vs_base']:.2f} |")
    lines += [
        "",
        "Target ≥ 0.9× of the base model.",
        "",
        f"| bytes for {size['learned_tokens']} learned tokens | bytes |",
        "|---|---:|",
        f"| KV cache in-context learning would hold ({size['kv_cache_per_token']} B/token) | "
        f"{size['kv_cache_for_learned_tokens']:,} |",
        f"| compiled fast weights (all memories) | {size['fast_weights_compiled']:,} |",
        "| compiled fast weights (output memory only) | "
        f"{size['fast_weights_compiled_output_memory_only']:,} |",
        f"| float64 statistics (to keep learning / forget exactly) | {size['statistics_float64']:,} |",
        f"| LM-head rows of the {size['learned_distinct_tokens']} learned tokens (`prob` mix cache) | "
        f"{size['support_rows_cache']:,} |",
        "",
        f"The fast weights have a fixed size: they are smaller than the KV cache once more than "
        f"{size['break_even_tokens_compiled']:.0f} tokens are learned.",
        "",
    ]
    return lines


def _gate_of(res: dict) -> float | None:
    """The gate θ the benchmark's default model read with (runs before ReadConfig stored it in
    the layout config)."""
    if "read" in res:
        gate = res["read"]["gate"]
        return ProbReadOut.defaults["gate"] if gate == "auto" else gate
    cfg = res["config"]
    gate = cfg.get("output_gate", "auto")
    if cfg.get("output_mix") != "prob":
        return None
    return ProbReadOut.defaults["gate"] if gate == "auto" else gate


def recall_section(res: dict) -> list[str]:
    ex = res["recall_example"]
    cfg = res["config"]
    theta = _gate_of(res)
    gate = f", gate θ = {theta}" if theta is not None else ""
    n = ex["new_tokens"]

    def quoted(text: str) -> str:
        return " ".join(text.split()).replace("|", "\\|")

    return [
        f"### Recall of a learned passage (same run, default `{cfg['output_mix']}` mix{gate})",
        "",
        f"Output memory only, after `learn` on one {ex['learned_tokens']}-token passage of the same novel; "
        f"greedy continuation of its first tokens, {ex['new_tokens']} new tokens.",
        "",
        "| | continuation | tokens equal to the passage |",
        "|---|---|---:|",
        f"| prompt | {quoted(ex['prompt'])} | |",
        f"| the passage | {quoted(ex['passage'])} | |",
        f"| base model | {quoted(ex['base'])} | {ex['base_tokens_matching_passage']}/{n} |",
        f"| with fast weights | {quoted(ex['faast'])} | {ex['faast_tokens_matching_passage']}/{n} |",
        "",
    ]


#: The mix studies, one per model: (result file, PNG beside docs/lm.md).
MIX_RUNS = tuple((result_file(m), "mix.png" if m == "smollm2" else f"mix-{m}.png") for m in MODELS)
#: Arguments a mix result records that are not flags worth printing (resolved per model, or paths).
_UNPRINTED = ("threads", "chunk", "out")


def mix_command(args: dict) -> str:
    """The command line that wrote a mix result (the flags that differ from lm_mix.py's defaults)."""
    defaults = vars(build_parser().parse_args([]))
    flags = [
        f"--{k.replace('_', '-')} {v}"
        for k, v in args.items()
        if k in defaults and k not in _UNPRINTED and defaults[k] != v
    ]
    return " ".join(["python benchmarks/lm_mix.py", *flags, f"--threads {args['threads']}"])


def short_model(res: dict) -> str:
    return res["model"].split(" (")[0]


def mix_intro(first: dict) -> list[str]:
    sel, args = first["selection"], first["args"]
    return [
        "## How the output memory is read (`python benchmarks/lm_mix.py`)",
        "",
        f"Data: {first['data']}. Output memory only (no trained parameters); every window is read after "
        "the tokenizer's start tokens (Gemma's `<bos>`). For each model, a default is chosen on "
        "*Northanger Abbey* only: the lowest recall perplexity among settings that cost at most "
        f"{sel['max_cost']:.0%} perplexity on unseen text both after learning tokens of four other "
        f"novels (domain) and after learning only the preceding {args['window']}-token passage "
        "(continuation). Reported on *Persuasion*, never used for a choice. β and T are scale-free: "
        "the memory's scores are divided by ρ², the mean squared norm of the LM head's rows.",
        "",
    ]


def mix_section(res: dict, png: Path) -> list[str]:
    sel, test = res["selection"], res["test"]
    args = res["args"]
    show = ["base", sel["choice"], *(v for v in sel["per_mix_choice"].values() if v), "paper@0.9"]
    show = list(dict.fromkeys(show))
    lines = [
        f"### {short_model(res)} (`{mix_command(args)}`)",
        "",
        f"Model: {res['model']}, ρ² = {res['head_scale']:.2f}. Domain: {res['domain']['learn_tokens']:,} "
        f"learned tokens; {args['passages']} passages per novel; test domain {args['test_windows']} "
        f"windows (scored for the settings named below only).",
        "",
        f"Chosen on this model alone: **{sel['choice']}** (λ, T{', θ' if 'gated' in sel['choice'] else ''}). "
        "Best admissible setting per mix: "
        + ", ".join(f"{k}: {v}" for k, v in sel["per_mix_choice"].items())
        + ". `paper@0.9` is the paper's setting.",
        "",
        "| Persuasion | domain ppl | continuation ppl | recall ppl | recall top-1 |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in show:
        lines.append(test_row(test, name))
    lines += [
        "",
        f"Measured in {res['seconds'] / 60:.0f} min on {res['machine']['threads']} CPU thread(s).",
        "",
        f"![recall vs cost per mix, {short_model(res)}]({png.parent.name}/{png.name})",
        "",
    ]
    return lines


def test_row(test: dict, name: str) -> str:
    dom = test["domain"].get(name)
    dom_s = f"{dom['ppl']:.2f}" if dom else "–"
    cont, rec = test["continuation"][name], test["recall"][name]
    return f"| {name} | {dom_s} | {cont['ppl']:.2f} | {rec['ppl']:.2f} | {rec['top1']:.3f} |"


def joint_section(runs: list[dict]) -> list[str]:
    """One default for every model studied, and how the library's default reads on each."""
    joint = select_joint({short_model(r): r["tune"] for r in runs}, runs[0]["selection"]["max_cost"])
    lib = DEFAULT.name
    lines = [
        "### One default for every model",
        "",
        f"Admissible on every model's tuning novel, best geometric-mean recall: **{joint['choice']}** "
        f"({len(joint['admissible'])} settings admissible on all). The library's default "
        f"(`ProbReadOut.defaults`) is **{lib}**"
        + (
            " — the same."
            if lib == joint["choice"]
            else f"; {lib} is "
            + ("admissible on all." if lib in joint["admissible"] else "NOT admissible on all.")
        )
        + (
            " Geometric-mean recall / base on the tuning novels: "
            f"{joint['recall_ratio'][joint['choice']]:.4f} for {joint['choice']}"
            + (f", {joint['recall_ratio'][lib]:.4f} for the default" if lib in joint["recall_ratio"] else "")
            + "."
        )
        + " On *Persuasion*:",
        "",
        "| model | setting | domain ppl | continuation ppl | recall ppl | recall top-1 |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in runs:
        names = dict.fromkeys(["base", lib, joint["choice"], r["selection"]["choice"]])
        for name in names:
            if name in r["test"]["recall"]:
                lines.append(f"| {short_model(r)} " + test_row(r["test"], name))
    lines += [
        "",
        "Mixes: `paper@r` (1−r)·h + r·W·h before the final norm (the paper); `logit@β` logits + "
        "β·head(W·z)/ρ²; `prob@(λ, T)` log((1−λ)·p_model + λ·softmax(head(W·z)/(ρ²·T))) over the "
        "vocabulary, `prob-learned` the same over the learned tokens only; `prob-gated@(λ, T, θ)` "
        "prob-learned with λ scaled per token by clamp((c − θ)/(1 − θ), 0, 1), c = the largest cosine "
        "between W·z and a learned token's LM-head row. For a context the memory learned, W·z "
        "reproduces the next token's row (c ≈ 1); on new text c is lower and the gate shuts, so the "
        "model is left as it is. The gate is ours, not the paper's.",
        "",
        "Recall = perplexity of a passage after learning it (what test-time learning should improve); "
        "continuation/domain = perplexity of text that was not learned (what it should not hurt).",
        "",
    ]
    return lines


def mix_curves(res: dict) -> list[tuple[str, list[str]]]:
    """(label, candidate names) per curve: one per mix family, temperature and gate; λ varies along it."""
    curves: list[tuple[str, list[str]]] = []
    for fam in FAMILIES:
        names = [n for n in res["candidates"] if family(n) == fam]
        if not fam.startswith("prob"):
            curves.append((fam, names))
            continue
        groups: dict[tuple[str, ...], list[str]] = {}
        for n in names:
            groups.setdefault(tuple(n.split("@")[1].strip("()").split(", ")[1:]), []).append(n)
        for params, group in groups.items():
            gated_t, plain_t = (
                str(t["temperature"]) for t in (ProbReadOut.defaults, ProbReadOut.ungated_defaults)
            )
            if fam == "prob-gated" and params[0] == gated_t:
                curves.append((f"{fam} T={gated_t}, θ={params[1]}", group))
            elif fam != "prob-gated" and params[0] == plain_t:
                curves.append((f"{fam} T={plain_t}", group))
    return curves


def plot_mix(res: dict, png: Path) -> None:
    """Recall perplexity vs cost on unseen text, one curve per mix: continuation on the test novel
    (left) and domain on the tuning novel (right: the only split with every candidate's domain cost)."""
    choice = res["selection"]["choice"]
    panels = [
        ("test", "continuation", "Persuasion (test): continuation / base"),
        ("tune", "domain", "Northanger Abbey (tuning): domain / base"),
    ]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=False)
    for ax, (split, cost, xlabel) in zip(axes, panels, strict=True):
        data = res[split]
        base_c, base_r = data[cost]["base"]["ppl"], data["recall"]["base"]["ppl"]
        for label, group in mix_curves(res):
            x = [data[cost][n]["ppl"] / base_c for n in group]
            y = [data["recall"][n]["ppl"] / base_r for n in group]
            ax.plot(x, y, marker="o", ms=3, label=label)
        ax.scatter(
            [data[cost][choice]["ppl"] / base_c],
            [data["recall"][choice]["ppl"] / base_r],
            s=120,
            facecolors="none",
            edgecolors="k",
            label=f"chosen on this model: {choice}",
            zorder=3,
        )
        ax.axvline(1 + res["selection"]["max_cost"], color="grey", ls=":", lw=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(0.98, 3.0)  # the logit mix runs off to 10⁷× at large β
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.set_xlabel(f"{xlabel} perplexity (unseen text)")
        ax.set_ylabel("recall perplexity / base (lower: remembers)")
    axes[1].legend(fontsize=7)
    fig.suptitle(
        f"{short_model(res)} output memory: recall vs cost (weight grows along each curve)", fontsize=10
    )
    fig.tight_layout()
    save_figure(fig, png, dpi=110)


def readout_section(res: dict) -> list[str]:
    ev, tr, args = res["eval"], res["train"], res["args"]
    lines = [
        f"## A trained middle memory (`python benchmarks/lm_readout.py --threads {args['threads']}`)",
        "",
        f"Model: {res['model']}; {res['memory']}. Readout (`out_proj` + scorer) trained by backprop with "
        f"the backbone frozen: {tr['steps']} steps on {tr['tokens']:,} tokens of "
        f"{', '.join(tr['novels'])} in {tr['seconds'] / 60:.0f} min (seed {tr['seed']}). Evaluation on "
        f"*Persuasion* ({args['eval_windows']} windows × {args['window']} tokens), each window scored "
        f"after learning the {args['context_windows']} windows before it.",
        "",
        "| Persuasion | ppl | top-1 |",
        "|---|---:|---:|",
    ]
    for k, v in ev.items():
        lines.append(f"| {k} | {v['ppl']:.2f} | {v['top1']:.3f} |")
    gain = ev["base"]["ppl"] - ev["middle"]["ppl"]
    control = ev["base"]["ppl"] - ev["middle, other context"]["ppl"]
    lines += [
        "",
        f"Read honestly: the trained middle memory lowers perplexity by {gain:.2f}, but "
        f"{control:.2f} of that remains when its fast weights hold *another novel* (control row), so "
        "most of the gain is the trained readout acting as a small adapter, not recall of the context.",
        "",
    ]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(DOCS / "lm.md"))
    args = ap.parse_args()
    out = Path(args.out)
    lines = [
        "# Language-model results",
        "",
        "Generated by `python benchmarks/lm_doc.py` from the JSON files the benchmarks wrote in "
        "`benchmarks/results/`; each section names the command that measured it.",
        "",
    ]
    found = False
    if (speed := load("lm.json")) is not None:
        lines += speed_section(speed)
        if "recall_example" in speed:
            lines += recall_section(speed)
        found = True
    mixes = [(res, out.parent / "lm" / name) for file, name in MIX_RUNS if (res := load(file)) is not None]
    if mixes:
        lines += mix_intro(mixes[0][0])
        for res, png in mixes:
            plot_mix(res, png)
            lines += mix_section(res, png)
        lines += joint_section([res for res, _ in mixes])
        found = True
    if (readout := load("lm_readout.json")) is not None:
        lines += readout_section(readout)
        found = True
    if not found:
        raise SystemExit(f"no LM benchmark results in {RESULTS}; run benchmarks/lm*.py first")
    if out.is_file():  # sections written by other benchmarks (their own generated blocks) are kept
        old = out.read_text(encoding="utf-8")
        if KEEP_MARKER in old:
            lines += ["", old[old.index(KEEP_MARKER) :].rstrip()]
    write_public_text(out, "\n".join(lines) + "\n")
    print(f"wrote {out} and {len(mixes)} mix plot(s) in {out.parent / 'lm'}")


if __name__ == "__main__":
    main()
