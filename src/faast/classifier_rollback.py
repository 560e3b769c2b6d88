"""All or nothing: a ``FaastClassifier`` call that raises leaves the classifier as it was.

``fit``, ``partial_fit``, ``forget`` and ``solve`` change several attributes in turn (the design
parameters, the statistics, the class counts, the record of examples learned, the solve and its
refinement, the temperature), and a step late in the call can still fail: a refused parameter, a
warning turned into an error, a solve that finds nothing to solve, Ctrl-C. :class:`Rollback` keeps
every attribute of the estimator's ``__dict__`` that is not a constructor parameter as it was when
the call began, and puts them back if the call raises anything (``BaseException``: an interrupt
too). It keeps the bindings only, a shallow copy of a few dozen references, so a call pays
microseconds for it; an object the call changes in place is either made anew by the call (a first
``partial_fit``'s statistics, a ``forget``'s copy of them) or named in ``objects``, whose
attributes are put back too.

The one change it cannot undo is a later ``partial_fit``'s addition to the statistics held, in
place (a copy of them at every call would cost O(d²)): everything that can refuse the batch runs
before it, and once it is made the call :meth:`Rollback.commit`\\ s — the examples are learned, and
the steps after it (the counts, the record, marking the solve pending) are kept whatever happens.

``fit`` starts from an unfitted estimator: ``clear`` drops its fitted attributes on entry — those
with scikit-learn's trailing underscore and the private ones the estimator names — and leaves
the rest of ``__dict__`` to scikit-learn (``set_fit_request``'s routing, a pipeline's callback
context), which sets and removes its own attributes around the call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any


def _state(estimator: Any) -> dict[str, Any]:
    """The estimator's ``__dict__`` less its constructor parameters (a new dict of the same objects)."""
    state = dict(vars(estimator))
    for name in estimator._get_param_names():  # two dozen pops: testing each attribute took 4× as long
        state.pop(name, None)
    return state


def is_fitted_name(name: str, private: Iterable[str] = ()) -> bool:
    """Whether ``name`` is a fitted attribute: scikit-learn's convention (a trailing underscore,
    not a dunder, as ``check_is_fitted`` reads it), or one of the ``private`` names."""
    return (name.endswith("_") and not name.startswith("__")) or name in private


class Rollback:
    """A context manager that puts back ``estimator``'s attributes (all but its parameters) and
    those ``objects`` names — (object, attribute name) pairs, read on entry — if its block raises,
    unless :meth:`commit` was called first. With ``clear`` (the private fitted attributes'
    names), the fitted attributes (:func:`is_fitted_name`) are dropped on entry."""

    def __init__(
        self,
        estimator: Any,
        *,
        clear: Iterable[str] | None = None,
        objects: Iterable[tuple[object, str]] = (),
    ) -> None:
        self._estimator = estimator
        self._saved = _state(estimator)
        self._objects = [(obj, name, getattr(obj, name)) for obj, name in objects]
        self._undo: list[Callable[[], object]] = []
        self._committed = False
        if clear is not None:
            private = frozenset(clear)
            for name in self._saved:
                if is_fitted_name(name, private):
                    del estimator.__dict__[name]

    def on_undo(self, step: Callable[[], object]) -> None:
        """Call ``step`` (after the attributes are put back; the last registered first) if the
        block raises before :meth:`commit`: the undoing of a change made in place to an object the
        estimator holds, cheaper than a copy of it (an example record's new digests removed)."""
        self._undo.append(step)

    def commit(self) -> None:
        """From here on the block's changes are kept even if it raises (see the module docstring)."""
        self._committed = True

    def __enter__(self) -> Rollback:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        if kind is None or self._committed:
            return False
        state = self._estimator.__dict__
        for name in _state(self._estimator):
            del state[name]
        state.update(self._saved)
        for obj, name, value in reversed(self._objects):
            setattr(obj, name, value)
        for step in reversed(self._undo):
            step()
        return False  # the error goes on
