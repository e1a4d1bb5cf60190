"""The estimator contract shared by streamgmm's mixtures, without importing scikit-learn.

``__init__`` stores its arguments verbatim; ``get_params``/``set_params`` read them
back from the signature, so ``sklearn.base.clone``, ``Pipeline`` and
``GridSearchCV`` work on these estimators.
"""

from __future__ import annotations

import inspect
import sys

import numpy as np


class _SklearnTwin:
    """Makes an exception or warning class an instance of scikit-learn's namesake
    when scikit-learn is loaded, without streamgmm importing it.

    ``except`` and warning filters match by real subclassing (``except``
    ignores ``__subclasscheck__``), so the class a caller catches must be a
    base of the class raised. A class with this mixin is created as a
    subclass of itself and of ``sklearn.exceptions.<name>`` whenever it is
    instantiated while ``sklearn.exceptions`` is in ``sys.modules``; the
    subclass is made once and cached. Checking at raise time is enough: code
    that names ``sklearn.exceptions.NotFittedError`` in an ``except`` clause
    has imported scikit-learn before the error can reach that clause. An
    instance made before scikit-learn was loaded stays a plain streamgmm one.
    Raise warnings as instances, ``warnings.warn(ConvergenceWarning(msg))``,
    so that filters see the twin as their category.
    """

    _twins: dict[type, type] = {}

    def __new__(cls, *args, **kwargs):
        return super().__new__(_twin(cls), *args, **kwargs)

    def __reduce__(self):
        # Pickled by the streamgmm class: it exists wherever streamgmm does,
        # and unpickling picks the twin again if scikit-learn is loaded there.
        base = next(c for c in type(self).__mro__ if c.__dict__.get("_twinned"))
        return base, self.args, self.__dict__ or None


def _twin(cls: type) -> type:
    """``cls``, or its twin subclassing scikit-learn's class of the same name."""
    if not cls.__dict__.get("_twinned"):  # a twin already, or a user's subclass
        return cls
    sklearn_exceptions = sys.modules.get("sklearn.exceptions")
    theirs = getattr(sklearn_exceptions, cls.__name__, None)
    if not isinstance(theirs, type) or issubclass(cls, theirs):
        return cls
    twin = _SklearnTwin._twins.get(cls)
    if twin is None or not issubclass(twin, theirs):  # scikit-learn reloaded
        twin = type(cls.__name__, (cls, theirs), {
            "__module__": cls.__module__, "__qualname__": cls.__qualname__,
            "__doc__": cls.__doc__})
        _SklearnTwin._twins[cls] = twin
    return twin


class NotFittedError(_SklearnTwin, ValueError, AttributeError):
    """Raised when a method that needs a fitted model is called before ``fit``.

    With scikit-learn loaded, also a ``sklearn.exceptions.NotFittedError``.
    """

    _twinned = True


class ConvergenceWarning(_SklearnTwin, UserWarning):
    """EM stopped at ``max_iter`` before the lower bound changed by less than ``tol``.

    With scikit-learn loaded, also a ``sklearn.exceptions.ConvergenceWarning``
    (warn with an instance: ``warnings.warn(ConvergenceWarning(message))``).
    """

    _twinned = True


class EstimatorMixin:
    """get_params / set_params / repr from the constructor's signature."""

    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return sorted(
            p.name for p in sig.parameters.values()
            if p.name != "self" and p.kind != p.VAR_KEYWORD
        )

    def get_params(self, deep: bool = True) -> dict:
        """Constructor parameters of this estimator, by name."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params):
        """Set constructor parameters; unknown names raise a ValueError naming them."""
        valid = set(self._param_names())
        for name, value in params.items():
            if name not in valid:
                raise ValueError(
                    f"Invalid parameter {name!r} for estimator {type(self).__name__}. "
                    f"Valid parameters are: {sorted(valid)!r}."
                )
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        sig = inspect.signature(type(self).__init__)
        changed = []
        for name, p in sig.parameters.items():
            if name == "self" or not hasattr(self, name):
                continue
            value = getattr(self, name)
            default = p.default
            same = value is default or (
                not isinstance(value, np.ndarray) and not isinstance(default, np.ndarray)
                and value == default
            )
            if not same:
                changed.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(changed)})"

    def __sklearn_tags__(self):
        # Called by scikit-learn only, so importing it here adds no runtime dependency.
        from sklearn.utils import Tags, TargetTags

        return Tags(
            estimator_type="density_estimator",
            target_tags=TargetTags(required=False),
            transformer_tags=None,
            regressor_tags=None,
            classifier_tags=None,
        )


#: Largest magnitude a feature value may have. Squares of values, and their sums
#: over a window, must stay inside float64 (about 1.8e308) with room for the
#: scaling a detector applies; no measurement comes near it.
MAX_MAGNITUDE = 1e100


class InputRejected(ValueError):
    """A value of the input that the model cannot take (NaN, inf, beyond
    ``MAX_MAGNITUDE``), found before anything changed; ``row``, ``column`` and
    ``value`` say where. Shape problems are plain ValueErrors."""

    def __init__(self, message: str, row: int, column: int, value: float) -> None:
        super().__init__(message)
        self.row, self.column, self.value = row, column, value


def check_array(X, name: str = "X", n_features: int | None = None) -> np.ndarray:
    """X as a float64 array of shape (n_samples, n_features) whose values are
    finite and within ``MAX_MAGNITUDE``, or a clear error."""
    try:
        arr = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: expected a 2-D array of numbers ({exc})") from None
    if arr.ndim == 1:
        raise ValueError(
            f"{name}: expected a 2-D array of shape (n_samples, n_features), got a 1-D array "
            f"of shape {arr.shape}; use reshape(-1, 1) for one feature or reshape(1, -1) "
            "for one sample"
        )
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array, got {arr.ndim} dimensions")
    if arr.shape[1] == 0:
        raise ValueError(f"{name}: expected at least one feature, got shape {arr.shape}")
    inside = np.abs(arr) <= MAX_MAGNITUDE  # False for NaN too
    if not inside.all():
        bad = np.argwhere(~inside)[0]
        value = arr[bad[0], bad[1]]
        expected = (f"values within ±{MAX_MAGNITUDE:g}" if np.isfinite(value)
                    else "finite values")
        raise InputRejected(
            f"{name}: expected {expected}, got {value} at row {bad[0]}, column {bad[1]}",
            int(bad[0]), int(bad[1]), float(value),
        )
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(
            f"{name}: has {arr.shape[1]} features, but the model was fitted with "
            f"{n_features} features"
        )
    return arr
