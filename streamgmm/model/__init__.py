"""The mixture models: statistics, covariance types, the E-step, batch and online EM.

``COVARIANCE_TYPES`` is declared here, not in ``covariance.py``, so that
configuration code (the detector's parameter table, the YAML schema) can read
it without importing numpy and scipy.
"""

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
