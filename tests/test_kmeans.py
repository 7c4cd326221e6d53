"""k-means as hard EM: Lloyd iterations on the generic driver equal scikit-learn's."""

import jax
import numpy as np
import pytest
from sklearn.cluster import KMeans as SkKMeans

import jaxem
from jaxem.kmeans import KMeans, KMeansParams


@pytest.mark.parametrize("n_iter", [1, 3, 20])
@pytest.mark.parametrize("weighted", [False, True])
def test_lloyd_equals_sklearn(blobs, n_iter, weighted):
    model = KMeans(3)
    start = model.init(jax.random.key(0), blobs)
    w = np.random.default_rng(0).uniform(0.5, 2.0, len(blobs)) if weighted else None
    result = jaxem.fit(model, blobs, start, weights=w, tol=0, max_iter=n_iter)
    sk = SkKMeans(
        3, init=np.asarray(start.centres), n_init=1, algorithm="lloyd", max_iter=n_iter, tol=0
    ).fit(blobs, sample_weight=w)
    np.testing.assert_allclose(result.params.centres, sk.cluster_centers_, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(-result.objective, sk.inertia_, rtol=1e-12)
    np.testing.assert_array_equal(model.predict(result.params, blobs), sk.labels_)
    history = np.asarray(result.history)
    assert np.all(np.diff(history) >= -1e-9 * np.abs(history[1:]))  # inertia never increases


def test_kmeans_in_batches_and_bad_input(blobs):
    model = KMeans(3)
    X = np.stack([blobs, blobs[::-1] * 2.0])
    batch = jaxem.fit_batch(model, jax.random.key(1), X, tol=1e-8)
    assert batch.params.centres.shape == (2, 3, 3)
    keys = jax.random.split(jax.random.key(1), 2)
    for b in range(2):
        single = jaxem.fit(model, X[b], model.init(keys[b], X[b]), tol=1e-8)
        assert int(batch.n_iter[b]) == int(single.n_iter)
        np.testing.assert_allclose(batch.params.centres[b], single.params.centres, rtol=1e-12)
    with pytest.raises(ValueError, match="n_clusters"):
        KMeans(0)
    with pytest.raises(ValueError, match=r"params.centres must have shape \(3, 3\)"):
        jaxem.fit(model, blobs, KMeansParams(np.zeros((2, 3))))
    with pytest.raises(TypeError, match="no prior"):
        jaxem.fit(model, blobs, model.init(jax.random.key(0), blobs), prior=1.0)
