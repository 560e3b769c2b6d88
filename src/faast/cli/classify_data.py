"""``faast classify``'s DATA: an image folder or a text file encoded by a frozen encoder
through the feature cache, or a features file — read into features, labels and row names, and
checked against the encoder and kind of data a saved classifier was fitted on."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from faast.distributed import Dist


#: Input size of an image encoder unless ``fit --resolution`` says otherwise.
DEFAULT_RESOLUTION = 64


def _image_only(args: argparse.Namespace, kind: str) -> None:
    """Refuse ``fit --resolution`` for DATA that is not an image folder (it would do nothing)."""
    if getattr(args, "resolution", None) is not None:
        raise ValueError(f"--resolution is for image folders; {args.data} is {kind}")


def _text_only(args: argparse.Namespace, kind: str) -> None:
    """Refuse ``--text-column`` for DATA that is not a text file (it would do nothing)."""
    if getattr(args, "text_column", None) is not None:
        raise ValueError(f"--text-column is for text files; {args.data} is {kind}")


def _not_for_images(args: argparse.Namespace) -> None:
    """Refuse ``--labels``, ``--label-column`` and ``--id-column`` for an image folder (they would
    do nothing): its sub-folders name the classes and its images' paths name the rows."""
    classes = "classes are its sub-folders"
    for flag, value, used, why in (
        ("--labels", args.labels, "features files", classes),
        ("--label-column", args.label_column, "features and text files", classes),
        ("--id-column", args.id_column, "features and text files", "rows are named by the images' paths"),
    ):
        if value is not None:
            raise ValueError(f"{flag} is for {used}; {args.data} is an image folder, whose {why}")


def _encoder(name: str, resolution: int | None, args: argparse.Namespace) -> Any:
    """The image encoder ``name`` at ``resolution`` pixels (None: a CLIP model's own) on ``--device``."""
    from faast.encoders import build_encoder

    kwargs = {"cache": args.cache_dir} if name == "efficientnet-lite0" else {}
    return build_encoder(name, resolution=resolution, device=args.device, **kwargs)


def _saved_image_encoder(source: dict[str, Any]) -> str:
    """The name to build the image encoder a classifier was fitted with (``source``, its saved
    description) by: the one saved, but for a classifier fitted with CLIP before the name given
    to fit was saved (it saved ``clip-RN50-openai``, which no encoder is built by): its model and
    weights, read from its identity (``open_clip:RN50/openai``)."""
    name = str(source["encoder"])
    weights = str(dict(source.get("encoder_identity") or {}).get("weights_sha256", ""))
    if name.startswith("clip-") and weights.startswith("open_clip:"):
        return "clip:" + weights.removeprefix("open_clip:")
    return name


def _same_data(dist: Dist, args: argparse.Namespace, *read: Any) -> None:
    """Under ``torchrun``, refuse on every process data that differs between the processes (a
    digest of what this process ``read``: a features file's rows and labels, an image folder's
    listing and classes, a text file's texts and labels) and options that differ
    (:func:`~faast.cli.lm_cmd.check_same_everywhere`), before anything is encoded or learned:
    each process reads the data itself, and would learn its block of another file."""
    if not dist.active:
        return
    from faast.cli.lm_cmd import check_same_everywhere
    from faast.distributed import digest

    labels = getattr(args, "labels", None)  # a features file's labels file, read with it
    name, path = ("DATA", args.data) if labels is None else ("DATA and --labels", f"{args.data}, {labels}")
    check_same_everywhere(dist, args, {name: (path, digest(*read))}, paths=("labels",))


