"""Tied covariance: one $\\Sigma$ shared by every component, ``(D, D)`` (mclust's EEE), the
structure `Tied`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxem import linalg, priors
from jaxem.families.gaussian import covariance_charts, full
from jaxem.families.gaussian.structure import CovarianceStructure, register

Array = jax.Array


class Tied(CovarianceStructure):
    """One symmetric positive definite matrix for all components, ``(D, D)`` (mclust's EEE)."""

    name = "tied"
    aliases = ("EEE",)
    coupled = True
    shared = True

    def shape(self, n_components, n_features):
        return (n_features, n_features)

    def n_parameters(self, n_components, n_features):
        return n_features * (n_features + 1) // 2

    def matrices(self, covariances, n_features):
        return covariances

    def permute(self, covariances, order):
        return covariances

    def is_valid(self, covariances):
        return full.is_positive_definite(covariances)

    def squares(self, centred):
        return full.squares(centred)

    def quadratic_form(self, covariances, offsets):
        return full.quadratic_form(covariances, offsets)

    def scatter(self, moments, firsts, counts, offsets):
        """$\\sum_k \\sum_n wr_{nk} (x_n - o_k)(x_n - o_k)^\\top$, ``(D, D)``."""
        return jnp.sum(full.scatter_matrices(moments, firsts, counts, offsets), axis=0)

    def reduce(self, scatters):
        return jnp.sum(scatters, axis=0)

    def within(self, scatter, shifts, inv_counts):
        """$W = \\sum_k (S_k - d_k d_k^\\top / N_k)$, ``(D, D)``."""
        return scatter - jnp.einsum("k,kd,ke->de", inv_counts, shifts, shifts)

    def maximise(self, within, counts, reg_covar, spread):
        """$\\Sigma = W / \\sum_k N_k + \\epsilon I$, each pivot at least its `full.floors`
        (``spread`` averaged over the components with weights $N_k$)."""
        cov = within / jnp.sum(counts)
        cov = 0.5 * (cov + cov.T)
        cov = cov + reg_covar * jnp.eye(cov.shape[-1], dtype=cov.dtype)
        pooled_spread = counts @ spread / jnp.sum(counts)
        return full.floor_spectrum(cov, full.floors(cov, pooled_spread, reg_covar))

    def fill_empty(self, covariances, empty, counts):
        return covariances

    def map_estimate(self, within, deviations, counts, prior, n_means):
        """$\\Sigma = [\\Psi + W + \\sum_k \\tfrac{N_k\\kappa}{N_k+\\kappa}
        (\\bar x_k - m)(\\bar x_k - m)^\\top] / (\\sum_k N_k + K + \\nu + D + 1)$, with
        $K$ = ``n_means``, the number of component means whose prior involves $\\Sigma$."""
        d = deviations.shape[-1]
        shrunk = counts * prior.kappa / (counts + prior.kappa)
        b = prior.scale + within + jnp.einsum("k,kd,ke->de", shrunk, deviations, deviations)
        cov = b / (jnp.sum(counts) + n_means + prior.dof + d + 1)
        return 0.5 * (cov + cov.T)

    def log_prior(self, means, covariances, prior, active=None):
        """$\\log \\mathcal{W}^{-1}(\\Sigma \\mid \\nu, \\Psi)
        + \\sum_k \\log \\mathcal{N}(\\mu_k \\mid m, \\Sigma / \\kappa)$, the sum over the
        ``active`` components (None: all)."""
        chol = linalg.cholesky(covariances)
        chols = jnp.broadcast_to(chol, (means.shape[0],) + chol.shape)
        return priors.log_inverse_wishart(
            chol[None], prior.dof, prior.scale
        ) + priors.log_normal_given_cov(means, prior.mean, chols, prior.kappa, active)

    def scale_shape(self, n_features):
        return (n_features, n_features)

    def dof_minimum(self, n_features):
        return n_features - 1

    def default_scale(self, covariance, shrink):
        return covariance / shrink

    def check_scale(self, scale):
        return full.Full().check_scale(scale)

    def noise(self, key, covariances, labels, n_features):
        z = jax.random.normal(key, (labels.shape[0], n_features), covariances.dtype)
        return z @ jnp.linalg.cholesky(covariances).T

    def chart(self, at, coordinates):
        """The shared covariance's chart (`covariance_charts.matrices`, EEE)."""
        return covariance_charts.matrices(at[None], coordinates, self.letters)[0]

    def unconstrain(self, covariances):
        return full.cholesky_coordinates(covariances)

    def constrain(self, coordinates):
        return full.from_cholesky_coordinates(coordinates)

    def collapsed(self, covariances, spread, weights, floor_at):
        pooled_spread = np.sum(weights * spread, axis=-2)
        return full.collapsed_matrices(covariances, pooled_spread, floor_at)[..., None]

    def numpyro_prior(self, sample, dist, prior, n_components):
        """$\\Sigma \\sim \\mathcal{W}^{-1}(\\nu, \\Psi)$,
        $\\mu_k \\sim \\mathcal{N}(m, \\Sigma / \\kappa)$."""
        cov = sample("covariances", dist.InverseWishart(prior.dof, scale_matrix=prior.scale))
        normal = dist.MultivariateNormal(prior.mean, cov / prior.kappa)
        return sample("means", normal.expand((n_components,)).to_event(1)), cov


register(Tied())
