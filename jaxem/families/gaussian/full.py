"""Full covariances: one symmetric positive definite $\\Sigma_k$ per component, ``(K, D, D)``
(mclust's VVV), the structure `Full`; and the matrix arithmetic the other structures with
matrices share (`precision`, `quadratic_coefficients`, `scatter_matrices`, the floors that keep
a covariance factorisable in low precision, Cholesky coordinates).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxem import linalg, priors
from jaxem.families.gaussian import covariance_charts
from jaxem.families.gaussian.structure import CovarianceStructure, register

Array = jax.Array

# Up to this many features the Cholesky factorisation and the precision matrix are written out
# entry by entry: elementwise arithmetic that XLA fuses, instead of a batch of tiny LAPACK calls
# per component, which dominate when thousands of small fits run at once (fit_batch).
SMALL_D = 4


def squares(centred: Array) -> Array:
    """The quadratic features $x_i x_j$, $i \\le j$, of ``centred`` ``(D, N)``:
    ``(D(D+1)/2, N)``, in the order of ``numpy.triu_indices(D)``."""
    rows, cols = np.triu_indices(centred.shape[0])
    return centred[rows] * centred[cols]


def squares_of_rows(values: Array) -> Array:
    """`squares` with the values' dim last: ``values`` ``(..., D)`` -> ``(..., D(D+1)/2)``,
    same order. Built from slices $x_i x_{i:}$: a gather along the last axis (the form of
    `squares`) is about 3x slower on a CPU (measured on 3,855 x 16 float32 rows: 0.68 against
    0.25 ms)."""
    d = values.shape[-1]
    return jnp.concatenate([values[..., i : i + 1] * values[..., i:] for i in range(d)], axis=-1)


def quadratic_form(covariances: Array, offsets: Array) -> tuple[Array, Array, Array, Array]:
    """Coefficients of $(x - o_k)^\\top \\Sigma_k^{-1} (x - o_k)
    = a_k \\cdot q(x) + b_k \\cdot x + c_k$ and $\\log|\\Sigma_k|$.

    ``covariances`` ``(K, D, D)`` (or one ``(D, D)`` for all), ``offsets`` ``(K, D)``; returns
    ``a`` ``(K, D(D+1)/2)`` (the precision's upper triangle, off-diagonal entries doubled),
    ``b`` ``(K, D)``, ``c`` ``(K,)`` and the log-determinants ``(K,)``."""
    prec, log_det = precision(covariances)
    a, b, c = quadratic_coefficients(prec, offsets)
    return a, b, c, jnp.broadcast_to(log_det, c.shape)


def quadratic_coefficients(prec: Array, offsets: Array) -> tuple[Array, Array, Array]:
    """``(a, b, c)`` of `quadratic_form` from the precisions ``prec`` ``(K, D, D)`` (or one
    ``(D, D)`` for all) and ``offsets`` ``(K, D)``."""
    k, d = offsets.shape
    prec = jnp.broadcast_to(prec, (k, d, d))
    rows, cols = np.triu_indices(d)
    a = prec[:, rows, cols] * np.where(rows == cols, 1.0, 2.0).astype(prec.dtype)
    po = jnp.einsum("kde,ke->kd", prec, offsets)
    return a, -2.0 * po, jnp.sum(po * offsets, axis=-1)


def precision(covariances: Array) -> tuple[Array, Array]:
    """$\\Sigma^{-1}$ and $\\log|\\Sigma|$ through the Cholesky factor
    $\\Sigma = L L^\\top$, $\\Sigma^{-1} = L^{-\\top} L^{-1}$; ``(..., D, D)``."""
    d = covariances.shape[-1]
    if d > SMALL_D:
        chol = linalg.cholesky(covariances)
        inv = linalg.solve_lower(chol, jnp.eye(d, dtype=chol.dtype))
        return jnp.swapaxes(inv, -1, -2) @ inv, linalg.log_det(chol)
    # Cholesky-Banachiewicz, then L^{-1} by forward substitution, entry by entry
    chol = [[None] * d for _ in range(d)]
    for i in range(d):
        for j in range(i + 1):
            s = covariances[..., i, j] - sum(chol[i][m] * chol[j][m] for m in range(j))
            chol[i][j] = jnp.sqrt(s) if i == j else s / chol[j][j]
    inv = [[None] * d for _ in range(d)]
    for i in range(d):
        inv[i][i] = 1.0 / chol[i][i]
        for j in range(i):
            inv[i][j] = -sum(chol[i][m] * inv[m][j] for m in range(j, i)) * inv[i][i]
    entries = [
        [sum(inv[m][i] * inv[m][j] for m in range(max(i, j), d)) for j in range(d)]
        for i in range(d)
    ]
    prec = jnp.stack([jnp.stack(row, axis=-1) for row in entries], axis=-2)
    log_det = 2.0 * sum(jnp.log(chol[i][i]) for i in range(d))
    return prec, log_det


def scatter_matrices(moments: Array, firsts: Array, counts: Array, offsets: Array) -> Array:
    """$S_k = \\sum_n wr_{nk} (x_n - o_k)(x_n - o_k)^\\top$ ``(K, D, D)`` from the
    weighted sums of the quadratic features ``moments`` ``(K, D(D+1)/2)``, of the data
    ``firsts`` ``(K, D)`` and of the weights ``counts`` ``(K,)``."""
    d = offsets.shape[-1]
    index = np.zeros((d, d), dtype=int)
    rows, cols = np.triu_indices(d)
    index[rows, cols] = index[cols, rows] = np.arange(rows.size)
    cross = firsts[:, :, None] * offsets[:, None, :]
    return (
        moments[:, index]
        - cross
        - jnp.swapaxes(cross, -1, -2)
        + counts[:, None, None] * offsets[:, :, None] * offsets[:, None, :]
    )


def floor_spectrum(cov: Array, floor: Array) -> Array:
    """``cov`` ``(..., D, D)`` unchanged where every squared pivot of its Cholesky factor is at
    least its ``floor`` ``(..., D)``, else rebuilt from the factor with those pivots raised to
    it (`jaxem.linalg.cholesky`), so that it factorises."""
    chol = linalg.cholesky(cov, floor)
    pivots = jnp.diagonal(chol, axis1=-2, axis2=-1)
    low = jnp.any(pivots * pivots < floor * (1 + 1e-3), axis=-1)[..., None, None]
    raised = chol @ jnp.swapaxes(chol, -1, -2)
    return jnp.where(low, raised, cov)


# The rounding error of a scatter, per feature, in units of D machine epsilons times the squared
# scale of that feature about the data's centre.
RESOLUTION = 10.0


def floors(cov: Array, spread: Array, reg_covar: float) -> Array:
    """The smallest squared Cholesky pivot each feature of ``cov`` ``(..., D, D)`` can be
    trusted with in its dtype, ``(..., D)``: ``reg_covar``, or
    $10 D \\varepsilon (s_d + \\Sigma_{dd})$ where that is larger, with ``spread`` $s_d$
    ``(..., D)`` the squared distance of the component's mean from the data's centre.

    $W_k / N_k + \\epsilon I$ has every eigenvalue (hence every squared pivot) $\\ge
    \\epsilon$ in exact arithmetic, but $W_k$ comes from sums of squares about the data's
    centre: its entry $(d, e)$ carries a rounding error of order
    $\\varepsilon \\sqrt{(s_d + \\Sigma_{dd})(s_e + \\Sigma_{ee})}$, which for a component
    collapsing far from the centre exceeds $\\epsilon$ in float32 ($\\varepsilon \\approx
    1.2 \\cdot 10^{-7}$: a component of R's diabetes data on one point, 500 units from the
    centre, came out with $\\pm 10^{-3}$ entries, indefinite, and the next E-step failed). Raising
    each pivot to these floors keeps the matrix positive definite at the precision of its
    entries, feature by feature (so columns of different scales keep theirs). In float64 the
    second term exceeds ``reg_covar = 1e-6`` only for squared scales above about $10^8 / D$,
    and results are unchanged."""
    diagonal = jnp.diagonal(cov, axis1=-2, axis2=-1)
    return floor_at(spread + diagonal, reg_covar, cov.shape[-1])


def floor_at(scale: Array, reg_covar: float, n_features: int) -> Array:
    """$\\max(\\epsilon, 10 D \\varepsilon \\, \\text{scale})$ in the dtype of ``scale``
    (the squared scale of a feature about the data's centre), elementwise (see `floors`)."""
    eps = jnp.finfo(scale.dtype).eps
    return jnp.maximum(reg_covar, RESOLUTION * n_features * eps * jnp.maximum(scale, 0.0))


def is_positive_definite(covariances: np.ndarray) -> bool:
    """Symmetric and positive definite (concrete values). Symmetric to 1e-5 of the matrix's
    scale (its largest diagonal entry): an off-diagonal entry near zero differs from its mirror
    by rounding, not by 1e-5 of itself (a float32 k-means start of `jaxem.fit_restarts` under
    ``vmap`` had -0.00262916 against -0.00262908 beside variances of 0.09, and was refused)."""
    c = np.asarray(covariances, dtype=np.float64)
    scale = np.max(np.abs(np.diagonal(c, axis1=-2, axis2=-1)), axis=-1)[..., None, None]
    if not np.all(np.abs(c - np.swapaxes(c, -1, -2)) <= 1e-5 * scale):
        return False
    try:
        np.linalg.cholesky(c)
    except np.linalg.LinAlgError:
        return False
    return True


def cholesky_coordinates(covariances: Array) -> Array:
    """Unconstrained coordinates of symmetric positive definite ``(..., D, D)`` matrices: the
    lower Cholesky factor with its diagonal's logarithm (zeros above the diagonal); any real
    array of that shape maps back through `from_cholesky_coordinates`."""
    chol = linalg.cholesky(covariances)
    d = covariances.shape[-1]
    eye = jnp.eye(d, dtype=chol.dtype)
    log_diagonal = jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1))
    return jnp.tril(chol, -1) + eye * log_diagonal[..., None, :]


