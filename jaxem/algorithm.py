"""EM as a state and a step, beneath every driver (in the style of optax and blackjax).

`jaxem.em_algorithm` checks a model and its data once and returns an `EMAlgorithm`, three pure
functions::

    algorithm = jaxem.em_algorithm(model, X, params, prior=prior)
    step = jax.jit(algorithm.step)
    state = algorithm.init(params)
    while state.n_evals == 0 or (state.n_iter < 100 and not algorithm.converged(state, 1e-6)):
        state = step(state)
        print(state.n_iter, state.objective)

`jaxem.fit` runs exactly this loop inside ``jax.lax.while_loop`` (`jaxem.em.iterate`), with
the same ``init`` and ``step``; ``jax.lax.scan`` over ``step`` runs a fixed number.

A state holds the parameters of the latest iterate together with the E-step's statistics and
objective *at* them, so that a step is an M-step from those statistics, then an E-step at the
new parameters: the objective recorded for an iteration is the objective at that iteration's
parameters. For plain EM ``init`` leaves the start unevaluated and the first ``step`` evaluates
it (an E-step without an M-step; ``n_iter`` stays 0): a compiled loop then holds one E-step, not
two, which saves about 0.1 s of compilation per program. With ``accelerate="squarem"`` ``init``
evaluates the start and every ``step`` is one SQUAREM iteration (`jaxem.acceleration`, three
E-steps); plain EM's iterates always count as accepted, SQUAREM's only when an extrapolation
was kept (its stopping rule looks at those only).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxem import acceleration
from jaxem.base import Array, EMModel, Params, Prior, Stats
from jaxem.capabilities import of_model


class EMState(NamedTuple):
    """Where EM stands (a pytree: it batches under ``vmap`` and carries through loops).

    Attributes:
        params: the latest iterate's parameters.
        stats: the E-step's statistics at ``params`` (zeros before the first step).
        objective: the objective at ``params`` (the weighted log-likelihood, plus
            $\\log p(\\theta)$ with a prior; NaN before the first step).
        previous: the objective of the iterate before (NaN until there is one).
        n_iter: iterations taken: M-steps, or SQUAREM iterations (0 after evaluating the start).
        n_evals: E-steps made (0 before the first step).
        step_max: SQUAREM's bound on the step length (1 for plain EM).
        accepted: whether the latest iterate is an accepted extrapolation (always true for
            plain EM; SQUAREM's stopping rule looks only at accepted ones).
    """

    params: Params
    stats: Stats
    objective: Array
    previous: Array
    n_iter: Array
    n_evals: Array
    step_max: Array
    accepted: Array


class EMAlgorithm(NamedTuple):
    """The three functions of EM on one model and one data set (see the module).

    Attributes:
        init: ``params -> EMState``, the start (plain EM: not yet evaluated, see the module).
        step: ``EMState -> EMState``: one iteration (plain EM: the first evaluates the start).
        converged: ``(EMState, tol) -> bool array``: an iteration was taken, its iterate is
            accepted, and the objective changed by less than ``tol`` per unit of sample weight.
    """

    init: Callable[[Params], EMState]
    step: Callable[[EMState], EMState]
    converged: Callable[[EMState, Any], Array]


def objective(model: EMModel, params: Params, loglik: Array, prior: Prior | None) -> Array:
    """The objective: ``loglik``, plus ``model.log_prior(params, prior)`` with a prior."""
    if prior is None:
        return loglik
    return loglik + model.log_prior(params, prior)


def m_step(model: EMModel, params: Params, stats: Stats, prior: Prior | None) -> Params:
    """The M-step from ``stats``, taken at ``params``: ``model.m_step_from(params, stats, prior)``
    for a model that reads the iterate (`jaxem.capabilities.ReadsIterate`), else
    ``model.m_step(stats, prior)``."""
    from_iterate = of_model(model).m_step_from
    if from_iterate is not None:
        return from_iterate(params, stats, prior)
    return model.m_step(stats, prior)


def build(
    model: EMModel,
    e_step: Callable[[Params], tuple[Stats, Array]],
    prior: Prior | None,
    total_weight: Array,
    accelerate: str | None = None,
) -> EMAlgorithm:
    """The algorithm from an E-step over the whole data, ``params -> (stats, loglik)`` (the
    drivers' row blocks and devices inside it), for checked inputs."""

    # one trace of the E-step, not one per use: jit's cache gives the shapes of the start's
    # state (`unevaluated`) and every E-step of the loop from a single trace (a NumPyro HMM's
    # first fit traced in 0.43 s instead of 0.59); XLA inlines the call
    @jax.jit
    def evaluate(params: Params) -> tuple[Stats, Array]:
        stats, loglik = e_step(params)
        return stats, objective(model, params, loglik, prior)

    def m_step_at(params: Params, stats: Stats) -> Params:
        return m_step(model, params, stats, prior)

    def unevaluated(params: Params) -> EMState:
        stats, value = jax.eval_shape(evaluate, params)
        stats = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), stats)
        nan = jnp.full(value.shape, jnp.nan, value.dtype)
        zero = jnp.zeros((), jnp.int32)
        one = jnp.ones(value.shape, value.dtype)
        return EMState(params, stats, nan, nan, zero, zero, one, jnp.ones(value.shape, bool))

    def evaluated(params: Params) -> EMState:
        """SQUAREM's start: evaluated, $s_{\\max} = 1$, not an extrapolation."""
        stats, value = evaluate(params)
        state = unevaluated(params)
        return state._replace(
            stats=stats, objective=value, n_evals=state.n_evals + 1, accepted=~state.accepted
        )

    def em_step(state: EMState) -> EMState:
        # the M-step only once the start is evaluated, and one E-step either way
        started = state.n_evals > 0
        params = jax.lax.cond(
            started, lambda: m_step_at(state.params, state.stats), lambda: state.params
        )
        stats, value = evaluate(params)
        return state._replace(
            params=params,
            stats=stats,
            objective=value,
            previous=jnp.where(started, state.objective, state.previous),
            n_iter=state.n_iter + started.astype(jnp.int32),
            n_evals=state.n_evals + 1,
        )

    def squarem_step(state: EMState) -> EMState:
        start = acceleration.SquaremState(
            state.params, state.stats, state.objective, state.step_max, state.accepted
        )
        new = acceleration.step(model, evaluate, m_step_at, start)
        return EMState(
            new.params,
            new.stats,
            new.objective,
            state.objective,
            state.n_iter + 1,
            state.n_evals + acceleration.EVALUATIONS_PER_ITERATION["squarem"],
            new.step_max,
            new.extrapolated,
        )

    def converged(state: EMState, tol: Any) -> Array:
        change = jnp.abs(state.objective - state.previous) / total_weight
        return (state.n_iter > 0) & state.accepted & (change < tol)

    if accelerate is None:
        return EMAlgorithm(unevaluated, em_step, converged)
    return EMAlgorithm(evaluated, squarem_step, converged)


