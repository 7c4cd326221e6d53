"""`jaxem.linalg` (Cholesky factors, triangular solves, the sweep; plain XLA operations) and the
full covariance's quadratic form against NumPy's LAPACK."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxem import linalg
from jaxem.families.gaussian import full


@pytest.mark.parametrize("d", [1, 3, 7])
def test_cholesky_and_solve_equal_numpy(d):
    rng = np.random.default_rng(d)
    a = rng.normal(size=(5, d, d + 2))
    spd = a @ np.swapaxes(a, -1, -2) + 0.1 * np.eye(d)
    chol = np.asarray(linalg.cholesky(jnp.asarray(spd)))
    np.testing.assert_allclose(chol, np.linalg.cholesky(spd), rtol=1e-12, atol=1e-12)
    b = rng.normal(size=(5, d, 4))
    np.testing.assert_allclose(
        linalg.solve_lower(jnp.asarray(chol), jnp.asarray(b)), np.linalg.solve(chol, b), rtol=1e-10
    )
    np.testing.assert_allclose(
        linalg.log_det(jnp.asarray(chol)), np.linalg.slogdet(spd)[1], rtol=1e-12
    )


def test_cholesky_floor_raises_only_small_pivots():
    """A matrix whose last squared pivot is -1e-3 (rounding gone wrong): without a floor the
    factor is NaN, as LAPACK's fails; with one, the pivot is raised and L L^T differs from the
    matrix on the diagonal only, by at most 1e-3 plus the floor."""
    v = np.array([[1.0, 2.0, 3.0]])
    singular = v.T @ v + np.diag([1.0, 0.0, -1e-3])
    assert np.isnan(np.asarray(linalg.cholesky(jnp.asarray(singular)))).any()
    chol = np.asarray(linalg.cholesky(jnp.asarray(singular), 1e-6))
    rebuilt = chol @ chol.T
    assert np.all(np.isfinite(chol)) and np.min(np.diag(chol) ** 2) >= 1e-6 * (1 - 1e-9)
    diff = rebuilt - singular
    np.testing.assert_allclose(diff - np.diag(np.diag(diff)), 0.0, atol=1e-12)
    assert np.all(np.diag(diff) >= -1e-12) and np.all(np.diag(diff) <= 1e-3 + 1e-6 + 1e-12)


@pytest.mark.parametrize("n_pivots", [1, 3, 7, linalg.UNROLLED_PIVOTS + 1])
def test_sweep_gives_the_inverse_the_solve_and_the_schur_complement(n_pivots):
    """Sweeping the leading block A of [[A, B], [B', C]] against NumPy's inverse, solve and
    log-determinant, for a batch of matrices on the trailing axis (unrolled pivots, and beyond
    `UNROLLED_PIVOTS` the loop)."""
    rng = np.random.default_rng(n_pivots)
    p, batch = n_pivots + 2, 5
    factors = rng.normal(size=(batch, p, p))
    matrices = factors @ np.swapaxes(factors, 1, 2) + p * np.eye(p)
    swept, log_det = linalg.sweep(jnp.asarray(np.moveaxis(matrices, 0, -1)), n_pivots)
    swept = np.moveaxis(np.asarray(swept), -1, 0)
    a = matrices[:, :n_pivots, :n_pivots]
    b = matrices[:, :n_pivots, n_pivots:]
    c = matrices[:, n_pivots:, n_pivots:]
    inverse = np.linalg.inv(a)
    solved = inverse @ b
    np.testing.assert_allclose(swept[:, :n_pivots, :n_pivots], -inverse, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(swept[:, :n_pivots, n_pivots:], solved, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(
        swept[:, n_pivots:, n_pivots:], c - np.swapaxes(b, 1, 2) @ solved, rtol=1e-10
    )
    np.testing.assert_allclose(log_det, np.linalg.slogdet(a)[1], rtol=1e-12)


@pytest.mark.parametrize("d", [3, 6])  # the precision written out (D <= 4) and by loops
def test_quadratic_form_coefficients_give_mahalanobis_distances(d):
    """The full covariance's quadratic form on the features, a . q(x) + b . x + c, equals
    (x - o)' Sigma^-1 (x - o) from NumPy's inverse, per component, with log|Sigma| from
    NumPy's slogdet; and `quadratic_coefficients` from a precision gives the same, as do the
    features of `squares_of_rows` (the values' dim last)."""
    rng = np.random.default_rng(d)
    factors = rng.normal(size=(3, d, d + 2))
    covariances = factors @ np.swapaxes(factors, 1, 2) + 0.5 * np.eye(d)
    offsets, x = rng.normal(size=(3, d)), rng.normal(size=(20, d))
    a, b, c, log_det = full.quadratic_form(jnp.asarray(covariances), jnp.asarray(offsets))
    centred = x[None] - offsets[:, None]
    precisions = np.linalg.inv(covariances)
    expected = np.einsum("knd,kde,kne->kn", centred, precisions, centred)
    features = np.asarray(full.squares(jnp.asarray(x.T)))
    np.testing.assert_allclose(a @ features + b @ x.T + c[:, None], expected, rtol=1e-10)
    np.testing.assert_allclose(log_det, np.linalg.slogdet(covariances)[1], rtol=1e-12)
    again = full.quadratic_coefficients(jnp.asarray(precisions), jnp.asarray(offsets))
    np.testing.assert_allclose(again[0] @ features + again[1] @ x.T + again[2][:, None], expected)
    # the same features with the values' dim last (and leading dims kept): squares_of_rows
    rows_last = np.asarray(full.squares_of_rows(jnp.asarray(x.reshape(4, 5, d))))
    on_rows = np.einsum("kq,abq->kab", a, rows_last) + np.einsum(
        "kd,abd->kab", b, x.reshape(4, 5, d)
    )
    np.testing.assert_allclose(on_rows + c[:, None, None], expected.reshape(3, 4, 5), rtol=1e-10)


@pytest.mark.parametrize("d", [1, 2, 5, 8])
def test_graded_eigh_is_accurate_eigenvalue_by_eigenvalue(d):
    """Scatters of features in units 1e-1 to 1e3 (eigenvalues over about eight decades): in
    float64 the eigendecomposition equals LAPACK's (to LAPACK's error); in float32 every
    eigenvalue is within 1e-5 of LAPACK's float64 one relative to itself (float32 LAPACK misses
    the small ones by up to percents), and the vectors are orthonormal and rebuild the matrix."""
    rng = np.random.default_rng(d)
    units = np.array([1e-1, 1e3, 1.0, 1e2, 10.0, 3e2, 0.3, 30.0])[:d]
    mixing = np.eye(d) + 0.3 * rng.normal(size=(d, d))  # correlated, B well conditioned
    data = rng.normal(size=(3, 4 * d + 3, d)) @ mixing * units
    scatter = np.einsum("kni,knj->kij", data, data)
    want_values, want_vectors = np.linalg.eigh(scatter)
    values, vectors = linalg.graded_eigh(jnp.asarray(scatter))
    # LAPACK's own error is about 1e-16 of the largest eigenvalue
    largest = want_values[:, -1:]
    np.testing.assert_allclose(values / largest, want_values / largest, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(
        np.abs(np.einsum("kdi,kdi->ki", vectors, want_vectors)), 1.0, atol=1e-8
    )
    values, vectors = linalg.graded_eigh(jnp.asarray(scatter, jnp.float32))
    np.testing.assert_allclose(np.asarray(values, np.float64), want_values, rtol=1e-5)
    vectors = np.asarray(vectors, np.float64)
    np.testing.assert_allclose(
        np.swapaxes(vectors, -1, -2) @ vectors, np.eye(d)[None].repeat(3, 0), atol=1e-6
    )
    rebuilt = np.einsum("kde,ke,kfe->kdf", vectors, np.asarray(values, np.float64), vectors)
    scale = np.sqrt(np.einsum("kii->ki", scatter))
    np.testing.assert_allclose(
        rebuilt / scale[:, :, None] / scale[:, None, :],
        scatter / scale[:, :, None] / scale[:, None, :],
        atol=1e-5,
    )


@pytest.mark.parametrize("d", [3, 5])
def test_graded_eigh_of_singular_scatters_has_no_spurious_direction(d):
    """The scatter of a component with at most D points is singular (its zero directions
    rounding); a floored pivot once divided that rounding into a spurious eigenvalue as large as
    the true ones (rank one, D = 3: 0.9999 of the largest), and a one-point scatter of pure
    rounding (indefinite, entries 1e-13) got an eigenvalue of 3e18. EEV's M-step built on it
    lost the objective at every iteration on three blobs and one far point."""
    rng = np.random.default_rng(d)
    scatters, ranks = [], []
    for rank in range(1, d):
        for _ in range(20):
            a = rng.normal(size=(d, rank)) * rng.uniform(0.1, 10, (d, 1))
            w = a @ a.T
            noise = rng.normal(size=(d, d))
            scatters.append(w + 1e-16 * np.abs(w).max() * (noise + noise.T))
            ranks.append(rank)
    rounding = 1e-13 * rng.normal(size=(d, d))
    rounding = rounding + rounding.T
    # one batch, one compiled program: the matrices are decomposed independently
    values = np.asarray(jax.jit(linalg.graded_eigh)(jnp.asarray(scatters + [rounding]))[0])
    for w, rank, found in zip(scatters, ranks, values[:-1], strict=True):
        exact = np.linalg.eigvalsh(w)
        assert np.all(found[: d - rank] <= 1e-12 * exact[-1])
        np.testing.assert_allclose(found[d - rank :], exact[d - rank :], rtol=1e-10)
    assert np.all(values[-1] <= 10 * d * np.abs(rounding).max())  # rounding's size


def test_leading_eigh_is_numpys_top_of_the_spectrum():
    """Subspace iteration for the n largest eigenpairs (the factor analysers' start), on
    covariances with a gap after the n-th eigenvalue, against LAPACK's full decomposition."""
    rng = np.random.default_rng(0)
    d, n = 40, 3
    basis = np.linalg.qr(rng.normal(size=(4, d, d)))[0]
    spectrum = np.concatenate([[30.0, 20.0, 10.0], rng.uniform(0.1, 2.0, d - n)])
    matrices = np.einsum("kde,e,kfe->kdf", basis, spectrum, basis)
    values, vectors = linalg.leading_eigh(jnp.asarray(matrices), n)
    exact_values, exact_vectors = np.linalg.eigh(matrices)
    np.testing.assert_allclose(values, exact_values[:, -n:], rtol=1e-10)
    overlap = np.abs(np.einsum("kdn,kdn->kn", np.asarray(vectors), exact_vectors[:, :, -n:]))
    np.testing.assert_allclose(overlap, 1.0, rtol=1e-8)
