"""Online (stepwise) EM: parameters updated from each minibatch, for data seen once or arriving
without end (Cappé and Moulines 2009, "On-line expectation-maximization algorithm for latent
data models").

Batch EM's M-step reads the data only through the statistics' average per unit of weight,
$\\bar s = \\frac{1}{W}\\sum_n w_n \\mathbb{E}[t(x_n, z_n)]$. Online EM keeps a running
estimate of it: after minibatch $t$, with $\\hat s_t$ its statistics per unit of weight at the
current parameters,

$$
s_t = s_{t-1} + \\gamma_t (\\hat s_t - s_{t-1}), \\qquad \\gamma_t = (t + t_0)^{-\\alpha},
\\qquad \\theta_t = \\bar\\theta(s_t),
$$

the M-step of the running average. For $\\alpha \\in (1/2, 1]$ the steps satisfy
$\\sum_t \\gamma_t = \\infty$, $\\sum_t \\gamma_t^2 < \\infty$, and $\\theta_t$ converges to a
stationary point of the expected log-likelihood; smaller $\\alpha$ forgets the start faster,
and Polyak-Ruppert averaging of the iterates (``average_from``) recovers the optimal rate. The
running average starts at zero and is divided by the total weight of its steps,
$m_t = m_{t-1} + \\gamma_t (1 - m_{t-1})$ (so $t_0 > 0$ or a step size below one at the start
biases nothing). The M-step is given $s_t / m_t$ times the weight seen so far, so that a prior
(MAP) weighs against the data seen, as in batch EM; with a step size of one and one minibatch
of all the data, an update is exactly one EM iteration.

`stepwise` returns ``init`` and ``update`` (in the style of optax), pure functions of an
`OnlineState` that run under ``jit`` and ``lax.scan``::

    online = jaxem.online.stepwise(model, alpha=0.6)
    state = online.init(params, first_batch)
    update = jax.jit(online.update)
    for X_batch in batches:
        state = update(state, X_batch)
    state.params  # or state.averaged with average_from
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxem.algorithm import m_step
from jaxem.base import Array, EMModel, Params, Prior, Stats
from jaxem.capabilities import check_model
from jaxem.chunking import fill_unweighted
from jaxem.em import check_inputs, prepare_data
from jaxem.progress import Progress
from jaxem.sources import Source
from jaxem.streaming import Pass, check_adds_up, check_source
from jaxem.validation import check_positive_int


class OnlineState(NamedTuple):
    """Where online EM stands (a pytree).

    Attributes:
        params: the latest parameters.
        averaged: the average of the iterates since update ``average_from`` (``params``
            before then, and without averaging).
        stats: the running average of the statistics per unit of weight (not yet
            divided by ``mass``).
        mass: the total weight of the averaging steps (1 once a step of one is taken).
        n_updates: the minibatches seen.
        n_seen: the total sample weight seen.
        loglik: the last minibatch's log-likelihood per unit of weight, at the parameters
            before its update (a running view of the fit on data not yet used: a
            progressive validation score).
    """

    params: Params
    averaged: Params
    stats: Stats
    mass: Array
    n_updates: Array
    n_seen: Array
    loglik: Array


class OnlineEM(NamedTuple):
    """Online EM on one model (see `stepwise`).

    Attributes:
        init: ``(params, X) -> OnlineState``: the start; ``X`` a minibatch (or any rows shaped
            like the data) for the statistics' shapes, nothing is learnt from it.
        update: ``(state, X, weights=None) -> OnlineState``: one minibatch ``X``
            ``(batch_size, ...)``; any batch size (each compiles once under ``jit``).
        step_size: ``t -> gamma_t`` for the update number ``t`` (1, 2, ...).
        model: the model it fits.
    """

    init: Callable[[Params], OnlineState]
    update: Callable[..., OnlineState]
    step_size: Callable[[Array], Array]
    model: EMModel


def check_schedule(alpha: Any, t0: Any, step_size: Any) -> None:
    """``ValueError`` unless ``alpha`` is in (1/2, 1] and ``t0`` >= 0, or a constant
    ``step_size`` is in (0, 1]."""
    if step_size is not None:
        if callable(step_size):
            return
        if not isinstance(step_size, (int, float)) or not 0 < step_size <= 1:
            raise ValueError(
                f"step_size must be a number in (0, 1] or a function of the update number, got "
                f"{step_size!r}"
            )
        return
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.5 < alpha <= 1:
        raise ValueError(
            f"alpha must be in (1/2, 1] (steps (t + t0)^-alpha whose sum diverges and whose "
            f"squares' sum converges, Cappé and Moulines 2009), got {alpha!r}"
        )
    if isinstance(t0, bool) or not isinstance(t0, (int, float)) or t0 < 0:
        raise ValueError(f"t0 must be a number >= 0, got {t0!r}")


def stepwise(
    model: EMModel,
    *,
    alpha: float = 0.6,
    t0: float = 0.0,
    step_size: float | Callable[[Array], Array] | None = None,
    average_from: int | None = None,
    prior: Prior | None = None,
) -> OnlineEM:
    """Stepwise online EM (Cappé and Moulines 2009) on ``model`` (see the module).

    Args:
        model: any model on the driver (`jaxem.base.EMModel`) whose statistics are sums over
            rows.
        alpha: the step sizes are ``(t + t0) ** -alpha`` for update ``t``; in (1/2, 1].
        t0: see ``alpha``; >= 0.
        step_size: instead, a constant step in (0, 1] or a function ``t -> gamma_t``
            (``step_size=1`` forgets all but the latest minibatch: each update is an EM
            iteration on it).
        average_from: average the iterates from this update on (Polyak-Ruppert averaging,
            in ``state.averaged``); None: no averaging.
        prior: a prior for MAP estimates; weighed against the weight seen so far.
    """
    check_model(model)
    check_schedule(alpha, t0, step_size)
    if average_from is not None:
        average_from = check_positive_int(average_from, "average_from")

    def gamma(t: Array) -> Array:
        if step_size is None:
            return (t + t0) ** -alpha
        if callable(step_size):
            return step_size(t)
        return jnp.ones_like(t) * step_size

    def init(params: Params, X: Any) -> OnlineState:
        X, params, weights, checked_prior = check_inputs(model, X, params, None, prior)
        check_adds_up(model, X.shape, X.dtype)

        def statistics(params, X, weights):
            return model.e_step(params, prepare_data(model, X, weights), weights)[0]

        shapes = jax.eval_shape(statistics, params, X, weights)
        dtype = jnp.result_type(*[leaf.dtype for leaf in jax.tree.leaves(params)])
        zero = jnp.zeros((), dtype)
        stats = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
        nan = jnp.full((), jnp.nan, dtype)
        return OnlineState(params, params, stats, zero, jnp.zeros((), jnp.int32), zero, nan)

    def update(state: OnlineState, X: Any, weights: Any = None) -> OnlineState:
        X, _, weights, checked_prior = check_inputs(model, X, state.params, weights, prior)
        data = prepare_data(model, fill_unweighted(X, weights), weights)
        found, loglik = model.e_step(state.params, data, weights)
        batch_weight = jnp.sum(weights)
        t = state.n_updates + 1
        step = jnp.asarray(gamma(t.astype(state.mass.dtype)), state.mass.dtype)
        stats = jax.tree.map(lambda s, f: s + step * (f / batch_weight - s), state.stats, found)
        mass = state.mass + step * (1 - state.mass)
        n_seen = state.n_seen + batch_weight
        scale = n_seen / mass
        params = m_step(
            model, state.params, jax.tree.map(lambda s: s * scale, stats), checked_prior
        )
        averaged = params
        if average_from is not None:
            since = jnp.maximum(t - average_from + 1, 1).astype(state.mass.dtype)
            averaged = jax.tree.map(
                lambda a, p: jnp.where(t > average_from, a + (p - a) / since, p),
                state.averaged,
                params,
            )
        return OnlineState(params, averaged, stats, mass, t, n_seen, loglik / batch_weight)

    return OnlineEM(init, update, gamma, model)


def fit_source(
    online: OnlineEM,
    source: Source,
    params: Params,
    *,
    passes: int = 1,
    state: OnlineState | None = None,
    quiet: bool = False,
) -> OnlineState:
    """Online EM over the blocks of ``source``, each block one minibatch, ``passes`` times.

    Args:
        online: from `stepwise`.
        source: a `jaxem.sources.Source`; its blocks are the minibatches (shorter ones padded
            with rows of weight zero, so that one compiled update serves all).
        params: the start (ignored when ``state`` is given).
        passes: how many times to read the source.
        state: an `OnlineState` to continue from (a previous call's result).
        quiet: no progress line; by default one per pass on standard error, whose objective is
            the sum of every minibatch's log-likelihood at the parameters before its update
            (each block scored before it is learnt from).

    Returns:
        The `OnlineState` after the last block.
    """
    one_pass = Pass(online.model, check_source(source), None, None)
    passes = check_positive_int(passes, "passes")
    update = jax.jit(online.update)
    progress = Progress(source.n_rows, quiet)
    for number in range(passes):
        progress.start(f"pass {number + 1}")
        seen, score = 0, 0.0  # the score summed on the device: no wait per block
        # the blocks checked, padded and placed as exact EM reads them (`jaxem.streaming.Pass`)
        for X, weights, n in one_pass.placed(params if state is None else state.params):
            if state is None:
                state = online.init(params, X)
            state = update(state, X, weights)
            score = score + state.loglik * jnp.sum(weights)
            seen += n
            progress.rows(n)
        progress.done(float(score), seen)
    return state
