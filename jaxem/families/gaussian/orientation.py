"""A common orientation under varying shapes: the iterative M-step of mclust's EVE and VVE,
$\\Sigma_k = \\lambda_k D A_k D^\\top$ with one orthogonal $D$ for every component.

With the scatters $W_k$ and weights $N_k$ the M-step minimises

$$
f(D, \\Lambda) = \\sum_k \\Big[ N_k \\log |\\Lambda_k| + \\operatorname{tr}(D \\Lambda_k^{-1}
D^\\top W_k) \\Big], \\qquad \\Lambda_k = \\lambda_k A_k \\text{ diagonal},
$$

alternating two updates that each decrease it: given $D$, the diagonals in closed form from
$s_k = \\operatorname{diag}(D^\\top W_k D)$ (VVE: $\\Lambda_k = s_k / N_k$; EVE: $A_k = s_k /
|s_k|^{1/D}$ and $\\lambda = \\sum_k |s_k|^{1/D} / N$); given the diagonals, one
majorisation-minimisation step for $D$ (Browne and McNicholas 2014, "Estimating common
principal components in high dimensions", ADAC 8:217-226): with $w_k$ the largest eigenvalue of
$W_k$, $W_k \\preceq w_k I$ majorises $f$ at the current $D_0$ by a function linear in $D$
whose minimiser over the orthogonal matrices is $D = -V U^\\top$, $U S V^\\top$ the singular
value decomposition of $\\sum_k \\Lambda_k^{-1} D_0^\\top (W_k - w_k I)$. The loop runs in a
``jax.lax.while_loop`` from the eigenvectors of $\\sum_k W_k$ until $f$ changes by less than
`jaxem.families.gaussian.volumes.tolerance` relative (at most `MAX_ITER` passes).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxem.families.gaussian import volumes

Array = jax.Array

MAX_ITER = 2000


def diagonals(scatters: Array, counts: Array, orientation: Array, equal_volume: bool) -> Array:
    """$\\Lambda_k$ ``(K, D)`` given the orientation $D$ ``(D, D)``.

    An empty component (a scatter of zeros, such as one `jaxem.grid` switches off) gets
    spreads of machine epsilon times the data's mean variance: a zero there made its volume
    zero, which changed the other components' common orientation."""
    spreads = jnp.einsum("de,kdf,fe->ke", orientation, scatters, orientation)
    dtype = scatters.dtype
    variance = jnp.trace(jnp.sum(scatters, axis=0)) / (scatters.shape[-1] * jnp.sum(counts))
    floor = jnp.finfo(dtype).eps * jnp.maximum(variance, jnp.finfo(dtype).tiny)
    spreads = jnp.maximum(spreads, floor)
    if not equal_volume:
        return spreads / counts[:, None]
    geometric = jnp.exp(jnp.mean(jnp.log(spreads), axis=-1))  # |s_k|^{1/D}
    return (jnp.sum(geometric) / jnp.sum(counts)) * spreads / geometric[:, None]


def objective(scatters: Array, counts: Array, orientation: Array, lam: Array) -> Array:
    """$f(D, \\Lambda)$ of the module (to be minimised)."""
    spreads = jnp.einsum("de,kdf,fe->ke", orientation, scatters, orientation)
    return jnp.sum(counts * jnp.sum(jnp.log(lam), axis=-1)) + jnp.sum(spreads / lam)


def majorised_step(scatters: Array, orientation: Array, lam: Array) -> Array:
    """One MM update of the orientation given the diagonals."""
    largest = jnp.linalg.eigvalsh(scatters)[:, -1]  # w_k
    eye = jnp.eye(scatters.shape[-1], dtype=scatters.dtype)
    shifted = scatters - largest[:, None, None] * eye
    m = jnp.einsum("ke,de,kdf->ef", 1.0 / lam, orientation, shifted)
    u, _, vt = jnp.linalg.svd(m)
    return -(vt.T @ u.T)


def common_orientation(
    scatters: Array, counts: Array, equal_volume: bool, max_iter: int = MAX_ITER
) -> tuple[Array, Array]:
    """The orientation ``(D, D)`` and diagonals ``(K, D)`` minimising $f$ from ``scatters``
    ``(K, D, D)`` and ``counts`` ``(K,)`` (> 0)."""
    tol = volumes.tolerance(scatters.dtype)
    _, start = jnp.linalg.eigh(jnp.sum(scatters, axis=0))
    lam = diagonals(scatters, counts, start, equal_volume)
    value = objective(scatters, counts, start, lam)

    def not_done(carry):
        _, _, value, previous, i = carry
        return (i < max_iter) & (jnp.abs(previous - value) > tol * jnp.abs(value))

    def update(carry):
        orientation, lam, value, _, i = carry
        orientation = majorised_step(scatters, orientation, lam)
        lam = diagonals(scatters, counts, orientation, equal_volume)
        return orientation, lam, objective(scatters, counts, orientation, lam), value, i + 1

    carry = (start, lam, value, jnp.full_like(value, jnp.inf), jnp.zeros((), jnp.int32))
    orientation, lam, _, _, _ = jax.lax.while_loop(not_done, update, carry)
    return orientation, lam
