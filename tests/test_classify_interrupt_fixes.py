"""Interrupted saves and commands of ``faast classify`` (hunt: large data and interrupted runs).

* Every interruption point of any sequence of saves leaves a folder that loads as the last
  completed save or the new one: a save first moves a pending tensors file that the JSON in place
  names into place (two interrupted saves in a row lost both classifiers).
* ``partial-fit`` (and ``fit``, ``forget``) solve what their summary prints before the save, so
  that the save is the last step of the work; ``partial-fit`` warns of examples learned before.
* ``fit``/``partial-fit``/``forget --model DIR`` refuse a folder that cannot be written before
  any data is read.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import faast.classifier_io as classifier_io
import faast.cli.classify_data as classify_data
from faast import FaastClassifier
from faast.classifier_io import JSON_NAME, PENDING_TENSORS_NAME, TENSORS_NAME, load_classifier
from faast.cli import main
from faast.memory import InverseMemory

#: The functions a save calls that write, hash or move files: an interruption can land before or
#: after any of them (inside one, the atomic writes leave the same two states).
_STEPS = ("save_tensors", "file_sha256", "save_json", "move_into_place")


class Killed(BaseException):
    """A simulated SIGKILL or power cut: the process stops, no handler of it runs."""


@pytest.fixture(scope="module")
def classifiers() -> list[FaastClassifier]:
    """Four small fitted classifiers told apart by their class counts."""
    out = []
    for seed in range(4):
        rng = np.random.default_rng(seed)
        n = 30 + 5 * seed
        out.append(FaastClassifier().fit(rng.standard_normal((n, 6)).astype(np.float32), np.arange(n) % 3))
    return out


@contextmanager
def _interrupt(at: int | str, how: str) -> Iterator[None]:
    """Interrupt the ``at``-th step (:data:`_STEPS` and unlinking a file; a name: the first call of
    that step) of the save run inside: ``how`` is "kill" (a :class:`Killed` before it, after which
    every step raises without acting, as a killed process does nothing more), or "ctrl-c before" /
    "ctrl-c after" (a ``KeyboardInterrupt`` before or after it; the handlers then run as written)."""
    count = itertools.count()
    dead = named = False

    def wrap(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def step(*args: Any, **kwargs: Any) -> Any:
            nonlocal dead
            if dead:
                raise Killed(f"{name} after the kill")
            nonlocal named
            i = next(count)
            here = i == at or (name == at and not named)
            named = named or name == at
            if here and how == "kill":
                dead = True
                raise Killed(name)
            if here and how == "ctrl-c before":
                raise KeyboardInterrupt(name)
            result = real(*args, **kwargs)
            if here and how == "ctrl-c after":
                raise KeyboardInterrupt(name)
            return result

        return step

    with pytest.MonkeyPatch.context() as patch:
        for name in _STEPS:
            patch.setattr(classifier_io, name, wrap(name, getattr(classifier_io, name)))
        patch.setattr(Path, "unlink", wrap("unlink", Path.unlink))
        yield


def _loads_as(folder: Path, classifiers: list[FaastClassifier]) -> int | None:
    """Which save the folder loads as (its metadata's number; checked to hold that classifier),
    None when it holds no classifier yet."""
    if not (folder / JSON_NAME).exists():
        return None
    clf, meta = load_classifier(folder)
    number = int(meta["save"])
    np.testing.assert_array_equal(clf.class_count_, classifiers[number].class_count_)
    np.testing.assert_array_equal(clf.coef_, classifiers[number].coef_)
    return number


def _save(clf: FaastClassifier, folder: Path, number: int, at: int | str | None, how: str) -> bool:
    """Save ``clf`` as save ``number``, interrupted at step ``at`` (None: not, else as
    :func:`_interrupt`); whether it completed."""
    if at is None:
        classifier_io.save_classifier(clf, folder, {"save": number})
        return True
    try:
        with _interrupt(at, how):
            classifier_io.save_classifier(clf, folder, {"save": number})
    except (Killed, KeyboardInterrupt):
        return False
    return True


_WAYS = ("kill", "ctrl-c before", "ctrl-c after")


def _check_sequences(root: Path, classifiers: list[FaastClassifier], length: int) -> int:
    """Run every sequence of ``length`` saves, each complete or interrupted at any step in any way
    (branching from copies of the folder), checking after each that the folder loads as the last
    completed save or the new one; then a complete save loads as itself. Sequences that reach a
    folder already seen at the same depth (the same files, loading as the same save) go on as it
    did, so they are checked once. Returns the number of sequences covered."""
    runs = 0
    seen: dict[tuple[int, int | None, frozenset[tuple[str, bytes]]], int] = {}

    def branch(folder: Path, depth: int, state: int | None) -> None:
        nonlocal runs
        files = (
            frozenset((p.name, p.read_bytes()) for p in folder.iterdir()) if folder.exists() else frozenset()
        )
        key = (depth, state, files)
        if key in seen:
            runs += seen[key]
            return
        before = runs
        _branch(folder, depth, state)
        seen[key] = runs - before

    def _branch(folder: Path, depth: int, state: int | None) -> None:
        nonlocal runs
        if depth == length:
            runs += 1
            _save(classifiers[depth], folder, depth, None, "")
            assert _loads_as(folder, classifiers) == depth
            assert sorted(p.name for p in folder.iterdir()) == [JSON_NAME, TENSORS_NAME]
            return
        options: list[tuple[int | None, str]] = [(None, "")]
        options += [(at, how) for at in range(8) for how in _WAYS]
        for k, (at, how) in enumerate(options):
            here = folder.with_name(f"{folder.name}.{k}")
            if folder.exists():
                shutil.copytree(folder, here)
            pending = here / PENDING_TENSORS_NAME
            stray = pending.read_bytes() if pending.exists() else None  # left by a kill before
            done = _save(classifiers[depth], here, depth, at, how)
            if done and at is not None:  # the save has fewer steps: this way was tried already
                shutil.rmtree(here)
                continue
            now = _loads_as(here, classifiers)
            allowed = {depth} if done else {state, depth}
            assert now in allowed, f"save {depth} {how} at step {at}: loads as {now}, expected {allowed}"
            if (
                how != "kill" and pending.exists()
            ):  # a handler ran: it left no new file the JSON does not need
                assert pending.read_bytes() == stray or classifier_io._names_tensors(
                    here / JSON_NAME, classifier_io.file_sha256(pending)
                )
            branch(here, depth + 1, now)
            shutil.rmtree(here)

    branch(root / "m", 0, None)
    return runs


def test_every_interruption_of_two_saves_in_a_row_leaves_a_folder_that_loads(tmp_path, classifiers):
    assert _check_sequences(tmp_path, classifiers, 2) > 150


def test_every_interruption_of_three_saves_in_a_row_leaves_a_folder_that_loads(tmp_path, classifiers):
    """Among them the hunt's: save 1 completes, save 2 is killed after its JSON (the folder loads
    from the pending file), save 3 is killed after writing its tensors or gets Ctrl-C in its JSON."""
    assert _check_sequences(tmp_path, classifiers, 3) > 2000


def test_the_hunts_double_interruption(tmp_path, classifiers):
    """The two sequences of the hunt's repro, spelled out."""
    for way in ("kill", "ctrl-c before"):
        folder = tmp_path / way
        assert _save(classifiers[0], folder, 0, None, "")
        assert not _save(classifiers[1], folder, 1, "move_into_place", "kill")  # after its JSON
        assert _loads_as(folder, classifiers) == 1 and (folder / PENDING_TENSORS_NAME).exists()
        assert not _save(classifiers[2], folder, 2, "save_json", way)  # its tensors written, no JSON
        assert _loads_as(folder, classifiers) == 1


