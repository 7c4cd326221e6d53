"""The generic EM driver: one ``jax.lax.while_loop`` over a model's E- and M-steps.

EM maximises the log-likelihood :math:`\\ell(\\theta) = \\sum_n w_n \\log p(x_n \\mid \\theta)`
through the lower bound (Jensen's inequality, for any distributions :math:`q_n` over
:math:`z_n`)

.. math::

    \\ell(\\theta) = \\underbrace{\\sum_n w_n \\mathbb{E}_{q_n}\\big[\\log p(x_n, z_n \\mid \\theta)
    - \\log q_n(z_n)\\big]}_{\\mathcal{L}(q, \\theta)}
    + \\sum_n w_n \\mathrm{KL}\\big(q_n \\,\\|\\, p(z_n \\mid x_n, \\theta)\\big).

The E-step sets :math:`q_n = p(z_n \\mid x_n, \\theta_t)` (the KL term vanishes, the bound
touches :math:`\\ell` at :math:`\\theta_t`); the M-step maximises :math:`\\mathcal{L}` (plus
:math:`\\log p(\\theta)` for MAP) over :math:`\\theta`. Coordinate ascent on
:math:`\\mathcal{L}` never decreases the objective.

Each iteration here is one M-step followed by one E-step, so the objective recorded for an
iteration is exactly the objective at that iteration's parameters.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp

from jaxem.base import Array, EMModel, FitResult, Params, Prior
from jaxem.validation import check_fit_options, check_weights


def fit(
    model: EMModel,
    X: Any,
    params: Params,
    *,
    prior: Prior | None = None,
    weights: Any = None,
    tol: float = 1e-3,
    max_iter: int = 100,
) -> FitResult:
    """Run EM from ``params`` until the objective stops improving.

    Args:
        model: an object providing ``e_step``, ``m_step`` (and ``log_prior`` when ``prior`` is
            given), see :mod:`jaxem.base`.
        X: the data, ``(n_samples, ...)``; for Gaussian mixtures ``(n_samples, n_features)``.
        params: the starting parameters (a pytree), e.g. from ``model.init``.
        prior: optional prior hyperparameters; then EM finds a posterior mode (MAP).
        weights: optional non-negative sample weights ``(n_samples,)``. A weight of 2 counts a
            row twice; rows of weight 0 are replaced by zeros before the model sees them, so they
            have no influence whatever they hold.
        tol: stop when the change of the objective divided by the total sample weight is
            strictly below ``tol``; ``tol=0`` runs exactly ``max_iter`` M-steps.
        max_iter: the largest number of M-steps (static: it fixes the length of ``history``).

    Returns:
        A :class:`FitResult`. Works under ``jax.jit`` and ``jax.vmap``; under ``vmap`` every
        member stops at its own iteration.
    """
    check_fit_options(tol, max_iter)
    validate = getattr(model, "validate", None)
    if validate is not None:
        X, params, prior = validate(X, params, weights, prior)
    else:
        X = jnp.asarray(X)
    n_samples = X.shape[0]
    float_dtype = X.dtype if jnp.issubdtype(X.dtype, jnp.floating) else jnp.result_type(float)
    weights = check_weights(weights, n_samples, float_dtype)
    if prior is not None and not hasattr(model, "log_prior"):
        raise TypeError(
            f"{type(model).__name__} has no log_prior: it cannot be fitted with a prior"
        )
    return _fit(model, X, params, prior, weights, jnp.asarray(tol, weights.dtype), max_iter)


def _objective(model: EMModel, params: Params, loglik: Array, prior: Prior | None) -> Array:
    if prior is None:
        return loglik
    return loglik + model.log_prior(params, prior)


def _prepare(model: EMModel, X: Array, weights: Array) -> Any:
    """The data as the model's E-step reads it, computed once per fit (see :mod:`jaxem.base`)."""
    prepare = getattr(model, "prepare", None)
    return X if prepare is None else prepare(X, weights)


def _converged(objective: Array, previous: Array, total_weight: Array, tol: Array) -> Array:
    """The stopping rule: the change of the objective per unit of sample weight is below tol."""
    return jnp.abs(objective - previous) / total_weight < tol


@partial(jax.jit, static_argnames=("model", "max_iter"))
def _fit(
    model: EMModel,
    X: Array,
    params: Params,
    prior: Prior | None,
    weights: Array,
    tol: Array,
    max_iter: int,
) -> FitResult:
    keep = (weights > 0).reshape((-1,) + (1,) * (X.ndim - 1))
    X = jnp.where(keep, X, jnp.zeros((), X.dtype))
    total_weight = jnp.sum(weights)
    data = _prepare(model, X, weights)

    stats, loglik = model.e_step(params, data, weights)
    objective = _objective(model, params, loglik, prior)
    history = jnp.full((max_iter,), jnp.nan, objective.dtype)
    state = (jnp.asarray(0, jnp.int32), params, stats, objective, jnp.asarray(False), history)

    def cond(state):
        i, _, _, _, converged, _ = state
        return (i < max_iter) & ~converged

    def body(state):
        i, _, stats, previous, _, history = state
        params = model.m_step(stats, prior)
        stats, loglik = model.e_step(params, data, weights)
        objective = _objective(model, params, loglik, prior)
        converged = _converged(objective, previous, total_weight, tol)
        return i + 1, params, stats, objective, converged, history.at[i].set(objective)

    n_iter, params, _, objective, converged, history = jax.lax.while_loop(cond, body, state)
    return FitResult(params, objective, n_iter, converged, history)
