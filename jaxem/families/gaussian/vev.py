"""VEV: covariances of varying volume and orientation and common shape, $\\Sigma_k = \\lambda_k
D_k A D_k^\\top$, stored as matrices ``(K, D, D)`` (mclust's VEV), the structure `VEV`. The
orientations are the eigenvectors of the scatters $W_k = L_k \\Omega_k L_k^\\top$; the volumes
and the shape alternate on their eigenvalues (`jaxem.families.gaussian.volumes`), exact to the
inner tolerance. MAP: mclust's M-step with ``priorControl()``, the same on the prior's scatters
(`jaxem.families.gaussian.decomposition_prior`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxem.families.gaussian import decomposition_prior, full, volumes
from jaxem.families.gaussian.full import Full
from jaxem.families.gaussian.structure import register
from jaxem.linalg import graded_eigh

Array = jax.Array


class VEV(decomposition_prior.DecomposedPrior, Full):
    """A volume and orientation per component, one shape, ``(K, D, D)``."""

    name = "VEV"
    aliases = ()
    shared = True  # the shape

    def n_parameters(self, n_components, n_features):
        d = n_features
        return n_components + d - 1 + n_components * d * (d - 1) // 2

    def maximise(self, within, counts, reg_covar, spread):
        """$\\Sigma_k = \\lambda_k L_k A L_k^\\top + \\epsilon I$, each pivot at least its
        floor."""
        cov = common_shape(within, counts)
        cov = cov + reg_covar * jnp.eye(cov.shape[-1], dtype=cov.dtype)
        return full.floor_spectrum(cov, full.floors(cov, spread, reg_covar))

    def prior_power(self, prior, n_features, n_active):
        """$\\gamma = -1$: $e_k = N_k$ (without the means' prior, 0)."""
        return jnp.where(prior.kappa > 0, -1.0, 0.0) * jnp.ones_like(prior.dof)

    def map_estimate(self, within, deviations, counts, prior, n_means):
        s, e = self.scatters_and_counts(within, deviations, counts, prior, n_means)
        cov = common_shape(s, jnp.where(e > 0, e, 1.0))
        return self.fill_empty(cov, counts <= 0, counts)


def common_shape(scatters: Array, counts: Array) -> Array:
    """$\\Sigma_k = \\lambda_k L_k A L_k^\\top$ ``(K, D, D)``: the volumes and shape of
    `jaxem.families.gaussian.volumes` on the eigenvalues of the scatters ``(K, D, D)``."""
    values, vectors = graded_eigh(scatters)  # symmetrised, ascending: one order for every component
    lam, shape = volumes.common_shape(jnp.maximum(values, 0.0), counts)
    cov = jnp.einsum("k,kde,e,kfe->kdf", lam, vectors, shape, vectors)
    return 0.5 * (cov + jnp.swapaxes(cov, -1, -2))


register(VEV())
