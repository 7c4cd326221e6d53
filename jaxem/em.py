"""The generic EM driver: one ``jax.lax.while_loop`` over a model's E- and M-steps.

EM maximises the log-likelihood $\\ell(\\theta) = \\sum_n w_n \\log p(x_n \\mid \\theta)$
through the lower bound (Jensen's inequality, for any distributions $q_n$ over
$z_n$)

$$
\\ell(\\theta) = \\underbrace{\\sum_n w_n \\mathbb{E}_{q_n}\\big[\\log p(x_n, z_n \\mid \\theta)
- \\log q_n(z_n)\\big]}_{\\mathcal{L}(q, \\theta)}
+ \\sum_n w_n \\mathrm{KL}\\big(q_n \\,\\|\\, p(z_n \\mid x_n, \\theta)\\big).
$$

The E-step sets $q_n = p(z_n \\mid x_n, \\theta_t)$ (the KL term vanishes, the bound
touches $\\ell$ at $\\theta_t$); the M-step maximises $\\mathcal{L}$ (plus
$\\log p(\\theta)$ for MAP) over $\\theta$. Coordinate ascent on
$\\mathcal{L}$ never decreases the objective.

Each iteration here is one M-step followed by one E-step, so the objective recorded for an
iteration is exactly the objective at that iteration's parameters.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp

from jaxem import acceleration
from jaxem.algorithm import EMAlgorithm, EMState, build, from_statistics, m_step
from jaxem.algorithm import objective as objective
from jaxem.base import Array, EMModel, FitResult, Params, Prior, Stats
from jaxem.buckets import padded
from jaxem.capabilities import check_model, of_model
from jaxem.chunking import (
    block_rows,
    block_sum,
    check_chunk_size,
    fill_unweighted,
    first_weighted_row,
    model_bytes_per_sample,
)
from jaxem.compiler import jit
from jaxem.padding import without_padding
from jaxem.sharding import (
    SampleSharding,
    as_auto,
    local_then_psum,
    per_device,
    sample_sharding,
)
from jaxem.sources import Source
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
    chunk_size: int | None = None,
    accelerate: str | None = None,
) -> FitResult:
    """Run EM from ``params`` until the objective stops improving.

    Args:
        model: an object providing ``e_step``, ``m_step`` (and ``log_prior`` when ``prior`` is
            given), see `jaxem.base`.
        X: the data, ``(n_samples, ...)``; for Gaussian mixtures ``(n_samples, n_features)``.
        params: the starting parameters (a pytree), e.g. from ``model.init``.
        prior: optional prior hyperparameters; then EM finds a posterior mode (MAP).
        weights: optional non-negative sample weights ``(n_samples,)``. A weight of 2 counts a
            row twice; rows of weight 0 are replaced by the first row of positive weight before
            the model sees them (`jaxem.chunking.fill_unweighted`), so they have no influence
            whatever they hold.
        tol: stop when the change of the objective divided by the total sample weight is
            strictly below ``tol``; ``tol=0`` runs exactly ``max_iter`` M-steps.
        max_iter: the largest number of M-steps (static: it fixes the length of ``history``).
        chunk_size: the E-step visits the data in blocks of this many rows (per device),
            summing their statistics, so that memory stays bounded for large N; None chooses
            from the model's working memory per sample (one block up to 256 MiB, see
            `jaxem.chunking`). The result is the same up to rounding.
        accelerate: None (plain EM) or ``"squarem"``: every iteration extrapolates along two
            EM steps and keeps the result only if the objective does not decrease (see
            `jaxem.acceleration`); far fewer E-steps where EM crawls. Needs the model's
            ``unconstrain``/``constrain``. ``max_iter`` then counts these iterations, three
            E-steps each; ``n_evals`` in the result counts E-steps.

    Returns:
        A `FitResult`. Works under ``jax.jit`` and ``jax.vmap``; under ``vmap`` every
        member stops at its own iteration.

    ``X`` may also be a `jaxem.sources.Source` (data in blocks: a ``.npy`` file, a CSV
    or Parquet file read in chunks): then every iteration is one pass over the blocks and the
    result equals the fit of the concatenated data (`jaxem.streaming.fit_source`, which also
    takes ``quiet``; the weights come with the blocks; no ``accelerate``).

    When ``X`` is a ``jax.Array`` whose rows are split over several devices (a
    ``NamedSharding`` on the first axis, e.g. from `jaxem.shard`), every device computes
    the statistics of its own rows and they are summed across devices (see
    `jaxem.sharding`).
    """
    check_model(model)
    if isinstance(X, Source):
        if weights is not None or accelerate is not None:
            raise ValueError(
                "X is a data source: its blocks carry their own weights (weights=None), and it "
                "is fitted by plain EM, one pass per iteration (accelerate=None)"
            )
        from jaxem.streaming import fit_source  # it reads blocks with this module's checks

        return fit_source(
            model, X, params, prior=prior, tol=tol, max_iter=max_iter, chunk_size=chunk_size
        )
    check_fit_options(tol, max_iter)
    acceleration.check_accelerate(accelerate, model)
    chunk_size = check_chunk_size(chunk_size)
    X, params, weights, prior = check_inputs(model, X, params, weights, prior)
    X, weights = padded(model, X, weights)  # sizes that share a program, see jaxem.buckets
    weights, block, layout = plan(model, X, weights, chunk_size)
    tol = jnp.asarray(tol, weights.dtype)
    return run(model, X, params, prior, weights, tol, max_iter, block, layout, accelerate)


def em_step(
    model: EMModel, params: Params, X: Any, *, prior: Prior | None = None, weights: Any = None
) -> tuple[Params, Array]:
    """One EM iteration, for a loop of one's own: an E-step at ``params``, then an M-step.

    Returns ``(new_params, objective)`` where ``objective`` is the objective *at* ``params``
    (the weighted log-likelihood, plus $\\log p(\\theta)$ with a prior); EM's ascent
    property says the objective at ``new_params`` is at least as large. ``X`` ``(N, ...)``;
    the other arguments as for `fit`.
    """
    X, params, weights, prior = check_inputs(model, X, params, weights, prior)
    X, weights = padded(model, X, weights)
    return _em_step(model, params, X, prior, weights)


@partial(jit, static_argnames="model")
def _em_step(model, params, X, prior, weights):
    stats, loglik = model.e_step(params, prepare_data(model, X, weights), weights)
    return m_step(model, params, stats, prior), objective(model, params, loglik, prior)


def check_inputs(
    model: EMModel, X: Any, params: Params, weights: Any, prior: Prior | None
) -> tuple[Array, Params, Array, Prior | None]:
    """``(X, params, weights, prior)`` checked before compilation, each check once: the
    model's ``validate`` when it has one (it checks the weights too, and returns those the
    drivers use); else ``X`` as an array and the weights checked here (through the model's
    optional ``effective_weights(X, weights)``, which may zero those of samples that carry no
    information). A prior only for a model with ``log_prior``."""
    check_model(model)
    can = of_model(model)
    X = without_padding(X, weights)  # NaN padding from jaxem.pad, with its weights
    if can.validate is not None:
        X, params, weights, prior = can.validate(X, params, weights, prior)
    else:
        X = jnp.asarray(X)
        dtype = X.dtype if jnp.issubdtype(X.dtype, jnp.floating) else jnp.result_type(float)
        weights = check_weights(weights, weights_shape(model, X.shape), dtype)
        if can.effective_weights is not None:
            weights = can.effective_weights(X, weights)
    if sample_sharding(X) is not None:
        # parameters from a start on this data live on its mesh with Auto axes (`init` runs
        # through XLA's partitioner): the fit's arrays must share that mesh
        X = as_auto(X)
    if prior is None and can.own_prior is not None:
        prior = can.own_prior(jnp.shape(X), jnp.result_type(X))
    if prior is not None and can.log_prior is None:
        raise TypeError(
            f"{type(model).__name__} has no log_prior: it cannot be fitted with a prior"
        )
    return X, params, weights, prior


def weights_shape(model: EMModel, data_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape of the weights of one dataset of shape ``data_shape``: the model's
    ``weights_shape`` when it has one (a weight per step of every sequence, say), else
    ``(n_samples,)``."""
    own = of_model(model).weights_shape
    return (data_shape[0],) if own is None else tuple(own(data_shape))