def from_statistics(state: EMState, stats: Stats) -> EMState:
    """Plain EM's start ``state`` (from ``init``) made to begin with the M-step from ``stats``
    (say, the statistics of a partition) instead of evaluating its parameters.

    The parameters of ``state`` are then replaced by that M-step: only what a model's M-step
    reads of the iterate matters (`jaxem.capabilities.ReadsIterate`; nothing, for most). The
    M-step's parameters are iteration 0, as an evaluated start's are, so a loop started either
    way counts the same iterations from the same parameters; ``n_evals`` counts ``stats`` as
    an evaluation. Compiled, the loop then holds the only M-step: starting from a partition
    with an M-step of its own doubles the program's M-step code (0.1 to 0.3 s of compilation
    per program of `jaxem.select`'s grid). ``stats`` must have the layout of the E-step's
    statistics (``state.stats``): checked, a `TypeError` otherwise."""

    def layout(tree: Any) -> Any:
        return jax.tree.map(lambda a: (jnp.shape(a), jnp.result_type(a)), tree)

    if jax.tree.structure(stats) != jax.tree.structure(state.stats) or layout(stats) != layout(
        state.stats
    ):
        raise TypeError(
            "from_statistics: stats must be laid out as the E-step's statistics "
            f"{layout(state.stats)}; got {layout(stats)}"
        )
    return state._replace(stats=stats, n_iter=state.n_iter - 1, n_evals=state.n_evals + 1)
