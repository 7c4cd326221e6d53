"""Exact EM over a data source: each iteration one pass over the blocks, their statistics summed.

The E-step's statistics and the log-likelihood are sums over samples (`jaxem.base`), so the
statistics of data that never sits in memory at once are the sums of its blocks' statistics:
reading a `jaxem.sources.Source` block by block and adding up what each block's E-step returns
gives exactly what `jaxem.fit`'s E-step computes on the concatenated data (up to the rounding of
the order of summation), and the M-step, the stopping rule and the objective are `fit`'s. The
iterates are `fit`'s iterates.

A pass keeps the device busy: a background thread reads, checks and places the next blocks
while the device computes the current one, and at most `IN_FLIGHT` blocks wait for the device,
so memory does not grow with the data. Every block is padded with rows of weight zero to the
rows of the largest block so far, so that one compiled program serves all of them (for models
whose E-step ignores such rows, as jaxem's do).
"""

from __future__ import annotations

import collections
import concurrent.futures
import time
from collections.abc import Iterator
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxem.algorithm import m_step, objective
from jaxem.base import Array, EMModel, FitResult, Params, Prior
from jaxem.capabilities import check_model, of_model
from jaxem.chunking import (
    BLOCK_BYTES,
    MIN_BLOCK,
    block_rows,
    block_sum,
    check_chunk_size,
    model_bytes_per_sample,
)
from jaxem.compiler import jit
from jaxem.em import check_inputs, prepare_data
from jaxem.progress import Progress
from jaxem.sources import Source, check_block
from jaxem.validation import check_fit_options

IN_FLIGHT = 3
PREFETCH = 2


def check_source(source: Any) -> Source:
    """``source`` when it is a `jaxem.sources.Source`; ``TypeError`` otherwise."""
    if not isinstance(source, Source):
        raise TypeError(
            "source must be a jaxem.sources.Source (jaxem.sources.npy, csv, parquet, array, "
            f"blocks), got {type(source).__name__}"
        )
    return source


def check_adds_up(model: EMModel, data_shape: tuple[int, ...], dtype: Any) -> None:
    """``ValueError`` unless the model's statistics of such data are sums over rows (a NumPyro
    model with a gradient-path parameter reads the rows themselves in its M-step), which
    blocks read one at a time and online EM need."""
    add_up = of_model(model).statistics_add_up
    if add_up is not None and not add_up(tuple(data_shape), dtype):
        raise ValueError(
            f"{type(model).__name__}'s statistics are not sums over rows (its M-step reads the "
            "rows themselves: a parameter on the gradient path), so it cannot learn from data "
            "a block at a time; fit an array with jaxem.fit"
        )