def read_data(
    args: argparse.Namespace, source: dict[str, Any] | None, dist: Dist
) -> tuple[Any, np.ndarray | None, list[str], list[str] | None, dict]:
    """(features (n, d) tensor, labels or None, row ids, the texts of a text file or None,
    description of the source); under ``torchrun`` images and texts are encoded in parallel and
    every process gets all the features."""
    from faast.lm.examples import JSONL_SUFFIXES, TSV_SUFFIXES

    data = Path(args.data)
    if not data.exists():  # named before any check of the kind of data the classifier takes
        raise FileNotFoundError(f"no such file or folder: {data}")
    if not data.is_dir() and data.suffix.lower() in TSV_SUFFIXES + JSONL_SUFFIXES:
        return _read_texts(args, source, dist)
    if data.suffix.lower() == ".csv" and data.is_file() and _csv_of_texts(data, args):
        return _read_texts(args, source, dist)
    if data.is_dir():
        from faast.assets.core import cache_dir
        from faast.data.image_folder import list_image_folder, load_image_folder
        from faast.encoders import encode_dataset

        _check_input(args, source, "images")
        _text_only(args, "an image folder")
        _not_for_images(args)
        _model_outside(args, data)
        # listed once (its warnings given once), before the encoder loads or an image is decoded; to
        # predict, the images beside class folders too (unlabelled, as in a flat folder)
        listing = list_image_folder(data, loose=args.action == "predict")
        images, classes, indices = listing
        _same_data(
            dist, args, [Path(os.path.relpath(p, data)).as_posix() for p in images], classes, list(indices)
        )
        if args.action == "fit":
            two_classes(need_labels(_folder_labels(listing), args), args)
        name = args.encoder or (_saved_image_encoder(source) if source else "efficientnet-lite0")
        if source:  # predict, partial-fit, forget: the resolution the classifier was fitted at
            resolution = int(source["resolution"])
        elif name.startswith("clip:"):  # the model's own input size, checked below
            resolution = None
        else:  # --resolution 0 is refused by the encoder, not read as the default
            resolution = DEFAULT_RESOLUTION if args.resolution is None else args.resolution
        encoder = _encoder(name, resolution, args)
        asked = None if source else getattr(args, "resolution", None)
        if asked is not None and asked != encoder.resolution:
            raise ValueError(
                f"--resolution {asked}: {name} encodes images at its own input size, "
                f"{encoder.resolution} px (its positional embeddings are learned for it); leave "
                "--resolution out"
            )
        _check_same_encoder(encoder, name, source)
        batch_size = _image_batch_size(encoder, args, source, dist)
        dataset, paths, _ = load_image_folder(data, encoder.resolution, listing=listing)
        cache = None if args.no_feature_cache else cache_dir(args.cache_dir) / "features"
        feats = encode_dataset(
            encoder,
            dataset,
            cache,
            batch_size=batch_size,
            progress=sys.stderr.isatty(),
            distributed=dist.active,
        )
        labels = _folder_labels(listing)
        desc = {
            "input": "images",
            "encoder": name,  # as build_encoder takes it (a CLIP encoder's .name is its cache folder)
            "resolution": encoder.resolution,
            "encoder_identity": encoder.identity(),
        }
        if encoder.batch_dependent:  # the batches its features were encoded in, for the later commands
            desc["batch_size"] = batch_size
        return feats, labels, paths, None, desc
    from faast.data.features_file import read_features

    _check_input(args, source, "features")
    _image_only(args, "a features file")
    _text_only(args, "a features file")
    if args.encoder is not None:
        raise ValueError("--encoder is for image folders and text files; a features file is encoded already")
    label_column = args.label_column
    if label_column is None and source and data.suffix.lower() == ".csv":
        label_column = source.get("label_column")  # the one the classifier was fitted with
    table = read_features(data, labels_path=args.labels, label_column=label_column, id_column=args.id_column)
    _same_data(dist, args, table.features, table.labels, table.ids, table.columns)
    feats, columns = table.features, table.columns
    fitted = source.get("columns") if source else None
    if columns is not None and fitted is not None:
        feats, columns = in_fitted_order(feats, columns, fitted, data)
    desc = {"input": "features", **({"columns": columns} if columns else {})}
    if label_column is not None and columns is not None:  # a CSV's: later commands read it as labels
        desc["label_column"] = label_column
    return feats, table.labels, table.ids, None, desc


def _folder_labels(listing: tuple[list[Path], list[str] | None, list[int]]) -> np.ndarray | None:
    """The labels (n,) of an image folder's listing (:func:`~faast.data.image_folder.list_image_folder`):
    each image's class folder, None for an image beside them (an object array then), or None for a
    flat folder of unlabelled images."""
    from faast.data.image_folder import NO_CLASS

    _, classes, index = listing
    if classes is None:
        return None
    if NO_CLASS not in index:
        return np.asarray(classes)[np.asarray(index, dtype=np.int64)]
    return np.asarray([None if i == NO_CLASS else classes[i] for i in index], dtype=object)


