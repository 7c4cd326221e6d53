"""k-means as hard EM, on the generic driver.

Take a spherical Gaussian mixture with equal weights and a common variance $\\sigma^2$.
As $\\sigma^2 \\to 0$ the responsibilities
$r_{nk} \\propto \\exp(-\\|x_n - \\mu_k\\|^2 / 2\\sigma^2)$ become one-hot on the nearest
centre, the E-step becomes Lloyd's assignment step, and the M-step's means become the cluster
averages (Lloyd's update step). The quantity that EM then increases,
$\\sigma^2$ times the expected complete-data log-likelihood up to constants, tends to minus
the inertia $-\\sum_n w_n \\min_k \\|x_n - c_k\\|^2$; each Lloyd step can only lower the
inertia (assignment and update are each exact minimisations), which is hard EM's coordinate
ascent. ``KMeans.e_step`` therefore returns minus the inertia as its objective, and
`jaxem.fit` runs Lloyd's algorithm.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

from jaxem.base import Array, PRNGKey
from jaxem.initialization import cluster_sums, kmeans_plusplus, nearest, one_hot
from jaxem.padding import without_padding
from jaxem.validation import (
    as_float_array,
    check_data,
    check_positive_int,
    check_weights,
    is_concrete,
)


class KMeansParams(NamedTuple):
    """Attributes: centres ``(K, D)``."""

    centres: Array


class KMeansStats(NamedTuple):
    """Attributes: counts ``(K,)`` (weight per cluster), sums ``(K, D)`` (weighted sums of the
    points assigned to each cluster), centres ``(K, D)`` (the centres assigned to, kept for a
    cluster left empty)."""

    counts: Array
    sums: Array
    centres: Array


@dataclasses.dataclass(frozen=True)
class KMeans:
    """k-means with ``n_clusters`` centres; fit it with ``jaxem.fit`` (Lloyd's algorithm), its
    objective is minus the inertia. A cluster left empty keeps its centre."""

    n_clusters: int

    # rows of weight zero change nothing: data may be padded to shared sizes (jaxem.buckets)
    ignores_zero_weights = True

    def __post_init__(self):
        k = self.n_clusters
        check_positive_int(k, "n_clusters")

    @property
    def min_samples(self) -> int:
        """The fewest samples a fit needs: one per cluster."""
        return self.n_clusters

    @property
    def data_ndim(self) -> int:
        return 2

    def e_step(self, params: KMeansParams, X: Array, weights: Array) -> tuple[KMeansStats, Array]:
        """Assign every sample to its nearest centre; return the cluster sums and minus the
        inertia $-\\sum_n w_n \\min_k \\|x_n - c_k\\|^2$."""
        labels = nearest(X, params.centres)
        onehot = one_hot(labels, self.n_clusters, weights)
        residuals = X - params.centres[labels]
        inertia = jnp.sum(weights * jnp.sum(residuals * residuals, axis=1))
        stats = KMeansStats(jnp.sum(onehot, axis=1), cluster_sums(X, onehot), params.centres)
        return stats, -inertia

    def m_step(self, stats: KMeansStats, prior: Any = None) -> KMeansParams:
        """Each centre moves to the mean of its cluster."""
        if prior is not None:
            raise TypeError("KMeans takes no prior")
        safe = jnp.where(stats.counts > 0, stats.counts, 1.0)
        centres = stats.sums / safe[:, None]
        return KMeansParams(jnp.where(stats.counts[:, None] > 0, centres, stats.centres))

    def init(self, key: PRNGKey, X: Any, weights: Any = None) -> KMeansParams:
        """Greedy k-means++ seeding (weighted). ``X`` ``(N, D)``."""
        X = check_data(without_padding(X, weights))
        weights = check_weights(weights, X.shape[0], X.dtype)
        self._check_enough_samples(X.shape[0])
        return KMeansParams(kmeans_plusplus(key, X, weights, self.n_clusters))

    def validate(self, X: Any, params: Any, weights: Any, prior: Any):
        """Checks made by `jaxem.fit` before compiling: ``(X, params, weights, None)``."""
        if prior is not None:
            raise TypeError("KMeans takes no prior")
        X = check_data(X)
        weights = check_weights(weights, X.shape[0], X.dtype)
        self._check_enough_samples(X.shape[0])
        centres = params.centres if isinstance(params, KMeansParams) else params
        centres = as_float_array(centres, "params.centres").astype(X.dtype)
        if centres.shape != (self.n_clusters, X.shape[1]):
            raise ValueError(
                f"params.centres must have shape ({self.n_clusters}, {X.shape[1]}); "
                f"got {centres.shape}"
            )
        if is_concrete(centres) and not np.all(np.isfinite(np.asarray(centres))):
            raise ValueError("params.centres contains NaN or inf")
        return X, KMeansParams(centres), weights, None

    def predict(self, params: KMeansParams, X: Any) -> Array:
        """The nearest centre of each sample, ``(N,)``."""
        X = check_data(X)
        return nearest(X, jnp.asarray(params.centres, X.dtype))

    def _check_enough_samples(self, n: int) -> None:
        if self.n_clusters > n:
            raise ValueError(f"n_clusters={self.n_clusters} must be <= n_samples={n}")