def plan(
    model: EMModel, X: Array, weights: Array, chunk_size: int | None, copies: int = 1
) -> tuple[Array, int | None, SampleSharding | None]:
    """How the E-step passes over ``X``: ``(weights, block, layout)``, the weights placed as
    ``X`` is, the rows per block (per device; for ``copies`` E-steps side by side) and the
    split over devices (see `jaxem.chunking`, `jaxem.sharding`)."""
    layout = sample_sharding(X)
    add_up = of_model(model).statistics_add_up
    if (chunk_size is not None or layout is not None) and add_up is not None:
        if not add_up(X.shape, X.dtype):
            raise ValueError(
                "chunk_size / X split over devices: this model's statistics are not sums over "
                "rows (its M-step reads the rows themselves), so it is fitted in one block on "
                "one device; leave chunk_size=None and give X on one device"
            )
    n_local = X.shape[0]
    if layout is not None:
        n_local //= layout.n_shards
        weights = layout.place(weights)
    per_sample = model_bytes_per_sample(model, X)
    if per_sample is not None:
        per_sample *= copies
    return weights, block_rows(n_local, per_sample, chunk_size), layout


def prepare_data(model: EMModel, X: Array, weights: Array) -> Any:
    """The data as the model's E-step reads it, computed once per fit (see `jaxem.base`)."""
    prepare = of_model(model).prepare
    return X if prepare is None else prepare(X, weights)