def _model_outside(args: argparse.Namespace, data: Path) -> None:
    """Refuse a ``--model`` folder that is the image folder DATA or lies inside it (before anything
    is encoded): the classifier's folder would be listed as data (directly in DATA, a class folder
    without images, and every later command on DATA would fail)."""
    model, folder = Path(args.model).resolve(), data.resolve()
    if model == folder or folder in model.parents:
        how = "save the classifier" if args.action == "fit" else "move the classifier's folder"
        raise ValueError(
            f"--model {args.model} lies inside the image folder {args.data}: the classifier's folder would "
            f"be listed as part of the data (directly in {args.data}, as a class folder without images, "
            f"which every later command on it refuses); {how} outside the image folder, e.g. --model "
            f"{folder.parent / (folder.name + '-model')}"
        )


def in_fitted_order(
    feats: torch.Tensor, columns: list[str], fitted: list[str], data: Path
) -> tuple[torch.Tensor, list[str]]:
    """A CSV's features (n, d) with named ``columns``, in the order of the ``fitted`` columns a
    classifier learned from (the same names in another order are reordered; other names are a
    ``ValueError`` naming them: a spreadsheet's columns moved or renamed would otherwise be read
    as the wrong features)."""
    if columns == fitted:
        return feats, columns
    if sorted(columns) == sorted(fitted) and len(set(columns)) == len(columns):
        where = {name: i for i, name in enumerate(columns)}
        return feats[:, [where[name] for name in fitted]], list(fitted)
    missing = [c for c in fitted if c not in columns]
    unexpected = [c for c in columns if c not in fitted]
    raise ValueError(
        f"{data}: its feature columns are not the ones the classifier was fitted on: "
        f"missing {missing[:5]}, unexpected {unexpected[:5]} (fitted on {fitted[:8]}"
        f"{', ...' if len(fitted) > 8 else ''})"
    )


def _csv_of_texts(path: Path, args: argparse.Namespace) -> bool:
    """Whether a CSV holds texts to encode (``--text-column`` given, or a header naming the column
    ``input``) rather than features. Read as texts by its ``input`` column alone, one whose
    ``input`` column holds only numbers is refused (a features CSV with a column of that name: it
    would be encoded as texts by the sentence encoder), and columns of numbers besides the texts,
    labels and ids are named in a warning: they are not read."""
    import csv
    import io

    from faast.data.features_file import is_number
    from faast.text_files import csv_delimiter, open_user_text, read_user_text

    if args.text_column is not None:
        return True
    try:
        with open_user_text(path) as fh:  # the header line alone: a features CSV is not read here
            line = fh.readline().rstrip("\r\n")
    except UnicodeDecodeError:
        read_user_text(path)  # raises the error naming the line
        raise
    delimiter = csv_delimiter(line)
    names = [name.strip() for name in next(csv.reader([line], delimiter=delimiter), [])]
    folded = [name.casefold() for name in names]
    if "input" not in folded:
        return False
    text = read_user_text(path)
    try:
        rows = list(csv.reader(io.StringIO(text), delimiter=delimiter))[1:]
    except csv.Error:
        return True  # the text file reader names the line
    rows = [row for row in rows if len(row) == len(names)]
    inputs = [row[folded.index("input")].strip() for row in rows]
    read = {"input", (args.label_column or "output").casefold(), (args.id_column or "").casefold()}
    numbers = [
        name
        for i, name in enumerate(names)
        if name.casefold() not in read and rows and all(is_number(row[i]) for row in rows)
    ]
    if inputs and all(is_number(cell) for cell in inputs):
        raise ValueError(
            f"{path}: a CSV with an 'input' column is read as a text file (its 'input' column encoded as "
            f"texts by the sentence encoder), but its 'input' column holds only numbers: it looks like a "
            f"features CSV (columns {names[:8]}). To read it as features, rename the 'input' column (e.g. "
            "f_input): every column but the label and id columns is then a feature; to classify these "
            "numbers as texts, pass --text-column input"
        )
    if numbers:
        warnings.warn(
            f"{path}: read as a text file (it has an 'input' column: its texts are encoded), and its "
            f"column(s) of numbers {numbers[:5]} are not read; to learn from numeric columns, write them "
            "to a features CSV without an 'input' column",
            UserWarning,
            stacklevel=3,
        )
    return True


