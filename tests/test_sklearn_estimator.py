"""jaxem.sklearn.GaussianMixture: scikit-learn's checks, iris against scikit-learn, attributes."""

import jax
import numpy as np
import pytest
from conftest import COVARIANCE_TYPES
from sklearn.datasets import load_iris
from sklearn.mixture import GaussianMixture as SkGaussianMixture
from sklearn.mixture._gaussian_mixture import _compute_precision_cholesky
from sklearn.utils.estimator_checks import check_estimator

import jaxem
from jaxem.sklearn import GaussianMixture


def test_passes_check_estimator():
    results = check_estimator(GaussianMixture(), on_fail=None)
    failed = {r["check_name"]: str(r["exception"]) for r in results if r["status"] == "failed"}
    assert not failed
    assert sum(r["status"] == "passed" for r in results) >= 40


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_iris_scores_as_well_as_sklearn(covariance_type):
    """n_init=4 on iris, K=3: at scikit-learn's defaults the two stop within the tolerance's
    slack of each other (the same optimum, approached from different starts); run to a tight
    tolerance they reach the same maximum."""
    X = load_iris().data
    for seed in range(3):
        ours = GaussianMixture(3, covariance_type=covariance_type, n_init=4, random_state=seed)
        theirs = SkGaussianMixture(3, covariance_type=covariance_type, n_init=4, random_state=seed)
        assert ours.fit(X).score(X) >= theirs.fit(X).score(X) - 1e-4
    tight = {"n_init": 4, "random_state": 0, "tol": 1e-10, "max_iter": 2000}
    ours = GaussianMixture(3, covariance_type=covariance_type, **tight).fit(X)
    theirs = SkGaussianMixture(3, covariance_type=covariance_type, **tight).fit(X)
    assert ours.score(X) >= theirs.score(X) - 1e-9
    assert ours.converged_ and ours.n_iter_ >= 2


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_fitted_attributes_follow_sklearn(blobs, covariance_type):
    gm = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(blobs)
    k, d = 3, blobs.shape[1]
    shapes = {"full": (k, d, d), "tied": (d, d), "diag": (k, d), "spherical": (k,)}
    assert gm.covariances_.shape == shapes[covariance_type]
    np.testing.assert_allclose(
        gm.precisions_cholesky_,
        _compute_precision_cholesky(gm.covariances_, covariance_type),
        rtol=1e-10,
    )
    # scikit-learn scores with our parameters exactly as we do
    sk = SkGaussianMixture(3, covariance_type=covariance_type)
    sk.weights_, sk.means_, sk.covariances_ = gm.weights_, gm.means_, gm.covariances_
    sk.precisions_cholesky_ = gm.precisions_cholesky_
    np.testing.assert_allclose(gm.score_samples(blobs), sk.score_samples(blobs), rtol=1e-12)
    np.testing.assert_array_equal(gm.predict(blobs), sk.predict(blobs))
    np.testing.assert_allclose(gm.bic(blobs), sk.bic(blobs), rtol=1e-12)
    np.testing.assert_allclose(gm.aic(blobs), sk.aic(blobs), rtol=1e-12)
    X, y = gm.sample(500)
    assert X.shape == (500, d) and y.shape == (500,) and set(np.unique(y)) <= {0, 1, 2}


def test_prior_default_is_the_map_fit(faithful):
    gm = GaussianMixture(2, prior="default", random_state=0, tol=1e-8, max_iter=500)
    gm.fit(faithful)
    model = jaxem.GaussianMixture(2)
    prior = jaxem.default_prior(model, faithful)
    seed = np.random.RandomState(0).randint(np.iinfo(np.int32).max)
    start = model.init(jax.random.split(jax.random.key(seed), 1)[0], faithful)
    ref = jaxem.fit(model, faithful, start, prior=prior, tol=1e-12, max_iter=2000)
    np.testing.assert_allclose(gm.means_, ref.params.means, rtol=1e-6)
    np.testing.assert_allclose(gm.covariances_, ref.params.covariances, rtol=1e-5)


def test_bad_parameters_raise_at_fit(blobs):
    with pytest.raises(ValueError, match="covariance_type"):
        GaussianMixture(2, covariance_type="round").fit(blobs)
    with pytest.raises(ValueError, match="n_samples >= n_components"):
        GaussianMixture(20).fit(blobs[:10])
    with pytest.raises(ValueError, match="prior"):
        GaussianMixture(2, prior="flat").fit(blobs)
