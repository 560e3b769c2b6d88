"""Parameter validation paid once per setting, for scikit-learn estimators.

scikit-learn checks every constructor parameter against ``_parameter_constraints`` at each
``fit`` and ``partial_fit`` (its ``_fit_context``), and lists the parameter names by inspecting
``__init__``'s signature at each ``get_params``. For an estimator of two dozen parameters that is
a tenth of a few-shot fit of a few milliseconds, and it is paid again by every call of a stream of
``partial_fit`` batches. :class:`RememberedValidation` keeps the result:

* the parameter names, per class (a class's ``__init__`` signature does not change);
* the settings that passed validation, per class: a setting whose every value is a plain
  ``bool``, ``int``, ``float``, ``str`` or ``None`` is remembered by (name, exact type, value), so a
  later estimator with the same setting skips the check. A setting holding anything else (an array,
  a dict, a callable, a device, a NumPy scalar) is checked every time, as scikit-learn does; so is
  every setting that failed. The exact type keeps ``True`` and ``1`` apart, which constraints treat
  differently.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

#: The value types a remembered setting may hold: immutable, and compared by value.
PLAIN_TYPES = (bool, int, float, str, type(None))

#: Settings remembered per class; past it the memory starts again (a program trying many settings).
MAX_REMEMBERED = 256

_lock = threading.Lock()
# weakly keyed: a class made at run time (a subclass per experiment) is freed with its last use
_names: weakref.WeakKeyDictionary[type, tuple[str, ...]] = weakref.WeakKeyDictionary()
_accepted: weakref.WeakKeyDictionary[type, set[tuple[tuple[str, type, Any], ...]]] = (
    weakref.WeakKeyDictionary()
)


def setting_key(params: dict[str, Any]) -> tuple[tuple[str, type, Any], ...] | None:
    """((name, type, value), ...) sorted by name, or None when a value is not of :data:`PLAIN_TYPES`
    exactly (it cannot be remembered safely: mutable, or equal across types the constraints tell
    apart)."""
    if any(type(value) not in PLAIN_TYPES for value in params.values()):
        return None
    return tuple((name, type(value), value) for name, value in sorted(params.items()))


class RememberedValidation:
    """Mixin (before ``BaseEstimator`` in the bases) that remembers parameter names and the plain
    settings that passed ``_validate_params`` (see the module's docstring)."""

    @classmethod
    def _get_param_names(cls) -> list[str]:
        names = _names.get(cls)
        if names is None:
            names = tuple(super()._get_param_names())  # type: ignore[misc]
            _names[cls] = names
        return list(names)

    def _validate_params(self) -> None:
        key = setting_key(self.get_params(deep=False))  # type: ignore[attr-defined]
        cls = type(self)
        if key is not None and key in _accepted.get(cls, ()):
            return
        super()._validate_params()  # type: ignore[misc]  # raises for a refused setting
        if key is None:
            return
        with _lock:
            accepted = _accepted.setdefault(cls, set())
            if len(accepted) >= MAX_REMEMBERED:
                accepted.clear()
            accepted.add(key)


def forget_remembered_settings() -> None:
    """Clear every remembered setting and name list (for tests, or after changing a class's
    ``_parameter_constraints`` at run time)."""
    with _lock:
        _accepted.clear()
        _names.clear()
