"""A covariance structure written outside jaxem, with no edit to jaxem: mclust's EEI, one
diagonal covariance shared by every component, $\\Sigma_k = \\operatorname{diag}(\\sigma^2)$,
registered as ``"own-EEI"`` (jaxem ships its own EEI since; the two must agree).

It is one class on `jaxem.families.gaussian.structure.CovarianceStructure`; once registered its
name works wherever a covariance type does. Checked against an EM written here in NumPy (MLE,
missing values), against mclust's own EEI BIC table (``tests/data/mclust/eei.csv``, made by
``tests/data/mclust/make_eei.R``), and through `jaxem.select` and SQUAREM.
"""

import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxem
from jaxem.families.gaussian.structure import CovarianceStructure, register

DATA = Path(__file__).parent / "data" / "mclust"


class OwnEEI(CovarianceStructure):
    """One diagonal covariance for all components: variances ``(D,)``."""

    name = "own-EEI"
    coupled = False
    shared = True

    def shape(self, n_components, n_features):
        return (n_features,)

    def n_parameters(self, n_components, n_features):
        return n_features

    def matrices(self, covariances, n_features):
        return jnp.diag(covariances)

    def variances(self, covariances, n_components, n_features):
        return jnp.broadcast_to(covariances, (n_components, n_features))

    def permute(self, covariances, order):
        return covariances

    def is_valid(self, covariances):
        return bool(np.all(np.asarray(covariances) > 0))

    def squares(self, centred):
        return centred * centred

    def quadratic_form(self, covariances, offsets):
        inv = jnp.broadcast_to(1.0 / covariances, offsets.shape)
        log_det = jnp.broadcast_to(jnp.sum(jnp.log(covariances)), offsets.shape[:1])
        return inv, -2.0 * offsets * inv, jnp.sum(offsets * offsets * inv, axis=-1), log_det

    def scatter(self, moments, firsts, counts, offsets):
        per_component = moments - 2.0 * firsts * offsets + counts[:, None] * offsets**2
        return jnp.sum(per_component, axis=0)

    def reduce(self, scatters):
        return jnp.sum(scatters, axis=0)

    def within(self, scatter, shifts, inv_counts):
        return scatter - jnp.sum(inv_counts[:, None] * shifts * shifts, axis=0)

    def maximise(self, within, counts, reg_covar, spread):
        return jnp.maximum(within / jnp.sum(counts), 0.0) + reg_covar

    def fill_empty(self, covariances, empty, counts):
        return covariances

    def map_estimate(self, within, deviations, counts, prior, n_means):
        # sigma2_d ~ InvGamma(nu/2, psi_d/2), mu_kd ~ N(m_d, sigma2_d / kappa) for the
        # n_means active components: the mode of the posterior's sigma2_d
        shrunk = counts * prior.kappa / (counts + prior.kappa)
        b = prior.scale + jnp.maximum(within, 0.0) + shrunk @ (deviations * deviations)
        return b / (jnp.sum(counts) + n_means + prior.dof + 2)

    def log_prior(self, means, covariances, prior, active=None):
        a, rate = 0.5 * prior.dof, 0.5 * prior.scale
        inv_gamma = a * jnp.log(rate) - jax.scipy.special.gammaln(a)
        inv_gamma = jnp.sum(inv_gamma - (a + 1) * jnp.log(covariances) - rate / covariances)
        var = covariances / prior.kappa
        normal = -0.5 * (jnp.log(2 * jnp.pi * var) + (means - prior.mean) ** 2 / var)
        rows = jnp.ones(means.shape[0], bool) if active is None else active
        return inv_gamma + jnp.sum(jnp.where(rows[:, None], normal, 0.0))

    def scale_shape(self, n_features):
        return (n_features,)

    def dof_minimum(self, n_features):
        return 0

    def default_scale(self, covariance, shrink):
        d = covariance.shape[-1]
        return jnp.full((d,), jnp.mean(jnp.diagonal(covariance)) / shrink, covariance.dtype)

    def check_scale(self, scale):
        return None if np.all(scale > 0) else "positive"

    def noise(self, key, covariances, labels, n_features):
        z = jax.random.normal(key, (labels.shape[0], n_features), covariances.dtype)
        return z * jnp.sqrt(covariances)

    def unconstrain(self, covariances):
        return jnp.log(covariances)

    def constrain(self, coordinates):
        return jnp.exp(coordinates)

    def collapsed(self, covariances, spread, weights, floor_at):
        pooled = np.sum(weights * spread, axis=-2)
        return ~np.all(covariances >= 2 * floor_at(pooled + covariances), axis=-1)[..., None]


register(OwnEEI())


# -- an independent EM in NumPy ------------------------------------------------------------


