"""A common orientation under varying shapes: the iterative M-step of mclust's EVE and VVE,
$\\Sigma_k = \\lambda_k D A_k D^\\top$ with one orthogonal $D$ for every component.

With the scatters $W_k$ and weights $N_k$ the M-step minimises

$$
f(D, \\Lambda) = \\sum_k \\Big[ N_k \\log |\\Lambda_k| + \\operatorname{tr}(D \\Lambda_k^{-1}
D^\\top W_k) \\Big], \\qquad \\Lambda_k = \\lambda_k A_k \\text{ diagonal},
$$

alternating two updates that each decrease it. Given $D$, the diagonals in closed form from
$s_k = \\operatorname{diag}(D^\\top W_k D)$ (VVE: $\\Lambda_k = s_k / N_k$; EVE: $A_k = s_k /
|s_k|^{1/D}$ and $\\lambda = \\sum_k |s_k|^{1/D} / N$). Given the diagonals, plane rotations
of $D$ in the manner of Jacobi's eigenvalue method (and of Flury and Gautschi's 1986 algorithm
for common principal components): rotating columns $p$ and $q$ by an angle $\\theta$ changes
$f$ by $\\alpha \\cos 2\\theta + \\beta \\sin 2\\theta$ plus a constant, with

$$
\\alpha = \\tfrac12 \\sum_k (\\Lambda_{kp}^{-1} - \\Lambda_{kq}^{-1})
(d_p^\\top W_k d_p - d_q^\\top W_k d_q), \\qquad
\\beta = \\sum_k (\\Lambda_{kp}^{-1} - \\Lambda_{kq}^{-1}) \\, d_p^\\top W_k d_q,
$$

so the best angle is exact: $2\\theta = \\operatorname{atan2}(-\\beta, -\\alpha)$. Rotations of
disjoint pairs change disjoint columns and, given the diagonals, disjoint terms of $f$: a
round-robin schedule rotates $\\lfloor D/2 \\rfloor$ pairs at once, a sweep (every pair once)
is $D - 1$ rounds ($D$ if $D$ is odd), and the diagonals are refreshed after every round.

The sweeps run in a ``jax.lax.while_loop`` from the eigenvectors of $\\sum_k W_k$ or the last
M-step's orientation, whichever has the lower $f$, until $f$ changes by less than the square
root of the dtype's machine epsilon relative (mclust's inner tolerance), or for at most
`MAX_ITER` sweeps. Every update decreases $f$, so an M-step never ends above its start: when
the cap or the tolerance stops it short of the minimiser, it is a generalized EM step, and EM
still ascends; as the next M-step starts where this one ended, EM's fixed point is the exact
one (`tests/test_covariance_models.py` compares EVE with mclust there).

Why rotations rather than the majorisation-minimisation steps of Browne and McNicholas (2014,
"Estimating common principal components in high dimensions"; mclust alternates their two
majorisers): on iris's scatters (K = 3 to 9, from the pooled eigenvectors, to 1e-10 relative)
one majoriser took 125 to 430 passes, mclust's pair of them 38 to 102 (each pass two singular
value decompositions), the sweeps 10 to 49. `select` over VVE for K = 1..9 on iris (float64,
32 k-means starts and the hierarchical one per cell, a second call, 2 cores) took 16.9 s with
one majoriser (at most 100 passes per M-step, to 1e-12), 1.3 s with the sweeps (at most 20,
to the square root of epsilon), 1.1 s with at most 5; EVE 15.0, 1.7 and 1.2 s. Under ``vmap``
(the starts of `select` side by side) every member waits for the slowest, so the cap matters as
much as the rate, the more so as D grows (a sweep is D - 1 or D rounds): on wine (178 x 13,
same grid) EVE took 162 s with 20 sweeps allowed, 52 s with 5, VVE 42 s and 26 s, every cell's
BIC the same or better.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxem.linalg import round_robin

Array = jax.Array

MAX_ITER = 5  # sweeps per M-step (see above)


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


def rotated(scatters: Array, orientation: Array, lam: Array, first: Array, second: Array) -> Array:
    """``orientation`` ``(D, D)`` with each pair of columns ``(first[j], second[j])`` (``first``
    and ``second`` ``(n_pairs,)``, the pairs disjoint) rotated by the angle that minimises $f$
    given the scatters ``(K, D, D)`` and the diagonals ``lam`` ``(K, D)``."""
    p_cols, q_cols = orientation[:, first], orientation[:, second]
    pp = jnp.einsum("dj,kde,ej->kj", p_cols, scatters, p_cols)
    qq = jnp.einsum("dj,kde,ej->kj", q_cols, scatters, q_cols)
    pq = jnp.einsum("dj,kde,ej->kj", p_cols, scatters, q_cols)
    gap = 1.0 / lam[:, first] - 1.0 / lam[:, second]
    alpha = 0.5 * jnp.sum(gap * (pp - qq), axis=0)
    beta = jnp.sum(gap * pq, axis=0)
    # atan2(-0, -0) is -pi, a swap of the two columns that changes nothing: stay instead
    flat = jnp.hypot(alpha, beta) == 0
    theta = jnp.where(flat, 0.0, 0.5 * jnp.arctan2(-beta, -alpha))
    cos, sin = jnp.cos(theta), jnp.sin(theta)
    orientation = orientation.at[:, first].set(cos * p_cols + sin * q_cols)
    return orientation.at[:, second].set(cos * q_cols - sin * p_cols)


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
    tol = float(np.sqrt(np.finfo(scatters.dtype).eps))
    firsts, seconds = map(jnp.asarray, round_robin(scatters.shape[-1]))
    _, pooled = jnp.linalg.eigh(jnp.sum(scatters, axis=0))
    lam = diagonals(scatters, counts, pooled, equal_volume)
    value = objective(scatters, counts, pooled, lam)
    if start is not None:
        start = start.astype(scatters.dtype)
        lam_start = diagonals(scatters, counts, start, equal_volume)
        value_start = objective(scatters, counts, start, lam_start)
        better = value_start < value  # never for a NaN start (no iterate)
        start = jnp.where(better, start, pooled)
        lam = jnp.where(better, lam_start, lam)
        value = jnp.where(better, value_start, value)
    else:
        start = pooled

    def not_done(carry):
        _, _, value, previous, i = carry
        return (i < max_iter) & (jnp.abs(previous - value) > tol * jnp.abs(value))

    def rotate(pair, carry):
        orientation = rotated(scatters, *carry, firsts[pair], seconds[pair])
        return orientation, diagonals(scatters, counts, orientation, equal_volume)

    def update(carry):
        orientation, lam, value, _, i = carry
        orientation, lam = jax.lax.fori_loop(0, len(firsts), rotate, (orientation, lam))
        return orientation, lam, objective(scatters, counts, orientation, lam), value, i + 1

    carry = (start, lam, value, jnp.full_like(value, jnp.inf), jnp.zeros((), jnp.int32))
    orientation, lam, _, _, _ = jax.lax.while_loop(not_done, update, carry)
    return orientation, lam
