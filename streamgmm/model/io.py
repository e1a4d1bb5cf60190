"""Model files: plain arrays in a .npz, read back with ``allow_pickle=False``.

A file holds a format marker, a format version, the estimator's class name and
constructor parameters (as JSON text stored in a uint8 array), the fitted
parameters, and optional extras (for example the anomaly threshold written by
``streamgmm fit``). Nothing in it is pickled, so loading a file never runs code.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from pathlib import Path

import numpy as np

from streamgmm.model.covariance import COVARIANCE_TYPES, expected_shape

FORMAT = "streamgmm-model"
FORMAT_VERSION = 1

_FITTED = ("weights_", "means_", "covariances_", "precisions_cholesky_")
# The fitted scalars a model carries beside its arrays (model files and the
# refit worker's replies both keep them).
FIT_SCALARS = ("converged_", "n_iter_", "lower_bound_")


class ModelFileError(ValueError):
    """A model file is missing, truncated, foreign or of an unknown version."""


def _json_array(obj) -> np.ndarray:
    return np.frombuffer(json.dumps(obj, sort_keys=True).encode(), dtype=np.uint8)


def _read_json(arr: np.ndarray):
    return json.loads(bytes(arr.astype(np.uint8)).decode())


def _plain(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def save_model(model, path, **extra_arrays) -> None:
    """Write a fitted GaussianMixture or OnlineGaussianMixture to ``path``.

    ``extra_arrays`` are stored as ``extra_<name>`` (plain numeric arrays only).
    """
    model._check_fitted()
    params = {k: _plain(v) for k, v in model.get_params().items()
              if k != "random_state" or not isinstance(v, np.random.RandomState)}
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "class": type(model).__name__,
        "params": params,
        "scalars": {k: _plain(getattr(model, k)) for k in FIT_SCALARS if hasattr(model, k)},
    }
    arrays = {"meta": _json_array(meta)}
    arrays.update({name: np.asarray(getattr(model, name)) for name in _FITTED})
    if hasattr(model, "_state_arrays"):
        arrays.update(model._state_arrays())
    for name, value in extra_arrays.items():
        arr = np.asarray(value)
        if arr.dtype == object:
            raise ValueError(f"extra array {name!r}: object arrays cannot be stored")
        arrays[f"extra_{name}"] = arr
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    tmp.replace(path)


def read_model_file(path) -> tuple[dict, dict[str, np.ndarray]]:
    """(meta, arrays) of a model file, or a ModelFileError saying what is wrong."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"{path}: no such model file")
    if not path.is_file():
        raise ModelFileError(f"{path}: not a model file (a directory or a special file)")
    if not zipfile.is_zipfile(path):
        # Checked before numpy looks at it: numpy would guess "pickled data" for
        # any other file and suggest loading it unsafely.
        raise ModelFileError(
            f"{path}: not a streamgmm model file (not a complete .npz archive: "
            "truncated, or another kind of file)"
        )
    arrays = _read_arrays(path)
    if "meta" not in arrays:
        raise ModelFileError(f"{path}: not a streamgmm model file (no 'meta' entry)")
    try:
        meta = _read_json(arrays.pop("meta"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{path}: corrupt model metadata ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a streamgmm model file (format marker missing)")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: model file format version {version!r} is not supported "
            f"(this streamgmm reads version {FORMAT_VERSION})"
        )
    missing = [name for name in _FITTED if name not in arrays]
    if missing:
        raise ModelFileError(f"{path}: model file lacks {', '.join(missing)}")
    _check_fitted_arrays(path, meta, arrays)
    return meta, arrays


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every entry of the archive as a plain array; never unpickles."""
    arrays = {}
    try:
        with np.load(path, allow_pickle=False) as data:
            for name in data.files:
                try:
                    arrays[name] = data[name]
                except ValueError as exc:
                    raise ModelFileError(
                        f"{path}: entry {name!r} is not a plain numeric array ({exc}); "
                        "model files hold plain arrays only and are never unpickled"
                    ) from None
    except ModelFileError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, zlib.error) as exc:
        raise ModelFileError(f"{path}: corrupt model file ({exc})") from None
    return arrays


def _check_fitted_arrays(path: Path, meta: dict, arrays: dict[str, np.ndarray]) -> None:
    """The fitted arrays have the shapes their covariance type implies, and are finite."""
    params = meta.get("params", {})
    covariance_type = params.get("covariance_type")
    if covariance_type not in COVARIANCE_TYPES:
        raise ModelFileError(f"{path}: unknown covariance_type {covariance_type!r}")
    means = arrays["means_"]
    if means.ndim != 2:
        raise ModelFileError(f"{path}: means_ should be 2-D, got shape {means.shape}")
    k, d = means.shape
    want = {"weights_": (k,), "means_": (k, d)}
    want["covariances_"] = want["precisions_cholesky_"] = expected_shape(covariance_type, k, d)
    for name, shape in want.items():
        arr = arrays[name]
        if arr.shape != shape or arr.dtype.kind != "f":
            raise ModelFileError(
                f"{path}: {name} should be a float array of shape {shape} for "
                f"covariance_type {covariance_type!r}, got {arr.dtype} {arr.shape}"
            )
        if not np.all(np.isfinite(arr)):
            raise ModelFileError(f"{path}: {name} holds non-finite values")


def load(path):
    """Load a model written by ``save``: a GaussianMixture or OnlineGaussianMixture."""
    from streamgmm.model.em import MixtureParams
    from streamgmm.model.gmm import GaussianMixture

    meta, arrays = read_model_file(path)
    classes = {"GaussianMixture": GaussianMixture}
    try:
        from streamgmm.model.online import OnlineGaussianMixture

        classes["OnlineGaussianMixture"] = OnlineGaussianMixture
    except ImportError:  # pragma: no cover - online module always ships
        pass
    cls = classes.get(meta.get("class"))
    if cls is None:
        raise ModelFileError(f"{path}: unknown model class {meta.get('class')!r}")
    valid = set(cls._param_names())
    model = cls(**{k: v for k, v in meta["params"].items() if k in valid})
    params = MixtureParams(model.covariance_type, *(arrays[name] for name in _FITTED))
    model._set_params(params)
    for name, value in meta.get("scalars", {}).items():
        setattr(model, name, value)
    if hasattr(model, "_load_state_arrays"):
        model._load_state_arrays(arrays)
    model.extras_ = {k[len("extra_"):]: v for k, v in arrays.items() if k.startswith("extra_")}
    return model