def _padded(X: np.ndarray, weights: np.ndarray, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """``X`` and ``weights`` with rows of weight zero appended up to ``rows``: copies of the
    first row of positive weight (zeros where there is none), data the model supports."""
    extra = rows - X.shape[0]
    if extra <= 0:
        return X, weights
    weighted = np.flatnonzero(np.reshape(weights > 0, (len(weights), -1)).any(axis=1))
    fill = X[weighted[0]] if len(weighted) else np.zeros(X.shape[1:], X.dtype)
    X = np.concatenate([X, np.broadcast_to(fill, (extra,) + X.shape[1:]).astype(X.dtype)])
    weights = np.concatenate([weights, np.zeros((extra,) + weights.shape[1:], weights.dtype)])
    return X, weights


@partial(jit, static_argnames=("model", "block"))
def _block_statistics(model, block, params, X, weights):
    """``(stats, loglik, total weight)`` of one block (in row blocks of ``block`` rows)."""

    def one(X_b, w_b):
        return model.e_step(params, prepare_data(model, X_b, w_b), w_b)

    stats, loglik = block_sum(one, X, weights, block)
    return stats, loglik, jnp.sum(weights)


@jit
def _add(total, more):
    return jax.tree.map(jnp.add, total, more)


class Pass:
    """One pass over a source: the E-step at fixed parameters, block by block.

    Args:
        model: the model (`jaxem.base.EMModel`).
        source: the data.
        prior: the prior the checks apply to (None for MLE).
        chunk_size: row blocks inside each of the source's blocks (None: chosen from the
            model's working memory, as `jaxem.fit` does).
    """

    def __init__(self, model: EMModel, source: Source, prior: Prior | None, chunk_size: Any):
        self.model = model
        self.source = source
        self.prior = prior
        self.chunk_size = check_chunk_size(chunk_size)
        self.first: np.ndarray | None = None  # block 0, whose width and dtype all must have
        self.rows = 0  # the rows every block is padded to
        self.pads = of_model(model).ignores_zero_weights
        self.inner: dict = {}  # the row blocks inside a block, per block shape

    def _checked(self, index: int, X: np.ndarray, weights: np.ndarray | None, params: Params):
        """Block ``index`` checked as `jaxem.fit` checks its data and placed on the device,
        padded to the rows of the largest block so far."""
        if self.first is None:
            self.first = X[:0]
            check_adds_up(self.model, X.shape, X.dtype)
        check_block(X, index, self.first, self.source.description)
        n = X.shape[0]
        try:
            X, _, weights, prior = check_inputs(self.model, X, params, weights, self.prior)
        except (ValueError, TypeError) as e:
            raise type(e)(f"block {index} of {self.source.description}: {e}") from None
        if self.pads and n < self.rows:
            X, weights = _padded(np.asarray(X), np.asarray(weights), self.rows)
            X, weights = jax.device_put(X), jax.device_put(weights)
        self.rows = max(self.rows, X.shape[0])
        return X, weights, prior, n

    def _inner_rows(self, X: Array) -> int | None:
        """The row blocks inside a source's block: ``chunk_size``, or blocks of about
        `jaxem.chunking.BLOCK_BYTES` of working memory. A block is prepared afresh on every
        pass anyway, so the one-block path of `jaxem.fit` (features computed once per fit) has
        nothing to save here, and smaller blocks stay in cache: a source of blocks of 100,000 rows
        (full covariances, D = K = 16, float32, 2-core EPYC) passes in 0.8-1.0 s per 2e6
        rows this way, 1.5 s in one block each."""
        key = (X.shape, X.dtype)
        if key not in self.inner:  # once per shape: the model's estimate traces its E-step
            chunk_size = self.chunk_size
            per_sample = model_bytes_per_sample(self.model, X)
            if chunk_size is None and per_sample is not None:
                chunk_size = max(MIN_BLOCK, BLOCK_BYTES // per_sample)
            self.inner[key] = block_rows(X.shape[0], per_sample, chunk_size)
        return self.inner[key]

    def placed(self, params: Params) -> Iterator[tuple[Array, Array, int]]:
        """Every block checked (at ``params``) and placed on the device, ``(X_b, weights_b,
        n_b)`` with ``n_b`` its rows before padding; the next `PREFETCH` blocks are read in a
        background thread meanwhile."""
        blocks = enumerate(self.source)
        found_any = False
        # the reader thread checks and places blocks in the caller's precision (a float64
        # scope, ``jax.enable_x64``, is the opening thread's alone: see `jaxem.grid`)
        x64 = bool(jax.config.jax_enable_x64)
        with concurrent.futures.ThreadPoolExecutor(1) as reader:

            def read_next():
                try:
                    index, (X, weights) = next(blocks)
                except StopIteration:
                    return None
                with jax.enable_x64(x64):
                    return self._checked(index, X, weights, params)

            queue = collections.deque(reader.submit(read_next) for _ in range(PREFETCH))
            try:
                while (ready := queue.popleft().result()) is not None:
                    queue.append(reader.submit(read_next))
                    X, weights, self.prior, n = ready
                    found_any = True
                    yield X, weights, n
            finally:
                for future in queue:
                    future.cancel()
        if not found_any:
            raise ValueError(f"{self.source.description} has no blocks")

    def statistics(self, params: Params, X: Array, weights: Array) -> tuple[Any, Array, Array]:
        """``(stats, loglik, weight)`` of one placed block at ``params``."""
        return _block_statistics(self.model, self._inner_rows(X), params, X, weights)

    def __call__(self, params: Params, progress: Progress | None = None):
        """``(stats, loglik, total weight, rows)`` at ``params`` over every block: the E-step of
        the concatenated data, the number of rows read."""
        total, rows, pending = None, 0, collections.deque()
        for X, weights, n in self.placed(params):
            found = self.statistics(params, X, weights)
            total = found if total is None else _add(total, found)
            pending.append(total)
            if len(pending) > IN_FLIGHT:  # the device keeps up before more is read
                jax.block_until_ready(pending.popleft())
            rows += n
            if progress is not None:
                progress.rows(n)
        stats, loglik, weight = total
        return stats, loglik, weight, rows


@partial(jit, static_argnames="model")
def _step(model, params, stats, prior):
    return m_step(model, params, stats, prior)


@partial(jit, static_argnames="model")
def _objective(model, params, loglik, prior):
    return objective(model, params, loglik, prior)


def evaluate(
    model: EMModel,
    source: Source,
    params: Params,
    *,
    prior: Prior | None = None,
    chunk_size: int | None = None,
) -> Array:
    """The objective at ``params`` over every block of ``source`` (the weighted
    log-likelihood, plus $\\log p(\\theta)$ with a prior), one pass."""
    check_model(model)
    one_pass = Pass(model, check_source(source), prior, chunk_size)
    _, loglik, _, _ = one_pass(params)
    return _objective(model, params, loglik, one_pass.prior)


def fit_source(
    model: EMModel,
    source: Source,
    params: Params,
    *,
    prior: Prior | None = None,
    tol: float = 1e-3,
    max_iter: int = 100,
    chunk_size: int | None = None,
    quiet: bool = False,
) -> FitResult:
    """EM over a data source, one pass per iteration: `jaxem.fit` for data given in blocks.

    Args:
        model: the model, as for `jaxem.fit`.
        source: a `jaxem.sources.Source`, read once per iteration (plus once for the start).
        params: the start.
        prior: optional prior hyperparameters (MAP).
        tol: the stopping rule of `jaxem.fit`; the iterates, the objective and the stopping
            rule are `fit`'s on the concatenated blocks.
        max_iter: the most iterations (passes after the start's).
        chunk_size: row blocks inside each of the source's blocks, as for `jaxem.fit` (None:
            chosen from the model's working memory).
        quiet: no progress bar (by default one line per pass on standard error: rows read,
            rows per second, the objective).

    Returns:
        A `jaxem.base.FitResult` (``n_evals`` passes).
    """
    check_model(model)
    check_fit_options(tol, max_iter)
    source = check_source(source)
    one_pass = Pass(model, source, prior, chunk_size)
    progress = Progress(source.n_rows, quiet)
    history = np.full(max_iter, np.nan)

    def evaluated(params, label):
        progress.start(label)
        stats, loglik, weight, rows = one_pass(params, progress)
        value = _objective(model, params, loglik, one_pass.prior)
        progress.done(float(value), rows)
        return stats, value, weight

    started = time.perf_counter()
    stats, value, weight = evaluated(params, "start")
    n_iter, converged = 0, False
    while n_iter < max_iter and not converged:
        params = _step(model, params, stats, one_pass.prior)
        previous = value
        stats, value, _ = evaluated(params, f"iteration {n_iter + 1}")
        history[n_iter] = float(value)
        n_iter += 1
        converged = bool(jnp.abs(value - previous) / weight < tol)
    progress.finish(time.perf_counter() - started)
    dtype = jnp.result_type(value)
    return FitResult(
        params,
        value,
        jnp.asarray(n_iter, jnp.int32),
        jnp.asarray(converged),
        jnp.asarray(history, dtype),
        jnp.asarray(n_iter + 1, jnp.int32),
    )


@jit
def _swap(total, old, new):
    """``total - old + new``: one block's statistics replaced in the running sum."""
    return jax.tree.map(lambda t, o, n: t - o + n, total, old, new)


def _sum(trees: list) -> Any:
    total = trees[0]
    for tree in trees[1:]:
        total = _add(total, tree)
    return total


def fit_incremental(
    model: EMModel,
    source: Source,
    params: Params,
    *,
    prior: Prior | None = None,
    tol: float = 1e-3,
    max_passes: int = 100,
    chunk_size: int | None = None,
    quiet: bool = False,
) -> FitResult:
    """Incremental EM (Neal and Hinton 1998) over a source: an M-step after every block.

    Every block's statistics are kept (a few numbers per component and block). After a first
    pass, an ordinary E-step at ``params``, each pass visits the blocks in turn: block b's
    statistics are recomputed at the current parameters and replace its old ones in the total,
    and the M-step of the total gives the parameters the next block sees. Each such step
    increases the lower bound $\\mathcal{L}(q, \\theta)$ (`jaxem.em`), as EM's does, so the
    iterates ascend it and reach EM's fixed points, while the parameters improve after every
    block instead of every pass: where a pass is costly, fewer passes to the same objective.

    Args:
        model: the model.
        source: a `jaxem.sources.Source` of at least two blocks (with one block this is EM).
        params: the start.
        prior: optional prior hyperparameters (MAP).
        chunk_size: row blocks inside each of the source's blocks, as for `fit_source`.
        tol: stop when the objective of a pass changes by less than ``tol`` per unit of
            weight; a pass's objective is the sum of every block's log-likelihood at the
            parameters it was visited with (plus the log prior), the exact objective once
            the parameters stop moving.
        max_passes: the most passes after the first.
        quiet: no progress line.

    Returns:
        A `jaxem.base.FitResult` whose ``n_iter`` counts passes after the first, ``history``
        the passes' objectives, and ``objective`` the exact objective at ``params`` (one more
        pass; ``n_evals`` counts every pass).
    """
    check_model(model)
    check_fit_options(tol, max_passes)
    source = check_source(source)
    one_pass = Pass(model, source, prior, chunk_size)
    progress = Progress(source.n_rows, quiet)
    started = time.perf_counter()

    progress.start("start")
    kept, rows = [], 0
    for X, weights, n in one_pass.placed(params):
        kept.append(one_pass.statistics(params, X, weights))
        rows += n
        progress.rows(n)
    stats, loglik, weight = _sum(kept)
    value = _objective(model, params, loglik, one_pass.prior)
    progress.done(float(value), rows)

    history = np.full(max_passes, np.nan)
    n_passes, converged = 0, False
    while n_passes < max_passes and not converged:
        progress.start(f"pass {n_passes + 1}")
        total = _sum(kept)  # summed afresh every pass: no drift from the running differences
        for index, (X, weights, n) in enumerate(one_pass.placed(params)):
            params = _step(model, params, total[0], one_pass.prior)
            found = one_pass.statistics(params, X, weights)
            total = _swap(total, kept[index], found)
            kept[index] = found
            progress.rows(n)
        previous = value
        value = _objective(model, params, _sum(kept)[1], one_pass.prior)
        progress.done(float(value), rows)
        history[n_passes] = float(value)
        n_passes += 1
        converged = bool(jnp.abs(value - previous) / weight < tol)
    progress.start("the objective at the result")
    _, loglik, _, _ = one_pass(params, progress)
    exact = _objective(model, params, loglik, one_pass.prior)
    progress.done(float(exact), rows)
    progress.finish(time.perf_counter() - started)
    return FitResult(
        params,
        exact,
        jnp.asarray(n_passes, jnp.int32),
        jnp.asarray(converged),
        jnp.asarray(history, jnp.result_type(exact)),
        jnp.asarray(n_passes + 2, jnp.int32),
    )