def from_cholesky_coordinates(coordinates: Array) -> Array:
    """$L L^\\top$ with $L$ the lower triangle of ``coordinates`` ``(..., D, D)`` and the
    exponential of its diagonal: positive definite for every real input."""
    d = coordinates.shape[-1]
    eye = jnp.eye(d, dtype=coordinates.dtype)
    diagonal = jnp.exp(jnp.diagonal(coordinates, axis1=-2, axis2=-1))
    chol = jnp.tril(coordinates, -1) + eye * diagonal[..., None, :]
    return chol @ jnp.swapaxes(chol, -1, -2)


def collapsed_matrices(covariances: np.ndarray, spread: np.ndarray, floor_at) -> np.ndarray:
    """Whether the smallest eigenvalue of $F^{-1/2} \\Sigma F^{-1/2}$ is below 2, $F$ the
    floors of the features (``floor_at`` of ``spread`` ``(..., D)`` plus the variances) or
    ``covariances`` ``(..., D, D)`` has a non-finite entry: booleans ``(...)`` (NumPy)."""
    d = covariances.shape[-1]
    root = 1.0 / np.sqrt(floor_at(spread + np.diagonal(covariances, axis1=-2, axis2=-1)))
    scaled = covariances * root[..., :, None] * root[..., None, :]
    broken = ~np.all(np.isfinite(scaled), axis=(-2, -1))
    scaled = np.where(broken[..., None, None], np.eye(d), scaled)
    return broken | (np.linalg.eigvalsh(scaled)[..., 0] < 2.0)


