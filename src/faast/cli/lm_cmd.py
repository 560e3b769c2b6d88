"""``faast lm``: test-time learning for causal LMs from the command line.

    faast lm learn --model smollm2 --text notes.txt --out task.safetensors [--task notes]
    faast lm forget --model smollm2 --text notes.txt --fast-weights task.safetensors --task notes
    faast lm generate --model smollm2 --fast-weights task.safetensors --prompt "The lighthouse"
    faast lm perplexity --model smollm2 --text other.txt [--fast-weights task.safetensors]
    faast lm tasks task.safetensors

``--model`` takes an offline asset name (``smollm2``), a local folder, a ``.gguf`` file or a
Hugging Face Hub id (``gpt2-xl``, ``Qwen/Qwen2.5-7B-Instruct``; needs internet). ``--adapter`` loads a trained
readout written by ``save_pretrained``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faast.text_files import StableText

if TYPE_CHECKING:
    from collections.abc import Callable

    from faast.distributed import Dist

_DTYPES = ("float32", "bfloat16", "float16", "float64")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lm", help="test-time learning for causal LMs (learn / generate / perplexity)")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    le = actions.add_parser("learn", help="learn a text file into fast weights")
    _model_args(le)
    le.add_argument("--text", required=True, help="UTF-8 text file to learn")
    le.add_argument("--out", required=True, help="fast-weight file (safetensors; other tasks in it are kept)")
    le.add_argument("--task", default="default", help="name of the task inside --out (default: default)")
    le.add_argument(
        "--window",
        type=int,
        default=512,
        help="tokens per learned window (default 512; the text's last window may be shorter)",
    )
    le.add_argument("--batch-size", type=int, default=4)
    le.add_argument(
        "--append",
        action="store_true",
        help="add the text to the task already in --out (its layout and read config) instead of replacing it",
    )
    le.add_argument(
        "--num-memories", type=int, default=None, help="middle memories (default: 0 without --adapter)"
    )
    le.add_argument(
        "--key-features",
        type=int,
        default=None,
        help="random features appended to the output memory's key: it then holds up to "
        "width + N pairs, not width (default 0; see docs/lm.md, capacity)",
    )
    le.add_argument(
        "--steps",
        type=int,
        default=1,
        help="--mix correction only: closed-form steps on the loss (default 1); the model reads the text "
        "once and keeps its states (up to 1 GiB; a longer text is read once per step)",
    )
    _read_args(le, ("prob", "logit", "paper", "correction"))
    le.set_defaults(func=run_learn)

    fo = actions.add_parser(
        "forget", help="forget a learned text file: rewrite its task as if it had never been learned"
    )
    _model_args(fo)
    fo.add_argument("--text", required=True, help="UTF-8 text file learned earlier into the task")
    fo.add_argument("--fast-weights", required=True, help="fast-weight file to rewrite (atomically)")
    fo.add_argument("--task", default=None, help="task inside --fast-weights (needed if it holds several)")
    fo.add_argument(
        "--window",
        type=int,
        default=512,
        help="tokens per window, as learned (default 512; a text read by `faast lm stream`: its --chunk)",
    )
    fo.add_argument(
        "--batch-size",
        type=int,
        default=4,
        help="windows per batch, as learned (default 4; a text read by `faast lm stream`: 1)",
    )
    fo.set_defaults(func=run_forget)

    ge = actions.add_parser("generate", help="generate text reading fast weights")
    _model_args(ge)
    ge.add_argument("--fast-weights", default=None, help="fast-weight file from `faast lm learn`")
    ge.add_argument("--task", default=None, help="task inside --fast-weights (needed if it holds several)")
    ge.add_argument("--prompt", required=True)
    ge.add_argument("--max-new-tokens", type=int, default=60)
    ge.add_argument("--chat", action="store_true", help="wrap the prompt in the tokenizer's chat template")
    ge.add_argument(
        "--sample", action="store_true", help="sample (temperature 0.7) instead of greedy decoding"
    )
    ge.add_argument("--compare", action="store_true", help="also print the base model's continuation")
    _read_args(ge, stored=True)
    ge.set_defaults(func=run_generate)

    pp = actions.add_parser("perplexity", help="perplexity of a text file, with or without fast weights")
    _model_args(pp)
    pp.add_argument("--text", required=True)
    pp.add_argument("--fast-weights", default=None)
    pp.add_argument("--task", default=None)
    pp.add_argument("--window", type=int, default=512)
    pp.add_argument("--max-windows", type=int, default=None)
    _read_args(pp, stored=True)
    pp.set_defaults(func=run_perplexity)

    st = actions.add_parser(
        "stream",
        help="read a long text chunk by chunk: score each chunk with what came before, then learn it",
    )
    _model_args(st)
    st.add_argument("--text", required=True, help="UTF-8 text file to read")
    st.add_argument("--chunk", type=int, default=512, help="tokens per chunk (default 512)")
    st.add_argument("--max-chunks", type=int, default=None)
    st.add_argument(
        "--context",
        type=int,
        default=0,
        help="also score each chunk by the base model after this many tokens of the text before it",
    )
    st.add_argument("--no-base", action="store_true", help="do not score the chunks with the base model")
    st.add_argument(
        "--csv",
        default=None,
        help="per-chunk results (CSV; a PNG plot is written beside it). Until the stream ends each chunk's "
        "row is appended to CSV.partial as it is read (an interrupted stream keeps its rows there); "
        "CSV itself is written, atomically, at the end",
    )
    st.add_argument(
        "--out",
        default=None,
        help="save the fast weights after the last chunk here (`faast lm forget --window CHUNK "
        "--batch-size 1` forgets the text)",
    )
    st.add_argument("--task", default="default", help="task name inside --out")
    _read_args(st)
    st.set_defaults(func=run_stream)

    ta = actions.add_parser("tasks", help="list the tasks of a fast-weight file")
    ta.add_argument("path")
    ta.set_defaults(func=run_tasks)


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model", default="smollm2", help="asset name, local folder, .gguf file or Hub id (default: smollm2)"
    )
    p.add_argument(
        "--adapter",
        default=None,
        help="a readout: a folder written by FaastModel.save_pretrained, or a bundled name (smollm2-general)",
    )
    p.add_argument("--dtype", choices=_DTYPES, default="float32")
    p.add_argument("--device", default=None, help="e.g. cuda, cpu (default: where the model loads)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch and BLAS (default: all)")


#: What ``--weight`` is in each output-memory mix.
_WEIGHT_OF = {
    "prob": "λ (prob)",
    "logit": "β (logit)",
    "paper": "r (paper)",
    "correction": "the step β (correction)",
}


def _read_args(
    p: argparse.ArgumentParser, mixes: tuple[str, ...] = ("prob", "logit"), *, stored: bool = False
) -> None:
    """How the output memory is read (statistics learned with "prob" or "logit" serve both).
    ``mixes``: what ``--mix`` offers. ``stored``: the command reads ``--fast-weights``, whose mix and
    read config hold where no option replaces them (a file learned with the paper or correction
    mix is read with it), as the help says; without it the command learns with ``mixes`` alone and
    the help names no other (``--damping`` is hidden when none of them reads it)."""
    weights = [_WEIGHT_OF[mix] for mix in mixes]
    weight_help = f"{', '.join(weights[:-1])} or {weights[-1]}: larger follows it more"
    mix_default, cut_default = "prob", "alpha=1"
    damping_help = "c of the correction mix's damped step (relative to L)"
    if "correction" in mixes:
        cut_default += "; with --mix correction prior=2*key_dim"
    elif stored:
        weight_help += "; fast weights learned with the paper or correction mix: r or the step β"
        learned = "the one the fast weights were learned with; without --fast-weights "
        mix_default, cut_default = learned + "prob", learned + "alpha=1"
        damping_help = "c of the damped step of fast weights learned with the correction mix (relative to L)"
    else:
        damping_help = argparse.SUPPRESS
    p.add_argument("--mix", choices=mixes, default=None, help=f"output-memory mix (default: {mix_default})")
    p.add_argument("--weight", type=float, default=None, help=weight_help)
    p.add_argument("--temperature", type=float, default=None, help="T of the prob mix")
    p.add_argument("--damping", type=float, default=None, help=damping_help)
    gate = p.add_mutually_exclusive_group()
    gate.add_argument("--gate", type=float, default=None, help="θ of the prob mix's recall gate (cosine)")
    gate.add_argument("--no-gate", action="store_true", help="read the prob mix without the recall gate")
    cut = p.add_mutually_exclusive_group()
    cut.add_argument(
        "--cut",
        default=None,
        help=f"spectral cut: gcv, a relative tau, alpha=A[,c=C], ridge=R or prior=N (default: {cut_default})",
    )
    cut.add_argument("--alpha", type=float, default=None, help="shorthand for --cut alpha=ALPHA")


def _layout_and_read(args: argparse.Namespace, layout: dict[str, Any], read: Any = None):
    """The layout fields and ReadConfig to build the model with: ``layout`` and ``read`` (stored
    with fast weights, or empty) updated with the options given on the command line."""
    from faast.lm.config import ReadConfig
    from faast.solver import Cut

    layout = dict(layout)
    read = read or ReadConfig()
    stored_mix = layout.get("output_mix")  # None: nothing learned yet (any mix may be chosen)
    if args.mix is not None and args.mix != (stored_mix or "prob"):
        for own in ("paper", "correction"):  # statistics of their own (other keys or values)
            if stored_mix is not None and own in (args.mix, stored_mix):
                raise ValueError(f"fast weights learned with the {own!r} mix can only be read with it")
        read = ReadConfig(cut=read.cut, support=read.support)  # the new mix's own defaults
    if args.mix is not None:
        layout["output_mix"] = args.mix
    knobs: dict[str, Any] = {
        "weight": args.weight,
        "temperature": args.temperature,
        "gate": args.gate,
        "damping": args.damping,
    }
    if args.cut is not None or args.alpha is not None:
        knobs["cut"] = Cut.parse(args.cut) if args.cut is not None else Cut.power(args.alpha)
    knobs = {k: v for k, v in knobs.items() if v is not None}
    if args.no_gate:
        knobs["gate"] = None
    _check_knobs_apply(args, layout.get("output_mix") or "prob")
    return layout, read.replace(**knobs)


def _check_knobs_apply(args: argparse.Namespace, mix: str) -> None:
    """Refuse read options that ``mix`` does not read (``--temperature``, ``--gate``/``--no-gate``
    outside the prob mix, ``--damping`` outside the correction mix): they were silently ignored,
    and stored with the task as if they had been used."""
    from faast.lm.readout_registry import OUTPUT_READOUTS

    readout = OUTPUT_READOUTS.get(mix)
    if readout is None:
        return
    used = set(readout.defaults) | set(getattr(readout, "ungated_defaults", {}))
    given = {
        "--temperature": ("temperature", args.temperature is not None),
        "--gate": ("gate", args.gate is not None),
        "--no-gate": ("gate", bool(args.no_gate)),
        "--damping": ("damping", args.damping is not None),
    }
    for option, (knob, set_here) in given.items():
        if set_here and knob not in used:
            raise ValueError(
                f"{option} does not apply to the {mix!r} mix, which reads "
                + ", ".join(f"--{k}" for k in sorted(used))
                + " (and --cut); leave it out"
            )


def _load(args: argparse.Namespace, layout: dict[str, Any], read: Any):
    import torch

    from faast._checks import check_device
    from faast.lm import FaastConfig, FaastModel, get_faast_model
    from faast.lm.text import load_causal_lm

    if args.device:
        check_device(args.device, "--device")
    quiet_loading()
    model, tok = load_causal_lm(args.model, dtype=getattr(torch, args.dtype), device=args.device)
    fields = dict(layout)
    if args.adapter:
        return FaastModel.from_pretrained(model, args.adapter, read, **fields), tok
    fields.setdefault("num_memories", 0)  # middle memories need a trained readout (--adapter)
    return get_faast_model(model, FaastConfig.from_dict(fields), read), tok


def quiet_loading() -> None:
    """No weight-loading progress bars from transformers: the CLI reports its own progress, and
    an error after loading stays the only line on stderr."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # reported when the model is loaded
        return
    hf_logging.disable_progress_bar()


