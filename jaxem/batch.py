"""Many fits in one compiled call: a batch of datasets, ragged datasets, random restarts.

``jax.vmap`` of `jaxem.fit` already fits a batch, but a vmapped ``while_loop`` runs every
member until the slowest has converged: a batch of B costs B times the largest iteration count.
`fit_batch` instead runs ``lanes`` members at a time in one ``while_loop`` and hands a
lane to the next waiting member as soon as its own member has converged, so the batch costs
about the *sum* of the iteration counts (plus one tail). Each member goes through exactly the
arithmetic of its own ``fit``, so its result is the same.
"""

from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxem import acceleration
from jaxem.algorithm import build
from jaxem.base import Array, EMModel, FitResult, Params, Prior, PRNGKey
from jaxem.buckets import padded
from jaxem.capabilities import check_model, of_model
from jaxem.chunking import check_chunk_size, fill_unweighted
from jaxem.compiler import jit
from jaxem.em import (
    check_inputs,
    plan,
    prepare_data,
    run,
    weights_shape,
)
from jaxem.padding import without_padding
from jaxem.sharding import as_auto, sample_sharding, split_rows
from jaxem.validation import (
    all_finite,
    as_float_array,
    check_fit_options,
    check_positive_int,
    check_weight_values,
    host_values,
    is_concrete,
    warn_if_unresolved,
)

DEFAULT_LANES = 256


def fit_batch(
    model: EMModel,
    key: PRNGKey,
    X: Any,
    *,
    weights: Any = None,
    prior: Prior | None = None,
    init_params: Params | None = None,
    tol: float = 1e-3,
    max_iter: int = 100,
    lanes: int | None = None,
    accelerate: str | None = None,
) -> FitResult:
    """Fit B datasets (or B starts) in one compiled call.

    Member ``b`` starts from ``model.init(jax.random.split(key, B)[b], X[b], weights[b])``
    (or from ``init_params[b]``) and ends exactly where ``jaxem.fit`` from that start ends: same
    ``n_iter``, same parameters up to rounding.

    Args:
        model: any `jaxem.EMModel`.
        key: a PRNG key, split into one key per member.
        X: ``(B, N, D)`` for Gaussian mixtures; pad ragged datasets with `pad`.
        weights: ``(B, N)`` sample weights, or None (all ones).
        prior: None (MLE), one prior shared by every member, or a batch of priors (every leaf
            with a leading axis of length B, e.g. ``jax.vmap(default_prior, (None, 0))(model,
            X)``).
        init_params: optional starting parameters with a leading axis B; skips ``model.init``.
        tol: as for `jaxem.fit`, for every member.
        max_iter: as for `jaxem.fit`, for every member.
        lanes: how many members iterate side by side (a static size: at most B). A lane whose
            member has converged takes the next waiting member. Default: 256 (or B if smaller),
            the fastest in ``benchmarks/batch.py``.
        accelerate: as for `jaxem.fit`; every member keeps its own step-length bound.

    Returns:
        A `jaxem.FitResult` whose every leaf has a leading axis B.

    When ``X`` is a ``jax.Array`` split over devices along its first (batch) axis (see
    `jaxem.shard`), every device fits its own members, ``lanes`` at a time, and the
    result is split the same way; B must be a multiple of the number of devices.
    """
    check_model(model)
    check_fit_options(tol, max_iter)
    acceleration.check_accelerate(accelerate, model)
    if sample_sharding(X) is not None:
        X = as_auto(X)  # a mesh with Explicit axes would need every operation's layout spelled
    layout = sample_sharding(X)
    X, weights, prior, prior_batched = _check_batch(model, X, weights, prior)
    n_members = X.shape[0]
    if lanes is None:
        lanes = DEFAULT_LANES
    lanes = check_positive_int(lanes, "lanes")
    n_local = n_members // (1 if layout is None else layout.n_shards)
    lanes = int(min(lanes, n_local))
    tol = jnp.asarray(tol, X.dtype)
    if prior is not None and not prior_batched:
        prior = jax.tree.map(lambda a: jnp.broadcast_to(a, (n_members,) + a.shape), prior)
    if init_params is not None:
        init_params = jax.vmap(lambda x, p, w: check_inputs(model, x, p, w, None)[1])(
            X, init_params, weights
        )

    def init_and_fit(tol, keys, X, weights, init_params, prior):
        if init_params is None:
            init_params = _init_batch(model, keys, X, weights, lanes)
        return fit_lanes(model, X, weights, init_params, prior, tol, max_iter, lanes, accelerate)

    # (a key per member only where members start from model.init: split eagerly, it compiles)
    keys = jax.random.split(key, n_members) if init_params is None else None
    args = (keys, X, weights, init_params, prior)
    if layout is None:
        return init_and_fit(tol, *args)
    # every device fits its own members: nothing crosses between devices
    args = jax.tree.map(layout.place, args)
    return split_rows(init_and_fit, layout, n_replicated=1)(tol, *args)


