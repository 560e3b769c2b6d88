"""Translation: Gemma-3-270M (``--models``: also ``smollm2``, ``qwen2.5``) learns English → Spanish
from verse pairs, without gradients, against zero-shot and in-context learning.

Data: the verse-aligned World English Bible and Reina-Valera 1909 (offline asset ``bible-en-es``,
Debian ``sword-text-web`` / ``sword-text-sparv``). Whole books are kept apart for testing
(``--test-books``, default Ruth, Esther, Jonah, Mark, Philippians, James: 1,189 verses): no verse of
a test book is in the support pool. The pool is every other verse, shuffled with ``--seed``; each
support subset is a prefix of that order, so FAAST and in-context learning see the same examples.

Prompt: ``English: {input}\\nSpanish:`` then `` {spanish}\\n``.

Rows: zero-shot; in-context 1- and 5-shot (``--icl``); FAAST after k ∈ ``--sizes`` examples, read-out
chosen by ``TaskModel.fit`` (cross-validation on the k examples, over :func:`translation_candidates`),
for each output memory of ``--mixes``: "prob" (the next tokens) and "correction" (the loss gradients
at the head input, :mod:`faast.lm.correction`; candidates ``default_candidates("correction")``);
Scores: BLEU and chrF (sacrebleu) of greedy translations of ``--generate`` test verses (a seeded
sample), and the teacher-forced NLL per answer token of the reference on ``--nll`` test verses.
``--no-repeat-ngram N`` constrains every row's greedy decoding alike: no answer repeats an n-gram of
its own (:class:`faast.lm.decoding.NoRepeatInAnswer`; prompt and demonstrations do not count).
With ``--faast-icl M``: FAAST on top of in-context learning, the first M pool examples written
before every prompt (``TaskSpec.demonstrations``) and the memory learning the other k − M, beside
the M demonstrations alone through the same prompts (memory empty).
With ``--lora``: backprop on the same examples, LoRA (PEFT, rank 8) trained on the first k pool
examples for each k ≥ 2 of ``--sizes``, on the answers' tokens as FAAST learns them, its learning
rate chosen among ``--lora-lrs`` on a held-out fifth of the k (:mod:`faast.lm.lora_baseline`),
read through the same prompts with the memory off.
Rows run zero-shot, FAAST, FAAST on top of in-context learning, LoRA, then in-context (the
longest); the table is published after each row.
Costs as in the sentiment benchmark: adaptation time, inference time per example, bytes held.

    python benchmarks/lm_translation.py --threads 2                        # the published run
    python benchmarks/lm_translation.py --sizes 1,20 --generate 5 --nll 20 --out /tmp/tr   # minutes
    python benchmarks/lm_translation.py --device cuda ...     # on a GPU (float32; TF32 stays off)
    python benchmarks/lm_translation.py --models smollm2 --sizes 100,300 --pool 300 --icl 1,5 \
        --generate 30 --nll 300 --max-new-tokens 80 --max-validation 40 --folds 2 --batch-size 8 \
        --cache --key-features 0 --mixes prob,correction --no-repeat-ngram 4 --lora \
        --block translation-lora --threads 2     # the published run with the backprop rows (39 min)

Writes ``benchmarks/results/lm_translation.json``, ``docs/lm/translation.{csv,png}`` and the
generated block of ``docs/tasks.md``.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import torch

from faast.assets.text import bible_pairs
from faast.eval.holdout import group_holdout
from faast.eval.text_metrics import translation_scores
from faast.lm import FaastConfig, ReadConfig, get_faast_model
from faast.lm.examples import Example
from faast.lm.icl import InContextModel
from faast.lm.prompts import PromptTemplate
from faast.lm.task import ReadCandidate, TaskModel, TaskSpec, default_candidates
from faast.lm.text import load_causal_lm
from faast.publish import save_figure
from task_bench import (
    COST_COLUMNS,
    MODEL_NAMES,
    PublishingRows,
    Row,
    TableFormat,
    Timer,
    add_fit_options,
    faast_method,
    human_bytes,
    publish_run,
)
from task_lora import adapted, add_lora_options, describe, recipe_from_args

TEMPLATE = PromptTemplate("English: {input}\nSpanish:")
TEST_BOOKS = ("Ruth", "Esther", "Jonah", "Mark", "Philippians", "James")


def translation_candidates() -> list[ReadCandidate]:
    """A smaller grid than :func:`faast.lm.task.default_candidates` (each candidate costs a full
    vocabulary softmax per validation token, 262k entries on Gemma): the memory off, the ungated
    prob mix λ ∈ {0.1, 0.3, 0.6} × T ∈ {0.05, 0.2} and the logit mix β ∈ {1, 3, 10}, cut α = 1."""
    out = [ReadCandidate("prob", ReadConfig(weight=0.0, temperature=1.0, gate=None))]
    out += [
        ReadCandidate("prob", ReadConfig(cut="alpha=1", weight=lam, temperature=t, gate=None))
        for lam in (0.1, 0.3, 0.6)
        for t in (0.05, 0.2)
    ]
    out += [ReadCandidate("logit", ReadConfig(cut="alpha=1", weight=b)) for b in (1.0, 3.0, 10.0)]
    return out


def load_data(test_books: list[str], seed: int, max_words: int) -> tuple[list[Example], list[Example]]:
    """(pool, test): verses of other books (shuffled) and of the test books (in order); verses
    longer than ``max_words`` English words are left out of both (keeps batches short)."""
    rows = [r for r in bible_pairs() if len(r["en"].split()) <= max_words]
    pool_idx, test_idx = group_holdout([r["book"] for r in rows], test_books, seed)
    ex = [Example(r["en"], r["es"], {"ref": f"{r['book']} {r['chapter']}:{r['verse']}"}) for r in rows]
    return [ex[i] for i in pool_idx], [ex[i] for i in test_idx]


def evaluate(generate, nll, gen_set: list[Example], nll_set: list[Example]) -> tuple[dict, float]:
    """Scores of one row and the inference seconds per generated example."""
    with Timer() as t:
        outs = generate([e.input for e in gen_set])
    scores = translation_scores(outs, [e.output for e in gen_set])
    total, tokens = nll(nll_set)
    scores["nll"] = total / tokens
    scores["sample"] = [{"input": e.input, "prediction": o} for e, o in zip(gen_set[:3], outs, strict=False)]
    return scores, t.s / len(gen_set)


def run_model(
    name: str, pool: list[Example], test: list[Example], args: argparse.Namespace, rows: list[Row]
) -> None:
    """Append the rows of one model to ``rows``."""
    model, tok = load_causal_lm(name, device=args.device)
    label = MODEL_NAMES.get(name, name)
    fm = get_faast_model(model, FaastConfig(num_memories=0))
    task = TaskModel(fm, tok, TaskSpec(TEMPLATE, "answer", None), cache=args.cache)
    rng = random.Random(args.seed)
    gen_set = rng.sample(test, min(args.generate, len(test)))
    nll_set = test[: args.nll]

    def add(method: str, k: int, scores: dict, adapt: float, infer: float, nbytes: int, detail: str) -> None:
        rows.append(Row(label, method, k, scores["bleu"], None, adapt, 1000 * infer, nbytes, detail, scores))
        print(
            f"[{label}] {method} k={k}: BLEU {scores['bleu']:.2f} chrF {scores['chrf']:.2f} "
            f"NLL {scores['nll']:.3f} ({detail})",
            flush=True,
        )

    faast_generate, faast_nll = task_scorers(task, args)
    with fm.disabled():
        scores, infer = evaluate(faast_generate, faast_nll, gen_set, nll_set)
    add("zero-shot", 0, scores, 0.0, infer, 0, "no examples")

    for mix in args.mixes:  # FAAST before in-context learning: a run stopped early keeps its rows
        if mix != fm.faast_config.output_mix:  # a memory learning other statistics
            fm.unload()
            fm = get_faast_model(model, FaastConfig(num_memories=0, output_mix=mix))
            task = TaskModel(fm, tok, TaskSpec(TEMPLATE, "answer", None), cache=args.cache)
        if not args.skip_faast:
            add_faast_rows(task, mix, pool, gen_set, nll_set, args, add)
    if args.faast_icl:
        add_faast_icl_rows(task, pool, gen_set, nll_set, args, add)
    if args.lora:
        add_lora_rows(task, pool, gen_set, nll_set, args, add)
    reserve = max(len(task.codec.prompt_ids(e.input, start=False)) for e in gen_set + nll_set)
    reserve += max(args.max_new_tokens, max(len(task.codec.answer_ids(e.output)) for e in nll_set)) + 4
    for k in args.icl:
        icl = InContextModel(
            fm.base_model, task.codec, [(e.input, e.output) for e in pool[:k]], reserve=reserve
        )
        with fm.disabled(), Timer() as t:  # the plain model: the memory learned above is off
            nbytes = icl.cache_nbytes()

        def icl_generate(xs, icl=icl):
            return icl.generate(
                xs,
                max_new_tokens=args.max_new_tokens,
                progress=True,
                no_repeat_ngram=args.no_repeat_ngram,
                batch_size=args.batch_size,
            )

        def icl_nll(exs, icl=icl):
            return icl.answer_nll([(e.input, e.output) for e in exs], batch_size=args.batch_size)

        with fm.disabled():
            scores, infer = evaluate(icl_generate, icl_nll, gen_set, nll_set)
        add(
            "in-context",
            icl.num_used,
            scores,
            t.s,
            infer,
            nbytes,
            f"{k}-shot, {len(icl.prefix)} prefix tokens",
        )
        del icl


def task_scorers(task: TaskModel, args: argparse.Namespace):
    """(generate, nll) of a task model as :func:`evaluate` calls them."""

    def generate(xs):
        return task.generate(
            xs,
            max_new_tokens=args.max_new_tokens,
            batch_size=args.batch_size,
            progress=True,
            no_repeat_ngram=args.no_repeat_ngram,
        )

    def nll(exs):
        return task.answer_nll(exs, batch_size=args.batch_size)

    return generate, nll


def add_faast_rows(task: TaskModel, mix: str, pool, gen_set, nll_set, args: argparse.Namespace, add) -> None:
    """``add`` the FAAST rows of one output-memory ``mix``: for each key-feature count and support
    size, learn the first k pool examples with the read-out chosen by cross-validation on them."""
    fm = task.model
    faast_generate, faast_nll = task_scorers(task, args)
    candidates = translation_candidates() if mix == "prob" else default_candidates(mix, "none")  # free text
    for features, k in [(f, k) for f in args.key_features for k in args.sizes]:
        k = len(pool) if k == 0 else k
        task.reset()
        fm.set_output_key_features(features)
        report, fit_s = fit_task(task, pool[:k], candidates, args)
        scores, infer = evaluate(faast_generate, faast_nll, gen_set, nll_set)
        size = fm.fast_weight_nbytes()
        scores["chosen"] = report.chosen.name
        add(
            faast_method("faast-answer" if mix == "prob" else f"faast-answer {mix}", features),
            k,
            scores,
            fit_s,
            infer,
            size["compiled"] + size["support_rows"],
            f"{report.chosen.name}; {report.pairs} pairs",
        )


def fit_task(task: TaskModel, examples: list[Example], candidates, args: argparse.Namespace):
    """(the ``FitReport``, seconds) of ``task.fit`` on ``examples`` with the benchmark's settings:
    free-form outputs, ``--folds``, ``--max-validation``, ``--guard``, ``--hold-out``, ``--seed``,
    ``--batch-size``."""
    with Timer() as t:
        report = task.fit(
            examples,
            labels=None,
            folds=args.folds,
            max_validation=args.max_validation,
            candidates=candidates,
            guard=args.guard,
            hold_out=args.hold_out,
            seed=args.seed,
            batch_size=args.batch_size,
        )
    return report, t.s


def add_faast_icl_rows(task: TaskModel, pool, gen_set, nll_set, args: argparse.Namespace, add) -> None:
    """``add`` the rows of FAAST on top of in-context learning (the last memory of ``--mixes``): for
    each m of ``--faast-icl``, the first m pool examples are lead demonstrations written before every
    prompt (``TaskSpec.demonstrations``; the in-context row with m demonstrations reads the same
    tokens) and the memory learns the other k − m of the k examples, read-out chosen as for the
    FAAST rows; first the m demonstrations alone (memory empty) through the same prompts. Scoring
    continues from the demonstrations' KV cache (``TaskModel``'s lead cache, its bytes counted with
    the fast weights); generation runs them again with every batch."""
    fm = task.model
    mix = fm.faast_config.output_mix
    candidates = translation_candidates() if mix == "prob" else default_candidates(mix, "none")  # free text
    for m in args.faast_icl:
        demos = [(e.input, e.output) for e in pool[:m]]
        lead = TaskModel(fm, task.tokenizer, TaskSpec(TEMPLATE, "answer", None, demos), cache=args.cache)
        lead.reset()
        generate, nll = task_scorers(lead, args)
        scores, infer = evaluate(generate, nll, gen_set, nll_set)
        lead_bytes = lead.lead_nbytes()
        add(
            "in-context (task prompts)",
            m,
            scores,
            0.0,
            infer,
            lead_bytes,
            f"the {m} lead demonstrations alone",
        )
        for k in [len(pool) if k == 0 else k for k in args.sizes]:
            if k <= m:
                continue
            lead.reset()
            report, fit_s = fit_task(lead, pool[m:k], candidates, args)
            scores, infer = evaluate(generate, nll, gen_set, nll_set)
            size = fm.fast_weight_nbytes()
            scores["chosen"] = report.chosen.name
            name = "faast-answer" if mix == "prob" else f"faast-answer {mix}"
            add(
                f"{name} + {m} in context",
                k,
                scores,
                fit_s,
                infer,
                size["compiled"] + size["support_rows"] + lead_bytes,
                f"{m} in context + {k - m} learned; {report.chosen.name}; {report.pairs} pairs",
            )
        del lead
    task.reset()


def add_lora_rows(task: TaskModel, pool, gen_set, nll_set, args: argparse.Namespace, add) -> None:
    """``add`` a backprop row for each support size k ≥ 2 of ``--sizes``: LoRA trained on the first
    k pool examples, scored through the task's prompts with the memory off, then taken out of the
    model again (:func:`faast.lm.lora_baseline.adapted`)."""
    recipe = recipe_from_args(args)
    generate, nll = task_scorers(task, args)
    for k in [len(pool) if k == 0 else k for k in args.sizes]:
        if k < 2:  # a learning rate cannot be chosen on one example
            continue
        task.reset()
        with adapted(task, pool[:k], recipe) as fit:
            scores, infer = evaluate(generate, nll, gen_set, nll_set)
        scores["learning_rate"], scores["held_out_nll"] = fit.learning_rate, fit.held_out_nll
        add("LoRA r=8 (backprop)", k, scores, fit.seconds, infer, fit.nbytes, describe(fit, recipe))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="gemma3")
    ap.add_argument("--test-books", default=",".join(TEST_BOOKS))
    ap.add_argument("--sizes", default="1,1000,0", help="FAAST support sizes (0 = the whole pool)")
    ap.add_argument(
        "--key-features",
        default="0",
        help="FAAST rows for each D: the output memory keyed with D random features (0: the state)",
    )
    ap.add_argument(
        "--mixes",
        default="prob",
        help="FAAST rows for each output memory: prob (next tokens) and/or correction (loss gradients)",
    )
    ap.add_argument("--pool", type=int, default=None, help="cap the support pool (default: all)")
    ap.add_argument("--icl", default="1,5", help="in-context demonstrations")
    ap.add_argument(
        "--faast-icl",
        default="",
        help="FAAST on top of this many lead demonstrations (comma list; rows after the FAAST rows, "
        "with the last of --mixes; none by default)",
    )
    ap.add_argument("--skip-icl", action="store_true", help="leave out the in-context rows")
    ap.add_argument("--lora", action="store_true", help="add backprop rows: LoRA on the same k examples")
    add_lora_options(ap)
    ap.add_argument(
        "--skip-faast", action="store_true", help="leave out the FAAST rows (not those of --faast-icl)"
    )
    ap.add_argument("--generate", type=int, default=100, help="test verses translated greedily (BLEU, chrF)")
    ap.add_argument("--nll", type=int, default=1189, help="test verses scored by teacher-forced NLL")
    ap.add_argument("--max-words", type=int, default=60, help="leave out verses longer than this (English)")
    ap.add_argument("--max-new-tokens", type=int, default=120)
    ap.add_argument(
        "--no-repeat-ngram",
        type=int,
        default=0,
        help="every row's greedy decoding never repeats an n-gram of its own answer (0: off)",
    )
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--max-validation", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--cache", action="store_true", help="keep learned states (faster CV, more memory)")
    ap.add_argument(
        "--block",
        default="translation",
        help="name of the published table: docs/lm/<block>.{csv,png} and the <block> block of docs/tasks.md",
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default=None, help="where the model runs, e.g. cuda (default: cpu)")
    ap.add_argument("--seed", type=int, default=0)
    add_fit_options(ap, labelled=False)
    ap.add_argument("--out", default=None, help="folder for the JSON/CSV/PNG (default: the published places)")
    args = ap.parse_args()
    args.sizes = [int(x) for x in args.sizes.split(",") if x]
    args.icl = [] if args.skip_icl else [int(x) for x in args.icl.split(",") if x]
    args.faast_icl = [int(x) for x in args.faast_icl.split(",") if x]
    if any(m < 1 for m in args.faast_icl):
        ap.error(f"--faast-icl: demonstrations must be >= 1, got {args.faast_icl}")
    args.key_features = [int(x) for x in args.key_features.split(",")]
    if args.lora:
        recipe_from_args(args)  # its errors before any model is loaded
    args.mixes = [m for m in args.mixes.split(",") if m]
    if not set(args.mixes) <= {"prob", "correction"}:
        ap.error("--mixes: prob and/or correction")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    pool, test = load_data(args.test_books.split(","), args.seed, args.max_words)
    if args.pool is not None:
        pool = pool[: args.pool]
    print(f"support pool {len(pool)} verses, test {len(test)} verses", flush=True)
    with Timer() as total:
        rows = PublishingRows(lambda so_far: publish(so_far, args, pool, test, total, partial=True))
        for name in args.models.split(","):
            run_model(name, pool, test, args, rows)
    print(publish(list(rows), args, pool, test, total, partial=False))


def publish(
    rows: list[Row],
    args: argparse.Namespace,
    pool: list[Example],
    test: list[Example],
    total: Timer,
    *,
    partial: bool,
) -> str:
    """Write the table of ``rows`` (JSON, CSV, PNG, the docs block); ``partial``: the run is still
    going, and the data line says so until the last row is in."""
    data = (
        f"WEB → Reina-Valera 1909 verses (bible-en-es asset): test books {args.test_books} "
        f"({len(test)} verses; BLEU/chrF on {min(args.generate, len(test))} seeded, NLL on "
        f"{min(args.nll, len(test))}); support pool {len(pool)} verses of the other books, seed {args.seed}"
    )
    return publish_run(FORMAT, args.block, rows, args, data, TEMPLATE.to_dict(), total, partial=partial)


def _cells(r: Row) -> str:
    x = r.extra
    return (
        f"{x['bleu']:.2f} | {x['chrf']:.2f} | {x['nll']:.3f} | {r.adapt_s:.1f} | {r.infer_ms:.0f} "
        f"| {human_bytes(r.nbytes)} | {r.detail}"
    )


def plot(path: Path, rows: list[Row]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, metric in zip(axes, ("bleu", "chrf"), strict=True):
        for method in dict.fromkeys(r.method for r in rows):
            pts = sorted((r.k, r.extra[metric]) for r in rows if r.method == method)
            if method == "zero-shot":
                ax.axhline(pts[0][1], color="grey", ls="--", label="zero-shot")
            else:
                ax.plot([max(p[0], 1) for p in pts], [p[1] for p in pts], marker="o", label=method)
        ax.set_xscale("log")
        ax.set_xlabel("support examples k (log)")
        ax.set_ylabel(metric.upper() if metric == "bleu" else "chrF")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"English → Spanish, {rows[0].model}")
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


FORMAT = TableFormat(
    "lm_translation.py",
    ["BLEU", "chrF", "NLL / token", *COST_COLUMNS],
    _cells,
    plot,
    "BLEU vs support examples",
)

if __name__ == "__main__":
    main()
