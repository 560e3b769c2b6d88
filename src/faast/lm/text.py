"""Loading a causal LM by name, cutting text into token windows, learning it, scoring perplexity."""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from faast.assets.lm import GEMMA3, QWEN25, SMOLLM2, gemma3_dir, qwen25_dir, smollm2_dir
from faast.io import existing_file, first_line
from faast.lm.inject import context_window
from faast.lm.special_tokens import TEXT_AS_TEXT, ids_around_text
from faast.text_files import read_user_text


@dataclass(frozen=True)
class OfflineModel:
    """An offline model asset: its registry name and the function giving its model folder."""

    asset: str
    folder: Callable[..., Path]


#: Short names of the offline models (``faast assets``) accepted wherever a model id is.
OFFLINE_MODELS: dict[str, OfflineModel] = {
    "smollm2": OfflineModel(SMOLLM2, smollm2_dir),
    SMOLLM2: OfflineModel(SMOLLM2, smollm2_dir),
    "gemma3": OfflineModel(GEMMA3, gemma3_dir),
    GEMMA3: OfflineModel(GEMMA3, gemma3_dir),
    "qwen2.5": OfflineModel(QWEN25, qwen25_dir),
    QWEN25: OfflineModel(QWEN25, qwen25_dir),
}


def load_causal_lm(name_or_path: str, *, dtype: torch.dtype = torch.float32, device: str | None = None):
    """(model, tokenizer) for an offline model name, a local folder, a local ``.gguf`` file
    (llama.cpp's format, dequantised to ``dtype``) or a Hub id.

    Offline names (OFFLINE_MODELS, case-insensitive): ``smollm2`` / ``smollm2-135m-instruct``
    (SmolLM2-135M-Instruct, ``LlamaForCausalLM``), ``gemma3`` / ``gemma3-270m`` (Gemma-3-270M
    base, ``Gemma3ForCausalLM``, 268M parameters, 262,144-token vocabulary) and ``qwen2.5`` /
    ``qwen2.5-coder-0.5b-instruct`` (``Qwen2ForCausalLM``, 630M parameters as loaded, 151,936-token
    vocabulary); the asset is fetched first if it is not in the cache. Hub ids (``gpt2-xl``,
    ``Qwen/Qwen2.5-7B-Instruct``) go to ``from_pretrained`` unchanged, so they work wherever the
    Hugging Face Hub can be reached.

    The tokenizer always has a pad token (the EOS token is used when the model defines none;
    Gemma has its own ``<pad>``, id 0). Gemma's tokenizer prepends ``<bos>`` (id 2) by default
    (``add_special_tokens=True``), and Gemma depends on it: a plain sentence scores perplexity
    ~12 with the BOS and ~530 without. ``encode`` below uses ``add_special_tokens=False``, so
    put ``tokenizer.bos_token_id`` in front of each window when scoring Gemma that way.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source: str | Path = name_or_path
    offline = OFFLINE_MODELS.get(name_or_path.lower())
    local = Path(name_or_path).expanduser()
    if offline is not None:
        source = offline.folder()
    elif local.is_file():
        if local.suffix.lower() != ".gguf":
            raise FileNotFoundError(
                f"{name_or_path} is a file, not a model: pass a .gguf file, a from_pretrained folder, "
                "an offline model name or a Hub id"
            )
        return _load_gguf(local, dtype, device)
    elif _looks_like_path(name_or_path) and not local.is_dir():
        raise FileNotFoundError(
            f"no model folder {name_or_path}: it does not exist; pass an offline model name "
            f"({_offline_names()}), a local from_pretrained folder or a Hugging Face Hub id"
        )
    folder = Path(source).expanduser()
    configs = ("config.json", "adapter_config.json")  # a model's, or a PEFT adapter's
    if folder.is_dir() and not any((folder / name).is_file() for name in configs):
        found = sorted(p.name for p in folder.iterdir())
        raise FileNotFoundError(
            f"{name_or_path} is not a model folder: no config.json in it (it holds "
            f"{', '.join(found[:6]) + (', …' if len(found) > 6 else '') if found else 'nothing'}); "
            "pass a folder written by save_pretrained, an offline model name or a Hub id"
        )
    hub = offline is None and not folder.is_dir()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(source))
        model = AutoModelForCausalLM.from_pretrained(str(source), dtype=dtype)
    except OSError as exc:
        if not hub:
            raise
        raise OSError(_hub_failure(name_or_path, exc)) from exc
    return _ready(model, tokenizer, device)


def _offline_names() -> str:
    """The short offline model names, for messages (``gemma3, qwen2.5, smollm2``)."""
    return ", ".join(sorted({k for k in OFFLINE_MODELS if "-" not in k}))


def _hub_failure(name: str, exc: OSError) -> str:
    """The message for a name that is neither an offline model nor a local folder and that the
    Hugging Face Hub did not serve (no network, a private or misspelt id): what was tried, the
    Hub's own first line and the offline names, the closest first when one is near."""
    import difflib

    close = difflib.get_close_matches(name.lower(), list(OFFLINE_MODELS), n=1, cutoff=0.6)
    hint = f"Did you mean the offline model {close[0]!r}? " if close else ""
    first = first_line(exc)
    return (
        f"could not load the model {name!r}: it is not an offline model name or a local folder, "
        f"so it was read as a Hugging Face Hub id, and the Hub did not serve it ({first}). "
        f"{hint}Offline models: {_offline_names()} (faast assets list)"
    )


