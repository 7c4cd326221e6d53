"""Spherical covariances: per component one variance $\\sigma^2_k$
($\\Sigma_k = \\sigma^2_k I$), ``(K,)`` (mclust's VII), the structure `Spherical`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxem import priors
from jaxem.families.gaussian import covariance_charts, diag, full
from jaxem.families.gaussian.structure import CovarianceStructure, register
from jaxem.validation import worst

Array = jax.Array


class Spherical(CovarianceStructure):
    """Per component one variance, ``(K,)`` (mclust's VII)."""

    name = "spherical"
    aliases = ("VII",)
    coupled = False

    def shape(self, n_components, n_features):
        return (n_components,)

    def n_parameters(self, n_components, n_features):
        return n_components

    def matrices(self, covariances, n_features):
        return covariances[..., None, None] * jnp.eye(n_features, dtype=covariances.dtype)

    def variances(self, covariances, n_components, n_features):
        return jnp.broadcast_to(covariances[:, None], covariances.shape + (n_features,))

    def permute(self, covariances, order):
        return jnp.take(covariances, order, axis=covariances.ndim - 1)

    def is_valid(self, covariances):
        return diag.is_positive(covariances)

    def squares(self, centred):
        """$\\|x\\|^2$, ``(1, N)``."""
        return jnp.sum(centred * centred, axis=0, keepdims=True)

    def quadratic_form(self, covariances, offsets):
        """``a = 1/σ²`` ``(K, 1)``, ``b = -2 o/σ²``, ``c = \\|o\\|²/σ²``, and the
        log-determinants $D \\log \\sigma^2_k$."""
        inv = 1.0 / covariances
        d = offsets.shape[-1]
        return (
            inv[:, None],
            -2.0 * offsets * inv[:, None],
            jnp.sum(offsets * offsets, axis=-1) * inv,
            d * jnp.log(covariances),
        )

    def scatter(self, moments, firsts, counts, offsets):
        """$\\sum_n wr_{nk} \\|x_n - o_k\\|^2$, ``(K,)``."""
        return (
            moments[:, 0]
            - 2.0 * jnp.sum(firsts * offsets, axis=-1)
            + counts * jnp.sum(offsets * offsets, axis=-1)
        )

    def reduce(self, scatters):
        return jnp.sum(scatters, axis=-1)

    def within(self, scatter, shifts, inv_counts):
        """$W_k = \\operatorname{tr} S_k - \\|d_k\\|^2 / N_k$, ``(K,)``."""
        return scatter - inv_counts * jnp.sum(shifts * shifts, axis=-1)

    def maximise(self, within, counts, reg_covar, spread):
        """$\\sigma^2_k = W_k / (N_k D) + \\epsilon$: the mean of the diagonal variances, as
        scikit-learn; at least its `full.floor_at` (above $\\epsilon$ only in low precision)."""
        d = spread.shape[-1]
        variance = jnp.maximum(within / counts, 0.0) / d
        scale = jnp.mean(spread, axis=-1) + variance
        return jnp.maximum(variance + reg_covar, full.floor_at(scale, reg_covar, d))

    def fill_empty(self, covariances, empty, counts):
        pooled = (counts / jnp.sum(counts)) @ covariances
        return jnp.where(empty, pooled, covariances)

    def map_estimate(self, within, deviations, counts, prior, n_means):
        """$\\sigma^2_k = [\\psi + W_k + \\tfrac{N_k\\kappa}{N_k+\\kappa}
        \\|\\bar x_k - m\\|^2] / (N_k D + D + \\nu + 2)$."""
        d = deviations.shape[-1]
        shrunk = counts * prior.kappa / (counts + prior.kappa)
        b = (
            prior.scale
            + jnp.maximum(within, 0.0)
            + shrunk * jnp.sum(deviations * deviations, axis=-1)
        )
        return b / (counts * d + d + prior.dof + 2)

    def log_prior(self, means, covariances, prior, active=None):
        """$\\sum_k \\log \\mathrm{InvGamma}(\\sigma^2_k \\mid \\nu/2, \\psi/2)
        + \\log \\mathcal{N}(\\mu_k \\mid m, \\sigma^2_k I / \\kappa)$."""
        rate = jnp.broadcast_to(0.5 * prior.scale, covariances.shape)
        return priors.log_inverse_gamma(covariances, 0.5 * prior.dof, rate) + (
            priors.log_normal_given_var(means, prior.mean, covariances[:, None], prior.kappa)
        )

    def scale_shape(self, n_features):
        return ()

    def dof_minimum(self, n_features):
        return 0

    def default_scale(self, covariance, shrink):
        return jnp.mean(jnp.diagonal(covariance)) / shrink

    def check_scale(self, scale):
        return None if np.all(scale > 0) else f"positive; got {worst(scale)}"

    def noise(self, key, covariances, labels, n_features):
        z = jax.random.normal(key, (labels.shape[0], n_features), covariances.dtype)
        return z * jnp.sqrt(covariances[labels])[:, None]

    def chart(self, at, coordinates):
        """`covariance_charts.variances` of one variance per component (VII)."""
        return covariance_charts.variances(at[:, None], coordinates, self.letters)[:, 0]

    def unconstrain(self, covariances):
        """The variances' logarithms."""
        return jnp.log(covariances)

    def constrain(self, coordinates):
        return jnp.exp(coordinates)

    def collapsed(self, covariances, spread, weights, floor_at):
        return ~(covariances >= 2 * floor_at(np.mean(spread, axis=-1) + covariances))

    def numpyro_prior(self, sample, dist, prior, n_components):
        """$\\sigma^2_k \\sim \\mathrm{InvGamma}(\\nu/2, \\psi/2)$,
        $\\mu_k \\sim \\mathcal{N}(m, \\sigma^2_k I / \\kappa)$."""
        rate = jnp.broadcast_to(prior.scale / 2, (n_components,))
        var = sample("covariances", dist.InverseGamma(prior.dof / 2, rate).to_event(1))
        normal = dist.Normal(prior.mean, jnp.sqrt(var[:, None] / prior.kappa))
        return sample("means", normal.to_event(2)), var


register(Spherical())
