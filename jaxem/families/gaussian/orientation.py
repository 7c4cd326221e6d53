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
``jax.lax.while_loop`` from the eigenvectors of $\\sum_k W_k$ or the last M-step's orientation,
whichever has the lower $f$, until $f$ changes by less than
`jaxem.families.gaussian.volumes.tolerance` relative, or for at most `MAX_ITER` passes.

Each pass decreases $f$, so an M-step never ends above its start: when the cap stops it short of
the minimiser, it is a generalized EM step, and EM still ascends. Warm-started, a fit's later
M-steps need a few passes; the first ones may need hundreds (the majoriser is loose when the
scatters' eigenvalues spread over orders of magnitude), and a
batch of fits (`jaxem.select`'s starts and cells under ``vmap``) waits for its slowest member.
With every M-step capped at 100 passes (rather than the first at 2000), `select` over EVE and
VVE for K = 1..9 on banknote (float64, 32 starts) took 89 s instead of 117 s, and no cell of
faithful, iris, diabetes or banknote ended more than 2 BIC units below mclust's either way. So
a fit's first iterates are not mclust's (iris EVE, 3 components: 0.5 % apart after one step),
but its fixed point is (`tests/test_covariance_models.py`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxem.families.gaussian import volumes

Array = jax.Array

MAX_ITER = 100  # passes per M-step (see above)


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


def of_covariances(covariances: Array) -> Array:
    """The common orientation ``(D, D)`` of covariances ``(K, D, D)`` that share one: the
    eigenvectors of $\\sum_k k \\Sigma_k$ (distinct multipliers, so that a shape with two equal
    axes in one component does not leave the orientation undetermined)."""
    multipliers = jnp.arange(1, covariances.shape[0] + 1, dtype=covariances.dtype)
    _, vectors = jnp.linalg.eigh(jnp.einsum("k,kde->de", multipliers, covariances))
    return vectors


def common_orientation(
    scatters: Array,
    counts: Array,
    equal_volume: bool,
    start: Array | None = None,
    max_iter: int = MAX_ITER,
) -> tuple[Array, Array]:
    """The orientation ``(D, D)`` and diagonals ``(K, D)`` minimising $f$ from ``scatters``
    ``(K, D, D)`` and ``counts`` ``(K,)`` (> 0), from the eigenvectors of $\\sum_k W_k$ or
    from ``start`` ``(D, D)`` (the last M-step's orientation), whichever has the lower $f$:
    as mclust, which carries the orientation from one M-step to the next, a fit's later
    M-steps then take a few iterations instead of hundreds, and none ends above its start."""
    tol = volumes.tolerance(scatters.dtype)
    _, pooled = jnp.linalg.eigh(jnp.sum(scatters, axis=0))
    lam = diagonals(scatters, counts, pooled, equal_volume)
    value = objective(scatters, counts, pooled, lam)
    if start is not None:
        start = start.astype(scatters.dtype)
        lam_start = diagonals(scatters, counts, start, equal_volume)
        value_start = objective(scatters, counts, start, lam_start)
        better = value_start < value
        start = jnp.where(better, start, pooled)
        lam = jnp.where(better, lam_start, lam)
        value = jnp.minimum(value_start, value)
    else:
        start = pooled

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
