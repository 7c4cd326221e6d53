"""The information in the data about the parameters, by automatic differentiation.

All matrices here are in a model's chart (`jaxem.charts`): ``P = n_parameters`` coordinates,
zero at the estimate $\\hat\\theta$. With the objective $\\ell(\\theta) = \\sum_n w_n \\log
p(x_n \\mid \\theta)$ (plus $\\log p(\\theta)$ with a prior, whose mode is then the estimate)
and $Q(\\theta' \\mid \\theta)$ the expected complete-data log-likelihood (plus
$\\log p(\\theta')$), the estimators of the information are

- **observed**: $I = -\\nabla^2 \\ell(\\hat\\theta)$, Hessian-vector products of the E-step's
  log-likelihood (forward over reverse mode), one column at a time in batches;
- **Louis** (1982): $I = I_c - I_m$, the complete-data information
  $I_c = -\\nabla^2_{\\theta'} Q(\\theta' \\mid \\hat\\theta)$ less the missing information
  $I_m = \\sum_n w_n \\mathrm{Var}_{z_n \\mid x_n}[\\nabla \\log p(x_n, z_n \\mid \\hat\\theta)]$,
  for models with one discrete latent value per sample (mixtures);
- **Oakes** (1999): $I = -\\big[\\partial^2_{\\theta'\\theta'} Q + \\partial^2_{\\theta'\\theta}
  Q\\big]$ at $\\theta' = \\theta = \\hat\\theta$: the derivative of Fisher's identity
  $\\nabla \\ell(\\theta) = \\nabla_{\\theta'} Q(\\theta' \\mid \\theta)|_{\\theta' = \\theta}$;
- **SEM** (Meng and Rubin 1991): $I = I_c (I - DM)$, with $DM$ the Jacobian of the EM map
  $\\theta \\mapsto M(\\theta)$ at its fixed point (`jax.jacfwd` through the E- and M-steps),
  whose spectral radius is EM's rate of convergence (`em_rate`).

And per-sample scores $s_n = \\nabla \\log p(x_n \\mid \\hat\\theta)$ (`scores`), for the sandwich
$I^{-1} (\\sum_n w_n s_n s_n^\\top) I^{-1}$ (`jaxem.uncertainty`). At the maximum all four
informations are the same matrix (up to rounding; SEM up to the convergence of the fit and, for
an M-step that iterates, of its inner loop); they differ in what they need of a model: the
observed information only its E-step and chart.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.flatten_util
import jax.numpy as jnp

from jaxem.algorithm import m_step
from jaxem.base import Array, EMModel, Params, Prior
from jaxem.capabilities import of_model
from jaxem.compiler import jit

ESTIMATORS = ("observed", "louis", "oakes", "sem")


def n_coordinates(model: EMModel, n_features: int) -> int:
    """The chart's coordinates: the model's free parameters, ``n_parameters(n_features)``."""
    return int(of_model(model).n_parameters(n_features))


def objective_in_chart(
    model: EMModel, at: Params, data: Any, weights: Array, prior: Prior | None
) -> Callable[[Array], Array]:
    """$c \\mapsto \\ell(\\mathrm{chart}(\\hat\\theta, c))$ (plus the log prior): the
    objective around ``at`` in its chart; ``data`` as the E-step reads it."""
    can = of_model(model)

    def objective(coordinates: Array) -> Array:
        params = can.chart(at, coordinates)
        value = model.e_step(params, data, weights)[1]
        if prior is not None:
            value = value + can.log_prior(params, prior)
        return value

    return objective


@partial(jit, static_argnames=("model", "p"))
def gradient(
    model: EMModel, at: Params, data: Any, weights: Array, prior: Prior | None, p: int
) -> Array:
    """$\\nabla \\ell$ at ``at`` in its chart, ``(P,)`` (zero at a maximum)."""
    objective = objective_in_chart(model, at, data, weights, prior)
    return jax.grad(objective)(jnp.zeros((p,), weights.dtype))


@partial(jit, static_argnames=("model", "p"))
def chart_jacobian(model: EMModel, at: Params, p: int) -> Array:
    """The chart's Jacobian at ``at``: ``(M, P)``, M the entries of the parameters (in the
    order of ``jax.flatten_util.ravel_pytree``)."""
    chart = of_model(model).chart
    zero = jnp.zeros((p,), _flat(at).dtype)
    return jax.jacfwd(lambda c: _flat(chart(at, c)))(zero)


def _flat(params: Params) -> Array:
    """Every entry of ``params`` in one vector (``jax.flatten_util.ravel_pytree``'s order)."""
    return jax.flatten_util.ravel_pytree(params)[0]


def _columns(column: Callable[[Array], Array], p: int, dtype, batch_size: int | None) -> Array:
    """``column(e_i)`` for the P unit vectors, stacked ``(P, ...)``, ``batch_size`` at a time."""
    if batch_size is not None and batch_size >= p:
        batch_size = None
    return jax.lax.map(column, jnp.eye(p, dtype=dtype), batch_size=batch_size)


def _symmetric(matrix: Array) -> Array:
    return 0.5 * (matrix + matrix.T)


@partial(jit, static_argnames=("model", "p", "batch_size"))
def observed(
    model: EMModel,
    at: Params,
    data: Any,
    weights: Array,
    prior: Prior | None,
    p: int,
    batch_size: int | None = None,
) -> Array:
    """$-\\nabla^2 \\ell$ at ``at`` in its chart, ``(P, P)``; ``data`` as the E-step reads
    it; ``batch_size`` Hessian-vector products at once (None: all P)."""
    gradient = jax.grad(objective_in_chart(model, at, data, weights, prior))
    zero = jnp.zeros((p,), weights.dtype)
    hessian = _columns(lambda v: jax.jvp(gradient, (zero,), (v,))[1], p, zero.dtype, batch_size)
    return -_symmetric(hessian)


def _expected(model: EMModel, data: Any, weights: Array, prior: Prior | None) -> Callable:
    """$(\\theta', \\theta) \\mapsto Q(\\theta' \\mid \\theta)$ (plus $\\log p(\\theta')$)."""
    can = of_model(model)

    def q(params: Params, posterior_at: Params) -> Array:
        value = can.expected_complete_log_likelihood(params, posterior_at, data, weights)
        if prior is not None:
            value = value + can.log_prior(params, prior)
        return value

    return q


@partial(jit, static_argnames=("model", "p"))
def complete(model: EMModel, at: Params, data: Any, weights: Array, prior: Prior | None, p: int):
    """The complete-data information $I_c = -\\nabla^2_{\\theta'} Q(\\theta' \\mid \\hat\\theta)$
    (plus the prior's), ``(P, P)``."""
    can = of_model(model)
    q = _expected(model, data, weights, prior)
    zero = jnp.zeros((p,), weights.dtype)
    return -_symmetric(jax.hessian(lambda c: q(can.chart(at, c), at))(zero))


@partial(jit, static_argnames=("model", "p"))
def oakes(model: EMModel, at: Params, data: Any, weights: Array, prior: Prior | None, p: int):
    """Oakes's information, ``(P, P)``: minus the Jacobian of
    $c \\mapsto \\nabla_{c'} Q(c' \\mid c)|_{c' = c}$ at 0."""
    can = of_model(model)
    q = _expected(model, data, weights, prior)

    def fisher(c: Array) -> Array:  # the gradient of Q in its first argument, at (c, c)
        return jax.grad(lambda new: q(can.chart(at, new), can.chart(at, c)))(c)

    return -_symmetric(jax.jacfwd(fisher)(jnp.zeros((p,), weights.dtype)))


@partial(jit, static_argnames=("model", "p"))
def louis(model: EMModel, at: Params, data: Any, weights: Array, prior: Prior | None, p: int):
    """Louis's information $I_c - I_m$, ``(P, P)``, for a model with one discrete latent value
    per sample: ``complete_log_likelihoods(params, data)`` ``(K, N)``,
    $\\log p(x_n, z_n = k \\mid \\theta)$."""
    can = of_model(model)
    zero = jnp.zeros((p,), weights.dtype)
    complete_data = can.complete_log_likelihoods
    resp = jax.nn.softmax(complete_data(at, data), axis=0)  # (K, N)
    gradients = jax.jacfwd(lambda c: complete_data(can.chart(at, c), data))(zero)
    mean = jnp.einsum("kn,knp->np", resp, gradients)
    centred = gradients - mean[None]
    missing = jnp.einsum("n,kn,knp,knq->pq", weights, resp, centred, centred)
    return complete(model, at, data, weights, prior, p) - _symmetric(missing)


@partial(jit, static_argnames=("model", "p"))
def em_jacobian(
    model: EMModel, at: Params, data: Any, weights: Array, prior: Prior | None, p: int
) -> Array:
    """$DM$, the Jacobian of one EM iteration in the chart at ``at``, ``(P, P)`` (rows: the
    new coordinates): the M-step's output is mapped back to coordinates by the pseudo-inverse of
    the chart's Jacobian, exact for changes within the model."""
    can = of_model(model)

    def em_map(c: Array) -> Array:
        params = can.chart(at, c)
        stats, _ = model.e_step(params, data, weights)
        return _flat(m_step(model, params, stats, prior))

    zero = jnp.zeros((p,), weights.dtype)
    return jnp.linalg.pinv(chart_jacobian(model, at, p)) @ jax.jacfwd(em_map)(zero)


def sem(model: EMModel, at: Params, data: Any, weights: Array, prior: Prior | None, p: int):
    """The SEM information $I_c (I - DM)$, ``(P, P)``, and $DM$."""
    rate = em_jacobian(model, at, data, weights, prior, p)
    info = complete(model, at, data, weights, prior, p) @ (jnp.eye(p, dtype=rate.dtype) - rate)
    return _symmetric(info), rate


def em_rate(rate: Array) -> Array:
    """EM's rate of convergence near the fixed point: the spectral radius of $DM$."""
    return jnp.max(jnp.abs(jnp.linalg.eigvals(rate)))


@partial(jit, static_argnames=("model", "p"))
def scores(model: EMModel, at: Params, data: Any, weights: Array, p: int) -> Array:
    """Per-unit scores $\\nabla_c \\log p(x_u \\mid \\theta)$ at ``at``, ``(U, P)``: a unit is a
    row of the weights (a sample; a sequence of a hidden Markov model), its log-likelihood the
    derivative of the weighted log-likelihood in its weights (summed over a row)."""
    can = of_model(model)

    def per_unit(c: Array) -> Array:
        params = can.chart(at, c)
        loglik = jax.grad(lambda w: model.e_step(params, data, w)[1])(weights)
        return jnp.sum(loglik.reshape(weights.shape[0], -1), axis=1)

    return jax.jacfwd(per_unit)(jnp.zeros((p,), weights.dtype))


__all__ = [
    "ESTIMATORS",
    "complete",
    "em_jacobian",
    "em_rate",
    "gradient",
    "chart_jacobian",
    "louis",
    "n_coordinates",
    "oakes",
    "objective_in_chart",
    "observed",
    "scores",
    "sem",
]
