"""Diagonal covariances: per component and feature a variance :math:`\\sigma^2_{kd}`, ``(K, D)``.

Same functions as :mod:`jaxem.gaussian_mixture.full`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def shape(n_components: int, n_features: int) -> tuple[int, ...]:
    return (n_components, n_features)


def n_parameters(n_components: int, n_features: int) -> int:
    return n_components * n_features


def log_prob(X: Array, means: Array, covariances: Array) -> Array:
    """:math:`-\\tfrac12 \\sum_d [\\log 2\\pi\\sigma^2_{kd}
    + (x_{nd} - \\mu_{kd})^2 / \\sigma^2_{kd}]`, ``(N, K)``."""
    diff = X[:, None, :] - means[None]
    maha = jnp.sum(diff * diff / covariances[None], axis=-1)
    log_det = jnp.sum(jnp.log(covariances), axis=-1)
    return -0.5 * (X.shape[1] * math.log(2 * math.pi) + log_det + maha)


def scatter(diff: Array, wr: Array) -> Array:
    """:math:`\\sum_n wr_{nk} (x_{nd} - \\mu_{kd})^2`, ``(K, D)``, from the deviations ``diff``
    ``(N, K, D)``."""
    return jnp.einsum("nk,nkd->kd", wr, diff * diff)


def mle(scatter: Array, shift: Array, counts: Array, reg_covar: float) -> Array:
    """:math:`\\sigma^2_{kd} = S_{kd} / N_k - \\delta_{kd}^2 + \\epsilon`."""
    return jnp.maximum(scatter / counts[:, None] - shift * shift, 0.0) + reg_covar


def pooled(covariances: Array, weights: Array) -> Array:
    return weights @ covariances


def noise(key: Array, covariances: Array, labels: Array, n_features: int) -> Array:
    z = jax.random.normal(key, (labels.shape[0], n_features), covariances.dtype)
    return z * jnp.sqrt(covariances[labels])


def is_valid(covariances: np.ndarray) -> bool:
    return bool(np.all(np.asarray(covariances) > 0))
