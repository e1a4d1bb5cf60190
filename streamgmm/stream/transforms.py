"""Feature transforms: one input column of a batch in, one or more feature columns out.

Each transform works on a whole column with NumPy, so the cost per event is a
few vectorised operations, not a Python call. Numeric transforms take a float64
column that is already finite and report the rows where the transform itself
fails (log1p of a value <= -1, a scaled value that overflows); the decoder
turns those rows into dead letters with reason ``transform``. One-hot takes a
list of strings and never fails: an unknown category lands in ``<name>=other``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from streamgmm.stream.features import FeatureField


class Transform:
    """Base of the transforms: ``names`` are the output columns, ``numeric`` the input kind."""

    numeric = True

    def __init__(self, field: FeatureField) -> None:
        self.name = field.name
        self.names = [field.name]

    @property
    def width(self) -> int:
        """Number of output columns."""
        return len(self.names)

    def apply(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Transform a column.

        Parameters
        ----------
        x : ndarray of shape (n,)
            Finite float64 input values (a list of strings for one-hot).

        Returns
        -------
        block : ndarray of shape (n, width)
            The output columns; rows flagged in ``bad`` hold zeros.
        bad : ndarray of bool, shape (n,)
            Rows where the transform is undefined or overflows.
        """
        return x[:, None], np.zeros(len(x), dtype=bool)

    def explain(self, value: object) -> str:
        """Why ``value`` failed this transform (only called for rows flagged bad)."""
        return f"{self.name}: {type(self).__name__.lower()} of {show_number(value)} is not finite"


class Identity(Transform):
    """``none``: the value as it is."""


class Log1p(Transform):
    """``log1p``: log(1 + x), defined for x > -1; for heavy-tailed amounts and counts."""

    def apply(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        bad = x <= -1.0
        out = np.log1p(np.where(bad, 0.0, x))
        return out[:, None], bad

    def explain(self, value: object) -> str:
        return f"{self.name}: log1p of {show_number(value)}"


class Scale(Transform):
    """``scale``: (x - center) / scale."""

    def __init__(self, field: FeatureField) -> None:
        super().__init__(field)
        assert field.scale is not None  # the schema requires it for this transform
        self.center = field.scale.center
        self.scale = field.scale.scale

    def apply(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with np.errstate(over="ignore", invalid="ignore"):
            out = (x - self.center) / self.scale
        bad = ~np.isfinite(out)
        out[bad] = 0.0
        return out[:, None], bad

    def explain(self, value: object) -> str:
        return f"{self.name}: ({show_number(value)} - {self.center:g}) / {self.scale:g} overflows"


class Cyclic(Transform):
    """``cyclic``: sin and cos of 2 pi x / period, so the end of a cycle meets its start."""

    def __init__(self, field: FeatureField) -> None:
        super().__init__(field)
        assert field.period is not None
        self.period = field.period
        self.names = [f"{field.name}_sin", f"{field.name}_cos"]

    def apply(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # Reduce first: sin of a huge argument loses every digit of the phase.
        angle = (2.0 * np.pi / self.period) * np.mod(x, self.period)
        return np.column_stack((np.sin(angle), np.cos(angle))), np.zeros(len(x), dtype=bool)


class OneHot(Transform):
    """``onehot``: one column per vocabulary entry, plus ``<name>=other`` for the rest."""

    numeric = False

    def __init__(self, field: FeatureField) -> None:
        super().__init__(field)
        vocabulary = list(field.vocabulary or ())
        self.index = {category: i for i, category in enumerate(vocabulary)}
        self.other = len(vocabulary)
        self.names = [f"{field.name}={category}" for category in [*vocabulary, "other"]]

    def apply(self, x: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[override]
        columns = np.fromiter(
            map(self.index.get, x, itertools.repeat(self.other)), dtype=np.intp, count=len(x)
        )
        block = np.zeros((len(x), self.width))
        block[np.arange(len(x)), columns] = 1.0
        return block, np.zeros(len(x), dtype=bool)


TRANSFORMS: dict[str, type[Transform]] = {
    "none": Identity,
    "log1p": Log1p,
    "scale": Scale,
    "cyclic": Cyclic,
    "onehot": OneHot,
}


def build_transform(field: FeatureField) -> Transform:
    """The transform a feature field declares."""
    return TRANSFORMS[field.transform](field)


def show_number(value: object) -> str:
    """A number as a person writes it: -3, not -3.0; 0.25 as 0.25."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)
