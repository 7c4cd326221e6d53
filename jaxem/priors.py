"""Conjugate priors for Gaussian mixtures, their log densities, and mclust's default prior.

The prior is a generative model (``GaussianMixturePrior(alpha, mean, kappa, dof, scale)``):

- weights $\\pi \\sim \\mathrm{Dirichlet}(\\alpha)$;
- full: $\\Sigma_k \\sim \\mathcal{W}^{-1}(\\nu, \\Psi)$, density
  $\\propto |\\Sigma|^{-(\\nu+D+1)/2} \\exp(-\\operatorname{tr}(\\Psi\\Sigma^{-1})/2)$, and
  $\\mu_k \\mid \\Sigma_k \\sim \\mathcal{N}(m, \\Sigma_k/\\kappa)$;
- tied: one $\\Sigma \\sim \\mathcal{W}^{-1}(\\nu, \\Psi)$,
  $\\mu_k \\mid \\Sigma \\sim \\mathcal{N}(m, \\Sigma/\\kappa)$;
- diag: $\\sigma^2_{kd} \\sim \\mathrm{InvGamma}(\\nu/2, \\psi_d/2)$,
  $\\mu_{kd} \\mid \\sigma^2_{kd} \\sim \\mathcal{N}(m_d, \\sigma^2_{kd}/\\kappa)$;
- spherical: $\\sigma^2_k \\sim \\mathrm{InvGamma}(\\nu/2, \\psi/2)$,
  $\\mu_k \\mid \\sigma^2_k \\sim \\mathcal{N}(m, \\sigma^2_k I/\\kappa)$.

Densities are with respect to Lebesgue measure on the weights (the first K - 1 coordinates),
means and covariances (their free entries), with every normalising constant.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln, multigammaln, xlogy

from jaxem.validation import as_float_array, check_data, is_concrete

Array = jax.Array


class GaussianMixturePrior(NamedTuple):
    """Hyperparameters of the conjugate prior (a pytree).

    Attributes:
        alpha: Dirichlet concentration, ``(K,)`` or a scalar; every entry >= 1 (1 is flat).
        mean: ``(D,)``, the prior mean $m$ of every component mean.
        kappa: > 0, the prior's pseudo-count for the means.
        dof: $\\nu$; > D - 1 for full and tied, > 0 for diag and spherical.
        scale: $\\Psi$; ``(D, D)`` symmetric positive definite (full, tied), ``(D,)``
            positive (diag), a positive scalar (spherical).
    """

    alpha: Any
    mean: Any
    kappa: Any
    dof: Any
    scale: Any


def default_prior(model: Any, X: Any) -> GaussianMixturePrior:
    """mclust's default conjugate prior (Fraley and Raftery 2007, "Bayesian regularization for
    normal mixture estimation and model-based clustering", J. Classification 24:155-181).

    ``mean`` = the column means of X, ``kappa`` = 0.01, ``dof`` = D + 2, ``scale`` = the unbiased
    sample covariance of X divided by $K^{2/D}$ (full, tied), the unbiased column variances
    divided by $K^{2/D}$ (diag), or their average divided by $K^{2/D}$ (spherical);
    ``alpha`` = 1 (mclust puts no prior on the weights). Works under ``jit`` and ``vmap``.

    Args:
        model: a `jaxem.GaussianMixture`.
        X: ``(n_samples, n_features)``, at least two samples.
    """
    X = check_data(X)
    n, d = X.shape
    if n < 2:
        raise ValueError(f"X needs at least 2 samples for the default prior's covariance; got {n}")
    k = model.n_components
    mean = jnp.mean(X, axis=0)
    centred = X - mean
    cov = centred.T @ centred / (n - 1)
    shrink = k ** (2.0 / d)
    scale = {
        "full": cov / shrink,
        "tied": cov / shrink,
        "diag": jnp.diagonal(cov) / shrink,
        "spherical": jnp.mean(jnp.diagonal(cov)) / shrink,
    }[model.covariance_type]
    dt = X.dtype
    return GaussianMixturePrior(
        alpha=jnp.ones((k,), dt),
        mean=mean,
        kappa=jnp.asarray(0.01, dt),
        dof=jnp.asarray(d + 2, dt),
        scale=scale,
    )


def check_prior(prior: Any, model: Any, n_features: int, dtype: Any) -> GaussianMixturePrior:
    """Shapes against the model (always) and hyperparameter ranges (concrete values); returns the
    prior as arrays of ``dtype`` with ``alpha`` broadcast to ``(K,)``."""
    if not isinstance(prior, GaussianMixturePrior):
        raise TypeError(
            "prior must be a GaussianMixturePrior(alpha, mean, kappa, dof, scale); "
            f"got {type(prior).__name__}"
        )
    k, d, cov_type = model.n_components, n_features, model.covariance_type
    arr = {f: as_float_array(getattr(prior, f), f"prior.{f}").astype(dtype) for f in prior._fields}
    if arr["alpha"].shape not in ((), (k,)):
        raise ValueError(
            f"prior.alpha must be a scalar or of shape ({k},); got {arr['alpha'].shape}"
        )
    arr["alpha"] = jnp.broadcast_to(arr["alpha"], (k,))
    if arr["mean"].shape != (d,):
        raise ValueError(f"prior.mean must have shape ({d},); got {arr['mean'].shape}")
    for f in ("kappa", "dof"):
        if arr[f].shape != ():
            raise ValueError(f"prior.{f} must be a scalar; got shape {arr[f].shape}")
    scale_shape = {"full": (d, d), "tied": (d, d), "diag": (d,), "spherical": ()}[cov_type]
    if arr["scale"].shape != scale_shape:
        raise ValueError(
            f"prior.scale must have shape {scale_shape} for covariance_type={cov_type!r}; "
            f"got {arr['scale'].shape}"
        )
    if is_concrete(list(arr.values())):
        check_prior_values(GaussianMixturePrior(**arr), cov_type, d)
    return GaussianMixturePrior(**arr)


def check_prior_values(prior: GaussianMixturePrior, covariance_type: str, n_features: int) -> None:
    """The hyperparameters' ranges, on concrete arrays with any leading batch axes (a batch of
    priors is checked at once); raises ``ValueError`` naming the first field out of range."""
    v = {f: np.asarray(getattr(prior, f), dtype=np.float64) for f in prior._fields}
    for f, a in v.items():
        if not np.all(np.isfinite(a)):
            raise ValueError(f"prior.{f} contains NaN or inf")
    if np.any(v["alpha"] < 1):
        raise ValueError(f"prior.alpha must be >= 1 (1 is flat); got {_worst(v['alpha'], min)}")
    if np.any(v["kappa"] <= 0):
        raise ValueError(f"prior.kappa must be > 0; got {_worst(v['kappa'], min)}")
    low = n_features - 1 if covariance_type in ("full", "tied") else 0
    if np.any(v["dof"] <= low):
        raise ValueError(
            f"prior.dof must be > {low} for covariance_type={covariance_type!r}; "
            f"got {_worst(v['dof'], min)}"
        )
    s = v["scale"]
    if covariance_type in ("full", "tied"):
        symmetric = np.allclose(s, np.swapaxes(s, -1, -2), rtol=1e-5, atol=0)
        if not symmetric or np.any(np.linalg.eigvalsh(s) <= 0):
            raise ValueError("prior.scale must be a symmetric positive definite matrix")
    elif np.any(s <= 0):
        raise ValueError(f"prior.scale must be positive; got {_worst(s, min)}")


def _worst(a: np.ndarray, pick) -> Any:
    return a if a.ndim == 0 or a.size <= 8 else pick(a.ravel())


# -- log densities, with every normalising constant --------------------------------------------


def log_dirichlet(weights: Array, alpha: Array) -> Array:
    """$\\log \\mathrm{Dir}(\\pi \\mid \\alpha)$; ``(K,)`` each. $0 \\log 0 = 0$."""
    return gammaln(jnp.sum(alpha)) - jnp.sum(gammaln(alpha)) + jnp.sum(xlogy(alpha - 1, weights))


def log_normal_given_cov(means: Array, mean: Array, chol: Array, kappa: Array) -> Array:
    """$\\sum_k \\log \\mathcal{N}(\\mu_k \\mid m, \\Sigma_k/\\kappa)$ with
    $\\Sigma_k = L_k L_k^\\top$; ``means`` ``(K, D)``, ``chol`` ``(K, D, D)``."""
    d = means.shape[-1]
    z = jax.vmap(lambda c, u: jax.scipy.linalg.solve_triangular(c, u, lower=True))(
        chol, means - mean
    )
    log_det = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)
    return jnp.sum(
        -0.5 * d * math.log(2 * math.pi)
        + 0.5 * d * jnp.log(kappa)
        - 0.5 * log_det
        - 0.5 * kappa * jnp.sum(z * z, axis=-1)
    )


def log_inverse_wishart(chol: Array, dof: Array, scale: Array) -> Array:
    """$\\sum_k \\log \\mathcal{W}^{-1}(\\Sigma_k \\mid \\nu, \\Psi)$ with
    $\\Sigma_k = L_k L_k^\\top$, ``chol`` ``(K, D, D)``:
    $\\tfrac\\nu2 \\log|\\Psi| - \\tfrac{\\nu D}2 \\log 2 - \\log\\Gamma_D(\\tfrac\\nu2)
    - \\tfrac{\\nu+D+1}2 \\log|\\Sigma| - \\tfrac12 \\operatorname{tr}(\\Psi\\Sigma^{-1})$."""
    d = scale.shape[-1]
    log_det = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)
    _, log_det_scale = jnp.linalg.slogdet(scale)
    # tr(Psi Sigma^-1) = ||L^-1 C||_F^2 with Psi = C C^T
    scale_chol = jnp.linalg.cholesky(scale)
    z = jax.vmap(lambda c: jax.scipy.linalg.solve_triangular(c, scale_chol, lower=True))(chol)
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


def log_normal_given_var(means: Array, mean: Array, var: Array, kappa: Array) -> Array:
    """$\\sum \\log \\mathcal{N}(\\mu \\mid m, \\sigma^2/\\kappa)$ entrywise (``var``
    broadcast against ``means``)."""
    v = jnp.broadcast_to(var, means.shape) / kappa
    return jnp.sum(-0.5 * jnp.log(2 * math.pi * v) - 0.5 * (means - mean) ** 2 / v)