def _prepared_data(model: EMModel, X: Array, weights: Array, block: int | None, layout) -> Any:
    """The data as `_pass`'s E-step reads it: with one block, the model's ``prepare`` done once
    (rows of weight zero filled first, `fill_unweighted`); in row blocks, the rows and weights
    as they are (each block is prepared as it is visited) and the row that fills each block's
    rows of weight zero (`first_weighted_row`, found once: a pass over the rows, 4 of 46 ms of
    an iteration at N = 4e6, D = 2); per device when ``layout`` splits the rows."""

    def prepare(X, weights):
        if block is None:
            return prepare_data(model, fill_unweighted(X, weights), weights), weights
        return X, weights, first_weighted_row(X, weights)

    if layout is None:
        return prepare(X, weights)
    return per_device(prepare, layout)(X, weights)


def _pass(model: EMModel, block: int | None, layout) -> Any:
    """``e_step(params, data) -> (stats, loglik)`` over all samples: in row blocks of ``block``
    rows (None: one block), and on every device's rows with the sums added across devices when
    ``layout`` is a `jaxem.sharding.SampleSharding`."""

    def e_step(params, data):
        if block is None:
            return model.e_step(params, *data)

        def one_block(X_b, w_b):
            return model.e_step(params, prepare_data(model, X_b, w_b), w_b)

        X, weights, fill = data
        return block_sum(one_block, X, weights, block, fill=fill)

    if layout is None:
        return e_step
    return local_then_psum(
        lambda params, data: e_step(params, jax.tree.map(lambda a: a[0], data)), layout, 1
    )


@partial(jit, static_argnames=("model", "max_iter", "block", "layout", "accelerate"))
def run(
    model: EMModel,
    X: Array,
    params: Params,
    prior: Prior | None,
    weights: Array,
    tol: Array,
    max_iter: int,
    block: int | None = None,
    layout: SampleSharding | None = None,
    accelerate: str | None = None,
    stats: Stats | None = None,
) -> FitResult:
    """The compiled loop of `fit` on checked inputs: ``weights`` placed and ``block``,
    ``layout`` chosen by `plan`, ``tol`` an array. With ``stats`` (plain EM only), EM begins
    with the M-step from them at ``params`` (`jaxem.algorithm.from_statistics`)."""
    data = _prepared_data(model, X, weights, block, layout)
    algorithm = _algorithm(model, data, prior, weights, block, layout, accelerate)
    state = algorithm.init(params)
    if stats is not None:
        if accelerate is not None:
            raise ValueError("run: stats= starts plain EM only (accelerate=None)")
        state = from_statistics(state, stats)
    return iterate(algorithm, state, tol, max_iter)


