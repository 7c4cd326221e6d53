"""EVE: covariances of equal volume, varying shape and a common orientation, $\\Sigma_k =
\\lambda D A_k D^\\top$, stored as matrices ``(K, D, D)`` (mclust's EVE), the structure `EVE`.
Its M-step is iterative (`jaxem.families.gaussian.orientation`, majorisation-minimisation for
the orientation). Maximum likelihood only (mclust has no prior for EVE either).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxem.families.gaussian import full, orientation
from jaxem.families.gaussian.full import Full
from jaxem.families.gaussian.structure import register

Array = jax.Array


class EVE(Full):
    """One volume and orientation, a shape per component, ``(K, D, D)``."""

    name = "EVE"
    aliases = ()
    has_map = False
    equal_volume = True

    def n_parameters(self, n_components, n_features):
        d = n_features
        return 1 + n_components * (d - 1) + d * (d - 1) // 2

    def maximise(self, within, counts, reg_covar, spread):
        """$\\Sigma_k = D \\Lambda_k D^\\top + \\epsilon I$, each pivot at least its floor."""
        return self.maximise_from(None, within, counts, reg_covar, spread)

    def maximise_from(self, previous, within, counts, reg_covar, spread):
        """As `maximise`, the orientation's iterations starting from that of the current
        covariances ``previous`` (or None, or NaN: no start of its own) where it is the better
        start."""
        w = 0.5 * (within + jnp.swapaxes(within, -1, -2))
        start = None if previous is None else orientation.of_covariances(previous)
        rotation, lam = orientation.common_orientation(w, counts, self.equal_volume, start)
        cov = jnp.einsum("de,ke,fe->kdf", rotation, lam, rotation)
        cov = 0.5 * (cov + jnp.swapaxes(cov, -1, -2))
        cov = cov + reg_covar * jnp.eye(cov.shape[-1], dtype=cov.dtype)
        return full.floor_spectrum(cov, full.floors(cov, spread, reg_covar))


register(EVE())
