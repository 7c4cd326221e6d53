"""Tied covariance: one $\\Sigma$ shared by every component, ``(D, D)``.

Same functions as `jaxem.families.gaussian.full`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxem import linalg, priors
from jaxem.families.gaussian import full

Array = jax.Array


def shape(n_components: int, n_features: int) -> tuple[int, ...]:
    return (n_features, n_features)


def n_parameters(n_components: int, n_features: int) -> int:
    return n_features * (n_features + 1) // 2


squares = full.squares


def quadratic_form(covariances: Array, offsets: Array) -> tuple[Array, Array, Array, Array]:
    """As `jaxem.families.gaussian.full.quadratic_form` with one ``(D, D)`` covariance."""
    return full.quadratic_form(covariances, offsets)


def scatter(moments: Array, firsts: Array, counts: Array, offsets: Array) -> Array:
    """$\\sum_k \\sum_n wr_{nk} (x_n - o_k)(x_n - o_k)^\\top$, ``(D, D)``."""
    return jnp.sum(full.scatter(moments, firsts, counts, offsets), axis=0)


def within(scatter: Array, shifts: Array, inv_counts: Array) -> Array:
    """$W = \\sum_k (S_k - d_k d_k^\\top / N_k)$, ``(D, D)``."""
    return scatter - jnp.einsum("k,kd,ke->de", inv_counts, shifts, shifts)


def mle(within: Array, counts: Array, reg_covar: float, n_features: int, spread: Array) -> Array:
    """$\\Sigma = W / \\sum_k N_k + \\epsilon I$, each pivot at least its `full.floors`
    (``spread`` ``(K, D)`` averaged over the components with weights $N_k$)."""
    cov = within / jnp.sum(counts)
    cov = 0.5 * (cov + cov.T)
    cov = cov + reg_covar * jnp.eye(cov.shape[-1], dtype=cov.dtype)
    pooled_spread = counts @ spread / jnp.sum(counts)
    return full.floor_spectrum(cov, full.floors(cov, pooled_spread, reg_covar))


def map_estimate(within: Array, dev: Array, counts: Array, prior, n_means: Any) -> Array:
    """$\\Sigma = [\\Psi + W + \\sum_k \\tfrac{N_k\\kappa}{N_k+\\kappa}
    (\\bar x_k - m)(\\bar x_k - m)^\\top] / (\\sum_k N_k + K + \\nu + D + 1)$, with
    $K$ = ``n_means``, the number of component means whose prior involves $\\Sigma$."""
    d = dev.shape[-1]
    shrunk = counts * prior.kappa / (counts + prior.kappa)
    b = prior.scale + within + jnp.einsum("k,kd,ke->de", shrunk, dev, dev)
    cov = b / (jnp.sum(counts) + n_means + prior.dof + d + 1)
    return 0.5 * (cov + cov.T)


def log_prior(means: Array, covariances: Array, prior, active: Array | None = None) -> Array:
    """$\\log \\mathcal{W}^{-1}(\\Sigma \\mid \\nu, \\Psi)
    + \\sum_k \\log \\mathcal{N}(\\mu_k \\mid m, \\Sigma / \\kappa)$, the sum over the
    ``active`` components (None: all)."""
    chol = linalg.cholesky(covariances)
    chols = jnp.broadcast_to(chol, (means.shape[0],) + chol.shape)
    return priors.log_inverse_wishart(
        chol[None], prior.dof, prior.scale
    ) + priors.log_normal_given_cov(means, prior.mean, chols, prior.kappa, active)


def pooled(covariances: Array, weights: Array) -> Array:
    return covariances


def noise(key: Array, covariances: Array, labels: Array, n_features: int) -> Array:
    z = jax.random.normal(key, (labels.shape[0], n_features), covariances.dtype)
    return z @ jnp.linalg.cholesky(covariances).T


def is_valid(covariances: np.ndarray) -> bool:
    return full.is_valid(covariances)


unconstrain = full.unconstrain
constrain = full.constrain
