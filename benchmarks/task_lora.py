"""The task benchmarks' LoRA rows: their command-line options and how a row describes its fit. The
baseline itself (backprop on the same examples' answers, its learning rate chosen on a held-out
fifth) is :mod:`faast.lm.lora_baseline`."""

from __future__ import annotations

import argparse

from faast.lm.lora_baseline import LoraFit, LoraRecipe, adapted

__all__ = ["adapted", "add_lora_options", "describe", "recipe_from_args"]


def add_lora_options(ap: argparse.ArgumentParser) -> None:
    """``--lora-epochs`` and ``--lora-lrs`` (:func:`recipe_from_args` reads them)."""
    ap.add_argument("--lora-epochs", type=int, default=3, help="passes of the LoRA rows over their examples")
    ap.add_argument(
        "--lora-lrs",
        default="1e-4,3e-4,1e-3",
        help="learning rates the LoRA rows choose among on a held-out fifth of their examples",
    )


def recipe_from_args(args: argparse.Namespace) -> LoraRecipe:
    """The recipe of ``--lora-epochs``, ``--lora-lrs`` (a comma list or a list of floats),
    ``--batch-size`` and ``--seed``; a clear error for rates ≤ 0 or fewer than one epoch."""
    rates = args.lora_lrs
    rates = [float(x) for x in rates.split(",") if x] if isinstance(rates, str) else list(rates)
    if not rates or min(rates) <= 0 or args.lora_epochs < 1:
        raise SystemExit("--lora-lrs: positive learning rates; --lora-epochs: at least 1")
    return LoraRecipe(
        epochs=args.lora_epochs, batch_size=args.batch_size, learning_rates=tuple(rates), seed=args.seed
    )


def describe(fit: LoraFit, recipe: LoraRecipe) -> str:
    """What a row's settings column says of a LoRA fit: the chosen rate, every rate's held-out
    answer NLL, the epochs."""
    tried = ", ".join(
        f"{lr:g}: {v:.3f}" for lr, v in zip(recipe.learning_rates, fit.held_out_nll, strict=True)
    )
    return f"lr {fit.learning_rate:g} (held-out answer NLL {tried}); {recipe.epochs} epochs"
