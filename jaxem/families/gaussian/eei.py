"""EEI: one diagonal covariance shared by every component, $\\Sigma_k = \\lambda B$ with $B$
diagonal, stored as its variances ``(D,)`` (mclust's EEI), the structure `EEI`.

Maximum likelihood: $\\sigma^2_d = \\sum_k W_{k,dd} / N$. The conjugate prior:
$\\sigma^2_d \\sim \\mathrm{InvGamma}(\\nu/2, \\psi_d/2)$, $\\mu_{kd} \\mid \\sigma^2_d \\sim
\\mathcal{N}(m_d, \\sigma^2_d / \\kappa)$ for the active components, whose mode
$\\sigma^2_d = [\\psi_d + W_d + \\sum_k \\tfrac{N_k\\kappa}{N_k+\\kappa} (\\bar x_{kd} -
m_d)^2] / (N + K + \\nu + 2)$ is mclust's (``mstepEEI`` with ``priorControl()``, equal to 1e-11
on Old Faithful).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxem import priors
from jaxem.families.gaussian import covariance_charts, full
from jaxem.families.gaussian.diag import Diagonal, scatter_features
from jaxem.families.gaussian.structure import register

Array = jax.Array


class EEI(Diagonal):
    """One diagonal covariance for all components, ``(D,)`` (mclust's EEI)."""

    name = "EEI"
    aliases = ()
    shared = True

    def shape(self, n_components, n_features):
        return (n_features,)

    def chart(self, at, coordinates):
        """The shared variances' chart (`covariance_charts.variances`, EEI)."""
        return covariance_charts.variances(at[None], coordinates, self.letters)[0]

    def n_parameters(self, n_components, n_features):
        return n_features

    def matrices(self, covariances, n_features):
        return jnp.diag(covariances)

    def variances(self, covariances, n_components, n_features):
        return jnp.broadcast_to(covariances, (n_components, n_features))

    def permute(self, covariances, order):
        return covariances

    def quadratic_form(self, covariances, offsets):
        return super().quadratic_form(jnp.broadcast_to(covariances, offsets.shape), offsets)

    def scatter(self, moments, firsts, counts, offsets):
        """$\\sum_k \\sum_n wr_{nk} (x_{nd} - o_{kd})^2$, ``(D,)``."""
        return jnp.sum(scatter_features(moments, firsts, counts, offsets), axis=0)

    def reduce(self, scatters):
        return jnp.sum(scatters, axis=0)

    def within(self, scatter, shifts, inv_counts):
        return scatter - jnp.sum(inv_counts[:, None] * shifts * shifts, axis=0)

    def maximise(self, within, counts, reg_covar, spread):
        """$\\sigma^2_d = W_d / N + \\epsilon$, at least its floor (``spread`` pooled)."""
        variance = jnp.maximum(within / jnp.sum(counts), 0.0)
        pooled = counts @ spread / jnp.sum(counts)
        floor = full.floor_at(pooled + variance, reg_covar, within.shape[-1])
        return jnp.maximum(variance + reg_covar, floor)

    def fill_empty(self, covariances, empty, counts):
        return covariances

    def map_estimate(self, within, deviations, counts, prior, n_means):
        shrunk = counts * prior.kappa / (counts + prior.kappa)
        b = prior.scale + jnp.maximum(within, 0.0) + shrunk @ (deviations * deviations)
        return b / (jnp.sum(counts) + n_means + prior.dof + 2)

    def log_prior(self, means, covariances, prior, active=None):
        """$\\sum_d \\log \\mathrm{InvGamma}(\\sigma^2_d \\mid \\nu/2, \\psi_d/2) + \\sum_{k,d}
        \\log \\mathcal{N}(\\mu_{kd} \\mid m_d, \\sigma^2_d / \\kappa)$ over the ``active``
        components."""
        rate = jnp.broadcast_to(0.5 * prior.scale, covariances.shape)
        normal = priors.log_normal_given_var(means, prior.mean, covariances, prior.kappa, active)
        return priors.log_inverse_gamma(covariances, 0.5 * prior.dof, rate) + normal

    def noise(self, key, covariances, labels, n_features):
        z = jax.random.normal(key, (labels.shape[0], n_features), covariances.dtype)
        return z * jnp.sqrt(covariances)

    def collapsed(self, covariances, spread, weights, floor_at):
        pooled = np.sum(weights * spread, axis=-2)
        return ~np.all(covariances >= 2 * floor_at(pooled + covariances), axis=-1)[..., None]

    def numpyro_prior(self, sample, dist, prior, n_components):
        d = prior.mean.shape[0]
        rate = jnp.broadcast_to(prior.scale / 2, (d,))
        var = sample("covariances", dist.InverseGamma(prior.dof / 2, rate).to_event(1))
        shape = (n_components, d)
        normal = dist.Normal(jnp.broadcast_to(prior.mean, shape), jnp.sqrt(var / prior.kappa))
        return sample("means", normal.to_event(2)), var


register(EEI())
