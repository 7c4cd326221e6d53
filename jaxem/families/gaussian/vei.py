"""VEI: diagonal covariances of varying volume and common shape, $\\Sigma_k = \\lambda_k A$ with
$A$ diagonal and $|A| = 1$, stored as the variances ``(K, D)`` (mclust's VEI), the structure
`VEI`. Its M-step is iterative (`jaxem.families.gaussian.volumes`, on the diagonals of the
scatters) and exact to the inner tolerance. MAP: mclust's M-step with ``priorControl()``, the same
on the prior's scatters with $D N_k + \\nu + 3$ for $D N_k$
(`jaxem.families.gaussian.decomposition_prior`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxem.families.gaussian import decomposition_prior, full, volumes
from jaxem.families.gaussian.diag import Diagonal
from jaxem.families.gaussian.structure import register

Array = jax.Array


class VEI(decomposition_prior.DecomposedPrior, Diagonal):
    """Diagonal covariances with a volume per component and one shape, ``(K, D)``."""

    name = "VEI"
    aliases = ()
    shared = True  # the shape

    def n_parameters(self, n_components, n_features):
        return n_components + n_features - 1

    def maximise(self, within, counts, reg_covar, spread):
        """$\\sigma^2_{kd} = \\lambda_k a_d + \\epsilon$, each at least its floor."""
        lam, shape = volumes.common_shape(jnp.maximum(within, 0.0), counts)
        variance = lam[:, None] * shape[None, :]
        floor = full.floor_at(spread + variance, reg_covar, within.shape[-1])
        return jnp.maximum(variance + reg_covar, floor)

    def prior_power(self, prior, n_features, n_active):
        """$\\gamma = (\\nu + 3 - D) / D$: $D e_k = D N_k + \\nu + 3$ (without the means' prior
        $(\\nu + 2) / D$)."""
        return jnp.where(prior.kappa > 0, prior.dof + 3 - n_features, prior.dof + 2) / n_features

    def map_estimate(self, within, deviations, counts, prior, n_means):
        s, e = self.scatters_and_counts(within, deviations, counts, prior, n_means)
        lam, shape = volumes.common_shape(s, jnp.where(e > 0, e, 1.0))
        return self.fill_empty(lam[:, None] * shape[None, :], counts <= 0, counts)


register(VEI())
