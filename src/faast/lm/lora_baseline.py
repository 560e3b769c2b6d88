"""Backprop on the same examples: a LoRA adapter (PEFT) trained on a task's answers, the gradient
baseline FAAST is measured against (``faast task evaluate/classify/generate --lora FILE``, and the
task benchmarks' LoRA rows).

The supervision is the one FAAST's ``answer`` mode learns: an example is encoded exactly as
:class:`faast.lm.task.TaskModel` encodes it (``PromptCodec.encode``: the prompt, then the answer
with its end marker), and the loss is the mean next-token cross-entropy over the transitions into
the answer (:func:`faast.lm.prompts.answer_pair_mask`), nothing else of the prompt.

Recipe (:class:`LoraRecipe`): LoRA of rank 8 (α = 16, no dropout) on the modules PEFT targets by
default for the model's family (q/v projections on Llama, Qwen2 and Gemma 3), AdamW without weight
decay, ``epochs`` passes over the examples in a seeded order. The learning rate is chosen among
``learning_rates`` on the examples alone: each is trained on a seeded ``1 − held_out`` share and
scored by the answer NLL of the rest; the adapter is then trained again on every example at the
chosen rate. Nothing of a test set is read. The rates are tried from the smallest up and, with
``stop_at_rise`` (the default), the search stops at the first rate whose held-out NLL is above the
best so far (the first rise of the held-out NLL, which was unimodal in the rate in every cell
docs/tasks.md ran over the whole grid): a grid then costs the trainings up to one past its best
rate, and a wide grid (10⁻⁴ to 10⁻², half-decade steps, the default) costs little where a small
rate wins. The grid reaches 10⁻² because with its old top, 10⁻³, the held-out NLL chose that top
in most runs of docs/tasks.md while still falling steeply there.

The adapter is injected into the model in place (``peft.get_peft_model``), so a
:class:`~faast.lm.task.TaskModel` over the same model generates and scores with it while its own
memory is off (:func:`adapted`); :func:`remove_lora` takes it out again, leaving the base weights as
they were (LoRA adds beside them, never into them), their ``requires_grad`` flags included (PEFT
freezes them while the adapter is in). The LM head is never a target: faast scores answers from the
head's weight itself, which would leave a LoRA there out (:func:`add_lora` refuses it).
"""

from __future__ import annotations

import contextlib
import math
import random
import time
import warnings
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from faast._checks import integer_at_least
from faast.lm.examples import Example
from faast.lm.prefix_cache import parameter_names
from faast.lm.prompts import PromptCodec, answer_pair_mask, pad_batch
from faast.lm.task_scoring import batch_starts
from faast.lm.task_spec import checked_examples
from faast.rng import seeded_rng


@dataclass(frozen=True)
class LoraRecipe:
    """How the LoRA baseline trains (see the module docstring)."""

    rank: int = 8
    alpha: int = 16
    epochs: int = 3
    batch_size: int = 8
    learning_rates: tuple[float, ...] = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
    held_out: float = 0.2
    #: Stop the (increasing) search at the first rate whose held-out NLL is above the best so far.
    stop_at_rise: bool = True
    seed: int = 0
    #: Module names LoRA wraps (PEFT's ``target_modules``); None: PEFT's default for the model's
    #: family. Names that match the LM head (the output embeddings) are refused by :func:`add_lora`.
    targets: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("rank", "alpha", "epochs", "batch_size"):
            integer_at_least(getattr(self, name), name, 1)
        integer_at_least(self.seed, "seed", 0)
        rates = self.learning_rates
        if not rates or not all(isinstance(r, int | float) and math.isfinite(r) and r > 0 for r in rates):
            raise ValueError(f"learning_rates must be positive finite numbers (at least one), got {rates!r}")
        if len(set(rates)) != len(rates):
            raise ValueError(f"learning_rates must not repeat a rate, got {rates!r}")
        if not (isinstance(self.held_out, int | float) and 0.0 < self.held_out < 1.0):
            raise ValueError(f"held_out must be in (0, 1), got {self.held_out!r}")
        if not isinstance(self.stop_at_rise, bool):
            raise ValueError(f"stop_at_rise must be True or False, got {self.stop_at_rise!r}")


#: The command-line option of each recipe field :func:`recipe_from_options` reads.
OPTIONS = {
    "epochs": "--lora-epochs",
    "learning_rates": "--lora-lrs",
    "batch_size": "--batch-size",
    "seed": "--lora-seed",
}


