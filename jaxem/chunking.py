"""Row blocks: sums over samples computed a block at a time, so that memory stays bounded.

Everything EM reads from the data is a sum over samples (the E-step's statistics, the
log-likelihood, k-means' cluster sums), so a pass over the data can visit it in blocks of
``chunk_size`` rows and add up the blocks' sums: an ``(N, K)`` or ``(K, N)`` array is then never
held whole, only ``(chunk_size, K)`` ones. The result equals the one-block pass up to the
rounding of a different order of summation.

The block size is chosen from the working memory a model needs per sample
(``model.bytes_per_sample(n_features, itemsize)``, an optional part of the contract in
`jaxem.base`): no blocks while the whole pass needs at most `UNBLOCKED_BYTES`,
otherwise blocks of about `BLOCK_BYTES`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxem.capabilities import of_model
from jaxem.validation import check_positive_int

Array = jax.Array

UNBLOCKED_BYTES = 256 * 2**20
BLOCK_BYTES = 32 * 2**20
MIN_BLOCK = 1024


def check_chunk_size(chunk_size: Any) -> int | None:
    """``None`` (automatic) or an integer >= 1."""
    return None if chunk_size is None else check_positive_int(chunk_size, "chunk_size")


def block_rows(
    n_rows: int, bytes_per_sample: int | None, chunk_size: int | None = None
) -> int | None:
    """The rows per block for a pass over ``n_rows`` samples, or None for one block.

    Args:
        n_rows: the rows the pass visits (on one device).
        bytes_per_sample: the pass's working memory per sample; None when unknown (one block).
        chunk_size: the caller's choice, which wins; None chooses from ``bytes_per_sample``.
    """
    if chunk_size is None:
        if bytes_per_sample is None or n_rows * bytes_per_sample <= UNBLOCKED_BYTES:
            return None
        chunk_size = max(MIN_BLOCK, BLOCK_BYTES // bytes_per_sample)
    return None if chunk_size >= n_rows else int(chunk_size)


def model_bytes_per_sample(model: Any, X: Array) -> int | None:
    """``model.bytes_per_sample(n_features, itemsize)`` when the model provides it (and
    returns a number: a model whose statistics are not sums over rows returns None)."""
    estimate = of_model(model).bytes_per_sample
    if estimate is None or X.ndim != 2:
        return None
    found = estimate(X.shape[1], jnp.dtype(X.dtype).itemsize)
    return None if found is None else int(found)  # None: the model cannot be blocked


def block_sum(
    fn: Callable[..., Any],
    X: Array,
    weights: Array,
    block: int | None,
    rows: tuple[Array, ...] = (),
    fill: Array | None = None,
) -> Any:
    """$\\sum_b$ ``fn(X_b, weights_b, *rows_b)`` over row blocks of ``block`` rows.

    ``fn`` must return a pytree of sums over the rows it is given, in which rows of weight zero
    count for nothing. Rows of weight zero are replaced (`fill_unweighted`) before ``fn`` sees
    them. The last block is the last ``block`` rows, its rows already seen given weight zero,
    so every block has one shape and no padded copy of ``X`` is made.

    Args:
        fn: ``(X_b (block, ...), weights_b (block,), *rows_b) -> pytree``.
        X: ``(n_samples, ...)``; weights: ``(n_samples, ...)``, X's leading shape.
        block: rows per block (static); None for a single call on all rows.
        rows: more arrays ``(n_samples, ...)`` cut into the same blocks.
        fill: the row that replaces rows of weight zero (`fill_unweighted`); None: the first
            of positive weight, found here (a pass over ``X``: a loop calling this again and
            again on the same data finds it once and passes it).
    """
    if block is None or block >= X.shape[0]:
        return fn(fill_unweighted(X, weights, fill), weights, *rows)
    n = X.shape[0]
    n_blocks = -(-n // block)
    if fill is None:
        fill = first_weighted_row(X, weights)  # one row for every block

    def one(i):
        start = jnp.minimum(i * block, n - block)
        cut = [jax.lax.dynamic_slice_in_dim(a, start, block) for a in (X, weights, *rows)]
        unseen = start + jnp.arange(block) >= i * block
        unseen = unseen.reshape((block,) + (1,) * (cut[1].ndim - 1))
        w = jnp.where(unseen, cut[1], jnp.zeros((), cut[1].dtype))
        return fn(fill_unweighted(cut[0], w, fill), w, *cut[2:])

    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(one, 0))
    return jax.lax.fori_loop(
        0, n_blocks, lambda i, total: jax.tree.map(jnp.add, total, one(i)), zeros
    )


def fill_unweighted(X: Array, weights: Array, fill: Array | None = None) -> Array:
    """``X`` with its rows of weight zero replaced by ``fill``, by default its first row of
    positive weight (`first_weighted_row`; a block's caller passes that of the whole data).
    ``weights`` ``(n_samples,)``, or of ``X``'s leading shape (per step of a sequence, say).

    A row of weight zero counts for nothing, but a model still computes with it: NaN (the
    padding of `jaxem.pad`) would turn its zero weight into NaN, and so would a value outside
    the model's support (zeros under a Gamma, whose log density there is -inf); a row of the
    data is in the support wherever the data are."""
    keep = (weights > 0).reshape(weights.shape + (1,) * (X.ndim - weights.ndim))
    return jnp.where(keep, X, first_weighted_row(X, weights) if fill is None else fill)


def first_weighted_row(X: Array, weights: Array) -> Array:
    """The first row of ``X`` with positive weight, ``X.shape[weights.ndim:]``, zeros if there
    is none. A masked sum over the rows, not an index: rows split over devices
    (`jaxem.sharding`) cannot be sliced at a position known only at run time."""
    kept = weights > 0
    position = jnp.zeros(weights.shape, jnp.int32)  # row-major position among the rows
    for axis, size in enumerate(weights.shape):
        position = position * size + jax.lax.broadcasted_iota(jnp.int32, weights.shape, axis)
    first = kept & (position == jnp.min(jnp.where(kept, position, position.size)))
    at_first = first.reshape(weights.shape + (1,) * (X.ndim - weights.ndim))
    leading = tuple(range(weights.ndim))
    return jnp.sum(jnp.where(at_first, X, jnp.zeros((), X.dtype)), axis=leading)
