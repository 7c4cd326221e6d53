"""Shape buckets: data of nearby sizes share one compiled program.

XLA compiles a program for every shape of its inputs, so fitting (or scoring) 333, 334 and 500
rows compiles three times, about a second each, where the arithmetic takes milliseconds: the
wait of a notebook that fits subsets, of cross-validation, of scikit-learn's checks. Rows of
weight zero change no fit, so the drivers pad the data with such rows up to the next size of
the form $2^j$ or $3 \\cdot 2^j$ (at least 16 rows): every size between two buckets runs the
same program, at most 50% more rows (about 20% on average). Above `LARGEST_PADDED` rows the
data keeps its size: there one compilation is small beside the run, and the padding would cost
time on every iteration. Sequences (a hidden Markov model's data, ``(n_sequences, n_steps, D)``)
are padded along both axes, the steps as rows and the sequences from one sequence up (1, 2, 3,
4, 6, 8, ...): a padded sequence costs a sequence's work, so one sequence of 1e5 steps padded
to sixteen made every iteration 16 times as long (57 ms where 4.8 ms do).

A model takes part when it says that rows of weight zero change nothing in its E-step
(``ignores_zero_weights``, true for jaxem's mixtures, hidden Markov models and k-means); a
model of one's own is fitted at its exact size unless it says so too. Data split over devices
and data traced inside a caller's ``jit`` keep their shape.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from jaxem.capabilities import of_model
from jaxem.validation import is_concrete

SMALLEST = 16
LARGEST_PADDED = 65_536


def bucket(n: int, smallest: int = SMALLEST) -> int:
    """The padded size of ``n`` rows: the smallest $2^j$ or $3 \\cdot 2^j$ that is at least
    ``max(n, smallest)``; ``n`` itself above `LARGEST_PADDED`."""
    if n > LARGEST_PADDED:
        return n
    size = smallest
    while size < n:
        if size == 1:
            size = 2
        else:
            size = size * 3 // 2 if size & (size - 1) == 0 else size * 4 // 3
    return size


def pad_rows(X: Any, weights: Any, axes: int = 1) -> tuple[jax.Array, jax.Array]:
    """``X`` and ``weights`` with each of the first ``axes`` axes (rows; for sequences,
    sequences and steps) padded to its `bucket` (the sequences' from one up); ``weights`` has
    ``axes`` dimensions, the leading ones of ``X``. The padding has weight zero and, as every
    row of weight zero, holds a copy of the first row of positive weight, which the model's
    distributions support where zeros need not (`jaxem.chunking.fill_unweighted`, which the
    drivers apply to every row block). Padded on the host (concrete data): a pad compiled for
    every size would undo the sharing."""
    shape = np.shape(weights)[:axes]
    smallest = [1] * (axes - 1) + [SMALLEST]  # whole sequences, then rows or steps
    widths = [(0, bucket(n, least) - n) for n, least in zip(shape, smallest, strict=True)]
    if not any(extra for _, extra in widths):
        return X, weights
    X_widths = widths + [(0, 0)] * (np.ndim(X) - axes)
    w_widths = widths + [(0, 0)] * (np.ndim(weights) - axes)
    X, weights = np.asarray(X), np.asarray(weights)
    padded_X, padded_weights = np.pad(X, X_widths), np.pad(weights, w_widths)
    weighted = np.argwhere(weights > 0)
    if len(weighted):  # the padding is a row of the data: in the model's support
        padded_X[padded_weights <= 0] = X[tuple(weighted[0])]
    return jax.device_put(padded_X), jax.device_put(padded_weights)


def unpad(tree: Any, sizes: tuple[int, ...], lead: int = 0) -> Any:
    """Every leaf of ``tree`` (results computed on padded data) cut back to ``sizes`` on its
    axes ``lead, lead + 1, ...`` (a leaf with fewer axes on those it has), on the host: a
    slice compiled for every size would undo the sharing."""

    def cut(a):
        index = (slice(None),) * lead + tuple(slice(0, n) for n in sizes)
        return jax.device_put(np.asarray(a)[index[: np.ndim(a)]])

    return jax.tree.map(cut, tree)


def shares_programs(model: Any, X: Any, weights: Any = None) -> bool:
    """Whether ``X`` (and ``weights``) may be padded to buckets for ``model``: a model whose
    E-step ignores rows of weight zero, and concrete data on one device."""
    if not of_model(model).ignores_zero_weights or not is_concrete(X, weights):
        return False
    return not (isinstance(X, jax.Array) and len(X.sharding.device_set) > 1)


def padded(model: Any, X: Any, weights: Any) -> tuple[Any, Any]:
    """``(X, weights)`` padded to buckets along the weights' axes when `shares_programs`, else
    as they are."""
    if weights is None or not shares_programs(model, X, weights):
        return X, weights
    return pad_rows(X, weights, np.ndim(weights))