#: What each kind of DATA is called in errors.
_INPUT_KINDS = {"images": "an image folder", "texts": "a text file", "features": "a features file"}


def _check_input(args: argparse.Namespace, source: dict[str, Any] | None, kind: str) -> None:
    """Refuse DATA of another kind than the saved classifier was fitted on (``source``)."""
    if source is not None and source.get("input") != kind:
        fitted = _INPUT_KINDS.get(str(source.get("input")), repr(source.get("input")))
        encoder = f" ({source['encoder']})" if source.get("encoder") else ""
        hint = ""
        if source.get("input") == "images" and Path(args.data).is_file():  # one image: not a folder
            hint = f"; give a folder of images ({args.data} is a file)"
        raise ValueError(
            f"the classifier at {args.model} was fitted on {fitted}{encoder}, not on "
            f"{_INPUT_KINDS[kind]}{hint}"
        )


#: Images or texts per encoder batch unless ``--batch-size`` says otherwise.
DEFAULT_BATCH_SIZE = 128


def _image_batch_size(
    encoder: Any, args: argparse.Namespace, source: dict[str, Any] | None, dist: Dist
) -> int:
    """The batch size to encode images with: for an encoder whose features depend on the batch
    (:attr:`~faast.encoders.base.ImageEncoder.batch_dependent`), the one the classifier was fitted
    with (``source``), so that an image is the example learned bit for bit (the record of examples
    that ``forget`` and ``partial-fit`` check matches bits: another batch size dropped it silently);
    there another ``--batch-size`` is warned of (on the main process) and not used, while
    ``predict``, which checks no record, takes it. Else ``--batch-size`` (default
    :data:`DEFAULT_BATCH_SIZE`)."""
    asked = args.batch_size
    saved = (source or {}).get("batch_size") if encoder.batch_dependent else None
    if saved is None or (asked is not None and args.action == "predict"):
        return DEFAULT_BATCH_SIZE if asked is None else asked
    if asked is not None and asked != int(saved) and dist.is_main:
        import warnings

        warnings.warn(
            f"--batch-size {asked}: the images are encoded in batches of {int(saved)}, as the classifier "
            f"at {args.model} was fitted ({encoder.name}'s features of an image change in their last bits "
            "with the batch size, and its record of examples learned matches them bit for bit)",
            UserWarning,
            stacklevel=2,
        )
    return int(saved)


def _check_same_encoder(
    encoder: Any, name: str, source: dict[str, Any] | None, *, by_name: bool = True
) -> None:
    """Refuse an encoder other than the one the saved classifier was fitted with (without
    ``by_name``, a folder of the same files under another name is the same encoder)."""
    if source is None:
        return
    here, there = dict(encoder.identity()), dict(source["encoder_identity"])
    if not by_name:
        here.pop("encoder", None)
        there.pop("encoder", None)
    if here != there:
        raise ValueError(
            f"encoder {name} here differs from the one the classifier was fitted with "
            f"({source['encoder_identity']}); use the same encoder weights"
        )