@partial(jit, static_argnames=("model", "lanes"))
def _init_batch(model, keys, X, weights, lanes):
    """``model.init`` for every member, ``lanes`` members at a time (cache-sized blocks). The
    batch is padded to a multiple of ``lanes`` with repeats of its first members, so that one
    block shape is compiled (a remainder block would compile the init a second time)."""
    n_members = X.shape[0]
    index = jnp.arange(n_members + (-n_members) % lanes) % n_members
    params = jax.lax.map(
        lambda a: model.init(*a), (keys[index], X[index], weights[index]), batch_size=lanes
    )
    return _take(params, slice(0, n_members))


def _check_batch(model, X, weights, prior):
    """Shapes and values of a batch, before compiling; returns ``(X, weights, prior,
    prior_batched)`` cast to X's floating dtype."""
    X = as_float_array(X, "X")
    can = of_model(model)
    data_ndim = can.data_ndim
    if X.ndim < 1 + data_ndim:
        example = "(B, n_samples, n_features)" if data_ndim == 2 else "(B, n_samples, ...)"
        raise ValueError(f"X must be a batch of datasets, e.g. {example}; got shape {X.shape}")
    n_members = X.shape[0]
    member_weights = weights_shape(model, X.shape[1:])
    warn_if_unresolved(X, batch=True)  # before the padding's NaN become zeros
    X = without_padding(X, weights)
    missing = can.missing  # NaN: a value missing at random
    if is_concrete(X) and not all_finite(X):
        values = host_values(X).reshape(n_members, -1)
        bad_values = np.isinf(values) if missing else ~np.isfinite(values)
        if np.any(bad_values):
            bad = int(np.argmax(np.any(bad_values, axis=1)))
            what = "inf" if missing else "NaN or inf"
            raise ValueError(
                f"X contains {what} (first in member {bad}); values must be finite (data padded "
                "by jaxem.pad holds NaN in its padding: pass the weights it returned)"
            )
    if weights is None:
        weights = jnp.ones((n_members,) + member_weights, X.dtype)
    else:
        weights = as_float_array(weights, "weights").astype(X.dtype)
        if weights.shape != (n_members,) + member_weights:
            expected = ("B",) + (("n_samples",) if len(member_weights) == 1 else member_weights)
            raise ValueError(
                f"weights must have shape ({', '.join(map(str, expected))}) = "
                f"{(n_members,) + member_weights}; got {weights.shape}"
            )
    if is_concrete(weights):
        check_weight_values(weights)
    if can.effective_weights is not None:
        weights = jax.vmap(can.effective_weights)(X, weights)
    if is_concrete(weights):
        positive = check_weight_values(weights).reshape(n_members, -1) > 0
        positive = np.count_nonzero(positive, axis=1)
        k = can.min_samples
        if np.any(positive < k):
            b = int(np.argmin(positive))
            raise ValueError(
                f"every member needs at least {k} samples with positive weight (the model's "
                f"min_samples); member {b} has {int(positive[b])}"
            )
    if prior is None and can.own_prior is not None:
        prior = can.own_prior(X.shape[1:], X.dtype)  # shared by every member
        return X, weights, prior, False
    if prior is None:
        return X, weights, None, False
    check = can.check_prior
    if check is None:  # a model without prior checks: a prior with a leading axis B is a batch
        batched = all(jnp.shape(a)[:1] == (n_members,) for a in jax.tree.leaves(prior))
        return X, weights, prior, batched
    # a shared prior passes the model's checks as it is; a batch passes them member-wise
    try:
        return X, weights, check(prior, X.shape[-1], X.dtype), False
    except ValueError as shared_error:
        try:
            checked = jax.vmap(lambda p: check(p, X.shape[-1], X.dtype))(prior)
        except (ValueError, TypeError):
            raise shared_error from None
    if jax.tree.leaves(checked)[0].shape[0] != n_members:
        raise ValueError(
            f"a batch of priors needs a leading axis of length B={n_members} on every field"
        )
    if is_concrete(checked):
        can.check_prior_values(checked, X.shape[-1])
    return X, weights, checked, True


def _take(tree: Any, index: Array) -> Any:
    return jax.tree.map(lambda a: a[index], tree)


def _select(mask: Array, a_tree: Any, b_tree: Any) -> Any:
    """Per member (leading axis): ``a`` where ``mask``, else ``b``."""

    def pick(a, b):
        return jnp.where(mask.reshape(mask.shape + (1,) * (a.ndim - 1)), a, b)

    return jax.tree.map(pick, a_tree, b_tree)


