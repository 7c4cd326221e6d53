"""EVI: diagonal covariances of equal volume and varying shape, $\\Sigma_k = \\lambda B_k$ with
$B_k$ diagonal and $|B_k| = 1$, stored as the variances ``(K, D)`` (mclust's EVI), the
structure `EVI`.

Maximum likelihood in closed form (Celeux and Govaert 1995): with $s_k = \\operatorname{diag}
W_k$ and $g_k = |\\operatorname{diag} W_k|^{1/D}$ (the geometric mean of $s_k$),
$B_k = s_k / g_k$ and $\\lambda = \\sum_k g_k / N$. MAP: mclust's M-step with
``priorControl()``, the same on the prior's scatters with $N + K + \\nu + 2$ for $N$
(`jaxem.families.gaussian.decomposition_prior`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxem.families.gaussian import decomposition_prior, full
from jaxem.families.gaussian.diag import Diagonal
from jaxem.families.gaussian.structure import register

Array = jax.Array


class EVI(decomposition_prior.DecomposedPrior, Diagonal):
    """Diagonal covariances with one volume and a shape per component, ``(K, D)``."""

    name = "EVI"
    aliases = ()
    shared = True  # the volume

    def n_parameters(self, n_components, n_features):
        return 1 + n_components * (n_features - 1)

    def maximise(self, within, counts, reg_covar, spread):
        """$\\sigma^2_{kd} = \\lambda s_{kd} / g_k + \\epsilon$, each at least its floor; an
        empty component ($g_k = 0$) gets $\\lambda$ for every feature."""
        variance = equal_volume(jnp.maximum(within, 0.0), counts)
        floor = full.floor_at(spread + variance, reg_covar, within.shape[-1])
        return jnp.maximum(variance + reg_covar, floor)

    def prior_power(self, prior, n_features, n_active):
        """$\\gamma = (\\nu + 2) / K$: $\\sum_k e_k = N + K + \\nu + 2$."""
        return (prior.dof + 2) / n_active

    def map_estimate(self, within, deviations, counts, prior, n_means):
        s, e = self.scatters_and_counts(within, deviations, counts, prior, n_means)
        return self.fill_empty(equal_volume(s, e), counts <= 0, counts)


def equal_volume(spreads: Array, counts: Array) -> Array:
    """The variances ``(K, D)``: $\\lambda s_{kd} / g_k$, $\\lambda = \\sum_k g_k / \\sum_k
    N_k$, from the spreads $s_k \\ge 0$ and counts ``(K,)``; 1 for each shape where $g_k = 0$."""
    log_g = jnp.mean(jnp.log(spreads), axis=-1)  # -inf for an empty or degenerate component
    g = jnp.exp(log_g)
    volume = jnp.sum(g) / jnp.sum(counts)
    shape = jnp.where(g[:, None] > 0, spreads / jnp.where(g > 0, g, 1.0)[:, None], 1.0)
    return volume * shape


register(EVI())
