"""Varying volumes with a common shape: the iterative M-step of mclust's VEI and VEV (and,
with a matrix for the shape, VEE).

With component spreads $s_{kd} \\ge 0$ (the diagonal of the scatter $W_k$ for VEI, its
eigenvalues for VEV) and weights $N_k$, the expected complete-data log-likelihood in the
volumes $\\lambda_k$ and the shape $a$ ($\\prod_d a_d = 1$) is, up to constants,

$$
-\\tfrac12 \\sum_k \\Big[ N_k D \\log \\lambda_k + \\sum_d \\frac{s_{kd}}{\\lambda_k a_d} \\Big],
$$

maximised in each block in closed form: $\\lambda_k = \\sum_d s_{kd} / (a_d D N_k)$ given the
shape, $a \\propto \\sum_k s_k / \\lambda_k$ (normalised to determinant one) given the volumes.
Alternating the two (Celeux and Govaert 1995) increases the objective at every update and
converges to its maximiser; it runs in a ``jax.lax.while_loop`` inside the M-step, from the
shape $a = 1$, until the volumes change by less than `tolerance` relative (1e-12 in float64;
or ``max_iter`` passes), as mclust's inner loop does (its default tolerance is
$\\sqrt{\\varepsilon}$).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array

TOL = 1e-12  # relative change of the volumes; at least 100 machine epsilons of the dtype
MAX_ITER = 500
ROUNDING = 1e3  # spreads under this many epsilons of the largest are zeros (`exact_zeros`)


def tolerance(dtype) -> float:
    """The inner loop's tolerance in ``dtype``: `TOL`, or 100 machine epsilons if larger."""
    return max(TOL, 100 * float(jnp.finfo(dtype).eps))


def relative_change(volumes: Array, previous: Array) -> Array:
    """The largest relative change of the volumes ``(K,)``; a volume of zero (a component with
    no weight) counts only by its absolute change. (Dividing by ``max(volumes, 1e-300)``, which
    is 0 in float32, made 0/0 = NaN there: every fit with an empty component, each of `jaxem.
    select`'s masked cells, stopped the loop after one pass.)"""
    scale = jnp.where(volumes > 0, volumes, 1.0)
    return jnp.max(jnp.abs(volumes - previous) / scale)


def normalised(values: Array) -> Array:
    """``values`` ``(..., D)`` > 0 divided by their geometric mean: determinant one."""
    return values / jnp.exp(jnp.mean(jnp.log(values), axis=-1, keepdims=True))


def exact_zeros(spreads: Array) -> Array:
    """``spreads`` ``(K, D)`` with those under `ROUNDING` machine epsilons of the largest of
    their column (the same feature, or the same rank of eigenvalue, in every component) set to
    zero: there they are the rounding of a zero (the scatter of a component on one point, or
    along a direction its points do not span). Left as they are, such a component's spreads
    over its rounding-level volume, $s_k / \\lambda_k$, are of order one and pull the common
    shape towards noise: a t mixture's VEV fit with a one-point component lost 5e-4 of its
    objective in an iteration. Column by column, so that features in far-apart units keep
    their small spreads."""
    noise = ROUNDING * jnp.finfo(spreads.dtype).eps * jnp.max(spreads, axis=0)
    return jnp.where(spreads > noise, spreads, 0.0)


def volumes_given(spreads: Array, counts: Array, shape: Array) -> Array:
    """$\\lambda_k = \\sum_d s_{kd} / (a_d D N_k)$, ``(K,)``."""
    return jnp.sum(spreads / shape, axis=-1) / (spreads.shape[-1] * counts)


def shape_given(spreads: Array, volumes: Array) -> Array:
    """$a \\propto \\sum_k s_k / \\lambda_k$ with determinant one, ``(D,)`` (an empty component,
    $\\lambda_k = 0$, adds nothing)."""
    safe = jnp.where(volumes > 0, volumes, 1.0)
    total = jnp.sum(jnp.where((volumes > 0)[:, None], spreads / safe[:, None], 0.0), axis=0)
    return normalised(jnp.maximum(total, jnp.finfo(spreads.dtype).tiny))


def common_shape(spreads: Array, counts: Array, max_iter: int = MAX_ITER) -> tuple[Array, Array]:
    """The volumes ``(K,)`` and common shape ``(D,)`` maximising the objective of the module
    from ``spreads`` ``(K, D)`` and ``counts`` ``(K,)`` (> 0)."""
    tol = tolerance(spreads.dtype)
    spreads = exact_zeros(spreads)
    shape = jnp.ones(spreads.shape[-1], spreads.dtype)
    volumes = volumes_given(spreads, counts, shape)

    def not_done(carry):
        _, volumes, previous, i = carry
        change = relative_change(volumes, previous)
        return (i < max_iter) & (change > tol)

    def update(carry):
        _, volumes, _, i = carry
        shape = shape_given(spreads, volumes)
        return shape, volumes_given(spreads, counts, shape), volumes, i + 1

    start = (shape, volumes, jnp.full_like(volumes, jnp.inf), jnp.zeros((), jnp.int32))
    shape, volumes, _, _ = jax.lax.while_loop(not_done, update, start)
    return volumes, shape
