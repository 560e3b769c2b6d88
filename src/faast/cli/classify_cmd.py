"""``faast classify``: fit, extend, forget and apply a FaastClassifier on your own data.

DATA is a folder of images — the torchvision ``ImageFolder`` layout (one sub-folder per class;
for ``predict`` also a flat folder of unlabelled images, and images beside the class folders,
predicted unlabelled; the classifier's ``--model`` folder must lie outside it) —, a text file —
``.tsv``/``.txt`` lines ``text<TAB>label`` or ``.jsonl``/``.json`` objects with ``input`` and
``output`` fields, the examples format of ``faast task`` (:mod:`faast.lm.examples`; for
``predict`` the labels may be left out; a ``.csv`` whose ``input`` column holds only numbers is
refused: rename the column to read it as features) —, both encoded by a frozen encoder through
the feature cache, or a features file
(``.safetensors``, ``.npy``/``.npz``, ``.csv``; see :mod:`faast.data.features_file`). The
classifier is saved as a directory of safetensors + JSON (:mod:`faast.classifier_io`, no pickle)
that records which encoder made its features.

    faast classify fit photos/train --model my-model              # ImageFolder, EfficientNet-Lite0
    faast classify partial-fit photos/more --model my-model       # add images later
    faast classify forget photos/wrong --model my-model           # remove them again (exactly*)
    faast classify predict photos/new --model my-model --out predictions.csv
    faast classify fit reviews.tsv --model m3                     # texts, all-MiniLM-L6-v2
    faast classify fit feats.csv --label-column y --model m2      # or a features file

* Exactly: each example to forget is checked against those learned — within rounding while the
classifier holds at most 2·D examples (D its design's width: the features, + 1 with the
intercept) and keeps their rows, bit for bit against its record of examples learned beyond
(:mod:`faast.classifier_record`: pass the very features learned, e.g. from the feature cache). A
classifier saved before the record (2026-12-06) can check only the class counts beyond 2·D, so
``forget`` warns there.

Under ``torchrun`` (:mod:`faast.distributed`) ``fit`` and ``partial-fit`` run unchanged: the images
are encoded in parallel (rank 0 writes the feature cache), each process learns its block of the
examples, one all-reduce sums the statistics, and rank 0 alone saves the classifier and prints.
Texts are encoded in parallel the same way.
"""

from __future__ import annotations

import argparse
import csv
import math
import time
import unicodedata
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from faast.assets.core import CACHE_DIR_HELP

if TYPE_CHECKING:
    from faast.distributed import Dist


#: Folds of ``fit --cv`` without a number.
DEFAULT_FOLDS = 5

#: What ``forget --help`` says of how exact forgetting is.
FORGET_EXACTLY = (
    ", exactly: each example to forget is checked against the learned ones (features and label: "
    "within rounding while the classifier holds at most 2·D examples, D its features + 1 with the "
    "intercept; beyond, bit for bit against its record of examples learned). A classifier saved "
    "before that record (2026-12-06) can check only the class counts beyond 2·D, and forget warns"
)


def named_classes(labels: Any, classes: np.ndarray) -> list[Any]:
    """For each label read from a file (None: unlabelled), the class of ``classes`` it names, or
    None. Compared as written: a file of only "1" reads as integers, the classes of an earlier file
    of "1" and "x" are strings, and "1" is among them all the same; "True" names the class True, not
    any non-empty string; with numeric classes a label of the same value also names its class ("1"
    the class 1.0). A text naming no class as written names the one class it equals in Unicode's
    composed form (NFC): a class folder's name unzipped from a macOS archive, decomposed (NFD: "u"
    then a combining diaeresis), names the class "ü" written as one character, and the other way
    round (classes of one name written both ways stay apart, each named as written)."""
    by_text = {str(c): c for c in classes.tolist()}
    composed: dict[str, list[Any]] = {}
    for c in classes.tolist():
        composed.setdefault(_nfc(str(c)), []).append(c)
    by_value = {float(c): c for c in classes.tolist()} if classes.dtype.kind in "iuf" else {}
    out: list[Any] = []
    for label in list(labels):
        text = None if label is None else str(label)
        if text is None or text in by_text:
            out.append(None if text is None else by_text[text])
            continue
        same = composed.get(_nfc(text), [])
        if len(same) == 1:
            out.append(same[0])
            continue
        try:
            out.append(by_value.get(float(text)))
        except ValueError:
            out.append(None)
    return out