def _read_texts(
    args: argparse.Namespace, source: dict[str, Any] | None, dist: Dist
) -> tuple[Any, np.ndarray | None, list[str], list[str], dict]:
    """:func:`read_data` for a text file (:mod:`faast.lm.examples`): the texts encoded by the sentence
    encoder (:class:`~faast.encoders.text.SentenceEncoder`) through the feature cache; labels when
    lines have them (``predict`` reads files without them, or with some: None for the others)."""
    from faast.assets.core import cache_dir
    from faast.cli.lm_cmd import quiet_loading
    from faast.encoders.text import SentenceEncoder
    from faast.encoders.text_cache import encode_texts
    from faast.lm.examples import file_format, read_examples

    _check_input(args, source, "texts")
    _image_only(args, "a text file")
    if args.labels is not None:
        raise ValueError(
            "--labels is for features files; a text file gives each text's label after a tab "
            "(text<TAB>label), in an 'output' field (JSONL) or in the column --label-column names"
        )
    columns = {"input_column": args.text_column or "input", "output_column": args.label_column or "output"}
    options = "--text-column/--label-column"
    examples = read_examples(args.data, outputs=args.action != "predict", options=options, **columns)
    _same_data(dist, args, [[e.input, e.output, e.extra] for e in examples])
    ids = [str(i) for i in range(len(examples))]
    if args.id_column is not None:
        missing = [i for i, e in enumerate(examples) if args.id_column not in e.extra]
        if missing:
            unnamed = file_format(args.data) == "tsv" and not examples[0].extra
            raise ValueError(
                f"{args.data}: --id-column {args.id_column!r}: no such field in example {missing[0] + 1}"
                + (" (a TSV file names its columns only in a header line)" if unnamed else "")
            )
        ids = [str(e.extra[args.id_column]) for e in examples]
    outputs = _stripped_labels([e.output for e in examples], args.action == "predict")
    labels = None  # a file to predict may label some lines only: None marks the others
    if all(o is not None for o in outputs):
        labels = np.asarray(outputs)
    elif any(o is not None for o in outputs):
        labels = np.asarray(outputs, dtype=object)
    if args.action == "fit":  # before the encoder loads
        two_classes(need_labels(labels, args), args)
    name = args.encoder or (source["encoder"] if source else "minilm")
    quiet_loading()  # no transformers progress bar: the command's own lines stay the only ones
    batch_size = DEFAULT_BATCH_SIZE if args.batch_size is None else args.batch_size
    encoder = SentenceEncoder(name, device=args.device, batch_size=batch_size, cache=args.cache_dir)
    _check_same_encoder(encoder, name, source, by_name=False)
    texts = [e.input for e in examples]
    cache = None if args.no_feature_cache else cache_dir(args.cache_dir) / "features"
    feats = encode_texts(encoder, texts, cache, progress=sys.stderr.isatty(), distributed=dist.active)
    where = str(Path(name).resolve()) if Path(name).is_dir() else name  # a folder, minilm or a Hub id
    desc = {"input": "texts", "encoder": where, "encoder_identity": encoder.identity()}
    return feats, labels, ids, texts, desc


def _stripped_labels(outputs: list[str | None], predict: bool) -> list[str | None]:
    """A text file's labels without the spaces around them, as a features CSV's are read: "good",
    "good " and " good" (", " between a CSV's fields, a stray space in a spreadsheet) are one class,
    not three. A label of spaces only is empty: an unlabelled line to ``predict``, and refused by
    :func:`need_labels` (naming the example) to learn or forget."""
    out: list[str | None] = []
    for label in outputs:
        text = None if label is None else label.strip()
        out.append(None if predict and not text else text)
    return out


def two_classes(labels: np.ndarray, args: argparse.Namespace) -> np.ndarray:
    """``labels`` (n,), or a clear error for a ``fit`` on fewer than two classes: the classifier would
    predict that one class whatever it is given, and ``partial-fit`` cannot add a class later.
    :func:`read_data` calls it for an image folder or a text file before anything is encoded."""
    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) == 0:
        raise ValueError(f"{args.data}: no examples to fit")
    if len(classes) < 2:
        raise ValueError(
            f"{args.data}: all {int(counts.sum())} examples are of one class, {classes[0].item()!r}: a "
            "classifier needs examples of at least two classes (an image folder: a sub-folder per class), "
            "and partial-fit cannot add a class later"
        )
    return labels


def need_labels(
    labels: np.ndarray | None, args: argparse.Namespace, columns: list[str] | None = None
) -> np.ndarray:
    """``labels``, or a clear error saying where DATA's labels should have been (``columns``: a
    features CSV's feature columns, one named like labels — ``y``, ``class``, ``target`` — named in
    it), or naming the first empty one."""
    if labels is None:
        from faast.data.features_file import LABEL_COLUMN_NAMES

        named = [c for c in columns or [] if c.strip().casefold() in LABEL_COLUMN_NAMES]
        hint = f"; its column {named[0]!r} looks like the labels: --label-column {named[0]}" if named else ""
        raise ValueError(
            f"{args.data}: no labels (an image folder needs one sub-folder per class; a text file a label "
            f"after a tab or in its output column on every line; a features file a "
            f"'{args.label_column or 'label'}' column, a 'labels' array or --labels){hint}"
        )
    if labels.dtype.kind in "UO":  # an empty label would be learned as a class of its own
        empty = [i for i, label in enumerate(labels.tolist()) if isinstance(label, str) and not label.strip()]
        if empty:
            raise ValueError(
                f"{args.data}: example {empty[0] + 1} has an empty label ({len(empty)} in all, counting the "
                "data rows or lines from 1): give it a label or drop it"
            )
    return labels
