"""Spherical covariances: per component one variance :math:`\\sigma^2_k` (:math:`\\Sigma_k =
\\sigma^2_k I`), ``(K,)``.

Same functions as :mod:`jaxem.gaussian_mixture.full`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def shape(n_components: int, n_features: int) -> tuple[int, ...]:
    return (n_components,)


def n_parameters(n_components: int, n_features: int) -> int:
    return n_components


def log_prob(X: Array, means: Array, covariances: Array) -> Array:
    """:math:`-\\tfrac12 [D \\log 2\\pi\\sigma^2_k + \\|x_n - \\mu_k\\|^2 / \\sigma^2_k]`,
    ``(N, K)``."""
    d = X.shape[1]
    diff = X[:, None, :] - means[None]
    maha = jnp.sum(diff * diff, axis=-1) / covariances[None]
    return -0.5 * (d * math.log(2 * math.pi) + d * jnp.log(covariances) + maha)


def scatter(diff: Array, wr: Array) -> Array:
    """:math:`\\sum_n wr_{nk} \\|x_n - \\mu_k\\|^2`, ``(K,)``, from the deviations ``diff``
    ``(N, K, D)``."""
    return jnp.einsum("nk,nk->k", wr, jnp.sum(diff * diff, axis=-1))


def mle(scatter: Array, shift: Array, counts: Array, reg_covar: float) -> Array:
    """:math:`\\sigma^2_k = (S_k / N_k - \\|\\delta_k\\|^2) / D + \\epsilon`: the mean of the
    diagonal variances, as scikit-learn."""
    d = shift.shape[1]
    var = scatter / counts - jnp.sum(shift * shift, axis=-1)
    return jnp.maximum(var, 0.0) / d + reg_covar


def pooled(covariances: Array, weights: Array) -> Array:
    return weights @ covariances


def noise(key: Array, covariances: Array, labels: Array, n_features: int) -> Array:
    z = jax.random.normal(key, (labels.shape[0], n_features), covariances.dtype)
    return z * jnp.sqrt(covariances[labels])[:, None]


def is_valid(covariances: np.ndarray) -> bool:
    return bool(np.all(np.asarray(covariances) > 0))