def _ready(model: Any, tokenizer: Any, device: str | None) -> tuple[Any, Any]:
    """The loaded pair as :func:`load_causal_lm` returns it: the model on ``device`` in eval mode,
    the tokenizer with a pad token (the EOS token where it defines none)."""
    if device is not None:
        model = model.to(device)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.eval(), tokenizer


def _load_gguf(path: Path, dtype: torch.dtype, device: str | None):
    """(model, tokenizer) of a GGUF file (llama.cpp's format), dequantised to ``dtype`` by
    transformers (its ``gguf_file`` loading; needs the ``gguf`` package, in the lm extra)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=dtype)
    except ImportError:
        raise
    except Exception as exc:  # not GGUF, an architecture transformers cannot read from GGUF, ...
        raise ValueError(f"transformers could not load {path} as a GGUF causal LM: {exc}") from exc
    return _ready(model, tokenizer, device)


def _looks_like_path(name: str) -> bool:
    """A local path rather than a Hub id (``owner/name``): absolute, relative with ./ or ../, ~,
    or more than one '/'."""
    return name.startswith(("/", "./", "../", "~", "\\")) or name.count("/") > 1 or os.sep in name[:1]


def read_text(path: str | os.PathLike[str]) -> str:
    p = existing_file(path, "text file")
    text = read_user_text(p)
    if not text.strip():
        raise no_text_error(p, empty=not text)
    return text


def no_text_error(path: Path, *, empty: bool) -> ValueError:
    """The error of a text file with nothing to learn: ``empty``, or only whitespace."""
    return ValueError(f"{path} is empty" if empty else f"{path} holds only whitespace (no text to read)")


def token_windows(ids: torch.Tensor, length: int, *, skip: int = 0, limit: int | None = None) -> torch.Tensor:
    """Non-overlapping windows of a 1-D token stream: (N,) → (n, length), after ``skip`` windows.

    A shorter tail is dropped unless it is the only window (then it is returned alone).
    """
    if ids.ndim != 1:
        raise ValueError(f"expected a 1-D token stream, got shape {tuple(ids.shape)}")
    if length < 2:
        raise ValueError(f"windows need at least 2 tokens, got length={length}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 window, got {limit}")
    ids = ids[skip * length :]
    n = ids.numel() // length
    if limit is not None:
        n = min(n, limit)
    if n == 0:
        if ids.numel() < 2:
            after = f" after skipping {skip} windows" if skip else ""
            raise ValueError(f"the text is too short: {ids.numel()} token(s){after}, a window needs 2")
        return ids[None].clone()
    return ids[: n * length].view(n, length).clone()


def with_start_tokens(windows: torch.Tensor, start_ids: list[int]) -> torch.Tensor:
    """(n, T) windows → (n, len(start_ids) + T) with the start tokens in front of each (a model
    such as Gemma reads every sequence after ``<bos>``; the start tokens are never scored)."""
    if not start_ids:
        return windows
    start = torch.tensor(start_ids, dtype=windows.dtype).expand(windows.shape[0], -1)
    return torch.cat([start, windows], dim=1)


#: Characters tokenized per call by :func:`encode`: its memory stays bounded however long the text.
ENCODE_CHUNK_CHARS = 1 << 16


def encode(tokenizer: Any, text: str, *, chunk_chars: int = ENCODE_CHUNK_CHARS) -> torch.Tensor:
    """The whole text as one 1-D token stream (no special tokens added; the strings of special
    tokens in it are tokenized as text, :data:`TEXT_AS_TEXT`): (N,) int64.

    Long texts are tokenized ``chunk_chars`` characters at a time (a tokenizer's own output holds
    offsets and token strings, hundreds of bytes per token), split only where tokenizing the two
    sides apart gives the same tokens as tokenizing them together (checked around each split,
    :func:`faast.lm.text_blocks.iter_token_blocks`), so the stream equals that of one call. The
    stream is usually longer than the model's context (it is cut into windows next), so the
    tokenizer's sequence-length warning is silenced.
    """
    from faast.lm.text_blocks import concat_blocks, iter_token_blocks

    return concat_blocks(list(iter_token_blocks(tokenizer, [text], block_chars=chunk_chars)))


def prompt_ids(tokenizer: Any, prompt: str) -> list[int]:
    """The ids a model continues ``prompt`` from: the tokenizer's start tokens
    (:func:`faast.lm.prompts.start_token_ids`, e.g. Gemma's ``<bos>``), then the prompt read as text
    (:data:`TEXT_AS_TEXT`), as ``faast lm learn`` puts the start tokens before each window of a
    text it reads as text: a prompt that quotes ``"<eos>"`` continues a learned text that quotes it
    (read as a control token, the prompt held Gemma's end token, id 1, which no learned text holds)."""
    from faast.lm.prompts import start_token_ids

    with quiet_tokenizer():  # the caller checks the length against the model's context window
        return [*start_token_ids(tokenizer), *tokenizer(prompt, **TEXT_AS_TEXT).input_ids]


#: Stands for the user's prompt when the chat template is rendered to find where the prompt goes
#: (:func:`chat_prompt_ids`): private-use characters, which no template writes or trims.
_PROMPT_MARK = "\ue000faast-prompt\ue001"


def chat_prompt_ids(tokenizer: Any, prompt: str) -> list[int]:
    """The ids of ``prompt`` as the user's message in the tokenizer's chat template, with a
    generation prompt: the template's own special tokens (``<|im_start|>``, ``<start_of_turn>``)
    stay control tokens, the user's text is read as text (:data:`TEXT_AS_TEXT`), as learned texts
    are. No start tokens are added (the template writes them).

    A prompt without special-token strings is the rendered template tokenized in one call (the
    strings are recognised). Otherwise the template is rendered once more with a marker for the
    prompt, to find the prompt's place in it (the template may trim it), and the template's text
    around it keeps its control tokens (:func:`faast.lm.special_tokens.ids_around_text`). A
    template that does not write the prompt once, whole, is a ``ValueError``.
    """

    def render(content: str) -> str:
        messages = [{"role": "user", "content": content}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    rendered = render(prompt)
    with quiet_tokenizer():  # the caller checks the length against the model's context window

        def controls(text: str) -> list[int]:
            return list(tokenizer(text, add_special_tokens=False).input_ids) if text else []

        if controls(prompt) == list(tokenizer(prompt, **TEXT_AS_TEXT).input_ids):
            return controls(rendered)  # no special-token string in the prompt
        marked = render(_PROMPT_MARK)
        before, _, after = marked.partition(_PROMPT_MARK)
        fits = len(before) + len(after) <= len(rendered)
        if marked.count(_PROMPT_MARK) != 1 or not (
            fits and rendered.startswith(before) and rendered.endswith(after)
        ):
            raise ValueError(
                "the chat template does not write the prompt once, as given, so the special-token "
                "strings in the prompt cannot be told apart from the template's own to be read as "
                "text; generate without the chat template (drop --chat)"
            )
        content = rendered[len(before) : len(rendered) - len(after)]
        return ids_around_text(tokenizer, before, content, after)


@contextlib.contextmanager
def quiet_tokenizer() -> Iterator[None]:
    """Silence transformers' warnings (tokenizer length warnings) inside the block; the caller
    checks lengths against the model's own context window instead."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        yield
        return
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


#: Windows: an (n, T) tensor, or a sequence of 1-D windows whose lengths may differ (a text's
#: whole windows then its shorter tail: :func:`text_windows`).
Windows = torch.Tensor | Sequence[torch.Tensor]


def window_batches(windows: Windows, batch_size: int) -> list[torch.Tensor]:
    """(b, T) batches of ``batch_size`` consecutive windows; a window of another length than the
    batch's starts a batch of its own (no padding: a window's states never depend on another's)."""
    if isinstance(windows, torch.Tensor):
        return [windows[i : i + batch_size] for i in range(0, len(windows), batch_size)]
    return list(iter_window_batches(windows, batch_size))


def iter_window_batches(windows: Iterable[torch.Tensor], batch_size: int) -> Iterator[torch.Tensor]:
    """:func:`window_batches` of 1-D windows, one batch at a time (a
    :class:`faast.lm.window_stream.TextWindows` is tokenized as it is read)."""
    run: list[torch.Tensor] = []
    for window in windows:
        if run and (len(run) == batch_size or window.numel() != run[0].numel()):
            yield torch.stack(run)
            run = []
        run.append(window)
    if run:
        yield torch.stack(run)


def _batches(windows: Windows, batch_size: int) -> tuple[Iterable[torch.Tensor], int]:
    """(the batches of ``windows``, their count): a stacked tensor or any sequence of windows in
    batches, a :class:`faast.lm.window_stream.TextWindows` one batch at a time (counted by its
    ``batches``)."""
    from faast.lm.window_stream import TextWindows

    if isinstance(windows, TextWindows):
        return iter_window_batches(windows, batch_size), windows.batches(batch_size)
    batches = window_batches(windows, batch_size)  # a tensor, list, tuple, generator of windows
    return batches, len(batches)


def text_windows(ids: torch.Tensor, length: int, start_ids: Sequence[int] = ()) -> list[torch.Tensor]:
    """Every token of a 1-D stream in non-overlapping windows of ``length``, the last one shorter
    when the stream does not divide (kept if it holds 2 tokens, a pair to learn or score), each
    after ``start_ids``: a list of 1-D windows for :func:`learn_windows`, :func:`capture_windows`
    and :func:`perplexity` (:func:`token_windows` drops that tail)."""
    start = list(start_ids)
    if start and ids.ndim == 1 and ids.numel() < 2:
        raise ValueError(
            f"the text is too short: {ids.numel()} token(s), a window needs 2 of the text's own "
            f"(the start token ids {start} put in front of each window "
            "are not counted)"
        )
    whole = token_windows(ids, length)
    tail = ids[whole.numel() :]
    rows = [whole, tail[None]] if tail.numel() >= 2 else [whole]
    return [window for part in rows for window in with_start_tokens(part, start)]


def capture_windows(model: Any, windows: Windows, *, batch_size: int = 4, progress: bool = True) -> list:
    """``model.capture`` on windows (:data:`Windows`, or a
    :class:`~faast.lm.window_stream.TextWindows` read batch by batch) in batches
    (:func:`window_batches`), moved to the model's device: the states that
    ``model.learn_captured`` learns again without a forward pass (each batch keeps B·T·d floats per
    key point)."""
    device = next(model.parameters()).device
    batches, total = _batches(windows, batch_size)
    return [
        model.capture(input_ids=batch.to(device))
        for batch in tqdm(batches, desc="capture", unit="batch", total=total, disable=not progress)
    ]


def learn_windows(model: Any, windows: Windows, *, batch_size: int = 4, progress: bool = True) -> int:
    """``model.learn`` on windows (:data:`Windows`, or a
    :class:`~faast.lm.window_stream.TextWindows`, one batch of ids held at a time) in batches
    (:func:`window_batches`); returns the number of pairs learned."""
    device = next(model.parameters()).device
    pairs = 0
    batches, total = _batches(windows, batch_size)
    for batch in tqdm(batches, desc="learn", unit="batch", total=total, disable=not progress):
        pairs += model.learn(input_ids=batch.to(device))
    return pairs


@dataclass
class Perplexity:
    """ppl = exp(mean NLL) over ``tokens`` predicted tokens; top1 = next-token accuracy."""

    ppl: float
    nll: float
    tokens: int
    top1: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def nll_and_hits(logits: torch.Tensor, windows: torch.Tensor) -> tuple[float, int, int]:
    """Summed next-token NLL, count and correct top-1 of (B, T, V) logits for (B, T) windows."""
    pred = logits[:, :-1].float()
    target = windows[:, 1:].to(pred.device)
    nll = F.cross_entropy(pred.reshape(-1, pred.shape[-1]), target.reshape(-1), reduction="sum")
    hits = int((pred.argmax(-1) == target).sum())
    return float(nll), target.numel(), hits


def model_context_window(model: Any) -> int | None:
    """The most positions ``model`` (a :class:`~faast.lm.FaastModel` or a plain causal LM) encodes
    (:func:`faast.lm.inject.context_window`); None when it names none or has no config."""
    base = model.base_model if hasattr(model, "context_window") else model  # a FaastModel wraps its LM
    return context_window(base) if getattr(base, "config", None) is not None else None


def check_scored_length(model: Any, length: int, what: str) -> None:
    """Refuse to score sequences of ``length`` tokens beyond ``model``'s context window: positions it
    never encoded give numbers, not an error (``what`` names the sequences and the options that
    set their length)."""
    window = model_context_window(model)
    if window is not None and length > window:
        raise ValueError(f"{what} of {length} tokens exceed the model's context window of {window} tokens")


@torch.no_grad()
def perplexity(model: Any, windows: Windows, *, batch_size: int = 4, progress: bool = False) -> Perplexity:
    """Perplexity of windows (:data:`Windows`, or a :class:`~faast.lm.window_stream.TextWindows`
    read one batch at a time), each scored on its own (no carried-over context); windows longer than
    the model's context window are refused."""
    return _perplexities(model, windows, (contextlib.nullcontext,), batch_size, progress)[0]


@torch.no_grad()
def base_and_fast_perplexity(
    model: Any, windows: Windows, *, batch_size: int = 4, progress: bool = False
) -> tuple[Perplexity, Perplexity]:
    """(:func:`perplexity` by the base model, ``model.disabled()``; :func:`perplexity` with the fast
    weights of ``model``, a :class:`~faast.lm.FaastModel`), the same numbers, from one pass over the
    windows: each batch is scored both ways from the same ids (a
    :class:`~faast.lm.window_stream.TextWindows` is read and tokenized once, not once per score)."""
    base, fast = _perplexities(model, windows, (model.disabled, contextlib.nullcontext), batch_size, progress)
    return base, fast


def _perplexities(
    model: Any,
    windows: Windows,
    ways: Sequence[Callable[[], contextlib.AbstractContextManager[Any]]],
    batch_size: int,
    progress: bool,
) -> list[Perplexity]:
    """:func:`perplexity` of ``windows`` scored inside each of ``ways`` (context managers: the fast
    weights off, as they are), one pass over the windows scoring each batch every way in turn."""
    from faast.lm.window_stream import TextWindows

    if len(windows):  # a (n, length) tensor, a list of 1-D ones or a TextWindows (not read for this)
        longest = windows.longest if isinstance(windows, TextWindows) else max(len(w) for w in windows)
        check_scored_length(model, longest, "perplexity: windows (--window)")
    device = next(model.parameters()).device
    sums = [(0.0, 0, 0)] * len(ways)  # per way: summed NLL, tokens, correct top-1
    batches, n_batches = _batches(windows, batch_size)
    for batch in tqdm(batches, desc="score", unit="batch", total=n_batches, disable=not progress):
        batch = batch.to(device)
        for i, way in enumerate(ways):
            with way():
                logits = model(input_ids=batch, use_cache=False).logits
            nll, n, h = nll_and_hits(logits, batch)
            del logits  # one way's (B, T, V) logits held at a time
            total, count, hits = sums[i]
            sums[i] = (total + nll, count + n, hits + h)
    return [Perplexity(math.exp(t / c), t / c, c, h / c) for t, c, h in sums]