def iterate(algorithm: EMAlgorithm, state: EMState, tol: Array, max_iter: int) -> FitResult:
    """``algorithm.step`` from ``state`` inside ``jax.lax.while_loop`` until
    ``algorithm.converged`` or ``max_iter`` iterations: the loop of `fit`, as a `FitResult`
    with the objective after every iteration in ``history`` ``(max_iter,)``."""
    history = jnp.full((max_iter,), jnp.nan, state.objective.dtype)

    def cond(carry):
        state, _ = carry
        running = (state.n_iter < max_iter) & ~algorithm.converged(state, tol)
        return (state.n_evals == 0) | running

    def body(carry):
        state, history = carry
        state = algorithm.step(state)
        # the evaluation of the start writes nowhere (an index past the end is dropped)
        at = jnp.where(state.n_iter > 0, state.n_iter - 1, max_iter)
        return state, history.at[at].set(state.objective, mode="drop")

    state, history = jax.lax.while_loop(cond, body, (state, history))
    converged = algorithm.converged(state, tol)
    return FitResult(state.params, state.objective, state.n_iter, converged, history, state.n_evals)


def _algorithm(model, data, prior, weights, block, layout, accelerate) -> EMAlgorithm:
    """`jaxem.algorithm.build` on prepared ``data`` (`_prepared_data`), visited as `fit`
    visits it (row blocks, devices)."""
    e_step = _pass(model, block, layout)
    return build(model, lambda params: e_step(params, data), prior, jnp.sum(weights), accelerate)


def em_algorithm(
    model: EMModel,
    X: Any,
    params: Params,
    *,
    prior: Prior | None = None,
    weights: Any = None,
    chunk_size: int | None = None,
    accelerate: str | None = None,
) -> EMAlgorithm:
    """EM on ``model`` and ``X`` as three functions, ``init``, ``step`` and ``converged`` (see
    `jaxem.algorithm`), for a loop of one's own: logging, early stopping, a plot per
    iteration, or ``jax.lax.scan``. Inputs are checked here once (``params`` is a start, for
    the shapes), the data prepared once; the arguments are those of `fit`. ``init`` and
    ``step`` come compiled as `fit` compiles its loop, so that a Python loop gives `fit`'s
    iterates (plain EM: bit for bit; SQUAREM: to rounding, about 1e-15 relative, since XLA
    arranges a loop's body differently)::

        algorithm = jaxem.em_algorithm(model, X, params)
        state = algorithm.init(params)
        while state.n_evals == 0 or (
            state.n_iter < 100 and not algorithm.converged(state, 1e-6)
        ):
            state = algorithm.step(state)

    Returns:
        An `jaxem.algorithm.EMAlgorithm`; its states are `jaxem.algorithm.EMState`.
    """
    check_model(model)
    acceleration.check_accelerate(accelerate, model)
    chunk_size = check_chunk_size(chunk_size)
    X, _, weights, prior = check_inputs(model, X, params, weights, prior)
    X, weights = padded(model, X, weights)
    weights, block, layout = plan(model, X, weights, chunk_size)
    return _prepared(model, X, prior, weights, block, layout, accelerate)


def _prepared(model, X, prior, weights, block, layout, accelerate) -> EMAlgorithm:
    """The algorithm with the data prepared once (one compiled program), ``init`` and ``step``
    compiled with `jaxem.compiler`'s options as `run` is."""
    data = jit(partial(_prepared_data, model, block=block, layout=layout))(X, weights)
    algorithm = _algorithm(model, data, prior, weights, block, layout, accelerate)
    return algorithm._replace(init=jit(algorithm.init), step=jit(algorithm.step))
