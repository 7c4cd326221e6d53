"""Diagonal covariances: per component and feature a variance :math:`\\sigma^2_{kd}`, ``(K, D)``.

Same functions as :mod:`jaxem.gaussian_mixture.full`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxem import priors

Array = jax.Array


def shape(n_components: int, n_features: int) -> tuple[int, ...]:
    return (n_components, n_features)


def n_parameters(n_components: int, n_features: int) -> int:
    return n_components * n_features


def log_prob(diff: Array, covariances: Array) -> Array:
    """:math:`-\\tfrac12 \\sum_d [\\log 2\\pi\\sigma^2_{kd}
    + (x_{nd} - \\mu_{kd})^2 / \\sigma^2_{kd}]`; ``diff`` ``(K, D, N)`` -> ``(K, N)``."""
    maha = jnp.sum(diff * diff / covariances[:, :, None], axis=1)
    log_det = jnp.sum(jnp.log(covariances), axis=-1)
    return -0.5 * (diff.shape[1] * math.log(2 * math.pi) + log_det[:, None] + maha)


def scatter(wdiff: Array, diff: Array) -> Array:
    """:math:`\\sum_n wr_{nk} (x_{nd} - \\mu_{kd})^2`, ``(K, D)``."""
    return jnp.sum(wdiff * diff, axis=-1)


def within(scatter: Array, shifts: Array, inv_counts: Array) -> Array:
    """:math:`W_{kd} = S_{kd} - d_{kd}^2 / N_k`, ``(K, D)``."""
    return scatter - inv_counts[:, None] * shifts * shifts


def mle(within: Array, counts: Array, reg_covar: float, n_features: int) -> Array:
    """:math:`\\sigma^2_{kd} = W_{kd} / N_k + \\epsilon`."""
    return jnp.maximum(within / counts[:, None], 0.0) + reg_covar


def map_estimate(within: Array, dev: Array, counts: Array, prior) -> Array:
    """:math:`\\sigma^2_{kd} = [\\psi_d + W_{kd} + \\tfrac{N_k\\kappa}{N_k+\\kappa}
    (\\bar x_{kd} - m_d)^2] / (N_k + \\nu + 3)`."""
    shrunk = counts * prior.kappa / (counts + prior.kappa)
    b = prior.scale + jnp.maximum(within, 0.0) + shrunk[:, None] * dev * dev
    return b / (counts + prior.dof + 3)[:, None]


def log_prior(means: Array, covariances: Array, prior) -> Array:
    """:math:`\\sum_{k,d} \\log \\mathrm{InvGamma}(\\sigma^2_{kd} \\mid \\nu/2, \\psi_d/2)
    + \\log \\mathcal{N}(\\mu_{kd} \\mid m_d, \\sigma^2_{kd} / \\kappa)`."""
    rate = jnp.broadcast_to(0.5 * prior.scale, covariances.shape)
    return priors.log_inverse_gamma(covariances, 0.5 * prior.dof, rate) + (
        priors.log_normal_given_var(means, prior.mean, covariances, prior.kappa)
    )


def pooled(covariances: Array, weights: Array) -> Array:
    return weights @ covariances


def noise(key: Array, covariances: Array, labels: Array, n_features: int) -> Array:
    z = jax.random.normal(key, (labels.shape[0], n_features), covariances.dtype)
    return z * jnp.sqrt(covariances[labels])


def is_valid(covariances: np.ndarray) -> bool:
    return bool(np.all(np.asarray(covariances) > 0))
