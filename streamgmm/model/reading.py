"""What every fitted mixture offers for reading: densities, labels, samples, BIC/AIC."""

from __future__ import annotations

import numpy as np

from streamgmm.model.base import NotFittedError, check_array
from streamgmm.model.covariance import n_parameters, precisions_from_cholesky
from streamgmm.model.em import MixtureParams
from streamgmm.model.estep import chunks, log_gaussian_prob, logsumexp_rows
from streamgmm.model.init import check_random_state


class FittedMixtureMixin:
    """Methods shared by GaussianMixture and OnlineGaussianMixture once fitted."""

    def _check_fitted(self) -> None:
        if not hasattr(self, "precisions_cholesky_"):
            # scikit-learn's words, which its own tests match.
            also = " (or 'partial_fit')" if hasattr(self, "partial_fit") else ""
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit'{also} "
                f"with appropriate arguments before using this estimator."
            )

    def _validate(self, X) -> np.ndarray:
        self._check_fitted()
        return check_array(X, n_features=self.n_features_in_)

    def _get_params(self) -> MixtureParams:
        return MixtureParams(self.covariance_type, self.weights_, self.means_,
                             self.covariances_, self.precisions_cholesky_)

    def _set_params(self, params: MixtureParams) -> None:
        self.weights_ = params.weights
        self.means_ = params.means
        self.covariances_ = params.covariances
        self.precisions_cholesky_ = params.precisions_cholesky
        self.precisions_ = precisions_from_cholesky(params.precisions_cholesky,
                                                    params.covariance_type)
        self.n_features_in_ = params.means.shape[1]

    def _weighted_log_prob(self, X: np.ndarray) -> np.ndarray:
        wlp = log_gaussian_prob(X, self.means_, self.precisions_cholesky_, self.covariance_type)
        with np.errstate(divide="ignore"):
            wlp += np.log(self.weights_)
        return wlp

    def score_samples(self, X) -> np.ndarray:
        """Log-density of each sample under the mixture.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        log_prob : ndarray of shape (n_samples,)
        """
        X = self._validate(X)
        out = np.empty(X.shape[0])
        for sl in chunks(X.shape[0]):
            out[sl] = logsumexp_rows(self._weighted_log_prob(X[sl]))
        return out

    def score(self, X, y=None) -> float:
        """Mean log-density per sample (higher is better)."""
        return float(self.score_samples(X).mean())

    def predict_proba(self, X) -> np.ndarray:
        """Posterior probability of each component: (n_samples, n_components)."""
        X = self._validate(X)
        out = np.empty((X.shape[0], self.weights_.shape[0]))
        for sl in chunks(X.shape[0]):
            wlp = self._weighted_log_prob(X[sl])
            out[sl] = np.exp(wlp - logsumexp_rows(wlp)[:, None])
        return out

    def predict(self, X) -> np.ndarray:
        """Most probable component of each sample: (n_samples,)."""
        X = self._validate(X)
        out = np.empty(X.shape[0], dtype=np.int64)
        for sl in chunks(X.shape[0]):
            out[sl] = np.argmax(self._weighted_log_prob(X[sl]), axis=1)
        return out

    def sample(self, n_samples: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Draw samples: (X of shape (n_samples, n_features), component labels)."""
        self._check_fitted()
        if n_samples < 1:
            raise ValueError(f"n_samples: expected at least 1, got {n_samples}")
        rng = check_random_state(self.random_state)
        counts = rng.multinomial(n_samples, self.weights_ / self.weights_.sum())
        d = self.means_.shape[1]
        t = self.covariance_type
        parts = []
        for c, (mean, count) in enumerate(zip(self.means_, counts, strict=True)):
            if t == "full":
                parts.append(rng.multivariate_normal(mean, self.covariances_[c], int(count)))
            elif t == "tied":
                parts.append(rng.multivariate_normal(mean, self.covariances_, int(count)))
            else:
                parts.append(mean + rng.standard_normal(size=(count, d))
                             * np.sqrt(self.covariances_[c]))
        labels = np.repeat(np.arange(len(counts)), counts)
        return np.vstack(parts), labels

    def save(self, path, **extra) -> None:
        """Write the fitted model to ``path`` (a plain-array .npz file; see ``streamgmm.load``)."""
        from streamgmm.model.io import save_model

        save_model(self, path, **extra)

    def _n_parameters(self) -> int:
        return n_parameters(self.covariance_type, self.weights_.shape[0], self.n_features_in_)

    def bic(self, X) -> float:
        """Bayesian information criterion on X (lower is better)."""
        X = self._validate(X)
        return -2 * self.score(X) * X.shape[0] + self._n_parameters() * np.log(X.shape[0])

    def aic(self, X) -> float:
        """Akaike information criterion on X (lower is better)."""
        X = self._validate(X)
        return -2 * self.score(X) * X.shape[0] + 2 * self._n_parameters()
