"""Local coordinates of the fourteen covariance structures (see `jaxem.charts`), from mclust's
three letters: volume, shape, orientation, each Equal, Variable or the Identity, of
$\\Sigma_k = \\lambda_k D_k A_k D_k^\\top$.

Around covariances $\\hat\\Sigma_k$ three charts cover them all, each with as many coordinates
as the structure has free parameters:

- **no orientation** (EII, VII, EEI, VEI, EVI, VVI): the log variances move,
  $\\log \\sigma^2_{kd} = \\log \\hat\\sigma^2_{kd} + a_k + (B b_k)_d$, with a volume step $a$
  (one, or one per component) and a shape step $B b$ in the directions summing to zero (none,
  one, or one per component);
- **shape and orientation together** (EEE, VEE, EVV, VVV): $\\Sigma_k = e^{a_k} L_k
  \\exp(X_k) L_k^\\top$ with $\\hat\\Sigma_k = L_k L_k^\\top$ (Cholesky) and $X$ symmetric with
  zero trace (common or per component), so that the determinant moves with the volume only;
- **shape apart from orientation** (EVE, VVE, EEV, VEV): $\\Sigma_k = Q_k R_k\\, \\mathrm{diag}
  (e^{\\ell_k + a_k + B b_k}) R_k^\\top Q_k^\\top$ about the eigen-decomposition
  $\\hat\\Sigma_k = Q_k\\, \\mathrm{diag}(e^{\\ell_k}) Q_k^\\top$ (an orientation common to the
  components for the E's), with $R = \\exp(S)$, $S$ skew-symmetric (common or per component).
  As the model itself, this chart is singular where a shape has equal eigenvalues.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxem import charts

Array = jax.Array


def _sizes(letter: str, k: int, per: int) -> int:
    return {"I": 0, "E": per, "V": k * per}[letter]


def _steps(coordinates: Array, letter: str, k: int, per: int) -> Array:
    """``(K, per)`` steps: zeros (I), one row for all (E) or a row per component (V)."""
    if letter == "I":
        return jnp.zeros((k, per), coordinates.dtype)
    if letter == "E":
        return jnp.broadcast_to(coordinates.reshape(1, per), (k, per))
    return coordinates.reshape(k, per)


def log_scale_steps(coordinates: Array, volume: str, shape: str, k: int, d: int) -> Array:
    """$a_k + B b_k$ ``(K, D)`` from the volume's and shape's coordinates (in that order)."""
    vol, shp = charts.split(coordinates, [_sizes(volume, k, 1), _sizes(shape, k, d - 1)])
    basis = charts.sum_zero_basis(d, coordinates.dtype)
    return _steps(vol, volume, k, 1) + _steps(shp, shape, k, d - 1) @ basis.T


def variances(at: Array, coordinates: Array, letters: str) -> Array:
    """The no-orientation chart: variances ``(K, D)`` near ``at`` ``(K, D)``."""
    k, d = at.shape
    return at * jnp.exp(log_scale_steps(coordinates, letters[0], letters[1], k, d))


def matrices(at: Array, coordinates: Array, letters: str) -> Array:
    """The chart of a structure with an orientation: covariances ``(K, D, D)`` near ``at``
    ``(K, D, D)`` (a shared covariance repeated K times)."""
    volume, shape, orientation = letters
    if shape == orientation:
        return _cholesky_chart(at, coordinates, volume, shape)
    return _eigen_chart(at, coordinates, volume, shape, orientation)


def _cholesky_chart(at: Array, coordinates: Array, volume: str, matrix: str) -> Array:
    k, d, _ = at.shape
    per = d * (d + 1) // 2 - 1
    vol, mat = charts.split(coordinates, [_sizes(volume, k, 1), _sizes(matrix, k, per)])
    basis = charts.symmetric_basis(d, trace_free=True, dtype=at.dtype)
    steps = charts.combine(_steps(mat, matrix, k, per), basis)  # (K, D, D)
    chol = jnp.linalg.cholesky(at)
    scale = jnp.exp(_steps(vol, volume, k, 1))[:, :, None]
    return scale * (chol @ charts.expm3(steps) @ jnp.swapaxes(chol, -1, -2))


def _eigen_chart(at: Array, coordinates: Array, volume: str, shape: str, orientation: str):
    k, d, _ = at.shape
    per = d * (d - 1) // 2
    scale_size = _sizes(volume, k, 1) + _sizes(shape, k, d - 1)
    scales, turns = charts.split(coordinates, [scale_size, _sizes(orientation, k, per)])
    if orientation == "E":
        # one orientation diagonalises every component; a generic combination of them has
        # distinct eigenvalues wherever any component does
        mix = np.sqrt(np.arange(1, k + 1) + 1.0).astype(at.dtype)
        _, q = jnp.linalg.eigh(
            jnp.einsum("k,kde->de", mix, at / jnp.trace(at, axis1=1, axis2=2)[:, None, None])
        )
        q = jnp.broadcast_to(q, at.shape)
        eigenvalues = jnp.einsum("dj,kde,ej->kj", q[0], at, q[0])
    else:
        eigenvalues, q = jnp.linalg.eigh(at)
    log_eigen = jnp.log(eigenvalues) + log_scale_steps(scales, volume, shape, k, d)
    rotation = charts.expm3(
        charts.combine(_steps(turns, orientation, k, per), charts.skew_basis(d, at.dtype))
    )
    frame = q @ rotation
    return jnp.einsum("kdj,kj,kej->kde", frame, jnp.exp(log_eigen), frame)
