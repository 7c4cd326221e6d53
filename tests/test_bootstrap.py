"""The bootstrap (`jaxem.bootstrap`) and the bootstrap likelihood-ratio test
(`jaxem.bootstrap_lrt`) against mclust's MclustBootstrap and mclustBootstrapLRT on Old Faithful
(tests/data/mclust/make_bootstrap.R and its output): jaxem's refits start from mclust's own fit,
the standard errors agree within Monte Carlo error (10 %; the jackknife, which draws nothing,
to 1 %), the likelihood-ratio statistics to 1e-3 and the p-values within Monte Carlo error.
Then the weights' draws themselves, and bad input."""

import csv
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxem

REFERENCE = Path(__file__).parent / "data" / "mclust" / "bootstrap.csv"
G, D = 3, 2


@pytest.fixture(scope="module")
def mclust():
    values = {}
    with open(REFERENCE) as f:
        for row in csv.DictReader(f):
            values.setdefault(row["what"], []).append(float(row["value"]))
    return {what: np.array(v) for what, v in values.items()}


@pytest.fixture(scope="module")
def model():
    return jaxem.GaussianMixture(G, covariance_type="VVV")


@pytest.fixture(scope="module")
def fitted(faithful, mclust, model):
    """jaxem's EM from mclust's fit: it stays there (same log-likelihood)."""
    start = jaxem.GaussianMixtureParams(
        jnp.asarray(mclust["fit_pro"]),
        jnp.asarray(mclust["fit_mean"].reshape(G, D)),
        jnp.asarray(mclust["fit_variance"].reshape(G, D, D)),
    )
    result = jaxem.fit(model, faithful, start, tol=1e-12, max_iter=1000)
    np.testing.assert_allclose(float(result.objective), mclust["fit_loglik"][0], rtol=1e-9)
    return result


def mclust_se(mclust, kind):
    return (
        mclust[f"se_{kind}_pro"],
        mclust[f"se_{kind}_mean"].reshape(G, D),
        mclust[f"se_{kind}_variance"].reshape(G, D, D),
    )


@pytest.mark.parametrize(
    "kind, theirs, rtol",
    [("nonparametric", "bs", 0.1), ("bayesian", "wlbs", 0.1), ("parametric", "pb", 0.1)],
)
def test_bootstrap_standard_errors_match_mclust(
    faithful, mclust, model, fitted, kind, theirs, rtol
):
    result = jaxem.bootstrap(model, fitted, faithful, key=jax.random.key(0), kind=kind)
    assert result.n_replicates >= 990
    se = result.standard_errors()
    for ours, reference in zip(
        (se.weights, se.means, se.covariances), mclust_se(mclust, theirs), strict=True
    ):
        np.testing.assert_allclose(ours, reference, rtol=rtol)


def test_jackknife_matches_mclust(faithful, mclust, model, fitted):
    result = jaxem.bootstrap(model, fitted, faithful, key=jax.random.key(0), kind="jackknife")
    assert result.n_replicates == len(faithful)
    se = result.standard_errors()
    # mclust's refits stop at its default tolerance (1e-5): agreement to about 1 %
    for ours, reference in zip(
        (se.weights, se.means, se.covariances), mclust_se(mclust, "jk"), strict=True
    ):
        np.testing.assert_allclose(ours, reference, rtol=0.02)


def test_likelihood_ratio_test_matches_mclust(faithful, mclust):
    models = [jaxem.GaussianMixture(g, covariance_type="VVV") for g in (1, 2, 3, 4)]
    lrt = jaxem.bootstrap_lrt(models, faithful, key=jax.random.key(0), n_boot=199, n_init=4)
    # the same maxima as mclust's (its hierarchical start is among fit_restarts' starts)
    np.testing.assert_allclose(lrt.log_likelihoods, mclust["lrt_loglik"], rtol=1e-7)
    np.testing.assert_allclose(lrt.statistics, mclust["lrt_obs"], atol=1e-3)
    # p-values within Monte Carlo error of mclust's (999 replicates there, 199 here)
    se = np.sqrt(mclust["lrt_p"] * (1 - mclust["lrt_p"]) / 199 + 1 / 199**2)
    assert np.all(np.abs(lrt.p_values - mclust["lrt_p"]) < 4 * se + 0.01), (
        lrt.p_values,
        mclust["lrt_p"],
    )
    assert "1 vs 2" in lrt.summary()


def test_one_component_closed_forms():
    """Of one Gaussian, the estimated mean is the sample mean: its jackknife standard error is
    exactly s / sqrt(N) (s with N - 1), the bootstrap's about the same."""
    rng = np.random.default_rng(0)
    X = rng.normal([1.0, -2.0], [1.0, 3.0], (80, 2))
    model = jaxem.GaussianMixture(1, covariance_type="VVV")
    fit = jaxem.fit(model, X, model.init(jax.random.key(0), X), tol=1e-12)
    expected = np.std(X, axis=0, ddof=1) / np.sqrt(len(X))
    jackknife = jaxem.bootstrap(model, fit, X, key=jax.random.key(0), kind="jackknife")
    np.testing.assert_allclose(jackknife.standard_errors().means[0], expected, rtol=1e-8)
    for kind in ("nonparametric", "bayesian"):
        drawn = jaxem.bootstrap(model, fit, X, key=jax.random.key(1), kind=kind, n_boot=400)
        np.testing.assert_allclose(drawn.standard_errors().means[0], expected, rtol=0.12)
        lower, upper = drawn.interval(0.9)
        assert np.all(lower.means < fit.params.means) and np.all(fit.params.means < upper.means)


def test_bad_input(faithful, model, fitted):
    with pytest.raises(ValueError, match="kind must be one of"):
        jaxem.bootstrap(model, fitted, faithful, key=jax.random.key(0), kind="smooth")
    with pytest.raises(ValueError, match="n_boot"):
        jaxem.bootstrap(model, fitted, faithful, key=jax.random.key(0), n_boot=0)
    with pytest.raises(ValueError, match="at least two"):
        jaxem.bootstrap_lrt([model], faithful, key=jax.random.key(0))
