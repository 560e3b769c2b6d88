"""The task benchmarks' LoRA rows: their command-line options and how a row describes its fit. The
baseline itself (backprop on the same examples' answers, its learning rate chosen on a held-out
fifth) is :mod:`faast.lm.lora_baseline`."""

from __future__ import annotations

import argparse

from faast.lm.lora_baseline import LoraFit, LoraRecipe, adapted, recipe_from_options

__all__ = ["adapted", "add_lora_options", "describe", "recipe_from_args"]


def add_lora_options(ap: argparse.ArgumentParser) -> None:
    """``--lora-epochs`` and ``--lora-lrs`` (:func:`recipe_from_args` reads them), with the
    recipe's defaults."""
    default = LoraRecipe()
    ap.add_argument(
        "--lora-epochs", type=int, default=default.epochs, help="passes of the LoRA rows over their examples"
    )
    ap.add_argument(
        "--lora-lrs",
        default=",".join(f"{lr:g}" for lr in default.learning_rates),
        help="learning rates the LoRA rows choose among on a held-out fifth of their examples",
    )


def recipe_from_args(args: argparse.Namespace) -> LoraRecipe:
    """The recipe of ``--lora-epochs``, ``--lora-lrs`` (a comma list or a list of floats),
    ``--batch-size`` and ``--seed`` (:func:`faast.lm.lora_baseline.recipe_from_options`); its error,
    naming the option, as the benchmark's exit message."""
    try:
        return recipe_from_options(args.lora_epochs, args.lora_lrs, args.batch_size, args.seed)
    except ValueError as err:
        raise SystemExit(str(err)) from None


def describe(fit: LoraFit, recipe: LoraRecipe) -> str:
    """What a row's settings column says of a LoRA fit: the chosen rate, every rate's held-out
    answer NLL, the epochs."""
    return f"lr {fit.learning_rate:g} (held-out answer NLL {fit.held_out_summary()}); {recipe.epochs} epochs"
