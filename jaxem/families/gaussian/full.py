"""Full covariances: one symmetric positive definite $\\Sigma_k$ per component, ``(K, D, D)``.

Every covariance module provides the same functions, used by
`jaxem.GaussianMixture`:

- ``squares(centred) -> (Q, N)``: the quadratic features $q(x)$ of the centred data
  ``(D, N)`` that this type's Mahalanobis distances need ($x_i x_j$ for full and tied,
  $x_d^2$ for diag, $\\|x\\|^2$ for spherical), computed once per fit;
- ``quadratic_form(covariances, offsets) -> (a, b, c, log_det)``: coefficients with
  $(x - o_k)^\\top \\Sigma_k^{-1} (x - o_k) = a_k \\cdot q(x) + b_k \\cdot x + c_k$, so that
  the E-step's log-densities of all components are *one* matrix product of ``(K, Q + D)``
  coefficients with the ``(Q + D, N)`` features, and its statistics a second one;
- ``scatter(moments, firsts, counts, offsets)``: $\\sum_n w_n r_{nk} (x_n - o_k)
  (x_n - o_k)^\\top$ in this type's shape, from those weighted sums of the features;
- ``within(scatter, shifts, inv_counts)``: the scatter about the new means;
- ``mle(within, counts, reg_covar, n_features, spread)``: the maximum-likelihood covariances
  (``spread``: the new means' squared distances from the data's centre, ``(K, D)``, which
  full and tied use to keep them factorisable in low precision, `floors`);
- ``map_estimate(within, dev, counts, prior)`` and ``log_prior(means, covariances, prior)``:
  the posterior mode and the log prior density (see `jaxem.priors`);
- ``pooled(covariances, weights)``: one covariance standing for all components;
- ``noise(key, covariances, labels, n_features)``: draws of $x - \\mu_{z}$;
- ``n_parameters(K, D)``, ``shape(K, D)`` and ``is_valid(covariances)`` (NumPy, concrete values).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxem import linalg, priors

Array = jax.Array

# Up to this many features the Cholesky factorisation and the precision matrix are written out
# entry by entry: elementwise arithmetic that XLA fuses, instead of a batch of tiny LAPACK calls
# per component, which dominate when thousands of small fits run at once (fit_batch).
SMALL_D = 4


def shape(n_components: int, n_features: int) -> tuple[int, ...]:
    return (n_components, n_features, n_features)


def n_parameters(n_components: int, n_features: int) -> int:
    return n_components * n_features * (n_features + 1) // 2


def squares(centred: Array) -> Array:
    """The quadratic features $x_i x_j$, $i \\le j$, of ``centred`` ``(D, N)``:
    ``(D(D+1)/2, N)``, in the order of ``numpy.triu_indices(D)``."""
    rows, cols = np.triu_indices(centred.shape[0])
    return centred[rows] * centred[cols]


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


def scatter(moments: Array, firsts: Array, counts: Array, offsets: Array) -> Array:
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


def within(scatter: Array, shifts: Array, inv_counts: Array) -> Array:
    """Scatter about the new means, $W_k = S_k - d_k d_k^\\top / N_k$, ``(K, D, D)``."""
    return scatter - jnp.einsum("k,kd,ke->kde", inv_counts, shifts, shifts)


def mle(within: Array, counts: Array, reg_covar: float, n_features: int, spread: Array) -> Array:
    """$\\Sigma_k = W_k / N_k + \\epsilon I$, each pivot at least its `floors`; ``spread``
    ``(K, D)``: the squared distances $(\\mu_{kd} - c_d)^2$ of the new means from the data's
    centre."""
    cov = within / counts[:, None, None]
    cov = 0.5 * (cov + jnp.swapaxes(cov, -1, -2))
    cov = cov + reg_covar * jnp.eye(cov.shape[-1], dtype=cov.dtype)
    return floor_spectrum(cov, floors(cov, spread, reg_covar))


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


def map_estimate(within: Array, dev: Array, counts: Array, prior) -> Array:
    """Posterior mode $\\Sigma_k = [\\Psi + W_k + \\tfrac{N_k\\kappa}{N_k+\\kappa}
    (\\bar x_k - m)(\\bar x_k - m)^\\top] / (N_k + \\nu + D + 2)$; ``dev`` is
    $\\bar x_k - m$ ``(K, D)``."""
    d = dev.shape[-1]
    shrunk = counts * prior.kappa / (counts + prior.kappa)
    b = prior.scale + within + jnp.einsum("k,kd,ke->kde", shrunk, dev, dev)
    cov = b / (counts + prior.dof + d + 2)[:, None, None]
    return 0.5 * (cov + jnp.swapaxes(cov, -1, -2))


def log_prior(means: Array, covariances: Array, prior) -> Array:
    """$\\sum_k \\log \\mathcal{W}^{-1}(\\Sigma_k \\mid \\nu, \\Psi)
    + \\log \\mathcal{N}(\\mu_k \\mid m, \\Sigma_k / \\kappa)$."""
    chol = linalg.cholesky(covariances)
    return priors.log_inverse_wishart(chol, prior.dof, prior.scale) + priors.log_normal_given_cov(
        means, prior.mean, chol, prior.kappa
    )


def pooled(covariances: Array, weights: Array) -> Array:
    return jnp.einsum("k,kde->de", weights, covariances)


def noise(key: Array, covariances: Array, labels: Array, n_features: int) -> Array:
    z = jax.random.normal(key, (labels.shape[0], n_features), covariances.dtype)
    chol = jnp.linalg.cholesky(covariances)
    return jnp.einsum("nde,ne->nd", chol[labels], z)


def is_valid(covariances: np.ndarray) -> bool:
    """Symmetric and positive definite (concrete values)."""
    c = np.asarray(covariances, dtype=np.float64)
    if not np.allclose(c, np.swapaxes(c, -1, -2), rtol=1e-5, atol=0):
        return False
    try:
        np.linalg.cholesky(c)
    except np.linalg.LinAlgError:
        return False
    return True


def unconstrain(covariances: Array) -> Array:
    """Unconstrained coordinates of symmetric positive definite ``(..., D, D)`` matrices: the
    lower Cholesky factor with its diagonal's logarithm (zeros above the diagonal); any real
    array of that shape maps back through `constrain`."""
    chol = linalg.cholesky(covariances)
    d = covariances.shape[-1]
    eye = jnp.eye(d, dtype=chol.dtype)
    log_diagonal = jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1))
    return jnp.tril(chol, -1) + eye * log_diagonal[..., None, :]


def constrain(coordinates: Array) -> Array:
    """$L L^\\top$ with $L$ the lower triangle of ``coordinates`` ``(..., D, D)`` and the
    exponential of its diagonal: positive definite for every real input."""
    d = coordinates.shape[-1]
    eye = jnp.eye(d, dtype=coordinates.dtype)
    diagonal = jnp.exp(jnp.diagonal(coordinates, axis1=-2, axis2=-1))
    chol = jnp.tril(coordinates, -1) + eye * diagonal[..., None, :]
    return chol @ jnp.swapaxes(chol, -1, -2)
