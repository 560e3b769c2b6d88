"""Saving and loading a fitted :class:`~faast.classifier.FaastClassifier` without pickle.

A saved classifier is a directory holding

* ``classifier.json``: the parameters, the cut they resolved to (``cut``: the rule, e.g.
  ``ridge=auto``) and the level its solve chose (``cut_level``: ``{"ridge": ρ}`` or ``{"rank": r,
  "tau": τ}``, in the statistics' units, float64 exactly), the classes, the per-class counts, the
  feature dimension and the key dtype, plus free ``metadata`` (e.g. the encoder that made the
  features). A load solves with the recorded level as a fixed cut
  (:class:`~faast.classifier_solution.ChosenLevel`), so that it predicts as the classifier saved
  even where this faast's rule would choose another level; its next ``partial_fit``, ``forget``,
  ``fit`` or ``solve`` chooses again by the rule. A file written before the level was recorded
  (2026-12-07) has its level chosen again, with a warning when the rule chooses from the data
  (``auto``, ``gcv``: predictions may differ from those before saving). A file without the cut was
  written when all-None cut parameters meant ``tau="auto"``, and loads as such (with the warning
  naming ``ridge="auto"`` for the files of 2026-12-01 that may have meant it);
* ``classifier.safetensors`` (kind ``classifier``): the float64 statistics — G (d, d), B (d, C)
  and the counts, with the rows while every example's is kept (n ≤ 2·D); while n < D the rows
  stand for G and B, which are not written (:meth:`~faast.solver.GramStats.saved_state`: features
  far wider than the examples are many save n·D numbers, not D²) —, the class embeddings / prior
  matrix when given, B′ of ``refine`` and the weights and penalty of ``loss="logistic"``.

Because the statistics are kept (not only W), a loaded classifier can ``partial_fit`` more
examples or ``forget`` some with the decision scores and predictions it would have had unsaved
(while n ≤ 2·D, the rows kept, its ``predict_proba`` temperature too; beyond, the rows the
temperature came from are not saved, so it keeps the saved T where an unsaved one re-finds it from
its sample: the probabilities can differ). Both files are written atomically, each on its own: the
JSON records the SHA-256 digest of the safetensors bytes written with it (``tensors_sha256``), so
that a load refuses a pair from different saves (an interrupted save) or tensors changed since;
files written before the digest load without that check. A callable prior cannot be saved; a load
never unpickles.

A save writes the classifier that predicts: the parameters its last fit or solve used, not those a
``set_params`` changed since. It refuses, before anything is written, what could not be loaded as
that classifier: a ``set_params`` since the fit of a parameter that built the statistics (the
message ``predict`` gives), an invalid parameter value, labels the JSON cannot hold exactly (dates,
bytes: convert them to strings) and ``metadata`` that is not JSON. The column names of a DataFrame
fitted (``feature_names_in_``) are saved, so the loaded classifier checks them as the saved one did.

Several commands at once: a save holds the folder's exclusive lock, a load the shared one, for the
reading or writing alone (:func:`classifier_lock`). A command that loads a classifier, changes it
and saves it (``classify partial-fit``, ``forget``) holds no lock while it works: it loads with
:func:`load_classifier_version` and saves with ``save_classifier(expect=)``, which refuses
(:class:`ClassifierChangedError`, nothing written) when another command saved the folder since.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

from faast._checks import caller_stacklevel
from faast.classifier import ROWS_KEPT, FaastClassifier
from faast.classifier_record import ExampleRecord
from faast.classifier_solution import ChosenLevel
from faast.io import (
    blocker_kind,
    check_json_dict,
    check_not_write_protected,
    check_writable,
    existing_file,
    file_in_the_way,
    file_sha256,
    load_json,
    load_json_with_sha256,
    load_tensors,
    move_into_place,
    os_error_cause,
    save_json,
    save_tensors,
)
from faast.locks import path_identity, path_lock
from faast.memory import InverseMemory
from faast.solver.cut import DATA_CHOSEN, Cut

FORMAT = "faast.classifier"
VERSION = 1
JSON_NAME, TENSORS_NAME = "classifier.json", "classifier.safetensors"
#: A save writes the tensors here first, then the JSON (which records their digest), then moves them
#: over ``TENSORS_NAME``: interrupted at any point, the folder still loads — the previous save, or,
#: after the JSON, the new one from this file (:func:`_saved_tensors`). Before writing here, a save
#: first moves a pending file the JSON in place names over ``TENSORS_NAME``
#: (:func:`_finish_interrupted_save`), so that a second interrupted save cannot lose it.
PENDING_TENSORS_NAME = TENSORS_NAME + ".next"
_PARAMS = (
    "alpha", "c", "tau", "ridge", "n0", "similarity", "normalize_keys", "logit_scale", "random_features",
    "random_state", "refine", "margin", "loss", "C", "max_iter", "fit_intercept", "intercept_scaling",
    "tol", "class_weight", "center_features",
)  # fmt: skip
#: Parameters added after the first layout, with the value that files written before them mean.
_LATER_PARAMS = {
    "random_features": None, "random_state": 0, "refine": 0, "margin": 0.5, "loss": "squared", "C": "auto",
    "max_iter": 10, "fit_intercept": False, "intercept_scaling": 1.0, "tol": 0.0, "class_weight": None,
    "center_features": False,
}  # fmt: skip
#: The key dtypes a classifier's statistics can be built from (``FaastClassifier._keys``).
_INPUT_DTYPES = ("float16", "bfloat16", "float32", "float64")
#: Relative rounding the intercept row of B may carry against the summed weights (``forget``
#: subtracts: its residue scales with what was learned before).
_INTERCEPT_ROUNDING = 1e-6


def check_classifier_folder(path: str | os.PathLike[str]) -> Path:
    """``path`` as a folder a classifier can be saved in (it may not exist yet); a clear error
    when it, or a folder above it, is a file (``mkdir`` said only "File exists")."""
    out = Path(path)
    blocker = file_in_the_way(out)
    if blocker is not None:
        raise ValueError(
            f"{out}: {blocker} is {blocker_kind(blocker)}; a classifier is saved as a folder "
            f"({JSON_NAME} + {TENSORS_NAME})"
        )
    return out


def check_classifier_writable(path: str | os.PathLike[str]) -> Path:
    """``path`` as a folder a classifier can be saved in (:func:`check_classifier_folder`), checked
    to be writable before the work that would be saved there (encoding, fitting): the folder, or
    while it does not exist the nearest folder above it, where it would be made, and its
    classifier files, which must not be read-only (:func:`check_replaceable`). An ``OSError``
    names ``path`` (or the read-only file) when a save could not go there; nothing is created."""
    out = check_classifier_folder(path)
    there = next((folder for folder in (out, *out.parents) if folder.exists()), Path("."))
    try:
        check_writable(there / f".{JSON_NAME}.check")  # makes and removes a temporary file there
    except OSError as exc:
        reason = os_error_cause(exc)
        raise OSError(exc.errno, f"cannot save a classifier there ({there}: {reason})", str(out)) from None
    check_replaceable(out)
    return out


def check_replaceable(folder: Path) -> None:
    """Refuse, with a ``PermissionError`` naming the file, to save a classifier into ``folder`` where
    one of the files a save replaces is write-protected (:func:`faast.io.write_protected`: not
    writable to this user, or, for root, writable to no one), which a save would silently replace."""
    for name in (JSON_NAME, TENSORS_NAME, PENDING_TENSORS_NAME):
        check_not_write_protected(
            folder / name, context="cannot save a classifier there: ", elsewhere="save to another folder"
        )


class ClassifierChangedError(ValueError):
    """The classifier a command loaded was saved again by another command before this one saved
    its change (``save_classifier(expect=)``): saving would lose that command's save, so nothing
    is written."""

    @classmethod
    def of(
        cls, path: str | os.PathLike[str], outcome: str = "nothing was written: run again"
    ) -> ClassifierChangedError:
        """The error for the classifier folder ``path``, ending with ``outcome``."""
        return cls(
            f"{os.fspath(path)}: the classifier changed while this command ran (another faast command "
            f"saved it); {outcome}"
        )


def classifier_version(path: str | os.PathLike[str]) -> str | None:
    """The version of the classifier saved in the folder ``path``: the SHA-256 of its
    ``classifier.json`` bytes, which every save writes anew (they name the digest of its tensors);
    None when the folder holds none. Read under the folder's lock to match what a load read or a
    save wrote (:func:`load_classifier_version`)."""
    try:
        return file_sha256(Path(path) / JSON_NAME)
    except FileNotFoundError:
        return None


def save_classifier(
    clf: FaastClassifier,
    path: str | os.PathLike[str],
    metadata: dict[str, Any] | None = None,
    *,
    expect: str | None = None,
) -> Path:
    """Write ``clf`` (fitted) to the directory ``path``; ``metadata``: JSON-able extras. A
    ``ValueError`` before anything is written refuses what would not load as the classifier that
    predicts (module docstring), and a ``PermissionError`` a read-only file of a classifier saved
    there (:func:`check_replaceable`); a failure (or Ctrl-C) from the tensors' write on leaves no stray
    file. Interrupted at any point, even a kill, it leaves a folder that loads as the previous save
    or the new one, whatever earlier saves were interrupted (``PENDING_TENSORS_NAME``).

    ``expect``: the :func:`classifier_version` of the classifier this save changes (as loaded,
    :func:`load_classifier_version`); when the folder holds another one (another command saved it
    since), :class:`ClassifierChangedError` and nothing is written. The check and the save hold
    the folder's exclusive lock, so that no save comes in between; the load and the work between
    hold no lock (a reader never waits for a command's work, only for a save)."""
    check_classifier_folder(path)
    check_replaceable(Path(path))  # a read-only classifier file is not to be overwritten
    if not hasattr(clf, "memory_"):
        raise ValueError("cannot save a FaastClassifier that is not fitted")
    clf._validate_params()  # a value set_params let through (loss="hinge") is named, not written
    clf._check_design_params("save")  # as predict refuses them: the statistics were built otherwise
    # the parameters of the last solve and fit, which the predictions follow (not a later set_params)
    params = {name: getattr(clf, name) for name in _PARAMS} | getattr(clf, "_solve_params_", {})
    prior = params.pop("prior", clf.prior)
    if callable(prior) and not isinstance(prior, str):
        raise ValueError("cannot save a classifier with a callable prior; give the prior as a matrix")
    classes, classes_kind = _classes_to_json(clf.classes_)
    if metadata is not None:
        check_json_dict(metadata, "metadata")
    stats = clf.memory_.stats
    tensors, rows = stats.saved_state()  # the rows instead of G while they stand for it
    if rows is not None:
        tensors["rows_keys"], tensors["rows_values"] = rows
    record = clf.__dict__.get("_record")
    if record is not None:  # what forget checks beyond the kept rows (faast.classifier_record)
        tensors["example_record"] = record.to_tensor()
    if getattr(clf, "retarget_cross_", None) is not None:
        tensors["retarget_cross"] = clf.retarget_cross_
    logistic = getattr(clf, "C_", None) is not None  # what the fit did, not a later set_params(loss=…)
    if logistic:  # the fitted logits' weights and the penalty they were fitted with
        tensors["logistic_weight"] = clf._weight(torch.float64, torch.device("cpu"))
        tensors["logistic_C"] = torch.tensor([float(clf.C_), float(clf.n_iter_)], dtype=torch.float64)
    if clf.embeddings_ is not None:
        tensors["class_embeddings"] = clf.embeddings_
    if prior is not None and not isinstance(prior, str):
        tensors["prior"] = torch.as_tensor(
            np.asarray(prior) if not isinstance(prior, torch.Tensor) else prior
        )
    names = getattr(clf, "feature_names_in_", None)
    info = {
        "format": FORMAT,
        "format_version": VERSION,
        "params": {name: _param_to_json(name, params[name]) for name in _PARAMS},
        "class_weight": [float(x) for x in clf.class_weight_],
        "cut": str(clf.cut_),  # what the cut parameters resolved to (their defaults can change)
        # the level the solve chose (ρ, or the rank and τ kept), exact (JSON floats round-trip): a load
        # predicts with it, not with one a later version of the rule would choose (ChosenLevel)
        "cut_level": ChosenLevel.of(clf.cut_, clf.memory_.solve_info()).to_level(),
        # the temperature predict_proba uses: beyond the kept rows it came from rows not saved
        "logit_scale_fitted": float(clf.logit_scale_),
        "logit_scale_rows": int(getattr(clf, "_calibration_rows", 0)),
        "prior": prior if isinstance(prior, str) else None,
        "classes": classes,
        "classes_kind": classes_kind,
        "class_count": [int(x) for x in clf.class_count_],
        "n_features_in": int(clf.n_features_in_),
        # the columns of the DataFrame fitted, which predictions check (absent: fitted without)
        "feature_names_in": None if names is None else [str(name) for name in names],
        "input_dtype": str(stats.input_dtype or torch.float32).removeprefix("torch."),
        "loss_fitted": "logistic" if logistic else "squared",  # the scores' kind: logits or not
        "metadata": metadata or {},
    }
    out = Path(path)
    if expect is not None and not out.is_dir():  # removed since the load
        raise ClassifierChangedError.of(path)
    with locked_save_folder(out):  # no other faast command writes or reads it meanwhile
        if expect is not None and classifier_version(out) != expect:
            raise ClassifierChangedError.of(path)
        _write_locked(out, tensors, info)
    return out


@contextmanager
def locked_save_folder(path: str | os.PathLike[str]) -> Iterator[Path]:
    """The folder ``path`` for a save in the ``with`` block, under its exclusive lock
    (:func:`classifier_lock`), made (with the folders above it) when missing. When the block fails
    with an error (a full disk, an I/O error), the folders this call made are removed again while
    empty, before the lock is let go, so that a failed first save into a new folder leaves nothing
    behind; a folder that was there is left as it was, and so is one that holds anything else. A
    command that waited for the lock of a folder removed so (or replaced) meanwhile makes it again
    and locks that one: it never writes into a folder whose lock it does not hold. An interruption
    (Ctrl-C) leaves the folder, as a kill would. Re-entrant, as the lock is."""
    out = Path(path)
    made: list[Path] = []  # by this call, over its tries
    while True:
        made += _make_folders(out)
        before = path_identity(out)
        if before is None:  # removed again at once (another command's failed first save)
            continue
        with classifier_lock(out):
            if path_identity(out) == before:  # still the folder locked (the lock is on what was opened)
                try:
                    yield out
                except Exception:
                    for folder in reversed(made):  # the innermost first, while the lock is held
                        try:
                            folder.rmdir()
                        except OSError:  # not empty (or gone): left as it is
                            break
                    raise
                return


def _make_folders(out: Path) -> list[Path]:
    """Make the folder ``out`` and the folders above it that are missing; the ones made, the
    outermost first (one made meanwhile by another command is not among them; a file in the way is
    refused by ``mkdir``)."""
    missing = []
    for folder in (out, *out.parents):
        if folder.is_dir():
            break
        missing.append(folder)
    made: list[Path] = []
    for folder in reversed(missing):  # the outermost first
        try:
            folder.mkdir()
        except FileExistsError:  # made meanwhile by another command (or a file: refused)
            if not folder.is_dir():
                raise
        else:
            made.append(folder)
    return made


def classifier_lock(path: str | os.PathLike[str], *, shared: bool = False) -> AbstractContextManager[None]:
    """Hold the lock of the classifier folder ``path`` (:func:`faast.locks.path_lock`): exclusive
    while a command saves it, shared while one loads it, so that a load never reads half of a save
    and two saves never mix. Held for the reading or the writing alone: a command that changes a
    classifier (``partial-fit``, ``forget``) loads it under the shared lock, works unlocked and
    saves it under the exclusive one, refused when another save came in between
    (``save_classifier(expect=)``). A command that finds it taken prints a line and waits. Nothing
    to lock (a no-op) while ``path`` is not a folder: a save makes it first, a load refuses it."""
    folder = Path(path)
    if not folder.is_dir():
        return nullcontext()
    return path_lock(folder, shared=shared, purpose="using the classifier")


def _write_locked(out: Path, tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> None:
    """The files of a save into the folder ``out`` (its lock held): the tensors to the pending
    file, the JSON naming their digest, then the tensors moved into place."""
    pending = out / PENDING_TENSORS_NAME
    had = (out / JSON_NAME).is_file()
    try:
        # the pending file may be the only copy of the tensors the JSON in place names (a save
        # interrupted after its JSON): it goes into place before this save writes its own there
        _finish_interrupted_save(out)
    except OSError as exc:
        raise _save_error(out, exc, "finishing the move of an earlier save", had) from exc
    digest = None
    written: list[str] = []
    try:
        # the digest of the very bytes written (the file at the pending path is hashed before it
        # is moved there), which the JSON records
        save_tensors(
            pending,
            tensors,
            {"classes": str(len(info["classes"]))},
            kind="classifier",
            on_written=lambda tmp: written.append(file_sha256(tmp)),
        )
        digest = info["tensors_sha256"] = written[-1]
        save_json(out / JSON_NAME, info)  # from here the new save loads (from the pending file until moved)
    except BaseException as exc:  # no stray pending file: the JSON in place names its bytes or not
        if digest is not None and _names_tensors(out / JSON_NAME, digest):
            move_into_place(pending, out / TENSORS_NAME)
            raise
        # the earlier save stands, its tensors in place (_finish_interrupted_save)
        pending.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            step = f"writing {PENDING_TENSORS_NAME}" if digest is None else f"writing {JSON_NAME}"
            raise _save_error(out, exc, step, had) from exc
        raise
    try:
        move_into_place(pending, out / TENSORS_NAME)
    except OSError as exc:  # the JSON in place names the pending file: the new save is in effect
        if not pending.is_file():
            raise _save_error(out, exc, f"moving {PENDING_TENSORS_NAME} into place", had) from exc
        warnings.warn(
            f"{out}: the classifier is saved, but moving {PENDING_TENSORS_NAME} over {TENSORS_NAME} failed "
            f"({os_error_cause(exc)}); the folder loads the new classifier (from {PENDING_TENSORS_NAME}), "
            "and its next save finishes the move",
            UserWarning,
            stacklevel=caller_stacklevel(),
        )


def _save_error(out: Path, exc: OSError, step: str, had: bool) -> OSError:
    """The error of a save of ``out`` that failed at ``step`` with ``exc``, saying what the folder
    holds (``had``: a classifier was saved there before)."""
    holds = "the folder still holds the classifier saved before" if had else "nothing was saved"
    cause = os_error_cause(exc)
    return OSError(exc.errno, f"could not save the classifier to {out} ({cause}, {step}); {holds}")


def _finish_interrupted_save(folder: Path) -> None:
    """Complete a save of ``folder`` interrupted between its JSON and moving its tensors into place:
    move the pending tensors file over ``TENSORS_NAME`` when the JSON in place names its bytes (a
    pending file it does not name is a save stopped before its JSON, which the next save replaces).
    Atomic: interrupted, the folder still loads the same classifier, from either file."""
    pending = folder / PENDING_TENSORS_NAME
    if not pending.is_file():
        return
    if _names_tensors(folder / JSON_NAME, file_sha256(pending)):
        move_into_place(pending, folder / TENSORS_NAME)


def _classes_to_json(classes: np.ndarray) -> tuple[list[Any], str]:
    """``classes_`` as ``classifier.json`` holds them: the labels and their kind (``"str"`` or the
    dtype), checked to read back exactly (:func:`_classes`). Labels the JSON cannot hold — dates
    (``datetime64``), bytes, objects other than strings and numbers — are refused with a
    ``ValueError`` naming their type, before anything is written."""
    raw = [c.item() if hasattr(c, "item") else c for c in classes]
    kind = "str" if classes.dtype.kind == "U" else classes.dtype.str
    try:
        read = _classes({"classes": raw, "classes_kind": kind}, Path(JSON_NAME))
        exact = read.dtype.kind == classes.dtype.kind and bool(np.array_equal(read, classes))
    except ValueError:
        exact = False
    if not exact:
        types = ", ".join(sorted({type(c).__name__ for c in raw}))
        raise ValueError(
            f"cannot save a classifier with labels of dtype {classes.dtype} ({types}): {JSON_NAME} holds "
            "labels that are strings, integers, floats or booleans; convert the labels (e.g. "
            "y.astype(str)) and fit again"
        )
    return raw, kind


def _names_tensors(json_path: Path, digest: str) -> bool:
    """Whether ``json_path`` records the tensors of SHA-256 ``digest`` (a save's JSON in place)."""
    try:
        info = load_json(json_path)
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and info.get("tensors_sha256") == digest


def load_classifier(
    path: str | os.PathLike[str], *, lock: bool = True
) -> tuple[FaastClassifier, dict[str, Any]]:
    """The classifier saved at ``path`` and its ``metadata``. A ``ValueError`` naming the file and
    the field refuses a malformed description, tensors that another save wrote or that changed
    since (``tensors_sha256``), and counts that the statistics contradict. The files are read
    under the folder's shared lock (:func:`classifier_lock`: a save of another command waits, or
    is waited for); ``lock=False`` reads without (a save may then come in between: refused as
    tensors of another save)."""
    clf, metadata, _ = load_classifier_version(path, lock=lock)
    return clf, metadata


def load_classifier_version(
    path: str | os.PathLike[str], *, lock: bool = True
) -> tuple[FaastClassifier, dict[str, Any], str]:
    """:func:`load_classifier`, and the :func:`classifier_version` of the files read (under the
    same lock): a command that changes the classifier and saves it passes it as
    ``save_classifier(expect=)``, which refuses to save over another command's save."""
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"no saved classifier at {folder} (expected a directory with {JSON_NAME})")
    json_path, tensors_path = folder / JSON_NAME, folder / TENSORS_NAME
    with classifier_lock(folder, shared=True) if lock else nullcontext():  # no save in between
        info, version = load_json_with_sha256(json_path)  # one read: the version of the bytes parsed
        if not isinstance(info, dict) or info.get("format") != FORMAT:
            raise ValueError(f"{json_path} is not a saved FaastClassifier")
        if info.get("format_version") != VERSION:
            version = info.get("format_version")
            raise ValueError(f"{folder}: classifier layout version {version!r}; this faast reads {VERSION}")
        tensors_path = _saved_tensors(info, json_path, tensors_path)
        tensors, _ = load_tensors(tensors_path, kind="classifier")
    params, classes, counts, d, dtype, class_weight, metadata = _description(info, json_path)
    fitted_loss = info.get("loss_fitted", params["loss"])  # absent from older files: the loss then fitted
    if fitted_loss not in ("squared", "logistic"):
        raise _malformed(json_path, "loss_fitted", f"{fitted_loss!r} is neither 'squared' nor 'logistic'")
    prior: Any = info.get("prior") or tensors.get("prior")
    try:
        clf = FaastClassifier(**params, class_embeddings=tensors.get("class_embeddings"), prior=prior)
        clf._validate_params()
        clf._check_center()
    except ValueError as exc:  # scikit-learn's InvalidParameterError is one
        raise _malformed(json_path, "params", str(exc)) from None
    clf.classes_ = classes
    clf.n_features_in_ = d
    names = _feature_names(info, json_path, d)
    if names is not None:  # predictions check a DataFrame's columns, as the classifier saved did
        clf.feature_names_in_ = names
    clf.class_count_ = counts
    clf.class_weight_ = class_weight
    clf.embeddings_ = None if "class_embeddings" not in tensors else tensors["class_embeddings"].to(dtype)
    key_dim = (d if clf.random_features is None else int(clf.random_features)) + int(clf.fit_intercept)
    cut = clf._cut()  # once: its warnings (c without alpha) are said once
    memory = InverseMemory(
        cut, key_dim=key_dim, value_dim=len(classes), device="cpu", dual_max_pairs=ROWS_KEPT * key_dim
    )
    rows = (tensors["rows_keys"], tensors["rows_values"]) if "rows_keys" in tensors else None
    try:
        memory.stats.load_state_dict(tensors, input_dtype=dtype, rows=rows)  # type: ignore[union-attr]
    except (ValueError, TypeError) as exc:
        raise ValueError(
            f"{tensors_path} does not hold the statistics {json_path} describes: {exc}"
        ) from None
    _check_counts(clf, memory, json_path, tensors_path)
    clf._record = _example_record(tensors, memory, tensors_path)
    clf.memory_ = memory
    clf._design_params_ = clf._design_params()  # the saved parameters built the statistics
    recorded = info.get("cut_level")
    edited = recorded is not None and "cut" in info and info["cut"] != str(cut)
    level = None
    if edited:  # the level of another rule than the parameters give: chosen again by theirs
        _warn_other_rule(json_path, info["cut"], cut, recorded)
    elif info.get("cut") == str(cut) and cut.kind in DATA_CHOSEN:  # recorded with the rule that chose it
        # (a rule that does not choose from the data gives its level again)
        level = _chosen_level(recorded, json_path, cut, key_dim)
    # the level the fit chose, as a fixed cut (ridge_, rank_, and refine's filter below, follow it);
    # the next partial_fit, forget, fit or solve chooses again with the rule (clf._cut())
    clf._compile(cut if level is None else level)
    if "logit_scale_fitted" in info:  # absent from files written before logit_scale="auto"
        fitted = info["logit_scale_fitted"]
        if isinstance(fitted, bool) or not isinstance(fitted, (int, float)) or not (0 < fitted < math.inf):
            raise _malformed(json_path, "logit_scale_fitted", f"{fitted!r} is not a positive number")
        clf.logit_scale_ = float(fitted)
        rows = info.get("logit_scale_rows", 0)
        if isinstance(rows, bool) or not isinstance(rows, int) or rows < 0:
            raise _malformed(json_path, "logit_scale_rows", f"{rows!r} is not a count")
        clf._calibration_rows = rows
    if clf.refine and "retarget_cross" not in tensors:
        raise _malformed(
            json_path, "params.refine", f"refine={clf.refine} but {tensors_path} holds no retarget_cross"
        )
    if "retarget_cross" in tensors:  # the retargeted solve of fit(refine > 0), same filter
        cross = tensors["retarget_cross"].to(torch.float64)
        if tuple(cross.shape) != (key_dim, len(classes)):
            raise ValueError(
                f"{tensors_path}: retarget_cross has shape {tuple(cross.shape)}, expected "
                f"{(key_dim, len(classes))} for the classifier {json_path} describes"
            )
        factor = memory.stats.factor()  # type: ignore[union-attr]
        clf._set_retarget(cross, factor.weights_for(clf._filter(factor), cross), 0)
    if fitted_loss == "logistic":
        weight = tensors.get("logistic_weight")
        shape = (len(classes), key_dim)
        if weight is None or "logistic_C" not in tensors or tuple(weight.shape) != shape:
            raise ValueError(f"{tensors_path}: loss='logistic' but no logistic weights of shape {shape}")
        stored = tensors["logistic_C"]  # [C, steps of the final fit]
        clf._set_logistic(weight.to(torch.float64), float(stored[0]))
        clf.n_iter_ = int(stored[1]) if stored.numel() > 1 else clf.n_iter_
    # (logistic: its weights are saved, whatever the level)
    if level is None and not edited and cut.kind in DATA_CHOSEN and fitted_loss == "squared":
        _warn_level_not_recorded(clf, json_path, cut, _default_cut_unknown(info))
    return clf, metadata, version


def _chosen_level(level: Any, json_path: Path, cut: Cut, key_dim: int) -> ChosenLevel | None:
    """``cut`` (a rule that chooses from the data) pinned to the level its fit chose that
    ``classifier.json`` records (``cut_level``: ``{"ridge": ρ > 0}`` or ``{"rank": r, "tau": τ}``,
    the kind the rule chooses: a ridge for ``ridge=gcv``/``ridge=auto``, a rank for ``tau="gcv"``,
    either for ``tau="auto"``), or None for a file written before it was recorded; a ``ValueError``
    names a malformed one (a hand-edited ρ of 0 would have loaded as an unpenalised solve)."""
    if level is None:
        return None

    def number(x: Any) -> bool:
        return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x >= 0

    ridge = (
        isinstance(level, dict) and set(level) == {"ridge"} and number(level["ridge"]) and level["ridge"] > 0
    )
    rank = (
        isinstance(level, dict)
        and set(level) == {"rank", "tau"}
        and isinstance(level["rank"], int)
        and not isinstance(level["rank"], bool)
        and 0 <= level["rank"] <= key_dim
        and (level["tau"] is None or number(level["tau"]))
    )
    if ridge and cut.kind != "gcv":
        return ChosenLevel.of_level(cut, ridge=float(level["ridge"]))
    if rank and cut.kind in ("gcv", "auto"):
        tau = None if level["tau"] is None else float(level["tau"])
        return ChosenLevel.of_level(cut, rank=level["rank"], tau=tau)
    if ridge or rank:
        kind = "a ridge" if ridge else "a truncation rank"
        raise _malformed(
            json_path, "cut_level", f"{kind}, which the cut {cut} does not choose: {level!r:.80}"
        )
    raise _malformed(
        json_path,
        "cut_level",
        f'expected {{"ridge": ρ > 0}} or {{"rank": 0 to {key_dim}, "tau": τ ≥ 0 or null}}, got {level!r:.80}',
    )


def _warn_other_rule(json_path: Path, saved: Any, cut: Cut, level: Any) -> None:
    """Warn that the level ``json_path`` records (``cut_level``, as read) was chosen by the cut
    ``saved`` but its parameters now give ``cut`` (an edited file): the level is chosen again, by
    ``cut``."""
    warnings.warn(
        f"{json_path} records the level {level!r:.80} chosen by the cut {saved}, but its parameters "
        f"give the cut {cut} (was the file edited?): the level is chosen again by {cut}, so its "
        "predictions may differ from those before saving",
        UserWarning,
        stacklevel=caller_stacklevel(),
    )


def _default_cut_unknown(info: dict[str, Any]) -> bool:
    """Whether ``classifier.json`` without ``"cut"`` and with all-None cut parameters may have been
    written when they meant ``ridge="auto"``: saved with ``fit_intercept`` (from 2026-12-01 04:46),
    the layout of the files written both before the default became ``ridge="auto"`` (05:12) and
    after, until ``"cut"`` was recorded (05:25); nothing else in them tells the two apart. Without
    ``fit_intercept`` they were written before: ``tau="auto"`` (:func:`_description`)."""
    saved = info.get("params")
    return (
        "cut" not in info
        and isinstance(saved, dict)
        and "fit_intercept" in saved
        and all(saved.get(name) is None for name in ("tau", "ridge", "alpha"))
    )


class LevelNotRecordedWarning(UserWarning):
    """A classifier saved before the level its fit chose was recorded (``cut_level``) had that level
    chosen again on loading, by this faast's rule (:func:`_warn_level_not_recorded`)."""


def _warn_level_not_recorded(clf: FaastClassifier, json_path: Path, cut: Cut, default_unknown: bool) -> None:
    """Warn that ``json_path`` (written before ``cut_level``) does not record the level its fit
    chose by the data-chosen ``cut``: it was chosen again on loading, by the current rule, which may
    choose another; ``default_unknown``: the file may also mean another cut (:func:`_default_cut_unknown`)."""
    chosen = f"ridge ρ={clf.ridge_:.6g}" if clf.ridge_ is not None else f"rank {clf.rank_}"
    also = (
        " It also does not record its cut: saved on 2026-12-01 with all-None cut parameters, it is read "
        'as tau="auto" (their meaning until 05:12 UTC); saved between 05:12 and 05:25 UTC it meant '
        'ridge="auto" (the two differ beyond 2·D examples): then set_params(tau=None, ridge="auto") '
        "and solve()."
        if default_unknown
        else ""
    )
    warnings.warn(
        f"{json_path} does not record the level its fit chose (written by an older faast): the cut "
        f"{cut} chose it again on loading ({chosen}), with this faast's rule, which may choose another "
        "level than the fit did, so its predictions may differ from those before saving; fit it again "
        "on its examples, or check its predictions and save it again with this faast, which records "
        f"the level.{also}",
        LevelNotRecordedWarning,
        stacklevel=caller_stacklevel(),
    )


def _malformed(json_path: Path, field: str, why: str) -> ValueError:
    """The error of a malformed field of ``classifier.json``, naming the file and the field."""
    return ValueError(f"{json_path}: malformed classifier description ({field}: {why})")


def _saved_tensors(info: dict[str, Any], json_path: Path, tensors_path: Path) -> Path:
    """The tensors file ``classifier.json`` was written with: ``tensors_path``, or the pending file
    of a save interrupted after its JSON (``PENDING_TENSORS_NAME``). Refuse tensors whose SHA-256
    is not the one the JSON recorded (files saved before the digest carry none: not checked)."""
    expected = info.get("tensors_sha256")
    if expected is None:
        return tensors_path
    if not isinstance(expected, str) or len(expected) != 64:
        raise _malformed(json_path, "tensors_sha256", f"{expected!r} is not a SHA-256 hex digest")
    expected = expected.lower()
    pending = tensors_path.with_name(PENDING_TENSORS_NAME)
    if tensors_path.is_file() and file_sha256(tensors_path) == expected:
        return tensors_path
    if pending.is_file() and file_sha256(pending) == expected:
        return pending  # the save stopped between its JSON and moving the tensors into place
    actual = file_sha256(existing_file(tensors_path, f"tensors file ({json_path.name} names one)"))
    raise ValueError(
        f"{tensors_path} is not the file {json_path} was saved with (SHA-256 {actual[:16]}…, the "
        f"JSON records {expected[:16]}…): the two were written by different saves or changed since "
        "(an edit, a damaged disk, a copy of one file); restore both from one save, or fit anew"
    )


def _description(
    info: dict[str, Any], json_path: Path
) -> tuple[dict[str, Any], np.ndarray, np.ndarray, int, torch.dtype, np.ndarray, dict[str, Any]]:
    """The validated fields of ``classifier.json``: the constructor parameters, classes (C,),
    class counts (C,) int64, the feature dimension, the key dtype, class weights (C,) float64 and
    the metadata; a ``ValueError`` names the file and the first malformed field."""
    saved = info.get("params")
    if not isinstance(saved, dict):
        raise _malformed(json_path, "params", f"expected an object, got {type(saved).__name__}")
    missing = [name for name in _PARAMS if name not in saved and name not in _LATER_PARAMS]
    if missing:
        raise _malformed(json_path, "params", f"missing {missing}")
    try:
        params = {name: _param_from_json(name, saved.get(name, _LATER_PARAMS.get(name))) for name in _PARAMS}
    except (KeyError, TypeError, ValueError) as exc:
        raise _malformed(
            json_path, "params.class_weight", f"not a list of [label, weight] pairs ({exc})"
        ) from None
    if "cut" not in info and all(params[name] is None for name in ("tau", "ridge", "alpha")):
        params["tau"] = "auto"  # written before the default became ridge="auto" (_default_cut_unknown)
    if "random_features" not in saved and (params["tau"] is not None or params["ridge"] is not None):
        # the first layout (2026-11-30): alpha's default 0.8 was saved beside tau or ridge, which
        # ignored it, as None does now (without a warning that alpha is ignored)
        params["alpha"] = None
    classes = _classes(info, json_path)
    counts = info.get("class_count")
    if (
        not isinstance(counts, list)
        or len(counts) != len(classes)
        or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in counts)
    ):
        raise _malformed(
            json_path,
            "class_count",
            f"expected {len(classes)} counts ≥ 0 (one per class), got {counts!r:.80}",
        )
    d = info.get("n_features_in")
    if isinstance(d, bool) or not isinstance(d, int) or d < 1:
        raise _malformed(json_path, "n_features_in", f"{d!r} is not a positive whole number")
    dtype_name = info.get("input_dtype")
    if dtype_name not in _INPUT_DTYPES:
        raise _malformed(json_path, "input_dtype", f"{dtype_name!r} is not one of {list(_INPUT_DTYPES)}")
    weights = info.get("class_weight", [1.0] * len(classes))
    if (
        not isinstance(weights, list)
        or len(weights) != len(classes)
        or not all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x >= 0
            for x in weights
        )
    ):
        raise _malformed(
            json_path,
            "class_weight",
            f"expected {len(classes)} finite weights ≥ 0 (one per class), got {weights!r:.80}",
        )
    metadata = info.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise _malformed(json_path, "metadata", f"expected an object, got {type(metadata).__name__}")
    return (
        params,
        classes,
        np.asarray(counts, dtype=np.int64),
        d,
        getattr(torch, dtype_name),
        np.asarray(weights, dtype=np.float64),
        dict(metadata or {}),
    )


