"""MAP-EM: closed-form posterior modes, the objective against scipy.stats' densities, MAP
approaching MLE, bad priors and degenerate data. EM-MAP against NumPyro (log joint, gradient,
optax mode search) is in test_crosscheck.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import COVARIANCE_TYPES
from scipy import stats

import jaxem


def _standardised(X):
    return (X - X.mean(0)) / X.std(0)


def test_one_component_is_the_textbook_niw_mode(blobs):
    """K = 1: the Normal-Inverse-Wishart posterior (kappa_n, m_n, nu_n, Psi_n) has its joint
    mode at mu = m_n, Sigma = Psi_n / (nu_n + D + 2)."""
    X = blobs
    n, d = X.shape
    rng = np.random.default_rng(0)
    m, kappa, nu = rng.normal(size=d), 0.5, d + 3.0
    a = rng.normal(size=(d, d))
    psi = a @ a.T + d * np.eye(d)
    xbar = X.mean(0)
    s = (X - xbar).T @ (X - xbar)
    kappa_n, nu_n = kappa + n, nu + n
    m_n = (kappa * m + n * xbar) / kappa_n
    psi_n = psi + s + kappa * n / kappa_n * np.outer(xbar - m, xbar - m)
    expected = psi_n / (nu_n + d + 2)

    for covariance_type in ("full", "tied"):
        model = jaxem.GaussianMixture(1, covariance_type)
        prior = jaxem.GaussianMixturePrior(1.0, m, kappa, nu, psi)
        start = model.init(jax.random.key(0), X)
        result = jaxem.fit(model, X, start, prior=prior, tol=0, max_iter=2)
        np.testing.assert_allclose(result.params.weights, [1.0], rtol=1e-14)
        np.testing.assert_allclose(result.params.means[0], m_n, rtol=1e-12)
        cov = result.params.covariances
        np.testing.assert_allclose(
            cov[0] if covariance_type == "full" else cov, expected, rtol=1e-12
        )

    # diag: per feature a Normal-Inverse-Gamma posterior; mode sigma^2 = 2 b_n / (2 a_n + 3)
    psi_d = np.diag(psi)
    model = jaxem.GaussianMixture(1, "diag")
    prior = jaxem.GaussianMixturePrior(1.0, m, kappa, nu, psi_d)
    result = jaxem.fit(model, X, model.init(jax.random.key(0), X), prior=prior, tol=0, max_iter=2)
    a_n = nu / 2 + n / 2
    b_n = psi_d / 2 + np.diag(s) / 2 + kappa * n / kappa_n * (xbar - m) ** 2 / 2
    np.testing.assert_allclose(result.params.means[0], m_n, rtol=1e-12)
    np.testing.assert_allclose(result.params.covariances[0], 2 * b_n / (2 * a_n + 3), rtol=1e-12)

    # spherical: one variance for all D features: mode 2 b_n / (2 a_n + D + 2)
    psi_s = float(np.mean(psi_d))
    model = jaxem.GaussianMixture(1, "spherical")
    prior = jaxem.GaussianMixturePrior(1.0, m, kappa, nu, psi_s)
    result = jaxem.fit(model, X, model.init(jax.random.key(0), X), prior=prior, tol=0, max_iter=2)
    a_n = nu / 2 + n * d / 2
    b_n = psi_s / 2 + np.trace(s) / 2 + kappa * n / kappa_n * np.sum((xbar - m) ** 2) / 2
    np.testing.assert_allclose(
        result.params.covariances[0], 2 * b_n / (2 * a_n + d + 2), rtol=1e-12
    )


def test_dirichlet_weights_are_the_mode():
    """Weights: pi_k = (N_k + alpha_k - 1) / (N + sum(alpha) - K), on known counts."""
    model = jaxem.GaussianMixture(3, "spherical")
    stats_ = jaxem.MixtureStats(
        counts=jnp.array([10.0, 0.0, 30.0]),
        components=jaxem.families.GaussianStats(
            sums=jnp.zeros((3, 2)), shifts=jnp.zeros((3, 2)), scatter=jnp.array([1.0, 0.0, 1.0])
        ),
    )
    prior = jaxem.GaussianMixturePrior(jnp.array([2.0, 3.0, 1.0]), jnp.zeros(2), 1.0, 1.0, 1.0)
    params = model.m_step(stats_, prior)
    np.testing.assert_allclose(params.weights, np.array([11.0, 2.0, 30.0]) / 43.0, rtol=1e-14)
    # an empty component sits at the prior's mode
    np.testing.assert_allclose(params.means[1], [0.0, 0.0], atol=1e-15)
    np.testing.assert_allclose(params.covariances[1], 1.0 / (2 + 1 + 2), rtol=1e-14)


def test_objective_matches_scipy_densities(faithful):
    """log p(theta) from scipy.stats, a second independent reference."""
    X = _standardised(faithful)
    model = jaxem.GaussianMixture(2, "full")
    prior = jaxem.default_prior(model, X)
    result = jaxem.fit(model, X, model.init(jax.random.key(1), X), prior=prior, max_iter=20)
    p = jax.tree.map(np.asarray, result.params)
    pr = jax.tree.map(np.asarray, prior)
    lp = stats.dirichlet.logpdf(p.weights, pr.alpha)
    for k in range(2):
        lp += stats.invwishart.logpdf(p.covariances[k], df=float(pr.dof), scale=pr.scale)
        lp += stats.multivariate_normal.logpdf(p.means[k], pr.mean, p.covariances[k] / pr.kappa)
    dens = sum(
        p.weights[k] * stats.multivariate_normal.pdf(X, p.means[k], p.covariances[k])
        for k in range(2)
    )
    np.testing.assert_allclose(result.objective, lp + np.sum(np.log(dens)), rtol=1e-10)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_map_approaches_mle_like_one_over_n(covariance_type):
    truth = jaxem.GaussianMixtureParams(
        jnp.array([0.4, 0.6]),
        jnp.array([[-2.0, 0.0], [2.0, 1.0]]),
        _truth_covariances(covariance_type),
    )
    model = jaxem.GaussianMixture(2, covariance_type, reg_covar=0.0)
    big, _ = model.sample(jax.random.key(0), truth, 25_600)
    prior = jaxem.default_prior(model, big)  # fixed across sizes
    sizes = [400, 1600, 6400, 25_600]
    gaps = []
    for n in sizes:
        # the first n rows, as weights: one shape, so one compilation for every size
        w = (jnp.arange(big.shape[0]) < n).astype(big.dtype)
        start = model.init(jax.random.key(1), big, w)
        mle = jaxem.fit(model, big, start, weights=w, tol=1e-12, max_iter=3000)
        map_ = jaxem.fit(model, big, mle.params, prior=prior, weights=w, tol=1e-12, max_iter=3000)
        gaps.append(
            max(
                float(jnp.max(jnp.abs(a - b))) for a, b in zip(map_.params, mle.params, strict=True)
            )
        )
    slope = np.polyfit(np.log(sizes), np.log(gaps), 1)[0]
    assert -1.3 < slope < -0.7, (gaps, slope)


def _truth_covariances(covariance_type):
    full = jnp.array([[[1.0, 0.3], [0.3, 0.5]], [[0.6, -0.2], [-0.2, 0.8]]])
    return {
        "full": full,
        "tied": full[0],
        "diag": jnp.array([[1.0, 0.5], [0.6, 0.8]]),
        "spherical": jnp.array([0.7, 0.4]),
    }[covariance_type]


# -- bad hyperparameters -----------------------------------------------------------------------

_X = np.random.default_rng(0).normal(size=(40, 2))


@pytest.mark.parametrize(
    "covariance_type, change, match",
    [
        ("full", {"alpha": 0.5}, "prior.alpha must be >= 1"),
        ("full", {"alpha": jnp.ones(3)}, r"prior.alpha must be a scalar or of shape \(2,\)"),
        ("full", {"kappa": 0.0}, "prior.kappa must be > 0"),
        ("full", {"dof": 1.0}, "prior.dof must be > 1"),
        ("tied", {"dof": 0.5}, "prior.dof must be > 1"),
        ("diag", {"dof": 0.0}, "prior.dof must be > 0"),
        ("full", {"scale": np.array([[1.0, 2.0], [2.0, 1.0]])}, "symmetric positive definite"),
        ("full", {"scale": np.array([[1.0, 0.5], [0.0, 1.0]])}, "symmetric positive definite"),
        ("full", {"scale": np.eye(3)}, r"prior.scale must have shape \(2, 2\)"),
        ("diag", {"scale": np.array([1.0, -1.0])}, "prior.scale must be positive"),
        ("diag", {"scale": np.eye(2)}, r"prior.scale must have shape \(2,\)"),
        ("spherical", {"scale": -1.0}, "prior.scale must be positive"),
        ("spherical", {"scale": np.ones(2)}, r"prior.scale must have shape \(\)"),
        ("full", {"mean": np.zeros(3)}, r"prior.mean must have shape \(2,\)"),
        ("full", {"kappa": np.nan}, "prior.kappa contains NaN"),
    ],
)
def test_bad_prior(covariance_type, change, match):
    model = jaxem.GaussianMixture(2, covariance_type)
    prior = jaxem.default_prior(model, _X)._replace(**change)
    with pytest.raises(ValueError, match=match):
        jaxem.fit(model, _X, model.init(jax.random.key(0), _X), prior=prior)


def test_prior_must_be_a_prior():
    model = jaxem.GaussianMixture(2)
    with pytest.raises(TypeError, match="GaussianMixturePrior"):
        jaxem.fit(model, _X, model.init(jax.random.key(0), _X), prior={"alpha": 1.0})


def test_default_prior_is_mclusts():
    model = jaxem.GaussianMixture(3, "full")
    prior = jaxem.default_prior(model, _X)
    np.testing.assert_allclose(prior.mean, _X.mean(0), rtol=1e-14)
    np.testing.assert_allclose(prior.scale, np.cov(_X.T) / 3 ** (2 / 2), rtol=1e-13)
    assert float(prior.kappa) == 0.01 and float(prior.dof) == 4.0
    np.testing.assert_array_equal(prior.alpha, np.ones(3))
    diag = jaxem.default_prior(jaxem.GaussianMixture(3, "diag"), _X)
    # one common scale for every column, as mclust's diagonal models (its VVI, G = 1 BIC equals
    # jaxem's only so: tests/test_mclust_reference.py)
    np.testing.assert_allclose(diag.scale, np.full(2, _X.var(0, ddof=1).mean() / 3), rtol=1e-13)
    sph = jaxem.default_prior(jaxem.GaussianMixture(3, "spherical"), _X)
    np.testing.assert_allclose(sph.scale, _X.var(0, ddof=1).mean() / 3, rtol=1e-13)
    batched = jax.vmap(lambda X: jaxem.default_prior(model, X))(np.stack([_X, 2 * _X]))
    np.testing.assert_allclose(batched.scale[1], 4 * prior.scale, rtol=1e-13)


# -- degenerate data stays finite under the default prior --------------------------------------


def _degenerate_cases():
    rng = np.random.default_rng(0)
    duplicated = np.concatenate([np.tile([[70.0, 3.5]], (80, 1)), rng.normal([60, 2], 1, (20, 2))])
    wide = rng.normal(size=(24, 10))  # D = 10 > the ~8 points of each of 3 components
    return {"duplicated": (duplicated, 3), "wide": (wide, 3)}


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_degenerate_data_stays_finite_with_default_prior(dtype, covariance_type):
    for X, k in _degenerate_cases().values():
        X = jnp.asarray(X, dtype)
        model = jaxem.GaussianMixture(k, covariance_type)
        prior = jaxem.default_prior(model, X)
        start = model.init(jax.random.key(0), X)
        lost = start._replace(means=start.means.at[0].set(1e4))  # component 0 loses every point
        for params in (start, lost):
            result = jaxem.fit(model, X, params, prior=prior, tol=0, max_iter=40)
            for leaf in jax.tree.leaves(result):
                assert bool(jnp.all(jnp.isfinite(leaf))), covariance_type
            assert result.params.means.dtype == dtype
            h = np.asarray(result.history, dtype=np.float64)
            rtol = 1e-4 if dtype == jnp.float32 else 1e-9
            # rounding is relative to the terms summed (about a nat per sample), not to their
            # sum, which can be near zero
            assert np.all(np.diff(h) >= -rtol * (np.abs(h[1:]) + X.shape[0]))