@partial(jit, static_argnames=("model", "max_iter", "lanes", "accelerate", "shared"))
def fit_lanes(
    model: EMModel,
    X: Array,
    weights: Array,
    init_params: Params,
    prior: Prior | None,
    tol: Array,
    max_iter: int,
    lanes: int,
    accelerate: str | None = None,
    shared: bool = False,
) -> FitResult:
    """EM for B members in ``lanes`` lanes of one ``while_loop``: the loop beneath `fit_batch`
    and `jaxem.select`, on checked inputs.

    ``X`` ``(B, N, ...)`` and ``weights`` ``(B, N)``, one data set per member, or with
    ``shared`` one data set ``(N, ...)``, ``(N,)`` for all (the starts of `jaxem.select`);
    ``init_params`` and ``prior`` (or None) with a leading axis B; ``tol`` an array.

    Every lane holds a member's `jaxem.algorithm.EMState` and every pass through the loop takes
    one ``step`` of `jaxem.algorithm` in every lane (the step of `jaxem.fit`): a member just
    loaded evaluates its start (plain EM; with SQUAREM its start is evaluated as it is loaded),
    the others iterate. A lane whose member has stopped writes the member's result out and
    loads the next waiting member; lanes with no member left idle until all lanes are done.
    """
    n_members = jax.tree.leaves(init_params)[0].shape[0]
    X = fill_unweighted(X, weights) if shared else jax.vmap(fill_unweighted)(X, weights)
    if shared:
        total_weight = jnp.broadcast_to(jnp.sum(weights), (n_members,))
        data = prepare_data(model, X, weights)
    else:
        total_weight = jnp.sum(weights, axis=tuple(range(1, weights.ndim)))
        data = jax.vmap(partial(prepare_data, model))(X, weights)
    data_axis = None if shared else 0
    lane_ids = jnp.arange(lanes)

    def algorithm(X_1, w_1, prior_1, total_1):
        """One member's `jaxem.algorithm.EMAlgorithm`, on its own data and prior."""
        return build(
            model, lambda params: model.e_step(params, X_1, w_1), prior_1, total_1, accelerate
        )

    def per_lane(fn):
        """``fn(algorithm, value)`` in every lane, each on its member's data and prior."""

        def one(value, X_1, w_1, prior_1, total_1):
            return fn(algorithm(X_1, w_1, prior_1, total_1), value)

        return jax.vmap(one, in_axes=(0, data_axis, data_axis, 0, 0))

    init = per_lane(lambda a, params: a.init(params))
    step = per_lane(lambda a, state: a.step(state))
    converged = per_lane(lambda a, state: a.converged(state, tol))

    def load(member):
        """Everything a lane needs about its member (``member`` clipped for idle lanes)."""
        m = jnp.minimum(member, n_members - 1)
        if shared:
            return m, data, weights, _take(prior, m), total_weight[m]
        return m, _take(data, m), weights[m], _take(prior, m), total_weight[m]

    dtype = total_weight.dtype
    out = FitResult(
        params=init_params,
        objective=jnp.zeros((n_members,), dtype),
        n_iter=jnp.zeros((n_members,), jnp.int32),
        converged=jnp.zeros((n_members,), bool),
        history=jnp.full((n_members, max_iter), jnp.nan, dtype),
        n_evals=jnp.zeros((n_members,), jnp.int32),
    )
    # every lane starts by loading its member (below): zeros of the right structure until then
    m, *lane_data = load(lane_ids)
    shapes = jax.eval_shape(init, _take(init_params, m), *lane_data)
    state = dict(
        member=lane_ids,  # >= n_members: idle
        fresh=jnp.ones((lanes,), bool),  # lanes to load with their member's start
        waiting=jnp.asarray(lanes, jnp.int32),  # the next member to load
        lane=jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes),
        out=out,
    )

    def cond(state):
        return jnp.any(state["member"] < n_members)

    def body(state):
        member, fresh = state["member"], state["fresh"]
        m, *lane_data = load(member)

        def reload(lane):
            return _select(fresh, init(_take(init_params, m), *lane_data), lane)

        if accelerate is None:  # a start not yet evaluated: as cheap as a select
            lane = reload(state["lane"])
        else:  # SQUAREM's starts are evaluated: only when a lane takes a new member
            lane = jax.lax.cond(jnp.any(fresh), reload, lambda lane: lane, state["lane"])
        lane = step(lane, *lane_data)
        has_converged = converged(lane, *lane_data)
        stopped = has_converged | (lane.n_iter >= max_iter)
        iterated = lane.n_iter > 0  # plain EM: a member just loaded has only been evaluated
        active = member < n_members
        done = active & iterated & stopped
        o = state["out"]
        # history goes straight to the member's row; rows >= n_members are dropped
        writer = jnp.where(active & iterated, member, n_members)
        history = o.history.at[writer, lane.n_iter - 1].set(lane.objective, mode="drop")
        target = jnp.where(done, member, n_members)

        def put(a, v):
            return a.at[target].set(v, mode="drop")

        out = FitResult(
            params=jax.tree.map(put, o.params, lane.params),
            objective=put(o.objective, lane.objective),
            n_iter=put(o.n_iter, lane.n_iter),
            converged=put(o.converged, has_converged),
            history=history,
            n_evals=put(o.n_evals, lane.n_evals),
        )
        # lanes that finished take the next waiting members, in lane order
        rank = jnp.cumsum(done) - 1
        member = jnp.where(done, state["waiting"] + rank, member)
        waiting = state["waiting"] + jnp.sum(done, dtype=jnp.int32)
        return dict(member=member, fresh=done, waiting=waiting, lane=lane, out=out)

    return jax.lax.while_loop(cond, body, state)["out"]


