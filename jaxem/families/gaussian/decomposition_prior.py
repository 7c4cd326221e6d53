"""The prior of mclust's decomposed models without a standard conjugate one: VEI, EVI, EEV and
VEV, $\\Sigma_k = \\lambda_k D_k A_k D_k^\\top$ with a factor shared by the components.

mclust's M-steps with ``priorControl()`` (``msveip``, ``msevip``, ``mseevp``, ``msvevp``) add the
prior's scale and the means' shrinkage to every component's scatter,

$$
S_k = \\Psi + W_k + \\tfrac{N_k \\kappa}{N_k + \\kappa} (\\bar x_k - m)(\\bar x_k - m)^\\top,
$$

shrink the means to $(N_k \\bar x_k + \\kappa m) / (N_k + \\kappa)$, and run the
maximum-likelihood M-step on $S_k$ with each component's weight $N_k$ replaced in the volume's
equation by an effective count $e_k$ (VEI: $D e_k = D N_k + \\nu + 3$; EVI: $\\sum_k e_k = N +
K + \\nu + 2$; EEV: $\\sum_k e_k = N + \\nu + D + 1$, its shrinkage set to zero, so its means'
prior is flat and $\\kappa = 0$ below; VEV: $e_k = N_k$). That is exactly the
posterior mode of the (unnormalised, for VEV improper) prior

$$
\\log p(\\mu, \\Sigma) = \\sum_k \\Big[ \\log \\mathcal{N}(\\mu_k \\mid m, \\Sigma_k / \\kappa)
- \\tfrac12 \\operatorname{tr}(\\Sigma_k^{-1} \\Psi) - \\tfrac{\\gamma}{2} \\log |\\Sigma_k| \\Big],
$$

whose log-determinant term sets the volumes' count, $e_k = N_k + 1 + \\gamma$ ($N_k + \\gamma$
without the means' prior, $\\kappa = 0$): each structure gives its $\\gamma$ (``prior_power``:
$(\\nu + 3 - D)/D$ for VEI, $(\\nu + 2)/K$ for EVI, $(\\nu + D + 1)/K$ for EEV, $-1$ for VEV,
with $K$ the active components; $(\\nu + 2)/D$ and $0$ for VEI and VEV without the means'
prior, as mclust's counts then are). Shapes and orientations
have determinant one, so only the volumes feel $\\gamma$, and the rest of each M-step is the
maximum-likelihood one on $S_k$. So jaxem's MAP for these four is mclust's M-step, and EM
ascends on the log-likelihood plus this log prior (`log_density`, without its constant).
A component with no weight at all (switched off by `jaxem.grid`) adds nothing to the shared
factors.
"""

from __future__ import annotations

import abc
from typing import Any

import jax
import jax.numpy as jnp

from jaxem import linalg, priors

Array = jax.Array


def effective_counts(counts: Array, prior: Any, gamma: Array) -> Array:
    """$e_k = N_k + 1 + \\gamma$ (without the means' prior $N_k + \\gamma$) for the components
    with weight, 0 for the others, ``(K,)``."""
    e = counts + jnp.where(prior.kappa > 0, 1.0, 0.0) + gamma
    return jnp.where(counts > 0, e, 0.0)


def scatters(within: Array, deviations: Array, counts: Array, prior: Any) -> Array:
    """$S_k$ ``(K, D, D)`` from the scatters ``within`` about the clusters' averages ``(K, D,
    D)`` and ``deviations`` $\\bar x_k - m$ ``(K, D)``; zero for a component without weight."""
    shrunk = counts * prior.kappa / (counts + prior.kappa)
    s = prior.scale + within + jnp.einsum("k,kd,ke->kde", shrunk, deviations, deviations)
    s = 0.5 * (s + jnp.swapaxes(s, -1, -2))
    return jnp.where((counts > 0)[:, None, None], s, 0.0)


