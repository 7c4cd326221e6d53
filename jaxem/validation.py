"""Input checks made before compilation.

Every check that looks at shapes always runs; checks that look at values (NaN, signs, positive
definiteness) run only on concrete arrays. Inside a caller's ``jit`` or ``vmap`` the arrays are
tracers, their values unknown, and those checks are skipped.
"""

from __future__ import annotations

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
    if isinstance(x, (str, bytes)) or x is None:
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


def check_data(X: Any, name: str = "X", missing: bool = False) -> jax.Array:
    """A 2-D floating array ``(n_samples, n_features)`` with finite values; with ``missing``,
    finite or NaN (a missing value), and not every value NaN."""
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
