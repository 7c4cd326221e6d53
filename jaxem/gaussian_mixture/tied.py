"""Tied covariance: one :math:`\\Sigma` shared by every component, ``(D, D)``.

Same functions as :mod:`jaxem.gaussian_mixture.full`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import solve_triangular

from jaxem.gaussian_mixture import full

Array = jax.Array


def shape(n_components: int, n_features: int) -> tuple[int, ...]:
    return (n_features, n_features)


def n_parameters(n_components: int, n_features: int) -> int:
    return n_features * (n_features + 1) // 2


def log_prob(X: Array, means: Array, covariances: Array) -> Array:
    """``X`` ``(N, D)``, ``means`` ``(K, D)``, ``covariances`` ``(D, D)`` -> ``(N, K)``."""
    chol = jnp.linalg.cholesky(covariances)
    n, d = X.shape
    diff = (X[:, None, :] - means[None]).reshape(-1, d)
    z = solve_triangular(chol, diff.T, lower=True)  # (D, N*K)
    maha = jnp.sum(z * z, axis=0).reshape(n, -1)
    log_det = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol)))
    return -0.5 * (d * math.log(2 * math.pi) + log_det + maha)


def scatter(diff: Array, wr: Array) -> Array:
    """:math:`\\sum_k \\sum_n wr_{nk} (x_n - \\mu_k)(x_n - \\mu_k)^\\top`, ``(D, D)``, from
    the deviations ``diff`` ``(N, K, D)``."""
    return jnp.einsum("nk,nkd,nke->de", wr, diff, diff)


def mle(scatter: Array, shift: Array, counts: Array, reg_covar: float) -> Array:
    """:math:`\\Sigma = (S - \\sum_k N_k \\delta_k \\delta_k^\\top) / \\sum_k N_k + \\epsilon I`."""
    cov = (scatter - jnp.einsum("k,kd,ke->de", counts, shift, shift)) / jnp.sum(counts)
    cov = 0.5 * (cov + cov.T)
    return cov + reg_covar * jnp.eye(shift.shape[1], dtype=cov.dtype)


def pooled(covariances: Array, weights: Array) -> Array:
    return covariances


def noise(key: Array, covariances: Array, labels: Array, n_features: int) -> Array:
    z = jax.random.normal(key, (labels.shape[0], n_features), covariances.dtype)
    return z @ jnp.linalg.cholesky(covariances).T


def is_valid(covariances: np.ndarray) -> bool:
    return full.is_valid(covariances)