def recipe_from_options(
    epochs: int | None,
    learning_rates: str | Sequence[float] | None,
    batch_size: int,
    seed: int | None = None,
) -> LoraRecipe:
    """The recipe of the command line's ``--lora-epochs``, ``--lora-lrs`` (comma-separated text or
    numbers), ``--batch-size`` and ``--lora-seed`` (None: :class:`LoraRecipe`'s default); a
    ValueError naming the option otherwise."""
    default = LoraRecipe()
    epochs = default.epochs if epochs is None else epochs
    learning_rates = default.learning_rates if learning_rates is None else learning_rates
    seed = default.seed if seed is None else seed
    if isinstance(learning_rates, str):
        try:
            learning_rates = [float(x) for x in learning_rates.split(",") if x.strip()]
        except ValueError:
            raise ValueError(
                f"--lora-lrs: expected comma-separated numbers, got {learning_rates!r}"
            ) from None
    try:
        return LoraRecipe(
            epochs=epochs, batch_size=batch_size, learning_rates=tuple(learning_rates), seed=seed
        )
    except ValueError as err:
        field_name = str(err).split(" ", 1)[0]
        raise ValueError(f"{OPTIONS.get(field_name, field_name)}: {err}") from None


@dataclass
class LoraFit:
    """What :func:`fit_lora` chose and what it cost: the chosen learning rate, the held-out answer
    NLL of each rate tried (in ``learning_rates``, the rates tried, smallest first: the recipe's
    grid up to where the search stopped), the trainable parameters and their bytes, and the
    wall-clock seconds of the whole choice and final training."""

    learning_rate: float
    held_out_nll: list[float] = field(default_factory=list)
    parameters: int = 0
    seconds: float = 0.0
    learning_rates: tuple[float, ...] = ()
    nbytes: int = 0

    def held_out_summary(self) -> str:
        """Each rate tried with its held-out answer NLL, e.g. ``"0.0001: 3.804, 0.001: 3.324"``."""
        pairs = zip(self.learning_rates, self.held_out_nll, strict=True)
        return ", ".join(f"{lr:g}: {nll:.3f}" for lr, nll in pairs)


