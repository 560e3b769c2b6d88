"""Where a faast warning points: the first line outside the code that raised it (torch-free, so
that modules imported without torch, :mod:`faast.locks`, use it too)."""

from __future__ import annotations

import sys

#: The modules :func:`caller_stacklevel` looks past by default: faast itself and the libraries
#: whose frames lie between a user's call and faast's code (decorators, a model's forward).
LIBRARY_MODULES = ("faast.", "torch.", "sklearn.", "transformers.")


def caller_stacklevel(modules: tuple[str, ...] = LIBRARY_MODULES) -> int:
    """The ``stacklevel`` at which a warning raised by the function calling this one points at the
    first frame whose module's name starts with none of ``modules``. By default faast, torch,
    scikit-learn and transformers: the user's line, whatever faast calls and decorators
    (``torch.no_grad``, scikit-learn's ``_fit_context``, a ``GridSearchCV`` fitting clones, a
    model's forward running faast's hooks) lie between."""
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and frame.f_globals.get("__name__", "").startswith(modules):
        frame, level = frame.f_back, level + 1
    return level