def diagonal_scatters(within: Array, deviations: Array, counts: Array, prior: Any) -> Array:
    """The diagonals of $S_k$ ``(K, D)`` from per-feature scatters ``within`` ``(K, D)``."""
    shrunk = counts * prior.kappa / (counts + prior.kappa)
    s = prior.scale + jnp.maximum(within, 0.0) + shrunk[:, None] * deviations * deviations
    return jnp.where((counts > 0)[:, None], s, 0.0)


def log_density(
    means: Array, covariances: Array, prior: Any, gamma: Array, active: Array | None = None
) -> Array:
    """The log prior of the module without its constant, over the ``active`` components (all
    when None): ``covariances`` matrices ``(K, D, D)`` or variances ``(K, D)``."""
    k = means.shape[0]
    kappa = jnp.where(prior.kappa > 0, prior.kappa, 1.0)
    mask = jnp.ones((k,), bool) if active is None else active
    if covariances.ndim == 2:  # diagonal: the variances
        trace = jnp.sum(prior.scale / covariances, axis=-1)
        log_det = jnp.sum(jnp.log(covariances), axis=-1)
        normal = priors.log_normal_given_var(means, prior.mean, covariances, kappa, active)
    else:
        chol = linalg.cholesky(covariances)
        scale = jnp.broadcast_to(prior.scale, covariances.shape)
        trace = jnp.trace(jax.scipy.linalg.cho_solve((chol, True), scale), axis1=-2, axis2=-1)
        log_det = linalg.log_det(chol)
        normal = priors.log_normal_given_cov(means, prior.mean, chol, kappa, active)
    normal = jnp.where(prior.kappa > 0, normal, 0.0)  # kappa = 0: a flat prior on the means
    terms = -0.5 * trace - 0.5 * gamma * log_det
    return normal + jnp.sum(jnp.where(mask, terms, 0.0))


class DecomposedPrior(abc.ABC):
    """The prior of this module for a structure (listed before the structure's base class, whose
    ``log_prior`` and ``numpyro_prior`` it replaces), which gives its power $\\gamma$
    (``prior_power``); a structure with ``shrinks_means`` false (EEV) has the means' prior
    flat."""

    shrinks_means: bool

    @abc.abstractmethod
    def prior_power(self, prior: Any, n_features: int, n_active: Any) -> Array:
        """$\\gamma$, the prior's power of $|\\Sigma_k|^{-1/2}$, for ``n_active`` components."""

    def prior_of(self, prior: Any) -> Any:
        """``prior`` as this structure uses it: without the means' normal if it has none."""
        return prior if self.shrinks_means else prior._replace(kappa=jnp.zeros_like(prior.kappa))

    def scatters_and_counts(
        self, within: Array, deviations: Array, counts: Array, prior: Any, n_means: Any
    ) -> tuple[Array, Array]:
        """$S_k$ (``(K, D)`` diagonals for a diagonal ``within``, else ``(K, D, D)``) and the
        effective counts $e_k$ ``(K,)``, on which the maximum-likelihood M-step gives the mode."""
        prior = self.prior_of(prior)
        gamma = self.prior_power(prior, deviations.shape[-1], n_means)
        diagonal = within.ndim == 2
        s = (diagonal_scatters if diagonal else scatters)(within, deviations, counts, prior)
        return s, effective_counts(counts, prior, gamma)

    def log_prior(
        self, means: Array, covariances: Array, prior: Any, active: Array | None = None
    ) -> Array:
        prior = self.prior_of(prior)
        n = means.shape[0] if active is None else jnp.sum(active)
        gamma = self.prior_power(prior, means.shape[-1], n)
        return log_density(means, covariances, prior, gamma, active)

    def numpyro_prior(self, sample: Any, dist: Any, prior: Any, n_components: int) -> tuple:
        raise NotImplementedError(f"{self!r}: mclust's prior has no NumPyro distribution")