def answer_batches(
    codec: PromptCodec, examples: Sequence[Example], batch_size: int, pad_id: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(input_ids (B, T), attention_mask (B, T), answer pairs (B, T − 1) bool) of consecutive
    blocks of ``examples``, right-padded: pair t → t+1 is True iff token t+1 is an answer token."""
    for start in batch_starts(len(examples), batch_size):
        encoded = [codec.encode(e.input, e.output) for e in examples[start : start + batch_size]]
        ids, mask = pad_batch([e.ids for e in encoded], pad_id, side="right")
        pairs = answer_pair_mask(
            [len(e.prompt) for e in encoded], [len(e.ids) for e in encoded], ids.shape[1]
        )
        yield ids, mask, pairs


def takes_head_positions(model: Any) -> bool:
    """Whether ``model`` (or the model a PEFT wrapper holds) computes its LM head at chosen
    positions only: transformers' ``logits_to_keep`` keyword, which takes a tensor of positions."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in parameter_names(base.forward)


def _logits_at(model: Any, ids: torch.Tensor, mask: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    """(B, K, vocab) logits at the positions ``kept`` (K,) through ``logits_to_keep``. One position
    is asked as two (a model that reads ``logits_to_keep`` as a count would silently keep the last
    position for a lone position 1, and fails on two); a model that keeps other positions than
    those asked gets a clear error instead of a wrong loss."""
    asked = kept if kept.numel() != 1 else torch.cat([kept, (kept + 1) % ids.shape[1]])
    try:
        logits = model(input_ids=ids, attention_mask=mask, use_cache=False, logits_to_keep=asked).logits
    except TypeError as exc:
        raise ValueError(
            f"{type(model).__name__} takes logits_to_keep but not as a tensor of positions ({exc}); "
            "the LoRA baseline needs transformers >= 4.56 models"
        ) from exc
    if logits.shape[1] != asked.numel():
        raise ValueError(
            f"{type(model).__name__} kept {logits.shape[1]} positions where logits_to_keep asked for "
            f"{asked.numel()}: it does not take a tensor of positions (transformers >= 4.56 models do)"
        )
    return logits[:, : kept.numel()]


def answer_loss(
    model: Any, ids: torch.Tensor, mask: torch.Tensor, pairs: torch.Tensor
) -> tuple[torch.Tensor, int]:
    """(summed cross-entropy, count) over the answer transitions ``pairs`` (B, T − 1) of one batch
    (ids, mask: (B, T)); the sum keeps the graph when gradients are on. Where the model takes
    ``logits_to_keep`` the LM head runs only at the positions (K,) some row's answer is predicted
    from (prompt positions cost no vocabulary-wide logits), else at every position. The batch is
    moved to the model's device."""
    device = next(model.parameters()).device
    ids, mask, pairs = ids.to(device), mask.to(device), pairs.to(device)
    if takes_head_positions(model):
        kept = pairs.any(dim=0).nonzero().squeeze(1)  # (K,) positions t whose t → t+1 is scored
        logits = _logits_at(model, ids, mask, kept)
        chosen = logits[pairs[:, kept]]  # (N, vocab): logits (B, K, vocab) at the answer pairs
    else:
        chosen = model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, :-1][pairs]
    # at least float32 (half-precision logits are widened)
    chosen = chosen.to(torch.promote_types(chosen.dtype, torch.float32))
    targets = ids[:, 1:][pairs]
    return F.cross_entropy(chosen, targets, reduction="sum"), int(pairs.sum())


@torch.no_grad()
def answer_nll(
    model: Any, codec: PromptCodec, examples: Sequence[Example], batch_size: int, pad_id: int
) -> float:
    """Mean answer NLL per token of ``examples`` under ``model`` (teacher forcing)."""
    total, count = 0.0, 0
    for ids, mask, pairs in answer_batches(codec, examples, batch_size, pad_id):
        loss, n = answer_loss(model, ids, mask, pairs)
        total, count = total + float(loss), count + n
    return total / count


#: PEFT model → the ``requires_grad`` flag of each parameter of the model it wraps, as they were
#: before :func:`add_lora` (``get_peft_model`` freezes them); :func:`remove_lora` puts them back.
_FLAGS: weakref.WeakKeyDictionary[Any, list[tuple[torch.nn.Parameter, bool]]] = weakref.WeakKeyDictionary()


def add_lora(model: Any, recipe: LoraRecipe) -> Any:
    """The PEFT model wrapping ``model`` with a fresh adapter (seeded), injected in place. A
    ``ValueError`` when ``recipe.targets`` match the model's LM head (its output embeddings): faast
    scores answers from the head's weight (``F.linear``), which would leave a LoRA there out."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=recipe.rank,
        lora_alpha=recipe.alpha,
        lora_dropout=0.0,
        target_modules=list(recipe.targets) if recipe.targets else None,
    )
    _refuse_head_target(model, config, recipe.targets)
    flags = [(p, p.requires_grad) for p in model.parameters()]
    # the adapter's initialisation seeded, and the caller's own random stream given back after
    with seeded_rng(recipe.seed), warnings.catch_warnings():
        # PEFT asks transformers 5 a deprecated property; nothing to act on
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        peft_model = get_peft_model(model, config)
    _FLAGS[peft_model] = flags
    return peft_model


def _refuse_head_target(model: Any, config: Any, targets: Sequence[str] | None) -> None:
    """Refuse (``ValueError``) a LoRA ``config`` whose target modules match ``model``'s LM head."""
    if not config.target_modules:  # PEFT's default for the family: attention projections only
        return
    from peft.tuners.tuners_utils import check_target_module_exists

    get_head = getattr(model, "get_output_embeddings", None)
    head = get_head() if callable(get_head) else None
    names = [name for name, module in model.named_modules() if head is not None and module is head]
    hit = [name for name in names if bool(check_target_module_exists(config, name))]
    if hit:
        raise ValueError(
            f"LoraRecipe targets {tuple(targets or ())} include {hit[0]!r}, the model's LM head (its "
            "output embeddings): faast scores answers from the head's weight itself (TaskModel's answer "
            "NLLs and label scores), which would leave a LoRA there out, so the baseline would be scored "
            "without part of its adapter; target modules inside the decoder blocks (e.g. "
            "targets=('q_proj', 'v_proj'), or None for PEFT's default)"
        )


def remove_lora(peft_model: Any) -> Any:
    """The base model with the adapter taken out (its own weights untouched, and each parameter's
    ``requires_grad`` back to what it was before :func:`add_lora`: PEFT froze them)."""
    model = peft_model.unload()
    for param, flag in _FLAGS.pop(peft_model, ()):
        param.requires_grad_(flag)
    return model


def train_lora(
    peft_model: Any,
    codec: PromptCodec,
    examples: Sequence[Example],
    lr: float,
    recipe: LoraRecipe,
    pad_id: int,
) -> None:
    """``recipe.epochs`` passes of AdamW over ``examples`` (seeded order, mean loss per answer token
    of each batch), on the adapter's parameters only."""
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    order = random.Random(recipe.seed)
    peft_model.train()
    steps = recipe.epochs * len(batch_starts(len(examples), recipe.batch_size))
    try:
        with tqdm(total=steps, desc=f"LoRA lr={lr:g}", unit="batch", leave=False) as bar:
            for _ in range(recipe.epochs):
                shuffled = list(examples)
                order.shuffle(shuffled)
                for ids, mask, pairs in answer_batches(codec, shuffled, recipe.batch_size, pad_id):
                    loss, count = answer_loss(peft_model, ids, mask, pairs)
                    optimizer.zero_grad()
                    (loss / count).backward()
                    optimizer.step()
                    bar.update()
    finally:  # an error or Ctrl-C leaves the model in eval mode too (dropout off), as scoring needs
        peft_model.eval()


def held_out_split(
    examples: Sequence[Example], share: float, seed: int
) -> tuple[list[Example], list[Example]]:
    """(train, held out): a seeded ``share`` of ``examples`` held out, at least one each side."""
    if len(examples) < 2:
        raise ValueError(f"choosing a learning rate needs at least 2 examples, got {len(examples)}")
    if not 0.0 < share < 1.0:
        raise ValueError(f"held_out must be in (0, 1), got {share}")
    idx = list(range(len(examples)))
    random.Random(seed).shuffle(idx)
    n_held = min(len(examples) - 1, max(1, round(share * len(examples))))
    held = set(idx[:n_held])
    return [e for i, e in enumerate(examples) if i not in held], [
        e for i, e in enumerate(examples) if i in held
    ]


def fit_lora(
    model: Any, codec: PromptCodec, examples: Sequence[Example], recipe: LoraRecipe
) -> tuple[Any, LoraFit]:
    """(the PEFT model, trained on every example at the chosen rate; what was chosen). ``model``
    holds the adapter afterwards (:func:`remove_lora` takes it out)."""
    examples = checked_examples(examples, outputs=True)
    pad_id = codec.tokenizer.pad_token_id
    if pad_id is None:
        pad_id = codec.tokenizer.eos_token_id
    start = time.perf_counter()
    train, held = held_out_split(examples, recipe.held_out, recipe.seed)
    tried: list[float] = []
    scores: list[float] = []
    for lr in sorted(recipe.learning_rates):
        peft_model = add_lora(model, recipe)
        try:
            train_lora(peft_model, codec, train, lr, recipe, pad_id)
            tried.append(lr)
            scores.append(answer_nll(peft_model, codec, held, recipe.batch_size, pad_id))
        finally:  # an error or Ctrl-C leaves the model as it was given, its requires_grad flags too
            model = remove_lora(peft_model)
        if stops_search(scores, recipe.stop_at_rise):
            break
    best = lowest_loss(scores)
    if best is None:
        raise ValueError(
            f"LoRA training diverged at every learning rate tried ({', '.join(f'{lr:g}' for lr in tried)}): "
            "the held-out answer NLL was never finite; try smaller rates (--lora-lrs)"
        )
    peft_model = add_lora(model, recipe)
    try:
        train_lora(peft_model, codec, examples, tried[best], recipe, pad_id)
    except BaseException:
        remove_lora(peft_model)
        raise
    trained = [p for p in peft_model.parameters() if p.requires_grad]
    return peft_model, LoraFit(
        tried[best],
        scores,
        sum(p.numel() for p in trained),
        time.perf_counter() - start,
        tuple(tried),
        sum(p.numel() * p.element_size() for p in trained),
    )


def stops_search(scores: Sequence[float], stop_at_rise: bool) -> bool:
    """Whether the search over increasing rates stops after the held-out NLLs ``scores`` (one per
    rate tried, smallest rate first): with ``stop_at_rise``, once the last is above the best of
    those before it (a NaN — a diverged run — counts as above)."""
    if not stop_at_rise or len(scores) < 2:
        return False
    return loss_rank(scores[-1]) > min(loss_rank(nll) for nll in scores[:-1])


def loss_rank(loss: float) -> float:
    """A held-out loss (NLL or perplexity; lower is better) as a learning-rate search compares it:
    NaN (a diverged run) as +inf, so that it never wins a ``min``."""
    return math.inf if math.isnan(loss) else loss


def lowest_loss(losses: Sequence[float]) -> int | None:
    """The index of the lowest of the held-out ``losses`` (one per learning rate; NLL or
    perplexity) as :func:`loss_rank` ranks them, the first on a tie; None when none is finite (every
    run diverged)."""
    ranked = [loss_rank(loss) for loss in losses]
    best = min(range(len(ranked)), key=ranked.__getitem__)
    return None if math.isinf(ranked[best]) else best


@contextlib.contextmanager
def adapted(task: Any, examples: Sequence[Example], recipe: LoraRecipe) -> Iterator[LoraFit]:
    """Inside the block, ``task`` (a :class:`~faast.lm.task.TaskModel`) reads its model with a LoRA
    adapter trained on ``examples`` (:func:`fit_lora`) and its own memory off; the adapter is taken
    out afterwards. The task's kept states (``cache=True``) are dropped on the way in and out: they
    are the base model's before, the adapted model's inside."""
    fm = task.model
    with fm.disabled():
        peft_model, fit = fit_lora(fm.base_model, task.codec, examples, recipe)
        try:
            task.clear_cache()
            yield fit
        finally:
            remove_lora(peft_model)
            task.clear_cache()
