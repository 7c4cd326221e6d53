"""VEE: covariances of varying volume and a common shape and orientation, $\\Sigma_k =
\\lambda_k C$ with $|C| = 1$, stored as matrices ``(K, D, D)`` (mclust's VEE), the structure
`VEE`.

The M-step alternates the two closed-form block updates of the expected complete-data
log-likelihood, $C \\propto \\sum_k W_k / \\lambda_k$ (determinant one) and $\\lambda_k =
\\operatorname{tr}(W_k C^{-1}) / (D N_k)$ (Celeux and Govaert 1995), in a
``jax.lax.while_loop`` from the current covariances' volumes (a fit's first M-step: from $C =
I$) until the volumes change by less than `jaxem.families.gaussian.volumes.tolerance` relative,
or for at most `MAX_ITER` passes: each update increases the objective, so the M-step is the
maximiser to that tolerance or a generalized EM step. Maximum likelihood only (mclust has no
prior for VEE either).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxem.families.gaussian import full, volumes
from jaxem.families.gaussian.full import Full
from jaxem.families.gaussian.structure import register

Array = jax.Array

# Passes per M-step. A fit's later M-steps start at the last one's volumes and need a few; a
# component near collapse can take hundreds, and under `vmap` (`jaxem.select`'s starts side
# by side) every member waits for the slowest: iris, K = 1..9, 33 starts, 8.1 s with a cap of
# 500 passes, 1.5 s with 20. A capped M-step still ascends (a generalized EM step).
MAX_ITER = 20


def _volumes(scatters: Array, counts: Array, inverse: Array) -> Array:
    d = scatters.shape[-1]
    return jnp.einsum("kde,de->k", scatters, inverse) / (d * counts)


def _shape(scatters: Array, lam: Array) -> Array:
    safe = jnp.where(lam > 0, lam, 1.0)
    total = jnp.einsum("k,kde->de", jnp.where(lam > 0, 1.0 / safe, 0.0), scatters)
    total = 0.5 * (total + total.T)
    _, log_det = jnp.linalg.slogdet(total)
    return total / jnp.exp(log_det / total.shape[-1])


class VEE(Full):
    """A volume per component, one shape and orientation, ``(K, D, D)``."""

    name = "VEE"
    aliases = ()
    has_map = False

    def n_parameters(self, n_components, n_features):
        d = n_features
        return n_components + d * (d + 1) // 2 - 1

    def maximise(self, within, counts, reg_covar, spread):
        """$\\Sigma_k = \\lambda_k C + \\epsilon I$, each pivot at least its floor."""
        return self.maximise_from(None, within, counts, reg_covar, spread)

    def maximise_from(self, previous, within, counts, reg_covar, spread):
        """As `maximise`, the alternation starting from the volumes $|\\Sigma_k|^{1/D}$ of the
        current covariances ``previous`` (or None, or NaN: from $C = I$)."""
        w = 0.5 * (within + jnp.swapaxes(within, -1, -2))
        eye = jnp.eye(w.shape[-1], dtype=w.dtype)
        lam = _volumes(w, counts, eye)
        if previous is not None:
            _, log_det = jnp.linalg.slogdet(previous.astype(w.dtype))
            lam = jnp.where(jnp.isnan(log_det), lam, jnp.exp(log_det / w.shape[-1]))

        def not_done(carry):
            _, lam, previous, i = carry
            change = volumes.relative_change(lam, previous)
            return (i < MAX_ITER) & (change > volumes.tolerance(w.dtype))

        def update(carry):
            _, lam, _, i = carry
            shape = _shape(w, lam)
            return shape, _volumes(w, counts, jnp.linalg.inv(shape)), lam, i + 1

        start = (eye, lam, jnp.full_like(lam, jnp.inf), jnp.zeros((), jnp.int32))
        shape, lam, _, _ = jax.lax.while_loop(not_done, update, start)
        cov = lam[:, None, None] * shape[None]
        cov = 0.5 * (cov + jnp.swapaxes(cov, -1, -2)) + reg_covar * eye
        return full.floor_spectrum(cov, full.floors(cov, spread, reg_covar))


register(VEE())
