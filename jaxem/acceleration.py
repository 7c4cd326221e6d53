"""SQUAREM: EM extrapolated along two of its own steps, with monotone safeguards.

EM's map $F$ (an E-step, then an M-step) converges linearly, slowly when the components
overlap: its rate is the largest fraction of missing information. Varadhan and Roland's
SQUAREM (Scand. J. Statist. 35, 2008) takes two EM steps from $\\theta$ and looks at them in
unconstrained coordinates $u$ (the model's ``unconstrain``: log weights, log rates, logits,
log-diagonal Cholesky factors, where every real vector is a valid parameter),

$$
r = u(F\\theta) - u(\\theta), \\qquad v = u(F F\\theta) - 2\\,u(F\\theta) + u(\\theta),
$$

and jumps along the parabola through them with the step length SqS3,

$$
s = \\operatorname{clip}\\big(\\lVert r \\rVert / \\lVert v \\rVert,\\ 1,\\ s_{\\max}\\big),
\\qquad u' = u(\\theta) + 2 s\\, r + s^2 v,
$$

($s = 1$ gives $F F \\theta$ itself), then takes one EM step from $\\theta'$ to stabilise it.
Safeguards, as in the reference implementation (R's SQUAREM, ``squarem1``) with no slack:

- the result is accepted only when its objective is finite and at least the last accepted
  one; otherwise the iterate is the plain EM point $F \\theta$, whose objective EM's ascent
  property puts at least as high, so that accepted objectives never decrease;
- $s_{\\max}$ starts at 1 (the first iteration is plain EM), is multiplied by 4 whenever the
  step reaches it, and divided by 4 (not below 1) when a step at the bound is rejected.

The stopping rule (`jaxem.algorithm`'s ``converged``) compares accepted extrapolations only:
after a fallback, the objective has changed by one EM step, and where EM crawls that change can
be below ``tol`` far from the optimum, where the next extrapolation would still gain much. An
extrapolation rejected for a rounding-level decrease counts as accepted there (a tie, `_tie`):
at the optimum every extrapolation returns to its start, and a fit whose rows were summed over
several devices, one ulp lower each time, never stopped.

Parameters out of ``constrain`` are valid by construction (softmax weights on the simplex,
$L L^\\top$ positive definite); one that is numerically broken gives a non-finite objective and
is rejected like a decrease.

An iteration costs three E-steps: at $F\\theta$ (which also gives the fallback's statistics and
objective), at $\\theta'$ and at the stabilised point (its objective, and the statistics the next
iteration starts from); `EVALUATIONS_PER_ITERATION`. $F F \\theta$ needs only the M-step from
the statistics at $F\\theta$: R's SQUAREM, which falls back to $FF\\theta$, evaluates it too
(four E-steps), and with step length 1 (the first iteration) the three E-steps make three plain
EM steps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from jaxem.base import Array, EMModel, Params, Stats
from jaxem.capabilities import of_model

METHODS = ("squarem",)
EVALUATIONS_PER_ITERATION = {None: 1, "squarem": 3}
STEP_FACTOR = 4.0
ROUNDING_ULPS = 64  # a tie between objectives (see the safeguards above)


class SquaremState(NamedTuple):
    """The state between SQUAREM iterations, for one fit.

    Attributes:
        params: the last accepted parameters.
        stats: the E-step's statistics at ``params`` (the next EM step starts from them).
        objective: the objective at ``params``.
        step_max: the current bound $s_{\\max}$ on the step length (a scalar).
        extrapolated: whether ``params`` is an accepted extrapolation, or one that tied with
            the last accepted objective up to rounding (`_tie`; ``params`` is then the plain EM
            point); False at the start and after any other fallback.
    """

    params: Params
    stats: Stats
    objective: Array
    step_max: Array
    extrapolated: Array


def init(params: Params, stats: Stats, objective: Array) -> SquaremState:
    """The state at a start whose E-step gave ``stats`` and ``objective``: $s_{\\max} = 1$."""
    return SquaremState(
        params, stats, objective, jnp.ones_like(objective), jnp.zeros_like(objective, bool)
    )


def step(
    model: EMModel,
    evaluate: Callable[[Params], tuple[Stats, Array]],
    m_step: Callable[[Params, Stats], Params],
    state: SquaremState,
) -> SquaremState:
    """One SQUAREM iteration (three calls of ``evaluate``).

    Args:
        model: provides ``unconstrain(params)`` and ``constrain(coordinates)``.
        evaluate: ``params -> (stats, objective)``, one E-step over all the data.
        m_step: ``(params, stats) -> params``, the M-step from statistics taken at ``params``
            (the prior, if any, already bound; `jaxem.algorithm.m_step`).
        state: from `init` or the previous `step`.

    Returns:
        The next state: the stabilised extrapolation if its objective is finite and no lower
        than ``state.objective``, else the point one EM step from ``state.params``.
    """
    once = m_step(state.params, state.stats)
    once_stats, once_objective = evaluate(once)
    twice = m_step(once, once_stats)

    start, unravel = ravel_pytree(model.unconstrain(state.params))
    first = ravel_pytree(model.unconstrain(once))[0] - start
    second = ravel_pytree(model.unconstrain(twice))[0] - start - 2 * first
    r2, v2 = jnp.sum(first * first), jnp.sum(second * second)
    ratio = jnp.sqrt(r2 / jnp.where(v2 > 0, v2, 1))
    length = jnp.where((v2 > 0) & jnp.isfinite(ratio), ratio, 1)
    length = jnp.clip(length, 1, state.step_max).astype(state.step_max.dtype)

    jump = model.constrain(unravel(start + 2 * length * first + length**2 * second))
    candidate = m_step(jump, evaluate(jump)[0])
    candidate_stats, candidate_objective = evaluate(candidate)

    accept = jnp.isfinite(candidate_objective) & (candidate_objective >= state.objective)
    accept &= _all_finite(candidate)
    at_bound = length == state.step_max
    shrunk = jnp.where(at_bound, jnp.maximum(1, state.step_max / STEP_FACTOR), state.step_max)
    step_max = jnp.where(accept, state.step_max, shrunk)
    taken = jnp.where(accept, length, 1)
    step_max = jnp.where(taken == step_max, STEP_FACTOR * step_max, step_max)

    def pick(a: Any, b: Any) -> Array:
        return jnp.where(accept, a, b)

    return SquaremState(
        params=jax.tree.map(pick, candidate, once),
        stats=jax.tree.map(pick, candidate_stats, once_stats),
        objective=pick(candidate_objective, once_objective),
        step_max=step_max,
        extrapolated=accept | _tie(candidate_objective, state.objective),
    )


def _tie(candidate: Array, accepted: Array) -> Array:
    """Whether an extrapolation's objective equals the last accepted one up to rounding
    (`ROUNDING_ULPS`): at a fixed point the extrapolation returns to where it started, and
    its objective may come out an ulp lower (rows summed over several devices in another
    order). It is not taken, yet it gained nothing, which is what the stopping rule asks."""
    slack = ROUNDING_ULPS * jnp.finfo(accepted.dtype).eps * jnp.abs(accepted)
    return jnp.abs(candidate - accepted) <= slack


def check_accelerate(accelerate: Any, model: EMModel) -> None:
    """``accelerate`` is None or one of `METHODS`, and the model has the coordinates it needs."""
    if accelerate is None:
        return
    if not isinstance(accelerate, str) or accelerate not in METHODS:
        raise ValueError(f"accelerate must be None or one of {METHODS}; got {accelerate!r}")
    if not of_model(model).extrapolates:
        raise TypeError(
            f"accelerate={accelerate!r} needs unconstrained coordinates, which "
            f"{type(model).__name__} does not provide (no unconstrain or constrain method)"
        )


def _all_finite(tree: Any) -> Array:
    return jnp.all(jnp.asarray([jnp.all(jnp.isfinite(a)) for a in jax.tree.leaves(tree)]))
