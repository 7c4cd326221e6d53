"""EVV: covariances of equal volume, varying shape and orientation, $\\Sigma_k = \\lambda C_k$
with $|C_k| = 1$, stored as matrices ``(K, D, D)`` (mclust's EVV), the structure `EVV`.

Maximum likelihood in closed form (Celeux and Govaert 1995): with $g_k = |W_k|^{1/D}$,
$C_k = W_k / g_k$ and $\\lambda = \\sum_k g_k / N$. Maximum likelihood only (mclust has no
prior for EVV either).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxem.families.gaussian import full
from jaxem.families.gaussian.full import Full
from jaxem.families.gaussian.structure import register

Array = jax.Array


class EVV(Full):
    """One volume, a shape and orientation per component, ``(K, D, D)``."""

    name = "EVV"
    aliases = ()
    has_map = False

    def n_parameters(self, n_components, n_features):
        d = n_features
        return n_components * d * (d + 1) // 2 - (n_components - 1)

    def maximise(self, within, counts, reg_covar, spread):
        """$\\Sigma_k = \\lambda W_k / g_k + \\epsilon I$, each pivot at least its floor; a
        component whose scatter is singular ($g_k = 0$) gets $\\lambda I$."""
        d = within.shape[-1]
        w = 0.5 * (within + jnp.swapaxes(within, -1, -2))
        sign, log_det = jnp.linalg.slogdet(w)
        g = jnp.where(sign > 0, jnp.exp(log_det / d), 0.0)
        volume = jnp.sum(g) / jnp.sum(counts)
        eye = jnp.eye(d, dtype=w.dtype)
        shape = jnp.where((g > 0)[:, None, None], w / jnp.where(g > 0, g, 1.0)[:, None, None], eye)
        cov = volume * shape + reg_covar * eye
        return full.floor_spectrum(cov, full.floors(cov, spread, reg_covar))


register(EVV())