def _nfc(text: str) -> str:
    """``text`` in Unicode's composed normal form (NFC), as most systems but macOS write names."""
    return unicodedata.normalize("NFC", text)


def as_classes(labels: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """``labels`` (n,) read from a file, as the classifier's ``classes`` they name
    (:func:`named_classes`), of the classes' dtype; a label naming no class is a ``ValueError``."""
    named = named_classes(labels, classes)
    unknown = {str(label) for label, c in zip(labels.tolist(), named, strict=True) if c is None}
    if unknown:
        raise ValueError(
            f"label(s) {sorted(unknown)[:5]} are not among the classifier's classes "
            f"{classes.tolist()[:10]}; fit anew to add classes"
        )
    return np.asarray(named, dtype=classes.dtype)


def register(sub: argparse._SubParsersAction) -> None:
    from faast.cli import plain_text

    p = sub.add_parser(
        "classify",
        help="fit / partial-fit / forget / predict a FaastClassifier on an image folder, a text file or a "
        "features file",
        description=plain_text(__doc__.split("\n\n", 1)[1]) if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    for name, help_text in (
        ("fit", "learn a new classifier from labelled DATA (replaces --model)"),
        ("partial-fit", "add labelled DATA to a saved classifier"),
        ("forget", "remove labelled DATA learned earlier from a saved classifier (exactly*)"),
        ("predict", "predict DATA with a saved classifier; write a CSV"),
    ):
        about = help_text.replace(" (exactly*)", FORGET_EXACTLY)
        a = actions.add_parser(name, help=help_text, description=about)
        a.add_argument(
            "data",
            help="image folder (a sub-folder per class; to predict, images beside them too; not holding "
            "--model), text file (.tsv/.txt: text<TAB>label; .jsonl/.json: input, output; .csv with an "
            "'input' column of texts or --text-column: one whose 'input' column holds only numbers is "
            "refused, rename that column to read the file as features) or features file "
            "(.safetensors/.npy/.npz/.csv)",
        )
        a.add_argument("--model", required=True, help="directory of the saved classifier")
        f = a.add_argument_group("features and text files")
        f.add_argument("--labels", default=None, help="labels file (.npy, or text: one label per line)")
        f.add_argument(
            "--label-column",
            default=None,
            help="the labels' CSV column (features: default 'label'), or the labels' column or JSONL field "
            "in a text file (default 'output')",
        )
        f.add_argument(
            "--text-column",
            default=None,
            help="text files: the texts' column (a TSV or CSV header) or JSONL field (default 'input'); "
            "a .csv with it holds texts",
        )
        f.add_argument(
            "--id-column", default=None, help="CSV column or JSONL field naming the rows in predictions"
        )
        e = a.add_argument_group("image folders and text files")
        e.add_argument(
            "--encoder",
            default=None,
            help=(
                "images: efficientnet-lite0 (default), pixels, clip:RN50/openai; texts: minilm (default), "
                "a local from_pretrained folder of a BERT-style sentence encoder, or its Hugging Face Hub id"
                if name == "fit"
                else "the encoder the classifier was fitted with, where it is not found as fit recorded it: "
                "images: its name as given to fit (efficientnet-lite0, pixels, clip:RN50/openai), not a "
                "folder (for assets moved elsewhere, give --cache-dir); texts: the sentence encoder's "
                "folder where it lies now, or its Hugging Face Hub id; it must be the same encoder (the "
                "same weights)"
            ),
        )
        if name == "fit":
            e.add_argument(
                "--resolution", type=int, default=None,
                help="images: encoder input size in pixels (default 64)",
            )  # fmt: skip
            c = a.add_argument_group("classifier")
            c.add_argument(
                "--cut",
                default="ridge=auto",
                help="ridge=auto (default: exact leave-one-out ridge, GCV ridge beyond 2d examples), auto "
                "(GCV truncation beyond), gcv, alpha=0.8, a relative tau, ridge=1e-2, ridge=gcv",
            )
            c.add_argument("--normalize", action="store_true", help="L2-normalise features first")
            c.add_argument(
                "--intercept", action=argparse.BooleanOptionalAction, default=True,
                help="learn a per-class intercept (a constant feature; the default): --no-intercept "
                "fits scores through the origin",
            )  # fmt: skip
            c.add_argument(
                "--intercept-scaling", type=float, default=1.0, metavar="S",
                help="value of the intercept's constant feature (default 1, for unit-norm features; "
                "near the features' row norm otherwise: fit warns only when they are some 10^7 "
                "apart, where float64 cannot hold both)",
            )  # fmt: skip
            c.add_argument(
                "--center-features", action="store_true",
                help="solve with the features centred on their mean, so the cut shrinks the weights "
                "around it instead of through the origin (needs the intercept)",
            )  # fmt: skip
            c.add_argument(
                "--random-features", type=int, default=None, metavar="M",
                help="expand features by a seeded random projection to M dims + ReLU before the solve "
                "(more accurate on large data, much slower to fit; see docs/classifier.md)",
            )  # fmt: skip
            c.add_argument(
                "--loss", choices=["squared", "logistic"], default="squared",
                help="logistic: quasi-Newton steps on the logistic loss from the solve (more accurate "
                "on large data, a few passes slower; partial-fit and forget then refuse the model)",
            )  # fmt: skip
            c.add_argument(
                "--C", dest="inverse_penalty", default="auto", metavar="C",
                help="inverse penalty of --loss logistic, or auto (default: chosen on a held-out tenth)",
            )  # fmt: skip
            c.add_argument(
                "--logit-scale", default="auto", metavar="T",
                help="temperature of --proba for --loss squared, softmax(T x scores), or auto (default: "
                "from the training examples' exact leave-one-out scores)",
            )  # fmt: skip
            c.add_argument(
                "--cv", type=int, nargs="?", const=DEFAULT_FOLDS, default=None, metavar="K",
                help=f"also report the accuracy of stratified K-fold cross-validation on DATA (default K "
                f"{DEFAULT_FOLDS}; K more fits, after the classifier is saved; kept in its metadata)",
            )  # fmt: skip
            c.add_argument(
                "--baselines", action="store_true",
                help="with --cv: also cross-validate scikit-learn's RidgeClassifier and LogisticRegression "
                "on the same folds",
            )  # fmt: skip
            c.add_argument(
                "--class-weight", choices=["balanced"], default=None,
                help="balanced: weigh each class n / (classes x its count), for imbalanced data "
                "(partial-fit and forget then refuse the model)",
            )  # fmt: skip
        g = a.add_argument_group("encoding")
        g.add_argument("--device", default="cpu")
        g.add_argument(
            "--threads", type=int, default=None, help="CPU threads for torch and BLAS (default: all)"
        )
        g.add_argument(
            "--batch-size",
            type=int,
            default=None,
            help="images or texts per encoder batch (default 128; images for partial-fit and forget of a "
            "classifier fitted already: the batch size it was fitted with, as an image's features depend "
            "on it; predict takes another)",
        )
        g.add_argument("--cache-dir", default=None, help=CACHE_DIR_HELP)
        g.add_argument("--no-feature-cache", action="store_true", help="re-encode instead of using the cache")
        if name == "predict":
            o = a.add_argument_group("output")
            o.add_argument(
                "--out",
                required=True,
                help="CSV of predictions (id[, input], predicted[, label][, p_<class>...])",
            )
            o.add_argument("--proba", action="store_true", help="also write predict_proba per class")
        a.set_defaults(func=run)
    p.set_defaults(func=lambda args: p.print_help() or 2)


def _check_torchrun_options(args: argparse.Namespace, dist: Dist) -> None:
    """Refuse the ``fit`` options that need every example in one process when running under
    ``torchrun`` with several processes (``dist.active``): ``--loss logistic`` (its quasi-Newton
    steps read every design row) and ``--class-weight balanced`` (its weights count every label)."""
    if not dist.active:
        return
    for flag, given in (
        ("--loss logistic", args.loss == "logistic"),
        ("--class-weight balanced", args.class_weight),
    ):
        if given:
            raise ValueError(
                f"{flag} is not supported under torchrun (distributed, {dist.world_size} processes): "
                "run `faast classify fit` as one process for it"
            )


def _check_sizes(args: argparse.Namespace) -> None:
    """Refuse ``--batch-size``, and ``fit``'s ``--intercept-scaling`` and ``--random-features``, out
    of their range, naming the flag, before any data is read (``--batch-size 0`` was refused only
    once every image had been decoded)."""
    if args.batch_size is not None and args.batch_size < 1:
        raise ValueError(f"--batch-size: expected a positive whole number, got {args.batch_size}")
    scaling = getattr(args, "intercept_scaling", None)
    if scaling is not None and not (scaling > 0 and math.isfinite(scaling)):
        raise ValueError(
            "--intercept-scaling (the classifier's intercept_scaling): expected a positive finite number, "
            f"got {scaling}"
        )
    expand = getattr(args, "random_features", None)
    if expand is not None and expand < 1:
        raise ValueError(
            "--random-features (the classifier's random_features): expected a positive whole number of "
            f"dimensions, got {expand}"
        )


def _auto_or_positive(text: str, flag: str) -> float | str:
    """A flag's value: "auto" or a positive number, with the flag named when it is neither."""
    if text == "auto":
        return text
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise ValueError(f"{flag}: expected a positive number or auto, got {text!r}")
    return value


# ----------------------------------------------------------------- actions
def run(args: argparse.Namespace) -> int:
    from faast import distributed
    from faast.classifier import FaastClassifier
    from faast.classifier_io import check_classifier_folder, check_classifier_writable, save_classifier
    from faast.cli.classify_data import need_labels, read_data, two_classes

    dist = distributed.init()
    # under torchrun the processes first agree on the action, before any other collective: `fit` on
    # one and `partial-fit` on another would otherwise wait in different collectives until the timeout
    dist.check_same({"command": f"faast classify {args.action}"})
    _check_sizes(args)  # before any data is read
    if args.action == "fit":
        from faast.solver import Cut

        params = _cut_params(Cut.parse(args.cut))  # a bad --cut fails before any data is read
        check_classifier_folder(args.model)  # so does a --model that cannot be a folder
        if dist.is_main:  # or cannot be written (rank 0 alone saves), before any encoder is loaded
            check_classifier_writable(args.model)
        if args.cv is not None and args.cv < 2:
            raise ValueError(f"--cv needs at least 2 folds, got {args.cv}")
        if args.baselines and args.cv is None:
            raise ValueError("--baselines compares on cross-validation folds: add --cv")
        _check_torchrun_options(args, dist)  # before any data is read or encoded
        feats, labels, _, _, source = read_data(args, None, dist)
        # read_data checked them before encoding (a features CSV's columns name a label-like one)
        labels = two_classes(need_labels(labels, args, source.get("columns")), args)
        start = time.perf_counter()
        shard = dist.active  # each process fits its block; statistics (and kept rows) are summed
        clf = FaastClassifier(
            **params,
            normalize_keys=args.normalize,
            fit_intercept=args.intercept,
            intercept_scaling=args.intercept_scaling,
            center_features=args.center_features,
            random_features=args.random_features,
            distributed=shard,
            loss=args.loss,
            C=_auto_or_positive(args.inverse_penalty, "--C"),
            logit_scale=_auto_or_positive(args.logit_scale, "--logit-scale"),
            class_weight=args.class_weight,
        )
        clf.fit(*_block(dist, feats, labels, shard))
        fit_s = time.perf_counter() - start
        clf.distributed = False  # saved as a plain classifier
        saved = None
        if dist.is_main:  # rank 0 alone saves, holding the folder's lock for the save alone
            where = f" on {dist.world_size} processes" if shard else ""
            # everything the summary needs is computed first: the save is the last step of the work
            line = _summary(
                clf, f"fitted on {len(labels)} examples{where} in {fit_s * 1e3:.1f} ms", args.model
            )
            if args.cv is None:
                save_classifier(clf, args.model, {"source": source})
            else:  # --cv's second save checks that the folder still holds this one
                saved = _save_versioned(clf, args.model, {"source": source})
            print(line)
        dist.barrier()  # the classifier is saved before any process can look for it
        if args.cv is not None and dist.is_main:  # rank 0 alone, the others done: no collective waits
            _cross_validate(clf, feats, labels, args, {"source": source}, saved)
        return 0
    return _use_saved(args, dist)


def _save_versioned(clf: Any, model: str, meta: dict[str, Any]) -> str | None:
    """Save ``clf`` to the folder ``model`` and return the version of that save
    (:func:`faast.classifier_io.classifier_version`, read under the same exclusive lock)."""
    from faast.classifier_io import classifier_version, locked_save_folder, save_classifier

    # made to lock it (the save would make it), and removed again when this first save fails
    with locked_save_folder(model):  # re-entered by the save
        save_classifier(clf, model, meta)
        return classifier_version(model)


def _use_saved(args: argparse.Namespace, dist: Dist) -> int:
    """``partial-fit``, ``forget`` or ``predict`` with the classifier saved at ``--model``.

    The classifier is loaded under the folder's shared lock, held for the reading alone (every
    rank under torchrun, as predict: never across a collective). ``partial-fit`` and ``forget``
    then work without a lock, and rank 0 saves under the exclusive lock, refused with one line
    when another command saved the folder since the load (``save_classifier(expect=)``: its save
    would be lost); a ``predict`` meanwhile reads the classifier as saved before, at once."""
    from faast.classifier_io import (
        ClassifierChangedError,
        LevelNotRecordedWarning,
        check_classifier_writable,
        load_classifier_version,
        save_classifier,
    )
    from faast.cli.classify_data import need_labels, read_data

    changes = args.action != "predict"
    if changes and dist.active:  # every rank has ended the command before (--cv: rank 0 saves last)
        dist.barrier()
    with warnings.catch_warnings():
        if changes:  # they choose the level again by the rule, and save it: nothing differs from before
            warnings.simplefilter("ignore", LevelNotRecordedWarning)
        clf, meta, version = load_classifier_version(args.model)
    if changes and dist.active and len(set(dist.all_gather_json(version))) > 1:
        raise ClassifierChangedError.of(args.model)  # a save between two ranks' loads: every rank says so
    source = meta.get("source")
    if not isinstance(source, dict):
        raise ValueError(f"{args.model}: the saved classifier does not say what its features are")
    if args.action == "predict" and dist.is_main:
        from faast.io import check_writable

        # before the images are encoded; every file the job reads, the labels too
        check_writable(args.out, inputs=_inputs(args))
    else:  # partial-fit, forget: what the classifier refuses to change, before any data is read
        _check_changeable(clf, args.action)
        if dist.is_main:  # and the folder they save to, before the images are encoded
            check_classifier_writable(args.model)
    feats, labels, ids, texts, here = read_data(args, source, dist)
    _check_width(clf, feats, source, args)
    if dist.is_main:
        _warn_unmatched_columns(source, here, args)
    if args.action in ("partial-fit", "forget"):
        labels = need_labels(labels, args, here.get("columns"))
        labels = as_classes(labels, clf.classes_)
        feats = in_fitted_dtype(clf, feats)
        if args.action == "partial-fit":
            record = clf.__dict__.get("_record")  # what was learned before, to name examples learned again
            before = None if record is None else record.copy()
            clf.distributed = dist.active  # each process adds its block; the statistics are summed
            clf.partial_fit(*_block(dist, feats, labels, clf.distributed))
            clf.distributed = False
            if dist.is_main:
                _warn_learned_again(clf, before, len(labels), args)
        else:  # every process forgets all the examples (the same result everywhere)
            with warnings.catch_warnings():
                if not dist.is_main:  # forget's warning that it cannot verify the examples: said once
                    warnings.filterwarnings("ignore", message=".*no record of the examples learned")
                clf.forget(feats, labels)
        if dist.is_main:
            # the encoder as found now (the same files; --encoder may have named a new place); a
            # cross-validation of fit's examples no longer describes what the classifier holds
            kept = {key: value for key, value in meta.items() if key != "cross_validation"}
            verb = "added" if args.action == "partial-fit" else "forgot"
            # the summary solves (partial_fit defers it): done first, so that the save is the last
            # step of the work, and a command interrupted before it returns has changed nothing
            line = _summary(clf, f"{verb} {len(labels)} examples", args.model)
            save_classifier(clf, args.model, {**kept, "source": here}, expect=version)
            print(line)
        dist.barrier()  # the classifier is saved before any process can look for it
        return 0
    if not dist.is_main:  # every process has the same classifier and data: rank 0 predicts
        return 0
    return _predict(clf, feats, labels, ids, texts, args)


def _check_width(clf: Any, feats: Any, source: dict[str, Any], args: argparse.Namespace) -> None:
    """Refuse DATA whose examples have another number of features than the classifier ``clf`` was
    fitted on, naming DATA, both widths and what the classifier was fitted on (``source``); the
    classifier's own error named neither the file nor the width to give."""
    width, fitted = int(feats.shape[1]), int(clf.n_features_in_)
    if width == fitted:
        return
    kind = source.get("input")
    if kind == "features":
        named = source.get("columns")
        was = (
            f"the CSV columns {', '.join(named[:4])}{', ...' if len(named) > 4 else ''}"
            if named
            else "a features file"
        )
        hint = f"give the same {fitted} feature columns, in the order it learned them"
    else:
        was = f"{kind} encoded by {source.get('encoder')}"
        hint = "give data of the same kind, encoded by the same encoder"
    raise ValueError(
        f"{args.data}: {width} features per example, but the classifier at {args.model} expects {fitted} "
        f"(it was fitted on {was}); {hint}"
    )


def _warn_unmatched_columns(source: dict[str, Any], here: dict[str, Any], args: argparse.Namespace) -> None:
    """Warn when DATA is a CSV of named feature columns (``here``) and the classifier records no
    column names (``source``): fitted on features without names (a .npy, .npz or .safetensors), or
    on a CSV by a faast before 2026-12-05, which did not record them (nothing in the folder tells
    the two apart). Its columns are taken in the file's order, which nothing can check (a
    classifier fitted on a CSV since matches them by name)."""
    columns = here.get("columns")
    if source.get("input") != "features" or source.get("columns") or not columns:
        return
    shown = ", ".join(columns[:5]) + (", ..." if len(columns) > 5 else "")
    warnings.warn(
        f"{args.data}: its feature columns ({shown}) are taken in the file's order: the classifier at "
        f"{args.model} records no column names: it was fitted on a CSV by a faast before 2026-12-05, "
        "which did not record them, or on features without column names (not a CSV), so they cannot be "
        "matched by name; check that they are in the order it learned",
        UserWarning,
        stacklevel=3,
    )


def _check_changeable(clf: Any, action: str) -> None:
    """Refuse ``partial-fit`` and ``forget`` on a classifier that refuses to change its examples
    (``class_weight="balanced"``, ``loss="logistic"``), with the error its ``partial_fit`` or
    ``forget`` raises, before any data is read (the images were encoded, the texts embedded, first)."""
    what = "partial_fit" if action == "partial-fit" else "forget"
    examples = (
        "every example, those learned and the new ones" if what == "partial_fit" else "the examples to keep"
    )
    # what the Python errors advise (set loss="squared", a dict of weights) has no flag here: the
    # command to run instead
    refit = f"run `faast classify fit` again on {examples}"
    clf._check_not_refined(what, f"{refit} (with --loss logistic) instead")
    clf._check_fixed_class_weight(what, f"{refit} (with --class-weight balanced) instead")


def _inputs(args: argparse.Namespace) -> tuple[str | None, ...]:
    """The files and folders a ``predict`` reads, which its ``--out`` must neither be nor lie in:
    DATA, the saved classifier, the ``--labels`` file and an ``--encoder`` folder or file (a
    name such as ``minilm`` that is no path is left out)."""
    from pathlib import Path

    encoder = getattr(args, "encoder", None)
    return (args.data, args.model, args.labels, encoder if encoder and Path(encoder).exists() else None)


def _warn_learned_again(clf: Any, before: Any, given: int, args: argparse.Namespace) -> None:
    """Warn when ``partial-fit`` added examples that ``before`` — the classifier's record of
    examples learned (:mod:`faast.classifier_record`) as it was before the call, None when it has
    none — already held: they now count twice (deliberate, or the re-run of an interrupted
    ``partial-fit`` whose save had gone through). ``given``: how many examples DATA held."""
    import shlex

    after = clf.__dict__.get("_record")
    again = 0 if before is None or after is None else after.learned_again(before)
    if again:
        how = (
            f"`faast classify forget` with the same DATA and options (e.g. `faast classify forget "
            f"{shlex.quote(str(args.data))} --model {shlex.quote(str(args.model))}`)"
            if again == given
            else "`faast classify forget` on a file of just those examples (the others were new)"
        )
        warnings.warn(
            f"{again} of the {given} examples of {args.data} were learned before (the classifier's record "
            "of examples holds them) and are counted again; if an interrupted partial-fit was re-run, it "
            f"had already been applied: forget them once with {how}",
            UserWarning,
            stacklevel=2,
        )


def in_fitted_dtype(clf: Any, feats: Any) -> Any:
    """``feats`` (n, d) in the dtype of the features ``clf`` learned from (its statistics record
    it), so that ``partial-fit`` and ``forget`` take any file: a classifier fitted on float32
    features (a ``.npy``, the encoders' features) from a CSV's float64 numbers, and the other way
    round. The values learned in float32 are read back exactly from a CSV that wrote them."""
    import torch

    dtype = getattr(clf.memory_.stats, "input_dtype", None)
    if dtype is None or not isinstance(feats, torch.Tensor) or feats.dtype == dtype:
        return feats
    return feats.to(dtype)


def _cross_validate(
    clf: Any, feats: Any, labels: np.ndarray, args: argparse.Namespace, meta: dict, saved: str | None
) -> None:
    """Print ``--cv``'s cross-validated accuracy of fresh classifiers of ``clf``'s settings (the
    one fitted on all of DATA, already saved: ``saved``, its version) and save ``clf`` again with
    it in its metadata, unless another command saved the folder since (no lock is held meanwhile):
    then the folder keeps that command's save, and an error says the cross-validation was not
    saved."""
    from faast.classifier_io import ClassifierChangedError, save_classifier
    from faast.eval.cross_validation import (
        cross_validate,
        cross_validate_baselines,
        describe,
        describe_baseline,
    )

    result = cross_validate(clf, feats, labels, args.cv)  # clones: clf itself is not refitted
    print(f"[faast] {describe(result)}")
    if args.baselines:  # one that cannot be fitted is skipped, saying why
        result["baselines"] = cross_validate_baselines(feats, labels, args.cv)
        for name, other in result["baselines"].items():
            print(f"[faast]   {describe_baseline(name, other)}")
    try:
        save_classifier(clf, args.model, {**meta, "cross_validation": result}, expect=saved)
    except ClassifierChangedError:
        outcome = "the cross-validation printed above was not saved (the folder keeps that command's save)"
        raise ClassifierChangedError.of(args.model, outcome) from None


def _block(dist: Dist, feats: Any, labels: np.ndarray, shard: bool) -> tuple[Any, np.ndarray]:
    """This process's contiguous block of the (features (n, d), labels (n,)) rows (may be empty),
    or all of them when not ``shard``."""
    rows = dist.shard_range(len(labels)) if shard else range(len(labels))
    return feats[rows.start : rows.stop], labels[rows.start : rows.stop]


def _cut_params(cut: Any) -> dict[str, Any]:
    """FaastClassifier's cut parameters for a parsed ``--cut`` (a clear error for a kind it does
    not take)."""
    if cut.kind in ("gcv", "auto"):
        return {"tau": cut.kind}
    if cut.kind == "fixed":
        return {"tau": cut.tau}
    if cut.kind == "power":
        return {"alpha": cut.alpha, "c": cut.c}
    if cut.kind in ("ridge-gcv", "ridge-auto"):
        return {"ridge": cut.kind.removeprefix("ridge-")}
    if cut.kind == "ridge":
        return {"ridge": cut.ridge}
    raise ValueError(
        f"--cut {cut}: the classifier takes auto, gcv, alpha=A, a relative tau, "
        "or ridge=R, ridge=gcv, ridge=auto"
    )


def _summary(clf: Any, what: str, model: str) -> str:
    counts = ", ".join(
        f"{c}: {n}" for c, n in zip(clf.classes_.tolist()[:10], clf.class_count_, strict=False)
    )
    more = " …" if len(clf.classes_) > 10 else ""
    return (
        f"[faast] {what}; {len(clf.classes_)} classes ({counts}{more}), {clf.n_features_in_} features, "
        f"{_solved_by(clf)}; saved to {model}"
    )


def _solved_by(clf: Any) -> str:
    """What the fit used: the inverse penalty C of ``loss="logistic"`` (the one it chose, or the
    one given), else the cut and the ridge or rank it resolved to."""
    if getattr(clf, "loss", "squared") == "logistic" and clf.C_ is not None:
        how = "auto" if clf.C == "auto" else "given"
        return f"loss logistic → C={clf.C_:.3g} ({how}, {clf.n_iter_} step{'s' if clf.n_iter_ != 1 else ''})"
    cut = f"ridge ρ={clf.ridge_:.3g}" if clf.ridge_ is not None else f"rank {clf.rank_} (τ={clf.tau_:.3g})"
    return f"cut {clf.cut_} → {cut}"


def _predict(
    clf: Any,
    feats: Any,
    labels: np.ndarray | None,
    ids: list[str],
    texts: list[str] | None,
    args: argparse.Namespace,
) -> int:
    """Write the predictions CSV (id[, input: the texts of a text file], predicted[, label: empty
    where a line has none][, p_<class>...]) and print the accuracy over the labelled rows whose
    class the classifier knows."""
    from faast.io import atomic_write

    pred = clf.predict(feats)
    proba = clf.predict_proba(feats) if args.proba else None
    header = ["id"] + (["input"] if texts is not None else []) + ["predicted"]
    header += ["label"] if labels is not None else []
    if proba is not None:
        header += [f"p_{c}" for c in clf.classes_.tolist()]

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            out = csv.writer(fh)
            out.writerow(header)
            for i, row_id in enumerate(ids):
                row = [row_id] + ([texts[i]] if texts is not None else []) + [pred[i]]
                row += ["" if labels[i] is None else labels[i]] if labels is not None else []
                if proba is not None:
                    row += [f"{p:.6g}" for p in proba[i].tolist()]
                out.writerow(row)

    atomic_write(args.out, write)
    line = f"[faast] predicted {len(pred)} examples → {args.out}"
    if labels is not None:
        from faast.eval.text_metrics import label_accuracy

        classes = clf.classes_.astype(str)
        named = named_classes(labels, clf.classes_)  # "1" names the class 1.0, "False" False
        known = np.array([c is not None for c in named], dtype=bool)
        if known.any():
            truth = [str(c) for c in named if c is not None]
            got = label_accuracy(pred.astype(str)[known].tolist(), truth, classes)
            line += (
                f"; accuracy {100 * got['accuracy']:.2f} %, balanced accuracy "
                f"{100 * got['balanced_accuracy']:.2f} %, macro-F1 {100 * got['macro_f1']:.2f} % on the "
                f"{int(known.sum())} with a known class"
            )
        else:
            line += "; none has a class the classifier knows, so no accuracy"
    print(line)
    return 0
