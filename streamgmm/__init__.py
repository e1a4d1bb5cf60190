"""streamgmm: streaming anomaly detection on Gaussian mixtures.

The public estimators are imported lazily so that ``import streamgmm`` stays
cheap for the command-line tool.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "GaussianMixture": "streamgmm.model.gmm",
    "OnlineGaussianMixture": "streamgmm.model.online",
    "AnomalyDetector": "streamgmm.detect.detector",
    "load": "streamgmm.model.io",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    import importlib

    if name == "plot":  # the subpackage, imported on first use (it needs matplotlib)
        return importlib.import_module("streamgmm.plot")
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'streamgmm' has no attribute {name!r}")

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