def _feature_names(info: dict[str, Any], json_path: Path, d: int) -> np.ndarray | None:
    """``feature_names_in_`` (d,) object of ``classifier.json``: the column names of the DataFrame
    fitted, or None when it was fitted without (or saved before they were written)."""
    names = info.get("feature_names_in")
    if names is None:
        return None
    if not isinstance(names, list) or len(names) != d or not all(isinstance(n, str) for n in names):
        raise _malformed(
            json_path, "feature_names_in", f"expected {d} column names (strings), got {names!r:.80}"
        )
    return np.asarray(names, dtype=object)


def _classes(info: dict[str, Any], json_path: Path) -> np.ndarray:
    """The classes (C,) of ``classifier.json`` in the dtype ``classes_kind`` names: labels of that
    kind, sorted and distinct (as ``np.unique`` gives them), else a ``ValueError``."""
    raw, kind = info.get("classes"), info.get("classes_kind")
    if not isinstance(raw, list) or not raw:
        raise _malformed(json_path, "classes", f"expected a non-empty list of labels, got {raw!r:.80}")
    if not all(isinstance(c, (str, int, float)) for c in raw):
        raise _malformed(json_path, "classes", "labels must be strings, numbers or booleans")
    if kind == "str":
        if not all(isinstance(c, str) for c in raw):
            raise _malformed(json_path, "classes_kind", "'str' but the classes are not all strings")
        classes = np.asarray(raw)
    else:
        try:
            dtype = np.dtype(kind)
        except TypeError as exc:
            raise _malformed(json_path, "classes_kind", f"{kind!r} is not a dtype ({exc})") from None
        if dtype.kind not in "biufO":
            raise _malformed(json_path, "classes_kind", f"{kind!r} is not a dtype of labels")
        if dtype.kind != "O" and any(isinstance(c, str) for c in raw):
            raise _malformed(json_path, "classes_kind", f"{kind!r} but the classes hold strings")
        try:
            classes = np.asarray(raw, dtype=dtype)
        except (TypeError, ValueError, OverflowError) as exc:
            raise _malformed(json_path, "classes_kind", f"the classes are not {kind!r} ({exc})") from None
        if dtype.kind != "O" and classes.tolist() != raw:
            raise _malformed(json_path, "classes_kind", f"the classes change when read as {kind!r}")
    try:
        ordered = np.unique(classes)
    except TypeError:
        ordered = None
    if ordered is None or ordered.shape != classes.shape or not bool(np.all(ordered == classes)):
        raise _malformed(json_path, "classes", "expected distinct labels in sorted order")
    return classes


