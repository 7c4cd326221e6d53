"""EEV: covariances of equal volume and shape and varying orientation, $\\Sigma_k = \\lambda D_k
A D_k^\\top$, stored as matrices ``(K, D, D)`` (mclust's EEV), the structure `EEV`.

Maximum likelihood in closed form (Celeux and Govaert 1995): with the eigendecompositions
$W_k = L_k \\Omega_k L_k^\\top$ (eigenvalues in one order for every component),
$D_k = L_k$ and $\\lambda A = \\sum_k \\Omega_k / N$, so that
$\\Sigma_k = L_k (\\sum_j \\Omega_j / N) L_k^\\top$. MAP: mclust's M-step with
``priorControl()``, the same on $\\Psi + W_k$ with $N + \\nu + D + 1$ for $N$: mclust's EEV
sets the means' shrinkage to zero, so the means' prior is flat here and they are the clusters'
averages (`jaxem.families.gaussian.decomposition_prior`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxem.families.gaussian import decomposition_prior, full
from jaxem.families.gaussian.full import Full
from jaxem.families.gaussian.structure import register
from jaxem.linalg import graded_eigh

Array = jax.Array


class EEV(decomposition_prior.DecomposedPrior, Full):
    """One volume and shape, an orientation per component, ``(K, D, D)``."""

    name = "EEV"
    aliases = ()
    shared = True  # the volume and shape
    shrinks_means = False  # as mclust's mseevp, which sets the prior's shrinkage to zero

    def n_parameters(self, n_components, n_features):
        d = n_features
        return d + n_components * d * (d - 1) // 2

    def maximise(self, within, counts, reg_covar, spread):
        """$\\Sigma_k = L_k (\\sum_j \\Omega_j / N) L_k^\\top + \\epsilon I$, each pivot at least
        its floor."""
        cov = common_spectrum(within, counts)
        cov = cov + reg_covar * jnp.eye(cov.shape[-1], dtype=cov.dtype)
        return full.floor_spectrum(cov, full.floors(cov, spread, reg_covar))

    def prior_power(self, prior, n_features, n_active):
        """$\\gamma = (\\nu + D + 1) / K$: $\\sum_k e_k = N + \\nu + D + 1$ (flat means)."""
        return (prior.dof + n_features + 1) / n_active

    def map_estimate(self, within, deviations, counts, prior, n_means):
        s, e = self.scatters_and_counts(within, deviations, counts, prior, n_means)
        return common_spectrum(s, e)

    def fill_empty(self, covariances, empty, counts):
        return covariances  # an empty component's matrix already has the common volume, shape


def common_spectrum(scatters: Array, counts: Array) -> Array:
    """$\\Sigma_k = L_k (\\sum_j \\Omega_j / \\sum_j N_j) L_k^\\top$ ``(K, D, D)`` from the
    scatters $W_k = L_k \\Omega_k L_k^\\top$ ``(K, D, D)`` and counts ``(K,)``."""
    values, vectors = graded_eigh(scatters)  # symmetrised, ascending, (K, D) and (K, D, D)
    shape = jnp.sum(jnp.maximum(values, 0.0), axis=0) / jnp.sum(counts)  # lambda A, (D,)
    cov = jnp.einsum("kde,e,kfe->kdf", vectors, shape, vectors)
    return 0.5 * (cov + jnp.swapaxes(cov, -1, -2))


register(EEV())
