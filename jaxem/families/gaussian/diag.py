"""Diagonal covariances: per component and feature a variance $\\sigma^2_{kd}$, ``(K, D)``.

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
    return (n_components, n_features)


def n_parameters(n_components: int, n_features: int) -> int:
    return n_components * n_features


def squares(centred: Array) -> Array:
    """$x_d^2$, ``(D, N)`` from ``centred`` ``(D, N)``."""
    return centred * centred


def quadratic_form(covariances: Array, offsets: Array) -> tuple[Array, Array, Array, Array]:
    """$\\sum_d (x_d - o_{kd})^2 / \\sigma^2_{kd} = a_k \\cdot q(x) + b_k \\cdot x + c_k$:
    ``a = 1/σ²`` ``(K, D)``, ``b = -2 o/σ²``, ``c = Σ_d o²/σ²`` and $\\log|\\Sigma_k|$."""
    inv = 1.0 / covariances
    return (
        inv,
        -2.0 * offsets * inv,
        jnp.sum(offsets * offsets * inv, axis=-1),
        jnp.sum(jnp.log(covariances), axis=-1),
    )


def scatter(moments: Array, firsts: Array, counts: Array, offsets: Array) -> Array:
    """$\\sum_n wr_{nk} (x_{nd} - o_{kd})^2$, ``(K, D)``."""
    return moments - 2.0 * firsts * offsets + counts[:, None] * offsets * offsets


def within(scatter: Array, shifts: Array, inv_counts: Array) -> Array:
    """$W_{kd} = S_{kd} - d_{kd}^2 / N_k$, ``(K, D)``."""
    return scatter - inv_counts[:, None] * shifts * shifts


def mle(within: Array, counts: Array, reg_covar: float, n_features: int, spread: Array) -> Array:
    """$\\sigma^2_{kd} = W_{kd} / N_k + \\epsilon$, at least its `full.floor_at` (above
    $\\epsilon$ only in low precision; ``spread`` ``(K, D)``: the new means' squared distances
    from the data's centre)."""
    variance = jnp.maximum(within / counts[:, None], 0.0)
    floor = full.floor_at(spread + variance, reg_covar, n_features)
    return jnp.maximum(variance + reg_covar, floor)


def map_estimate(within: Array, dev: Array, counts: Array, prior) -> Array:
    """$\\sigma^2_{kd} = [\\psi_d + W_{kd} + \\tfrac{N_k\\kappa}{N_k+\\kappa}
    (\\bar x_{kd} - m_d)^2] / (N_k + \\nu + 3)$."""
    shrunk = counts * prior.kappa / (counts + prior.kappa)
    b = prior.scale + jnp.maximum(within, 0.0) + shrunk[:, None] * dev * dev
    return b / (counts + prior.dof + 3)[:, None]


def log_prior(means: Array, covariances: Array, prior) -> Array:
    """$\\sum_{k,d} \\log \\mathrm{InvGamma}(\\sigma^2_{kd} \\mid \\nu/2, \\psi_d/2)
    + \\log \\mathcal{N}(\\mu_{kd} \\mid m_d, \\sigma^2_{kd} / \\kappa)$."""
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


def unconstrain(covariances: Array) -> Array:
    """Unconstrained coordinates of the variances: their logarithms."""
    return jnp.log(covariances)


def constrain(coordinates: Array) -> Array:
    """The variances of unconstrained coordinates: their exponentials."""
    return jnp.exp(coordinates)
