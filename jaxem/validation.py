"""Input checks made before compilation.

Every check that looks at shapes always runs; checks that look at values (NaN, signs, positive
definiteness) run only on concrete arrays. Inside a caller's ``jit`` or ``vmap`` the arrays are
tracers, their values unknown, and those checks are skipped.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxem.sources import Source


def is_concrete(*trees: Any) -> bool:
    """True when no leaf of ``trees`` is a tracer (so its values can be inspected)."""
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(trees))


@jax.jit
def _all_finite(a: jax.Array) -> jax.Array:
    return jnp.all(jnp.isfinite(a))


def all_finite(a: Any) -> bool:
    """Whether every value is finite; for data split over devices (or hosts) the reduction
    runs where the data lives, so no copy of it comes to the host."""
    if isinstance(a, jax.Array) and len(a.sharding.device_set) > 1:
        return bool(_all_finite(a))
    return bool(np.all(np.isfinite(np.asarray(a))))


def host_values(a: Any) -> np.ndarray:
    """``a`` as NumPy on this host, gathered from every process when it spans several."""
    if isinstance(a, jax.Array) and not a.is_fully_addressable:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(a, tiled=True))
    return np.asarray(a)


def as_float_array(x: Any, name: str) -> jax.Array:
    """``x`` as a JAX array of a floating dtype (integers and bools become the default float)."""
    if isinstance(x, (str, bytes, Mapping)) or x is None:  # a dict: parameters in its place
        raise TypeError(f"{name} must be an array of numbers; got {type(x).__name__}")
    if isinstance(x, Source):
        raise TypeError(
            f"{name} is a data source ({x.description}): jaxem.fit (exact EM, one pass per "
            "iteration), jaxem.streaming and jaxem.online read sources; everything else takes an "
            "array: for a start, model.init(key, jaxem.sources.first_rows(source, 100_000))"
        )
    try:
        # NumPy data goes to the device as it is: jnp.asarray would compile a copy for every
        # new shape (about 10 ms each, a notebook's many sizes)
        arr = jax.device_put(x) if isinstance(x, np.ndarray) else jnp.asarray(x)
    except TypeError as err:
        raise TypeError(f"{name} must be an array of numbers; got {type(x).__name__}") from err
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        if not (jnp.issubdtype(arr.dtype, jnp.integer) or arr.dtype == jnp.bool_):
            raise TypeError(f"{name} must hold real numbers; got dtype {arr.dtype}")
        arr = arr.astype(jnp.result_type(float))
    return arr


# float32 keeps about 7 significant digits: a column whose values sit far from the origin for
# their spread keeps few digits of its deviations (4.1e6 +- 1: spacing 0.5), and its fit is
# then wrong however carefully it is computed (a two-component fit of such coordinates reported
# a log-likelihood of +21593 against float64's -1672; at 1e5 +- 0.3 the means move on a grid of
# 2.6 % of the spread and the objective differs by 3e-3 per row between evaluations)
# the largest float32 spacing of a column's values, over its spread: the command line computes
# in float64 beyond the first (it costs only time), the library warns beyond the second (a
# spacing of 1e-2 of the spread moves the objective by about 1e-4 per row between evaluations)
FLOAT32_SPACING = 1e-3
FLOAT32_SPACING_WARNED = 1e-2
_RESOLUTION_ROWS = 10_000  # rows looked at: the check is a warning, and costs O(1) per call


def unresolved_column(
    X: Any, names: list[str] | None = None, relative_spacing: float = FLOAT32_SPACING
) -> str | None:
    """Why float32 cannot hold ``X`` ``(N, D)`` well, or None: the first column whose float32
    spacing at its largest absolute value exceeds ``relative_spacing`` times its standard
    deviation (NaN cells left out; a constant column has nothing to resolve). ``X`` may be of
    any dtype (the command line asks before choosing float32); at most 10,000 evenly spaced
    rows are looked at. ``names``: the columns' names (default: their indices)."""
    values = np.asarray(X)
    if values.shape[0] > _RESOLUTION_ROWS:
        values = values[:: -(-values.shape[0] // _RESOLUTION_ROWS)]
    values = values.astype(np.float64)
    seen = ~np.isnan(values)
    counts = np.maximum(np.sum(seen, axis=0), 1)
    filled = np.where(seen, values, 0.0)
    largest = np.max(np.abs(filled), axis=0)
    deviations = np.where(seen, filled - np.sum(filled, axis=0) / counts, 0.0)
    spread = np.sqrt(np.sum(deviations**2, axis=0) / counts)
    spacing = np.spacing(largest.astype(np.float32)).astype(np.float64)
    names = list(range(values.shape[1])) if names is None else names
    for name, top, sd, step in zip(names, largest, spread, spacing, strict=True):
        if np.isfinite(sd) and sd > 0 and step > relative_spacing * sd:
            return (
                f"column {name!r} has values up to {top:.6g} and a spread of {sd:.3g}, "
                f"which float32 resolves only to {step:.2g}"
            )
    return None


def warn_if_unresolved(X: jax.Array, name: str = "X", batch: bool = False) -> None:
    """A warning when ``X`` ``(N, D)`` is float32 (or narrower) and `unresolved_column`
    finds a column whose spacing exceeds `FLOAT32_SPACING_WARNED` of its spread; with
    ``batch``, ``X`` ``(B, N, ..., D)`` and up to 16 members looked at one by one. Only for
    concrete data on one device (some of the values are read on the host)."""
    if np.dtype(X.dtype).itemsize >= 8 or not is_concrete(X) or X.ndim < 2 + batch:
        return
    if isinstance(X, jax.Array) and len(X.sharding.device_set) > 1:
        return
    members = range(0, X.shape[0], -(-X.shape[0] // 16)) if batch else [None]
    for member in members:
        rows = (X if member is None else X[member]).reshape(-1, X.shape[-1])
        if isinstance(rows, jax.Array) and rows.devices().pop().platform != "cpu":
            rows = rows[:: -(-rows.shape[0] // _RESOLUTION_ROWS)]  # a copy of some rows only
        reason = unresolved_column(np.asarray(rows), relative_spacing=FLOAT32_SPACING_WARNED)
        if reason is not None:
            where = name if member is None else f"{name}[{member}]"
            warnings.warn(
                f"{where} ({X.dtype}): {reason}; the fit's estimates and log-likelihood are no "
                "more precise than that. Compute in float64 (data as float64 under "
                "jax.enable_x64(True)), or subtract a centre (the column means, say) first",
                UserWarning,
                stacklevel=_caller_level(),
            )
            return


def _caller_level() -> int:
    """The ``stacklevel`` of `warnings.warn` called here that names the first frame outside
    jaxem, JAX and scikit-learn: the user's line, so that Python shows a warning once per line
    of theirs."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_globals.get("__name__", "").split(".")[0] in _OURS:
        frame, level = frame.f_back, level + 1
    return level


_OURS = {"jaxem", "jax", "jaxlib", "sklearn"}  # the estimator runs under its decorators


def check_data(X: Any, name: str = "X", missing: bool = False) -> jax.Array:
    """A 2-D floating array ``(n_samples, n_features)`` with finite values; with ``missing``,
    finite or NaN (a missing value), and not every value NaN. Float32 data whose columns sit too
    far from the origin for their spread get a warning (`warn_if_unresolved`)."""
    X = as_float_array(X, name)
    if X.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array of shape (n_samples, n_features); got shape {X.shape}"
        )
    if X.shape[0] < 1 or X.shape[1] < 1:
        raise ValueError(f"{name} must have at least one sample and one feature; got {X.shape}")
    if is_concrete(X) and not all_finite(X):
        if not missing:
            raise ValueError(
                f"{name} contains NaN or inf; every value must be finite (for values missing at "
                "random, build the model with missing=True; data padded by jaxem.pad holds NaN "
                "in its padding: pass the weights it returned)"
            )
        values = host_values(X)
        if np.any(np.isinf(values)):
            raise ValueError(f"{name} contains inf; values must be finite or NaN (missing)")
        if np.all(np.isnan(values)):
            raise ValueError(f"{name} has no observed value: every entry is NaN")
    warn_if_unresolved(X, name)
    return X


def check_weights(weights: Any, n_samples: int | tuple[int, ...], dtype: Any) -> jax.Array:
    """Sample weights ``(n_samples,)`` (or of the given shape, for a model whose
    ``weights_shape`` says so): finite, non-negative, not all zero. ``None`` gives ones."""
    shape = (n_samples,) if isinstance(n_samples, int) else tuple(n_samples)
    if weights is None:  # made on the host: a fill compiled for every size costs ~15 ms
        return jax.device_put(np.ones(shape, np.dtype(dtype)))
    w = as_float_array(weights, "weights").astype(dtype)
    if w.shape != shape:
        expected = f"(n_samples,) = ({n_samples},)" if isinstance(n_samples, int) else str(shape)
        raise ValueError(f"weights must have shape {expected}; got {w.shape}")
    if is_concrete(w):
        v = check_weight_values(w)
        if not np.any(v > 0):
            raise ValueError("weights must not all be zero")
    return w


def check_weight_values(weights: jax.Array) -> np.ndarray:
    """Concrete weights (any shape) finite and non-negative; returns them as NumPy."""
    v = host_values(weights)
    if not np.all(np.isfinite(v)):
        raise ValueError("weights contains NaN or inf; every weight must be finite")
    if np.any(v < 0):
        raise ValueError("weights must be non-negative; got a negative weight")
    return v


def n_weighted_samples(weights: jax.Array) -> int | None:
    """The number of rows with positive weight, or None when the weights are traced."""
    if not is_concrete(weights):
        return None
    return int(np.count_nonzero(host_values(weights) > 0))


def check_positive_int(value: Any, name: str, least: int = 1) -> int:
    """``value`` as an int, or ``ValueError`` unless it is an integer >= ``least`` (bools
    refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
        raise ValueError(f"{name} must be an integer >= {least}; got {value!r}")
    return int(value)


def check_fit_options(tol: Any, max_iter: Any) -> None:
    """``tol >= 0`` (a number) and ``max_iter >= 1`` (a Python int: the history's length)."""
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)):
        raise TypeError(f"max_iter must be a Python int; got {type(max_iter).__name__}")
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1; got {max_iter}")
    if is_concrete(tol):
        t = np.asarray(tol)
        if t.shape != () or not np.isfinite(t) or t < 0:
            raise ValueError(f"tol must be a finite number >= 0; got {tol}")


def worst(a: np.ndarray) -> Any:
    """``a`` itself when small, else its smallest entry (for error messages)."""
    return a if a.ndim == 0 or a.size <= 8 else a.min()
