"""Padding: ragged data sets (or sequences) stacked into one array with zero-weight rows.

`pad` fills the padding with NaN, so that padded data used without its weights is an error,
not a fit of the padding as data; with the weights, `without_padding` sets the padding to zero
before any check and it changes nothing (rows of weight zero have no influence on a fit).
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from jaxem.base import Array
from jaxem.chunking import fill_unweighted
from jaxem.compiler import jit
from jaxem.validation import as_float_array, is_concrete

# one compiled program, not a program per operation run on concrete data
_filled = jit(fill_unweighted)


def pad(datasets: Any) -> tuple[Array, Array]:
    """Stack ragged datasets into one batch padded with zero-weight rows.

    Args:
        datasets: a sequence of B arrays ``(N_b, D)`` (same D, any N_b >= 1).

    Returns:
        ``X`` ``(B, N_max, D)`` (padding rows hold NaN) and ``weights`` ``(B, N_max)`` (1 for
        real rows, 0 for padding). Pass both: rows of weight 0 have no influence on a fit,
        whatever they hold, so a padded member's fit equals the fit of its unpadded data; the
        NaN make a fit (or a score) of ``X`` without its weights an error instead of a fit of
        the padding as data.
    """
    arrays = [as_float_array(x, f"datasets[{i}]") for i, x in enumerate(datasets)]
    if not arrays:
        raise ValueError("pad needs at least one dataset")
    for i, a in enumerate(arrays):
        if a.ndim != 2 or a.shape[0] < 1:
            raise ValueError(
                f"datasets[{i}] must be a 2-D array (n_samples >= 1, n_features); got {a.shape}"
            )
        if a.shape[1] != arrays[0].shape[1]:
            raise ValueError(
                f"every dataset must have {arrays[0].shape[1]} features (as datasets[0]); "
                f"datasets[{i}] has {a.shape[1]}"
            )
    dtype = jnp.result_type(*arrays)
    n_max = max(a.shape[0] for a in arrays)
    X = np.full((len(arrays), n_max, arrays[0].shape[1]), np.nan, dtype)
    weights = np.zeros((len(arrays), n_max), dtype)
    for i, a in enumerate(arrays):
        X[i, : a.shape[0]] = np.asarray(a)
        weights[i, : a.shape[0]] = 1
    return jnp.asarray(X), jnp.asarray(weights)


def without_padding(X: Any, weights: Any) -> Any:
    """``X`` with the rows (or steps) of weight zero replaced by the first of positive weight
    (`jaxem.chunking.fill_unweighted`), when ``weights`` is given and shaped as ``X``'s leading
    axes: padding (which `jaxem.pad` fills with NaN, so that padded data fitted without its
    weights is an error, not a silent wrong answer) then passes the data checks, and carries
    no influence whatever it held. Other inputs (and traced ones, whose values no check reads)
    are returned as they are."""
    if weights is None or not is_concrete(X, weights):
        return X
    X, w = as_float_array(X, "X"), jnp.asarray(weights)
    if w.ndim < 1 or w.shape != X.shape[: w.ndim] or not jnp.issubdtype(w.dtype, jnp.number):
        return X
    return _filled(X, w)