class RestartsResult(NamedTuple):
    """What `fit_restarts` returns: the best start's `jaxem.FitResult` fields,
    plus every start's final objective.

    Attributes:
        params, objective, n_iter, converged, history, n_evals: those of the best start
            (``objective`` is the largest of ``objectives``).
        objectives: ``(n_init,)``, the final objective of every start.
        best: the index of the best start.
    """

    params: Params
    objective: Array
    n_iter: Array
    converged: Array
    history: Array
    n_evals: Array
    objectives: Array
    best: Array


def fit_restarts(
    model: EMModel,
    key: PRNGKey,
    X: Any,
    *,
    n_init: int = 8,
    weights: Any = None,
    prior: Prior | None = None,
    tol: float = 1e-3,
    max_iter: int = 100,
    chunk_size: int | None = None,
    accelerate: str | None = None,
    deterministic_start: bool = True,
) -> RestartsResult:
    """``n_init`` starts (``model.init`` with the keys ``jax.random.split(key, n_init)``) and,
    with ``deterministic_start``, the model's start that draws nothing where it has one
    (`jaxem.capabilities.StartsDeterministically`: a mixture's is mclust's hierarchical
    partition, `jaxem.Mixture.init` with ``method="hierarchical"``), fitted in one vmapped
    call; returns the start with the largest final objective (``objectives`` ``(n_init,)``, or
    ``(n_init + 1,)`` with the deterministic start last; it needs concrete data, and is left
    out under ``jit``).

    ``X`` ``(N, D)``; the other arguments (``accelerate`` included) as for `jaxem.fit` (the
    automatic row blocks allow for the starts' E-steps running side by side).
    """
    check_model(model)
    check_fit_options(tol, max_iter)
    acceleration.check_accelerate(accelerate, model)
    chunk_size = check_chunk_size(chunk_size)
    n_init = check_positive_int(n_init, "n_init")
    keys = jax.random.split(key, n_init)
    # X and weights are not mapped: model.init sees them concrete and checks their values
    starts = jax.vmap(model.init, (0, None, None))(keys, X, weights)
    extra = of_model(model).deterministic_start if deterministic_start else None
    if not (is_concrete(X) and (weights is None or is_concrete(weights))):
        extra = None  # under jit: the deterministic start is computed on the host
    if extra is not None:
        one = extra(X, weights)
        starts = _appended(starts, one)
    X, _, weights, prior = check_inputs(model, X, _first(starts), weights, prior)
    X, weights = padded(model, X, weights)
    copies = n_init + (extra is not None)
    weights, block, layout = plan(model, X, weights, chunk_size, copies=copies)
    tol = jnp.asarray(tol, X.dtype)
    return _fit_restarts(model, X, starts, prior, weights, tol, max_iter, block, layout, accelerate)


# compiled, not run operation by operation (each operation would compile a program of its own)
@jit
def _appended(starts: Any, one: Any) -> Any:
    """``one`` start appended to the stacked ``starts``."""
    return jax.tree.map(lambda a, b: jnp.concatenate([a, b[None]]), starts, one)


@jit
def _first(starts: Any) -> Any:
    return _take(starts, 0)


@partial(jit, static_argnames=("model", "max_iter", "block", "layout", "accelerate"))
def _fit_restarts(model, X, starts, prior, weights, tol, max_iter, block, layout, accelerate):
    def one(start):
        return run(model, X, start, prior, weights, tol, max_iter, block, layout, accelerate)

    fits = jax.vmap(one)(starts)
    best = best_start(fits.objective)
    return RestartsResult(*_take(fits, best), objectives=fits.objective, best=best)


def best_start(objectives: Any) -> Array:
    """The index of the largest final objective ``(n_init,)``; NaN (a start that broke down)
    never wins, and an all-NaN array gives 0. The one rule for picking among restarts, used by
    `fit_restarts`, the command line and the scikit-learn estimator."""
    objectives = jnp.asarray(objectives)
    return jnp.argmax(jnp.where(jnp.isnan(objectives), -jnp.inf, objectives))