# ----------------------------------------------------------------- the command line
def _run(*argv: Any) -> int:
    return main(["classify", *map(str, argv)])


def _features(path: Path, seed: int, n: int, d: int = 5) -> list[Any]:
    """A features file of ``n`` labelled rows and its --labels arguments."""
    rng = np.random.default_rng(seed)
    np.save(path.with_suffix(".npy"), rng.standard_normal((n, d)).astype(np.float32))
    np.save(path.with_name(path.name + "_y.npy"), np.arange(n) % 3)
    return [path.with_suffix(".npy"), "--labels", path.with_name(path.name + "_y.npy")]


@pytest.mark.parametrize("action", ["fit", "partial-fit", "forget"])
def test_the_save_is_the_last_step_of_the_work(tmp_path, monkeypatch, capsys, action):
    """Nothing is solved after the save (partial-fit solved for its summary line after it: a Ctrl-C
    there reported "interrupted" for a command already applied, which a re-run applied again)."""
    model = tmp_path / "m"
    a, b = _features(tmp_path / "a", 0, 40), _features(tmp_path / "b", 1, 9)
    assert _run("fit", *a, "--model", model) == 0
    if action == "forget":
        assert _run("partial-fit", *b, "--model", model) == 0
    events: list[str] = []
    solve_info, save = InverseMemory.solve_info, classifier_io.save_classifier

    def solving(self: InverseMemory, *args: Any, **kwargs: Any) -> Any:
        events.append("solve")
        return solve_info(self, *args, **kwargs)

    def saving(*args: Any, **kwargs: Any) -> Any:
        out = save(*args, **kwargs)
        events.append("save")
        return out

    monkeypatch.setattr(InverseMemory, "solve_info", solving)
    monkeypatch.setattr(classifier_io, "save_classifier", saving)
    capsys.readouterr()
    assert _run(action, *(a if action == "fit" else b), "--model", model) == 0
    assert "save" in events and events[-1] == "save", events
    assert "saved to" in capsys.readouterr().out  # the summary is still printed