def numpy_em(X, weights, means, variances, n_iter, reg_covar=1e-6):
    """EEI EM in NumPy; NaN in ``X`` are missing at random (independent coordinates: a
    missing value's conditional mean is its component's mean, its variance sigma2_d). Rows with
    nothing observed are left out, as jaxem does."""
    X = np.asarray(X, np.float64)
    X = X[~np.all(np.isnan(X), axis=1)]  # a row with nothing observed changes no likelihood
    seen = ~np.isnan(X)
    x = np.where(seen, X, 0.0)
    weights, means, variances = (np.array(a, np.float64) for a in (weights, means, variances))
    for _ in range(n_iter + 1):
        # log N(x_o | mu_k,o, sigma2_o), (N, K)
        diff = x[:, None, :] - means[None]
        entries = -0.5 * (np.log(2 * np.pi * variances) + diff**2 / variances)
        log_joint = np.log(weights) + np.sum(np.where(seen[:, None, :], entries, 0.0), axis=2)
        top = log_joint.max(axis=1, keepdims=True)
        log_px = top[:, 0] + np.log(np.exp(log_joint - top).sum(axis=1))
        loglik = float(np.sum(log_px))
        if _ == n_iter:
            return weights, means, variances, loglik
        resp = np.exp(log_joint - log_px[:, None])
        counts = resp.sum(axis=0)
        filled = np.where(seen[:, None, :], x[:, None, :], means[None])  # E[x | z = k]
        new_means = np.einsum("nk,nkd->kd", resp, filled) / counts[:, None]
        spread = np.where(seen[:, None, :], (x[:, None, :] - new_means) ** 2, 0.0)
        spread += np.where(seen[:, None, :], 0.0, (means - new_means)[None] ** 2 + variances)
        variances = np.einsum("nk,nkd->d", resp, spread) / X.shape[0] + reg_covar
        weights, means = counts / X.shape[0], new_means


def faithful():
    return np.loadtxt(DATA / "faithful.csv", delimiter=",", skiprows=1)


@pytest.fixture(scope="module")
def start():
    X = faithful()
    model = jaxem.GaussianMixture(3, "own-EEI")
    return X, model, model.init(jax.random.key(0), X)


def test_name_and_layout():
    model = jaxem.GaussianMixture(3, OwnEEI())
    assert model == jaxem.GaussianMixture(3, "own-EEI")  # an instance is kept as its name
    assert model.covariance_type == "own-EEI"
    assert model.n_parameters(2) == 3 * 2 + 2 + 2  # means, one diagonal, weights (mclust's)
    with pytest.raises(ValueError, match="covariance_type must be one of"):
        jaxem.GaussianMixture(3, "EEJ")


def test_fit_equals_numpy_em(start):
    X, model, params = start
    result = jaxem.fit(model, X, params, tol=0.0, max_iter=25)
    weights, means, variances, loglik = numpy_em(X, *params, n_iter=25)
    np.testing.assert_allclose(result.params.weights, weights, rtol=1e-10)
    np.testing.assert_allclose(result.params.means, means, rtol=1e-10)
    np.testing.assert_allclose(result.params.covariances, variances, rtol=1e-10)
    np.testing.assert_allclose(result.objective, loglik, rtol=1e-12)


def test_squarem_reaches_the_same_maximum(start):
    X, model, params = start
    plain = numpy_em(X, *params, n_iter=3000)
    fast = jaxem.fit(model, X, params, tol=1e-13, max_iter=500, accelerate="squarem")
    assert fast.converged
    np.testing.assert_allclose(fast.objective, plain[3], rtol=1e-10)
    np.testing.assert_allclose(fast.params.covariances, plain[2], rtol=1e-6)


def test_missing_values_equal_numpy_em(start):
    X, _, params = start
    holes = np.array(X)
    holes[::7, 0] = np.nan
    holes[3::11, 1] = np.nan  # row 14 loses both
    model = jaxem.GaussianMixture(3, "own-EEI", missing=True)
    result = jaxem.fit(model, holes, params, tol=0.0, max_iter=25)
    weights, means, variances, loglik = numpy_em(holes, *params, n_iter=25)
    np.testing.assert_allclose(result.params.means, means, rtol=1e-10)
    np.testing.assert_allclose(result.params.covariances, variances, rtol=1e-10)
    np.testing.assert_allclose(result.objective, loglik, rtol=1e-12)


def test_select_matches_mclust():
    """`jaxem.select` over EEI and K = 1..4 on Old Faithful: mclust's BIC, cell by cell."""
    X = faithful()
    reference = np.genfromtxt(DATA / "eei.csv", delimiter=",", names=True)
    result = jaxem.select(
        X, range(1, 5), ("own-EEI", "EEI"), key=jax.random.key(0), n_init=8, tol=1e-10
    )
    table = result.table
    for g, bic in zip(reference["G"], reference["bic"], strict=True):
        # mclust's BIC is the negative of jaxem's
        assert math.isclose(-table["own-EEI"][int(g)], bic, rel_tol=0, abs_tol=1e-3), (g, bic)
        # and jaxem's own EEI agrees
        assert math.isclose(table["EEI"][int(g)], table["own-EEI"][int(g)], rel_tol=1e-10)
