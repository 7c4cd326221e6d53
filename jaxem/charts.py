"""Local coordinates of parameters: a minimal set of free numbers around an estimate.

The precision of an estimate $\\hat\\theta$ is read from derivatives of the log-likelihood
(`jaxem.information`), and those need coordinates in which every direction is a change of the
model: K - 1 numbers for K weights on the simplex, D(D+1)/2 for a covariance matrix, fewer for a
covariance with a structure. A model's ``chart(at, coordinates) -> params`` is such a
parametrisation centred at ``at``: ``chart(at, 0) == at``, every ``coordinates`` vector near 0
gives valid parameters of the model (exactly on its constraints up to terms of third order, all
that first and second derivatives at the centre see), and the coordinates are as many as the
model's free parameters (``n_parameters``), so that the Jacobian of the chart has full column
rank wherever the model is regular.

This module has what every chart is made of: the simplex (probabilities summing to one), bases
of vectors summing to zero, of symmetric and skew-symmetric matrices, and a matrix exponential
exact to third order.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def simplex(at: Array, coordinates: Array) -> Array:
    """Probabilities near ``at`` ``(..., C)`` (each row summing to one) from ``coordinates``
    ``(..., C - 1)``: every entry but the row's largest moves by its coordinate, the largest by
    minus their sum (so rows still sum to one, and a row's dependent entry is never one at the
    boundary). Entries of ``at`` on the boundary (`on_boundary`: a structural zero, a category
    beyond a column's count, a probability that EM drove to 0) do not move: their coordinates
    change nothing."""
    c = at.shape[-1]
    largest = jnp.argmax(at, axis=-1)[..., None]
    slots = jnp.arange(c - 1)
    moved = slots + (slots >= largest)  # (..., C - 1): which entry each coordinate moves
    hits = jax.nn.one_hot(moved, c, dtype=at.dtype)  # (..., C - 1, C)
    fixed = on_boundary(at, jnp.max(at, axis=-1, keepdims=True))
    step = jnp.where(fixed, 0.0, jnp.einsum("...j,...jc->...c", coordinates, hits))
    step = step - jax.nn.one_hot(largest[..., 0], c, dtype=at.dtype) * jnp.sum(step, -1)[..., None]
    return at + step


# Within this many machine epsilons of its bound (relative to ``scale``) a parameter is on the
# boundary: EM drives such a parameter towards its bound geometrically and never reaches it, and
# there the likelihood's gradient is not zero, so Wald's theory does not apply; held fixed.
BOUNDARY_EPS = 100


def on_boundary(distance: Array, scale: Array | float = 1.0) -> Array:
    """Whether parameters at ``distance`` from their bound are on it (booleans, the shape of
    ``distance``): within `BOUNDARY_EPS` machine epsilons of ``scale``."""
    eps = jnp.finfo(jnp.result_type(distance)).eps
    return distance <= BOUNDARY_EPS * eps * scale


def hold(at: Array, step: Array, fixed: Array) -> Array:
    """``at + step`` except where ``fixed``, which stays ``at``."""
    return at + jnp.where(fixed, 0.0, step)


def sum_zero_basis(d: int, dtype) -> np.ndarray:
    """An orthonormal basis ``(D, D - 1)`` of the vectors of length D summing to zero
    (Helmert's contrasts)."""
    basis = np.zeros((d, max(d - 1, 0)))
    for j in range(1, d):
        basis[:j, j - 1] = 1.0
        basis[j, j - 1] = -j
        basis[:, j - 1] /= np.sqrt(j * (j + 1))
    return basis.astype(dtype)


def symmetric_basis(d: int, trace_free: bool, dtype) -> np.ndarray:
    """A basis ``(M, D, D)`` of the symmetric D x D matrices (M = D(D+1)/2), or of those with
    zero trace (M = D(D+1)/2 - 1), orthonormal in the Frobenius inner product."""
    mats = []
    diagonals = sum_zero_basis(d, np.float64).T if trace_free else np.eye(d)
    for v in diagonals:
        mats.append(np.diag(v))
    rows, cols = np.triu_indices(d, 1)
    for i, j in zip(rows, cols, strict=True):
        m = np.zeros((d, d))
        m[i, j] = m[j, i] = np.sqrt(0.5)
        mats.append(m)
    return np.asarray(mats, dtype).reshape(-1, d, d)


def skew_basis(d: int, dtype) -> np.ndarray:
    """A basis ``(D(D-1)/2, D, D)`` of the skew-symmetric D x D matrices."""
    rows, cols = np.triu_indices(d, 1)
    mats = np.zeros((rows.size, d, d))
    mats[np.arange(rows.size), rows, cols] = 1.0
    mats[np.arange(rows.size), cols, rows] = -1.0
    return mats.astype(dtype)


def combine(coordinates: Array, basis: np.ndarray) -> Array:
    """$\\sum_m c_m B_m$ for ``coordinates`` ``(..., M)`` and a basis ``(M, ...)``."""
    return jnp.tensordot(coordinates, jnp.asarray(basis, coordinates.dtype), axes=1)


def expm3(matrix: Array) -> Array:
    """$I + X + X^2/2 + X^3/6$ of ``(..., D, D)``: the matrix exponential to third order (of a
    skew-symmetric matrix an orthogonal one, of a trace-free one a matrix of determinant one,
    both up to fourth-order terms, which first and second derivatives at 0 do not see)."""
    eye = jnp.eye(matrix.shape[-1], dtype=matrix.dtype)
    square = matrix @ matrix
    return eye + matrix + square / 2 + square @ matrix / 6


def split(coordinates: Array, sizes: list[int]) -> list[Array]:
    """``coordinates`` ``(P,)`` cut into consecutive pieces of ``sizes`` (summing to P)."""
    if sum(sizes) != coordinates.shape[-1]:
        raise ValueError(
            f"the chart has {sum(sizes)} coordinates; got a vector of {coordinates.shape[-1]}"
        )
    return jnp.split(coordinates, np.cumsum(sizes)[:-1].tolist(), axis=-1)
