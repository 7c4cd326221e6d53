"""VEI: diagonal covariances of varying volume and common shape, $\\Sigma_k = \\lambda_k A$ with
$A$ diagonal and $|A| = 1$, stored as the variances ``(K, D)`` (mclust's VEI), the structure
`VEI`. Its M-step is iterative (`jaxem.families.gaussian.volumes`, on the diagonals of the
scatters) and exact to the inner tolerance. Maximum likelihood only.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxem.families.gaussian import full, volumes
from jaxem.families.gaussian.diag import Diagonal
from jaxem.families.gaussian.structure import register

Array = jax.Array


class VEI(Diagonal):
    """Diagonal covariances with a volume per component and one shape, ``(K, D)``."""

    name = "VEI"
    aliases = ()
    has_map = False

    def n_parameters(self, n_components, n_features):
        return n_components + n_features - 1

    def maximise(self, within, counts, reg_covar, spread):
        """$\\sigma^2_{kd} = \\lambda_k a_d + \\epsilon$, each at least its floor."""
        lam, shape = volumes.common_shape(jnp.maximum(within, 0.0), counts)
        variance = lam[:, None] * shape[None, :]
        floor = full.floor_at(spread + variance, reg_covar, within.shape[-1])
        return jnp.maximum(variance + reg_covar, floor)


register(VEI())