def _check_learn_args(args: argparse.Namespace) -> None:
    """Refuse bad options and an unusable --out before loading the model and learning."""
    from faast.lm.fastweights import check_output_file

    if args.window < 2:
        raise ValueError(f"--window: windows need at least 2 tokens, got {args.window}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.steps < 1:
        raise ValueError(f"--steps must be >= 1, got {args.steps}")
    if args.steps > 1 and (args.append or args.mix != "correction"):
        raise ValueError("--steps > 1 needs --mix correction and a new task (not --append)")
    _check_distinct_files([("--out", args.out)], _input_files(args))
    check_output_file(args.out, args.task, warn_replace=not args.append)  # --append: meant


def _load_with_fast_weights(args: argparse.Namespace, loaded: Callable[[Any, Any], None] | None = None):
    """The model (and tokenizer) with the task of ``--fast-weights`` loaded into it; ``loaded(fm,
    tok)`` runs once the model is loaded and before the fast weights are (under ``torchrun``: the
    comparison of what the processes read, before a fast-weight file learned on another model can
    fail on one process alone)."""
    from faast.lm.fastweights import read_config, read_task, task_read_config

    stored: dict[str, Any] = {}
    stored_read = None
    if args.fast_weights:
        if not args.adapter:
            stored = read_config(args.fast_weights, args.task)
        stored_read = task_read_config(read_task(args.fast_weights, args.task)[2])
    fm, tok = _load(args, *_layout_and_read(args, stored, stored_read))
    if loaded is not None:
        loaded(fm, tok)
    if args.fast_weights:
        fm.load_fast_weights(args.fast_weights, args.task, read=False)
    return fm, tok


def _init(args: argparse.Namespace) -> Dist:
    """The process group of a ``torchrun`` launch (a single process otherwise); with nccl the
    model goes to this process's GPU unless ``--device`` says otherwise."""
    from faast import distributed

    dist = distributed.init()
    if args.device is None and dist.backend == "nccl":
        args.device = str(dist.device)
    return dist


#: Options that may differ between the processes of a ``torchrun`` launch (:func:`check_same_everywhere`):
#: where each process works, and paths (a node may hold its copy elsewhere; what the inputs hold is
#: compared instead, and rank 0 alone writes the outputs).
PER_PROCESS_OPTIONS = frozenset(
    {
        "func", "debug", "device", "threads", "encoder",  # where and how each process runs
        "text", "out", "model", "adapter", "fast_weights", "examples", "inputs", "predictions", "json",
        "demonstrations", "lora", "csv", "cache_dir", "data",
    }
)  # fmt: skip


def check_same_everywhere(
    dist: Dist,
    args: argparse.Namespace,
    inputs: dict[str, tuple[Any, str]] | None = None,
    paths: tuple[str, ...] = (),
) -> None:
    """Refuse, on every process of a ``torchrun`` launch, a command whose processes were given
    different options (every option but :data:`PER_PROCESS_OPTIONS` and ``paths``) or read
    different ``inputs`` (a name such as ``"--examples"`` → (the file's path, a
    :func:`faast.distributed.digest` of what was read from it; ``"--model"`` → (its path, the
    :func:`faast.distributed.model_fingerprint` of the model loaded)): the contents are compared,
    the paths only named): an :class:`~faast.distributed.InputsDifferError` naming each, before
    anything is written (:meth:`~faast.distributed.Dist.check_same`, one all-gather). Nothing with
    a single process."""
    if not dist.active:
        return
    skip = PER_PROCESS_OPTIONS | set(paths)
    values: dict[str, Any] = {
        "--" + name.replace("_", "-"): value for name, value in sorted(vars(args).items()) if name not in skip
    }
    shown = {}
    for name, (path, held) in (inputs or {}).items():
        values[name] = held
        shown[name] = f"{path} ({'fingerprint' if name == '--model' else 'digest'} {held})"
    dist.check_same(values, shown)


def run_learn(args: argparse.Namespace) -> int:
    """Learn a text file. Under ``torchrun`` each process learns its share of the windows and the
    statistics are summed across processes (:mod:`faast.distributed`); rank 0 prints and writes.
    The text is read and tokenized block by block (:mod:`faast.lm.text_blocks`), once to count its
    tokens (and take its digest, and check that it is all text) and once more as it is learned:
    memory does not grow with its length. Before the model loads only the file's start is read."""
    import time

    dist = _init(args)
    _check_has_text(args.text)  # missing, empty, blank or not text at its start: before the model loads
    _check_learn_args(args)
    check_same_everywhere(dist, args)  # --window, --batch-size, ...: the text's digest is compared below
    given = {} if args.num_memories is None else {"num_memories": args.num_memories}
    if args.key_features is not None:
        given["output_key_features"] = args.key_features
    earlier: dict[str, Any] = {}  # the task's notes, kept by --append
    loaded = None  # --append: the digest of the task extended, checked when saving
    if args.append:
        fm, tok, earlier, loaded = _load_task_to_extend(args)
    else:
        fm, tok = _load(args, *_layout_and_read(args, given))
    # The pass that counts the text's tokens stays before learning: the line printed below names the
    # tokens and windows, the progress bars need their total, under torchrun each process its share
    # of the windows, and --steps whether the states fit (_step_learner); a text too short to learn
    # is refused by it. It also takes the text's digest (its learning record, --append's warning)
    # and refuses bytes that are not text, before anything is learned or written: one pass where a
    # scan of the whole file before the model loaded was another.
    scan = _TextScan(Path(args.text))
    windows, left, why = _counted_windows(tok, args.text, args.window, scan=scan)
    scan.check()
    digest = _same_text_everywhere(dist, scan)
    if args.append and dist.is_main:
        _warn_learned_before(args, earlier, digest)
    _warn_left_out(left, windows.tokens, "learned", why, args.window)
    # the text's own tokens: the start tokens put in front of each window (Gemma's <bos>) are not
    # the text's (574 tokens were reported as 576 in 2 windows)
    tokens = windows.tokens - windows.left_out
    if dist.is_main:
        where = f" on {dist.world_size} processes" if dist.active else ""
        print(f"[faast] learning {tokens} tokens of {args.text} in {len(windows)} windows{where}: {fm}")
    start = time.perf_counter()
    learned: list[int] = []
    learn_part = _step_learner(fm, args, windows, _show_progress(dist))

    def learn_once() -> None:
        learned.append(dist.learn_shard(fm, windows, learn_part))

    if args.steps > 1:
        from faast.lm.correction import learn_in_steps

        learn_in_steps(fm, learn_once, args.steps)
    else:
        learn_once()
    pairs = learned[-1]
    seconds = time.perf_counter() - start
    if dist.is_main:
        info = _learned_info(args, digest, pairs, earlier)
        fm.save_fast_weights(args.out, task=args.task, info=info, expect=loaded)
        sizes = fm.fast_weight_nbytes()
        print(
            f"[faast] {pairs} pairs in {seconds:.1f} s ({tokens / seconds:.0f} tok/s); "
            f"wrote task {args.task!r} to {args.out} (statistics {sizes['statistics'] / 1e6:.1f} MB, "
            f"compiled fast weights {sizes['compiled'] / 1e6:.2f} MB)"
        )
    return 0


def _show_progress(dist: Dist) -> bool:
    """Progress bars on stderr: on the main process, when stderr is a terminal (as ``faast
    classify`` decides; a log file would get thousands of carriage-return updates)."""
    return dist.is_main and sys.stderr.isatty()


class _TextScan(StableText):
    """A text file's pieces as they are read, block by block (:meth:`pieces`), hashed and looked at
    as they go, so that a pass reading them for another purpose (counting their tokens) also gives
    the text's :attr:`digest` and :meth:`check`; the passes after it read the same text or raise
    (:class:`faast.text_files.StableText`: the file changed between the passes)."""

    def check(self) -> None:
        """Refuse the text read when it is empty or holds only whitespace, as
        :func:`faast.lm.text.read_text` refuses it."""
        from faast.lm.text import no_text_error

        if self.blank:
            raise no_text_error(self.path, empty=self.empty)


def _same_text_everywhere(dist: Dist, scan: _TextScan) -> str:
    """The digest of the text ``scan`` read, once every process read the same one (under
    ``torchrun`` each counts the text itself: one that counted it after it was rewritten would
    learn its share of another text); a :class:`faast.text_files.TextChangedError` on every
    process otherwise."""
    from faast.text_files import TextChangedError

    digests = dist.all_gather_json(scan.digest)
    if len(set(digests)) > 1:
        raise TextChangedError(scan.path)
    return scan.digest


def _scan_text(path: str) -> _TextScan:
    """Read the text file once, block by block, before any work: the scan, which holds its digest
    (:attr:`_TextScan.digest`) and reads it again checking that it did not change; a file that is
    empty, holds only whitespace or is not text is refused as :func:`faast.lm.text.read_text`
    refuses it."""
    from faast.io import existing_file

    scan = _TextScan(existing_file(path, "text file"))
    for _ in scan.pieces():
        pass
    scan.check()
    return scan


def _check_has_text(path: str) -> None:
    """Refuse, before the model loads, a text file that does not exist, is empty, holds only
    whitespace or is not text where it starts (UTF-16 without its byte-order mark, bytes that are not
    UTF-8 in its first piece), as :func:`_scan_text` refuses it, reading the file only up to its first
    piece holding text (:data:`faast.text_files.TEXT_BLOCK_CHARS` characters): the pass that then
    counts its tokens reads it whole and refuses bytes that are not text further on, before anything
    is learned or scored."""
    import contextlib

    from faast.io import existing_file

    scan = _TextScan(existing_file(path, "text file"))
    with contextlib.closing(scan.pieces()) as pieces:
        for _ in pieces:
            if not scan.blank:
                return
    scan.check()


def _check_max_windows(limit: int | None) -> None:
    """Refuse a ``--max-windows`` below 1 (before the model loads)."""
    if limit is not None and limit < 1:
        raise ValueError(f"--max-windows: limit must be >= 1 window, got {limit}")


def _file_windows(
    tok: Any, path: str, window: int, verb: str, limit: int | None = None, *, scan: _TextScan | None = None
) -> Any:
    """Every token of the text file ``path`` in windows of ``window`` tokens, the last one shorter
    (:func:`faast.lm.text.text_windows` of the whole text, start tokens in front; a shorter tail was
    once dropped: 380 of a text's 892 tokens at --window 512), the first ``limit`` of them when
    given, as a :class:`faast.lm.window_stream.TextWindows` (tokenized block by block on each pass;
    this counts them once; read through ``scan`` when given, see :func:`_counted_windows`); a
    warning on stderr names the tokens left out of ``verb`` (past ``limit``, or a last token alone)."""
    windows, left, why = _counted_windows(tok, path, window, limit, scan=scan)
    _warn_left_out(left, windows.tokens, verb, why, window)
    return windows


def _counted_windows(
    tok: Any, path: str, window: int, limit: int | None = None, *, scan: _TextScan | None = None
) -> tuple[Any, int, str]:
    """(the windows of :func:`_file_windows`, the tokens left out of them, why): its counting pass,
    without the warning; with ``scan`` (a :class:`_TextScan` of ``path``) every pass reads the
    text's pieces through it: the first one read (this count, unless the scan read the text
    before) is hashed and looked at as it goes, the passes after it (those that learn or forget the
    windows) raise :class:`faast.text_files.TextChangedError` where they read another text."""
    from faast.lm.prompts import start_token_ids
    from faast.lm.text_blocks import iter_token_blocks
    from faast.lm.window_stream import TextWindows
    from faast.text_files import iter_user_text

    _check_max_windows(limit)

    def blocks() -> Any:
        return iter_token_blocks(tok, iter_user_text(path) if scan is None else scan.pieces())

    counted = None if scan is None else iter_token_blocks(tok, scan.pieces())
    windows = TextWindows.from_blocks(blocks, window, start_token_ids(tok), counted=counted)
    left, why = windows.left_out, "a last token alone has no pair"
    if limit is not None and len(windows) > limit:
        windows = windows[:limit]  # whole windows: only the text's last one may be shorter
        left, why = windows.tokens - limit * window, f"--max-windows {limit}"
    return windows, left, why


def _warn_left_out(left: int, tokens: int, verb: str, why: str, window: int) -> None:
    """On the main process, a warning naming the ``left`` of the text's ``tokens`` tokens that are
    not ``verb`` (``why``: past --max-windows, or a last token alone); nothing when none is."""
    from faast import distributed

    if left and distributed.current().is_main:
        print(
            f"[faast] warning: the last {left} of the text's {tokens} tokens are not {verb} "
            f"({why}; windows of --window {window} tokens)",
            file=sys.stderr,
        )


def _warn_learned_before(args: argparse.Namespace, info: dict[str, Any], digest: str) -> None:
    """``learn --append`` of a text the task records as learned (same content, by its digest): one
    warning line that it is learned again (its pairs then count twice) and how to undo that."""
    times = sum(1 for r in info.get("learned", []) if isinstance(r, dict) and r.get("digest") == digest)
    if times:
        print(
            f"[faast] warning: task {args.task!r} of {args.out} already learned this text ({args.text}, "
            f"same content{f', {times} times' if times > 1 else ''}); it is learned again and counts "
            f"{times + 1} times (undo: faast lm forget --text {args.text} --fast-weights {args.out} "
            f"--task {args.task} --window {args.window} --batch-size {args.batch_size})",
            file=sys.stderr,
        )


#: ``faast lm learn --steps K`` keeps the head-input states of the text between steps (one forward
#: pass in all, each further step a pass of the LM head) while they take at most this many bytes;
#: a longer text runs the model once per step instead.
KEEP_STATES_BYTES = 2**30


def _step_learner(fm: Any, args: argparse.Namespace, windows: Any, progress: bool) -> Any:
    """``learn(part) -> pairs`` for one pass over this process's windows (a
    :class:`faast.lm.window_stream.TextWindows`, tokenized anew on each pass): with ``--steps`` > 1
    and states that fit in :data:`KEEP_STATES_BYTES`, the first pass captures them
    (``FaastModel.capture``) and every pass learns the captures (``learn_captured``), which equals
    learning the windows again (the states do not depend on the memories)."""
    from faast.lm.text import capture_windows, learn_windows

    hidden = fm.base_model.get_output_embeddings().weight
    tokens = windows.tokens + windows.total * len(windows.start_ids)
    state_bytes = tokens * hidden.shape[1] * hidden.element_size() * max(1, len(fm.readouts))
    if args.steps == 1 or state_bytes > KEEP_STATES_BYTES:
        return lambda part: learn_windows(fm, part, batch_size=args.batch_size, progress=progress)
    captured: list[Any] = []

    def learn_part(part: Any) -> int:
        if not captured:
            captured.extend(capture_windows(fm, part, batch_size=args.batch_size, progress=progress))
        return sum(fm.learn_captured(c) for c in captured)

    return learn_part


def _learned_info(
    args: argparse.Namespace, digest: str, pairs: int, earlier: dict[str, Any]
) -> dict[str, Any]:
    """The task's notes after ``learn``: those it held (``earlier``, with ``--append``) and a record
    of this text (``digest``: its :attr:`_TextScan.digest`), its windows and batches (``learned``:
    what ``forget`` must repeat to remove the same pairs)."""
    info = dict(earlier)
    record = {
        "text": Path(args.text).name,
        "digest": digest,
        "window": args.window,
        "batch_size": args.batch_size,
        "pairs": pairs,
    }
    info["learned"] = [*info.get("learned", []), record]
    return info


def _learned_record(info: dict[str, Any], digest: str, window: int, batch_size: int) -> int | None:
    """Index in ``info["learned"]`` of the last record of the text whose :attr:`_TextScan.digest` is
    ``digest`` learned with this ``window`` and ``batch_size`` — or, when none was, the last record of
    that text (which ``forget`` then refuses, naming how it was learned) — or None. A text learned
    twice with other windows is forgotten with either's."""
    records = info.get("learned", [])
    matches = [i for i, r in enumerate(records) if isinstance(r, dict) and r.get("digest") == digest]
    same = [
        i
        for i in matches
        if records[i].get("window") == window and records[i].get("batch_size") == batch_size
    ]
    return (same or matches)[-1] if matches else None


def _check_forget_matches_learning(args: argparse.Namespace, record: dict[str, Any] | None) -> int | None:
    """Refuse ``forget`` with another ``--window`` or ``--batch-size`` than the text was learned
    with, when the task recorded its learning (``record``; other windows give other pairs: past d
    pairs they were subtracted without a word, and the statistics written were wrong). Returns the
    pairs learned from the text (None: no record of it, e.g. a task learned before the records)."""
    if record is None:
        return None
    given = {"window": args.window, "batch_size": args.batch_size}
    differ = [k for k, v in given.items() if record.get(k) != v]
    if differ:
        told = ", ".join(f"--{k.replace('_', '-')} {record.get(k)}" for k in differ)
        raise ValueError(
            f"{args.text} was learned into this task with {told} (not "
            + ", ".join(f"--{k.replace('_', '-')} {given[k]}" for k in differ)
            + "): forget it with the same windows and batches, which give the pairs that were learned"
        )
    return int(record["pairs"]) if isinstance(record.get("pairs"), int) else None


def _not_learned_message(args: argparse.Namespace, task: str, records: list[dict[str, Any]]) -> str:
    """Why ``forget`` refuses a text that none of the task's learning ``records`` names."""
    shown = [
        f"{r.get('text', '?')} (--window {r.get('window', '?')}, --batch-size {r.get('batch_size', '?')}, "
        f"{r.get('pairs', '?')} pairs)"
        for r in records[:5]
    ]
    more = f" and {len(records) - 5} more" if len(records) > 5 else ""
    return (
        f"{args.text} is not a text learned into task {task!r} of {args.fast_weights} (never learned, "
        "or forgotten since): the task records "
        f"{len(records)} learned text{'s' if len(records) != 1 else ''}, {', '.join(shown)}{more}, and "
        "none has this content (a text is known by its content: one edited since it was learned is "
        "another text); nothing was written"
    )


def _unrecorded_pairs(
    tensors: dict[str, Any], signature: dict[str, Any], records: list[dict[str, Any]]
) -> int | None:
    """Pairs a task holds beyond those its learning ``records`` count (texts learned into it
    before the records, or by ``faast lm stream`` before it wrote one, then ``learn --append``):
    0 when the records account for every pair, None when the file does not say how many it holds."""
    counts = [
        int(tensors[f"{name}/count"])
        for name in signature.get("memories", {})
        if f"{name}/count" in tensors and tensors[f"{name}/count"].numel() == 1
    ]
    if not counts:
        return None
    recorded = sum(r["pairs"] for r in records if isinstance(r.get("pairs"), int))
    return max(0, max(counts) - recorded)


def _check_statistics_load(fm: Any, text: str, recorded: bool) -> None:
    """Refuse (``ValueError``) statistics that loading the rewritten file would refuse, checked as
    loading checks them (:meth:`faast.solver.GramStats.load_state_dict`: a Gram matrix with a clearly
    negative diagonal entry, ...): what is left after subtracting pairs that were never learned
    (a task with no learning records cannot tell, past d pairs), which was written and then
    failed to load. ``recorded``: the task recorded the text's learning (else the message says
    that nothing could be checked against)."""
    from faast.solver import GramStats

    for readout in fm.readouts:
        stats = readout.stats
        scratch = GramStats(stats.key_dim, stats.value_dim, device=stats.device)
        try:
            scratch.load_state_dict(stats.state_dict())
        except ValueError as exc:
            left = f"forgetting {text} would leave the {readout.kind} memory's statistics invalid ({exc})"
            if recorded:
                raise ValueError(
                    f"{left}, although the task records the text's learning (were its statistics "
                    "damaged?); nothing was written"
                ) from exc
            raise ValueError(
                f"{left}: it cannot have been learned into this task with these windows and batches; "
                "nothing was written. The task holds no record of this text's learning (written by "
                "`faast lm stream` or an older faast) to check this against: forget a text only with the "
                "--window and --batch-size it was learned with (`faast lm stream`: --window CHUNK "
                "--batch-size 1)"
            ) from exc


def run_forget(args: argparse.Namespace) -> int:
    """Forget a text learned by ``faast lm learn`` or ``faast lm stream`` (same --window and
    --batch-size, so that the windows and batches, hence the pairs, are the ones learned) and
    rewrite the task in place, atomically; the file is left unchanged when the text was not learned
    into the task: a task that records its learned texts (``learn``, ``stream --out``) refuses a
    text it does not record, before the model loads; in one without records (older files) the
    memories check the pairs (more pairs than held; a pair never learned, while at most d pairs are
    held), and the result is refused when its statistics would no longer load
    (:func:`_check_statistics_load`). The text is read and tokenized block by block, as ``learn``
    reads it (:func:`_scan_text`, :func:`_file_windows`): memory does not grow with its length."""
    from faast.io import check_writable
    from faast.lm.fastweights import read_task_and_digest, task_read_config
    from faast.lm.text import iter_window_batches

    # Under torchrun every process forgets the text from the task as it read it (the same result
    # everywhere) and rank 0 alone writes it: the processes first agree that they read the same text
    # and the same task, so that none reads the file after rank 0 rewrote it (it would forget the
    # text twice, or fail saying that nothing was written).
    dist = _init(args)
    scan = _scan_text(args.text)  # an empty file or one that is not text: refused before any work
    digest = scan.digest
    if args.window < 2:
        raise ValueError(f"--window: windows need at least 2 tokens, got {args.window}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    # the task as read, and its digest: another command's save is not lost
    task, tensors, signature, loaded = read_task_and_digest(args.fast_weights, args.task)
    read = {"--text": (args.text, digest), "--fast-weights": (args.fast_weights, loaded[:16])}
    check_same_everywhere(dist, args, read)
    if dist.is_main:
        check_writable(args.fast_weights)
    if "config" not in signature:
        raise ValueError(f"{args.fast_weights}: task {task!r} records no FaastConfig")
    info = dict(signature.get("info") or {})
    index = _learned_record(info, digest, args.window, args.batch_size)
    records = [r for r in info.get("learned", []) if isinstance(r, dict)]
    if index is None and records:
        unrecorded = _unrecorded_pairs(tensors, signature, records)
        if not unrecorded:  # the records name every pair held, and not this text
            raise ValueError(_not_learned_message(args, task, records))
        if dist.is_main:
            print(
                f"[faast] warning: task {task!r} records no learning of {args.text}, but {unrecorded} of "
                "its pairs were learned without a record (before the records, or by `faast lm stream`): "
                "forgetting it unchecked",
                file=sys.stderr,
            )
    record = None if index is None else info["learned"][index]
    learned_pairs = _check_forget_matches_learning(args, record)
    layout = {} if args.adapter else dict(signature["config"])
    fm, tok = _load(args, layout, task_read_config(signature))
    fm.load_fast_weights(args.fast_weights, task, read=False)  # the read config: loaded with the model
    # read through the scan: a text rewritten since the scan that chose the record is refused
    windows = _file_windows(tok, args.text, args.window, "forgotten (nor were they learned)", scan=scan)
    streamed = None if record is None else record.get("windows")
    if isinstance(streamed, int) and 0 < streamed < len(windows):  # `--max-chunks`: on every process
        if dist.is_main:
            print(
                f"[faast] forgetting the first {streamed} of the text's {len(windows)} windows: "
                "as many as were learned (`faast lm stream --max-chunks`)"
            )
        windows = windows[:streamed]
    device = next(fm.parameters()).device
    pairs = 0
    with fm.all_or_nothing():
        for batch in iter_window_batches(windows, args.batch_size):  # the batches learn_windows learned
            pairs += fm.forget(input_ids=batch.to(device))
        if learned_pairs is not None and pairs != learned_pairs:
            raise ValueError(
                f"{args.text} gives {pairs} pairs now but {learned_pairs} were learned from it (another "
                "tokenizer or model?): nothing was forgotten"
            )
        _check_statistics_load(fm, args.text, recorded=record is not None)
    if fm.num_pairs == 0:
        raise ValueError(
            f"forgetting {args.text} leaves task {task!r} empty: nothing was written (it held only this text)"
        )
    # What was removed, so that a report written at learning time (e.g. `faast task learn`'s fit,
    # chosen on examples that included these) is not read as describing the task as it is now.
    info["forgotten"] = [*info.get("forgotten", []), {"text": Path(args.text).name, "pairs": pairs}]
    if index is not None:  # the forgotten text is no longer learned (once)
        info["learned"] = [r for i, r in enumerate(info["learned"]) if i != index]
    dist.barrier()  # every process has read the file (loading the task) before rank 0 rewrites it
    if dist.is_main:
        fm.save_fast_weights(args.fast_weights, task=task, info=info, expect=loaded)
    dist.barrier()  # the file is written before any process can look for it
    if dist.is_main:
        print(
            f"[faast] forgot {pairs} pairs of {args.text} from task {task!r} in {args.fast_weights}; "
            f"{fm.num_pairs} pairs remain"
        )
    return 0


def _load_task_to_extend(args: argparse.Namespace) -> tuple[Any, Any, dict[str, Any], str]:
    """``learn --append``: the model with the task's fast weights, its layout and read config (read
    options given on the command line replace the stored ones), the tokenizer, the task's notes and
    its :func:`~faast.lm.fastweights.task_digest` (the save refuses a task another command rewrote).
    A task learned from examples by ``faast task learn`` (its notes hold a task spec) is refused
    before the model loads: text pairs added to it would leave its read-out, chosen on the
    examples, and its report describing a task it no longer is."""
    from faast.lm.fastweights import read_task_and_digest, task_read_config

    if not Path(args.out).is_file():
        raise ValueError(f"--append: {args.out} does not exist (learn the first text without --append)")
    _, tensors, signature, loaded = read_task_and_digest(args.out, args.task)
    _check_not_learned_in_steps(args, tensors)
    del tensors  # load_fast_weights reads them again into the model
    if "task" in (signature.get("info") or {}):
        raise ValueError(
            f"--append: task {args.task!r} of {args.out} was learned from examples by `faast task learn` "
            "(a prompt template and a read-out chosen on them); text added to it would leave that read-out "
            "and its report stale. Learn the task again with `faast task learn` on all its examples, or "
            "learn the text into another task (--task NAME)"
        )
    layout = dict(signature.get("config", {}))
    if args.num_memories is not None and args.num_memories != layout.get("num_memories"):
        raise ValueError("--append: --num-memories must match the task's layout (leave it out)")
    stored_features = layout.get("output_key_features", 0)
    if args.key_features is not None and args.key_features != stored_features:
        raise ValueError(
            f"--append: --key-features {args.key_features} differs from the task's {stored_features} "
            "(leave it out)"
        )
    stored = {} if args.adapter else layout
    fm, tok = _load(args, *_layout_and_read(args, stored, task_read_config(signature)))
    fm.load_fast_weights(args.out, args.task, read=False)
    return fm, tok, dict(signature.get("info") or {}), loaded


def _check_not_learned_in_steps(args: argparse.Namespace, tensors: dict[str, Any]) -> None:
    """``learn --append`` refuses a task learned with ``--steps K`` > 1 (its correction memory holds
    K − 1 folded steps, ``<memory>/folded_steps``), before the model loads: the text added would be
    learned in one step on top of them, and no text of such a task can be forgotten."""
    folded = [int(t) for name, t in tensors.items() if name.endswith("/folded_steps")]
    if folded:
        steps = max(folded) + 1
        raise ValueError(
            f"--append: task {args.task!r} of {args.out} was learned with --steps {steps}: a text added "
            f"to it would be learned in one step, not {steps}, and could never be forgotten (forget "
            "refuses a task learned in steps). Learn its texts and this one together into a new task "
            f"(one text file, --steps {steps}, without --append), or learn this text into another task "
            "(--task NAME)"
        )


def fast_weights_read(args: argparse.Namespace) -> dict[str, tuple[Any, str]]:
    """``{"--fast-weights": (its path, the task's digest as read)}`` for :func:`check_same_everywhere`
    (:func:`~faast.lm.fastweights.task_digest`: another task in the file does not count), or ``{}``
    without ``--fast-weights``."""
    if not getattr(args, "fast_weights", None):
        return {}
    from faast.lm.fastweights import read_task_and_digest

    return {"--fast-weights": (args.fast_weights, read_task_and_digest(args.fast_weights, args.task)[3][:16])}


def _same_reading_everywhere(dist: Dist, args: argparse.Namespace, fm: Any, tok: Any) -> None:
    """Under ``torchrun``, refuse on every process a ``generate`` or ``perplexity`` whose processes
    were given different options, read another task from ``--fast-weights`` (its
    :func:`~faast.lm.fastweights.task_digest`) or loaded another model (the
    :func:`~faast.distributed.model_fingerprint` of the model, its ``--adapter`` read-out included,
    and of the tokenizer) or, for ``perplexity``, another ``--text`` (the digest of the text read):
    :func:`check_same_everywhere`, once the model is loaded. Each process computes the whole result
    and rank 0 prints its own, so a node that read something else would otherwise go unnoticed."""
    if not dist.active:
        return
    from faast.distributed import model_fingerprint

    read = {"--model": (args.model, model_fingerprint(fm, tok)), **fast_weights_read(args)}
    if getattr(args, "text", None):  # perplexity: the text each process scores itself
        read["--text"] = (args.text, _scan_text(args.text).digest)
    check_same_everywhere(dist, args, read)


def run_generate(args: argparse.Namespace) -> int:
    """Continue ``--prompt`` with the fast weights. The prompt is read as text, as ``learn`` reads a
    text (special-token strings such as ``"<eos>"`` in it are text, :func:`faast.lm.text.prompt_ids`);
    with ``--chat`` it is the user's message in the chat template, whose own special tokens stay
    control tokens (:func:`faast.lm.text.chat_prompt_ids`)."""
    import torch

    from faast.lm.decoding import check_max_new_tokens
    from faast.lm.text import chat_prompt_ids, prompt_ids

    dist = _init(args)  # under torchrun every process generates the same text: rank 0 alone prints it
    check_max_new_tokens(args.max_new_tokens, "--max-new-tokens")
    fm, tok = _load_with_fast_weights(args, lambda fm, tok: _same_reading_everywhere(dist, args, fm, tok))
    if args.chat:
        if not getattr(tok, "chat_template", None):
            raise ValueError(
                f"--chat: the tokenizer of {args.model} has no chat template (a base model, not an "
                "instruction-tuned one?); drop --chat to generate from the prompt as it is"
            )
        ids = chat_prompt_ids(tok, args.prompt)
    else:
        ids = prompt_ids(tok, args.prompt)
    input_ids = torch.tensor([ids], dtype=torch.long, device=fm.device)
    inputs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}
    kw = {"max_new_tokens": args.max_new_tokens, "pad_token_id": tok.pad_token_id}
    kw.update({"do_sample": True, "temperature": 0.7} if args.sample else {"do_sample": False})
    runs = [("base", True), ("faast", False)] if args.compare else [("faast", False)]
    for name, disabled in runs:
        if disabled:
            with fm.disabled():
                out = fm.generate(**inputs, **kw)
        else:
            out = fm.generate(**inputs, **kw)
        text = tok.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        if dist.is_main:
            print(f"--- {name}:\n{text}" if args.compare else text)
    return 0


def run_perplexity(args: argparse.Namespace) -> int:
    """Perplexity of the windows of a text (the first ``--max-windows``), by the base model and,
    with ``--fast-weights``, with them. The text is read and tokenized block by block, once to count
    its tokens and once to score them (each batch by the base model and with the fast weights, from
    the same ids): memory does not grow with its length."""
    from faast.lm.text import base_and_fast_perplexity, perplexity

    dist = _init(args)  # under torchrun every process scores the whole text: rank 0 alone prints
    _check_max_windows(args.max_windows)
    _check_has_text(args.text)  # missing, empty, blank or not text at its start: before the model loads
    fm, tok = _load_with_fast_weights(args, lambda fm, tok: _same_reading_everywhere(dist, args, fm, tok))
    # The counting pass stays before scoring: it gives the progress bar's total and the warning naming
    # the tokens not scored (past --max-windows: the whole text's count), refuses a text too short to
    # score and bytes that are not text, before any scoring.
    windows = _file_windows(tok, args.text, args.window, "scored", limit=args.max_windows)
    progress = _show_progress(dist)  # bars on a terminal, not into a log (as learn and stream)
    if args.fast_weights:
        base, fast = base_and_fast_perplexity(fm, windows, progress=progress)
    else:
        with fm.disabled():
            base, fast = perplexity(fm, windows, progress=progress), None
    result = {"tokens": base.tokens, "base": base.to_dict()}
    if fast is not None:
        result["fast_weights"] = fast.to_dict()
    if dist.is_main:
        print(json.dumps(result, indent=1))
    return 0


def _input_files(args: argparse.Namespace) -> list[tuple[str, str | None]]:
    """(option, path) of the files a command reads: ``--text``, and ``--model`` and ``--adapter``
    where they name local files or folders (not offline names or Hub ids)."""
    files: list[tuple[str, str | None]] = [("--text", getattr(args, "text", None))]
    for option in ("model", "adapter"):
        given = getattr(args, option, None)
        if given and Path(given).expanduser().exists():
            files.append((f"--{option}", given))
    return files


def _same_file(a: Path, b: Path) -> bool:
    """Whether two resolved paths name one file: equal, or (both existing) hard links of it."""
    import os

    if a == b:
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _check_distinct_files(
    outputs: list[tuple[str, str | Path | None]], inputs: list[tuple[str, str | Path | None]]
) -> None:
    """Refuse, before any work, an output that is the same file as an input or as another output
    (``(option, path)`` pairs, None skipped; paths compared with ``~``, ``./`` and symbolic links
    resolved): ``stream --csv`` equal to ``--text`` replaced the text, ``--csv r.png`` wrote the
    plot (``r.png`` beside the CSV) over the CSV, ``--csv`` equal to ``--out`` failed only after the
    whole stream, saving the fast weights over the CSV."""
    seen: list[tuple[str, Path, str | Path, bool]] = []
    for option, path in inputs:
        if path is not None:
            seen.append((option, Path(path).expanduser().resolve(), path, True))
    for option, path in outputs:
        if path is None:
            continue
        where = Path(path).expanduser().resolve()
        for other, there, given, is_input in seen:
            if _same_file(where, there):
                what = (
                    "writing it would replace that input"
                    if is_input
                    else "one would be written over the other"
                )
                raise ValueError(
                    f"{option} {path} is the same file as {other} {given}: {what}; write it elsewhere"
                )
        seen.append((option, where, path, False))


def _check_stream_outputs(args: argparse.Namespace) -> None:
    """Refuse an unwritable --csv, plot or --out, one that is the same file as an input or as
    another output (the plot is written beside the CSV: ``Path(csv).with_suffix(".png")``), a bad
    --task name or an --out that is not fast weights."""
    from faast.io import check_writable
    from faast.lm.fastweights import check_output_file

    plot = None if not args.csv else _stream_plot_path(args.csv)
    partial = None if not args.csv else _stream_partial_path(args.csv)
    outputs = [
        ("--csv", args.csv),
        ("the plot written beside --csv (its suffix .png):", plot),
        ("the rows so far, written beside --csv (CSV.partial):", partial),
        ("--out", args.out),
    ]
    _check_distinct_files(outputs, _input_files(args))
    if args.csv:
        check_writable(args.csv)
        check_writable(plot)
        check_writable(partial)
        if partial is not None and partial.exists():  # an interrupted stream's rows: replaced, said so
            print(
                f"[faast] warning: {partial} holds the rows of an interrupted stream; this run replaces "
                "them (move the file away first to keep them)",
                file=sys.stderr,
            )
    if args.out:
        check_output_file(args.out, args.task)


def _stream_plot_path(csv: str | Path) -> Path:
    """Where ``faast lm stream --csv CSV`` writes its plot: beside the CSV, as a ``.png``."""
    return Path(csv).with_suffix(".png")


def _stream_partial_path(csv: str | Path) -> Path:
    """Where ``faast lm stream --csv CSV`` appends each chunk's row while it runs: ``CSV.partial``."""
    path = Path(csv)
    return path.with_name(path.name + ".partial")


class _PartialRows:
    """Appends each chunk's row to ``CSV.partial`` as it is read (the columns and format of
    :func:`faast.lm.stream_report.write_stream_csv`, a line flushed per chunk), so that an
    interrupted stream keeps the rows of the chunks it finished; :meth:`close` removes the file
    once the whole CSV is written. ``csv`` None: does nothing. The file is an aid, not the result:
    when it cannot be written (a full disk, an I/O error) one warning names it and the cause, and
    the stream goes on without it (the CSV is still written at the end)."""

    def __init__(self, csv: str | None) -> None:
        self.path = None if csv is None else _stream_partial_path(csv)
        self.fh: Any = None
        self.writer: Any = None

    def __call__(self, row: Any) -> None:
        if self.path is None:
            return
        try:
            self._append(row)
        except OSError as exc:
            from faast.io import os_error_cause

            print(
                f"[faast] warning: could not write {self.path} "
                f"({os_error_cause(exc)}); the stream goes on without it "
                "(an interruption now keeps no rows)",
                file=sys.stderr,
            )
            self._give_up()

    def _append(self, row: Any) -> None:
        import csv as csv_module

        from faast.lm.stream_report import COLUMNS

        if self.fh is None:
            self.fh = open(self.path, "w", encoding="utf-8", newline="")  # open until close()
            self.writer = csv_module.DictWriter(self.fh, fieldnames=COLUMNS, extrasaction="ignore")
            self.writer.writeheader()
        self.writer.writerow(row.to_dict())
        self.fh.flush()

    def _give_up(self) -> None:
        """Stop writing the file: closed (what it could not write is dropped) and removed."""
        if self.fh is not None:
            try:
                self.fh.close()
            except OSError:  # the buffered rows it could not write
                pass
            self.fh = None
        if self.path is not None:
            self.path.unlink(missing_ok=True)
        self.path = None

    def close(self, done: bool) -> None:
        """Close the file; ``done`` (the CSV is written): remove it."""
        if self.fh is not None:
            self.fh.close()
            self.fh = None
        if done and self.path is not None:
            self.path.unlink(missing_ok=True)


def _streamed_info(args: argparse.Namespace, digest: str, rows: list[Any]) -> dict[str, Any]:
    """The notes of the task ``stream --out`` writes: a learning record of the text as ``learn``
    writes one (:func:`_learned_info`; ``digest`` of the text), each chunk a window learned alone
    (``window`` = --chunk, ``batch_size`` 1), and ``windows``, the chunks learned (fewer than the text's with
    --max-chunks), so that ``forget --window CHUNK --batch-size 1`` removes exactly those pairs and
    refuses other texts."""
    record = {
        "text": Path(args.text).name,
        "digest": digest,
        "window": args.chunk,
        "batch_size": 1,
        "pairs": sum(r.pairs_learned for r in rows),
        "windows": len(rows),
    }
    return {"learned": [record]}


def run_stream(args: argparse.Namespace) -> int:
    """Score, then learn, each chunk of a text. Under ``torchrun`` every process scores each chunk
    and learns its share of the chunk's pairs, the statistics are summed across processes
    (:mod:`faast.distributed`); rank 0 prints and writes. The text is read and tokenized block by
    block (:func:`faast.lm.stream.stream_text`), once to count its tokens (and take its digest, and
    check that it is all text) and once as it is streamed: memory does not grow with its length.
    Before the model loads only the file's start is read."""
    from faast.lm.prompts import start_token_ids
    from faast.lm.stream import stream_text, summarize
    from faast.lm.stream_report import plot_stream, write_stream_csv
    from faast.lm.text_blocks import iter_token_blocks
    from faast.lm.window_stream import TextWindows

    dist = _init(args)
    if args.chunk < 2:
        raise ValueError(f"--chunk: chunks need at least 2 tokens, got {args.chunk}")
    if args.max_chunks is not None and args.max_chunks < 1:
        raise ValueError(f"--max-chunks must be at least 1, got {args.max_chunks}")
    if dist.is_main:  # bad result paths fail now, not after the whole text is read
        _check_stream_outputs(args)
    _check_has_text(args.text)  # missing, empty, blank or not text at its start: before the model loads
    check_same_everywhere(dist, args)  # --chunk, --context, ...: the text's digest is compared below
    fm, tok = _load(args, *_layout_and_read(args, {}))
    # the pass that counts the chunks' tokens also takes the text's digest (the --out record) and
    # refuses bytes that are not text, before anything is scored, learned or written
    scan = _TextScan(Path(args.text))
    chunks = TextWindows.from_blocks(
        lambda: iter_token_blocks(tok, scan.pieces()),  # the streaming pass: the text counted, or an error
        args.chunk,
        counted=iter_token_blocks(tok, scan.pieces()),
    )
    scan.check()
    digest = _same_text_everywhere(dist, scan)
    partial = _PartialRows(args.csv if dist.is_main else None)
    try:
        rows = stream_text(
            fm,
            chunks,
            start_token_ids(tok),
            max_chunks=args.max_chunks,
            score_base=not args.no_base,
            context=args.context,
            progress=_show_progress(dist),
            on_chunk=partial,
            distributed=dist.active,
        )
    finally:
        partial.close(done=False)
    if not dist.is_main:
        dist.barrier()  # wait for rank 0's files, so that no process looks for them before
        return 0
    if args.csv:
        path = write_stream_csv(args.csv, rows)
        partial.close(done=True)
        plot_stream(_stream_plot_path(path), {args.text: rows}, title=f"{args.model}, chunks of {args.chunk}")
    if args.out:
        fm.save_fast_weights(args.out, task=args.task, info=_streamed_info(args, digest, rows))
    dist.barrier()
    print(json.dumps({"chunks": len(rows), "parts": summarize(rows)}, indent=1))
    return 0


def run_tasks(args: argparse.Namespace) -> int:
    from faast.lm.fastweights import read_file

    _, tasks = read_file(args.path)
    for name, sig in sorted(tasks.items()):
        mems = ", ".join(f"{n}" for n in sig.get("memories", {}))
        print(f"{name}: {sig.get('model_type')} ({sig.get('name_or_path')}), memories [{mems}]")
    return 0
