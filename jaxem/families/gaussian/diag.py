"""Diagonal covariances: per component and feature a variance $\\sigma^2_{kd}$, ``(K, D)``
(mclust's VVI), the structure `Diagonal`; and the arithmetic of per-feature variances that the
other independent structures share.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxem import priors
from jaxem.families.gaussian import covariance_charts, full
from jaxem.families.gaussian.structure import CovarianceStructure, register
from jaxem.validation import worst

Array = jax.Array


def quadratic_form(variances: Array, offsets: Array) -> tuple[Array, Array, Array, Array]:
    """$\\sum_d (x_d - o_{kd})^2 / \\sigma^2_{kd} = a_k \\cdot q(x) + b_k \\cdot x + c_k$ with
    $q(x) = x^2$: ``a = 1/σ²`` ``(K, D)``, ``b = -2 o/σ²``, ``c = Σ_d o²/σ²`` and
    $\\log|\\Sigma_k|$; ``variances`` ``(K, D)``."""
    inv = 1.0 / variances
    return (
        inv,
        -2.0 * offsets * inv,
        jnp.sum(offsets * offsets * inv, axis=-1),
        jnp.sum(jnp.log(variances), axis=-1),
    )


def scatter_features(moments: Array, firsts: Array, counts: Array, offsets: Array) -> Array:
    """$\\sum_n wr_{nk} (x_{nd} - o_{kd})^2$, ``(K, D)``, from the weighted sums of the squares
    ``moments`` ``(K, D)``."""
    return moments - 2.0 * firsts * offsets + counts[:, None] * offsets * offsets


def within_features(scatter: Array, shifts: Array, inv_counts: Array) -> Array:
    """$W_{kd} = S_{kd} - d_{kd}^2 / N_k$, ``(K, D)``."""
    return scatter - inv_counts[:, None] * shifts * shifts


def is_positive(covariances: np.ndarray) -> bool:
    return bool(np.all(np.asarray(covariances) > 0))


class Diagonal(CovarianceStructure):
    """Per component and feature a variance, ``(K, D)`` (mclust's VVI)."""

    name = "diag"
    aliases = ("VVI",)
    coupled = False

    def shape(self, n_components, n_features):
        return (n_components, n_features)

    def n_parameters(self, n_components, n_features):
        return n_components * n_features

    def matrices(self, covariances, n_features):
        return covariances[..., :, None] * jnp.eye(n_features, dtype=covariances.dtype)

    def variances(self, covariances, n_components, n_features):
        return covariances

    def permute(self, covariances, order):
        return jnp.take(covariances, order, axis=covariances.ndim - 2)

    def is_valid(self, covariances):
        return is_positive(covariances)

    def squares(self, centred):
        """$x_d^2$, ``(D, N)``."""
        return centred * centred

    def quadratic_form(self, covariances, offsets):
        return quadratic_form(covariances, offsets)

    def scatter(self, moments, firsts, counts, offsets):
        return scatter_features(moments, firsts, counts, offsets)

    def reduce(self, scatters):
        return scatters

    def within(self, scatter, shifts, inv_counts):
        return within_features(scatter, shifts, inv_counts)

    def maximise(self, within, counts, reg_covar, spread):
        """$\\sigma^2_{kd} = W_{kd} / N_k + \\epsilon$, at least its `full.floor_at` (above
        $\\epsilon$ only in low precision)."""
        variance = jnp.maximum(within / counts[:, None], 0.0)
        floor = full.floor_at(spread + variance, reg_covar, within.shape[-1])
        return jnp.maximum(variance + reg_covar, floor)

    def fill_empty(self, covariances, empty, counts):
        pooled = (counts / jnp.sum(counts)) @ covariances
        return jnp.where(empty[:, None], pooled[None], covariances)

    def map_estimate(self, within, deviations, counts, prior, n_means):
        """$\\sigma^2_{kd} = [\\psi_d + W_{kd} + \\tfrac{N_k\\kappa}{N_k+\\kappa}
        (\\bar x_{kd} - m_d)^2] / (N_k + \\nu + 3)$."""
        shrunk = counts * prior.kappa / (counts + prior.kappa)
        b = prior.scale + jnp.maximum(within, 0.0) + shrunk[:, None] * deviations * deviations
        return b / (counts + prior.dof + 3)[:, None]

    def log_prior(self, means, covariances, prior, active=None):
        """$\\sum_{k,d} \\log \\mathrm{InvGamma}(\\sigma^2_{kd} \\mid \\nu/2, \\psi_d/2)
        + \\log \\mathcal{N}(\\mu_{kd} \\mid m_d, \\sigma^2_{kd} / \\kappa)$."""
        rate = jnp.broadcast_to(0.5 * prior.scale, covariances.shape)
        return priors.log_inverse_gamma(covariances, 0.5 * prior.dof, rate) + (
            priors.log_normal_given_var(means, prior.mean, covariances, prior.kappa)
        )

    def scale_shape(self, n_features):
        return (n_features,)

    def dof_minimum(self, n_features):
        return 0

    def default_scale(self, covariance, shrink):
        """mclust gives its diagonal models one common scale: the average variance."""
        d = covariance.shape[-1]
        return jnp.full((d,), jnp.mean(jnp.diagonal(covariance)) / shrink, covariance.dtype)

    def check_scale(self, scale):
        return None if np.all(scale > 0) else f"positive; got {worst(scale)}"

    def noise(self, key, covariances, labels, n_features):
        z = jax.random.normal(key, (labels.shape[0], n_features), covariances.dtype)
        return z * jnp.sqrt(covariances[labels])

    def chart(self, at, coordinates):
        """`covariance_charts.variances` by the structure's letters."""
        return covariance_charts.variances(at, coordinates, self.letters)

    def unconstrain(self, covariances):
        """The variances' logarithms."""
        return jnp.log(covariances)

    def constrain(self, coordinates):
        return jnp.exp(coordinates)

    def collapsed(self, covariances, spread, weights, floor_at):
        return ~np.all(covariances >= 2 * floor_at(spread + covariances), axis=-1)

    def numpyro_prior(self, sample, dist, prior, n_components):
        """$\\sigma^2_{kd} \\sim \\mathrm{InvGamma}(\\nu/2, \\psi_d/2)$,
        $\\mu_{kd} \\sim \\mathcal{N}(m_d, \\sigma^2_{kd} / \\kappa)$."""
        shape = (n_components, prior.mean.shape[0])
        rate = jnp.broadcast_to(prior.scale / 2, shape)
        var = sample("covariances", dist.InverseGamma(prior.dof / 2, rate).to_event(2))
        normal = dist.Normal(prior.mean, jnp.sqrt(var / prior.kappa))
        return sample("means", normal.to_event(2)), var


register(Diagonal())