class Full(CovarianceStructure):
    """One symmetric positive definite matrix per component, ``(K, D, D)`` (mclust's VVV)."""

    name = "full"
    aliases = ("VVV",)
    coupled = True

    def shape(self, n_components, n_features):
        return (n_components, n_features, n_features)

    def n_parameters(self, n_components, n_features):
        return n_components * n_features * (n_features + 1) // 2

    def matrices(self, covariances, n_features):
        return covariances

    def permute(self, covariances, order):
        return jnp.take(covariances, order, axis=covariances.ndim - 3)

    def is_valid(self, covariances):
        return is_positive_definite(covariances)

    def squares(self, centred):
        return squares(centred)

    def quadratic_form(self, covariances, offsets):
        return quadratic_form(covariances, offsets)

    def scatter(self, moments, firsts, counts, offsets):
        return scatter_matrices(moments, firsts, counts, offsets)

    def reduce(self, scatters):
        return scatters

    def within(self, scatter, shifts, inv_counts):
        """$W_k = S_k - d_k d_k^\\top / N_k$, ``(K, D, D)``."""
        return scatter - jnp.einsum("k,kd,ke->kde", inv_counts, shifts, shifts)

    def maximise(self, within, counts, reg_covar, spread):
        """$\\Sigma_k = W_k / N_k + \\epsilon I$, each pivot at least its `floors`."""
        cov = within / counts[:, None, None]
        cov = 0.5 * (cov + jnp.swapaxes(cov, -1, -2))
        cov = cov + reg_covar * jnp.eye(cov.shape[-1], dtype=cov.dtype)
        return floor_spectrum(cov, floors(cov, spread, reg_covar))

    def fill_empty(self, covariances, empty, counts):
        pooled = jnp.einsum("k,kde->de", counts / jnp.sum(counts), covariances)
        return jnp.where(empty[:, None, None], pooled[None], covariances)

    def map_estimate(self, within, deviations, counts, prior, n_means):
        """$\\Sigma_k = [\\Psi + W_k + \\tfrac{N_k\\kappa}{N_k+\\kappa}
        (\\bar x_k - m)(\\bar x_k - m)^\\top] / (N_k + \\nu + D + 2)$."""
        d = deviations.shape[-1]
        shrunk = counts * prior.kappa / (counts + prior.kappa)
        b = prior.scale + within + jnp.einsum("k,kd,ke->kde", shrunk, deviations, deviations)
        cov = b / (counts + prior.dof + d + 2)[:, None, None]
        return 0.5 * (cov + jnp.swapaxes(cov, -1, -2))

    def log_prior(self, means, covariances, prior, active=None):
        """$\\sum_k \\log \\mathcal{W}^{-1}(\\Sigma_k \\mid \\nu, \\Psi)
        + \\log \\mathcal{N}(\\mu_k \\mid m, \\Sigma_k / \\kappa)$."""
        chol = linalg.cholesky(covariances)
        return priors.log_inverse_wishart(
            chol, prior.dof, prior.scale
        ) + priors.log_normal_given_cov(means, prior.mean, chol, prior.kappa)

    def scale_shape(self, n_features):
        return (n_features, n_features)

    def dof_minimum(self, n_features):
        return n_features - 1

    def default_scale(self, covariance, shrink):
        return covariance / shrink

    def check_scale(self, scale):
        symmetric = np.allclose(scale, np.swapaxes(scale, -1, -2), rtol=1e-5, atol=0)
        if not symmetric or np.any(np.linalg.eigvalsh(scale) <= 0):
            return "a symmetric positive definite matrix"
        return None

    def noise(self, key, covariances, labels, n_features):
        z = jax.random.normal(key, (labels.shape[0], n_features), covariances.dtype)
        chol = jnp.linalg.cholesky(covariances)
        return jnp.einsum("nde,ne->nd", chol[labels], z)

    def chart(self, at, coordinates):
        """`covariance_charts.matrices` by the structure's letters."""
        return covariance_charts.matrices(at, coordinates, self.letters)

    def unconstrain(self, covariances):
        return cholesky_coordinates(covariances)

    def constrain(self, coordinates):
        return from_cholesky_coordinates(coordinates)

    def collapsed(self, covariances, spread, weights, floor_at):
        return collapsed_matrices(covariances, spread, floor_at)

    def numpyro_prior(self, sample, dist, prior, n_components):
        """$\\Sigma_k \\sim \\mathcal{W}^{-1}(\\nu, \\Psi)$,
        $\\mu_k \\sim \\mathcal{N}(m, \\Sigma_k / \\kappa)$."""
        inv_wishart = dist.InverseWishart(prior.dof, scale_matrix=prior.scale)
        cov = sample("covariances", inv_wishart.expand((n_components,)))
        means = sample("means", dist.MultivariateNormal(prior.mean, cov / prior.kappa).to_event(1))
        return means, cov


register(Full())
