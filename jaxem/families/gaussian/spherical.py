"""Spherical covariances: per component one variance $\\sigma^2_k$ ($\\Sigma_k =
\\sigma^2_k I$), ``(K,)``.

Same functions as `jaxem.families.gaussian.full`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxem import priors
from jaxem.families.gaussian import full

Array = jax.Array


def shape(n_components: int, n_features: int) -> tuple[int, ...]:
    return (n_components,)


def n_parameters(n_components: int, n_features: int) -> int:
    return n_components


def squares(centred: Array) -> Array:
    """$\\|x\\|^2$, ``(1, N)`` from ``centred`` ``(D, N)``."""
    return jnp.sum(centred * centred, axis=0, keepdims=True)


def quadratic_form(covariances: Array, offsets: Array) -> tuple[Array, Array, Array, Array]:
    """$\\|x - o_k\\|^2 / \\sigma^2_k = a_k q(x) + b_k \\cdot x + c_k$:
    ``a = 1/σ²`` ``(K, 1)``, ``b = -2 o/σ²``, ``c = \\|o\\|²/σ²``, and the log-determinants
    $D \\log \\sigma^2_k$."""
    inv = 1.0 / covariances
    d = offsets.shape[-1]
    return (
        inv[:, None],
        -2.0 * offsets * inv[:, None],
        jnp.sum(offsets * offsets, axis=-1) * inv,
        d * jnp.log(covariances),
    )


def scatter(moments: Array, firsts: Array, counts: Array, offsets: Array) -> Array:
    """$\\sum_n wr_{nk} \\|x_n - o_k\\|^2$, ``(K,)``."""
    return (
        moments[:, 0]
        - 2.0 * jnp.sum(firsts * offsets, axis=-1)
        + counts * jnp.sum(offsets * offsets, axis=-1)
    )


def within(scatter: Array, shifts: Array, inv_counts: Array) -> Array:
    """$W_k = \\operatorname{tr} S_k - \\|d_k\\|^2 / N_k$, ``(K,)``."""
    return scatter - inv_counts * jnp.sum(shifts * shifts, axis=-1)


def mle(within: Array, counts: Array, reg_covar: float, n_features: int, spread: Array) -> Array:
    """$\\sigma^2_k = W_k / (N_k D) + \\epsilon$: the mean of the diagonal variances,
    as scikit-learn; at least its `full.floor_at` (above $\\epsilon$ only in low precision;
    ``spread`` ``(K, D)``: the new means' squared distances from the data's centre)."""
    variance = jnp.maximum(within / counts, 0.0) / n_features
    scale = jnp.mean(spread, axis=-1) + variance
    return jnp.maximum(variance + reg_covar, full.floor_at(scale, reg_covar, n_features))


def map_estimate(within: Array, dev: Array, counts: Array, prior) -> Array:
    """$\\sigma^2_k = [\\psi + W_k + \\tfrac{N_k\\kappa}{N_k+\\kappa}
    \\|\\bar x_k - m\\|^2] / (N_k D + D + \\nu + 2)$."""
    d = dev.shape[-1]
    shrunk = counts * prior.kappa / (counts + prior.kappa)
    b = prior.scale + jnp.maximum(within, 0.0) + shrunk * jnp.sum(dev * dev, axis=-1)
    return b / (counts * d + d + prior.dof + 2)


def log_prior(means: Array, covariances: Array, prior) -> Array:
    """$\\sum_k \\log \\mathrm{InvGamma}(\\sigma^2_k \\mid \\nu/2, \\psi/2)
    + \\log \\mathcal{N}(\\mu_k \\mid m, \\sigma^2_k I / \\kappa)$."""
    rate = jnp.broadcast_to(0.5 * prior.scale, covariances.shape)
    return priors.log_inverse_gamma(covariances, 0.5 * prior.dof, rate) + (
        priors.log_normal_given_var(means, prior.mean, covariances[:, None], prior.kappa)
    )


def pooled(covariances: Array, weights: Array) -> Array:
    return weights @ covariances


def noise(key: Array, covariances: Array, labels: Array, n_features: int) -> Array:
    z = jax.random.normal(key, (labels.shape[0], n_features), covariances.dtype)
    return z * jnp.sqrt(covariances[labels])[:, None]


def is_valid(covariances: np.ndarray) -> bool:
    return bool(np.all(np.asarray(covariances) > 0))


def unconstrain(covariances: Array) -> Array:
    """Unconstrained coordinates of the variances: their logarithms."""
    return jnp.log(covariances)


def constrain(coordinates: Array) -> Array:
    """The variances of unconstrained coordinates: their exponentials."""
    return jnp.exp(coordinates)
