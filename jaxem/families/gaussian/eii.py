"""EII: one variance for every feature and every component, $\\Sigma_k = \\lambda I$, stored as
a scalar ``()`` (mclust's EII), the structure `EII`.

Maximum likelihood: $\\lambda = \\sum_k \\operatorname{tr} W_k / (N D)$, $W_k$ the scatter of
component $k$ about its new mean. The conjugate prior: $\\lambda \\sim
\\mathrm{InvGamma}(\\nu/2, \\psi/2)$, $\\mu_k \\mid \\lambda \\sim \\mathcal{N}(m, \\lambda I /
\\kappa)$ for the active components.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxem import priors
from jaxem.families.gaussian import covariance_charts, full
from jaxem.families.gaussian.spherical import Spherical
from jaxem.families.gaussian.structure import register

Array = jax.Array


class EII(Spherical):
    """One variance shared by all components and features, ``()`` (mclust's EII)."""

    name = "EII"
    aliases = ()
    shared = True

    def shape(self, n_components, n_features):
        return ()

    def chart(self, at, coordinates):
        """The one variance's chart (`covariance_charts.variances`, EII)."""
        return covariance_charts.variances(jnp.reshape(at, (1, 1)), coordinates, self.letters)[0, 0]

    def n_parameters(self, n_components, n_features):
        return 1

    def matrices(self, covariances, n_features):
        return covariances * jnp.eye(n_features, dtype=covariances.dtype)

    def variances(self, covariances, n_components, n_features):
        return jnp.broadcast_to(covariances, (n_components, n_features))

    def permute(self, covariances, order):
        return covariances

    def quadratic_form(self, covariances, offsets):
        k = offsets.shape[0]
        return super().quadratic_form(jnp.broadcast_to(covariances, (k,)), offsets)

    def scatter(self, moments, firsts, counts, offsets):
        """$\\sum_k \\sum_n wr_{nk} \\|x_n - o_k\\|^2$, ``()``."""
        return jnp.sum(super().scatter(moments, firsts, counts, offsets))

    def reduce(self, scatters):
        return jnp.sum(scatters)

    def within(self, scatter, shifts, inv_counts):
        return scatter - jnp.sum(inv_counts * jnp.sum(shifts * shifts, axis=-1))

    def maximise(self, within, counts, reg_covar, spread):
        """$\\lambda = W / (N D) + \\epsilon$, at least its floor (``spread`` pooled with the
        counts)."""
        d = spread.shape[-1]
        variance = jnp.maximum(within / jnp.sum(counts), 0.0) / d
        scale = jnp.mean(counts @ spread) / jnp.sum(counts) + variance
        return jnp.maximum(variance + reg_covar, full.floor_at(scale, reg_covar, d))

    def fill_empty(self, covariances, empty, counts):
        return covariances

    def map_estimate(self, within, deviations, counts, prior, n_means):
        """$\\lambda = [\\psi + W + \\sum_k \\tfrac{N_k\\kappa}{N_k+\\kappa} \\|\\bar x_k -
        m\\|^2] / (N D + K D + \\nu + 2)$, $K$ = ``n_means``."""
        d = deviations.shape[-1]
        shrunk = counts * prior.kappa / (counts + prior.kappa)
        b = (
            prior.scale
            + jnp.maximum(within, 0.0)
            + jnp.sum(shrunk * jnp.sum(deviations * deviations, axis=-1))
        )
        return b / (jnp.sum(counts) * d + n_means * d + prior.dof + 2)

    def log_prior(self, means, covariances, prior, active=None):
        """$\\log \\mathrm{InvGamma}(\\lambda \\mid \\nu/2, \\psi/2) + \\sum_k \\log
        \\mathcal{N}(\\mu_k \\mid m, \\lambda I / \\kappa)$ over the ``active`` components."""
        normal = priors.log_normal_given_var(means, prior.mean, covariances, prior.kappa, active)
        return priors.log_inverse_gamma(covariances, 0.5 * prior.dof, 0.5 * prior.scale) + normal

    def noise(self, key, covariances, labels, n_features):
        z = jax.random.normal(key, (labels.shape[0], n_features), covariances.dtype)
        return z * jnp.sqrt(covariances)

    def collapsed(self, covariances, spread, weights, floor_at):
        pooled = np.mean(np.sum(weights * spread, axis=-2), axis=-1)
        return ~(covariances >= 2 * floor_at(pooled + covariances))[..., None]

    def numpyro_prior(self, sample, dist, prior, n_components):
        """$\\lambda \\sim \\mathrm{InvGamma}(\\nu/2, \\psi/2)$,
        $\\mu_k \\sim \\mathcal{N}(m, \\lambda I / \\kappa)$."""
        var = sample("covariances", dist.InverseGamma(prior.dof / 2, prior.scale / 2))
        shape = (n_components, prior.mean.shape[0])
        normal = dist.Normal(jnp.broadcast_to(prior.mean, shape), jnp.sqrt(var / prior.kappa))
        return sample("means", normal.to_event(2)), var


register(EII())
