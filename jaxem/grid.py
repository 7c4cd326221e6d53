"""Every number of components of a mixture, and every restart, in one compiled program per
family configuration; mixtures that differ only in their M-step share it.

A mixture with $K_{\\max}$ components whose last $K_{\\max} - K$ weights are exactly zero is a
mixture of $K$: a zero weight gives zero responsibilities, hence zero counts, and the M-step
keeps it at zero (`MaskedMixture`, whose parameters carry which components are on: its M-step
reads them, `jaxem.capabilities.ReadsIterate`). So the fits for $K = 1, \\dots, K_{\\max}$ and
their random restarts are one program with one shape, the pairs (K, start) its members: compiled
once, instead of once per K and start (what `jaxem.select` cost a new user in compile time, and
a long notebook session in memory: JAX keeps every compiled program). On an accelerator the
members run `LANES` at a time in the lanes of `jaxem.batch.fit_lanes`, a lane taking the next
start when its own has converged: on 1,000 x 5 (24 cells, 33 starts each) the slowest start of
a cell took 3-6x the mean number of iterations, and when all starts iterated side by side under
``jax.vmap`` every one of them paid for the slowest (``select``'s second call 6.4 s, with 32
lanes 2.3 s). On a CPU they run one after another (`jaxem.compiler.starts_side_by_side` says
why).

The active components of a masked fit go through the arithmetic of the K-component mixture's own
EM (same statistics, same M-step; the weights renormalised over the active components), so a
cell equals ``fit(Mixture(family, K), ...)`` from the same start up to rounding. The inactive
components hold finite placeholder parameters (the M-step's choice for an empty component) and
never take samples.

Starts: k-means++ seeding and Lloyd iterations among the first K centres, on whitened data
(`jaxem.initialization.whiten`), then an M-step from the hard partition in the data's own units.
Whitening makes the seeding independent of the columns' units, as mclust's start is.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxem import threads
from jaxem.base import Array, PRNGKey
from jaxem.batch import fit_lanes
from jaxem.capabilities import of_family
from jaxem.compiler import CONCURRENT_OPTIONS, OPTIONS, jit, starts_side_by_side
from jaxem.em import run
from jaxem.initialization import kmeans_plusplus, lloyd, nearest, one_hot, whiten
from jaxem.mixture import Mixture

N_LLOYD_ITER = 10
# starts iterating side by side in `_fit_cells` (1,000 x 5, a second select: 16 lanes 2.1 s,
# 32 2.3 s, 64 3.0 s, 128 5.0 s; first calls with compilation 9.7, 10.5, 11.1, 12.3 s)
LANES = 32


class MaskedParams(NamedTuple):
    """A `MaskedMixture`'s parameters.

    Attributes:
        params: the mixture's parameters (``K_max`` components).
        active: ``(K_max,)`` booleans, the first K true: the components that are on. EM never
            changes them.
    """

    params: Any
    active: Array


@dataclasses.dataclass(frozen=True)
class MaskedMixture:
    """``mixture`` (with ``K_max`` components) restricted to the active components of its
    parameters (`MaskedParams`): an `jaxem.EMModel` whose M-step reads the iterate
    (``m_step_from``), so that the drivers run it unchanged and the prior stays the mixture's.

    Its objective is the K-component mixture's plus a constant that depends only on K and the
    prior (the inactive components' prior density at their fixed placeholder values), which
    changes neither the stopping rule nor the ranking of restarts.
    """

    mixture: Mixture

    def prepare(self, X: Array, weights: Array) -> Any:
        return self.mixture.prepare(X, weights)

    def bytes_per_sample(self, n_features: int, itemsize: int) -> int:
        return self.mixture.bytes_per_sample(n_features, itemsize)

    def init(self, key: PRNGKey, X: Array, weights: Array | None = None) -> MaskedParams:
        """The mixture's start with every component on."""
        params = self.mixture.init(key, X, weights)
        return MaskedParams(params, jnp.ones((self.mixture.n_components,), bool))

    def e_step(self, params: MaskedParams, X: Any, weights: Array) -> tuple[Any, Array]:
        return self.mixture.e_step(params.params, X, weights)

    def m_step(self, stats: Any, prior: Any = None) -> MaskedParams:
        """Without the iterate, every component on."""
        active = jnp.ones((self.mixture.n_components,), bool)
        return MaskedParams(self.mixture.m_step(stats, prior, active), active)

    def m_step_from(self, params: MaskedParams, stats: Any, prior: Any) -> MaskedParams:
        """The mixture's M-step with the components of ``params`` that are off kept off."""
        updated = self.mixture.m_step_from(params.params, stats, prior, params.active)
        return MaskedParams(updated, params.active)

    def log_prior(self, params: MaskedParams, prior: Any) -> Array:
        return self.mixture.log_prior(params.params, prior, params.active)


class SwitchedParams(NamedTuple):
    """A `SwitchedModel`'s parameters.

    Attributes:
        params: the chosen model's parameters (the layout all the models share).
        member: ``()`` int32, which of the models: EM never changes it.
    """

    params: Any
    member: Array


@dataclasses.dataclass(frozen=True)
class SwitchedModel:
    """Several models that differ only in their M-step, as one `jaxem.EMModel`: the E-step is
    the first model's (the same computation for all: their families say so,
    `shared_programs`), the M-step and the prior's density those of the model its parameters
    name (`SwitchedParams`), through ``jax.lax.switch`` on a scalar: one branch runs, so a fit
    costs what its own model's does. A program fitting it compiles the E-step, the loop and
    the bookkeeping once for all the models: Old Faithful's cells (K = 1..9, float64) for
    mclust's seven structures with full covariance matrices compiled in 3.5 s as seven
    programs, in 1.9 s as one. With one model there is no switch (``lax.switch`` calls its
    only branch). The models read the iterate (``m_step_from``)."""

    models: tuple

    def prepare(self, X: Array, weights: Array) -> Any:
        return self.models[0].prepare(X, weights)

    def bytes_per_sample(self, n_features: int, itemsize: int) -> int:
        return self.models[0].bytes_per_sample(n_features, itemsize)

    def e_step(self, params: SwitchedParams, X: Any, weights: Array) -> tuple[Any, Array]:
        return self.models[0].e_step(params.params, X, weights)

    def m_step(self, stats: Any, prior: Any = None) -> SwitchedParams:
        raise TypeError("a SwitchedModel's M-step needs the iterate, which names the model")

    def m_step_from(self, params: SwitchedParams, stats: Any, prior: Any) -> SwitchedParams:
        branches = [model.m_step_from for model in self.models]
        updated = jax.lax.switch(params.member, branches, params.params, stats, prior)
        return SwitchedParams(updated, params.member)

    def log_prior(self, params: SwitchedParams, prior: Any) -> Array:
        branches = [model.log_prior for model in self.models]
        return jax.lax.switch(params.member, branches, params.params, prior)


class GridResult(NamedTuple):
    """Every start of every cell: leaves with leading axes ``(n_K, n_init)``; parameters in the
    ``K_max`` layout (weights zero past K).

    Attributes:
        params: the fitted parameters.
        loglik: $\\sum_n w_n \\log p(x_n)$ at ``params``.
        entropy: $-\\sum_n w_n \\log \\max_k r_{nk}$ at ``params`` (for ICL; NaN unless asked
            for, see `fit_grid`).
        objective: the masked objective (see `MaskedMixture`).
        n_iter, converged: as in `jaxem.FitResult`.
    """

    params: Any
    loglik: Array
    entropy: Array
    objective: Array
    n_iter: Array
    converged: Array


def fit_grid(
    mixtures: tuple[Mixture, ...],
    key: PRNGKey,
    X: Array,
    n_components: Array,
    weights: Array,
    priors: tuple[Any, ...] | None,
    *,
    n_init: int,
    tol: Array,
    max_iter: int,
    block: int | None = None,
    extra_starts: Any = None,
    with_entropy: bool = True,
) -> tuple[GridResult, ...]:
    """Fit every K of ``n_components`` ``(n_K,)`` with ``n_init`` starts each, for each of
    ``mixtures`` (each with K_max >= every K components, all with the same ``init_points``, say
    Gaussian mixtures of several covariance types).

    Every mixture starts from the same partitions (k-means on whitened data, one per K and
    start), computed once by one program; each mixture's cells are one more program. The
    programs are compiled and run in threads, one per core (`_compile_and_call`), and kept
    for the next `CACHE_CALLS` calls only, so that a long session's memory stays bounded (JAX's
    own caches keep every program). Checked inputs: ``X`` ``(N, D)``,
    ``weights`` ``(N,)``, ``tol`` an array; ``priors`` None or one prior per mixture, each with
    a leading axis ``n_K`` on every leaf (the prior of cell K, ``alpha`` ``(K_max,)``);
    ``block`` as chosen by `jaxem.em.plan`; ``extra_starts`` None or more starting partitions
    ``(n_K, n_extra, N)`` int32 labels (-1: a row outside every cluster of the start, such as
    a row the hierarchical clustering of `jaxem.hierarchical.partitions` left out), fitted after
    the ``n_init`` k-means starts (``n_init`` may be 0); ``with_entropy`` False leaves
    ``entropy`` NaN (ICL's term: it costs one more pass over the data per start, and
    compilation). Returns every start's fit, ``n_init + n_extra`` per cell;
    `best_starts` picks each cell's.
    """
    mixtures = tuple(mixtures)
    if extra_starts is None:
        extra_starts = np.zeros((n_components.shape[0], 0, X.shape[0]), np.int32)
    extra_starts = jnp.asarray(extra_starts, jnp.int32)
    if priors is None:
        priors = (None,) * len(mixtures)
    k_max = mixtures[0].n_components
    partition_args = (key, X, n_components, weights)
    partition_static = dict(mixture=mixtures[0], n_init=n_init, block=block)
    labels_shape = jax.ShapeDtypeStruct((n_components.shape[0], n_init, X.shape[0]), jnp.int32)
    # the k-means partitions are one more program; with n_init = 0 only the extra starts run
    jobs = [(_partitions, partition_args, partition_static)] if n_init > 0 else []
    side_by_side = starts_side_by_side()
    if any(mixture.n_components != k_max for mixture in mixtures):
        raise ValueError("every mixture of fit_grid must have the same number of components")
    # mixtures that differ only in their M-step share a program (`SwitchedModel`); side by
    # side, the lanes' parameters are batched, and with them the member index, under which
    # ``lax.switch`` would run every member's M-step
    if side_by_side:
        groups = [(j,) for j in range(len(mixtures))]
    else:
        groups = shared_programs(mixtures, priors)
    # each group's first fit first: its thread compiles the group's program while the others
    # compile the other groups'; the group's later fits wait for it
    order = [group[0] for group in groups] + [j for group in groups for j in group[1:]]
    group_of = {j: group for group in groups for j in group}
    for j in order:
        group = group_of[j]
        member = jnp.asarray(group.index(j), jnp.int32)
        args = (X, n_components, labels_shape, extra_starts, weights, priors[j], tol, member)
        static = dict(
            mixtures=tuple(mixtures[m] for m in group),
            max_iter=max_iter,
            block=block,
            side_by_side=side_by_side,
            with_entropy=with_entropy,
        )
        jobs.append((_fit_cells, args, static))
    first_cells = len(jobs) - len(mixtures)  # jobs[first_cells + i] fits mixtures[order[i]]
    labels: Future = Future()
    if n_init == 0:
        labels.set_result(jnp.zeros(labels_shape.shape, jnp.int32))

    def call(i: int, program: Callable[[], Any]) -> Any:
        """Run job ``i`` in its worker thread; the cells wait for the k-means partitions."""
        if i < first_cells:
            try:
                partition = jax.block_until_ready(program()(*partition_args))
            except BaseException as error:
                labels.set_exception(error)  # the cells' threads must not wait forever
                raise
            labels.set_result(partition)
            return partition
        compiled = program()  # while the partitions run
        cells_args = (X, n_components, labels.result(), *jobs[i][1][3:])
        return jax.block_until_ready(compiled(*cells_args))

    results = _compile_and_call(jobs, call)
    fits = dict(zip(order, results[first_cells:], strict=True))
    return tuple(fits[j].result() for j in range(len(mixtures)))


def shared_programs(
    mixtures: tuple[Mixture, ...], priors: tuple[Any, ...]
) -> list[tuple[int, ...]]:
    """The indices of ``mixtures`` in groups that can share one program of `fit_grid`:
    mixtures of one class and number of components whose families declare the same E-step
    (`jaxem.capabilities.SharesEStep`), with priors (``priors``, as `fit_grid` takes them) of
    the same shapes and the same kind of start. A family without ``e_step_form`` shares with
    equal families only. mclust's fourteen structures make six groups: the seven with
    ``(K, D, D)`` covariance matrices, the three with ``(K, D)`` variances, and EII, VII, EEI
    and EEE alone. Largest groups first, each group's indices increasing."""
    groups: dict = {}
    for j, (mixture, prior) in enumerate(zip(mixtures, priors, strict=True)):
        can = of_family(mixture.family)
        form = mixture.family if can.e_step_form is None else can.e_step_form
        prior_shapes = jax.tree.map(lambda a: (jnp.shape(a), str(jnp.result_type(a))), prior)
        start = can.estimate_from is None or can.starts_without_iterate
        key = (type(mixture), mixture.n_components, form, str(prior_shapes), start)
        groups.setdefault(key, []).append(j)
    return sorted((tuple(members) for members in groups.values()), key=len, reverse=True)


CACHE_CALLS = 2
_PROGRAMS: OrderedDict = OrderedDict()  # the programs of each of the last CACHE_CALLS calls
_LOCK = threading.Lock()


def _compile_and_call(jobs: list, call: Callable[[int, Callable[[], Any]], Any]) -> list[Future]:
    """``call(i, program)`` for every job ``(function, args, static)``, ``program()`` giving
    its compiled program, in worker threads, one per core. A job compiles (or takes its program
    from the cache) and runs in the same thread, so that one job's run overlaps the next one's
    compilation and, on a CPU, two programs run at once: `_fit_cells`'s programs there use one
    core each, and JAX's CPU client runs the programs dispatched from one thread in turn. Old
    Faithful, K = 1..9, float64, a second call: 18.7 s with one thread, 9.8 s with two.
    Jobs with the same function, static arguments and shapes share one program, compiled by
    the first of them to ask for it. Returns the futures of the calls, in order. The cache
    keeps the programs of the last `CACHE_CALLS` calls (a notebook going back and forth
    between two data sets compiles nothing new); older ones are dropped, and with them their
    memory (each program holds a few hundred memory mappings)."""

    def signature(function, args, static):
        shapes = jax.tree.map(lambda a: (jnp.shape(a), str(a.dtype)), args)
        return function.__name__, tuple(sorted(static.items())), str(shapes)

    keys = tuple(signature(*job) for job in jobs)
    with _LOCK:
        known = {k: p for call in _PROGRAMS.values() for k, p in call.items()}
    compiling: dict = {}  # key -> Future of its program, for jobs that share one

    def program(i):
        with _LOCK:
            if keys[i] in known:
                return known[keys[i]]
            pending = compiling.get(keys[i])
            owner = pending is None
            if owner:
                pending = compiling[keys[i]] = Future()
        if not owner:
            return pending.result()
        try:
            function, args, static = jobs[i]
            compiled = jax.jit(partial(function, **static)).lower(*args).compile(options)
        except BaseException as error:
            pending.set_exception(error)  # the jobs waiting for it must not wait forever
            raise
        with _LOCK:
            known[keys[i]] = compiled
        pending.set_result(compiled)
        return compiled

    options = CONCURRENT_OPTIONS if threads.count(len(jobs)) > 1 else OPTIONS
    futures = threads.run(lambda i: call(i, partial(program, i)), range(len(jobs)))
    if any(future.exception() is not None for future in futures):
        return futures  # nothing is cached from a failed call
    with _LOCK:
        _PROGRAMS[keys] = {k: known[k] for k in keys}
        _PROGRAMS.move_to_end(keys)
        while len(_PROGRAMS) > CACHE_CALLS:
            _PROGRAMS.popitem(last=False)
    return futures


def _partitions(key, X, n_components, weights, *, mixture, n_init, block):
    """``(n_K, n_init, N)`` labels: for every start, k-means++ seeds of K_max centres on the
    whitened data; for every K, Lloyd's iterations among the first K of them."""
    k_max = mixture.n_components
    points = whiten(mixture.family.init_points(X), weights)
    # the greedy k-means++ seeds of a K_max run begin with those of every smaller K
    seeds = jax.vmap(lambda k: kmeans_plusplus(k, points, weights, k_max, block))(
        jax.random.split(key, n_init)
    )

    def partition(k, centres):
        active = jnp.arange(k_max) < k
        centres = lloyd(points, weights, centres, N_LLOYD_ITER, block, active)
        return nearest(points, centres, active)

    return jax.vmap(lambda k: jax.vmap(lambda c: partition(k, c))(seeds))(n_components)


def _fit_cells(
    X,
    n_components,
    labels,
    extra,
    weights,
    prior,
    tol,
    member,
    *,
    mixtures,
    max_iter,
    block,
    side_by_side,
    with_entropy,
):
    """EM from every partition ``labels`` ``(n_K, n_init, N)`` and ``extra`` ``(n_K, n_extra,
    N)`` of ``mixtures[member]`` (mixtures that differ only in their M-step, `shared_programs`;
    ``member`` ``()`` int32), every start to convergence. Unless ``side_by_side``
    (`jaxem.compiler.starts_side_by_side`: not on a CPU) the starts run one after another in
    ``jax.lax.map``; side by side, as the members
    of `jaxem.batch.fit_lanes` (a lane whose start has converged takes the next one, so that the
    cost is the iterations summed over the starts, not the slowest start's times their number;
    on 1,000 x 5 the slowest of a cell's starts took 3-6x the mean), or in row blocks side by
    side."""
    labels = jnp.concatenate([labels, extra], axis=1)
    model = SwitchedModel(tuple(MaskedMixture(m) for m in mixtures))  # one member: no switch
    masked, mixture = model.models[0], mixtures[0]  # its E-step and statistics are every member's
    k_max = mixture.n_components
    n_k, n_starts = labels.shape[:2]
    positive = weights > 0

    def partition_stats(labels_s):
        return mixture.stats(X, one_hot(labels_s, k_max, weights).T, weights)

    def start(k, labels_s, cell_prior):
        on = MaskedParams(None, jnp.arange(k_max) < k)  # the M-step reads only the mask
        return model.m_step_from(SwitchedParams(on, member), partition_stats(labels_s), cell_prior)

    def summary(fit, cell_prior):
        """The fit's log-likelihood from its objective (at its parameters: the loop's last
        E-step), without the prior's terms; the entropy only if asked for (a pass more)."""
        loglik = fit.objective
        if cell_prior is not None:
            loglik = loglik - model.log_prior(fit.params, cell_prior)
        entropy = jnp.full_like(loglik, jnp.nan)
        if with_entropy:
            log_joint = mixture.log_joint(fit.params.params.params, X)
            log_top = jnp.max(log_joint, axis=1) - jax.nn.logsumexp(log_joint, axis=1)
            entropy = -jnp.sum(jnp.where(positive, weights * log_top, 0.0))
        return GridResult(
            params=fit.params.params.params,
            loglik=loglik,
            entropy=entropy,
            objective=fit.objective,
            n_iter=fit.n_iter,
            converged=fit.converged,
        )

    # every start's K and prior, starts flattened: member i is cell i // n_starts
    ks = jnp.repeat(n_components, n_starts)
    flat_labels = labels.reshape((n_k * n_starts,) + labels.shape[2:])
    priors = None
    if prior is not None:
        priors = jax.tree.map(lambda a: jnp.repeat(a, n_starts, axis=0), prior)

    if not side_by_side:
        # where the M-step reads nothing of the iterate but the mask, or takes NaN for no
        # iterate, the loop's own M-step takes the partition's statistics: the program holds
        # one M-step, not two
        can = of_family(mixture.family)
        from_partition = can.estimate_from is None or can.starts_without_iterate

        def one(start_args):
            k, labels_s, member_prior = start_args
            if from_partition:
                on = MaskedParams(None, jnp.arange(k_max) < k)
                stats = partition_stats(labels_s)
                shapes = jax.eval_shape(masked.m_step_from, on, stats, member_prior)
                params = jax.tree.map(_no_iterate, shapes)._replace(active=on.active)
                params = SwitchedParams(params, member)
            else:
                params, stats = start(k, labels_s, member_prior), None
            fit = run(model, X, params, member_prior, weights, tol, max_iter, block, stats=stats)
            return summary(fit, member_prior)

        result = jax.lax.map(one, (ks, flat_labels, priors))
    else:
        starts = jax.vmap(start)(ks, flat_labels, priors)
        if block is None:
            lanes = min(LANES, n_k * n_starts)
            fits = fit_lanes(model, X, weights, starts, priors, tol, max_iter, lanes, shared=True)
        else:
            fits = jax.vmap(lambda p, m: run(model, X, p, m, weights, tol, max_iter, block))(
                starts, priors
            )
        result = jax.vmap(summary)(fits, priors)
    return jax.tree.map(lambda a: a.reshape((n_k, n_starts) + a.shape[1:]), result)


def _no_iterate(shape: jax.ShapeDtypeStruct) -> Array:
    """A placeholder leaf for parameters that are no iterate: NaN (zeros if not floating)."""
    fill = jnp.nan if jnp.issubdtype(shape.dtype, jnp.floating) else 0
    return jnp.full(shape.shape, fill, shape.dtype)


def best_starts(mixture: Mixture, result: GridResult, n_components: Any, regular: bool) -> tuple:
    """Per cell, the index of the start with the largest objective, and whether every start of
    the cell ended with a collapsed active component (the family's ``collapsed``,
    `jaxem.capabilities.Collapses`). With ``regular`` (maximum likelihood) a start with a
    collapsed component wins only when all have one: its likelihood is an artefact of the
    regulariser (mclust reports such fits as NA)."""
    objectives = np.asarray(result.objective, dtype=np.float64)
    objectives = np.where(np.isnan(objectives), -np.inf, objectives)
    collapsed_fn = of_family(mixture.family).collapsed
    bad = np.zeros(objectives.shape, bool)
    if regular and collapsed_fn is not None:
        mixed = mixture.as_mixture_params(result.params)
        active = np.arange(mixture.n_components) < np.asarray(n_components)[:, None, None]
        bad = np.any(collapsed_fn(mixed.components, mixed.weights) & active, axis=-1)
    all_bad = np.all(bad, axis=1)
    ranked = np.where(bad & ~all_bad[:, None], -np.inf, objectives)
    return np.argmax(ranked, axis=1), all_bad


# compiled: operation by operation it compiled a program per operation (0.1 s of a select)
@partial(jit, static_argnames=("mixture", "k"))
def first_components(mixture: Mixture, params: Any, k: int) -> Any:
    """The first ``k`` components of ``params`` (in the K_max layout of ``mixture``) as the
    parameters of a k-component mixture."""
    params = mixture.as_mixture_params(params)
    weights = params.weights[:k]
    components = mixture.family.permute(params.components, jnp.arange(k))
    return mixture.from_mixture_params(
        params._replace(weights=weights / jnp.sum(weights), components=components)
    )


__all__ = [
    "GridResult",
    "MaskedMixture",
    "MaskedParams",
    "SwitchedModel",
    "SwitchedParams",
    "best_starts",
    "first_components",
    "fit_grid",
    "shared_programs",
]