def _example_record(
    tensors: dict[str, torch.Tensor], memory: InverseMemory, path: Path
) -> ExampleRecord | None:
    """The record of examples learned saved in ``path`` (one digest per example the statistics
    hold), or None for a save written before the record (2026-12-06)."""
    if "example_record" not in tensors:
        return None
    record = ExampleRecord.from_tensor(tensors["example_record"], str(path))
    if len(record) != memory.stats.count:  # type: ignore[union-attr]
        raise ValueError(
            f"{path}: the example record holds {len(record)} examples but the statistics "
            f"{memory.stats.count}; were they written by different saves?"  # type: ignore[union-attr]
        )
    return record


def _check_counts(clf: FaastClassifier, memory: InverseMemory, json_path: Path, tensors_path: Path) -> None:
    """Refuse class counts (``class_count`` of ``json_path``) that the statistics of
    ``tensors_path`` contradict: their pair count is the counts' sum, and with the intercept the
    last row of B holds ``intercept_scaling`` · (the summed weight of each class): zero for a class
    with no example, never negative, summing to the statistics' total weight."""
    stats = memory.stats
    total = int(clf.class_count_.sum())
    if stats.count != total:  # type: ignore[union-attr]
        raise ValueError(
            f"{json_path} and {tensors_path} disagree: class_count sums to {total} examples but the "
            f"statistics hold {stats.count}; were they written by different saves?"  # type: ignore[union-attr]
        )
    if not clf.fit_intercept or total == 0:
        return
    per_class = stats.cross_row(-1).to(torch.float64) / float(clf.intercept_scaling)  # type: ignore[union-attr]
    weight_sum = float(stats.weight_sum)  # type: ignore[union-attr]
    slack = _INTERCEPT_ROUNDING * max(weight_sum, float(per_class.abs().max()), 1.0)
    empty = torch.as_tensor(clf.class_count_ == 0)
    if (
        bool((per_class < -slack).any())
        or bool((per_class[empty].abs() > slack).any())
        or abs(float(per_class.sum()) - weight_sum) > slack
    ):
        raise ValueError(
            f"{json_path} and {tensors_path} disagree: the intercept row of the statistics gives the "
            f"classes weights {np.round(per_class.numpy(), 6).tolist()[:10]} (total {weight_sum:.6g}) for "
            f"class_count {clf.class_count_.tolist()[:10]}; were they written by different saves?"
        )


def _param_to_json(name: str, value: Any) -> Any:
    """A constructor parameter as JSON: a ``class_weight`` dict becomes {"pairs": [[label,
    weight], ...]} (JSON object keys are strings, labels need not be); a NumPy scalar (e.g. the
    ``np.int64`` a grid search over ``np.arange`` sets) its Python number."""
    if name == "class_weight" and isinstance(value, dict):
        return {"pairs": [[k.item() if hasattr(k, "item") else k, float(v)] for k, v in value.items()]}
    if isinstance(value, np.generic):
        return value.item()
    return value


def _param_from_json(name: str, value: Any) -> Any:
    """Inverse of :func:`_param_to_json`."""
    if name == "class_weight" and isinstance(value, dict):
        return {label: weight for label, weight in value["pairs"]}
    return value