def test_partial_fit_warns_of_examples_learned_before(tmp_path, capsys):
    """A re-run of a partial-fit whose save went through (or the same data given twice) learns
    the examples again: allowed, with a warning naming how many, and how to undo it."""
    model = tmp_path / "m"
    a, b = _features(tmp_path / "a", 0, 40), _features(tmp_path / "b", 1, 9)
    assert _run("fit", *a, "--model", model) == 0
    assert _run("partial-fit", *b, "--model", model) == 0
    assert "warning" not in capsys.readouterr().err  # new examples: no warning
    assert _run("partial-fit", *b, "--model", model) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "warning: 9 of the 9 examples" in err[0], err
    assert "counted again" in err[0] and f"faast classify forget {b[0]} --model {model}" in err[0]
    assert load_classifier(model)[0].class_count_.sum() == 40 + 18  # a warning, not a refusal
    assert _run("forget", *b, "--model", model) == 0  # forgotten once, as the warning says
    assert load_classifier(model)[0].class_count_.sum() == 40 + 9
    # some of the examples given were learned before: named as such
    rng = np.random.default_rng(5)
    mixed = np.concatenate([np.load(a[0])[:4], rng.standard_normal((6, 5)).astype(np.float32)])
    np.save(tmp_path / "mix.npy", mixed)
    np.save(tmp_path / "mix_y.npy", np.concatenate([np.arange(40)[:4] % 3, np.arange(6) % 3]))
    capsys.readouterr()
    assert (
        _run("partial-fit", tmp_path / "mix.npy", "--labels", tmp_path / "mix_y.npy", "--model", model) == 0
    )
    err = capsys.readouterr().err
    assert "warning: 4 of the 10 examples" in err
    assert "on a file of just those examples" in err and "--model" not in err  # not: forget the 6 new ones


@contextmanager
def _not_writable(folder: Path) -> Iterator[None]:
    """Make ``folder`` refuse new files: by its mode when not root, else by refusing
    ``tempfile.mkstemp`` there (root writes into a folder whatever its mode)."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    real = tempfile.mkstemp

    def refused(*args: Any, **kwargs: Any) -> Any:
        where = Path(kwargs.get("dir") or ".").resolve()
        if where == folder.resolve() or folder.resolve() in where.parents:
            raise PermissionError(13, "Permission denied")
        return real(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tempfile, "mkstemp", refused)
        yield


@pytest.mark.parametrize("action", ["fit new", "fit over", "partial-fit", "forget"])
def test_a_model_folder_that_cannot_be_written_is_refused_before_the_data_is_read(
    tmp_path, monkeypatch, capsys, action
):
    """Refused in one line naming the folder, before any data is read or encoded (it was refused
    only by the save, after all the encoding and fitting); nothing is created."""
    a, b = _features(tmp_path / "a", 0, 40), _features(tmp_path / "b", 1, 9)
    locked = tmp_path / "locked"
    locked.mkdir()
    model = locked / "m"
    if action != "fit new":
        assert _run("fit", *a, "--model", model) == 0
    if action == "forget":
        assert _run("partial-fit", *b, "--model", model) == 0
    reads: list[Any] = []
    read_data = classify_data.read_data

    def reading(*args: Any, **kwargs: Any) -> Any:
        reads.append(args)
        return read_data(*args, **kwargs)

    monkeypatch.setattr(classify_data, "read_data", reading)
    capsys.readouterr()
    with _not_writable(locked if action == "fit new" else model):
        assert _run(action.split()[0], *(a if action.startswith("fit") else b), "--model", model) == 1
    assert reads == []  # refused before the data was read (or encoded)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot save a classifier there" in err[0] and str(model) in err[0], err
    assert not model.exists() if action == "fit new" else _loads_fine(model)


def _loads_fine(model: Path) -> bool:
    load_classifier(model)
    return True


def test_a_model_path_that_is_a_link_to_nothing_is_refused_before_the_work(tmp_path, capsys, monkeypatch):
    """A dangling link as --model passed the checks and failed with 'File exists' after the fit;
    it is named as a link to nothing before any data is read (and so is one above the folder)."""
    import faast.cli.classify_data as classify_data

    data = _features(tmp_path / "a", 0, 12)
    read = []
    monkeypatch.setattr(classify_data, "read_data", lambda *a, **k: read.append(1) or pytest.fail("read"))
    for link, model in ((tmp_path / "gone", tmp_path / "gone"), (tmp_path / "up", tmp_path / "up" / "m")):
        link.symlink_to(tmp_path / "nowhere")
        assert _run("fit", *data, "--model", model) == 1
        assert f"{link} is a link to nothing; a classifier is saved as a folder" in capsys.readouterr().err
    assert not read
