"""Gaussian-mixture MLE equals scikit-learn iterate for iterate (float64)."""

import jax
import numpy as np
import pytest
from conftest import COVARIANCE_TYPES, precisions, rel_err
from sklearn.mixture import GaussianMixture as SkGaussianMixture

import jaxem

# Largest relative difference seen per (data, covariance type) is printed with -s.
RTOL = 1e-8


def _sklearn(params, covariance_type, n_iter, X, **kw):
    k = params.weights.shape[0]
    sk = SkGaussianMixture(
        k,
        covariance_type=covariance_type,
        weights_init=np.asarray(params.weights),
        means_init=np.asarray(params.means),
        precisions_init=precisions(params.covariances, covariance_type),
        tol=0,
        max_iter=n_iter,
        **kw,
    )
    with pytest.warns(Warning):  # scikit-learn warns that tol=0 did not converge
        sk.fit(X)
    return sk


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("data", ["faithful", "blobs", "wide"])
def test_iterates_equal_sklearn(request, data, covariance_type):
    X = request.getfixturevalue(data)
    k = 2 if data == "faithful" else 3
    model = jaxem.GaussianMixture(k, covariance_type)
    start = model.init(jax.random.key(3), X)
    worst = 0.0
    for n_iter in (1, 10, 100):
        result = jaxem.fit(model, X, start, tol=0, max_iter=n_iter)
        assert int(result.n_iter) == n_iter
        sk = _sklearn(start, covariance_type, n_iter, X)
        for ours, theirs in [
            (result.params.weights, sk.weights_),
            (result.params.means, sk.means_),
            (result.params.covariances, sk.covariances_),
        ]:
            err = rel_err(ours, theirs)
            worst = max(worst, err)
            assert err < RTOL
        # the objective is the log-likelihood at the returned params
        np.testing.assert_allclose(result.objective, sk.score(X) * X.shape[0], rtol=1e-10)
    print(f"\n{data} {covariance_type}: largest relative difference to scikit-learn {worst:.1e}")


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_predictions_equal_sklearn(blobs, covariance_type):
    model = jaxem.GaussianMixture(3, covariance_type)
    result = jaxem.fit(model, blobs, model.init(jax.random.key(0), blobs), tol=1e-8)
    sk = _sklearn(result.params, covariance_type, 1, blobs)
    # sklearn has taken one more M-step; rebuild it at our params instead
    sk.weights_ = np.asarray(result.params.weights)
    sk.means_ = np.asarray(result.params.means)
    sk.covariances_ = np.asarray(result.params.covariances)
    sk.precisions_cholesky_ = _precisions_cholesky(sk.covariances_, covariance_type)
    np.testing.assert_allclose(
        model.score_samples(result.params, blobs), sk.score_samples(blobs), rtol=1e-10
    )
    np.testing.assert_allclose(
        model.predict_proba(result.params, blobs), sk.predict_proba(blobs), atol=1e-10
    )
    np.testing.assert_array_equal(model.predict(result.params, blobs), sk.predict(blobs))
    assert model.n_parameters(blobs.shape[1]) == sk._n_parameters()


def _precisions_cholesky(covariances, covariance_type):
    if covariance_type in ("diag", "spherical"):
        return 1.0 / np.sqrt(covariances)
    chol = np.linalg.cholesky(covariances)
    eye = np.eye(chol.shape[-1])
    return np.swapaxes(np.linalg.solve(chol, np.broadcast_to(eye, chol.shape)), -1, -2)


def test_converged_fit_matches_sklearn_default_rule(faithful):
    """With tol > 0 both stop on the same change of mean log-likelihood; scikit-learn takes one
    more M-step after seeing it (its lower bound lags one iteration), so compare at that point."""
    model = jaxem.GaussianMixture(2, "full")
    start = model.init(jax.random.key(0), faithful)
    result = jaxem.fit(model, faithful, start, tol=1e-3, max_iter=100)
    assert bool(result.converged)
    sk = SkGaussianMixture(
        2,
        weights_init=np.asarray(start.weights),
        means_init=np.asarray(start.means),
        precisions_init=precisions(start.covariances, "full"),
        tol=1e-3,
    ).fit(faithful)
    assert sk.n_iter_ == int(result.n_iter) + 1
    again = jaxem.fit(model, faithful, start, tol=0, max_iter=sk.n_iter_)
    assert rel_err(again.params.means, sk.means_) < RTOL
