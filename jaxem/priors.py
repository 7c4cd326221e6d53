"""Log densities of the conjugate priors, with every normalising constant, and `default_prior`.

A model's prior is a pytree of hyperparameters that the model itself defines and checks
(`jaxem.MixturePrior`: a Dirichlet on the weights and the family's prior on the components;
`jaxem.GaussianMixturePrior`, the same for Gaussian mixtures written flat). Densities are with
respect to Lebesgue measure on the free coordinates of the parameters (the first K - 1
weights, the free entries of a covariance).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from jax.scipy.special import betaln, gammaln, multigammaln, xlogy

from jaxem import linalg
from jaxem.capabilities import of_model

Array = jax.Array


def default_prior(model: Any, X: Any) -> Any:
    """The model's default prior for data ``X`` ``(N, D)``: ``model.default_prior(X)``.

    For mixtures, a flat Dirichlet on the weights and the family's weak conjugate prior (for
    Gaussians mclust's, see `jaxem.families.Gaussian.default_prior`; the others in
    ``docs/families.md``). Works under ``jit`` and ``vmap``.
    """
    make = of_model(model).default_prior
    if make is None:
        raise TypeError(f"{type(model).__name__} has no default prior")
    return make(X)


# -- log densities, with every normalising constant --------------------------------------------


def log_dirichlet(weights: Array, alpha: Array) -> Array:
    """$\\log \\mathrm{Dir}(\\pi \\mid \\alpha)$; ``(K,)`` each. $0 \\log 0 = 0$."""
    return gammaln(jnp.sum(alpha)) - jnp.sum(gammaln(alpha)) + jnp.sum(xlogy(alpha - 1, weights))


def log_normal_given_cov(
    means: Array, mean: Array, chol: Array, kappa: Array, mask: Array | None = None
) -> Array:
    """$\\sum_k \\log \\mathcal{N}(\\mu_k \\mid m, \\Sigma_k/\\kappa)$ with
    $\\Sigma_k = L_k L_k^\\top$; ``means`` ``(K, D)``, ``chol`` ``(K, D, D)``; with ``mask``
    ``(K,)`` booleans, over those components only."""
    d = means.shape[-1]
    z = linalg.solve_lower(chol, (means - mean)[..., None])[..., 0]
    log_det = linalg.log_det(chol)
    terms = (
        -0.5 * d * math.log(2 * math.pi)
        + 0.5 * d * jnp.log(kappa)
        - 0.5 * log_det
        - 0.5 * kappa * jnp.sum(z * z, axis=-1)
    )
    return jnp.sum(terms if mask is None else jnp.where(mask, terms, 0.0))


def log_inverse_wishart(chol: Array, dof: Array, scale: Array) -> Array:
    """$\\sum_k \\log \\mathcal{W}^{-1}(\\Sigma_k \\mid \\nu, \\Psi)$ with
    $\\Sigma_k = L_k L_k^\\top$, ``chol`` ``(K, D, D)``:
    $\\tfrac\\nu2 \\log|\\Psi| - \\tfrac{\\nu D}2 \\log 2 - \\log\\Gamma_D(\\tfrac\\nu2)
    - \\tfrac{\\nu+D+1}2 \\log|\\Sigma| - \\tfrac12 \\operatorname{tr}(\\Psi\\Sigma^{-1})$."""
    d = scale.shape[-1]
    log_det = linalg.log_det(chol)
    # tr(Psi Sigma^-1) = ||L^-1 C||_F^2 with Psi = C C^T
    scale_chol = linalg.cholesky(scale)
    log_det_scale = linalg.log_det(scale_chol)
    z = linalg.solve_lower(chol, scale_chol)
    trace = jnp.sum(z * z, axis=(-2, -1))
    return jnp.sum(
        0.5 * dof * log_det_scale
        - 0.5 * dof * d * math.log(2.0)
        - multigammaln(0.5 * dof, d)
        - 0.5 * (dof + d + 1) * log_det
        - 0.5 * trace
    )


def log_inverse_gamma(var: Array, shape: Array, rate: Array) -> Array:
    """$\\sum \\log \\mathrm{InvGamma}(\\sigma^2 \\mid a, b) = a \\log b - \\log\\Gamma(a)
    - (a + 1) \\log \\sigma^2 - b / \\sigma^2$, summed over every entry of ``var``."""
    return jnp.sum(shape * jnp.log(rate) - gammaln(shape) - (shape + 1) * jnp.log(var) - rate / var)


def log_normal_given_var(
    means: Array, mean: Array, var: Array, kappa: Array, mask: Array | None = None
) -> Array:
    """$\\sum \\log \\mathcal{N}(\\mu \\mid m, \\sigma^2/\\kappa)$ entrywise (``var``
    broadcast against ``means`` ``(K, D)``); with ``mask`` ``(K,)`` booleans, over those
    components only."""
    v = jnp.broadcast_to(var, means.shape) / kappa
    terms = -0.5 * jnp.log(2 * math.pi * v) - 0.5 * (means - mean) ** 2 / v
    if mask is not None:
        terms = jnp.where(mask[:, None], terms, 0.0)
    return jnp.sum(terms)


def log_beta(probs: Array, a: Array, b: Array) -> Array:
    """$\\sum \\log \\mathrm{Beta}(p \\mid a, b)$ over every entry of ``probs``;
    $0 \\log 0 = 0$."""
    return jnp.sum(xlogy(a - 1, probs) + xlogy(b - 1, 1 - probs) - betaln(a, b))


def log_dirichlet_rows(probs: Array, concentration: Array, valid: Array) -> Array:
    """$\\sum \\log \\mathrm{Dir}(p_{\\cdot} \\mid \\beta)$ over the rows (last axis) of
    ``probs``, each row over its ``valid`` entries only."""
    beta = jnp.where(valid, concentration, 1.0)
    norm = gammaln(jnp.sum(jnp.where(valid, beta, 0.0), axis=-1)) - jnp.sum(
        jnp.where(valid, gammaln(beta), 0.0), axis=-1
    )
    return jnp.sum(norm) + jnp.sum(jnp.where(valid, xlogy(beta - 1, probs), 0.0))


def log_gamma(rates: Array, shape: Array, rate: Array) -> Array:
    """$\\sum \\log \\mathrm{Gamma}(\\lambda \\mid a, b) = a \\log b - \\log\\Gamma(a)
    + (a - 1) \\log \\lambda - b \\lambda$ over every entry of ``rates``."""
    return jnp.sum(xlogy(shape, rate) - gammaln(shape) + xlogy(shape - 1, rates) - rate * rates)
